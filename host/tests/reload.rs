//! Hot reload under steady load: spans stream into `plume run` over
//! OTLP/HTTP while the pricing table is swapped on disk and the pipeline is
//! reloaded by `POST /admin/reload`, refused once (bad file: the running
//! pipeline goes on), and reloaded again by SIGHUP. Every span is exported
//! exactly once, the new prices and the new stage apply after their reload,
//! and the cost ledger's state carries over (its total equals the sum of the
//! exported costs). The budget switch answers from that ledger.

mod common;

use common::{Service, free_port, get, post, wait_until};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ADMIN: &str = "admin-secret";
/// Requests the loader sends at least (it goes on until the reloads are done).
const MIN_REQUESTS: u64 = 50;
const SPANS_PER_REQUEST: u64 = 20;

fn pipeline(ingest: u16, api: u16, extra_stage: &str) -> String {
    format!(
        r#"
[ingest]
otlp_http = "127.0.0.1:{ingest}"

[api]
listen = "127.0.0.1:{api}"
admin_token = "{ADMIN}"

# Processor shards whatever the machine: reloads swap every thread's engine.
[engine]
shards = 2

[traces]
after_root = "20ms"

[[stage]]
name = "price"
plugin = "builtin:pricer"
config = {{ table = "{{dir}}/prices/table.toml" }}
grants = {{ read = ["{{dir}}/prices"] }}
{extra_stage}
[[evaluator]]
name = "latency"
plugin = "builtin:latency"

[[evaluator]]
name = "cost"
plugin = "builtin:cost-ledger"
config = {{ hard_limit_usd = {{ search = 5.0 }} }}

[[evaluator]]
name = "slo"
plugin = "builtin:slo"

[[export]]
plugin = "builtin:jsonl"
config = {{ path = "{{dir}}/out.jsonl" }}
"#
    )
}

const GENERATION_STAGE: &str = r#"
[[stage]]
name = "mark"
plugin = "builtin:attributes"
config = { actions = [{ key = "deploy.generation", action = "insert", value = "2" }] }
"#;

fn table(input_per_million: f64) -> String {
    format!("[models.\"test-model\"]\ninput = {input_per_million}\noutput = 0.0\n")
}

/// One OTLP/JSON request: `SPANS_PER_REQUEST` root spans of one million
/// input tokens each, half for the feature `search`.
fn request(i: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let spans: Vec<Value> = (0..SPANS_PER_REQUEST)
        .map(|j| {
            let n = i * SPANS_PER_REQUEST + j;
            json!({
                "traceId": format!("{:032x}", n + 1),
                "spanId": format!("{:016x}", n + 1),
                "name": "chat test-model",
                "startTimeUnixNano": (now - 1_000_000).to_string(),
                "endTimeUnixNano": now.to_string(),
                "attributes": [
                    {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                    {"key": "gen_ai.request.model", "value": {"stringValue": "test-model"}},
                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "1000000"}},
                    {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "0"}},
                    {"key": "plume.feature", "value": {"stringValue": if j % 2 == 0 { "search" } else { "chat" }}},
                ]
            })
        })
        .collect();
    json!({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}).to_string()
}

#[test]
fn a_reload_under_load_loses_and_duplicates_nothing() {
    let (ingest, api) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("prices")).unwrap();
    std::fs::write(dir.path().join("prices/table.toml"), table(1.0)).unwrap();
    let plume = Service::start_in(dir, &pipeline(ingest, api, ""), &[ingest, api], &[]);
    let dir = plume.dir.path().to_path_buf();

    // Steady load until told to stop (after the last reload took effect).
    let sending = Arc::new(AtomicBool::new(true));
    let loader = {
        let sending = sending.clone();
        std::thread::spawn(move || {
            let mut throttled = 0;
            let mut sent = 0;
            for i in 0.. {
                if !sending.load(Ordering::SeqCst) && i >= MIN_REQUESTS {
                    break;
                }
                sent += 1;
                let body = request(i);
                loop {
                    match post(
                        ingest,
                        "/v1/traces",
                        "application/json",
                        None,
                        None,
                        body.as_bytes(),
                    )
                    .0
                    {
                        200 => break,
                        503 => {
                            throttled += 1;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        s => panic!("ingest answered {s}"),
                    }
                }
                std::thread::sleep(Duration::from_millis(15));
            }
            (sent, throttled)
        })
    };

    std::thread::sleep(Duration::from_millis(500));
    // A new pricing table on disk, then a reload by the API.
    std::fs::write(dir.join("prices/table.toml"), table(2.0)).unwrap();
    let (status, _) = post(api, "/admin/reload", "text/plain", None, None, b"");
    assert_eq!(status, 401, "admin calls need the token");
    let (status, body) = post(api, "/admin/reload", "text/plain", Some(ADMIN), None, b"");
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer["state_carried_over"],
        json!(["latency", "cost", "slo"]),
        "{body}"
    );

    // A broken file: refused, and the running pipeline goes on.
    std::fs::write(
        dir.join("pipeline.toml"),
        "[[stage]]\nplugin = \"builtin:nope\"\n",
    )
    .unwrap();
    let (status, body) = post(api, "/admin/reload", "text/plain", Some(ADMIN), None, b"");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("unknown builtin"), "{body}");

    // A new stage, by SIGHUP.
    std::fs::write(
        dir.join("pipeline.toml"),
        pipeline(ingest, api, GENERATION_STAGE).replace("{dir}", &dir.display().to_string()),
    )
    .unwrap();
    plume.signal("-HUP");
    // The load goes on until spans come out of the new stage.
    let out = dir.join("out.jsonl");
    wait_until(120, "spans through the stage added by SIGHUP", || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("deploy.generation")
    });
    sending.store(false, Ordering::SeqCst);
    let (requests, throttled) = loader.join().unwrap();

    let total = requests * SPANS_PER_REQUEST;
    let lines = || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"span_id\""))
            .count() as u64
    };
    wait_until(30, "every span exported", || lines() >= total);
    let (_, cost) = get(api, "/v1/reports/cost");
    let cost: Value = serde_json::from_str(&cost).unwrap();
    let (_, search) = get(api, "/v1/budget/search");
    let (_, chat) = get(api, "/v1/budget/chat");
    let (_, metrics) = get(api, "/metrics");
    let (_, _dir) = plume.stop();

    let spans: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v.get("type") != Some(&json!("alert")))
        .collect();
    let mut seen: HashMap<String, u32> = HashMap::new();
    for s in &spans {
        *seen
            .entry(s["span_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    println!(
        "chaos reload-under-load: sent {total} spans, acknowledged {total}, exported {}, lost {}, duplicated {}",
        seen.len(),
        total - seen.len() as u64,
        seen.values().filter(|&&n| n > 1).count()
    );
    assert_eq!(
        seen.len() as u64,
        total,
        "every span once (throttled {throttled} times)"
    );
    assert!(seen.values().all(|&n| n == 1), "no span twice");
    let costs: Vec<f64> = spans
        .iter()
        .map(|s| s["attributes"]["gen_ai.usage.cost"].as_f64().unwrap())
        .collect();
    let old = costs.iter().filter(|&&c| c == 1.0).count();
    let new = costs.iter().filter(|&&c| c == 2.0).count();
    assert_eq!(old + new, spans.len(), "priced by one table or the other");
    assert!(old > 0 && new > 0, "old {old}, new {new}");
    let marked = spans
        .iter()
        .filter(|s| s["attributes"]["deploy.generation"] == "2")
        .count();
    assert!(marked > 0, "the stage added by SIGHUP ran");
    // The ledger kept its state across both reloads.
    let exported: f64 = costs.iter().sum();
    assert_eq!(cost["cost"]["total_usd"].as_f64().unwrap(), exported);
    assert!(
        metrics.contains(&format!("plume_spans_in_total {total}\n")),
        "{metrics}"
    );

    // The budget switch: `search` is over its $5 limit, `chat` has none.
    let search: Value = serde_json::from_str(&search).unwrap();
    assert_eq!(search["allowed"], false, "{search}");
    assert_eq!(search["limit_usd"], 5.0);
    assert!(search["spent_today_usd"].as_f64().unwrap() > 5.0);
    let chat: Value = serde_json::from_str(&chat).unwrap();
    assert_eq!(chat["allowed"], true, "{chat}");
    assert_eq!(chat["limit_usd"], Value::Null);
    assert!(
        chat["projected_today_usd"].as_f64().unwrap() >= chat["spent_today_usd"].as_f64().unwrap()
    );
}

/// The hand-over itself: spans held when the swap comes (their traces not yet
/// complete) are run by the new pipeline, once; the old one runs none.
#[test]
fn held_spans_move_to_the_new_pipeline() {
    use plume::engine::{Engine, EngineOptions};
    use plume::plugin::runtime::Runtime;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let text = |generation: &str| {
        format!(
            r#"
[traces]
wait = "1h"
after_root = "1h"

[[stage]]
name = "mark"
plugin = "builtin:attributes"
config = {{ actions = [{{ key = "generation", action = "upsert", value = "{generation}" }}] }}

[[export]]
plugin = "builtin:jsonl"
config = {{ path = "{}" }}
"#,
            out.display()
        )
    };
    let rt = Runtime::new().unwrap();
    let build = |generation: &str| {
        let p = plume::config::parse("p.toml", &text(generation), |_| None).unwrap();
        Engine::build(&p, &rt, &EngineOptions::default()).unwrap_or_else(|e| panic!("{e}"))
    };
    let mut old = build("1");
    let spans = plume::bench::synthetic_spans(500, 5, 1_764_000_000_000_000_000);
    old.process(spans);
    assert_eq!(old.stats().hold.held, 500, "all held: their traces wait");
    let mut new = build("2");
    new.take_over(&mut old);
    if let Some(t) = old.retire() {
        t.join().unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&out).unwrap_or_default(),
        "",
        "the old pipeline ran nothing"
    );
    new.flush();
    let lines: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 500);
    assert!(lines.iter().all(|s| s["attributes"]["generation"] == "2"));
    let ids: std::collections::HashSet<&str> = lines
        .iter()
        .map(|s| s["span_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 500);
    assert_eq!(new.stats().spans_in, 500, "counters continue");
}
