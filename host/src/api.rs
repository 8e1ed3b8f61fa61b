//! The service's HTTP API on `[api] listen`: `/healthz`, `/readyz`,
//! `/metrics` (Prometheus text), `/v1/reports` and `/v1/reports/{name}`
//! (the shapes of DESIGN.md, the same as `plume replay --report`),
//! `/v1/budget/{feature}` (the switch agents ask before spending) and
//! `POST /admin/reload`.
//!
//! The engine runs on its own thread; the API asks it for a report between
//! two batches over the same queue the batches take, so an answer is a
//! consistent state of the pipeline.

use crate::engine::shards::Plan;
use crate::engine::stats::{EntryStats, PipelineStats};
use crate::ingest::otlp::{ReceiverStats, constant_time_eq};
use crate::reload::Reloader;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// What the engine thread is asked to do.
pub enum EngineMsg {
    /// Spans to process (an empty batch releases held traces that are due).
    Spans(crate::span::Batch),
    /// Lines of a JSONL source, for the processor shards to parse (see
    /// `engine::shards`).
    Lines(crate::ingest::jsonl::Lines),
    /// The current report and counters.
    Report(oneshot::Sender<(Value, PipelineStats)>),
    /// The counters only (cheap: no plugin is asked for its report).
    Stats(oneshot::Sender<PipelineStats>),
    /// Replace the pipeline (a reload); answers with the evaluators whose
    /// state carried over.
    Swap(Box<Plan>, oneshot::Sender<Vec<String>>),
}

/// What the API handlers share.
pub struct Api {
    /// The engine's queue.
    pub engine: mpsc::Sender<EngineMsg>,
    /// The OTLP receivers' counters, if any receiver runs.
    pub receivers: Option<Arc<ReceiverStats>>,
    /// The write-ahead log's counters, with `[wal]`.
    pub wal: Option<Arc<crate::wal::WalCounters>>,
    /// Reloads the pipeline (`POST /admin/reload`).
    pub reloader: Option<Arc<Reloader>>,
    /// Bearer token for admin calls, when configured.
    pub admin_token: Option<String>,
    /// True when the API listens on loopback only: admin calls without a
    /// configured token are then allowed (like the rest of the API).
    pub loopback: bool,
    /// The last report, reused for a short while by `/v1/budget`, which
    /// agents may call before every model call.
    pub budget_cache: Mutex<Option<(Instant, Value)>>,
}

/// How long `/v1/budget` answers from the last report.
const BUDGET_CACHE: Duration = Duration::from_millis(250);

/// The API's routes.
pub fn router(api: Arc<Api>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route("/readyz", axum::routing::get(readyz))
        .route("/metrics", axum::routing::get(metrics))
        .route("/v1/reports", axum::routing::get(all_reports))
        .route("/v1/reports/{name}", axum::routing::get(one_report))
        .route("/v1/budget/{feature}", axum::routing::get(budget))
        .route("/admin/reload", axum::routing::post(reload))
        .with_state(api)
}

/// `GET /v1/budget/{feature}`: whether the feature may spend now, from the
/// cost ledger's view of today (UTC, event time).
async fn budget(State(api): State<Arc<Api>>, Path(feature): Path<String>) -> Response {
    let cached = {
        let c = api.budget_cache.lock().unwrap_or_else(|e| e.into_inner());
        c.as_ref()
            .filter(|(at, _)| at.elapsed() < BUDGET_CACHE)
            .map(|(_, r)| r.clone())
    };
    let report = match cached {
        Some(r) => r,
        None => match ask(&api).await {
            Some((r, _)) => {
                *api.budget_cache.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((Instant::now(), r.clone()));
                r
            }
            None => return unavailable(),
        },
    };
    match budget_answer(&report, &feature) {
        Some(answer) => json(&answer),
        None => (
            StatusCode::NOT_FOUND,
            "no cost ledger in this pipeline (add an [[evaluator]] with builtin:cost-ledger)\n",
        )
            .into_response(),
    }
}

/// The budget answer for `feature` from a report; `None` without a ledger.
pub fn budget_answer(report: &Value, feature: &str) -> Option<Value> {
    let cost = report.get("cost")?;
    let f = cost["features_today"].get(feature);
    let spent = f.and_then(|f| f["spent_usd"].as_f64()).unwrap_or(0.0);
    let projected = f.and_then(|f| f["projected_usd"].as_f64()).unwrap_or(0.0);
    let limit = f
        .map(|f| f["limit_usd"].clone())
        .unwrap_or_else(|| cost["default_limit_usd"].clone());
    let disabled = f.is_some_and(|f| f["disabled"] == true);
    let over_limit = limit.as_f64().is_some_and(|l| spent >= l);
    Some(serde_json::json!({
        "feature": feature,
        "allowed": !disabled && !over_limit,
        "spent_today_usd": spent,
        "projected_today_usd": projected,
        "limit_usd": limit,
        "disabled": disabled || over_limit,
        "daily_budget_usd": cost["daily_budget_usd"],
        "projected_daily_usd": cost["projected_daily_usd"],
        "over_budget": cost["over_budget"],
    }))
}

/// `POST /admin/reload`.
async fn reload(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (&api.admin_token, given) {
        (Some(token), Some(given)) if constant_time_eq(token.as_bytes(), given.as_bytes()) => {}
        (Some(_), _) => {
            return (StatusCode::UNAUTHORIZED, "admin token required\n").into_response();
        }
        (None, _) if !api.loopback => {
            return (
                StatusCode::FORBIDDEN,
                "set [api] admin_token to allow admin calls on a non-loopback address\n",
            )
                .into_response();
        }
        (None, _) => {}
    }
    let Some(reloader) = &api.reloader else {
        return unavailable();
    };
    match reloader.reload().await {
        Ok(done) => json(
            &serde_json::json!({"reloaded": true, "pipeline": done.pipeline,
            "state_carried_over": done.state_carried_over, "restart_needed_for": done.restart_needed_for}),
        ),
        Err(e) => {
            tracing::error!("reload failed; the running pipeline goes on: {e}");
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::json!({"reloaded": false, "error": e}).to_string(),
            )
                .into_response()
        }
    }
}

/// How long the API waits for the engine thread: longer means the pipeline
/// is stuck (e.g. blocked on a full sink), and `/readyz` says so.
const ENGINE_ANSWER: Duration = Duration::from_secs(5);

/// Asks the engine thread (`msg` carries the reply channel); `None` when it
/// is gone or does not answer within `ENGINE_ANSWER`.
async fn ask_engine<T>(api: &Api, msg: impl FnOnce(oneshot::Sender<T>) -> EngineMsg) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    tokio::time::timeout(ENGINE_ANSWER, async {
        api.engine.send(msg(tx)).await.ok()?;
        rx.await.ok()
    })
    .await
    .ok()
    .flatten()
}

/// The report (every plugin's section) and the counters.
async fn ask(api: &Api) -> Option<(Value, PipelineStats)> {
    ask_engine(api, EngineMsg::Report).await
}

/// The counters alone, for `/readyz` and `/metrics`.
async fn ask_stats(api: &Api) -> Option<PipelineStats> {
    ask_engine(api, EngineMsg::Stats).await
}

fn json(v: &Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the pipeline is not running or did not answer in time (blocked on a full sink?)\n",
    )
        .into_response()
}

async fn readyz(State(api): State<Arc<Api>>) -> Response {
    let Some(stats) = ask_stats(&api).await else {
        return unavailable();
    };
    let disabled: Vec<&str> = all_entries(&stats)
        .filter(|(_, e)| e.disabled)
        .map(|(_, e)| e.name.as_str())
        .collect();
    if disabled.is_empty() {
        "ready\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: disabled by the crash-loop breaker: {}\n",
                disabled.join(", ")
            ),
        )
            .into_response()
    }
}

/// Every entry of the pipeline with its kind.
fn all_entries(stats: &PipelineStats) -> impl Iterator<Item = (&'static str, &EntryStats)> {
    stats
        .stages
        .iter()
        .map(|s| ("stage", s))
        .chain(stats.evaluators.iter().map(|s| ("evaluator", s)))
        .chain(stats.router.iter().map(|s| ("router", s)))
        .chain(stats.exports.iter().map(|s| ("export", s)))
}

async fn all_reports(State(api): State<Arc<Api>>) -> Response {
    match ask(&api).await {
        Some((report, _)) => json(&report),
        None => unavailable(),
    }
}

async fn one_report(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Response {
    const SECTIONS: [&str; 7] = [
        "latency", "cost", "slo", "alerts", "traces", "pricing", "pipeline",
    ];
    if !SECTIONS.contains(&name.as_str()) {
        return (
            StatusCode::NOT_FOUND,
            format!("no report {name:?}: {}\n", SECTIONS.join(", ")),
        )
            .into_response();
    }
    match ask(&api).await {
        Some((report, _)) => {
            let section = report.get(&name).cloned().unwrap_or(Value::Null);
            json(&serde_json::json!({ name: section }))
        }
        None => unavailable(),
    }
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    let stats = ask_stats(&api).await;
    let mut out = stats.as_ref().map(render_metrics).unwrap_or_default();
    metric(
        &mut out,
        "plume_engine_up",
        "gauge",
        "1 when the engine thread answered within 5 s (0: blocked, e.g. on a full sink).",
        &[("", if stats.is_some() { 1.0 } else { 0.0 })],
    );
    render_outside(&mut out, api.receivers.as_deref(), api.wal.as_deref());
    let queued = api.engine.max_capacity() - api.engine.capacity();
    metric(
        &mut out,
        "plume_engine_queue_batches",
        "gauge",
        "Batches waiting for the engine.",
        &[("", queued as f64)],
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// One metric family: HELP, TYPE and a sample per label set (`""`: none).
fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

/// The pipeline's counters in Prometheus text format.
pub fn render_metrics(stats: &PipelineStats) -> String {
    let mut out = String::new();
    metric(
        &mut out,
        "plume_spans_in_total",
        "counter",
        "Spans that entered the pipeline.",
        &[("", stats.spans_in as f64)],
    );
    metric(
        &mut out,
        "plume_spans_out_total",
        "counter",
        "Spans that reached the exporters.",
        &[("", stats.spans_out as f64)],
    );
    let entries: Vec<(&str, &EntryStats)> = all_entries(stats).collect();
    let labels: Vec<String> = entries
        .iter()
        .map(|(kind, s)| format!("kind=\"{kind}\",entry=\"{}\"", escape(&s.name)))
        .collect();
    let per_entry = |f: &dyn Fn(&EntryStats) -> f64| -> Vec<(&str, f64)> {
        entries
            .iter()
            .zip(&labels)
            .map(|((_, s), l)| (l.as_str(), f(s)))
            .collect()
    };
    let family = |out: &mut String, name: &str, help: &str, f: &dyn Fn(&EntryStats) -> f64| {
        metric(out, name, "counter", help, &per_entry(f));
    };
    let gauge = |out: &mut String, name: &str, help: &str, f: &dyn Fn(&EntryStats) -> f64| {
        metric(out, name, "gauge", help, &per_entry(f));
    };
    family(
        &mut out,
        "plume_entry_spans_in_total",
        "Spans that reached the entry.",
        &|s| s.spans_in as f64,
    );
    family(
        &mut out,
        "plume_entry_spans_out_total",
        "Spans a processor passed on.",
        &|s| s.spans_out as f64,
    );
    family(
        &mut out,
        "plume_entry_spans_dropped_total",
        "Spans dropped by the plugin or on error, or dead-lettered.",
        &|s| (s.dropped_by_plugin + s.dropped_on_error + s.dead_lettered) as f64,
    );
    family(
        &mut out,
        "plume_entry_spans_exported_total",
        "Spans an exporter wrote.",
        &|s| s.exported as f64,
    );
    family(
        &mut out,
        "plume_entry_errors_total",
        "Failed plugin calls (traps, timeouts, memory, errors).",
        &|s| s.errors.values().sum::<u64>() as f64,
    );
    family(
        &mut out,
        "plume_entry_restarts_total",
        "Plugin instances rebuilt after a trap.",
        &|s| s.restarts as f64,
    );
    family(
        &mut out,
        "plume_entry_breaker_trips_total",
        "Times the crash-loop breaker disabled the plugin.",
        &|s| s.breaker_trips as f64,
    );
    gauge(
        &mut out,
        "plume_entry_disabled",
        "1 while the crash-loop breaker keeps the plugin disabled.",
        &|s| if s.disabled { 1.0 } else { 0.0 },
    );
    gauge(
        &mut out,
        "plume_entry_memory_bytes",
        "Linear memory the plugin's instance has grown to (never shrinks).",
        &|s| s.memory_bytes as f64,
    );
    family(
        &mut out,
        "plume_entry_seconds_total",
        "Time spent in the entry.",
        &|s| s.nanos as f64 / 1e9,
    );
    // Remote sinks: every payload ends sent, failed or dropped.
    let remote: Vec<(String, &crate::engine::delivery::DeliveryStats)> = stats
        .exports
        .iter()
        .filter_map(|e| Some((escape(&e.name), e.delivery.as_ref()?)))
        .collect();
    if !remote.is_empty() {
        let mut payloads = Vec::new();
        let mut spans = Vec::new();
        let mut retries = Vec::new();
        let mut queued = Vec::new();
        for (name, d) in &remote {
            for (result, p, s) in [
                ("sent", d.sent, d.sent_spans),
                ("failed", d.failed, d.failed_spans),
                ("dropped", d.dropped, d.dropped_spans),
            ] {
                payloads.push((format!("export=\"{name}\",result=\"{result}\""), p as f64));
                spans.push((format!("export=\"{name}\",result=\"{result}\""), s as f64));
            }
            spans.push((
                format!("export=\"{name}\",result=\"rejected\""),
                d.rejected_spans as f64,
            ));
            retries.push((format!("export=\"{name}\""), d.retries as f64));
            queued.push((format!("export=\"{name}\""), d.queued as f64));
        }
        metric(
            &mut out,
            "plume_export_payloads_total",
            "counter",
            "Payloads of remote sinks by result (sent, failed after retries or permanently, dropped).",
            &refs(&payloads),
        );
        metric(
            &mut out,
            "plume_export_spans_total",
            "counter",
            "Spans in those payloads by result; rejected = acknowledged but rejected by the backend.",
            &refs(&spans),
        );
        metric(
            &mut out,
            "plume_export_retries_total",
            "counter",
            "Attempts retried (backoff with jitter).",
            &refs(&retries),
        );
        metric(
            &mut out,
            "plume_export_queue_payloads",
            "gauge",
            "Payloads queued or in flight.",
            &refs(&queued),
        );
    }
    let h = &stats.hold;
    metric(
        &mut out,
        "plume_hold_spans",
        "gauge",
        "Spans waiting in the trace hold.",
        &[("", h.held as f64)],
    );
    metric(
        &mut out,
        "plume_hold_released_early_total",
        "counter",
        "Traces released before they were quiet (max_spans).",
        &[("", h.released_early as f64)],
    );
    metric(
        &mut out,
        "plume_hold_stitched_traces_total",
        "counter",
        "Sub-agent traces stitched under their caller's trace.",
        &[("", h.stitched_traces as f64)],
    );
    metric(
        &mut out,
        "plume_hold_invalid_traceparents_total",
        "counter",
        "traceparent values that were not valid W3C Trace Context (not stitched).",
        &[("", h.invalid_traceparents as f64)],
    );
    metric(
        &mut out,
        "plume_hold_duplicate_spans_total",
        "counter",
        "Resent spans dropped while held.",
        &[("", h.duplicate_spans as f64)],
    );
    out
}

/// Metrics kept outside the engine thread (receivers, the write-ahead log):
/// served even when the engine does not answer, e.g. blocked on a full sink.
fn render_outside(
    out: &mut String,
    receivers: Option<&ReceiverStats>,
    wal: Option<&crate::wal::WalCounters>,
) {
    if let Some(w) = wal.map(|w| w.stats()) {
        for (name, kind, help, value) in [
            (
                "plume_wal_appended_spans_total",
                "counter",
                "Spans written to the write-ahead log.",
                w.appended_spans,
            ),
            (
                "plume_wal_syncs_total",
                "counter",
                "fsync calls of the write-ahead log.",
                w.syncs,
            ),
            (
                "plume_wal_refused_full_total",
                "counter",
                "Requests refused because the log was at max_bytes (when_full = block).",
                w.refused_full,
            ),
            (
                "plume_wal_dropped_spans_total",
                "counter",
                "Spans whose log records were deleted unreleased (when_full = drop-oldest).",
                w.dropped_spans,
            ),
            (
                "plume_wal_replayed_spans_total",
                "counter",
                "Spans replayed from the log at start.",
                w.replayed_spans,
            ),
            (
                "plume_wal_bytes",
                "gauge",
                "Bytes of the write-ahead log on disk.",
                w.bytes,
            ),
            (
                "plume_wal_max_bytes",
                "gauge",
                "The log's bound (max_bytes).",
                w.max_bytes,
            ),
            (
                "plume_wal_unreleased_records",
                "gauge",
                "Log records not yet delivered everywhere.",
                w.unreleased,
            ),
        ] {
            metric(out, name, kind, help, &[("", value as f64)]);
        }
    }
    if let Some(r) = receivers {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
        metric(
            out,
            "plume_receiver_spans_accepted_total",
            "counter",
            "Spans the OTLP receivers accepted.",
            &[("", load(&r.spans_accepted))],
        );
        metric(
            out,
            "plume_receiver_spans_rejected_total",
            "counter",
            "Spans rejected for invalid ids (partial success).",
            &[("", load(&r.spans_rejected))],
        );
        metric(
            out,
            "plume_receiver_requests_throttled_total",
            "counter",
            "Requests refused because the pipeline was full.",
            &[("", load(&r.requests_throttled))],
        );
        metric(
            out,
            "plume_receiver_requests_refused_total",
            "counter",
            "Requests refused as malformed, too large or unauthorised.",
            &[("", load(&r.requests_refused))],
        );
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn refs(v: &[(String, f64)]) -> Vec<(&str, f64)> {
    v.iter().map(|(l, x)| (l.as_str(), *x)).collect()
}
