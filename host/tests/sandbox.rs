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
    batch_at(trigger, seed, 1_764_000_000_000_000_000)
}

/// As `batch`, at event time `start`.
fn batch_at(trigger: bool, seed: u64, start: u64) -> Vec<Span> {
    let mut spans = plume::bench::synthetic_spans(3, seed, start);
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
    pipeline_with(mode, on_error, limits, "")
}

/// As `pipeline`, with more keys for the stage (e.g. `breaker = {...}`).
fn pipeline_with(mode: &str, on_error: &str, limits: &str, extra: &str) -> Run {
    pipeline_full(mode, "", on_error, limits, extra)
}

/// As `pipeline_with`, with more keys in the plugin's config (`, key = value`).
fn pipeline_full(mode: &str, config: &str, on_error: &str, limits: &str, extra: &str) -> Run {
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
config = {{ mode = "{mode}", trigger = "chaos"{config} }}
on_error = "{on_error}"
limits = {limits}
{extra}

[[export]]
plugin = "builtin:jsonl"
config = {{ path = "{spans}" }}
"#,
        dl = out.path().join("dead.jsonl").display(),
        spans = out.path().join("spans.jsonl").display(),
    );
    std::fs::write(out.path().join("chaos.toml"), &text).unwrap();
    let p = config::parse("chaos.toml", &text, |_| None).unwrap_or_else(|e| panic!("{e}"));
    let rt = Box::leak(Box::new(Runtime::new().unwrap()));
    let engine = Engine::build(&p, rt, &EngineOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    Run { engine, out }
}

impl Run {
    /// One line for the chaos summary: spans in, out, and what the stage did.
    fn report(&self, scenario: &str) {
        let stats = self.engine.stats();
        let s = &stats.stages[0];
        println!(
            "chaos {scenario}: spans in {}, out {}, dead-lettered {}, dropped {}, errors {:?}, host alive",
            stats.spans_in, stats.spans_out, s.dead_lettered, s.dropped_on_error, s.errors
        );
    }

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
    run.report("trap");
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
    run.report("endless-loop");
    let chaos = &run.engine.stats().stages[0];
    assert_eq!(chaos.errors.get("timeout"), Some(&1));
    assert_eq!(chaos.restarts, 1);
    assert_eq!(run.lines("spans.jsonl").len(), 6, "the host went on");
}

/// A batch that holds the engine thread for more than 5 ms is logged at
/// debug with the entry that took the time.
#[test]
fn a_slow_batch_is_logged_with_the_entry_that_took_the_time() {
    #[derive(Clone, Default)]
    struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Log {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // Other tests run the engine on other threads, without a subscriber.
    // While a single subscriber exists, tracing decides whether a log site
    // is ever enabled from the subscriber of the thread that reaches it
    // first, and would remember the engine's as never enabled. A second
    // one (that enables nothing) makes it ask every live subscriber.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    tracing::subscriber::with_default(subscriber, || {
        let mut run = pipeline("loop", "pass", "{ timeout_ms = 50 }");
        run.bad_then_good();
    });
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    // The looping batch (stopped at 50 ms) names the stage. (Whether another
    // batch is slow is up to the machine: not checked.)
    assert!(
        text.lines()
            .any(|l| l.contains("slow batch") && l.contains("entries=chaos ")),
        "{text}"
    );
}

#[test]
fn endless_loop_is_stopped_by_fuel_with_or_without_a_time_limit() {
    // Ten million instructions of fuel stop it: before a minute's time limit,
    // and with none (`timeout_ms = 0`: code compiled without epoch checks).
    for (scenario, limits) in [
        (
            "endless-loop-fuel",
            "{ timeout_ms = 60000, fuel = 10000000 }",
        ),
        (
            "endless-loop-fuel-no-time-limit",
            "{ timeout_ms = 0, fuel = 10000000 }",
        ),
    ] {
        let started = std::time::Instant::now();
        let mut run = pipeline("loop", "pass", limits);
        run.bad_then_good();
        run.report(scenario);
        let chaos = &run.engine.stats().stages[0];
        assert_eq!(
            chaos.errors.get("fuel"),
            Some(&1),
            "{scenario}: {:?}",
            chaos.errors
        );
        assert_eq!(chaos.restarts, 1, "{scenario}");
        assert_eq!(
            run.lines("spans.jsonl").len(),
            6,
            "{scenario}: the host went on"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{scenario}: stopped by fuel, not by a 60 s time limit"
        );
    }
}

#[test]
fn memory_bomb_is_stopped_by_the_memory_limit() {
    let mut run = pipeline("grow", "drop", "{ memory_mb = 16, timeout_ms = 5000 }");
    run.bad_then_good();
    run.report("memory-bomb");
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

/// An answer with one bad edit (a row past the batch) breaks the contract:
/// none of its edits is applied, and the batch goes on under `on_error`.
#[test]
fn a_bad_edit_leaves_the_whole_batch_untouched() {
    let mut run = pipeline("bad-edit", "pass", "{ timeout_ms = 1000 }");
    run.bad_then_good();
    let chaos = &run.engine.stats().stages[0];
    assert_eq!(chaos.errors.get("contract"), Some(&1), "{:?}", chaos.errors);
    assert_eq!(chaos.passed_on_error, 3);
    let lines = run.lines("spans.jsonl");
    assert_eq!(lines.len(), 6);
    assert!(
        lines
            .iter()
            .all(|l| l["attributes"].get("chaos.seen").is_none()),
        "the good edit before the bad one is not applied either"
    );
}

/// A stage that traps on every batch is disabled after `max_failures`: no
/// more rebuilds, spans bypass it, a page alert is raised (and resolved when a
/// try after the cooldown works), and the state is in the counters.
#[test]
fn the_crash_loop_breaker_disables_then_brings_back_a_failing_stage() {
    let mut run = pipeline_with(
        "trap",
        "drop",
        "{ timeout_ms = 1000 }",
        r#"breaker = { max_failures = 3, window = "60s", cooldown = "300ms" }"#,
    );
    let t0 = 1_764_000_000_000_000_000u64;
    let second = 1_000_000_000;
    for i in 0..5 {
        run.engine.process(batch_at(true, i, t0 + i * second));
    }
    let stats = run.engine.stats();
    let chaos = &stats.stages[0];
    assert!(chaos.disabled);
    assert_eq!(chaos.breaker_trips, 1);
    assert_eq!(chaos.restarts, 2, "rebuilt twice, then no more");
    assert_eq!(chaos.errors.get("trap"), Some(&3));
    assert_eq!(chaos.errors.get("disabled"), Some(&2));
    assert_eq!(
        chaos.dropped_on_error, 9,
        "on_error = drop for the failures"
    );
    assert_eq!(chaos.passed_on_error, 6, "bypass while disabled");
    // After the cooldown one try goes through; a good batch closes the breaker.
    std::thread::sleep(std::time::Duration::from_millis(400));
    run.engine.process(batch_at(false, 9, t0 + 9 * second));
    run.engine.process(batch_at(false, 10, t0 + 10 * second));
    let chaos = &run.engine.stats().stages[0];
    assert!(!chaos.disabled, "enabled again");
    run.engine.flush();
    let report = run.engine.report();
    let alerts: Vec<&serde_json::Value> = report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule"] == "plugin_disabled")
        .collect();
    assert_eq!(alerts.len(), 2, "{report}");
    assert_eq!(alerts[0]["status"], "firing");
    assert_eq!(alerts[0]["severity"], "page");
    assert_eq!(alerts[0]["labels"]["entry"], "chaos");
    assert_eq!(alerts[1]["status"], "resolved");
    let lines = run.lines("spans.jsonl");
    let spans = lines.iter().filter(|l| l.get("type").is_none()).count();
    assert_eq!(spans, 6 + 6, "bypassed and good batches exported");
    assert_eq!(
        lines.len() - spans,
        2,
        "the alert and its resolution, as alert lines"
    );
}

/// With processor shards each shard has its own instance and breaker; a
/// breaker that opens in a shard is alerted by the tail, which routes and
/// exports alerts, once per trip.
#[test]
fn a_shards_breaker_alert_reaches_the_tail() {
    use plume::engine::shards::{Plan, Runner};
    let run = pipeline_with(
        "trap",
        "pass",
        "{ timeout_ms = 1000 }",
        r#"breaker = { max_failures = 1, cooldown = "1h" }"#,
    );
    let p = config::parse(
        "chaos.toml",
        &std::fs::read_to_string(run.out.path().join("chaos.toml")).unwrap(),
        |_| None,
    )
    .unwrap();
    let rt = Box::leak(Box::new(Runtime::new().unwrap()));
    let plan = Plan::build(&p, rt, &EngineOptions::default(), 2).unwrap_or_else(|e| panic!("{e}"));
    let mut runner = Runner::start(plan, None).unwrap();
    let t0 = 1_764_000_000_000_000_000u64;
    for i in 0..8 {
        runner.process(batch_at(true, i, t0 + i * 1_000_000_000));
    }
    // Alerts are routed with the tail's next batch.
    runner.process(batch_at(false, 100, t0 + 100 * 1_000_000_000));
    let report = runner.report();
    let stats = runner.finish();
    let chaos = &stats.stages[0];
    assert!(chaos.breaker_trips >= 1, "{chaos:?}");
    assert_eq!(
        stats.spans_out, 27,
        "on_error = pass, then bypass: every span out"
    );
    let firing: Vec<&serde_json::Value> = report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule"] == "plugin_disabled" && a["status"] == "firing")
        .collect();
    assert_eq!(firing.len() as u64, chaos.breaker_trips, "{report}");
    assert_eq!(firing[0]["labels"]["entry"], "chaos");
}

/// `policy = "stop"`: while disabled, spans go to the dead-letter file.
#[test]
fn a_stopped_stage_dead_letters_its_spans() {
    let mut run = pipeline_with(
        "trap",
        "pass",
        "{ timeout_ms = 1000 }",
        r#"breaker = { max_failures = 2, policy = "stop", cooldown = "1h" }"#,
    );
    let t0 = 1_764_000_000_000_000_000u64;
    for i in 0..4 {
        run.engine
            .process(batch_at(true, i, t0 + i * 1_000_000_000));
    }
    run.engine.flush();
    let dead = run.lines("dead.jsonl");
    assert_eq!(dead.len(), 6, "the two batches after the breaker opened");
    assert!(
        dead[0]["error"]
            .as_str()
            .unwrap()
            .contains("disabled by the crash-loop breaker")
    );
    let lines = run.lines("spans.jsonl");
    let spans = lines.iter().filter(|l| l.get("type").is_none()).count();
    assert_eq!(spans, 6, "the two failures passed (on_error)");
    assert_eq!(lines.len() - spans, 1, "the plugin_disabled alert");
}

/// A plugin that tries to read the host's files, write, read the environment
/// and open a connection: all denied by default; a granted directory and
/// variable, and only those, become available.
#[test]
fn a_plugin_gets_no_capability_unless_granted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("given.txt"), "hello").unwrap();
    // Something really listens, so a refusal is the sandbox's, not the network's.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let path = dir.path().display().to_string();
    let escape = |grants: &str| {
        let mut run = pipeline_full(
            "escape",
            &format!(r#", path = "{path}", env = "HOME", port = {port}"#),
            "pass",
            "{ timeout_ms = 5000 }",
            &format!("grants = {grants}"),
        );
        run.engine.process(batch(true, 1));
        run.engine.flush();
        let spans = run.lines("spans.jsonl");
        let report = spans[0]["attributes"]["chaos.escape"]
            .as_str()
            .unwrap()
            .to_string();
        serde_json::from_str::<serde_json::Value>(&report).unwrap()
    };
    let denied = |v: &serde_json::Value| v.as_str().unwrap().starts_with("denied");

    let none = escape("{}");
    println!("chaos escape-attempts: {none}");
    for what in ["read_etc_passwd", "write", "read", "env", "connect"] {
        assert!(denied(&none[what]), "{what} must be denied: {none}");
    }
    assert!(!dir.path().join("escape.txt").exists());

    let granted = escape(&format!(r#"{{ write = ["{path}"], env = ["HOME"] }}"#));
    assert_eq!(granted["write"], "ok", "{granted}");
    assert_eq!(granted["read"], "ok", "{granted}");
    assert_eq!(
        granted["env"],
        format!("ok {}", std::env::var("HOME").unwrap_or_default()),
        "{granted}"
    );
    assert!(
        denied(&granted["read_etc_passwd"]),
        "only the granted folder: {granted}"
    );
    assert!(denied(&granted["connect"]), "no network, ever: {granted}");
    assert!(dir.path().join("escape.txt").exists());
    drop(listener);
}

/// A giant output (8 MiB per span) is bounded by the plugin's memory limit:
/// contained as a memory failure; the host goes on.
#[test]
fn a_giant_output_is_contained_by_the_memory_limit() {
    let mut run = pipeline("giant", "pass", "{ memory_mb = 16, timeout_ms = 5000 }");
    run.bad_then_good();
    run.report("giant-output");
    let chaos = &run.engine.stats().stages[0];
    assert_eq!(chaos.errors.values().sum::<u64>(), 1, "{:?}", chaos.errors);
    assert_eq!(chaos.passed_on_error, 3);
    assert_eq!(run.lines("spans.jsonl").len(), 6, "the host went on");
}
