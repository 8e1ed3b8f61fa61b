//! `[engine] shards`: the service with its processors on several threads
//! gives the answers it gives on one: the same spans out, the same costs,
//! percentiles, SLO and trace summaries, and every processor's counters.

mod common;

use common::{Service, free_port, get, wait_until};
use serde_json::Value;
use std::path::Path;

/// Every recorded GenAI fixture (several instrumentations, duplicates of
/// one call, retries) and the examples, as one input.
fn input() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(root.join("tests/data/genai"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files.push(root.join("../examples/spans.jsonl"));
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect()
}

/// Runs the default pipeline's entries on `input` with `shards`; returns the
/// exported spans (sorted: shards interleave) and the report.
fn run(shards: u32, input: &str) -> (Vec<String>, Value) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let api = free_port();
    let pipeline = format!(
        r#"
[ingest]
jsonl = ["{{dir}}/in.jsonl"]
[api]
listen = "127.0.0.1:{api}"
[engine]
shards = {shards}
[batch]
max_spans = 16
max_wait_ms = 20
[traces]
wait = "300ms"
after_root = "100ms"
[[stage]]
name = "normalize"
plugin = "builtin:genai-normalize"
[[stage]]
name = "price"
plugin = "builtin:pricer"
[[stage]]
name = "dedup"
plugin = "builtin:call-dedup"
[[stage]]
name = "classify"
plugin = "builtin:tool-classifier"
# The fixtures were recorded days and a year apart: a window that holds
# them all, so that no span is late whatever order the shards deliver in.
[[evaluator]]
name = "latency"
plugin = "builtin:latency"
config = {{ window = "1000d" }}
[[evaluator]]
name = "cost"
plugin = "builtin:cost-ledger"
[[evaluator]]
name = "slo"
plugin = "builtin:slo"
[[evaluator]]
name = "traces"
plugin = "builtin:traces"
[[export]]
name = "out"
plugin = "builtin:jsonl"
config = {{ path = "{{dir}}/out.jsonl" }}
"#
    );
    let service = Service::start_in(dir, &pipeline, &[api], &[]);
    // Every line read (a line holds one span or more) and every span out.
    let lines = input.lines().filter(|l| !l.trim().is_empty()).count() as u64;
    let report = || -> Value {
        let (status, body) = get(api, "/v1/reports");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    wait_until(30, "every span exported", || {
        let p = &report()["pipeline"];
        let (read, out) = (p["spans_in"].as_u64(), p["spans_out"].as_u64());
        read >= Some(lines) && read == out
    });
    let report = report();
    let (_, dir) = service.stop();
    let mut lines: Vec<String> = std::fs::read_to_string(dir.path().join("out.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"span_id\""))
        .map(String::from)
        .collect();
    lines.sort();
    (lines, report)
}

#[test]
fn three_shards_answer_as_one_thread_does() {
    let input = input();
    let (one_lines, mut one) = run(1, &input);
    let (three_lines, mut three) = run(3, &input);
    assert_eq!(
        one_lines.len() as u64,
        one["pipeline"]["spans_in"].as_u64().unwrap()
    );
    assert_eq!(
        one_lines, three_lines,
        "the same spans, with the same attributes"
    );

    // Counters of every entry: processors summed over the shards; the
    // evaluators' and exporters' with what the shards prepared for them.
    let counters = |r: &Value, entries: &str| {
        let entries = r["pipeline"][entries].as_array().unwrap().clone();
        entries
            .iter()
            .map(|s| {
                let keys = [
                    "name",
                    "spans_in",
                    "spans_out",
                    "dropped_by_plugin",
                    "errors",
                    "exported",
                    "dropped_on_error",
                ];
                keys.map(|k| s[k].clone())
            })
            .collect::<Vec<_>>()
    };
    for entries in ["stages", "evaluators", "exports"] {
        assert_eq!(
            counters(&one, entries),
            counters(&three, entries),
            "{entries}"
        );
    }
    let exported = &three["pipeline"]["exports"][0]["exported"];
    assert_eq!(exported, &three["pipeline"]["spans_out"]);
    assert_eq!(one["pipeline"]["spans_in"], three["pipeline"]["spans_in"]);
    assert_eq!(one["pipeline"]["spans_out"], three["pipeline"]["spans_out"]);
    // Alerts are raised as event time moves, batch by batch: when a value
    // crosses its threshold depends on how spans were batched, which the
    // hold's wall clock decides in either mode. The states they come from
    // are compared below.
    for r in [&mut one, &mut three] {
        r.as_object_mut().unwrap().remove("pipeline");
        r.as_object_mut().unwrap().remove("alerts");
    }
    // Costs, percentiles, SLO, trace summaries, the pricer's counts: all the
    // same, whichever thread ran which trace.
    assert!(
        one["pricing"]["priced_spans"].as_u64().unwrap() > 0,
        "{one}"
    );
    assert_same("report", &one, &three);
}

/// Asserts `a == b`, naming the first path where they differ.
fn assert_same(path: &str, a: &Value, b: &Value) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{path}"
            );
            for (k, v) in x {
                assert_same(&format!("{path}.{k}"), v, &y[k]);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                assert_same(&format!("{path}[{i}]"), v, w);
            }
        }
        // Sums of floats depend on the order of their terms, and shards
        // deliver traces in another order.
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
                "{path}: {x} != {y}"
            );
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}
