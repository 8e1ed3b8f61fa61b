//! `[engine] shards`: the service with its processors on several threads
//! gives the answers it gives on one: the same spans out, the same costs,
//! percentiles, SLO and trace summaries, and every processor's counters.

mod common;

use common::{Service, free_port, get, wait_until};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Every recorded GenAI fixture (several instrumentations, duplicates of
/// one call, retries) and the examples, as one input.
fn input() -> String {
    fixtures()
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect()
}

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(root.join("tests/data/genai"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files.push(root.join("../examples/spans.jsonl"));
    files
}

/// `file`'s spans as flat span lines, as `plume replay` writes them.
fn flat_lines(file: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("pass.toml");
    std::fs::write(&pipeline, "[ingest]\njsonl = [\"-\"]\n").unwrap();
    let out = dir.path().join("flat.jsonl");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_plume"))
        .arg("replay")
        .arg(&pipeline)
        .arg("--input")
        .arg(file)
        .arg("--output")
        .arg(&out)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read_to_string(out).unwrap()
}

/// Runs the default pipeline's entries on `input` with `shards` and a trace
/// hold of `wait`; returns the exported spans (sorted: shards interleave)
/// and the report, with the summary printed at the end as `summary`.
fn run(shards: u32, wait: &str, input: &str) -> (Vec<String>, Value) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let api = free_port();
    // Call-dedup picks which of a call's records counts among those it sees
    // together: without the hold, that is up to how spans were batched.
    let dedup = if wait == "0s" {
        ""
    } else {
        "[[stage]]\nname = \"dedup\"\nplugin = \"builtin:call-dedup\""
    };
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
wait = "{wait}"
after_root = "100ms"
[[stage]]
name = "normalize"
plugin = "builtin:genai-normalize"
[[stage]]
name = "price"
plugin = "builtin:pricer"
{dedup}
[[stage]]
name = "classify"
plugin = "builtin:tool-classifier"
# The fixtures were recorded days and a year apart: windows that hold them
# all, so that no span is late whatever order the shards deliver in.
[[evaluator]]
name = "latency"
plugin = "builtin:latency"
config = {{ window = "1000d" }}
[[evaluator]]
name = "cost"
plugin = "builtin:cost-ledger"
config = {{ revision_window = "1000d" }}
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
    // Every span read and every span out.
    let spans = spans_in(input);
    let report = || -> Value {
        let (status, body) = get(api, "/v1/reports");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    wait_until(30, "every span exported", || {
        let p = &report()["pipeline"];
        let (read, out) = (p["spans_in"].as_u64(), p["spans_out"].as_u64());
        read >= Some(spans) && read == out
    });
    let mut report = report();
    let (output, dir) = service.stop();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary = stderr.lines().find(|l| l.contains(" lines read ("));
    report["summary"] = summary.unwrap_or_default().into();
    let mut lines: Vec<String> = std::fs::read_to_string(dir.path().join("out.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"span_id\""))
        .map(String::from)
        .collect();
    lines.sort();
    (lines, report)
}

/// The spans in span JSONL: one a flat line, any number an OTLP/JSON line.
fn spans_in(input: &str) -> u64 {
    let mut n = 0;
    for line in input.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        n += match v["resourceSpans"].as_array() {
            None => 1,
            Some(rs) => rs
                .iter()
                .flat_map(|r| r["scopeSpans"].as_array().unwrap())
                .map(|s| s["spans"].as_array().unwrap().len())
                .sum::<usize>(),
        } as u64;
    }
    n
}

#[test]
fn three_shards_answer_as_one_thread_does() {
    same_answers(&input(), "300ms");
}

/// Without a trace hold the shards parse their own lines (the head reads
/// only each line's trace id): the same answers, whatever the key order of
/// a line, with OTLP/JSON lines (parsed by the head), blank lines and a
/// line that does not parse, counted once.
#[test]
fn shards_that_parse_their_lines_answer_as_one_thread_does() {
    // The first fixture as recorded (OTLP/JSON), the rest as flat lines.
    // Not the one that records a call in two traces: without the hold
    // (whose `join_on` sends such traces to one shard together), which
    // record the cost ledger sees last is up to the shards.
    let files: Vec<_> = fixtures()
        .into_iter()
        .filter(|f| !f.to_string_lossy().contains("noroot"))
        .collect();
    let mut lines = std::fs::read_to_string(&files[0]).unwrap();
    for file in &files[1..] {
        lines += &flat_lines(file);
    }
    let mut input = String::new();
    for (i, line) in lines.lines().enumerate() {
        // Every other flat line with its keys sorted: `trace_id` comes late.
        if i % 2 == 1 && line.starts_with("{\"trace_id\"") {
            let sorted: Value = serde_json::from_str(line).unwrap();
            input += &sorted.to_string();
        } else {
            input += line;
        }
        input += "\n";
        if i == 7 {
            input += "{\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\", broken\n\n";
        }
    }
    let flat = input
        .lines()
        .filter(|l| l.starts_with("{\"trace_id\""))
        .count();
    let late = input
        .lines()
        .filter(|l| l.starts_with("{\"attributes\""))
        .count();
    let otlp = input
        .lines()
        .filter(|l| l.starts_with("{\"resourceSpans\""))
        .count();
    assert!(flat > 30 && late > 30 && otlp > 3, "{flat} {late} {otlp}");
    let (one, three) = same_answers(&input, "0s");
    let lines = input.lines().count();
    for r in [one, three] {
        let summary = r["summary"].as_str().unwrap();
        assert!(
            summary.contains(&format!("{lines} lines read (1 failed)")),
            "{summary}"
        );
    }
}

/// Runs `input` on one thread and on three shards; asserts that the
/// answers are the same; returns both reports.
fn same_answers(input: &str, wait: &str) -> (Value, Value) {
    let (one_lines, mut one) = run(1, wait, input);
    let (three_lines, mut three) = run(3, wait, input);
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
    let reports = (one.clone(), three.clone());
    for r in [&mut one, &mut three] {
        for section in ["pipeline", "alerts", "summary"] {
            r.as_object_mut().unwrap().remove(section);
        }
    }
    // Costs, percentiles, SLO, trace summaries, the pricer's counts: all the
    // same, whichever thread ran which trace.
    assert!(
        one["pricing"]["priced_spans"].as_u64().unwrap() > 0,
        "{one}"
    );
    assert_same("report", &one, &three);
    reports
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
