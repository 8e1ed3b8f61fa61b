//! `plume check` on good and bad pipeline files, through the real binary.
//! Each `data/invalid/NAME.toml` is paired with `NAME.err`: every line of it
//! must appear in the output, and the exit code must be 1.

use std::path::Path;
use std::process::Command;

fn plume(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_plume"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"))
        .env_remove("PLUME_TEST_SURELY_UNSET_VAR")
        .output()
        .expect("plume runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn example_pipeline_checks_ok() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_plume"))
        .args(["check", "examples/pipeline.toml"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 stages"));
}

#[test]
fn invalid_pipelines_give_their_expected_messages() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/invalid");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let rel = format!(
            "data/invalid/{}",
            path.file_name().unwrap().to_str().unwrap()
        );
        let expected = std::fs::read_to_string(path.with_extension("err"))
            .expect("each invalid file has its .err");
        let (code, text) = plume(&["check", &rel]);
        assert_eq!(code, 1, "{rel} must fail:\n{text}");
        for line in expected.lines().filter(|l| !l.is_empty()) {
            assert!(text.contains(line), "{rel}: expected\n  {line}\nin\n{text}");
        }
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} invalid files found");
}
