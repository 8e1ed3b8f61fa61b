//! `plume replay` end to end through the real binary: flat and OTLP/JSON
//! lines in one file, malformed lines reported by number and skipped, every
//! other span written, and a report.

use std::path::Path;
use std::process::Command;

#[test]
fn replays_mixed_input_and_reports_bad_lines() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("spans.jsonl");
    let report = out_dir.path().join("report.json");
    let pipeline = out_dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        r#"
[[stage]]
name = "tag"
plugin = "builtin:attributes"
config = { actions = [{ key = "env", action = "upsert", value = "${REPLAY_ENV:-test}" }] }
"#,
    )
    .unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_plume"))
        .arg("replay")
        .arg(&pipeline)
        .arg("--input")
        .arg(tests.join("data/mixed.jsonl"))
        .arg("--output")
        .arg(&output)
        .arg("--report")
        .arg(&report)
        .env("REPLAY_ENV", "staging")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("mixed.jsonl:3: span_id must be 16 hex digits"),
        "{stderr}"
    );
    assert!(stderr.contains("mixed.jsonl:7: "), "{stderr}");

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("output lines are JSON"))
        .collect();
    // 3 good flat lines + 1 OTLP line of 1 span + 1 OTLP line of 2 spans.
    assert_eq!(lines.len(), 6);
    for l in &lines {
        assert_eq!(l["attributes"]["env"], "staging");
        let id = l["trace_id"].as_str().unwrap();
        assert_eq!(id, id.to_lowercase(), "ids are written lower case");
    }
    assert_eq!(lines[3]["name"], "execute_tool search_docs");
    assert_eq!(lines[3]["scope"]["name"], "support-agent.tools");

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["input"]["lines"], 7);
    assert_eq!(report["input"]["failed"], 2);
    assert_eq!(report["pipeline"]["spans_out"], 6);
    assert_eq!(report["pipeline"]["stages"][0]["name"], "tag");
}

#[test]
fn strict_mode_fails_on_bad_lines() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let out_dir = tempfile::tempdir().unwrap();
    let pipeline = out_dir.path().join("p.toml");
    std::fs::write(&pipeline, "").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_plume"))
        .arg("replay")
        .arg(&pipeline)
        .arg("--input")
        .arg(tests.join("data/mixed.jsonl"))
        .arg("--output")
        .arg(out_dir.path().join("o.jsonl"))
        .arg("--strict")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(out_dir.path().join("o.jsonl"))
            .unwrap()
            .lines()
            .count(),
        6
    );
}
