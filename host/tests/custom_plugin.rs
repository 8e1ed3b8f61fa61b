//! The example custom classifier (`examples/plugins/rust-classifier`) is built
//! for wasm32-wasip2 by this test, exactly as its README says, and loaded by
//! path from `examples/classifier-pipeline.toml`.

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn example_classifier_builds_and_runs_by_path() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let wasm = common::build_rust_classifier();
    let out = tempfile::tempdir().unwrap();
    let output = out.path().join("o.jsonl");
    let run = Command::new(env!("CARGO_BIN_EXE_plume"))
        .current_dir(root)
        .args([
            "replay",
            "examples/classifier-pipeline.toml",
            "--input",
            "host/tests/data/genai/openai_v2_chat.jsonl",
            "--output",
        ])
        .arg(&output)
        .env("PLUME_EXAMPLE_CLASSIFIER", &wasm)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let tools: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|s| s["attributes"]["gen_ai.operation.name"] == "execute_tool")
        .collect();
    assert_eq!(tools.len(), 2);
    for t in &tools {
        assert_eq!(t["attributes"]["team.owner"], "search-team");
        assert!(t["attributes"]["team.tool.slow"].is_boolean());
    }
    assert_eq!(
        tools[0]["attributes"]["team.error.kind"], "internal",
        "a timeout raised in-process"
    );
    assert_eq!(
        tools[0]["attributes"]["plume.tool.status"], "timeout",
        "builtin stages ran first"
    );
    assert!(tools[1]["attributes"].get("team.error.kind").is_none());
}
