//! Durability: with `[wal]`, every span plume acknowledged survives a kill -9
//! and reaches its sinks after the restart; a full log pushes back or drops
//! its oldest records, as configured, and says so.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::{Service, free_port, get, wait_until};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An OTLP/HTTP backend that takes the first `take_first` payloads, then
/// answers 503 until it is healed. Counts every trace id it took.
#[derive(Default)]
struct Backend {
    take_first: u64,
    healed: AtomicBool,
    taken: AtomicU64,
    seen: Mutex<HashMap<String, u32>>,
}

async fn export(State(b): State<Arc<Backend>>, body: Bytes) -> Response {
    if !b.healed.load(Ordering::SeqCst) && b.taken.load(Ordering::SeqCst) >= b.take_first {
        return (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "0")]).into_response();
    }
    b.taken.fetch_add(1, Ordering::SeqCst);
    let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
    let mut seen = b.seen.lock().unwrap();
    for rs in req.resource_spans {
        for ss in rs.scope_spans {
            for s in ss.spans {
                *seen.entry(const_hex::encode(&s.trace_id)).or_default() += 1;
            }
        }
    }
    (
        [("content-type", "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

/// Serves `backend` on a loopback port; returns the port.
fn serve(rt: &tokio::runtime::Runtime, backend: Arc<Backend>) -> u16 {
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(export))
            .with_state(backend);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        port
    })
}

/// One OTLP/JSON request of `spans` spans in trace `id`.
fn request(id: u64, spans: u64) -> String {
    let spans: Vec<String> = (1..=spans)
        .map(|s| {
            format!(
                r#"{{"traceId":"{id:032x}","spanId":"{s:016x}","name":"chat gpt-4o","startTimeUnixNano":"{}","endTimeUnixNano":"{}","attributes":[{{"key":"gen_ai.request.model","value":{{"stringValue":"gpt-4o"}}}}]}}"#,
                1_700_000_000_000_000_000u64 + id * 1_000_000,
                1_700_000_000_000_000_000u64 + id * 1_000_000 + 500_000
            )
        })
        .collect();
    format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
}

/// What a client sent: ids acknowledged (200), requests sent, and those
/// told to retry (503).
struct Sent {
    acknowledged: Vec<u64>,
    requests: u64,
    throttled: u64,
}

/// What a client has done so far, as it goes.
#[derive(Default)]
struct Progress {
    acknowledged: AtomicU64,
    pushed_back: AtomicU64,
}

/// Posts requests with trace ids from `first` on until `stop`.
fn send_until(ingest: u16, first: u64, stop: &AtomicBool, progress: &Progress) -> Sent {
    let agent = common::agent();
    let mut acknowledged = Vec::new();
    let (mut sent, mut throttled) = (0, 0);
    let mut id = first;
    while !stop.load(Ordering::SeqCst) {
        sent += 1;
        let resp = agent
            .post(format!("http://127.0.0.1:{ingest}/v1/traces"))
            .header("content-type", "application/json")
            .send(request(id, 3).as_bytes());
        match resp.map(|r| r.status().as_u16()) {
            Ok(200) => {
                acknowledged.push(id);
                progress.acknowledged.fetch_add(1, Ordering::SeqCst);
            }
            Ok(503) => {
                throttled += 1;
                progress.pushed_back.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(s) => panic!("unexpected status {s}"),
            // plume was killed mid-request: not acknowledged.
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
        id += 1;
    }
    Sent {
        acknowledged,
        requests: sent,
        throttled,
    }
}

fn pipeline(ingest: u16, api: u16, backend: u16, wal: &str) -> String {
    format!(
        r#"
[ingest]
otlp_http = "127.0.0.1:{ingest}"

[api]
listen = "127.0.0.1:{api}"

# Processor shards whatever the machine: log records are released by marks
# that follow the spans through every thread. (Pipelines without processors,
# as in the other tests here, run on one thread.)
[engine]
shards = 2

[traces]
wait = "0s"

[wal]
dir = "{{dir}}/wal"
{wal}

[[stage]]
plugin = "builtin:genai-normalize"

[[export]]
name = "tempo"
plugin = "builtin:otlp"
config = {{ endpoint = "http://127.0.0.1:{backend}" }}
delivery = {{ queue = 8, initial_backoff = "20ms", max_backoff = "100ms", max_elapsed = "10m" }}
"#
    )
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_span() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = Arc::new(Backend {
        take_first: 20,
        ..Backend::default()
    });
    let backend_port = serve(&rt, backend.clone());
    let (ingest, api) = (free_port(), free_port());
    let text = pipeline(ingest, api, backend_port, "");
    let quiet = [("PLUME_LOG", "error")];
    let plume = Service::start(&text, &[ingest, api], &quiet);

    // Load until the backend has taken its share and refuses, and plenty
    // more was acknowledged; then kill -9 while the load goes on.
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(Progress::default());
    let client = {
        let (stop, progress) = (stop.clone(), progress.clone());
        std::thread::spawn(move || send_until(ingest, 1, &stop, &progress))
    };
    wait_until(60, "the backend to refuse", || {
        backend.taken.load(Ordering::SeqCst) >= 20
    });
    wait_until(60, "spans acknowledged beyond those delivered", || {
        let delivered = backend.seen.lock().unwrap().len() as u64;
        progress.acknowledged.load(Ordering::SeqCst) > delivered + 1000
    });
    let dir = plume.kill();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::SeqCst);
    let Sent {
        acknowledged,
        requests: sent,
        ..
    } = client.join().unwrap();
    let delivered_before = backend.seen.lock().unwrap().len();
    assert!(
        acknowledged.len() > delivered_before,
        "spans were acknowledged but not delivered at the kill: {} vs {delivered_before}",
        acknowledged.len()
    );

    // Restart on what the crash left, with the backend back.
    backend.healed.store(true, Ordering::SeqCst);
    let plume = Service::start_in(dir, &text, &[ingest, api], &quiet);
    let expected: HashSet<String> = acknowledged.iter().map(|id| format!("{id:032x}")).collect();
    wait_until(60, "every acknowledged span at the backend", || {
        let seen = backend.seen.lock().unwrap();
        expected
            .iter()
            .all(|id| seen.get(id).is_some_and(|&n| n >= 3))
    });
    let (_, metrics) = get(api, "/metrics");
    let (output, _) = plume.stop();
    let stderr = String::from_utf8_lossy(&output.stderr);

    let seen = backend.seen.lock().unwrap();
    let lost = expected.iter().filter(|id| !seen.contains_key(*id)).count();
    let twice = seen.values().filter(|&&n| n > 3).count();
    println!(
        "chaos kill-9: sent {} spans, acknowledged {}, exported {} ({} traces twice after the replay), lost {lost}",
        sent * 3,
        acknowledged.len() * 3,
        seen.values().map(|&n| n as u64).sum::<u64>(),
        twice
    );
    assert_eq!(lost, 0);
    let replayed = metric(&metrics, "plume_wal_replayed_spans_total");
    assert!(
        replayed >= ((acknowledged.len() - delivered_before) * 3) as f64,
        "the acknowledged, undelivered spans came back from the log: {replayed}"
    );
    assert!(
        stderr.contains("write-ahead log:") && stderr.contains("0 records kept for the next start"),
        "{stderr}"
    );
}

/// The backend goes down for `PLUME_CHAOS_DOWN_SECS` (default 3; the chaos
/// script uses 60) under steady load, then comes back.
#[test]
fn a_backend_down_for_a_while_under_load_loses_nothing_acknowledged() {
    let down_secs: u64 = std::env::var("PLUME_CHAOS_DOWN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = Arc::new(Backend {
        take_first: 10,
        ..Backend::default()
    });
    let backend_port = serve(&rt, backend.clone());
    let (ingest, api) = (free_port(), free_port());
    let text = pipeline(ingest, api, backend_port, "");
    let plume = Service::start(&text, &[ingest, api], &[("PLUME_LOG", "error")]);
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(Progress::default());
    let client = {
        let (stop, progress) = (stop.clone(), progress.clone());
        std::thread::spawn(move || send_until(ingest, 1, &stop, &progress))
    };
    wait_until(60, "the backend to go down", || {
        backend.taken.load(Ordering::SeqCst) >= 10
    });
    // Down for `down_secs`, and at least until the queues are full and the
    // client is told to retry (a slow machine takes longer to fill them).
    std::thread::sleep(Duration::from_secs(down_secs));
    wait_until(120, "plume to push back", || {
        progress.pushed_back.load(Ordering::SeqCst) > 0
    });
    // The engine is blocked on the full sink; the counters kept outside it
    // still answer.
    let (status, metrics) = get(api, "/metrics");
    assert_eq!(status, 200, "{metrics}");
    assert!(metric(&metrics, "plume_wal_appended_spans_total") > 0.0);
    assert!(metric(&metrics, "plume_receiver_requests_throttled_total") > 0.0);
    backend.healed.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    let Sent {
        acknowledged,
        requests: sent,
        throttled,
    } = client.join().unwrap();
    let expected: HashSet<String> = acknowledged.iter().map(|id| format!("{id:032x}")).collect();
    wait_until(60, "every acknowledged span at the backend", || {
        let seen = backend.seen.lock().unwrap();
        expected.iter().all(|id| seen.contains_key(id))
    });
    // Delivered, so released: the marks went through every shard and the tail.
    wait_until(30, "every record released", || {
        let (_, metrics) = get(api, "/metrics");
        metric(&metrics, "plume_wal_unreleased_records") == 0.0
    });
    let rss = plume.peak_rss_mib().unwrap_or(0.0);
    plume.stop();
    let seen = backend.seen.lock().unwrap();
    let lost = expected.iter().filter(|id| !seen.contains_key(*id)).count();
    println!(
        "chaos backend-down-{down_secs}s: sent {} spans, acknowledged {}, exported {}, lost {lost}; {throttled} requests told to retry; peak RSS {rss:.0} MiB",
        sent * 3,
        acknowledged.len() * 3,
        seen.values().map(|&n| n as u64).sum::<u64>(),
    );
    assert_eq!(lost, 0);
    assert!(
        throttled > 0,
        "the clients were pushed back while it was down"
    );
}

#[test]
fn a_followed_file_resumes_where_the_log_says_after_kill_9() {
    let (api, lines) = (free_port(), 3000u64);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("agent.jsonl");
    let line = |i: u64| {
        format!(
            "{{\"trace_id\":\"{i:032x}\",\"span_id\":\"{i:016x}\",\"name\":\"tool search\",\"start_time_unix_nano\":{},\"end_time_unix_nano\":{}}}\n",
            1_700_000_000_000_000_000u64 + i,
            1_700_000_000_000_000_000u64 + i + 10
        )
    };
    let write = |from: u64, to: u64| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&input)
            .unwrap();
        for i in from..to {
            f.write_all(line(i).as_bytes()).unwrap();
        }
    };
    write(1, lines + 1);
    let text = format!(
        r#"
[ingest]
jsonl = ["{{dir}}/agent.jsonl"]

[api]
listen = "127.0.0.1:{api}"

[traces]
wait = "0s"

[wal]
dir = "{{dir}}/wal"

[[export]]
plugin = "builtin:jsonl"
config = {{ path = "{{dir}}/out.jsonl" }}
"#
    );
    let out = dir.path().join("out.jsonl");
    let plume = Service::start_in(dir, &text, &[api], &[]);
    let count = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map(|t| t.lines().count() as u64)
            .unwrap_or(0)
    };
    wait_until(60, "the file read", || count(&out) >= lines);
    // Released: the checkpoint has the file's offset. (Killed before that,
    // the restart would read the file again: duplicates, never losses.)
    wait_until(60, "the log released", || {
        let (_, m) = get(api, "/metrics");
        metric(&m, "plume_wal_unreleased_records") == 0.0
    });
    let dir = plume.kill();

    // More lines arrive while plume is down.
    write(lines + 1, 2 * lines + 1);
    let plume = Service::start_in(dir, &text, &[api], &[]);
    let all_there = |path: &std::path::Path| {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let ids: HashSet<&str> = text
            .lines()
            .filter_map(|l| l.get(13..45)) // {"trace_id":"<32 hex>"
            .collect();
        (1..=2 * lines).all(|i| ids.contains(format!("{i:032x}").as_str()))
    };
    wait_until(60, "every line exported", || all_there(&out));
    let (_, dir) = plume.stop();
    let text = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    let mut seen: HashMap<String, u32> = HashMap::new();
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        *seen
            .entry(v["trace_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let lost = (1..=2 * lines)
        .filter(|i| !seen.contains_key(&format!("{i:032x}")))
        .count();
    let twice = seen.values().filter(|&&n| n > 1).count();
    println!(
        "chaos kill-9 (JSONL source): {} lines, exported {}, {twice} twice, lost {lost}",
        2 * lines,
        text.lines().count()
    );
    assert_eq!(lost, 0);
    assert!(
        (twice as u64) < lines,
        "the restart resumed from the logged offset, not from the start: {twice} lines twice"
    );
}

#[test]
fn a_full_log_blocks_ingest_or_drops_its_oldest_records_as_configured() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Nothing is delivered: records stay in the log and it fills.
    let backend = Arc::new(Backend::default());
    let backend_port = serve(&rt, backend.clone());
    let quiet = [("PLUME_LOG", "error")];
    let bound = "max_bytes = 16384\nsegment_bytes = 4096";

    let (ingest, api) = (free_port(), free_port());
    let text = pipeline(
        ingest,
        api,
        backend_port,
        &format!("{bound}\nwhen_full = \"block\""),
    );
    let plume = Service::start(&text, &[ingest, api], &quiet);
    let agent = common::agent();
    let mut refused = None;
    for id in 1..=2000u64 {
        let resp = agent
            .post(format!("http://127.0.0.1:{ingest}/v1/traces"))
            .header("content-type", "application/json")
            .send(request(id, 3).as_bytes())
            .unwrap();
        if resp.status() == 503 {
            refused = Some((id, resp.headers().get("retry-after").cloned()));
            break;
        }
    }
    let (at, retry_after) = refused.expect("a full log refuses new spans");
    assert!(retry_after.is_some(), "with Retry-After");
    assert!(at < 200, "16 KiB hold a few dozen requests, not {at}");
    let (_, metrics) = get(api, "/metrics");
    assert!(metric(&metrics, "plume_wal_refused_full_total") >= 1.0);
    assert!(metric(&metrics, "plume_wal_bytes") <= 16384.0);
    drop(plume);

    // Spans held for their traces stay in the log too: a hold larger than
    // the log fills it, and new spans push the oldest traces out early.
    let (ingest, api) = (free_port(), free_port());
    let text = format!(
        r#"
[ingest]
otlp_http = "127.0.0.1:{ingest}"

[api]
listen = "127.0.0.1:{api}"

[traces]
wait = "10m"
max_spans = 300

[wal]
dir = "{{dir}}/wal"
{bound}
when_full = "drop-oldest"

[[export]]
plugin = "builtin:jsonl"
config = {{ path = "{{dir}}/out.jsonl" }}
"#
    );
    let _plume = Service::start(&text, &[ingest, api], &quiet);
    for id in 1..=300u64 {
        let (status, _) = common::post(
            ingest,
            "/v1/traces",
            "application/json",
            None,
            None,
            request(id, 3).as_bytes(),
        );
        assert_eq!(status, 200, "drop-oldest never refuses");
    }
    wait_until(20, "the wal_dropped alert", || {
        get(api, "/v1/reports/alerts").1.contains("wal_dropped")
    });
    let (_, metrics) = get(api, "/metrics");
    assert!(metric(&metrics, "plume_wal_dropped_spans_total") > 0.0);
    assert!(metric(&metrics, "plume_wal_bytes") <= 16384.0);
}

/// The value of an unlabelled metric.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}
