//! Alerts leave through `builtin:webhook` to a real HTTP server on loopback:
//! PagerDuty Events v2 and Slack payloads, one request per alert.

use plume::config;
use plume::engine::{Engine, EngineOptions};
use plume::plugin::runtime::Runtime;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// A tiny HTTP/1.1 server that records request bodies and answers 202.
fn server() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let sink = sink.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let (mut len, mut auth) = (0usize, String::new());
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        if h == "\r\n" {
                            break;
                        }
                        let lower = h.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                        if lower.starts_with("authorization:") {
                            auth = h[14..].trim().to_string();
                        }
                    }
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).unwrap();
                    sink.lock()
                        .unwrap()
                        .push((String::from_utf8(body).unwrap(), auth));
                    conn.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                        .unwrap();
                }
            });
        }
    });
    (url, got)
}

#[test]
fn alerts_reach_pagerduty_and_slack_shaped_webhooks() {
    let (url, got) = server();
    let text = format!(
        r#"
[[evaluator]]
plugin = "builtin:slo"
config = {{ objective = 0.99 }}

[[router]]
plugin = "builtin:alert-router"
config = {{ routes = [{{ severity = "page", to = ["pager", "chat"] }}] }}

[[export]]
name = "pager"
plugin = "builtin:webhook"
config = {{ url = "{url}", format = "pagerduty", routing_key = "R123" }}

[[export]]
name = "chat"
plugin = "builtin:webhook"
config = {{ url = "{url}", format = "slack", headers = {{ authorization = "Bearer t0k" }} }}
"#
    );
    let p = config::parse("w.toml", &text, |_| None).unwrap();
    let rt = Runtime::new().unwrap();
    let mut engine =
        Engine::build(&p, &rt, &EngineOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    // Synthetic traffic where ~3% of model calls fail: burn > 2x a 1% budget.
    let mut spans = plume::bench::synthetic_spans(4000, 5, 1_764_000_000_000_000_000);
    for (i, s) in spans.iter_mut().enumerate() {
        if i % 8 == 1 {
            s.status.code = plume::span::StatusCode::Error;
        }
    }
    for chunk in spans.chunks(500) {
        engine.process(chunk.to_vec());
    }
    engine.flush();
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "one request per exporter: {got:?}");
    let pd: serde_json::Value = got
        .iter()
        .map(|(b, _)| serde_json::from_str::<serde_json::Value>(b).unwrap())
        .find(|v| v.get("routing_key").is_some())
        .unwrap();
    assert_eq!(pd["event_action"], "trigger");
    assert_eq!(pd["routing_key"], "R123");
    assert_eq!(pd["payload"]["source"], "plume");
    assert_eq!(pd["payload"]["severity"], "critical");
    let (slack, auth) = got.iter().find(|(b, _)| b.contains("\"blocks\"")).unwrap();
    assert_eq!(auth, "Bearer t0k");
    assert!(slack.contains("slo_burn"));
    assert_eq!(
        engine
            .stats()
            .exports
            .iter()
            .map(|e| e.errors.values().sum::<u64>())
            .sum::<u64>(),
        0
    );
}
