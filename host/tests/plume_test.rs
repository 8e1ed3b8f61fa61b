//! `plume test`: the example tests pass; broken expectations fail with a
//! message that says what was expected and what came out, and exit 1.

use std::path::Path;
use std::process::Command;

fn plume_test(file: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_plume"))
        .arg("test")
        .arg(file)
        .env("PLUME_CACHE_DIR", "off")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_example_tests_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let (ok, out) = plume_test(&root.join("examples/service-tests.toml"));
    assert!(ok, "{out}");
    assert!(out.contains("3 passed, 0 failed"), "{out}");
}

#[test]
fn broken_expectations_fail_with_clear_diffs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tests = dir.path().join("t.toml");
    std::fs::write(
        &tests,
        format!(
            r#"
pipeline = "{}"

[[test]]
name = "wrong price"
input = [{{ name = "chat", attributes = {{ "gen_ai.operation.name" = "chat", "gen_ai.request.model" = "gpt-4o", "gen_ai.usage.input_tokens" = 1000 }} }}]
expect_dropped = ["chat"]

[[test.expect]]
span = "chat"
attributes = {{ "gen_ai.usage.cost" = 0.5 }}
absent = ["plume.cost.counted"]

[[test.expect]]
span = "nope"

[[test.expect_alert]]
rule = "cost_hard_limit"

[[test]]
name = "still fine"
input = [{{ name = "a" }}]

[[test.expect]]
span = "a"
absent = ["gen_ai.usage.cost"]
"#,
            root.join("examples/service-pipeline.toml").display()
        ),
    )
    .unwrap();
    let (ok, out) = plume_test(&tests);
    assert!(!ok, "{out}");
    for want in [
        "test wrong price ... FAILED",
        "attribute gen_ai.usage.cost\n      expected: 0.5\n      got:      0.0025",
        "attribute plume.cost.counted should be absent, got true",
        "expected span \"nope\" is not in the output (output spans: \"chat\")",
        "span \"chat\" should have been dropped, but came out",
        "expected alert \"cost_hard_limit\" was not raised (alerts: none)",
        "test still fine ... ok",
        "1 passed, 1 failed",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}
