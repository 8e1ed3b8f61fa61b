//! `plume run`: the service. Sources feed a batcher (by size and time); one
//! engine thread processes batches in order; SIGINT/SIGTERM stop the sources,
//! the last partial batch is flushed, and the engine drains before exit.

use crate::engine::batcher::Batcher;
use crate::engine::{Engine, EngineOptions, write_summary};
use crate::ingest::jsonl::{ReadStats, follow, read_to_end};
use crate::plugin::runtime::Runtime;
use crate::span::{Batch, Span};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Batches in flight between the batcher and the engine: bounded, so a slow
/// pipeline slows the sources instead of growing the heap.
const ENGINE_QUEUE: usize = 16;

pub(super) fn run(file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let pipeline = match super::load(file) {
        Ok(p) => p,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if pipeline.ingest.otlp_http.is_some()
        || pipeline.ingest.otlp_grpc.is_some()
        || pipeline.api_listen.is_some()
    {
        tracing::warn!(
            "[ingest] otlp_http/otlp_grpc and [api] are not served by this version; only JSONL sources run"
        );
    }
    if pipeline.ingest.jsonl.is_empty() {
        eprintln!(
            "{}: [ingest] has no jsonl sources: nothing to run",
            pipeline.file
        );
        return Ok(ExitCode::FAILURE);
    }
    let rt = Runtime::new()?;
    let mut engine = match Engine::build(&pipeline, &rt, &EngineOptions::default()) {
        Ok(e) => e,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    tracing::info!(pipeline = %pipeline.file, sources = ?pipeline.ingest.jsonl, "plume running");

    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(ENGINE_QUEUE);
    let engine_thread = std::thread::Builder::new()
        .name("plume-engine".into())
        .spawn(move || {
            while let Some(batch) = batch_rx.blocking_recv() {
                engine.process(batch);
            }
            engine.flush();
            engine
        })?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let read = runtime.block_on(serve(
        pipeline.ingest.jsonl.clone(),
        pipeline.batch_max_spans,
        pipeline.batch_max_wait_ms,
        batch_tx,
    ));
    runtime.shutdown_timeout(Duration::from_secs(1));
    let engine = engine_thread
        .join()
        .map_err(|_| anyhow::anyhow!("engine thread panicked"))?;
    let mut stats = engine.stats();
    stats.lines_read = read.lines;
    stats.lines_failed = read.failed;
    write_summary(&mut std::io::stderr(), &stats)?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    sources: Vec<String>,
    max_spans: usize,
    max_wait_ms: u64,
    batch_tx: mpsc::Sender<Batch>,
) -> ReadStats {
    let stop = Arc::new(AtomicBool::new(false));
    let (span_tx, mut span_rx) = mpsc::channel::<Vec<Span>>(1024);
    let mut readers = Vec::new();
    for source in sources {
        let tx = span_tx.clone();
        let stop = stop.clone();
        readers.push(tokio::task::spawn_blocking(move || {
            let send = |spans: Vec<Span>| {
                let _ = tx.blocking_send(spans);
            };
            let result = if source == "-" {
                read_to_end("-", std::io::stdin().lock(), send)
            } else {
                follow(&source, stop, Duration::from_millis(200), send)
            };
            result.unwrap_or_else(|e| {
                tracing::error!(source, "source failed: {e}");
                ReadStats::default()
            })
        }));
    }
    drop(span_tx);

    let mut batcher = Batcher::new(max_spans);
    let mut flush_timer = tokio::time::interval(Duration::from_millis(max_wait_ms.max(1)));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            received = span_rx.recv() => match received {
                Some(spans) => {
                    let mut full = Vec::new();
                    batcher.push(spans, |b| full.push(b));
                    for b in full {
                        if batch_tx.send(b).await.is_err() {
                            break;
                        }
                    }
                }
                None => break, // every source finished
            },
            _ = flush_timer.tick() => {
                match batcher.take() {
                    Some(b) => {
                        let _ = batch_tx.send(b).await;
                    }
                    // An empty batch lets the engine release held traces
                    // that are due; skipped when the engine is busy anyway.
                    None => {
                        let _ = batch_tx.try_send(Vec::new());
                    }
                }
            }
            _ = &mut shutdown => {
                tracing::info!("shutting down: draining");
                stop.store(true, Ordering::Relaxed);
                // Sources that block on stdin cannot be interrupted; take what
                // has been read and stop.
                while let Ok(spans) = span_rx.try_recv() {
                    let mut full = Vec::new();
                    batcher.push(spans, |b| full.push(b));
                    for b in full {
                        let _ = batch_tx.send(b).await;
                    }
                }
                break;
            }
        }
    }
    if let Some(b) = batcher.take() {
        let _ = batch_tx.send(b).await;
    }
    drop(batch_tx);
    let mut total = ReadStats::default();
    for r in readers {
        // File readers see `stop` within one poll; stdin may block forever.
        if let Ok(Ok(stats)) = tokio::time::timeout(Duration::from_secs(1), r).await {
            total.merge(stats);
        }
    }
    total
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
