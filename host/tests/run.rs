//! `plume run` as a service through the real binary: it follows a JSONL file,
//! exports what arrives (also lines appended later), and on SIGTERM drains
//! and exits 0. The embedded default pipeline reads stdin and writes stdout.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn wait_for_lines(path: &Path, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let count = std::fs::read_to_string(path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if count >= n || Instant::now() > deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `plume run ARGS` with `input` on its standard input, to its end; fails
/// the test unless plume exits 0.
fn run_with_input(args: &[&std::ffi::OsStr], input: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plume"))
        .arg("run")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn follows_a_file_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/spans.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(examples)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    std::fs::write(&input, format!("{}\n{}\n", lines[0], lines[1])).unwrap();
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[ingest]\njsonl = [\"{}\"]\n[batch]\nmax_wait_ms = 20\n[[export]]\nplugin = \"builtin:jsonl\"\nconfig = {{ path = \"{}\" }}\n",
            input.display(),
            output.display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_plume"))
        .arg("run")
        .arg(&pipeline)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(
        wait_for_lines(&output, 2),
        2,
        "the file's lines are exported"
    );
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    writeln!(f, "{}", lines[2]).unwrap();
    drop(f);
    assert_eq!(wait_for_lines(&output, 3), 3, "appended lines are followed");

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("3 lines read (0 failed), 3 spans in, 3 spans out"),
        "{stderr}"
    );
}

#[test]
fn default_pipeline_reads_stdin_and_writes_stdout() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/spans.jsonl");
    let out = run_with_input(&[], &std::fs::read(examples).unwrap());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (alerts, spans): (Vec<_>, Vec<_>) = lines.into_iter().partition(|l| l["type"] == "alert");
    assert_eq!(spans.len(), 4);
    // One of the two model calls failed: the default error SLO pages, once.
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["rule"], "slo_burn");
    assert_eq!(spans[3]["name"], "execute_tool search_docs");
}

/// `builtin:jsonl` writes each span as one line (one `span-lines` part per
/// batch), in plume's flat JSON or as one-span OTLP/JSON requests: every
/// span of the input, in order, in both files.
#[test]
fn jsonl_export_writes_one_line_per_span_in_either_format() {
    let dir = tempfile::tempdir().unwrap();
    let flat = dir.path().join("flat.jsonl");
    let otlp = dir.path().join("otlp.jsonl");
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[ingest]\njsonl = [\"-\"]\n\
             [[export]]\nname = \"flat\"\nplugin = \"builtin:jsonl\"\nconfig = {{ path = \"{}\" }}\n\
             [[export]]\nname = \"otlp\"\nplugin = \"builtin:jsonl\"\nconfig = {{ path = \"{}\", format = \"otlp-json\" }}\n",
            flat.display(),
            otlp.display()
        ),
    )
    .unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/spans.jsonl");
    let input = std::fs::read_to_string(examples).unwrap();
    run_with_input(&[pipeline.as_os_str()], input.as_bytes());
    let json_lines = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    // The span id of a flat line, or of a one-span OTLP/JSON request (the
    // example's last line is one).
    let span_id = |v: &serde_json::Value| -> String {
        let id = match v.get("span_id") {
            Some(id) => id,
            None => {
                let spans = &v["resourceSpans"][0]["scopeSpans"][0]["spans"];
                assert_eq!(spans.as_array().unwrap().len(), 1, "{v}");
                &spans[0]["spanId"]
            }
        };
        id.as_str().unwrap().to_string()
    };
    // Written lowercase, as W3C ids are (the example has one in capitals).
    let sent: Vec<String> = json_lines(&input)
        .iter()
        .map(|v| span_id(v).to_lowercase())
        .collect();
    assert_eq!(sent.len(), 4);
    let flat_text = std::fs::read_to_string(&flat).unwrap();
    assert!(flat_text.ends_with('\n'));
    let flat_lines = json_lines(&flat_text);
    assert!(flat_lines.iter().all(|l| l.get("span_id").is_some()));
    assert_eq!(flat_lines.iter().map(span_id).collect::<Vec<_>>(), sent);
    let otlp_text = std::fs::read_to_string(&otlp).unwrap();
    assert!(otlp_text.ends_with('\n'));
    let requests = json_lines(&otlp_text);
    assert!(requests.iter().all(|r| r.get("resourceSpans").is_some()));
    assert_eq!(requests.iter().map(span_id).collect::<Vec<_>>(), sent);
}
