//! `plume replay`: a span file through a pipeline, in event time.

use crate::config::PluginSpec;
use crate::engine::batcher::Batcher;
use crate::engine::{Engine, EngineOptions, HoldClock, write_summary};
use crate::ingest::jsonl::read_to_end;
use crate::plugin::PluginKind;
use crate::plugin::runtime::Runtime;
use anyhow::Context;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `plume replay`.
#[derive(clap::Args)]
pub struct ReplayArgs {
    /// pipeline.toml
    file: PathBuf,
    /// Span JSONL to read (flat or OTLP/JSON lines; `-` is stdin).
    #[arg(long)]
    input: PathBuf,
    /// Write the processed spans here (flat JSONL). Replaces the pipeline's
    /// own [[export]]s unless --with-exports is given.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Write the final report (JSON) here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Also run the pipeline's [[export]]s when --output is given.
    #[arg(long)]
    with_exports: bool,
    /// Exit 1 if any input line was malformed (they are skipped either way).
    #[arg(long)]
    strict: bool,
}

/// The `--output` file as a `builtin:jsonl` export, so replay writes through
/// the same exporter as any pipeline.
fn output_export(path: &std::path::Path) -> PluginSpec {
    let config = serde_json::json!({ "path": path.display().to_string() }).to_string();
    PluginSpec::builtin(
        "replay-output",
        PluginKind::Exporter,
        "jsonl",
        config,
        "--output",
    )
}

pub(super) fn replay(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let mut pipeline = match super::load(Some(&args.file)) {
        Ok(p) => p,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(out) = &args.output {
        // Start from an empty file: a replay's output is the replay alone.
        if out.as_os_str() != "-" {
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(out, b"").with_context(|| format!("cannot write {}", out.display()))?;
        }
        if !args.with_exports {
            pipeline.exports.clear();
        }
        pipeline.exports.push(output_export(out));
    }
    let rt = Runtime::new()?;
    let options = EngineOptions {
        clock: HoldClock::Event,
        ..EngineOptions::default()
    };
    let mut engine = match Engine::build(&pipeline, &rt, &options) {
        Ok(e) => e,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let source = args.input.display().to_string();
    let mut batcher = Batcher::new(pipeline.batch_max_spans);
    let read = {
        let mut on_spans = |spans| batcher.push(spans, |b| engine.process(b));
        if source == "-" {
            read_to_end("-", crate::ingest::jsonl::stdin(), &mut on_spans)
        } else {
            let file = std::fs::File::open(&args.input)
                .with_context(|| format!("cannot open {source}"))?;
            read_to_end(
                &source,
                BufReader::with_capacity(1 << 20, file),
                &mut on_spans,
            )
        }
    }
    .with_context(|| format!("reading {source}"))?;
    if let Some(b) = batcher.take() {
        engine.process(b);
    }
    engine.flush();

    let mut stats = engine.stats();
    stats.lines_read = read.lines;
    stats.lines_failed = read.failed;
    let mut report = engine.report();
    if let Some(obj) = report.as_object_mut() {
        obj.insert("pipeline".into(), serde_json::to_value(&stats)?);
        obj.insert("input".into(), serde_json::to_value(&read)?);
    }
    if let Some(path) = &args.report {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    write_summary(&mut std::io::stderr(), &stats)?;
    for e in &read.errors {
        eprintln!("plume: skipped {e}");
    }
    Ok(if args.strict && read.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
