//! The command line: `run`, `check`, `replay`, `bench`, `load`, `report`.

mod bench;
mod load;
mod plugin_new;
mod replay;
mod report;
mod run;
mod test;

use crate::config::{self, Pipeline};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// plume: a WebAssembly plugin host for observability pipelines of LLM agents.
#[derive(Parser)]
#[command(name = "plume", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline as a service until SIGINT/SIGTERM (drains, then exits 0).
    /// Without FILE, the embedded default pipeline.
    Run {
        /// pipeline.toml
        file: Option<PathBuf>,
    },
    /// Validate a pipeline (parse, check, instantiate every plugin); exit 0 or 1.
    Check {
        /// pipeline.toml
        file: PathBuf,
    },
    /// Push a span file through a pipeline in event time, write the processed
    /// spans and the final report, and exit.
    Replay(replay::ReplayArgs),
    /// Synthetic GenAI spans through a pipeline: spans/s and per-stage cost.
    Bench(bench::BenchArgs),
    /// Load-test the service on loopback: OTLP/HTTP in, OTLP/HTTP out to a
    /// backend in this process; spans/s and added latency.
    Load(load::LoadArgs),
    /// Show a report section (latency, cost, slo, alerts, traces) as a table.
    Report(report::ReportArgs),
    /// Run pipeline unit tests declared in TOML (input spans, expected
    /// attributes, dropped spans and alerts); exit 1 if any fails.
    Test(test::TestArgs),
    /// Plugin projects: `plume plugin new NAME --lang rust|python|js`.
    #[command(subcommand)]
    Plugin(plugin_new::PluginCommand),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("PLUME_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { file } => run::run(file.as_deref()),
        Command::Check { file } => check(&file),
        Command::Replay(args) => replay::replay(&args),
        Command::Bench(args) => bench::bench(&args),
        Command::Load(args) => load::load(&args),
        Command::Report(args) => report::report(&args),
        Command::Test(args) => test::test(&args),
        Command::Plugin(cmd) => plugin_new::plugin(&cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("plume: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads a pipeline file, or the embedded default.
pub(crate) fn load(file: Option<&Path>) -> Result<Pipeline, config::ConfigErrors> {
    match file {
        Some(f) => config::load(f),
        None => config::parse(
            "<embedded default pipeline>",
            config::DEFAULT_PIPELINE,
            |n| std::env::var(n).ok(),
        ),
    }
}

fn check(file: &Path) -> anyhow::Result<ExitCode> {
    let pipeline = match config::load(file) {
        Ok(p) => p,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let rt = crate::plugin::runtime::Runtime::new()?;
    // Instantiate without opening sinks, so `check` has no side effects.
    let options = crate::engine::EngineOptions {
        discard_output: true,
        ..crate::engine::EngineOptions::default()
    };
    match crate::engine::Engine::build(&pipeline, &rt, &options) {
        Ok(_) => {
            println!(
                "{}: ok ({} stages, {} evaluators, {} router, {} exports)",
                file.display(),
                pipeline.stages.len(),
                pipeline.evaluators.len(),
                usize::from(pipeline.router.is_some()),
                pipeline.exports.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            Ok(ExitCode::FAILURE)
        }
    }
}
