//! `plume run`: the service. Sources feed a batcher (by size and time); the
//! engine thread takes batches in order and runs the pipeline, itself or
//! with processor shards and a tail on threads of their own
//! (`engine::shards`); SIGINT/SIGTERM stop the sources, the last partial
//! batch is flushed, and the pipeline drains before exit.

use crate::api::{self, Api, EngineMsg};
use crate::config::IngestConfig;
use crate::engine::batcher::Batcher;
use crate::engine::shards::{Plan, Runner};
use crate::engine::{EngineOptions, write_summary};
use crate::ingest::SpanBudget;
use crate::ingest::jsonl::{Lines, ReadStats, follow, read_to_end};
use crate::ingest::otlp::{self, Receiver, ReceiverStats};
use crate::plugin::runtime::Runtime;
use crate::reload::Reloader;
use crate::span::Span;
use crate::wal::{Opened, Wal};
use anyhow::Context;
use std::collections::BTreeMap;
use std::net::SocketAddr;
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
    let otlp = |a: &Option<toml::Spanned<String>>| {
        a.as_ref()
            .and_then(|a| a.get_ref().parse::<SocketAddr>().ok())
    };
    let listen = Listen {
        http: otlp(&pipeline.ingest.otlp_http),
        grpc: otlp(&pipeline.ingest.otlp_grpc),
        api: None,
    };
    if pipeline.ingest.jsonl.is_empty() && listen.http.is_none() && listen.grpc.is_none() {
        eprintln!(
            "{}: [ingest] has no sources (jsonl, otlp_http, otlp_grpc): nothing to run",
            pipeline.file
        );
        return Ok(ExitCode::FAILURE);
    }
    let rt = Arc::new(Runtime::new()?);
    // Fixed for the life of the process (reloads too).
    let shards = pipeline.shard_count();
    let plan = match Plan::build(&pipeline, &rt, &EngineOptions::default(), shards) {
        Ok(p) => p,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    tracing::info!(pipeline = %pipeline.file, sources = ?pipeline.ingest.jsonl, shards, "plume running");

    let (span_tx, span_rx) = mpsc::channel::<Vec<Span>>(RECEIVER_QUEUE);
    let (batch_tx, mut batch_rx) = mpsc::channel::<EngineMsg>(ENGINE_QUEUE);
    let durable = match &pipeline.wal {
        None => None,
        Some(settings) => match Wal::open(settings.clone(), span_tx.clone()) {
            Ok(opened) => Some(opened),
            Err(e) => {
                eprintln!("{}: {e:#}", pipeline.file);
                return Ok(ExitCode::FAILURE);
            }
        },
    };
    let wal = durable.as_ref().map(|d| d.wal.clone());
    let mut runner = Runner::start(plan, wal.clone())?;
    // JSONL sources hand on lines unparsed where the shards parse them: no
    // trace hold and no log, which need spans before the shards. (A reload
    // that adds a hold has the head parse them.)
    let lines_to_shards = runner.shards_parse_lines();
    let engine_thread = std::thread::Builder::new()
        .name("plume-engine".into())
        .spawn(move || {
            while let Some(msg) = batch_rx.blocking_recv() {
                if !matches!(msg, EngineMsg::Spans(_) | EngineMsg::Lines(_)) {
                    // Nothing waits behind a report or a reload.
                    runner.set_backlog(false);
                }
                match msg {
                    EngineMsg::Spans(batch) => {
                        take_input(&mut runner, &batch_rx, |r| r.process(batch))
                    }
                    EngineMsg::Lines(lines) => {
                        take_input(&mut runner, &batch_rx, |r| r.lines(lines))
                    }
                    EngineMsg::Report(reply) => {
                        let stats = runner.stats();
                        let mut report = runner.report();
                        if let Some(obj) = report.as_object_mut() {
                            obj.insert(
                                "pipeline".into(),
                                serde_json::to_value(&stats).unwrap_or_default(),
                            );
                        }
                        let _ = reply.send((report, stats));
                    }
                    EngineMsg::Stats(reply) => {
                        let _ = reply.send(runner.stats());
                    }
                    EngineMsg::Swap(next, reply) => {
                        let _ = reply.send(runner.swap(*next));
                    }
                }
            }
            runner.finish()
        })?;
    let resume_at = match durable {
        Some(d) => {
            let resume_at = d.checkpoint.sources.clone();
            replay(d, &batch_tx, pipeline.batch_max_spans);
            resume_at
        }
        None => BTreeMap::new(),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listen = Listen {
        api: pipeline.api_listen,
        ..listen
    };
    let (ingest, admin_token) = (pipeline.ingest.clone(), pipeline.admin_token.clone());
    let api_tls = pipeline.api_tls.clone();
    let (max_spans, max_wait_ms) = (pipeline.batch_max_spans, pipeline.batch_max_wait_ms);
    let reloader = Arc::new(Reloader {
        file: file.map(Path::to_path_buf),
        runtime: rt,
        engine: batch_tx.clone(),
        running: std::sync::Mutex::new(pipeline),
        shards,
        busy: tokio::sync::Mutex::new(()),
    });
    let read = runtime.block_on(serve(
        ingest,
        listen,
        (max_spans, max_wait_ms),
        Intake {
            span_tx,
            span_rx,
            wal,
            resume_at,
            lines_to_shards,
        },
        batch_tx,
        Admin {
            reloader,
            token: admin_token,
            tls: api_tls,
        },
    ))?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    let mut stats = engine_thread
        .join()
        .map_err(|_| anyhow::anyhow!("engine thread panicked"))?;
    stats.lines_read = read.lines;
    // The lines the pipeline parsed, it counted (see `Runner::lines`).
    stats.lines_failed += read.failed;
    write_summary(&mut std::io::stderr(), &stats)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs input on the engine thread. Under load (more queued behind it) the
/// shards get whole batches; what waits for more is sent as soon as the
/// queue is empty.
fn take_input(
    runner: &mut Runner,
    queue: &mpsc::Receiver<EngineMsg>,
    run: impl FnOnce(&mut Runner),
) {
    runner.set_backlog(true);
    run(runner);
    if queue.is_empty() {
        runner.set_backlog(false);
    }
}

/// Runs what the log kept from the last run (not delivered before it ended)
/// before anything new is accepted.
fn replay(opened: Opened, engine: &mpsc::Sender<EngineMsg>, max_spans: usize) {
    let r = &opened.recovery;
    if r.torn_bytes > 0 || r.damaged_segments > 0 {
        tracing::warn!(
            torn_bytes = r.torn_bytes,
            damaged_segments = r.damaged_segments,
            "the log was not closed cleanly"
        );
    }
    if opened.replay.is_empty() {
        return;
    }
    let spans: usize = opened.replay.iter().map(Vec::len).sum();
    tracing::info!(
        records = opened.replay.len(),
        spans,
        "replaying spans logged but not delivered before the last stop"
    );
    let mut batcher = Batcher::new(max_spans);
    let send = |b| {
        let _ = engine.blocking_send(EngineMsg::Spans(b));
    };
    for record in opened.replay {
        batcher.push(record, send);
    }
    if let Some(b) = batcher.take() {
        send(b);
    }
}

/// Where the OTLP receivers listen.
struct Listen {
    http: Option<SocketAddr>,
    grpc: Option<SocketAddr>,
    api: Option<SocketAddr>,
}

/// Reloading the pipeline: by SIGHUP or `POST /admin/reload`.
struct Admin {
    reloader: Arc<Reloader>,
    token: Option<String>,
    /// `[api] tls`.
    tls: Option<crate::config::TlsFiles>,
}

/// Requests in flight from the receivers to the batcher: when full, OTLP
/// clients are told to retry (503 / UNAVAILABLE).
const RECEIVER_QUEUE: usize = 1024;

/// The spans' way in: the queue to the batcher, and the log in front of it.
struct Intake {
    span_tx: mpsc::Sender<Vec<Span>>,
    span_rx: mpsc::Receiver<Vec<Span>>,
    wal: Option<Wal>,
    /// Where to go on reading followed files (offsets from the log's checkpoint).
    resume_at: BTreeMap<String, u64>,
    /// JSONL sources hand on lines, not spans (see `Runner::lines`).
    lines_to_shards: bool,
}

async fn serve(
    ingest: IngestConfig,
    listen: Listen,
    (max_spans, max_wait_ms): (usize, u64),
    intake: Intake,
    batch_tx: mpsc::Sender<EngineMsg>,
    admin: Admin,
) -> anyhow::Result<ReadStats> {
    let Intake {
        span_tx,
        mut span_rx,
        wal,
        resume_at,
        lines_to_shards,
    } = intake;
    // Lines from the JSONL sources, when the shards parse them.
    let (lines_tx, mut lines_rx) = mpsc::channel::<Lines>(RECEIVER_QUEUE);
    let stop = Arc::new(AtomicBool::new(false));
    let (stop_servers, servers_stopped) = tokio::sync::watch::channel(false);
    let budget = Arc::new(SpanBudget::new(ingest.max_queued_spans));
    let receiver = Arc::new(Receiver {
        budget: budget.clone(),
        wal: wal.clone(),
        queue: span_tx.clone(),
        token: ingest.token.clone(),
        max_body_bytes: ingest.max_body_bytes,
        stats: Arc::new(ReceiverStats::default()),
    });
    let mut servers = Vec::new();
    let ingest_tls = rustls_config(ingest.tls.as_ref(), "[ingest] tls").await?;
    let api_tls = rustls_config(admin.tls.as_ref(), "[api] tls").await?;
    if let Some(addr) = listen.api {
        let listener = bind(addr, "[api] listen", "API").await?;
        let receivers =
            (listen.http.is_some() || listen.grpc.is_some()).then(|| receiver.stats.clone());
        let app = api::router(Arc::new(Api {
            engine: batch_tx.clone(),
            receivers,
            wal: wal.as_ref().map(Wal::counters),
            reloader: Some(admin.reloader.clone()),
            admin_token: admin.token.clone(),
            loopback: addr.ip().is_loopback(),
            budget_cache: std::sync::Mutex::new(None),
        }));
        servers.push(spawn_http(
            listener,
            app,
            "API",
            api_tls,
            servers_stopped.clone(),
        ));
    }
    if let Some(addr) = listen.http {
        let listener = bind(addr, "[ingest] otlp_http", "OTLP/HTTP receiver").await?;
        let app = otlp::http_router(receiver.clone());
        servers.push(spawn_http(
            listener,
            app,
            "OTLP/HTTP receiver",
            ingest_tls,
            servers_stopped.clone(),
        ));
    }
    if let Some(addr) = listen.grpc {
        let listener = bind(addr, "[ingest] otlp_grpc", "OTLP/gRPC receiver").await?;
        let service = otlp::grpc_service(receiver.clone());
        let stopped = servers_stopped.clone();
        let mut builder = tonic::transport::Server::builder();
        if let Some(t) = &ingest.tls {
            let read = |p: &Path| {
                std::fs::read(p)
                    .with_context(|| format!("[ingest] tls: cannot read {}", p.display()))
            };
            let identity = tonic::transport::Identity::from_pem(read(&t.cert)?, read(&t.key)?);
            builder = builder
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .context("[ingest] tls: the certificate or key is not usable")?;
        }
        servers.push(tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            if let Err(e) = builder
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, stop_requested(stopped))
                .await
            {
                tracing::error!("OTLP/gRPC receiver failed: {e}");
            }
        }));
    }
    drop(receiver);
    let mut readers = Vec::new();
    for source in ingest.jsonl {
        let tx = span_tx.clone();
        let lines_tx = lines_tx.clone();
        let stop = stop.clone();
        let wal = wal.clone();
        let budget = budget.clone();
        let start = resume_at.get(&source).copied().unwrap_or(0);
        readers.push(tokio::task::spawn_blocking(move || {
            let send = |spans: Vec<Span>| {
                budget.take(spans.len());
                let _ = tx.blocking_send(spans);
            };
            let send_lines = |lines: Lines| {
                budget.take(lines.len());
                let _ = lines_tx.blocking_send(lines);
            };
            // How often a followed file is checked for new lines: the latency
            // floor of a JSONL source (a stat and a read each time).
            let poll = Duration::from_millis(25);
            // Standard input cannot be read again: not logged.
            let stdin = || crate::ingest::jsonl::stdin();
            let result = match (lines_to_shards, source == "-") {
                (true, true) => read_to_end("-", stdin(), send_lines),
                (true, false) => follow(&source, start, stop, poll, |lines, _| send_lines(lines)),
                (false, true) => read_to_end("-", stdin(), send),
                (false, false) => {
                    follow(
                        &source,
                        start,
                        stop,
                        poll,
                        |spans: Vec<Span>, offset| match &wal {
                            Some(wal) => {
                                let n = spans.len();
                                budget.take(n);
                                if let Err(e) = wal.append_blocking(spans, &source, offset) {
                                    budget.give_back(n);
                                    tracing::error!(source, "spans not logged: {e}");
                                }
                            }
                            None => send(spans),
                        },
                    )
                }
            };
            result.unwrap_or_else(|e| {
                tracing::error!(source, "source failed: {e}");
                ReadStats::default()
            })
        }));
    }
    drop(span_tx);
    drop(lines_tx);

    let mut batcher = Batcher::new(max_spans);
    let mut flush_timer = tokio::time::interval(Duration::from_millis(max_wait_ms.max(1)));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut hangup = hangup_signals();
    // Every source has finished when both queues are closed.
    let (mut spans_open, mut lines_open) = (true, true);
    loop {
        tokio::select! {
            Some(()) = hangup.recv() => {
                let reloader = admin.reloader.clone();
                tokio::spawn(async move {
                    tracing::info!("SIGHUP: reloading the pipeline");
                    if let Err(e) = reloader.reload().await {
                        tracing::error!("reload failed; the running pipeline goes on: {e}");
                    }
                });
            }
            received = lines_rx.recv(), if lines_open => match received {
                Some(lines) => {
                    budget.give_back(lines.len());
                    if batch_tx.send(EngineMsg::Lines(lines)).await.is_err() {
                        break;
                    }
                }
                None if spans_open => lines_open = false,
                None => break,
            },
            received = span_rx.recv(), if spans_open => match received {
                Some(spans) => {
                    budget.give_back(spans.len());
                    let mut full = Vec::new();
                    batcher.push(spans, |b| full.push(b));
                    // Nothing else waiting and no batch queued for the
                    // engine: send the partial batch now rather than after
                    // max_wait_ms. Under load batches queue and fill up.
                    if span_rx.is_empty()
                        && full.is_empty()
                        && batch_tx.capacity() == batch_tx.max_capacity()
                    {
                        full.extend(batcher.take());
                    }
                    for b in full {
                        if batch_tx.send(EngineMsg::Spans(b)).await.is_err() {
                            break;
                        }
                    }
                }
                None if lines_open => spans_open = false,
                None => break,
            },
            _ = flush_timer.tick() => {
                match batcher.take() {
                    Some(b) => {
                        let _ = batch_tx.send(EngineMsg::Spans(b)).await;
                    }
                    // An empty batch lets the engine release held traces
                    // that are due; skipped when the engine is busy anyway.
                    None => {
                        let _ = batch_tx.try_send(EngineMsg::Spans(Vec::new()));
                    }
                }
            }
            _ = &mut shutdown => {
                tracing::info!("shutting down: draining");
                crate::engine::delivery::begin_shutdown();
                stop.store(true, Ordering::Relaxed);
                // Stop accepting: servers finish the requests in flight.
                let _ = stop_servers.send(true);
                for s in servers.drain(..) {
                    let _ = s.await;
                }
                // Sources that block on stdin cannot be interrupted; take what
                // has been read and stop.
                while let Ok(spans) = span_rx.try_recv() {
                    budget.give_back(spans.len());
                    let mut full = Vec::new();
                    batcher.push(spans, |b| full.push(b));
                    for b in full {
                        let _ = batch_tx.send(EngineMsg::Spans(b)).await;
                    }
                }
                while let Ok(lines) = lines_rx.try_recv() {
                    budget.give_back(lines.len());
                    let _ = batch_tx.send(EngineMsg::Lines(lines)).await;
                }
                break;
            }
        }
    }
    if let Some(b) = batcher.take() {
        let _ = batch_tx.send(EngineMsg::Spans(b)).await;
    }
    drop(batch_tx);
    let mut total = ReadStats::default();
    for r in readers {
        // File readers see `stop` within one poll; stdin may block forever.
        if let Ok(Ok(stats)) = tokio::time::timeout(Duration::from_secs(1), r).await {
            total.merge(stats);
        }
    }
    Ok(total)
}

/// Listens on `addr` for the server named `what`; `key` names the setting in errors.
async fn bind(addr: SocketAddr, key: &str, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("{key}: cannot listen on {addr}"))?;
    tracing::info!(%addr, "{what} listening");
    Ok(listener)
}

/// Resolves once the servers are told to stop.
async fn stop_requested(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// The rustls configuration of `tls`, when given.
async fn rustls_config(
    tls: Option<&crate::config::TlsFiles>,
    key: &str,
) -> anyhow::Result<Option<axum_server::tls_rustls::RustlsConfig>> {
    let Some(t) = tls else { return Ok(None) };
    axum_server::tls_rustls::RustlsConfig::from_pem_file(&t.cert, &t.key)
        .await
        .map(Some)
        .with_context(|| {
            format!(
                "{key}: cannot use {} and {}",
                t.cert.display(),
                t.key.display()
            )
        })
}

/// Serves `app` (over TLS when `tls` is given) until the servers are told to
/// stop; requests in flight finish.
fn spawn_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    what: &'static str,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let result = match tls {
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop_requested(stopped))
                    .await
            }
            Some(config) => {
                let handle = axum_server::Handle::new();
                let on_stop = handle.clone();
                tokio::spawn(async move {
                    stop_requested(stopped).await;
                    on_stop.graceful_shutdown(Some(Duration::from_secs(30)));
                });
                match listener
                    .into_std()
                    .and_then(|l| axum_server::from_tcp_rustls(l, config))
                {
                    Ok(server) => server.handle(handle).serve(app.into_make_service()).await,
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = result {
            tracing::error!("{what} failed: {e}");
        }
    })
}

/// SIGHUP, as a stream (never yields where there is no such signal).
fn hangup_signals() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut hup) = signal(SignalKind::hangup()) {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    if tx.send(()).await.is_err() {
                        break;
                    }
                }
            });
        }
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
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
