//! Misbehaving plugins under each `on_error` policy, through the real engine
//! with the `test-chaos` fixture component: a trap, an endless loop and a
//! memory bomb are contained, counted, and never take the host down; the
//! stage's instance is rebuilt and serves the next batch.

use plume::config;
use plume::engine::{Engine, EngineOptions};
use plume::plugin::runtime::Runtime;
use plume::span::{AttrValue, Key, Span};

const CHAOS: &str = concat!(env!("PLUME_TEST_PLUGINS"), "/test-chaos.wasm");

/// Three spans; the first carries the `chaos` trigger attribute when `trigger`.
fn batch(trigger: bool, seed: u64) -> Vec<Span> {
    let mut spans = plume::bench::synthetic_spans(3, seed, 1_764_000_000_000_000_000);
    if trigger {
        spans[0]
            .attributes
            .set(Key::from("chaos"), AttrValue::Bool(true));
    }
    spans
}

struct Run {
    engine: Engine,
    out: tempfile::TempDir,
}

fn pipeline(mode: &str, on_error: &str, limits: &str) -> Run {
    let out = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
# Batches reach the stage as they are given (no trace hold): the policies
# under test apply per batch.
[traces]
wait = "0s"

[dead_letter]
path = "{dl}"

[[stage]]
name = "chaos"
plugin = "{CHAOS}"
config = {{ mode = "{mode}", trigger = "chaos" }}
on_error = "{on_error}"
limits = {limits}

[[export]]
plugin = "builtin:jsonl"
config = {{ path = "{spans}" }}
"#,
        dl = out.path().join("dead.jsonl").display(),
        spans = out.path().join("spans.jsonl").display(),
    );
    let p = config::parse("chaos.toml", &text, |_| None).unwrap_or_else(|e| panic!("{e}"));
    let rt = Box::leak(Box::new(Runtime::new().unwrap()));
    let engine = Engine::build(&p, rt, &EngineOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    Run { engine, out }
}

impl Run {
    fn lines(&self, file: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.out.path().join(file))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
    /// A bad batch, then a good one.
    fn bad_then_good(&mut self) {
        self.engine.process(batch(true, 1));
        self.engine.process(batch(false, 2));
        self.engine.flush();
    }
}

#[test]
fn trap_with_pass_keeps_the_batch_and_revives_the_instance() {
    let mut run = pipeline("trap", "pass", "{ memory_mb = 32, timeout_ms = 1000 }");
    run.bad_then_good();
    let stats = run.engine.stats();
    let chaos = &stats.stages[0];
    assert_eq!(chaos.errors.get("trap"), Some(&1));
    assert_eq!(chaos.passed_on_error, 3);
    assert_eq!(chaos.restarts, 1, "rebuilt before the second batch");
    assert_eq!(run.lines("spans.jsonl").len(), 6, "both batches exported");
}

#[test]
fn trap_with_drop_drops_only_the_failed_batch() {
    let mut run = pipeline("trap", "drop", "{ timeout_ms = 1000 }");
    run.bad_then_good();
    let stats = run.engine.stats();
    assert_eq!(stats.stages[0].dropped_on_error, 3);
    assert_eq!(stats.spans_out, 3);
    assert_eq!(run.lines("spans.jsonl").len(), 3);
}

#[test]
fn trap_with_dead_letter_keeps_spans_and_the_panic_message() {
    let mut run = pipeline("trap", "dead-letter", "{ timeout_ms = 1000 }");
    run.bad_then_good();
    let dead = run.lines("dead.jsonl");
    assert_eq!(dead.len(), 3);
    assert_eq!(dead[0]["stage"], "chaos");
    let error = dead[0]["error"].as_str().unwrap();
    assert!(error.contains("trapped"), "{error}");
    assert!(
        error.contains("chaos: trap requested"),
        "the guest's panic message is kept: {error}"
    );
    assert_eq!(
        dead[0]["span"]["attributes"]["chaos"], true,
        "the original span is kept"
    );
    assert_eq!(run.engine.stats().stages[0].dead_lettered, 3);
    assert_eq!(run.lines("spans.jsonl").len(), 3);
}

#[test]
fn endless_loop_is_stopped_by_the_time_limit() {
    let mut run = pipeline("loop", "pass", "{ timeout_ms = 50 }");
    run.bad_then_good();
    let chaos = &run.engine.stats().stages[0];
    assert_eq!(chaos.errors.get("timeout"), Some(&1));
    assert_eq!(chaos.restarts, 1);
    assert_eq!(run.lines("spans.jsonl").len(), 6, "the host went on");
}

#[test]
fn memory_bomb_is_stopped_by_the_memory_limit() {
    let mut run = pipeline("grow", "drop", "{ memory_mb = 16, timeout_ms = 5000 }");
    run.bad_then_good();
    let chaos = &run.engine.stats().stages[0];
    assert_eq!(chaos.errors.get("memory"), Some(&1), "{:?}", chaos.errors);
    assert_eq!(run.lines("spans.jsonl").len(), 3);
}

#[test]
fn returned_errors_follow_policy_without_rebuilding() {
    let mut run = pipeline("error", "drop", "{ timeout_ms = 1000 }");
    run.bad_then_good();
    let chaos = &run.engine.stats().stages[0];
    assert_eq!(chaos.errors.get("error"), Some(&1));
    assert_eq!(
        chaos.restarts, 0,
        "a returned error does not poison the instance"
    );
    assert_eq!(run.lines("spans.jsonl").len(), 3);
}

#[test]
fn plugins_can_drop_and_write() {
    let mut run = pipeline("drop", "pass", "{ timeout_ms = 1000 }");
    run.bad_then_good();
    assert_eq!(run.engine.stats().stages[0].dropped_by_plugin, 1);
    assert_eq!(run.lines("spans.jsonl").len(), 5);

    let mut run = pipeline("tag", "pass", "{ timeout_ms = 1000 }");
    run.bad_then_good();
    let tagged: Vec<_> = run
        .lines("spans.jsonl")
        .into_iter()
        .filter(|l| l["attributes"]["chaos.seen"] == true)
        .collect();
    assert_eq!(tagged.len(), 1);
}
