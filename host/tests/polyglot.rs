//! The same classifier in Rust, Python and JavaScript
//! (`examples/plugins/{rust,python,js}-classifier`), each built with its own
//! toolchain exactly as its README says, gives byte-identical output on the
//! same spans: 576 tool spans covering every rule (owners by longest prefix,
//! business / upstream / client / internal errors, HTTP codes as ints, floats
//! and strings, slow and fast calls, no duration) and non-tool spans that the
//! plugins never see. Also: all three reject an unknown config key.
//!
//! Needs componentize-py 0.25.1 and Node.js with the example's npm packages
//! (`pip install componentize-py==0.25.1`, `npm ci --prefix
//! examples/plugins/js-classifier`: the README's test command and `.ci/run`
//! install them).

mod common;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start ({e}); see this file's header"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The three plugins, built once for the tests of this file.
fn build_all() -> &'static [(&'static str, PathBuf)] {
    static BUILT: std::sync::OnceLock<Vec<(&'static str, PathBuf)>> = std::sync::OnceLock::new();
    BUILT.get_or_init(build)
}

/// Builds the three plugins; returns (language, component path).
fn build() -> Vec<(&'static str, PathBuf)> {
    let root = root();
    let out = root.join("target/examples");
    let rust = common::build_rust_classifier();
    let python = out.join("python_classifier.wasm");
    run(
        Command::new("componentize-py")
            .current_dir(&root)
            .args([
                "-d",
                "wit",
                "-w",
                "processor",
                "componentize",
                "-p",
                "examples/plugins/python-classifier",
                "app",
                "-o",
            ])
            .arg(&python),
        "componentize-py",
    );
    let js = out.join("js_classifier.wasm");
    run(
        Command::new("node")
            .current_dir(root.join("examples/plugins/js-classifier"))
            .arg("build.mjs")
            .arg(&js),
        "componentize-js (node build.mjs)",
    );
    vec![("rust", rust), ("python", python), ("js", js)]
}

/// Every combination of the rules' inputs, as flat span JSONL.
fn spans() -> String {
    let tools = [
        Some("payments.refunds.create"),
        Some("payments.charge"),
        Some("search_docs"),
        Some("weather"),
        None, // not a tool span: never sent to the plugin
    ];
    let statuses = ["error", "ok", "unset"];
    let http = [
        json!(null),
        json!(200),
        json!(404),
        json!(503),
        json!(503.0),
        json!("429"),
    ];
    let messages = [
        None,
        Some("Stripe: Card_Declined"),
        Some("upstream timed out"),
        Some("operation NOT ALLOWED for role"),
    ];
    let durations_ms = [Some(50u64), Some(150), None];
    let mut out = String::new();
    let mut n = 0u64;
    for tool in tools {
        for status in statuses {
            for code in &http {
                for message in messages {
                    for dur in durations_ms {
                        n += 1;
                        let start = 1_764_000_000_000_000_000u64 + n * 1_000_000_000;
                        let mut attrs = serde_json::Map::new();
                        if let Some(t) = tool {
                            attrs.insert("gen_ai.tool.name".into(), json!(t));
                            attrs.insert("gen_ai.operation.name".into(), json!("execute_tool"));
                        }
                        if !code.is_null() {
                            attrs.insert("http.response.status_code".into(), code.clone());
                        }
                        let mut span = json!({
                            "trace_id": format!("{:032x}", n),
                            "span_id": format!("{:016x}", n),
                            "name": "s",
                            "start_time_unix_nano": start,
                            "end_time_unix_nano": start + dur.unwrap_or(0) * 1_000_000,
                            "status": {"code": status, "message": if status == "error" { "failed" } else { "" }},
                            "attributes": attrs,
                        });
                        if dur.is_none() {
                            // A clock that went backwards: duration 0.
                            span["end_time_unix_nano"] = json!(start - 1);
                        }
                        if let Some(m) = message {
                            span["events"] = json!([{"name": "exception", "time_unix_nano": start,
                                "attributes": {"exception.message": m}}]);
                        }
                        out.push_str(&span.to_string());
                        out.push('\n');
                    }
                }
            }
        }
    }
    out
}

const PIPELINE: &str = r#"
[traces]
wait = "0s"

[[stage]]
name = "team-rules"
plugin = "${CLASSIFIER}"
config = { owners = { "payments." = "payments-team", "payments.refunds." = "refunds-team", "search_" = "search-team" }, business_errors = ["card_declined", "not allowed"], slow_ms = 100 }
"#;

#[test]
fn rust_python_and_js_classifiers_give_identical_output() {
    let plugins = build_all();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("spans.jsonl");
    std::fs::write(&input, spans()).unwrap();
    let pipeline = dir.path().join("p.toml");
    std::fs::write(&pipeline, PIPELINE).unwrap();
    let cache = root().join("target/plume-cache");
    let mut outputs = Vec::new();
    for (lang, wasm) in plugins {
        let output = dir.path().join(format!("{lang}.jsonl"));
        let run = Command::new(env!("CARGO_BIN_EXE_plume"))
            .args(["replay"])
            .arg(&pipeline)
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .env("CLASSIFIER", wasm)
            .env("PLUME_CACHE_DIR", &cache)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{lang}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        outputs.push((lang, std::fs::read_to_string(&output).unwrap()));
    }
    let (_, rust) = &outputs[0];
    for (lang, out) in &outputs[1..] {
        if out != rust {
            let first = rust
                .lines()
                .zip(out.lines())
                .find(|(a, b)| a != b)
                .map(|(a, b)| format!("rust:  {a}\n{lang}: {b}"))
                .unwrap_or_else(|| "line counts differ".into());
            panic!("{lang} differs from rust:\n{first}");
        }
    }

    // Not vacuous: every rule fired, and non-tool spans were left alone.
    let spans: Vec<Value> = rust
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(spans.len(), 5 * 3 * 6 * 4 * 3);
    let count = |key: &str, value: Value| {
        spans
            .iter()
            .filter(|s| s["attributes"][key] == value)
            .count()
    };
    for kind in ["business", "upstream", "client", "internal"] {
        assert!(count("team.error.kind", json!(kind)) > 0, "{kind}");
    }
    for owner in ["refunds-team", "payments-team", "search-team", "unowned"] {
        assert!(count("team.owner", json!(owner)) > 0, "{owner}");
    }
    assert!(count("team.tool.slow", json!(true)) > 0);
    assert!(count("team.tool.slow", json!(false)) > 0);
    let untouched = spans
        .iter()
        .filter(|s| s["attributes"].get("gen_ai.tool.name").is_none())
        .all(|s| s["attributes"].get("team.owner").is_none());
    assert!(untouched, "non-tool spans are not sent to the plugin");
}

#[test]
fn all_three_reject_an_unknown_config_key() {
    let plugins = build_all();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        "[[stage]]\nplugin = \"${CLASSIFIER}\"\nconfig = { slow_msec = 1 }\n",
    )
    .unwrap();
    for (lang, wasm) in plugins {
        let out = Command::new(env!("CARGO_BIN_EXE_plume"))
            .arg("check")
            .arg(&pipeline)
            .env("CLASSIFIER", wasm)
            .env("PLUME_CACHE_DIR", root().join("target/plume-cache"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{lang} accepted an unknown key");
        assert!(
            stderr.contains("unknown field `slow_msec`"),
            "{lang}: {stderr}"
        );
    }
}
