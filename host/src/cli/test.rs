//! `plume test FILE`: pipeline unit tests declared in TOML, as `vector test`
//! does for Vector configs. Each test pushes its input spans through the
//! pipeline (in event time, every trace released at the end) and checks the
//! output spans' attributes, the spans dropped and the alerts raised.
//!
//! ```toml
//! pipeline = "pipeline.toml"          # relative to this file
//!
//! [[test]]
//! name = "a failed tool call is classified"
//! # Spans in plume's flat JSON; trace_id, span_id and times may be left out
//! # (one trace per test, ids in order); `parent` names another input span.
//! input = [
//!   { name = "invoke_agent support" },
//!   { name = "execute_tool search_docs", parent = "invoke_agent support", status = { code = "error" },
//!     attributes = { "gen_ai.tool.name" = "search_docs" } },
//! ]
//! # input_file = "spans.jsonl"        # or spans from a file (relative to this file)
//! expect_dropped = []                 # names of input spans that must not come out
//!
//! [[test.expect]]
//! span = "execute_tool search_docs"   # an output span, by name (or span_id)
//! attributes = { "team.owner" = "search-team" }
//! absent = ["team.error.kind"]
//!
//! [[test.expect_alert]]
//! rule = "error_rate"
//! severity = "page"                   # optional
//!
//! [[test.expect_output]]              # with `keep_exports = true` at the top:
//! path = "out.tsv"                    # a file the pipeline's exporters write
//! contains = ["chat gpt-4o"]          # (removed before the test)
//! ```

use super::load;
use crate::config::PluginSpec;
use crate::engine::{Engine, EngineOptions, HoldClock};
use crate::plugin::PluginKind;
use crate::plugin::runtime::Runtime;
use crate::span::jsonl::parse_line;
use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `plume test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// The tests (TOML).
    file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// The pipeline under test, relative to the test file.
    pipeline: PathBuf,
    /// Also run the pipeline's own exporters (to test an exporter plugin).
    #[serde(default)]
    keep_exports: bool,
    #[serde(default)]
    test: Vec<TestCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: String,
    #[serde(default)]
    input: Vec<Map<String, Value>>,
    input_file: Option<PathBuf>,
    #[serde(default)]
    expect: Vec<Expect>,
    #[serde(default)]
    expect_dropped: Vec<String>,
    #[serde(default)]
    expect_alert: Vec<ExpectAlert>,
    #[serde(default)]
    expect_output: Vec<ExpectOutput>,
}

/// A file an exporter writes (`keep_exports = true`): removed before the
/// test, then expected to contain each string.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectOutput {
    path: PathBuf,
    #[serde(default)]
    contains: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    span: String,
    #[serde(default)]
    attributes: Map<String, Value>,
    #[serde(default)]
    absent: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectAlert {
    rule: String,
    severity: Option<String>,
}

pub(super) fn test(args: &TestArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let tests: TestFile = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", args.file.display(), e.message().trim()))?;
    let base = args.file.parent().unwrap_or(Path::new("."));
    let pipeline_path = base.join(&tests.pipeline);
    let pipeline = match load(Some(&pipeline_path)) {
        Ok(p) => p,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if tests.test.is_empty() {
        bail!("{}: no [[test]]", args.file.display());
    }
    let rt = Runtime::new()?;
    let dir = std::env::temp_dir().join(format!("plume-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut failed = 0;
    for (i, case) in tests.test.iter().enumerate() {
        let problems = run_case(&pipeline, tests.keep_exports, &rt, base, &dir, i, case)
            .unwrap_or_else(|e| vec![format!("{e:#}")]);
        if problems.is_empty() {
            println!("test {} ... ok", case.name);
        } else {
            failed += 1;
            println!("test {} ... FAILED", case.name);
            for p in problems {
                println!("{}", indent(&p));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\n{} passed, {failed} failed ({})",
        tests.test.len() - failed,
        args.file.display()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

/// The input spans of a test as flat JSON lines, with defaults filled in.
fn input_lines(base: &Path, n: usize, case: &TestCase) -> anyhow::Result<Vec<String>> {
    let mut spans = case.input.clone();
    // OTLP/JSON lines of an input file are taken as they are, after the rest.
    let mut otlp_lines = Vec::new();
    if let Some(f) = &case.input_file {
        let path = base.join(f);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        for (k, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            match serde_json::from_str::<Map<String, Value>>(line) {
                Ok(m) if m.contains_key("resourceSpans") => otlp_lines.push(line.to_string()),
                Ok(m) => spans.push(m),
                Err(e) => bail!("{}:{}: {e}", path.display(), k + 1),
            }
        }
    }
    let trace = format!("{:032x}", n + 1);
    let ids: Vec<String> = (0..spans.len())
        .map(|j| format!("{:016x}", j + 1))
        .collect();
    let by_name: std::collections::HashMap<String, String> = spans
        .iter()
        .zip(&ids)
        .filter_map(|(s, id)| Some((s.get("name")?.as_str()?.to_string(), id.clone())))
        .collect();
    let t0: u64 = 1_700_000_000_000_000_000;
    let mut lines = Vec::new();
    for (j, mut s) in spans.into_iter().enumerate() {
        if let Some(parent) = s.remove("parent") {
            let name = parent.as_str().unwrap_or_default();
            let id = by_name.get(name).with_context(|| {
                format!("input span {j}: parent {name:?} is not an input span name")
            })?;
            s.insert("parent_span_id".into(), Value::from(id.clone()));
        }
        s.entry("trace_id").or_insert_with(|| trace.clone().into());
        s.entry("span_id").or_insert_with(|| ids[j].clone().into());
        s.entry("name")
            .or_insert_with(|| format!("span-{j}").into());
        let start = t0 + j as u64 * 1_000_000;
        s.entry("start_time_unix_nano")
            .or_insert_with(|| start.into());
        s.entry("end_time_unix_nano")
            .or_insert_with(|| (start + 1_000_000).into());
        lines.push(Value::Object(s).to_string());
    }
    lines.extend(otlp_lines);
    Ok(lines)
}

fn run_case(
    pipeline: &crate::config::Pipeline,
    keep_exports: bool,
    rt: &Runtime,
    base: &Path,
    dir: &Path,
    n: usize,
    case: &TestCase,
) -> anyhow::Result<Vec<String>> {
    let lines = input_lines(base, n, case)?;
    let mut spans = Vec::new();
    for (k, l) in lines.iter().enumerate() {
        parse_line(l, &mut spans).map_err(|e| anyhow::anyhow!("input span {k}: {e}"))?;
    }
    let input_names: Vec<String> = spans.iter().map(|s| s.name.to_string()).collect();
    let out = dir.join(format!("test-{n}.jsonl"));
    for o in &case.expect_output {
        let _ = std::fs::remove_file(&o.path);
    }
    let mut p = pipeline.clone();
    if !keep_exports {
        p.exports.clear();
    }
    p.exports.push(PluginSpec::builtin(
        "test-output",
        PluginKind::Exporter,
        "jsonl",
        serde_json::json!({ "path": out.display().to_string() }).to_string(),
        "plume test",
    ));
    let options = EngineOptions {
        clock: HoldClock::Event,
        ..EngineOptions::default()
    };
    let mut engine = Engine::build(&p, rt, &options).map_err(|e| anyhow::anyhow!("{e}"))?;
    engine.process(spans);
    engine.flush();
    let report = engine.report();
    drop(engine);
    let output: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let spans_out: Vec<&Value> = output
        .iter()
        .filter(|v| v.get("type").is_none_or(|t| t != "alert"))
        .collect();
    let mut problems = Vec::new();
    for e in &case.expect {
        let Some(span) = spans_out
            .iter()
            .find(|s| s["name"] == e.span.as_str() || s["span_id"] == e.span.as_str())
        else {
            problems.push(format!(
                "expected span {:?} is not in the output (output spans: {})",
                e.span,
                names(&spans_out)
            ));
            continue;
        };
        let attrs = &span["attributes"];
        for (key, want) in &e.attributes {
            let got = attrs.get(key);
            if !got.is_some_and(|g| same(g, want)) {
                problems.push(format!(
                    "span {:?}: attribute {key}\n  expected: {want}\n  got:      {}",
                    e.span,
                    got.map_or("(absent)".to_string(), Value::to_string)
                ));
            }
        }
        for key in &e.absent {
            if let Some(got) = attrs.get(key) {
                problems.push(format!(
                    "span {:?}: attribute {key} should be absent, got {got}",
                    e.span
                ));
            }
        }
    }
    for name in &case.expect_dropped {
        if !input_names.contains(name) {
            problems.push(format!(
                "expect_dropped names {name:?}, which is not an input span"
            ));
        } else if spans_out.iter().any(|s| s["name"] == name.as_str()) {
            problems.push(format!(
                "span {name:?} should have been dropped, but came out"
            ));
        }
    }
    let alerts: Vec<&Value> = report
        .get("alerts")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    for want in &case.expect_alert {
        let found = alerts.iter().any(|a| {
            a["rule"] == want.rule.as_str()
                && want
                    .severity
                    .as_ref()
                    .is_none_or(|s| a["severity"] == s.as_str())
        });
        if !found {
            let mut seen = String::new();
            for a in &alerts {
                let _ = write!(seen, "{} ({}); ", a["rule"], a["severity"]);
            }
            problems.push(format!(
                "expected alert {:?}{} was not raised (alerts: {})",
                want.rule,
                want.severity
                    .as_ref()
                    .map(|s| format!(" with severity {s}"))
                    .unwrap_or_default(),
                if seen.is_empty() { "none".into() } else { seen }
            ));
        }
    }
    for o in &case.expect_output {
        match std::fs::read_to_string(&o.path) {
            Err(e) => problems.push(format!("output {}: {e}", o.path.display())),
            Ok(text) => {
                for want in &o.contains {
                    if !text.contains(want.as_str()) {
                        problems.push(format!(
                            "output {} does not contain {want:?}; it is:\n{}",
                            o.path.display(),
                            text.lines().take(20).collect::<Vec<_>>().join("\n")
                        ));
                    }
                }
            }
        }
    }
    Ok(problems)
}

fn names(spans: &[&Value]) -> String {
    let v: Vec<String> = spans.iter().map(|s| s["name"].to_string()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Equal as JSON, numbers compared by value (1 == 1.0).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}
