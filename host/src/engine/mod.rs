//! The engine: one batch at a time through processors (in order), evaluators,
//! the router and the exporters. It is synchronous and single-threaded by
//! design: `replay` drives it directly, and the service runs it on threads of
//! its own (`shards`: one engine for the whole pipeline, or a head, processor
//! shards and a tail, each an engine for its part), so both see the same
//! behaviour in event time.

pub mod batcher;
pub mod delivery;
pub mod hold;
pub mod shards;
pub mod sink;
pub mod stats;

use crate::config::{BreakerPolicy, ConfigErrors, OnError, Pipeline, PluginSpec};
use crate::ingest::jsonl::{Lines, ReadStats};
use crate::plugin::bindings::Processor;
use crate::plugin::bindings::evaluator::Evaluator;
use crate::plugin::bindings::exporter::Exporter;
use crate::plugin::bindings::router::Router;
use crate::plugin::bindings::types::{
    Alert, Batch as WitBatch, LineFormat, Notification, Part, Severity, Sink as WitSink, Value,
};
use crate::plugin::breaker::BreakerEvent;
use crate::plugin::instance::{PluginError, Sandbox};
use crate::plugin::projection::{Projection, render_flat, render_otlp_json};
use crate::plugin::runtime::Runtime;
use crate::span::{Batch, Span, flat};
use crate::wal::WalCounters;
use delivery::{Delivery, Target};
use hold::Hold;
use serde_json::{Map, Value as Json, json};
use sink::Sink;
use stats::{EntryStats, PipelineStats};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Options that change how an engine is built, not what it does.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Write exporter payloads nowhere (benchmarks).
    pub discard_output: bool,
    /// The trace hold's clock.
    pub clock: HoldClock,
}

/// The clock that decides when held traces are released.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HoldClock {
    /// Wall time since the engine started: the service.
    #[default]
    Wall,
    /// The greatest span end time seen so far: `replay`, so that a replay
    /// groups spans the same way on every run.
    Event,
}

struct Stage {
    sandbox: Sandbox<Processor>,
    projection: Projection,
    stats: EntryStats,
}

struct EvaluatorStage {
    sandbox: Sandbox<Evaluator>,
    stats: EntryStats,
    /// The latest state the plugin handed over: the host keeps it so a trap
    /// costs at most the batches since, not the evaluator's whole history.
    snapshot: Option<Vec<u8>>,
    batches_since_snapshot: u32,
    last_snapshot: Option<Instant>,
    /// Wall time until the next snapshot: `SNAPSHOT_INTERVAL`, or more for an
    /// evaluator whose snapshots are slow (see `SNAPSHOT_SHARE`).
    snapshot_interval: std::time::Duration,
}

/// Batches between evaluator snapshots, at least. Snapshots serialise the
/// whole state (a ledger, sketches), so they are taken periodically, and after
/// the first no more often than `SNAPSHOT_INTERVAL` of wall time: measured with
/// `plume bench`, a snapshot every 32 batches cost the cost ledger ~1 µs/span.
const SNAPSHOT_EVERY: u32 = 32;
const SNAPSHOT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// A snapshot stalls the engine thread (every span waits): the time between
/// two of one evaluator is at least this many times the last one took, so
/// snapshots stall at most 1/2000 of the time. At 80k spans/s the cost ledger
/// and the trace summaries took 13-17 ms each; every 5 s (at 1/200) those
/// stalls and their backlog held ~1% of spans, which set the p99 latency.
/// The price: after a trap a large state resumes from up to ~30 s back.
const SNAPSHOT_SHARE: u32 = 2000;
/// After any evaluator's snapshot, no other for this many times as long, so
/// two stalls never come back to back (their delays would add up) and the
/// backlog of one drains before the next.
const SNAPSHOT_GAP_SHARE: u32 = 50;

impl EvaluatorStage {
    /// Rebuilds a trapped instance and restores the last snapshot into it.
    fn recover(&mut self) {
        match self.sandbox.revive_if_poisoned() {
            Ok(false) => {}
            Ok(true) => {
                if let Some(state) = &self.snapshot {
                    match self.sandbox.restore(state) {
                        Ok(()) => {
                            tracing::warn!(entry = %self.sandbox.spec().name, "evaluator rebuilt after a failure; state restored from its last snapshot")
                        }
                        Err(e) => note_error(&mut self.stats, self.sandbox.spec(), &e),
                    }
                }
            }
            Err(e) => note_error(&mut self.stats, self.sandbox.spec(), &e),
        }
    }

    /// Every call into the evaluator goes through here, so a trapped
    /// instance gets its state back before it is used again.
    fn call<T>(
        &mut self,
        f: impl FnOnce(&mut Sandbox<Evaluator>) -> Result<T, PluginError>,
    ) -> Result<T, PluginError> {
        self.recover();
        f(&mut self.sandbox)
    }

    /// Counts a batch; true when a snapshot is due: every `SNAPSHOT_EVERY`
    /// batches and `snapshot_interval` at least.
    fn snapshot_due(&mut self) -> bool {
        self.batches_since_snapshot = self.batches_since_snapshot.saturating_add(1);
        self.batches_since_snapshot >= SNAPSHOT_EVERY
            && self
                .last_snapshot
                .is_none_or(|t| t.elapsed() >= self.snapshot_interval)
    }

    /// Takes a snapshot to restore after a trap; returns how long it took.
    fn take_snapshot(&mut self) -> std::time::Duration {
        self.batches_since_snapshot = 0;
        self.last_snapshot = Some(Instant::now());
        // Counted in the evaluator's time, so `plume bench` shows its cost.
        let started = Instant::now();
        let taken = self.call(|s| s.snapshot());
        let took = started.elapsed();
        self.stats.nanos += took.as_nanos() as u64;
        self.snapshot_interval = SNAPSHOT_INTERVAL.max(took * SNAPSHOT_SHARE);
        tracing::debug!(evaluator = %self.sandbox.spec().name, ?took, next_in = ?self.snapshot_interval, "snapshot");
        match taken {
            Ok(state) if !state.is_empty() => self.snapshot = Some(state),
            Ok(_) => {}
            Err(e) => note_error(&mut self.stats, self.sandbox.spec(), &e),
        }
        took
    }
}

/// An evaluator's projection, apart from its instance: a processor shard
/// projects its batches for the tail's evaluators (see [`Prepared`]), and
/// a whole-pipeline engine for its own. `stats` counts the projection's
/// time under the evaluator's name.
#[derive(Clone)]
pub(crate) struct Observer {
    projection: Projection,
    stats: EntryStats,
}

/// What a batch leaves for the evaluators and the sinks once its processors
/// ran: each evaluator's projection and each exporter's payload. It is made
/// where the spans are (a processor shard, on the core that just ran them)
/// and finished where the evaluators and sinks are (the tail), so that the
/// tail never reads span memory written on another core: measured, that
/// cost two shards about a quarter more CPU a span than one (BENCHMARKS.md).
#[derive(Default)]
pub(crate) struct Prepared {
    spans: u64,
    /// Greatest end time of the batch's spans: the event time it brings.
    batch_time: u64,
    /// Lowest write-ahead log record among its spans (0: none).
    seq: u64,
    /// Per evaluator, its projection (no rows: nothing to observe).
    observe: Vec<WitBatch>,
    /// Per exporter, the payload; `None` when rendering failed (counted).
    payloads: Vec<Option<Vec<u8>>>,
    /// Alerts raised where the batch was prepared (a shard's breakers).
    alerts: Vec<Alert>,
}

struct RouterStage {
    sandbox: Sandbox<Router>,
    stats: EntryStats,
}

struct ExportStage {
    sandbox: Sandbox<Exporter>,
    projection: Projection,
    sink: Sink,
    stats: EntryStats,
}

/// Reused buffers for projections, so steady-state batches allocate little.
#[derive(Default)]
struct Scratch {
    batch: WitBatch,
    rows: Vec<u32>,
    bytes: Vec<u8>,
    /// The last batch's [`Prepared`], its buffers reused.
    prepared: Option<Prepared>,
    /// Each entry's time before the batch (see [`Engine::note_slow`]).
    entry_nanos: Vec<u64>,
}

/// A batch that holds up its thread longer than this is logged (debug), with
/// the entries that took the time: what the p99 latency is made of.
const SLOW_BATCH: std::time::Duration = std::time::Duration::from_millis(5);

/// A running pipeline.
pub struct Engine {
    stages: Vec<Stage>,
    evaluators: Vec<EvaluatorStage>,
    /// The evaluators' projections: of this engine's evaluators, or, in a
    /// processor shard (which has none), of the tail's.
    observers: Vec<Observer>,
    router: Option<RouterStage>,
    exports: Vec<ExportStage>,
    dead_letter_path: PathBuf,
    dead_letter: Option<Sink>,
    /// Greatest span end time seen: the pipeline's event time.
    event_time: u64,
    /// Notifications sent, for the report when no router keeps its own.
    alerts: Vec<Json>,
    spans_in: u64,
    spans_out: u64,
    scratch: Scratch,
    hold: Hold,
    clock: HoldClock,
    started: Instant,
    /// Greatest span end time that arrived (the event clock).
    arrived_time: u64,
    batch_max_spans: usize,
    /// Greatest write-ahead log record that reached the engine.
    seen_seq: u64,
    /// The log's counters, when there is one; and whether its `wal_dropped`
    /// alert is firing, with the spans dropped when it was last raised.
    wal: Option<Arc<WalCounters>>,
    wal_alert: Option<u64>,
    /// Where processed spans go when this engine runs part of a sharded
    /// pipeline (the head and the shards); `None`: on to its own evaluators
    /// and exporters.
    forward: Option<shards::Forward>,
    /// Alerts raised elsewhere (a shard's crash-loop breakers), routed at
    /// the next batch.
    pending_alerts: Vec<Alert>,
    /// No evaluator snapshots before this (see `SNAPSHOT_GAP_SHARE`).
    snapshots_quiet_until: Option<Instant>,
}

fn entry_stats(spec: &PluginSpec) -> EntryStats {
    EntryStats {
        name: spec.name.clone(),
        ..EntryStats::default()
    }
}

impl Engine {
    /// Instantiates every plugin of `pipeline` and calls its `init`. All
    /// failures are returned together, each naming its entry and line.
    pub fn build(
        pipeline: &Pipeline,
        rt: &Runtime,
        options: &EngineOptions,
    ) -> Result<Engine, ConfigErrors> {
        let mut errors = Vec::new();
        let mut stages = Vec::new();
        for spec in &pipeline.stages {
            match Sandbox::<Processor>::new(rt, spec) {
                Ok((sandbox, m)) => {
                    match Projection::new(m.reads, m.writes, m.require_any, m.sparse) {
                        Ok(projection) => stages.push(Stage {
                            sandbox,
                            projection,
                            stats: entry_stats(spec),
                        }),
                        Err(e) => errors.push(spec.error(e)),
                    }
                }
                Err(e) => errors.push(spec.error(e)),
            }
        }
        let mut evaluators = Vec::new();
        let mut observers = Vec::new();
        for spec in &pipeline.evaluators {
            match Sandbox::<Evaluator>::new(rt, spec) {
                Ok((sandbox, m)) if m.writes.is_empty() => {
                    match Projection::new(m.reads, vec![], m.require_any, m.sparse) {
                        Ok(projection) => {
                            observers.push(Observer {
                                projection,
                                stats: entry_stats(spec),
                            });
                            evaluators.push(EvaluatorStage {
                                sandbox,
                                stats: entry_stats(spec),
                                snapshot: None,
                                batches_since_snapshot: 0,
                                last_snapshot: None,
                                snapshot_interval: SNAPSHOT_INTERVAL,
                            })
                        }
                        Err(e) => errors.push(spec.error(e)),
                    }
                }
                Ok(_) => errors.push(spec.error("an evaluator's manifest must not declare writes")),
                Err(e) => errors.push(spec.error(e)),
            }
        }
        let mut router = None;
        if let Some(spec) = &pipeline.router {
            match Sandbox::<Router>::new(rt, spec) {
                Ok((sandbox, ())) => {
                    router = Some(RouterStage {
                        sandbox,
                        stats: entry_stats(spec),
                    })
                }
                Err(e) => errors.push(spec.error(e)),
            }
        }
        let mut exports = Vec::new();
        for spec in &pipeline.exports {
            match Sandbox::<Exporter>::new(rt, spec) {
                Ok((sandbox, m)) => {
                    let projection = Projection::new(m.reads, vec![], vec![], false);
                    let sink = match (&m.sink, options.discard_output) {
                        (_, true) => Ok(Sink::Discard),
                        (WitSink::File(f), false) => {
                            Sink::open_rotating(&f.path, f.rotate_bytes, f.keep)
                                .map_err(|e| format!("{e:#}"))
                        }
                        (WitSink::Http(h), false) => Delivery::start(
                            &spec.name,
                            Target::Http {
                                url: h.url.clone(),
                                headers: h.headers.clone(),
                                content_type: h.content_type.clone(),
                            },
                            spec.delivery.clone(),
                        )
                        .map(Sink::Remote)
                        .map_err(|e| format!("{e:#}")),
                        (WitSink::Grpc(g), false) => Delivery::start(
                            &spec.name,
                            Target::Grpc {
                                endpoint: g.endpoint.clone(),
                                method: g.method.clone(),
                                headers: g.headers.clone(),
                            },
                            spec.delivery.clone(),
                        )
                        .map(Sink::Remote)
                        .map_err(|e| format!("{e:#}")),
                    };
                    match (projection, sink) {
                        (Ok(projection), Ok(sink)) => exports.push(ExportStage {
                            sandbox,
                            projection,
                            sink,
                            stats: entry_stats(spec),
                        }),
                        (Err(e), _) | (_, Err(e)) => errors.push(spec.error(e)),
                    }
                }
                Err(e) => errors.push(spec.error(e)),
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Engine {
            stages,
            evaluators,
            observers,
            router,
            exports,
            dead_letter_path: pipeline.dead_letter_path.clone(),
            dead_letter: None,
            event_time: 0,
            alerts: Vec::new(),
            spans_in: 0,
            spans_out: 0,
            scratch: Scratch::default(),
            hold: Hold::new(pipeline.hold.clone()),
            clock: options.clock,
            started: Instant::now(),
            arrived_time: 0,
            seen_seq: 0,
            wal: None,
            wal_alert: None,
            batch_max_spans: pipeline.batch_max_spans,
            forward: None,
            pending_alerts: Vec::new(),
            snapshots_quiet_until: None,
        })
    }

    /// Takes spans that arrived; runs the pipeline on the traces that are
    /// complete (see `hold`). An empty batch only releases what is due, so
    /// the service calls this periodically.
    pub fn process(&mut self, batch: Batch) {
        self.spans_in += batch.len() as u64;
        if let Some(seq) = batch.iter().map(|s| s.seq).max() {
            self.seen_seq = self.seen_seq.max(seq);
        }
        if !self.hold.enabled() {
            if batch.len() <= self.batch_max_spans {
                self.run_batch(batch);
            } else {
                let mut batch = batch;
                while !batch.is_empty() {
                    let rest = batch.split_off(batch.len().min(self.batch_max_spans));
                    self.run_batch(std::mem::replace(&mut batch, rest));
                }
            }
            return;
        }
        let now = match self.clock {
            HoldClock::Wall => self.started.elapsed().as_nanos() as u64,
            HoldClock::Event => {
                let latest = batch.iter().map(|s| s.end_time_unix_nano).max();
                self.arrived_time = self.arrived_time.max(latest.unwrap_or(0));
                self.arrived_time
            }
        };
        self.hold.push(batch, now);
        let mut groups = Vec::new();
        self.hold.release_due(now, |g| groups.push(g));
        self.run_groups(groups);
    }

    /// Runs released groups in batches of about `batch_max_spans`; a group
    /// is never split, so a processor sees all of a call's spans at once.
    fn run_groups(&mut self, groups: Vec<Vec<Span>>) {
        if let Some(forward) = self.forward.as_mut().filter(|f| f.is_head()) {
            // The head: each group goes whole to one shard.
            for group in groups {
                self.spans_out += group.len() as u64;
                forward.group(group);
            }
            forward.flush();
            return;
        }
        let mut batch: Batch = Vec::new();
        for group in groups {
            if !batch.is_empty() && batch.len() + group.len() > self.batch_max_spans {
                self.run_batch(std::mem::take(&mut batch));
            }
            batch.extend(group);
        }
        self.run_batch(batch);
    }

    /// Runs one batch through the whole pipeline.
    fn run_batch(&mut self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let started = self.entry_times();
        self.run_stages(batch);
        self.note_slow(started, "batch");
    }

    fn run_stages(&mut self, mut batch: Batch) {
        for i in 0..self.stages.len() {
            if batch.is_empty() {
                return;
            }
            if !self.run_stage(i, &mut batch) {
                return;
            }
        }
        let batch_time = batch
            .iter()
            .map(|s| s.end_time_unix_nano)
            .max()
            .unwrap_or(0);
        match &mut self.forward {
            Some(forward) if forward.is_head() => {
                self.spans_out += batch.len() as u64;
                forward.spans(batch);
                forward.flush();
            }
            Some(_) => {
                // A processor shard: the tail finishes what it prepares here,
                // with the breaker alerts of this shard's processors.
                self.spans_out += batch.len() as u64;
                let mut prepared = self.prepare(&batch, batch_time);
                drop(batch);
                prepared.alerts = self.breaker_alerts(batch_time);
                if let Some(forward) = &mut self.forward {
                    forward.prepared(prepared);
                }
            }
            None if batch.is_empty() => {}
            None => {
                let prepared = self.prepare(&batch, batch_time);
                drop(batch);
                self.finish_batch(prepared);
            }
        }
    }

    /// The part of a batch's run that reads its spans (see [`Prepared`]):
    /// each evaluator's projection and each exporter's payload.
    fn prepare(&mut self, batch: &[Span], batch_time: u64) -> Prepared {
        let mut p = std::mem::take(&mut self.scratch.prepared)
            .or_else(|| self.forward.as_ref().and_then(shards::Forward::spare))
            .unwrap_or_default();
        p.spans = batch.len() as u64;
        p.batch_time = batch_time;
        p.seq = batch
            .iter()
            .map(|s| s.seq)
            .filter(|&q| q != 0)
            .min()
            .unwrap_or(0);
        p.alerts.clear();
        if batch.is_empty() {
            p.observe.clear();
            p.payloads.clear();
            return p;
        }
        p.observe
            .resize_with(self.observers.len(), WitBatch::default);
        for (ob, out) in self.observers.iter_mut().zip(&mut p.observe) {
            let started = Instant::now();
            ob.projection.project(batch, out, &mut self.scratch.rows);
            let took = started.elapsed().as_nanos() as u64;
            ob.stats.project_nanos += took;
            ob.stats.nanos += took;
        }
        p.payloads.resize_with(self.exports.len(), || None);
        for (ex, payload) in self.exports.iter_mut().zip(&mut p.payloads) {
            let started = Instant::now();
            ex.projection
                .project(batch, &mut self.scratch.batch, &mut self.scratch.rows);
            let mut bytes = payload.take().unwrap_or_default();
            bytes.clear();
            let rendered = ex
                .sandbox
                .export_spans(&self.scratch.batch)
                .and_then(|parts| render(&mut bytes, &parts, batch, &self.scratch.rows));
            *payload = match rendered {
                Ok(()) => Some(bytes),
                Err(e) => {
                    note_error(&mut ex.stats, ex.sandbox.spec(), &e);
                    ex.stats.dropped_on_error += batch.len() as u64;
                    None
                }
            };
            ex.stats.restarts = ex.sandbox.restarts;
            ex.stats.nanos += started.elapsed().as_nanos() as u64;
        }
        p
    }

    /// Every entry's time so far, kept to find a slow batch's culprits.
    fn entry_nanos(&self) -> impl Iterator<Item = (&str, u64)> {
        let stages = self.stages.iter().map(|s| &s.stats);
        let evaluators = self.evaluators.iter().map(|e| &e.stats);
        let observers = self.observers.iter().map(|o| &o.stats);
        let router = self.router.iter().map(|r| &r.stats);
        let exports = self.exports.iter().map(|e| &e.stats);
        (stages
            .chain(evaluators)
            .chain(observers)
            .chain(router)
            .chain(exports))
        .map(|s| (s.name.as_str(), s.nanos))
    }

    /// Notes when a batch starts, when slow batches are logged.
    fn entry_times(&mut self) -> Option<Instant> {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return None;
        }
        let mut nanos = std::mem::take(&mut self.scratch.entry_nanos);
        nanos.clear();
        nanos.extend(self.entry_nanos().map(|(_, n)| n));
        self.scratch.entry_nanos = nanos;
        Some(Instant::now())
    }

    /// Logs a batch that took longer than `SLOW_BATCH`, with the entries
    /// that took more than a millisecond of it, and the time spent in none
    /// of them (`elsewhere`: waiting for room in the next thread's queue, or
    /// the host's own work).
    fn note_slow(&self, started: Option<Instant>, what: &str) {
        let Some(started) = started else { return };
        let took = started.elapsed();
        if took < SLOW_BATCH {
            return;
        }
        let mut in_entries = 0u64;
        let mut entries = Vec::new();
        for ((name, after), before) in self.entry_nanos().zip(&self.scratch.entry_nanos) {
            let spent = after.saturating_sub(*before);
            in_entries += spent;
            if spent >= 1_000_000 {
                entries.push(format!("{name} {:.1} ms", spent as f64 / 1e6));
            }
        }
        let elsewhere = took.saturating_sub(std::time::Duration::from_nanos(in_entries));
        tracing::debug!(?took, ?elsewhere, entries = %entries.join(", "), "slow {what}");
    }

    /// The rest of a batch's run, once prepared: the evaluators observe,
    /// event time advances (alerts, routing), the payloads are written.
    fn finish(&mut self, p: Prepared) {
        let started = self.entry_times();
        self.finish_batch(p);
        self.note_slow(started, "batch end");
    }

    fn finish_batch(&mut self, mut p: Prepared) {
        self.pending_alerts.append(&mut p.alerts);
        if !self.observe(&p) {
            self.recycle(p);
            return;
        }
        let mut notifications = Vec::new();
        if p.batch_time > self.event_time {
            self.event_time = p.batch_time;
            notifications = self.tick(true);
        } else if !self.pending_alerts.is_empty() {
            notifications = self.tick(false);
        }
        self.write(&p, &notifications);
        self.spans_out += p.spans;
        self.recycle(p);
        // After the export, so this batch does not wait for it; one snapshot
        // at a time, spaced out, so the stalls of several evaluators (tens of
        // ms for a large ledger) do not add up into one.
        let quiet = self
            .snapshots_quiet_until
            .is_some_and(|t| Instant::now() < t);
        let mut taken = quiet;
        for ev in &mut self.evaluators {
            if ev.snapshot_due() && !taken {
                let took = ev.take_snapshot();
                self.snapshots_quiet_until = Some(Instant::now() + took * SNAPSHOT_GAP_SHARE);
                taken = true;
            }
        }
    }

    /// Finishes a batch a processor shard prepared (the tail); returns its
    /// buffers, to go back to the shard.
    pub(crate) fn finish_prepared(&mut self, p: Prepared) -> Prepared {
        self.spans_in += p.spans;
        self.finish(p);
        self.scratch.prepared.take().unwrap_or_default()
    }

    /// Keeps a finished batch's buffers for the next.
    fn recycle(&mut self, p: Prepared) {
        self.scratch.prepared = Some(p);
    }

    /// The evaluators observe their projections of a batch; false when one
    /// failed under `on_error = "drop"` (the batch goes no further).
    fn observe(&mut self, p: &Prepared) -> bool {
        for (ev, batch) in self.evaluators.iter_mut().zip(&p.observe) {
            let started = Instant::now();
            ev.stats.spans_in += p.spans;
            if batch.rows > 0
                && let Err(e) = ev.call(|s| s.observe(batch))
            {
                note_error(&mut ev.stats, ev.sandbox.spec(), &e);
                if ev.sandbox.spec().on_error == OnError::Drop {
                    ev.stats.dropped_on_error += p.spans;
                    return false;
                }
            }
            ev.stats.restarts = ev.sandbox.restarts;
            ev.stats.nanos += started.elapsed().as_nanos() as u64;
        }
        true
    }

    /// Alerts for plugins whose crash-loop breaker opened or closed.
    fn breaker_alerts(&mut self, now: u64) -> Vec<Alert> {
        let mut alerts = Vec::new();
        let mut add = |spec: &PluginSpec, events: Vec<BreakerEvent>| {
            for e in events {
                alerts.push(breaker_alert(spec, e, now));
            }
        };
        for s in &mut self.stages {
            let events = s.sandbox.breaker_events();
            add(s.sandbox.spec(), events);
        }
        for s in &mut self.evaluators {
            let events = s.sandbox.breaker_events();
            add(s.sandbox.spec(), events);
        }
        if let Some(r) = &mut self.router {
            let events = r.sandbox.breaker_events();
            add(r.sandbox.spec(), events);
        }
        for s in &mut self.exports {
            let events = s.sandbox.breaker_events();
            add(s.sandbox.spec(), events);
        }
        alerts
    }

    /// The `wal_dropped` alert: raised when `drop-oldest` deleted log
    /// records since the last tick, resolved once the log is below half its
    /// bound again.
    fn wal_alert(&mut self, now: u64) -> Option<Alert> {
        let stats = self.wal.as_ref()?.stats();
        let raise = |firing: bool, summary: String| Alert {
            rule: "wal_dropped".into(),
            severity: Severity::Page,
            labels: Vec::new(),
            summary,
            value: stats.dropped_spans as f64,
            threshold: 0.0,
            runbook: "examples/runbooks/wal-dropped.md".into(),
            firing,
            at: now,
        };
        match self.wal_alert {
            Some(alerted) if stats.dropped_spans > alerted => {
                self.wal_alert = Some(stats.dropped_spans);
                Some(raise(
                    true,
                    format!(
                        "write-ahead log full: {} spans in all lost their protection against a crash",
                        stats.dropped_spans
                    ),
                ))
            }
            None if stats.dropped_spans > 0 => {
                self.wal_alert = Some(stats.dropped_spans);
                Some(raise(
                    true,
                    format!(
                        "write-ahead log full: the oldest records were deleted; {} spans lost their protection against a crash",
                        stats.dropped_spans
                    ),
                ))
            }
            Some(_) if stats.bytes * 2 < stats.max_bytes => {
                self.wal_alert = None;
                Some(raise(
                    false,
                    "write-ahead log below half its bound again".into(),
                ))
            }
            _ => None,
        }
    }

    /// Runs processor `i`; false when the batch is gone (dropped or
    /// dead-lettered on error).
    fn run_stage(&mut self, i: usize, batch: &mut Batch) -> bool {
        let stage = &mut self.stages[i];
        let started = Instant::now();
        stage.stats.spans_in += batch.len() as u64;
        stage
            .projection
            .project(batch, &mut self.scratch.batch, &mut self.scratch.rows);
        stage.stats.project_nanos += started.elapsed().as_nanos() as u64;
        let outcome = if self.scratch.batch.rows == 0 {
            Ok(())
        } else {
            stage
                .sandbox
                .process(&self.scratch.batch)
                .and_then(|result| {
                    let applying = Instant::now();
                    let applied = apply_result(
                        &stage.projection,
                        batch,
                        &self.scratch.rows,
                        result,
                        &mut stage.stats,
                    );
                    stage.stats.apply_nanos += applying.elapsed().as_nanos() as u64;
                    applied
                })
        };
        stage.stats.restarts = stage.sandbox.restarts;
        let keep = match outcome {
            Ok(()) => true,
            Err(e) => {
                note_error(&mut stage.stats, stage.sandbox.spec(), &e);
                // While the breaker keeps the stage disabled, its own policy
                // applies instead of `on_error`.
                let on_error = match (&e, stage.sandbox.spec().breaker.policy) {
                    (PluginError::Disabled { .. }, BreakerPolicy::Bypass) => OnError::Pass,
                    (PluginError::Disabled { .. }, BreakerPolicy::Stop) => OnError::DeadLetter,
                    _ => stage.sandbox.spec().on_error,
                };
                match on_error {
                    OnError::Pass => {
                        stage.stats.passed_on_error += batch.len() as u64;
                        true
                    }
                    OnError::Drop => {
                        stage.stats.dropped_on_error += batch.len() as u64;
                        false
                    }
                    OnError::DeadLetter => {
                        let name = stage.sandbox.spec().name.clone();
                        stage.stats.dead_lettered += batch.len() as u64;
                        self.dead_letter(&name, &e, batch);
                        false
                    }
                }
            }
        };
        let stage = &mut self.stages[i];
        if keep {
            stage.stats.spans_out += batch.len() as u64;
        }
        stage.stats.nanos += started.elapsed().as_nanos() as u64;
        keep
    }

    /// Writes failed spans, each with its stage and error, to the dead-letter
    /// file. If even that fails, the spans are logged as lost: never silent.
    fn dead_letter(&mut self, stage: &str, error: &PluginError, batch: &[Span]) {
        if self.dead_letter.is_none() {
            match Sink::open(&self.dead_letter_path.display().to_string()) {
                Ok(s) => self.dead_letter = Some(s),
                Err(e) => {
                    tracing::error!(
                        stage,
                        "dead-letter file unusable, {} spans lost: {e:#}",
                        batch.len()
                    );
                    return;
                }
            }
        }
        let mut out = Vec::with_capacity(batch.len() * 700);
        for span in batch {
            out.extend_from_slice(br#"{"stage":"#);
            flat::write_str(&mut out, stage);
            out.extend_from_slice(br#","error":"#);
            flat::write_str(&mut out, &error.to_string());
            out.extend_from_slice(br#","span":"#);
            flat::write(&mut out, span);
            out.extend_from_slice(b"}\n");
        }
        if let Some(sink) = &mut self.dead_letter
            && let Err(e) = sink.write_all(&out, 0, 0).and_then(|_| sink.flush())
        {
            tracing::error!(
                stage,
                "writing the dead-letter file failed, {} spans lost: {e}",
                batch.len()
            );
        }
    }

    /// Advances evaluators to the current event time (when it moved) and
    /// routes their alerts, with the host's own.
    fn tick(&mut self, advanced: bool) -> Vec<Notification> {
        let now = self.event_time;
        let mut alerts: Vec<Alert> = std::mem::take(&mut self.pending_alerts);
        alerts.append(&mut self.breaker_alerts(now));
        alerts.extend(self.wal_alert(now));
        for ev in self.evaluators.iter_mut().filter(|_| advanced) {
            match ev.call(|s| s.tick(now)) {
                Ok(mut a) => alerts.append(&mut a),
                Err(e) => note_error(&mut ev.stats, ev.sandbox.spec(), &e),
            }
        }
        if alerts.is_empty() {
            return Vec::new();
        }
        let notifications = match &mut self.router {
            Some(r) => match r.sandbox.route(&alerts, now) {
                Ok(n) => n,
                Err(e) => {
                    // Alerts must not vanish because the router failed: send
                    // them unrouted to every exporter.
                    note_error(&mut r.stats, r.sandbox.spec(), &e);
                    alerts.into_iter().map(unrouted).collect()
                }
            },
            None => alerts.into_iter().map(unrouted).collect(),
        };
        if self.router.is_none() {
            for n in &notifications {
                self.alerts.push(notification_json(n));
            }
        }
        notifications
    }

    /// Writes each exporter's payload of a batch to its sink, then the
    /// notifications routed to it.
    fn write(&mut self, p: &Prepared, notifications: &[Notification]) {
        let bytes = &mut self.scratch.bytes;
        for (i, ex) in self.exports.iter_mut().enumerate() {
            let started = Instant::now();
            // Counted here, not where the payload was made: a batch that an
            // evaluator dropped (`on_error = "drop"`) never reaches the exporters.
            ex.stats.spans_in += p.spans;
            if let Some(Some(payload)) = p.payloads.get(i) {
                match ex.sink.write_all(payload, p.spans, p.seq) {
                    Ok(()) => {
                        ex.stats.exported += p.spans;
                        ex.stats.bytes += payload.len() as u64;
                    }
                    Err(e) => {
                        *ex.stats.errors.entry("io").or_default() += 1;
                        ex.stats.dropped_on_error += p.spans;
                        tracing::error!(export = %ex.sandbox.spec().name, "write failed, {} spans lost: {e}", p.spans);
                    }
                }
            }
            let mine: Vec<Notification> = notifications
                .iter()
                .filter(|n| {
                    n.destinations.is_empty()
                        || n.destinations.iter().any(|d| *d == ex.sandbox.spec().name)
                })
                .cloned()
                .collect();
            // An HTTP sink takes one alert per request (PagerDuty Events v2
            // accepts one event per call); other sinks take them together.
            let chunk = if ex.sink.is_remote() {
                1
            } else {
                mine.len().max(1)
            };
            for group in mine.chunks(chunk) {
                bytes.clear();
                match ex
                    .sandbox
                    .export_alerts(group)
                    .and_then(|parts| render(bytes, &parts, &[], &[]))
                {
                    Ok(()) => {
                        if let Err(e) = ex.sink.write_all(bytes, 0, 0) {
                            *ex.stats.errors.entry("io").or_default() += 1;
                            tracing::error!(export = %ex.sandbox.spec().name, "{} alerts lost: {e}", group.len());
                        }
                    }
                    Err(e) => note_error(&mut ex.stats, ex.sandbox.spec(), &e),
                }
            }
            if let Err(e) = ex.sink.flush() {
                tracing::error!(export = %ex.sandbox.spec().name, "flush failed: {e}");
            }
            ex.stats.restarts = ex.sandbox.restarts;
            ex.stats.nanos += started.elapsed().as_nanos() as u64;
        }
    }

    /// Runs every held trace, then flushes every sink. Call once at the end
    /// of a run (end of input, or shutdown).
    pub fn flush(&mut self) {
        let mut groups = Vec::new();
        self.hold.release_all(|g| groups.push(g));
        self.run_groups(groups);
        self.flush_forward();
        for ex in &mut self.exports {
            if let Err(e) = ex.sink.drain() {
                tracing::error!(export = %ex.sandbox.spec().name, "flush failed: {e}");
            }
        }
        if let Some(dl) = &mut self.dead_letter {
            let _ = dl.flush();
        }
    }

    /// The first write-ahead log record the engine may still need: records
    /// below it arrived whole (batches hold whole records, in order) and
    /// have left the pipeline (exported, dropped, dead-lettered), except for
    /// payloads queued for remote sinks (see [`Engine::floors`]).
    pub fn wal_keep_from(&self) -> u64 {
        let arrived = self.seen_seq + 1;
        let held = self.hold.min_seq().unwrap_or(u64::MAX);
        arrived.min(held).min(self.queued_from())
    }

    /// The first log record whose spans wait in a remote sink's queue
    /// (`u64::MAX`: none).
    pub fn queued_from(&self) -> u64 {
        self.floors()
            .iter()
            .filter_map(|f| f.min_seq())
            .min()
            .unwrap_or(u64::MAX)
    }

    /// The log records each remote sink still needs, as they change.
    pub fn floors(&self) -> Vec<delivery::Floor> {
        self.exports
            .iter()
            .filter_map(|ex| match &ex.sink {
                Sink::Remote(d) => Some(d.floor()),
                _ => None,
            })
            .collect()
    }

    /// Reports the write-ahead log's counters with the engine's (`stats`,
    /// `/metrics`) and raises its `wal_dropped` alert.
    pub fn attach_wal(&mut self, counters: Arc<WalCounters>) {
        self.wal = Some(counters);
    }

    /// Sends processed spans on instead of to this engine's own evaluators
    /// and exporters (see `shards`).
    pub(crate) fn set_forward(&mut self, forward: Option<shards::Forward>) {
        self.forward = forward;
    }

    /// Whether the trace hold is on (spans wait for their trace).
    pub(crate) fn holds(&self) -> bool {
        self.hold.enabled()
    }

    /// The head of a sharded pipeline without a trace hold: sends lines on
    /// to the shards to parse (see [`shards::Forward::lines`]).
    pub(crate) fn route_lines(&mut self, lines: Lines, parsed: &mut ReadStats) {
        if let Some(forward) = self.forward.as_mut().filter(|f| f.is_head()) {
            let here = forward.lines(lines, parsed);
            self.spans_in += here;
            self.spans_out += here;
            forward.flush();
        }
    }

    /// Sends on what the head gathered for its shards, backlog or not.
    pub(crate) fn flush_forward(&mut self) {
        if let Some(forward) = &mut self.forward {
            forward.flush_all();
        }
    }

    /// See [`shards::Runner::set_backlog`].
    pub(crate) fn set_backlog(&mut self, more: bool) {
        if let Some(forward) = &mut self.forward {
            forward.set_backlog(more);
        }
    }

    pub(crate) fn take_forward(&mut self) -> Option<shards::Forward> {
        self.forward.take()
    }

    pub(crate) fn forward(&self) -> Option<&shards::Forward> {
        self.forward.as_ref()
    }

    /// Makes what file sinks and the dead-letter file got durable (fsync),
    /// before the log records of their spans are released.
    pub fn sync_files(&mut self) {
        for ex in &mut self.exports {
            if let Err(e) = ex.sink.sync() {
                tracing::error!(export = %ex.sandbox.spec().name, "sync failed: {e}");
            }
        }
        if let Some(dl) = &mut self.dead_letter
            && let Err(e) = dl.sync()
        {
            tracing::error!("dead-letter file: sync failed: {e}");
        }
    }

    /// Takes over from `old`, the pipeline this one replaces (a reload), so
    /// that no span is lost or run twice: the held spans move here (with the
    /// clocks their deadlines are measured on), counters continue, and each
    /// evaluator that runs the same plugin code under the same name gets the
    /// old one's state. Call on the engine thread between two batches, then
    /// `retire` the old engine. Returns the evaluators whose state carried over.
    pub fn take_over(&mut self, old: &mut Engine) -> Vec<String> {
        let settings = self.hold.settings().clone();
        std::mem::swap(&mut self.hold, &mut old.hold);
        self.hold.set_settings(settings);
        self.started = old.started;
        self.event_time = old.event_time;
        self.arrived_time = old.arrived_time;
        self.seen_seq = old.seen_seq;
        self.wal = old.wal.clone();
        self.wal_alert = old.wal_alert;
        self.spans_in = old.spans_in;
        self.spans_out = old.spans_out;
        self.pending_alerts = std::mem::take(&mut old.pending_alerts);
        let mut carried = Vec::new();
        for ev in &mut self.evaluators {
            let Some(prev) = old
                .evaluators
                .iter_mut()
                .find(|o| o.sandbox.same_plugin(&ev.sandbox))
            else {
                continue;
            };
            ev.stats = prev.stats.clone();
            let name = ev.sandbox.spec().name.clone();
            match prev.call(|s| s.snapshot()) {
                Ok(state) if state.is_empty() => {} // keeps no state
                Ok(state) => match ev.call(|s| s.restore(&state)) {
                    Ok(()) => {
                        ev.snapshot = Some(state);
                        carried.push(name);
                    }
                    Err(e) => {
                        tracing::warn!(evaluator = %name, "state not carried over the reload: {e}")
                    }
                },
                Err(e) => {
                    tracing::warn!(evaluator = %name, "state not carried over the reload: {e}")
                }
            }
        }
        // Counters of entries kept under the same name continue.
        for ob in &mut self.observers {
            if let Some(p) = old.observers.iter().find(|p| p.stats.name == ob.stats.name) {
                ob.stats = p.stats.clone();
            }
        }
        for st in &mut self.stages {
            if let Some(p) = old.stages.iter().find(|p| p.stats.name == st.stats.name) {
                st.stats = p.stats.clone();
            }
        }
        for ex in &mut self.exports {
            if let Some(p) = old.exports.iter().find(|p| p.stats.name == ex.stats.name) {
                ex.stats = p.stats.clone();
            }
        }
        if !self.hold.enabled() {
            let mut groups = Vec::new();
            self.hold.release_all(|g| groups.push(g));
            self.run_groups(groups);
        }
        carried
    }

    /// Finishes a replaced engine: files are flushed now, before the new
    /// engine appends to them; remote sinks drain in the background. Its
    /// trace hold must have been taken over (it is not run). Join the
    /// returned thread before the process exits.
    pub fn retire(mut self) -> Option<std::thread::JoinHandle<()>> {
        for ex in &mut self.exports {
            if let Err(e) = ex.sink.flush() {
                tracing::error!(export = %ex.sandbox.spec().name, "flush failed: {e}");
            }
        }
        if let Some(dl) = &mut self.dead_letter {
            let _ = dl.flush();
        }
        let spawned = std::thread::Builder::new()
            .name("plume-retire".into())
            .spawn(move || {
                for ex in &mut self.exports {
                    let _ = ex.sink.drain();
                }
            });
        spawned
            .map_err(|e| tracing::error!("cannot drain the replaced pipeline's sinks: {e}"))
            .ok()
    }

    /// The pipeline's event time (greatest span end time seen), ns.
    pub fn event_time(&self) -> u64 {
        self.event_time
    }

    /// Counters of every entry.
    pub fn stats(&self) -> PipelineStats {
        PipelineStats {
            lines_read: 0,
            lines_failed: 0,
            spans_in: self.spans_in,
            spans_out: self.spans_out,
            stages: self
                .stages
                .iter()
                .map(|s| with_breaker(&s.stats, &s.sandbox))
                .collect(),
            evaluators: self.evaluator_stats(),
            router: self
                .router
                .as_ref()
                .map(|r| with_breaker(&r.stats, &r.sandbox)),
            exports: self
                .exports
                .iter()
                .map(|s| EntryStats {
                    delivery: match &s.sink {
                        Sink::Remote(d) => Some(d.stats()),
                        _ => None,
                    },
                    ..with_breaker(&s.stats, &s.sandbox)
                })
                .collect(),
            hold: self.hold.stats(),
            wal: self.wal.as_ref().map(|w| w.stats()),
        }
    }

    /// Each evaluator's counters, its projection's time included. A
    /// processor shard has only the projections (the tail adds them up).
    fn evaluator_stats(&self) -> Vec<EntryStats> {
        if self.evaluators.is_empty() {
            return self.observers.iter().map(|o| o.stats.clone()).collect();
        }
        self.evaluators
            .iter()
            .zip(&self.observers)
            .map(|(ev, ob)| {
                let mut stats = with_breaker(&ev.stats, &ev.sandbox);
                stats.project_nanos += ob.stats.project_nanos;
                stats.nanos += ob.stats.nanos;
                stats
            })
            .collect()
    }

    /// Gives a processor shard the tail's evaluator projections, so that it
    /// prepares their batches (see [`Prepared`]).
    pub(crate) fn observe_for(&mut self, tail: &Engine) {
        self.observers = tail
            .observers
            .iter()
            .map(|o| Observer {
                projection: o.projection.clone(),
                stats: EntryStats {
                    name: o.stats.name.clone(),
                    ..EntryStats::default()
                },
            })
            .collect();
    }

    /// The report: every stage's, evaluator's and the router's sections merged
    /// (arrays concatenated), plus the alerts sent when there is no router.
    pub fn report(&mut self) -> Json {
        let parts = self.report_parts();
        assemble_report(parts)
    }

    /// What [`Engine::report`] is made of: each entry's section (a JSON
    /// object) by name, in pipeline order, and the alerts sent when there
    /// is no router.
    pub fn report_parts(&mut self) -> ReportParts {
        let mut sections: Vec<(String, String)> = Vec::new();
        for st in &mut self.stages {
            match st.sandbox.report() {
                Ok(text) => sections.push((st.sandbox.spec().name.clone(), text)),
                Err(e) => note_error(&mut st.stats, st.sandbox.spec(), &e),
            }
        }
        for ev in &mut self.evaluators {
            match ev.call(|s| s.report()) {
                Ok(text) => sections.push((ev.sandbox.spec().name.clone(), text)),
                Err(e) => note_error(&mut ev.stats, ev.sandbox.spec(), &e),
            }
        }
        if let Some(r) = &mut self.router {
            match r.sandbox.report() {
                Ok(text) => sections.push((r.sandbox.spec().name.clone(), text)),
                Err(e) => note_error(&mut r.stats, r.sandbox.spec(), &e),
            }
        }
        let sections = sections
            .into_iter()
            .filter_map(|(name, text)| match serde_json::from_str::<Json>(&text) {
                Ok(Json::Object(obj)) => Some((name, obj)),
                _ => {
                    tracing::warn!(entry = %name, "report is not a JSON object; ignored");
                    None
                }
            })
            .collect();
        ReportParts {
            sections,
            unrouted_alerts: self.router.is_none().then(|| self.alerts.clone()),
        }
    }
}

/// The pieces of a report (see [`Engine::report_parts`]).
pub struct ReportParts {
    /// Each entry's section, by entry name, in pipeline order.
    pub sections: Vec<(String, Map<String, Json>)>,
    /// The alerts sent, when no router keeps them.
    pub unrouted_alerts: Option<Vec<Json>>,
}

/// The report from its parts: sections merged in order (arrays concatenated,
/// other values replace earlier ones), then the unrouted alerts.
pub fn assemble_report(parts: ReportParts) -> Json {
    let mut report = Map::new();
    if let Some(alerts) = parts.unrouted_alerts {
        report.insert("alerts".into(), Json::Array(alerts));
    }
    for (_, section) in parts.sections {
        merge_report(&mut report, section);
    }
    Json::Object(report)
}

/// Merges one plugin's report into the whole: arrays are concatenated, other
/// values replace earlier ones.
fn merge_report(into: &mut Map<String, Json>, from: Map<String, Json>) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Json::Array(existing)), Json::Array(mut more)) => existing.append(&mut more),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

fn note_error(stats: &mut EntryStats, spec: &PluginSpec, e: &PluginError) {
    *stats.errors.entry(e.label()).or_default() += 1;
    // A disabled plugin is logged once, when its breaker opens.
    if !matches!(e, PluginError::Disabled { .. }) {
        tracing::warn!(entry = %spec.name, on_error = ?spec.on_error, "plugin {e}");
    }
}

/// An entry's counters with its breaker's state.
/// An entry's counters with what its sandbox knows now (breaker, memory).
fn with_breaker<W: crate::plugin::instance::World>(
    stats: &EntryStats,
    sandbox: &Sandbox<W>,
) -> EntryStats {
    EntryStats {
        disabled: sandbox.disabled(),
        breaker_trips: sandbox.breaker_trips(),
        memory_bytes: sandbox.memory_bytes(),
        ..stats.clone()
    }
}

/// The alert for a breaker's change of state.
fn breaker_alert(spec: &PluginSpec, event: BreakerEvent, at: u64) -> Alert {
    let b = &spec.breaker;
    let (firing, summary, value) = match event {
        BreakerEvent::Opened { failures } => {
            tracing::error!(
                entry = %spec.name,
                "disabled by the crash-loop breaker: {failures} failures within {:?}; next try in {:?} ({:?} meanwhile)",
                b.window, b.cooldown, b.policy
            );
            (
                true,
                format!(
                    "{} {} failed {failures} times within {}s: disabled ({:?}) for {}s",
                    spec.kind,
                    spec.name,
                    b.window.as_secs(),
                    b.policy,
                    b.cooldown.as_secs()
                ),
                failures as f64,
            )
        }
        BreakerEvent::Closed => {
            tracing::info!(entry = %spec.name, "enabled again: a try after the cooldown succeeded");
            (
                false,
                format!("{} {} works again", spec.kind, spec.name),
                0.0,
            )
        }
    };
    Alert {
        rule: "plugin_disabled".into(),
        severity: Severity::Page,
        labels: vec![("entry".into(), spec.name.clone())],
        summary,
        value,
        threshold: b.max_failures as f64,
        runbook: "examples/runbooks/plugin-disabled.md".into(),
        firing,
        at,
    }
}

/// Validates every edit before applying any, so a bad answer leaves the batch
/// untouched for the `on_error` policy.
fn apply_result(
    projection: &Projection,
    batch: &mut Batch,
    rows: &[u32],
    result: crate::plugin::bindings::types::BatchResult,
    stats: &mut EntryStats,
) -> Result<(), PluginError> {
    let writes = projection
        .writes_of(&result.edits, rows.len())
        .map_err(PluginError::Contract)?;
    if let Some(bad) = result.drops.iter().find(|&&r| r as usize >= rows.len()) {
        return Err(PluginError::Contract(format!(
            "drop of row {bad}, but the batch has {} rows",
            rows.len()
        )));
    }
    projection.apply(batch, rows, writes);
    if !result.drops.is_empty() {
        let mut doomed = vec![false; batch.len()];
        for r in &result.drops {
            doomed[rows[*r as usize] as usize] = true;
        }
        let before = batch.len();
        let mut i = 0;
        batch.retain(|_| {
            let keep = !doomed[i];
            i += 1;
            keep
        });
        stats.dropped_by_plugin += (before - batch.len()) as u64;
    }
    Ok(())
}

/// Renders an exporter's parts into bytes.
fn render(
    out: &mut Vec<u8>,
    parts: &[Part],
    batch: &[Span],
    rows: &[u32],
) -> Result<(), PluginError> {
    let row = |r: u32| {
        rows.get(r as usize)
            .and_then(|&i| batch.get(i as usize))
            .ok_or_else(|| {
                PluginError::Contract(format!(
                    "part names row {r}, but the batch has {} rows",
                    rows.len()
                ))
            })
    };
    for part in parts {
        match part {
            Part::Bytes(b) => out.extend_from_slice(b),
            Part::Text(t) => out.extend_from_slice(t.as_bytes()),
            Part::SpansOtlpProto(o) => {
                let mut spans = Vec::with_capacity(o.rows.len());
                for r in &o.rows {
                    spans.push(std::borrow::Cow::Borrowed(row(*r)?));
                }
                edit_copies(&mut spans, &o.rows, &o.edits)?;
                let request = crate::span::otlp_proto::to_proto(spans.iter().map(|s| &**s));
                prost::Message::encode(&request, out).map_err(|e| {
                    PluginError::Contract(format!("cannot encode OTLP protobuf: {e}"))
                })?;
            }
            Part::SpanFlat(r) | Part::SpanOtlpJson(r) => {
                let span = row(*r)?;
                if matches!(part, Part::SpanFlat(_)) {
                    render_flat(out, span);
                } else {
                    render_otlp_json(out, span);
                }
            }
            Part::SpanLines(lines) => {
                for &r in &lines.rows {
                    let span = row(r)?;
                    match lines.format {
                        LineFormat::Flat => render_flat(out, span),
                        LineFormat::OtlpJson => render_otlp_json(out, span),
                    }
                    out.push(b'\n');
                }
            }
        }
    }
    Ok(())
}

/// Applies an exporter's payload-only edits to copies of the spans it names.
fn edit_copies(
    spans: &mut [std::borrow::Cow<'_, Span>],
    rows: &[u32],
    edits: &[(u32, String, Value)],
) -> Result<(), PluginError> {
    if edits.is_empty() {
        return Ok(());
    }
    let position: std::collections::HashMap<u32, usize> =
        rows.iter().enumerate().map(|(i, &r)| (r, i)).collect();
    for (r, key, value) in edits {
        let i = *position.get(r).ok_or_else(|| {
            PluginError::Contract(format!(
                "edit names row {r}, which the payload does not send"
            ))
        })?;
        let attrs = &mut spans[i].to_mut().attributes;
        match crate::plugin::projection::attr_value(value, key).map_err(PluginError::Contract)? {
            Some(v) => attrs.set(crate::span::Key::from(key.as_str()), v),
            None => match key.strip_suffix('*') {
                Some(prefix) => attrs.0.retain(|(k, _)| !k.starts_with(prefix)),
                None => {
                    attrs.remove(key);
                }
            },
        }
    }
    Ok(())
}

/// The notification for an alert when no router decides: every exporter.
fn unrouted(alert: Alert) -> Notification {
    let mut labels = alert.labels.clone();
    labels.sort();
    let mut hasher = Fnv1a::default();
    hasher.write(alert.rule.as_bytes());
    for (k, v) in &labels {
        hasher.write(&[0]);
        hasher.write(k.as_bytes());
        hasher.write(&[1]);
        hasher.write(v.as_bytes());
    }
    Notification {
        fingerprint: format!("{:016x}", hasher.0),
        count: 1,
        first_seen: alert.at,
        destinations: vec![],
        alert,
    }
}

/// FNV-1a: a stable hash for alert fingerprints (std's hasher may change).
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Page => "page",
    }
}

/// A notification as the report's `alerts` entry (DESIGN.md shape).
pub fn notification_json(n: &Notification) -> Json {
    let labels: Map<String, Json> = n
        .alert
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Json::from(v.as_str())))
        .collect();
    json!({
        "id": n.fingerprint,
        "rule": n.alert.rule,
        "severity": severity_name(n.alert.severity),
        "status": if n.alert.firing { "firing" } else { "resolved" },
        "labels": labels,
        "summary": n.alert.summary,
        "first_seen": crate::span::format_unix_nanos(n.first_seen),
        "count": n.count,
        "runbook": n.alert.runbook,
    })
}

/// Writes the processed-span summary line used by `run` and `replay`.
pub fn write_summary(out: &mut impl Write, stats: &PipelineStats) -> std::io::Result<()> {
    writeln!(
        out,
        "plume: {} lines read ({} failed), {} spans in, {} spans out",
        stats.lines_read, stats.lines_failed, stats.spans_in, stats.spans_out
    )?;
    let h = &stats.hold;
    if h.duplicate_spans > 0 || h.released_early > 0 {
        writeln!(
            out,
            "plume:   trace hold: {} resent spans dropped, {} traces released before they were quiet (max_spans), at most {} spans held",
            h.duplicate_spans, h.released_early, h.held_max
        )?;
    }
    if let Some(w) = &stats.wal {
        writeln!(
            out,
            "plume:   write-ahead log: {} spans logged ({} fsyncs), {} replayed at start, {} refused while full, {} lost their crash protection (drop-oldest), {} records kept for the next start",
            w.appended_spans,
            w.syncs,
            w.replayed_spans,
            w.refused_full,
            w.dropped_spans,
            w.unreleased
        )?;
    }
    for s in stats
        .stages
        .iter()
        .chain(&stats.evaluators)
        .chain(&stats.router)
        .chain(&stats.exports)
    {
        let errors: u64 = s.errors.values().sum();
        let lost = s.dropped_on_error + s.dead_lettered;
        if errors > 0 || lost > 0 || s.dropped_by_plugin > 0 {
            writeln!(
                out,
                "plume:   {}: {} errors {:?}, {} spans passed on error, {} dropped on error, {} dead-lettered, {} dropped by plugin",
                s.name,
                errors,
                s.errors,
                s.passed_on_error,
                s.dropped_on_error,
                s.dead_lettered,
                s.dropped_by_plugin
            )?;
        }
        if let Some(d) = &s.delivery {
            writeln!(
                out,
                "plume:   {}: {} spans sent ({} rejected by the backend), {} failed, {} dropped; {} retries",
                s.name, d.sent_spans, d.rejected_spans, d.failed_spans, d.dropped_spans, d.retries
            )?;
        }
    }
    Ok(())
}
