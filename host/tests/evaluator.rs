//! The evaluator world end to end: an evaluator observes spans after the
//! processors, raises an alert on event-time ticks, the alert reaches the
//! exporters (no router: every exporter), and reports merge into one.

use plume::config;
use plume::engine::{Engine, EngineOptions};
use plume::plugin::runtime::Runtime;

const EVALUATOR: &str = concat!(env!("PLUME_TEST_PLUGINS"), "/test-evaluator.wasm");

#[test]
fn alerts_reach_exporters_and_reports_merge() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let text = format!(
        r#"
[[evaluator]]
name = "a"
plugin = "{EVALUATOR}"
config = {{ threshold = 1, name = "a" }}

[[evaluator]]
name = "b"
plugin = "{EVALUATOR}"
config = {{ threshold = 1000000, name = "b" }}

[[export]]
plugin = "builtin:jsonl"
config = {{ path = "{}" }}
"#,
        out.display()
    );
    let p = config::parse("e.toml", &text, |_| None).unwrap();
    let rt = Runtime::new().unwrap();
    let mut engine =
        Engine::build(&p, &rt, &EngineOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    // 400 synthetic spans hold a few errors (3% of chat calls).
    let spans = plume::bench::synthetic_spans(400, 7, 1_764_000_000_000_000_000);
    let errors = spans
        .iter()
        .filter(|s| s.status.code == plume::span::StatusCode::Error)
        .count();
    assert!(errors > 0);
    for chunk in spans.chunks(100) {
        engine.process(chunk.to_vec());
    }
    engine.flush();

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let alerts: Vec<_> = lines.iter().filter(|l| l["type"] == "alert").collect();
    assert_eq!(alerts.len(), 1, "evaluator a fires once; b never");
    assert_eq!(alerts[0]["rule"], "error_count");
    assert_eq!(alerts[0]["severity"], "page");
    assert_eq!(alerts[0]["labels"]["evaluator"], "a");
    assert_eq!(lines.len() - 1, 400, "every span exported too");

    let report = engine.report();
    let sections = report["test_errors"].as_array().unwrap();
    assert_eq!(
        sections.len(),
        2,
        "arrays from both evaluators are concatenated"
    );
    assert_eq!(sections[0]["errors"], errors as u64);
    assert_eq!(sections[1]["spans"], 400);
    assert_eq!(report["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(report["alerts"][0]["rule"], "error_count");
}

/// `builtin:latency` through the engine: groups by model and operation by
/// default, counts every span of a group, and reports percentiles in ms.
#[test]
fn builtin_latency_reports_per_group() {
    let p = config::parse(
        "l.toml",
        // No trace hold: each batch reaches the evaluator as it is processed.
        "[traces]\nwait = \"0s\"\n[[evaluator]]\nplugin = \"builtin:latency\"\n",
        |_| None,
    )
    .unwrap();
    let rt = Runtime::new().unwrap();
    let mut engine =
        Engine::build(&p, &rt, &EngineOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let spans = plume::bench::synthetic_spans(2000, 11, 1_764_000_000_000_000_000);
    let chats = spans.iter().filter(|s| s.name.starts_with("chat ")).count() as u64;
    for chunk in spans.chunks(256) {
        engine.process(chunk.to_vec());
    }
    let report = engine.report();
    let rows = report["latency"].as_array().unwrap();
    let chat_count: u64 = rows
        .iter()
        .filter(|r| r["group"]["operation"] == "chat")
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    assert_eq!(chat_count, chats);
    let gpt = rows
        .iter()
        .find(|r| r["group"]["model"] == "gpt-4o" && r["group"]["operation"] == "chat")
        .unwrap();
    let (p50, p99) = (
        gpt["p50_ms"].as_f64().unwrap(),
        gpt["p99_ms"].as_f64().unwrap(),
    );
    assert!(300.0 < p50 && p50 <= p99, "{gpt}");
}

/// Alert rules, router and exporter wired together: an error rate that holds
/// for ten minutes of event time yields one notification, and one resolved
/// notice when it clears; the report counts how often it was raised.
#[test]
fn ten_minutes_of_errors_is_one_notification_then_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let text = format!(
        r#"
[[evaluator]]
plugin = "builtin:alert-rules"
config = {{ latency_p99 = {{ enabled = false }}, truncation_rate = {{ enabled = false }}, agent_loop = {{ enabled = false }} }}

[[router]]
plugin = "builtin:alert-router"
config = {{ repeat_interval = "1h" }}

[[export]]
plugin = "builtin:jsonl"
config = {{ path = "{}" }}
"#,
        out.display()
    );
    let p = config::parse("a.toml", &text, |_| None).unwrap();
    let rt = Runtime::new().unwrap();
    let mut engine =
        Engine::build(&p, &rt, &EngineOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let minute = 60_000_000_000u64;
    let t0 = 29_400_000 * minute;
    // 16 minutes, 100 chat spans each: 20% failing for 10 minutes, then clean.
    for m in 0..16u64 {
        let mut spans = plume::bench::synthetic_spans(200, m, t0 + m * minute);
        spans.retain(|s| s.name.starts_with("chat "));
        spans.truncate(100);
        for (i, s) in spans.iter_mut().enumerate() {
            s.attributes.set(
                plume::span::Key::from("gen_ai.request.model"),
                plume::span::AttrValue::Str("gpt-4o".into()),
            );
            s.start_time_unix_nano = t0 + m * minute + i as u64 * 100_000_000;
            s.end_time_unix_nano = s.start_time_unix_nano + 1;
            s.status.code = if m < 10 && i % 5 == 0 {
                plume::span::StatusCode::Error
            } else {
                plume::span::StatusCode::Unset
            };
        }
        engine.process(spans);
    }
    engine.flush();
    let alerts: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["type"] == "alert")
        .collect();
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    assert_eq!(
        (alerts[0]["rule"].as_str(), alerts[0]["status"].as_str()),
        (Some("error_rate"), Some("firing"))
    );
    assert_eq!(alerts[1]["status"], "resolved");
    assert_eq!(
        alerts[1]["runbook"],
        "examples/runbooks/error-rate-spike.md"
    );
    let report = engine.report();
    assert_eq!(report["alerts"][0]["status"], "resolved");
    assert_eq!(
        report["alerts"][0]["count"], 1,
        "rules raise on start only; the router counts raises"
    );
}

/// The host keeps each evaluator's latest snapshot (taken every 32 batches):
/// when the evaluator traps, its rebuilt instance gets that state back, so
/// the trap costs the batches since the snapshot, not the whole history.
#[test]
fn a_trapped_evaluator_resumes_from_its_last_snapshot() {
    let text = format!(
        "[traces]\nwait = \"0s\"\n[[evaluator]]\nname = \"count\"\nplugin = \"{EVALUATOR}\"\nconfig = {{ trap_on_attribute = \"chaos\" }}\n"
    );
    let p = config::parse("e.toml", &text, |_| None).unwrap();
    let rt = Runtime::new().unwrap();
    let mut engine =
        Engine::build(&p, &rt, &EngineOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    for b in 0..40u64 {
        let mut spans =
            plume::bench::synthetic_spans(10, b, 1_764_000_000_000_000_000 + b * 1_000_000_000);
        if b == 34 {
            spans[0].attributes.set(
                plume::span::Key::from("chaos"),
                plume::span::AttrValue::Bool(true),
            );
        }
        engine.process(spans);
    }
    let stats = engine.stats();
    assert_eq!(stats.evaluators[0].errors.get("trap"), Some(&1));
    assert_eq!(stats.evaluators[0].restarts, 1);
    // Snapshot after batch 32 (320 spans); batches 33 and 34 are lost with
    // the trap (35 trapped); batches 36..=40 are counted again: 320 + 50.
    let report = engine.report();
    assert_eq!(report["test_errors"][0]["spans"], 370, "{report}");
}
