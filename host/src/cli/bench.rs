//! `plume bench`: synthetic GenAI spans through a pipeline, next to a
//! passthrough (parse, batch, write; no plugins) measured in the same run, and
//! the plugin boundary measured against the same work done natively.

use crate::bench::{ThreadCpu, synthetic_spans};
use crate::config::{Limits, Pipeline, PluginSpec};
use crate::engine::EngineOptions;
use crate::engine::batcher::Batcher;
use crate::engine::hold::{Hold, HoldSettings};
use crate::engine::shards::{Plan, Runner};
use crate::ingest::jsonl::{Lines, read_to_end};
use crate::plugin::PluginKind;
use crate::plugin::bindings::Processor;
use crate::plugin::bindings::evaluator::Evaluator;
use crate::plugin::bindings::exporter::Exporter;
use crate::plugin::bindings::router::Router;
use crate::plugin::bindings::types::Batch as WitBatch;
use crate::plugin::instance::{RebuildCost, Sandbox, World};
use crate::plugin::projection::Projection;
use crate::plugin::runtime::Runtime;
use crate::span::{AttrValue, Key, Span, flat, otlp_proto};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `plume bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// pipeline.toml (default: the embedded default pipeline).
    file: Option<PathBuf>,
    /// Spans per round.
    #[arg(long, default_value_t = 200_000)]
    spans: usize,
    /// Rounds; the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Skip the plugin-boundary measurement.
    #[arg(long)]
    no_boundary: bool,
    /// Only the plugin-boundary measurement (for profiling it).
    #[arg(long, conflicts_with = "no_boundary")]
    boundary_only: bool,
    /// Processor shards, as `[engine] shards` (1: the whole pipeline on this
    /// thread). Per-entry times are then summed over the shards.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    shards: u32,
    /// Run every entry with `limits.timeout_ms = 0`: no time limit, so no
    /// epoch checks in the compiled code (measures what they cost).
    #[arg(long)]
    no_time_limits: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub(super) fn bench(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let mut pipeline = match super::load(args.file.as_deref()) {
        Ok(p) => p,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.no_time_limits {
        for spec in pipeline.entries_mut() {
            spec.limits.timeout_ms = 0;
        }
    }
    let spans = synthetic_spans(args.spans, 42, 1_764_000_000_000_000_000);
    let mut input = Vec::with_capacity(spans.len() * 700);
    for s in &spans {
        flat::write(&mut input, s);
        input.push(b'\n');
    }
    // First, while the heap is small, so that its growth is the hold's.
    let hold = if args.boundary_only {
        json!(null)
    } else {
        hold_memory(&pipeline.hold, 100_000, 10)
    };
    let rt = Runtime::new()?;
    let options = EngineOptions {
        discard_output: true,
        ..EngineOptions::default()
    };
    let mut pass_rates = Vec::new();
    let mut pipe_rates = Vec::new();
    // CPU time over wall time of each pipeline round: the cores it kept busy.
    let mut cores_used = Vec::new();
    // CPU of the pipeline's threads by role (last round), ns/span.
    let mut thread_ns = BTreeMap::new();
    let mut stage_ns: Vec<(String, Vec<f64>)> = Vec::new();
    let mut stage_memory: Vec<u64> = Vec::new();
    // Host work within each entry (last round): projection, applying edits.
    let mut stage_split: Vec<[f64; 2]> = Vec::new();
    let pipeline_rounds = if args.boundary_only {
        0
    } else {
        args.rounds.max(1)
    };
    for _ in 0..pipeline_rounds {
        // Passthrough: the host's own work, no plugins.
        let started = Instant::now();
        let mut out = Vec::with_capacity(1 << 20);
        let mut batcher = Batcher::new(pipeline.batch_max_spans);
        let mut write_batch = |b: Vec<Span>| {
            out.clear();
            for s in &b {
                flat::write(&mut out, s);
                out.push(b'\n');
            }
            std::hint::black_box(&out);
        };
        read_to_end("bench", &input[..], |s| batcher.push(s, &mut write_batch))?;
        if let Some(b) = batcher.take() {
            write_batch(b);
        }
        pass_rates.push(spans.len() as f64 / started.elapsed().as_secs_f64());

        // The pipeline (fresh engines each round: evaluator state starts empty).
        let plan = match Plan::build(&pipeline, &rt, &options, args.shards as usize) {
            Ok(p) => p,
            Err(errors) => {
                eprintln!("{errors}");
                return Ok(ExitCode::FAILURE);
            }
        };
        let mut runner = Runner::start(plan, None)?;
        // The input is all there: shards get whole batches until the end.
        runner.set_backlog(true);
        let threads = ThreadCpu::start();
        let cpu_before = crate::bench::cpu_seconds();
        let started = Instant::now();
        if runner.shards_parse_lines() {
            // As `plume run` reads JSONL for such a pipeline: the shards
            // parse the lines.
            read_to_end("bench", &input[..], |l: Lines| runner.lines(l))?;
        } else {
            let mut batcher = Batcher::new(pipeline.batch_max_spans);
            read_to_end("bench", &input[..], |s: Vec<Span>| {
                batcher.push(s, |b| runner.process(b))
            })?;
            if let Some(b) = batcher.take() {
                runner.process(b);
            }
        }
        // What the trace hold still holds, through every thread.
        let stats = runner.finish();
        let wall = started.elapsed().as_secs_f64();
        thread_ns = (threads.stop().into_iter())
            .map(|(role, secs)| (role, (secs * 1e9 / spans.len() as f64).round()))
            .collect();
        pipe_rates.push(spans.len() as f64 / wall);
        if let (Some(a), Some(b)) = (cpu_before, crate::bench::cpu_seconds()) {
            cores_used.push((b - a) / wall);
        }
        if stage_ns.is_empty() {
            stage_ns.push(("(trace hold)".into(), Vec::new()));
        }
        stage_ns[0]
            .1
            .push(stats.hold.nanos as f64 / spans.len() as f64);
        for (i, s) in stats
            .stages
            .iter()
            .chain(&stats.evaluators)
            .chain(&stats.router)
            .chain(&stats.exports)
            .enumerate()
        {
            if stage_ns.len() <= i + 1 {
                stage_ns.push((s.name.clone(), Vec::new()));
                stage_memory.push(0);
                stage_split.push([0.0; 2]);
            }
            stage_ns[i + 1].1.push(s.nanos as f64 / spans.len() as f64);
            stage_split[i] =
                [s.project_nanos, s.apply_nanos].map(|n| n as f64 / spans.len() as f64);
            stage_memory[i] = stage_memory[i].max(s.memory_bytes);
        }
    }
    let passthrough = median(pass_rates);
    let piped = median(pipe_rates);
    let stages: Vec<_> = stage_ns
        .into_iter()
        .enumerate()
        .map(|(i, (name, v))| {
            // The hold (first) is host memory, not a plugin's.
            let memory = i.checked_sub(1).map(|j| stage_memory[j]);
            let split = i.checked_sub(1).map(|j| stage_split[j]);
            json!({
                "name": name,
                "ns_per_span": median(v).round(),
                "memory_bytes": memory,
                "project_ns_per_span": split.map(|s| s[0].round()),
                "apply_ns_per_span": split.map(|s| s[1].round()),
            })
        })
        .collect();
    let rebuilds = if args.boundary_only {
        vec![]
    } else {
        rebuild_costs(&rt, &pipeline)?
    };
    let boundary = if args.no_boundary {
        vec![]
    } else {
        boundary(&rt, &spans, args.rounds.max(1))?
    };
    let report = json!({
        "spans": spans.len(),
        "pipeline": pipeline.file,
        "batch_max_spans": pipeline.batch_max_spans,
        "shards": args.shards,
        "time_limits": !args.no_time_limits,
        "passthrough_spans_per_s": passthrough.round(),
        "pipeline_spans_per_s": piped.round(),
        "pipeline_over_passthrough": (piped / passthrough * 1000.0).round() / 1000.0,
        "pipeline_cores_used": (median(cores_used.clone()) * 100.0).round() / 100.0,
        "pipeline_thread_cpu_ns_per_span": thread_ns,
        "stages": stages,
        "boundary": boundary,
        "hold": hold,
        "rebuild_after_trap": rebuilds,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} spans through {} (median of {} rounds, {} shard{}{})",
            spans.len(),
            pipeline.file,
            args.rounds.max(1),
            args.shards,
            if args.shards == 1 { "" } else { "s" },
            if args.no_time_limits {
                ", no time limits"
            } else {
                ""
            }
        );
        println!("  passthrough  {:>12.0} spans/s", passthrough);
        println!(
            "  pipeline     {:>12.0} spans/s  ({:.0}% of passthrough, {:.2} cores busy)",
            piped,
            piped / passthrough * 100.0,
            median(cores_used.clone())
        );
        if args.shards > 1 && !thread_ns.is_empty() {
            let roles: Vec<String> = ["head", "shards", "tail"]
                .iter()
                .filter_map(|r| Some(format!("{r} {}", thread_ns.get(r)?)))
                .collect();
            println!("  threads' CPU, ns/span: {}", roles.join(", "));
        }
        for s in &stages {
            let memory = s["memory_bytes"]
                .as_u64()
                .map(|b| format!("  memory {:>5.1} MiB", b as f64 / (1 << 20) as f64))
                .unwrap_or_default();
            let split = match (
                s["project_ns_per_span"].as_f64(),
                s["apply_ns_per_span"].as_f64(),
            ) {
                (Some(p), Some(a)) => format!("  (project {p:>5}, apply {a:>5})"),
                _ => String::new(),
            };
            println!(
                "  stage {:<24} {:>8} ns/span{memory}{split}",
                s["name"].as_str().unwrap_or(""),
                s["ns_per_span"]
            );
        }
        if !hold.is_null() {
            println!(
                "  trace hold at {} spans/s: at most {} spans held, RSS +{} MB ({} bytes/span), {} traces released early",
                hold["arrival_spans_per_s"],
                hold["held_max"],
                hold["rss_growth_bytes"].as_u64().unwrap_or(0) >> 20,
                hold["bytes_per_held_span"],
                hold["released_early"]
            );
        }
        if !rebuilds.is_empty() {
            println!("  rebuild after a trap (new store and instance, then init):");
            for r in &rebuilds {
                println!(
                    "    {:<24} {:>8} us  (instance alone {} us)",
                    r["name"].as_str().unwrap_or(""),
                    r["rebuild_us"],
                    r["instantiate_us"]
                );
            }
        }
        if !boundary.is_empty() {
            println!(
                "  boundary: read 3 attributes, write 1 (bench-probe vs the same work native)"
            );
            for b in &boundary {
                println!(
                    "    batch {:>5}: wasm {:>7} ns/span, native {:>7} ns/span, ratio {}",
                    b["batch"],
                    b["wasm_ns_per_span"],
                    b["native_ns_per_span"],
                    b["wasm_over_native"]
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Rebuilds of each entry's instance, as after a trap, timed per entry.
fn rebuild_costs(rt: &Runtime, pipeline: &Pipeline) -> anyhow::Result<Vec<serde_json::Value>> {
    const TRIES: u32 = 50;
    fn cost<W: World>(rt: &Runtime, spec: &PluginSpec) -> anyhow::Result<RebuildCost> {
        let (mut sandbox, _) =
            Sandbox::<W>::new(rt, spec).map_err(|e| anyhow::anyhow!("{}: {e}", spec.name))?;
        sandbox
            .time_rebuilds(TRIES)
            .map_err(|e| anyhow::anyhow!("{}: {e}", spec.name))
    }
    let us = |d: std::time::Duration| (d.as_secs_f64() * 1e7).round() / 10.0;
    let mut out = Vec::new();
    for spec in pipeline.entries() {
        let c = match spec.kind {
            PluginKind::Processor => cost::<Processor>(rt, spec)?,
            PluginKind::Evaluator => cost::<Evaluator>(rt, spec)?,
            PluginKind::Router => cost::<Router>(rt, spec)?,
            PluginKind::Exporter => cost::<Exporter>(rt, spec)?,
        };
        out.push(json!({
            "name": spec.name,
            "instantiate_us": us(c.instantiate),
            "rebuild_us": us(c.rebuild),
        }));
    }
    Ok(out)
}

/// Memory held by the trace hold when spans arrive at `rate` per second for
/// `seconds` (a virtual clock, so the machine's speed does not matter): spans
/// are made as they arrive, decoded from OTLP protobuf as the service's
/// receivers decode them, and dropped when released, so the growth of the
/// resident set at the end is what the hold keeps.
fn hold_memory(settings: &HoldSettings, rate: u64, seconds: u64) -> serde_json::Value {
    let mut hold = Hold::new(settings.clone());
    let rss_before = resident_bytes();
    let chunk = 256u64;
    let total = rate * seconds;
    let mut released = 0u64;
    let mut sent = 0u64;
    while sent < total {
        let now = sent * 1_000_000_000 / rate;
        let made = synthetic_spans(chunk as usize, sent, 1_764_000_000_000_000_000 + now);
        let wire = otlp_proto::to_proto(&made).encode_to_vec();
        drop(made);
        let request = ExportTraceServiceRequest::decode(&wire[..]).expect("own encoding decodes");
        let spans = otlp_proto::from_proto(request).spans;
        sent += spans.len() as u64;
        hold.push(spans, now);
        hold.release_due(now, |g| released += g.len() as u64);
    }
    let stats = hold.stats();
    let growth = resident_bytes().saturating_sub(rss_before);
    json!({
        "arrival_spans_per_s": rate,
        "seconds": seconds,
        "wait_s": settings.wait.as_secs_f64(),
        "after_root_s": settings.after_root.as_secs_f64(),
        "max_spans": settings.max_spans,
        "held_at_end": stats.held,
        "held_max": stats.held_max,
        "released_early": stats.released_early,
        "rss_growth_bytes": growth,
        "bytes_per_held_span": growth.checked_div(stats.held).unwrap_or(0),
        "ns_per_span": stats.nanos / total.max(1),
    })
}

/// The resident set size, from /proc (0 where there is none).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// USD per token (input, output); the same table as `plugins/bench-probe`.
const PRICES: &[(&str, f64, f64)] = &[
    ("gpt-4o", 2.5e-6, 1.0e-5),
    ("gpt-4o-mini", 1.5e-7, 6.0e-7),
    ("claude-sonnet-4-5", 3.0e-6, 1.5e-5),
    ("claude-haiku-4-5", 1.0e-6, 5.0e-6),
    ("gemini-2.5-pro", 1.25e-6, 1.0e-5),
];

/// The probe's work done natively in the host.
fn native_probe(batch: &mut [Span], cost_key: &Key) {
    for span in batch {
        let Some(model) = span
            .attributes
            .get("gen_ai.request.model")
            .and_then(AttrValue::as_str)
        else {
            continue;
        };
        let Some(&(_, pi, po)) = PRICES.iter().find(|p| p.0 == model) else {
            continue;
        };
        let input = span
            .attributes
            .get("gen_ai.usage.input_tokens")
            .and_then(AttrValue::as_f64)
            .unwrap_or(0.0);
        let output = span
            .attributes
            .get("gen_ai.usage.output_tokens")
            .and_then(AttrValue::as_f64)
            .unwrap_or(0.0);
        span.attributes
            .set(cost_key.clone(), AttrValue::Float(input * pi + output * po));
    }
}

/// ns/span of `builtin:bench-probe` (projection, call, applying the edits)
/// against `native_probe`, per batch size, interleaved in one run.
fn boundary(rt: &Runtime, spans: &[Span], rounds: usize) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut spec = PluginSpec::builtin(
        "bench-probe",
        PluginKind::Processor,
        "bench-probe",
        "{}".into(),
        "bench",
    );
    spec.limits = Limits {
        memory_mb: 256,
        timeout_ms: 10_000,
        fuel: None,
    };
    let (mut sandbox, m) = Sandbox::<Processor>::new(rt, &spec).map_err(anyhow::Error::msg)?;
    let projection =
        Projection::new(m.reads, m.writes, m.require_any, m.sparse).map_err(anyhow::Error::msg)?;
    let cost_key = Key::from("gen_ai.usage.cost");
    let n = spans.len().min(100_000);
    let mut results = Vec::new();
    for &size in &[1usize, 64, 256, 1024] {
        let mut batches: Vec<Vec<Span>> = spans[..n].chunks(size).map(|c| c.to_vec()).collect();
        let mut scratch = WitBatch::default();
        let mut rows = Vec::new();
        let (mut wasm, mut native) = (Vec::new(), Vec::new());
        // Where the wasm path's time goes: projecting, the call (lowering,
        // guest work, lifting), applying the edits.
        let (mut t_project, mut t_call, mut t_apply) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let started = Instant::now();
            let (mut p, mut c, mut a) = (0u128, 0u128, 0u128);
            for b in &mut batches {
                let t0 = Instant::now();
                projection.project(b, &mut scratch, &mut rows);
                let t1 = Instant::now();
                p += (t1 - t0).as_nanos();
                if scratch.rows == 0 {
                    continue;
                }
                let result = sandbox
                    .process(&scratch)
                    .map_err(|e| anyhow::anyhow!("bench-probe {e}"))?;
                let t2 = Instant::now();
                c += (t2 - t1).as_nanos();
                let writes = projection
                    .writes_of(&result.edits, rows.len())
                    .map_err(anyhow::Error::msg)?;
                projection.apply(b, &rows, writes);
                a += t2.elapsed().as_nanos();
            }
            wasm.push(started.elapsed().as_nanos() as f64 / n as f64);
            t_project.push(p as f64 / n as f64);
            t_call.push(c as f64 / n as f64);
            t_apply.push(a as f64 / n as f64);
            let started = Instant::now();
            for b in &mut batches {
                native_probe(b, &cost_key);
            }
            native.push(started.elapsed().as_nanos() as f64 / n as f64);
        }
        let (w, nat) = (median(wasm), median(native));
        results.push(json!({
            "batch": size,
            "wasm_ns_per_span": w.round(),
            "native_ns_per_span": nat.round(),
            "wasm_over_native": (w / nat * 100.0).round() / 100.0,
            "wasm_split_ns_per_span": {
                "project": median(t_project).round(),
                "call": median(t_call).round(),
                "apply": median(t_apply).round(),
            },
        }));
    }
    Ok(results)
}
