//! The service's pipeline on one thread or on several.
//!
//! Processors are where most of a span's time goes, and their state is at
//! most per call or per trace, so with `[engine] shards = N` (N > 1) they run
//! as N shards: copies of the processor chain, each on its own thread with
//! its own plugin instances. Evaluators keep state over every span
//! (percentiles, budgets, burn rates) and the exporters' sinks are single
//! files and queues, so evaluators run once, with the router, on the tail
//! thread, which also writes every payload. The trace hold runs before the
//! shards on the engine thread (the head): a released group (one trace, or
//! traces joined by `join_on` or stitched) goes whole to the shard its trace
//! id picks, so a processor sees all of a call's spans.
//!
//! ```text
//! batcher -> head (trace hold) -+-> shard 0 (processors) -+-> tail (evaluators, router, sinks)
//!                               +-> shard 1 (processors) -+
//! ```
//!
//! Without a trace hold (and without a log, which records spans as they
//! arrive), JSONL lines reach the head unparsed: it reads only each line's
//! trace id and sends the line to that trace's shard, which parses it
//! ([`Forward::lines`]), so each span is first read on the core that runs
//! it, and parsing, a large share of the host's work, is spread over the
//! shards.
//!
//! A shard also does the rest of a batch's work that reads spans: it
//! projects the batch for each of the tail's evaluators and renders each
//! exporter's payload (with exporter instances of its own), then sends those
//! ([`Prepared`]) instead of the spans. The tail never reads a span: reading
//! spans written on another core cost two shards a quarter more CPU a span
//! than one thread (BENCHMARKS.md).
//!
//! Every part is an [`Engine`] built from its part of the pipeline, so a
//! span meets the same code either way. The queues between threads are
//! bounded: a slow tail slows the shards, then the head, then the receivers.
//! Write-ahead log records are released by a mark that follows the spans
//! through every queue (see [`Mark`]).

use super::delivery::Floor;
use super::hold::HoldSettings;
use super::stats::PipelineStats;
use super::{Engine, EngineOptions, Prepared, ReportParts, assemble_report};
use crate::config::{ConfigErrors, Pipeline, PluginSpec};
use crate::ingest::jsonl::{Lines, ReadStats};
use crate::plugin::runtime::Runtime;
use crate::span::jsonl::trace_id_of_line;
use crate::span::{Batch, Span, TraceId};
use crate::wal::Wal;
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Buffers of prepared batches on their way back from the tail to the shard
/// that made them (see [`Forward::spare`]).
pub(crate) type Spares = Arc<Mutex<Vec<Prepared>>>;

/// Spare buffers kept per shard, at most: about what its queue to the tail holds.
const MAX_SPARES: usize = 64;

/// How often, at most, log records are released.
const RELEASE_EVERY: Duration = Duration::from_millis(100);

/// Spans waiting, at most, in each queue between threads (the tail's; the
/// shards' queues share `QUEUE_SPANS` per shard, see [`InFlight`]), counted
/// in batches of the pipeline's size (see `queue_batches`).
/// A pipeline on N cores runs N + 2 threads, so a thread waits a scheduler
/// slice now and then; a queue must hold more work than that wait or the
/// thread after it idles. Measured on two cores (BENCHMARKS.md): queues of 8
/// and 32 batches of 256 kept 1.68 cores busy (`plume bench --shards 2`),
/// 32 and 32 kept 1.77, 64 and 64 kept 1.88 but held a span up to ~0.4 s
/// when the service ran near its limit (p99 at 90% of the maximum rate:
/// 25-140 ms, 93-97 ms and 320-390 ms). Queues are full only then; the
/// hold and the receivers' backpressure bound what waits before them.
const QUEUE_SPANS: usize = 8_192;

/// A queue's length in batches: `QUEUE_SPANS` in batches of
/// `batch_max_spans`, and at least a few, so large batches still overlap.
fn queue_batches(batch_max_spans: usize) -> usize {
    (QUEUE_SPANS / batch_max_spans.max(1)).clamp(4, 64)
}

/// Spans the head has sent to the shards and they have not yet run, bounded
/// across all shards (`QUEUE_SPANS` each on average) rather than per shard:
/// with one bound per shard, the head waited on the one whose queue was
/// full while the other ran dry, and on two cores a third of a core idled
/// (BENCHMARKS.md). A shard may now hold more than its share for a while.
pub(crate) struct InFlight {
    state: Mutex<InFlightState>,
    room: Condvar,
    limit: usize,
}

#[derive(Default)]
struct InFlightState {
    spans: usize,
    /// A shard's thread ended: nothing waits for room any more (what is sent
    /// to that shard is lost, and `send` says so).
    closed: bool,
}

impl InFlight {
    fn new(limit: usize) -> Arc<InFlight> {
        Arc::new(InFlight {
            state: Mutex::new(InFlightState::default()),
            room: Condvar::new(),
            limit,
        })
    }

    /// Waits until `n` more spans fit (always, when none are in flight).
    fn acquire(&self, n: usize) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while !s.closed && s.spans > 0 && s.spans + n > self.limit {
            s = self.room.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.spans += n;
    }

    /// `n` spans have been run by a shard. A head waiting for room is woken
    /// once half the bound is free, not at every batch run: then it sends
    /// many batches at once, instead of taking a core from a shard for each
    /// (a head woken per batch switched threads ~3 times a batch on two cores).
    fn release(&self, n: usize) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.spans = s.spans.saturating_sub(n);
        let room = s.spans <= self.limit / 2;
        drop(s);
        if room {
            self.room.notify_one();
        }
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.room.notify_all();
    }
}

/// Closes the shards' bound when a shard's thread ends, even by a panic, so
/// that the head never waits for room that will not come.
struct CloseOnExit(Arc<InFlight>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The head's queue to one shard: unbounded itself, bounded by [`InFlight`].
pub(crate) struct ShardQueue {
    tx: Sender<WorkerMsg>,
    in_flight: Arc<InFlight>,
}

impl ShardQueue {
    /// Sends spans to run, once they fit in the shards' bound.
    fn spans(&self, batch: Batch) {
        self.in_flight.acquire(batch.len());
        self.send(WorkerMsg::Spans(batch));
    }

    /// Sends lines to parse and run, once they fit (a line is counted as a
    /// span: nearly every line is one).
    fn lines(&self, lines: Lines) {
        self.in_flight.acquire(lines.len());
        self.send(WorkerMsg::Lines(lines));
    }

    /// Sends a message that is not spans (marks, questions, the end).
    fn send(&self, msg: WorkerMsg) {
        if self.tx.send(msg).is_err() {
            lost();
        }
    }
}

/// A replaced engine whose remote sinks still drain, with the log records
/// they still need.
type Retired = (Option<JoinHandle<()>>, Vec<Floor>);

/// The engines of a pipeline, built and initialised, not yet running.
pub enum Plan {
    /// The whole pipeline on one thread.
    Single(Box<Engine>),
    /// Head (the trace hold), processor shards, tail (the rest).
    Sharded {
        head: Box<Engine>,
        shards: Vec<Engine>,
        tail: Box<Engine>,
    },
}

impl Plan {
    /// Builds the engines for `shards` processor shards (1: one engine).
    pub fn build(
        pipeline: &Pipeline,
        rt: &Runtime,
        options: &EngineOptions,
        shards: usize,
    ) -> Result<Plan, ConfigErrors> {
        if shards <= 1 {
            return Ok(Plan::Single(Box::new(Engine::build(
                pipeline, rt, options,
            )?)));
        }
        let no_hold = HoldSettings {
            wait: Duration::ZERO,
            ..pipeline.hold.clone()
        };
        let head = Pipeline {
            stages: Vec::new(),
            evaluators: Vec::new(),
            router: None,
            exports: Vec::new(),
            ..pipeline.clone()
        };
        // A shard renders the exporters' payloads but never writes them:
        // its sinks are the tail's. Its processors and exporters each see
        // 1/shards of the traces: they are told so (`instances`).
        let shared = |specs: &[PluginSpec]| -> Vec<PluginSpec> {
            (specs.iter().cloned())
                .map(|spec| PluginSpec {
                    instances: shards as u32,
                    ..spec
                })
                .collect()
        };
        let shard = Pipeline {
            stages: shared(&pipeline.stages),
            exports: shared(&pipeline.exports),
            evaluators: Vec::new(),
            router: None,
            hold: no_hold.clone(),
            ..pipeline.clone()
        };
        let shard_options = EngineOptions {
            discard_output: true,
            ..options.clone()
        };
        let tail = Pipeline {
            stages: Vec::new(),
            hold: no_hold,
            ..pipeline.clone()
        };
        // Each engine is built on a thread of its own: the allocator then
        // gives each its own pages, so that the plugin instances of two
        // threads never share a cache line (measured: a shard spent a quarter
        // of its time on such lines when all were built on one thread).
        let built = std::thread::scope(|scope| {
            let shards: Vec<_> = (0..shards)
                .map(|_| scope.spawn(|| Engine::build(&shard, rt, &shard_options)))
                .collect();
            let tail = scope.spawn(|| Engine::build(&tail, rt, options));
            let shards = shards
                .into_iter()
                .map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect::<Result<Vec<_>, _>>();
            let tail = tail.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            (shards, tail)
        });
        let tail = built.1?;
        let mut shards = built.0?;
        for shard in &mut shards {
            shard.observe_for(&tail);
        }
        Ok(Plan::Sharded {
            head: Box::new(Engine::build(&head, rt, options)?),
            shards,
            tail: Box::new(tail),
        })
    }
}

/// What the head gathered for one shard: spans, or lines for the shard to
/// parse. One kind at a time (and lines of one source), so that the shard
/// gets them in the order they came.
#[derive(Default)]
pub(crate) struct Pending {
    spans: Batch,
    lines: Lines,
}

impl Pending {
    fn len(&self) -> usize {
        self.spans.len() + self.lines.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends what was gathered, leaving room for as much again at once
    /// (grown span by span, a batch of 256 was copied ~8 times).
    fn send(&mut self, to: &ShardQueue, max_spans: usize) {
        if !self.spans.is_empty() {
            to.spans(std::mem::replace(
                &mut self.spans,
                Vec::with_capacity(max_spans),
            ));
        }
        if !self.lines.is_empty() {
            to.lines(self.lines.take());
        }
    }

    /// Adds a span; sends the batch when full.
    fn push_span(&mut self, to: &ShardQueue, span: Span, max_spans: usize) {
        if !self.lines.is_empty() {
            self.send(to, max_spans);
        }
        self.spans.push(span);
        if self.len() >= max_spans {
            self.send(to, max_spans);
        }
    }

    /// Adds a line to parse; sends the batch when full.
    fn push_line(
        &mut self,
        to: &ShardQueue,
        (source, number, line): (&Arc<str>, u64, &[u8]),
        max_spans: usize,
    ) {
        if !self.spans.is_empty() || !self.lines.takes(source) {
            self.send(to, max_spans);
        }
        self.lines.push(source, number, line);
        if self.len() >= max_spans {
            self.send(to, max_spans);
        }
    }
}

/// Where an engine that runs part of a sharded pipeline sends its spans.
pub(crate) enum Forward {
    /// The head: whole groups to the shards, by trace id.
    Shards {
        to: Vec<ShardQueue>,
        /// Spans (or lines) gathered per shard, sent when a batch is full,
        /// or at `flush` unless more input is already waiting (`backlog`).
        pending: Vec<Pending>,
        max_spans: usize,
        /// More input waits for the head: a shard's partial batch can wait
        /// to be filled by it (see [`Runner::set_backlog`]).
        backlog: bool,
    },
    /// A shard: processed batches, prepared, to the tail, which hands their
    /// buffers back through `spares`.
    Tail {
        tx: SyncSender<WorkerMsg>,
        spares: Spares,
    },
}

impl Forward {
    /// The shard of a trace: ids are random, so their last bytes spread
    /// traces evenly.
    fn shard_of(trace_id: &TraceId, shards: usize) -> usize {
        let low = u64::from_le_bytes(trace_id.0[8..].try_into().unwrap_or_default());
        (low % shards as u64) as usize
    }

    /// The head sends each released group whole to one shard.
    pub(crate) fn is_head(&self) -> bool {
        matches!(self, Forward::Shards { .. })
    }

    /// Sends a group of spans whole to one shard (the head only).
    pub(crate) fn group(&mut self, group: Vec<Span>) {
        let Some(first) = group.first() else { return };
        if let Forward::Shards {
            to,
            pending,
            max_spans,
            ..
        } = self
        {
            let i = Self::shard_of(&first.trace_id, to.len());
            let p = &mut pending[i];
            if !p.lines.is_empty() || (!p.is_empty() && p.len() + group.len() > *max_spans) {
                p.send(&to[i], *max_spans);
            }
            p.spans.extend(group);
            if p.len() >= *max_spans {
                p.send(&to[i], *max_spans);
            }
        }
    }

    /// Sends spans on from the head, each to its trace's shard, a shard's
    /// batch as soon as it is full.
    pub(crate) fn spans(&mut self, batch: Batch) {
        if let Forward::Shards {
            to,
            pending,
            max_spans,
            ..
        } = self
        {
            for span in batch {
                let i = Self::shard_of(&span.trace_id, to.len());
                pending[i].push_span(&to[i], span, *max_spans);
            }
        }
    }

    /// Sends lines on from the head unparsed, each to its trace's shard (the
    /// id read without parsing the line, see [`trace_id_of_line`]). A line
    /// whose id cannot be read so (an OTLP/JSON line, which may hold several
    /// traces) is parsed here, failures counted in `parsed`, and its spans
    /// sent on. Returns the spans parsed here.
    pub(crate) fn lines(&mut self, lines: Lines, parsed: &mut ReadStats) -> u64 {
        let Forward::Shards {
            to,
            pending,
            max_spans,
            ..
        } = self
        else {
            return 0;
        };
        let mut here = Vec::new();
        let mut spans_here = 0;
        for (number, line) in lines.iter() {
            match trace_id_of_line(line) {
                Some(id) => {
                    let i = Self::shard_of(&id, to.len());
                    pending[i].push_line(&to[i], (lines.source(), number, line), *max_spans);
                }
                None => {
                    parsed.parse(lines.source(), number, line, &mut here);
                    spans_here += here.len() as u64;
                    for span in here.drain(..) {
                        let i = Self::shard_of(&span.trace_id, to.len());
                        pending[i].push_span(&to[i], span, *max_spans);
                    }
                }
            }
        }
        spans_here
    }

    /// Sends a batch a shard prepared (and its alerts) to the tail.
    pub(crate) fn prepared(&mut self, prepared: Prepared) {
        if let Forward::Tail { tx, spares } = self
            && (prepared.spans > 0 || !prepared.alerts.is_empty())
        {
            send(tx, WorkerMsg::Prepared(Box::new(prepared), spares.clone()));
        }
    }

    /// Buffers of a batch the tail finished, to prepare the next in (a
    /// shard): sized by earlier batches, so the payloads and projections are
    /// not grown again from nothing for every batch.
    pub(crate) fn spare(&self) -> Option<Prepared> {
        match self {
            Forward::Tail { spares, .. } => spares.lock().ok()?.pop(),
            Forward::Shards { .. } => None,
        }
    }

    /// Sends what the head gathered, unless more input is waiting: then
    /// the shards' partial batches wait to be filled by it. (Sent at every
    /// call, two shards got batches of half the size, each a plugin call
    /// per stage and a wake-up of their thread.)
    pub(crate) fn flush(&mut self) {
        if !matches!(self, Forward::Shards { backlog: true, .. }) {
            self.flush_all();
        }
    }

    /// Sends what the head gathered.
    pub(crate) fn flush_all(&mut self) {
        if let Forward::Shards {
            to,
            pending,
            max_spans,
            ..
        } = self
        {
            for (tx, p) in to.iter().zip(pending.iter_mut()) {
                p.send(tx, *max_spans);
            }
        }
    }

    /// Whether more input waits for the head (see [`Forward::flush`]); when
    /// none does, what waited is sent now.
    pub(crate) fn set_backlog(&mut self, more: bool) {
        if let Forward::Shards { backlog, .. } = self {
            *backlog = more;
        }
        if !more {
            self.flush_all();
        }
    }

    fn mark(&self, mark: Mark) {
        match self {
            Forward::Shards { to, .. } => to.iter().for_each(|tx| tx.send(WorkerMsg::Mark(mark))),
            Forward::Tail { tx, .. } => send(tx, WorkerMsg::Mark(mark)),
        }
    }
}

/// Queues are bounded, so this waits while the next thread is busy. A
/// thread that ended early (a bug: plugin failures do not end threads)
/// loses what is sent to it, and says so.
fn send(tx: &SyncSender<WorkerMsg>, msg: WorkerMsg) {
    if tx.send(msg).is_err() {
        lost();
    }
}

fn lost() {
    tracing::error!("a pipeline thread has stopped; spans sent to it are lost");
}

/// A release round of the write-ahead log. The head sends one to every
/// shard after everything it sent before; each shard passes it to the tail
/// after the spans it sent before (queues keep order). When the tail has it
/// from every shard, every span the head had sent before it has left the
/// pipeline or waits in a remote sink's queue, and every span the head still
/// held is in a record at or after `keep_from`: so records below the lower
/// of `keep_from` and the sinks' queues can go.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    round: u64,
    /// The head's first record still needed: not arrived whole, or held.
    keep_from: u64,
    /// Fsync files (exporters, dead letters) before releasing.
    sync_files: bool,
}

/// What the shard and tail threads are sent.
pub(crate) enum WorkerMsg {
    /// Spans to run (the head to a shard).
    Spans(Batch),
    /// Lines to parse, then run (the head to a shard).
    Lines(Lines),
    /// A batch a shard ran and prepared (a shard to the tail), and where its
    /// buffers go back.
    Prepared(Box<Prepared>, Spares),
    Mark(Mark),
    Stats(SyncSender<PipelineStats>),
    Report(SyncSender<ReportParts>),
    /// A reload: the new engine takes over between two batches; the tail
    /// answers with the evaluators whose state carried over.
    Swap(Box<Engine>, SyncSender<Vec<String>>),
    /// End of input: flush and stop.
    Finish,
}

/// The pipeline as the service runs it, on the engine thread.
pub enum Runner {
    /// One engine.
    Single {
        engine: Box<Engine>,
        wal: Option<Wal>,
        retired: Vec<Retired>,
        released_at: Instant,
        /// Lines parsed here (see [`Runner::lines`]).
        parsed: ReadStats,
    },
    /// Head here, shards and tail on threads of their own.
    Sharded(Sharded),
}

/// The head, and the threads of the shards and the tail.
pub struct Sharded {
    head: Box<Engine>,
    shards: Vec<(ShardQueue, JoinHandle<(Engine, ReadStats)>)>,
    /// Lines the head parsed (see [`Forward::lines`]).
    parsed: ReadStats,
    tail: (SyncSender<WorkerMsg>, JoinHandle<Engine>),
    wal: Option<Wal>,
    round: u64,
    released_at: Instant,
}

impl Runner {
    /// Starts the pipeline's threads; `wal` is the log, when there is one.
    pub fn start(plan: Plan, wal: Option<Wal>) -> std::io::Result<Runner> {
        match plan {
            Plan::Single(mut engine) => {
                if let Some(w) = &wal {
                    engine.attach_wal(w.counters());
                }
                Ok(Runner::Single {
                    engine,
                    wal,
                    retired: Vec::new(),
                    released_at: Instant::now(),
                    parsed: ReadStats::default(),
                })
            }
            Plan::Sharded {
                mut head,
                shards,
                mut tail,
            } => {
                if let Some(w) = &wal {
                    head.attach_wal(w.counters());
                    tail.attach_wal(w.counters());
                }
                let count = shards.len();
                let queue = queue_batches(head.batch_max_spans);
                let (tail_tx, tail_rx) = sync_channel(queue);
                let tail_wal = wal.clone();
                let tail_thread = std::thread::Builder::new()
                    .name("plume-tail".into())
                    .spawn(move || {
                        Tail {
                            engine: tail,
                            wal: tail_wal,
                            shards: count,
                            rounds: BTreeMap::new(),
                            last_keep_from: 0,
                            retired: Vec::new(),
                        }
                        .run(tail_rx)
                    })?;
                let in_flight = InFlight::new(queue * head.batch_max_spans.max(1) * count);
                let mut threads = Vec::new();
                let mut queues = Vec::new();
                for (i, mut engine) in shards.into_iter().enumerate() {
                    let (tx, rx) = channel();
                    engine.set_forward(Some(Forward::Tail {
                        tx: tail_tx.clone(),
                        spares: Spares::default(),
                    }));
                    let bound = in_flight.clone();
                    let thread = std::thread::Builder::new()
                        .name(format!("plume-shard-{i}"))
                        .spawn(move || run_shard(engine, rx, bound))?;
                    let queue = |tx| ShardQueue {
                        tx,
                        in_flight: in_flight.clone(),
                    };
                    queues.push(queue(tx.clone()));
                    threads.push((queue(tx), thread));
                }
                head.set_forward(Some(Forward::Shards {
                    to: queues,
                    pending: (0..count)
                        .map(|_| Pending {
                            spans: Vec::with_capacity(head.batch_max_spans),
                            lines: Lines::default(),
                        })
                        .collect(),
                    max_spans: head.batch_max_spans,
                    backlog: false,
                }));
                Ok(Runner::Sharded(Sharded {
                    head,
                    shards: threads,
                    parsed: ReadStats::default(),
                    tail: (tail_tx, tail_thread),
                    wal,
                    round: 0,
                    released_at: Instant::now(),
                }))
            }
        }
    }

    /// Whether JSONL lines handed to [`Runner::lines`] are parsed by the
    /// processor shards (otherwise on this thread).
    pub fn shards_parse_lines(&self) -> bool {
        matches!(self, Runner::Sharded(s) if !s.head.holds() && s.wal.is_none())
    }

    /// Runs the spans of JSONL lines. Without a trace hold or a log, a
    /// sharded pipeline's head sends each line unparsed to its trace's
    /// shard, which parses it: the head, one thread for all the shards,
    /// then only finds each line's trace id, and a span is first read on the
    /// core that runs it. Otherwise they are parsed here. Lines that do not
    /// parse are counted in `lines_failed`.
    pub fn lines(&mut self, lines: Lines) {
        if self.shards_parse_lines()
            && let Runner::Sharded(s) = self
        {
            s.head.route_lines(lines, &mut s.parsed);
            return;
        }
        let parsed = match self {
            Runner::Single { parsed, .. } => parsed,
            Runner::Sharded(s) => &mut s.parsed,
        };
        let mut batch = Vec::with_capacity(lines.len());
        lines.parse(parsed, &mut batch);
        self.process(batch);
    }

    /// Runs spans (an empty batch releases held traces that are due), and
    /// now and then releases the log records no longer needed.
    pub fn process(&mut self, batch: Batch) {
        match self {
            Runner::Single {
                engine,
                wal,
                retired,
                released_at,
                ..
            } => {
                engine.process(batch);
                if let Some(wal) = wal
                    && released_at.elapsed() >= RELEASE_EVERY
                {
                    let keep_from = engine.wal_keep_from();
                    release(engine, wal, keep_from, retired);
                    *released_at = Instant::now();
                }
            }
            Runner::Sharded(s) => {
                s.head.process(batch);
                if s.wal.is_some() && s.released_at.elapsed() >= RELEASE_EVERY {
                    s.mark();
                    s.released_at = Instant::now();
                }
            }
        }
    }

    /// Tells the pipeline whether more input is already waiting behind the
    /// next batch: then the head of a sharded pipeline lets a shard's
    /// partial batch wait to be filled, so that under load the shards run
    /// whole batches. Without a backlog every batch goes on at once, and
    /// setting it off sends what waited.
    pub fn set_backlog(&mut self, more: bool) {
        if let Runner::Sharded(s) = self {
            s.head.set_backlog(more);
        }
    }

    /// Every entry's counters.
    pub fn stats(&mut self) -> PipelineStats {
        match self {
            Runner::Single { engine, parsed, .. } => with_parsed(engine.stats(), parsed),
            Runner::Sharded(s) => s.stats(),
        }
    }

    /// The report, as [`Engine::report`] makes it.
    pub fn report(&mut self) -> Json {
        match self {
            Runner::Single { engine, .. } => engine.report(),
            Runner::Sharded(s) => s.report(),
        }
    }

    /// Replaces the pipeline between two batches (a reload); returns the
    /// evaluators whose state carried over. `next` must have been built for
    /// the same number of shards.
    pub fn swap(&mut self, next: Plan) -> Vec<String> {
        match (self, next) {
            (
                Runner::Single {
                    engine, retired, ..
                },
                Plan::Single(next),
            ) => {
                let (carried, old) = replace_engine(engine, next);
                retired.push(old);
                carried
            }
            (Runner::Sharded(s), Plan::Sharded { head, shards, tail })
                if shards.len() == s.shards.len() =>
            {
                s.swap(head, shards, tail)
            }
            _ => {
                tracing::error!(
                    "reload built for another number of shards; the running pipeline stays"
                );
                Vec::new()
            }
        }
    }

    /// Runs what is held, drains the sinks, releases what was delivered,
    /// stops the threads; returns the final counters.
    pub fn finish(self) -> PipelineStats {
        match self {
            Runner::Single {
                mut engine,
                wal,
                mut retired,
                parsed,
                ..
            } => {
                engine.flush();
                join_retired(&mut retired);
                if let Some(wal) = &wal {
                    // What a sink could not take before the drain timeout
                    // stays in the log, for the next start.
                    let keep_from = engine.wal_keep_from();
                    release(&mut engine, wal, keep_from, &retired);
                }
                with_parsed(engine.stats(), &parsed)
            }
            Runner::Sharded(s) => s.finish(),
        }
    }
}

impl Sharded {
    /// Starts a release round when the head has something new to release.
    fn mark(&mut self) {
        let keep_from = self.head.wal_keep_from();
        if self.wal.as_ref().is_some_and(|w| keep_from > w.keep_from()) {
            self.send_mark(keep_from);
        }
    }

    fn send_mark(&mut self, keep_from: u64) {
        let Some(wal) = &self.wal else { return };
        // The mark must follow every span the head released.
        self.head.flush_forward();
        self.round += 1;
        let mark = Mark {
            round: self.round,
            keep_from,
            sync_files: wal.syncs_files(),
        };
        if let Some(forward) = self.head.forward() {
            forward.mark(mark);
        }
    }

    /// Asks every shard, then waits for all the answers.
    fn ask_shards<T>(&self, msg: impl Fn(SyncSender<T>) -> WorkerMsg) -> Vec<T> {
        let waiting: Vec<Receiver<T>> = self
            .shards
            .iter()
            .map(|(tx, _)| {
                let (reply, answer) = sync_channel(1);
                tx.send(msg(reply));
                answer
            })
            .collect();
        waiting.into_iter().filter_map(|a| a.recv().ok()).collect()
    }

    fn ask_tail<T>(&self, msg: impl FnOnce(SyncSender<T>) -> WorkerMsg) -> Option<T> {
        let (reply, answer) = sync_channel(1);
        send(&self.tail.0, msg(reply));
        answer.recv().ok()
    }

    fn stats(&mut self) -> PipelineStats {
        let shards = self.ask_shards(WorkerMsg::Stats);
        let tail = self.ask_tail(WorkerMsg::Stats).unwrap_or_default();
        let head = with_parsed(self.head.stats(), &self.parsed);
        combine_stats(head, &shards, tail)
    }

    fn report(&mut self) -> Json {
        let shards = self.ask_shards(WorkerMsg::Report);
        let tail = self.ask_tail(WorkerMsg::Report);
        let mut sections = combine_shard_sections(shards);
        let mut unrouted_alerts = None;
        if let Some(tail) = tail {
            sections.extend(tail.sections);
            unrouted_alerts = tail.unrouted_alerts;
        }
        assemble_report(ReportParts {
            sections,
            unrouted_alerts,
        })
    }

    fn swap(&mut self, head: Box<Engine>, shards: Vec<Engine>, tail: Box<Engine>) -> Vec<String> {
        // The head first: it takes the trace hold (and, when the new one
        // holds nothing, sends what was held on through the shards).
        // No exporters: the old head has nothing to drain.
        replace_engine(&mut self.head, head);
        for ((tx, _), engine) in self.shards.iter().zip(shards) {
            let (reply, answer) = sync_channel(1);
            tx.send(WorkerMsg::Swap(Box::new(engine), reply));
            let _ = answer.recv();
        }
        self.ask_tail(|reply| WorkerMsg::Swap(tail, reply))
            .unwrap_or_default()
    }

    fn finish(mut self) -> PipelineStats {
        self.head.flush();
        // The last round, always: the tail releases after draining by it.
        self.send_mark(self.head.wal_keep_from());
        let mut shards = Vec::new();
        for (tx, thread) in std::mem::take(&mut self.shards) {
            tx.send(WorkerMsg::Finish);
            drop(tx);
            match thread.join() {
                Ok((engine, parsed)) => shards.push(shard_stats(&engine, &parsed)),
                Err(_) => tracing::error!("a processor shard panicked"),
            }
        }
        let (tx, thread) = self.tail;
        drop(tx);
        let tail = match thread.join() {
            Ok(engine) => engine.stats(),
            Err(_) => {
                tracing::error!("the pipeline's tail thread panicked");
                PipelineStats::default()
            }
        };
        let head = with_parsed(self.head.stats(), &self.parsed);
        combine_stats(head, &shards, tail)
    }
}

/// Counters with the failures of the lines parsed beside the engine.
fn with_parsed(mut stats: PipelineStats, parsed: &ReadStats) -> PipelineStats {
    stats.lines_failed += parsed.failed;
    stats
}

/// A shard's counters. Its `spans_in` are the spans it parsed from lines
/// (those the head sent it parsed, the head counted).
fn shard_stats(engine: &Engine, parsed: &ReadStats) -> PipelineStats {
    PipelineStats {
        spans_in: parsed.spans,
        lines_failed: parsed.failed,
        ..engine.stats()
    }
}

/// A processor shard's thread; returns its engine, and what it parsed.
fn run_shard(
    mut engine: Engine,
    rx: Receiver<WorkerMsg>,
    in_flight: Arc<InFlight>,
) -> (Engine, ReadStats) {
    let _close = CloseOnExit(in_flight.clone());
    let mut parsed = ReadStats::default();
    while let Ok(msg) = rx.recv() {
        match msg {
            WorkerMsg::Spans(batch) => {
                let n = batch.len();
                engine.process(batch);
                in_flight.release(n);
            }
            WorkerMsg::Lines(lines) => {
                let mut batch = Vec::with_capacity(lines.len());
                lines.parse(&mut parsed, &mut batch);
                engine.process(batch);
                in_flight.release(lines.len());
            }
            WorkerMsg::Prepared(..) => {}
            WorkerMsg::Mark(mark) => {
                if mark.sync_files {
                    engine.sync_files(); // its dead letters
                }
                if let Some(forward) = engine.forward() {
                    forward.mark(mark);
                }
            }
            WorkerMsg::Stats(reply) => {
                let _ = reply.send(shard_stats(&engine, &parsed));
            }
            WorkerMsg::Report(reply) => {
                let _ = reply.send(engine.report_parts());
            }
            WorkerMsg::Swap(next, reply) => {
                // No exporters: the old shard has nothing to drain.
                replace_engine(&mut engine, next);
                let _ = reply.send(Vec::new());
            }
            WorkerMsg::Finish => {
                engine.flush();
                if let Some(Forward::Tail { tx, .. }) = engine.take_forward() {
                    send(&tx, WorkerMsg::Finish);
                }
                break;
            }
        }
    }
    (engine, parsed)
}

/// The tail's thread: evaluators, router, exporters, and the log's release.
struct Tail {
    engine: Box<Engine>,
    wal: Option<Wal>,
    shards: usize,
    /// Release rounds under way: marks received, by round.
    rounds: BTreeMap<u64, usize>,
    /// The head's `keep_from` of the last round completed.
    last_keep_from: u64,
    retired: Vec<Retired>,
}

impl Tail {
    fn run(mut self, rx: Receiver<WorkerMsg>) -> Engine {
        let mut finished = 0;
        while let Ok(msg) = rx.recv() {
            match msg {
                WorkerMsg::Prepared(prepared, spares) => {
                    let used = self.engine.finish_prepared(*prepared);
                    if let Ok(mut spares) = spares.lock()
                        && spares.len() < MAX_SPARES
                    {
                        spares.push(used);
                    }
                }
                WorkerMsg::Spans(batch) => self.engine.process(batch),
                // Only shards are sent lines.
                WorkerMsg::Lines(_) => lost(),
                WorkerMsg::Mark(mark) => self.mark(mark),
                WorkerMsg::Stats(reply) => {
                    let _ = reply.send(self.engine.stats());
                }
                WorkerMsg::Report(reply) => {
                    let _ = reply.send(self.engine.report_parts());
                }
                WorkerMsg::Swap(next, reply) => {
                    let (carried, old) = replace_engine(&mut self.engine, next);
                    self.retired.push(old);
                    let _ = reply.send(carried);
                }
                WorkerMsg::Finish => {
                    finished += 1;
                    if finished == self.shards {
                        break;
                    }
                }
            }
        }
        self.engine.flush();
        join_retired(&mut self.retired);
        if let Some(wal) = &self.wal {
            // What a sink could not take before the drain timeout stays in
            // the log, for the next start.
            release(&mut self.engine, wal, self.last_keep_from, &self.retired);
        }
        *self.engine
    }

    fn mark(&mut self, mark: Mark) {
        let seen = self.rounds.entry(mark.round).or_default();
        *seen += 1;
        if *seen < self.shards {
            return;
        }
        self.rounds.remove(&mark.round);
        self.last_keep_from = mark.keep_from;
        if let Some(wal) = &self.wal {
            release(&mut self.engine, wal, mark.keep_from, &self.retired);
        }
    }
}

/// A reload on one thread: `next` takes over from `engine` between two
/// batches (where spans go, held spans, counters, evaluator state) and
/// replaces it. Returns the evaluators whose state carried over, and the old
/// engine retired (its remote sinks draining, with the records they need).
fn replace_engine(engine: &mut Engine, mut next: Box<Engine>) -> (Vec<String>, Retired) {
    next.set_forward(engine.take_forward());
    let carried = next.take_over(engine);
    let old = std::mem::replace(engine, *next);
    let floors = old.floors();
    (carried, (old.retire(), floors))
}

fn join_retired(retired: &mut [Retired]) {
    for (thread, _) in retired {
        if let Some(t) = thread.take() {
            let _ = t.join();
        }
    }
}

/// Releases the log records below `keep_from` that no remote sink still
/// queues (of `engine`, or of a replaced one still draining). File sinks
/// are synced first, so a released span is on disk somewhere.
fn release(engine: &mut Engine, wal: &Wal, keep_from: u64, retired: &[Retired]) {
    let draining = retired
        .iter()
        .filter(|(thread, _)| thread.as_ref().is_some_and(|t| !t.is_finished()))
        .flat_map(|(_, floors)| floors.iter().filter_map(Floor::min_seq));
    let keep_from = draining.fold(keep_from.min(engine.queued_from()), u64::min);
    if keep_from <= wal.keep_from() {
        return;
    }
    if wal.syncs_files() {
        engine.sync_files();
    }
    if let Err(e) = wal.release(keep_from) {
        tracing::error!("cannot write the log's checkpoint: {e}");
    }
}

/// The whole pipeline's counters from its parts: spans in and the hold from
/// the head, processors summed over the shards, the rest from the tail with
/// what the shards did for it (evaluators' projections, exporters' payloads).
fn combine_stats(
    head: PipelineStats,
    shards: &[PipelineStats],
    mut tail: PipelineStats,
) -> PipelineStats {
    let mut stages = shards.first().map(|s| s.stages.clone()).unwrap_or_default();
    for other in shards.iter().skip(1) {
        for (into, from) in stages.iter_mut().zip(&other.stages) {
            into.absorb(from);
        }
    }
    for shard in shards {
        for (into, from) in tail.evaluators.iter_mut().zip(&shard.evaluators) {
            into.absorb(from);
        }
        for (into, from) in tail.exports.iter_mut().zip(&shard.exports) {
            into.absorb(from);
        }
    }
    PipelineStats {
        stages,
        // Spans the head ran, and those the shards parsed.
        spans_in: head.spans_in + shards.iter().map(|s| s.spans_in).sum::<u64>(),
        lines_failed: head.lines_failed + shards.iter().map(|s| s.lines_failed).sum::<u64>(),
        spans_out: tail.spans_out,
        evaluators: tail.evaluators,
        router: tail.router,
        exports: tail.exports,
        ..head
    }
}

/// The processors' report sections, one per processor: each shard's
/// instance counts its own spans, so numbers are added (see
/// [`add_section`]).
fn combine_shard_sections(shards: Vec<ReportParts>) -> Vec<(String, Map<String, Json>)> {
    let mut shards = shards.into_iter();
    let mut sections = shards.next().map(|p| p.sections).unwrap_or_default();
    for other in shards {
        for ((_, into), (_, from)) in sections.iter_mut().zip(other.sections) {
            add_section(into, from);
        }
    }
    sections
}

/// Merges one shard's report section into another's: numbers are added,
/// objects merged key by key, arrays concatenated; other values (strings,
/// booleans) are the same in every shard and kept.
fn add_section(into: &mut Map<String, Json>, from: Map<String, Json>) {
    for (key, value) in from {
        match into.get_mut(&key) {
            None => {
                into.insert(key, value);
            }
            Some(existing) => add_value(existing, value),
        }
    }
}

fn add_value(into: &mut Json, from: Json) {
    match (into, from) {
        (Json::Number(a), Json::Number(b)) => {
            let sum = match (a.as_u64(), b.as_u64(), a.as_i64(), b.as_i64()) {
                (Some(x), Some(y), _, _) => x.checked_add(y).map(Json::from),
                (_, _, Some(x), Some(y)) => x.checked_add(y).map(Json::from),
                _ => None,
            };
            let sum = sum.unwrap_or_else(|| {
                Json::from(a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0))
            });
            *a = match sum {
                Json::Number(n) => n,
                _ => a.clone(),
            };
        }
        (Json::Object(a), Json::Object(b)) => add_section(a, b),
        (Json::Array(a), Json::Array(mut b)) => a.append(&mut b),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shard_sections_add_counts_and_keep_the_rest() {
        let section = |v: Json| match v {
            Json::Object(m) => m,
            _ => unreachable!(),
        };
        let mut a = section(json!({"pricing": {"table": "builtin", "priced_spans": 3,
            "cost": 0.5, "missing_models": {"m1": 1}, "seen": ["a"], "delta": -2}}));
        let b = section(json!({"pricing": {"table": "builtin", "priced_spans": 4,
            "cost": 0.25, "missing_models": {"m1": 2, "m2": 5}, "seen": ["b"], "delta": -3}}));
        add_section(&mut a, b);
        assert_eq!(
            Json::Object(a),
            json!({"pricing": {"table": "builtin", "priced_spans": 7, "cost": 0.75,
                "missing_models": {"m1": 3, "m2": 5}, "seen": ["a", "b"], "delta": -5}})
        );
    }

    /// Whether `acquire(n)` returns within a short wait (it blocks otherwise).
    fn acquires(bound: &Arc<InFlight>, n: usize) -> bool {
        let (done, finished) = sync_channel(1);
        let b = bound.clone();
        std::thread::spawn(move || {
            b.acquire(n);
            let _ = done.send(());
        });
        finished.recv_timeout(Duration::from_millis(200)).is_ok()
    }

    #[test]
    fn the_shards_bound_waits_for_room_across_all_shards() {
        let bound = InFlight::new(100);
        // Any one shard may take the whole bound.
        assert!(acquires(&bound, 60));
        assert!(acquires(&bound, 40));
        // Full: the next batch waits until a shard has run enough spans.
        let (done, finished) = sync_channel(1);
        let b = bound.clone();
        std::thread::spawn(move || {
            b.acquire(30);
            let _ = done.send(());
        });
        assert!(finished.recv_timeout(Duration::from_millis(100)).is_err());
        bound.release(20);
        assert!(finished.recv_timeout(Duration::from_millis(100)).is_err());
        // It would fit now (60 + 30), but waits until half the bound is free.
        bound.release(20);
        assert!(finished.recv_timeout(Duration::from_millis(100)).is_err());
        bound.release(10);
        assert!(finished.recv_timeout(Duration::from_secs(5)).is_ok());
        // A batch larger than the bound goes when nothing is in flight.
        bound.release(80);
        assert!(acquires(&bound, 500));
    }

    #[test]
    fn a_shard_that_ended_never_leaves_the_head_waiting() {
        let bound = InFlight::new(10);
        assert!(acquires(&bound, 10));
        assert!(!acquires(&bound, 1));
        // The waiting acquire above is released by the close, as is every later one.
        drop(CloseOnExit(bound.clone()));
        assert!(acquires(&bound, 1));
    }

    #[test]
    fn queues_hold_about_the_same_spans_whatever_the_batch_size() {
        assert_eq!(queue_batches(256), 32);
        assert_eq!(queue_batches(1024), 8);
        // Small batches: no more batches than the cap; large: still a few.
        assert_eq!(queue_batches(1), 64);
        assert_eq!(queue_batches(65_536), 4);
    }

    #[test]
    fn a_trace_always_goes_to_the_same_shard_and_traces_spread() {
        let mut counts = [0usize; 4];
        for i in 0..4000u64 {
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
            let shard = Forward::shard_of(&TraceId(id), 4);
            assert_eq!(shard, Forward::shard_of(&TraceId(id), 4));
            counts[shard] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }

    /// Each shard's processors and exporters are told that `shards`
    /// instances share the spans (the host's `instances`), so that their
    /// bounded state can be divided; without shards there is one.
    #[test]
    fn plugins_on_shards_are_told_how_many_instances_share_the_spans() {
        let chaos = concat!(env!("PLUME_TEST_PLUGINS"), "/test-chaos.wasm");
        let text = format!(
            "[traces]\nwait = \"0s\"\n[[stage]]\nname = \"chaos\"\nplugin = \"{chaos}\"\n\
             [[export]]\nplugin = \"builtin:jsonl\"\nconfig = {{ path = \"-\" }}\n"
        );
        let pipeline = crate::config::parse("p.toml", &text, |_| None).unwrap();
        let rt = Runtime::new().unwrap();
        let options = EngineOptions {
            discard_output: true,
            ..EngineOptions::default()
        };
        for (shards, told) in [(1, json!([1])), (2, json!([2, 2])), (3, json!([3, 3, 3]))] {
            let plan = Plan::build(&pipeline, &rt, &options, shards).unwrap();
            let mut runner = Runner::start(plan, None).unwrap();
            assert_eq!(runner.report()["chaos_instances"], told, "{shards} shards");
            runner.finish();
        }
    }

    /// A head with a backlog, batches of 8, and the queues of its two shards.
    fn head_of_two_shards() -> (Forward, Vec<Receiver<WorkerMsg>>) {
        let bound = InFlight::new(1 << 20);
        let (queues, receivers): (Vec<_>, Vec<_>) = (0..2)
            .map(|_| {
                let (tx, rx) = channel();
                let queue = ShardQueue {
                    tx,
                    in_flight: bound.clone(),
                };
                (queue, rx)
            })
            .unzip();
        let head = Forward::Shards {
            to: queues,
            pending: vec![Pending::default(), Pending::default()],
            max_spans: 8,
            backlog: true,
        };
        (head, receivers)
    }

    /// The head's batches to the shards: full ones leave at once; partial
    /// ones wait while more input waits (so that shards run whole batches
    /// under load), and leave at a flush without backlog, or any flush that
    /// must send everything (a log mark, the end).
    #[test]
    fn partial_batches_wait_for_the_backlog_and_full_ones_do_not() {
        let (mut head, receivers) = head_of_two_shards();
        let sent = |rx: &Receiver<WorkerMsg>| -> Vec<usize> {
            rx.try_iter()
                .map(|m| match m {
                    WorkerMsg::Spans(b) => b.len(),
                    _ => panic!("spans only"),
                })
                .collect()
        };
        let spans = crate::bench::synthetic_spans(40, 9, 1_000);
        let to_first = spans
            .iter()
            .filter(|s| Forward::shard_of(&s.trace_id, 2) == 0)
            .count();
        head.spans(spans);
        head.flush();
        // Backlog: only whole batches went.
        let first = sent(&receivers[0]);
        assert_eq!(first, vec![8; to_first / 8]);
        // No backlog any more: what waited leaves.
        head.set_backlog(false);
        let rest = sent(&receivers[0]);
        assert_eq!(rest.iter().sum::<usize>(), to_first % 8);
        assert!(rest.len() <= 1);
        // Whole groups too; `flush_all` sends despite the backlog.
        head.set_backlog(true);
        receivers.iter().for_each(|rx| drop(sent(rx)));
        let group: Vec<Span> = crate::bench::synthetic_spans(3, 10, 1_000)
            .into_iter()
            .map(|mut s| {
                s.trace_id = TraceId([7; 16]);
                s
            })
            .collect();
        let i = Forward::shard_of(&group[0].trace_id, 2);
        head.group(group);
        head.flush();
        assert!(sent(&receivers[i]).is_empty());
        head.flush_all();
        assert_eq!(sent(&receivers[i]), vec![3]);
    }

    /// Lines go unparsed to their trace's shard; a line whose trace id
    /// cannot be read without parsing it (OTLP/JSON) is parsed by the head
    /// and its spans sent parsed; a line that does not parse is counted.
    /// Each shard gets its traces' spans in the order they came.
    #[test]
    fn lines_go_unparsed_to_their_traces_shard_in_order() {
        let (mut head, receivers) = head_of_two_shards();
        let otlp = include_str!("../../tests/data/genai/openai_retry.jsonl");
        let mut text: Vec<String> = crate::bench::synthetic_spans(40, 11, 1_000)
            .iter()
            .map(|s| {
                let mut line = Vec::new();
                crate::span::flat::write(&mut line, s);
                String::from_utf8(line).unwrap()
            })
            .collect();
        text.insert(13, otlp.lines().next().unwrap().into());
        text.insert(20, "{broken".into());
        text.insert(30, otlp.lines().nth(1).unwrap().into());
        let source: Arc<str> = "mem".into();
        let mut lines = Lines::default();
        let mut expected = Vec::new();
        for (i, line) in text.iter().enumerate() {
            lines.push(&source, i as u64 + 1, format!("{line}\n").as_bytes());
            let _ = crate::span::jsonl::parse_line(line, &mut expected);
        }
        let mut parsed = ReadStats::default();
        let here = head.lines(lines, &mut parsed);
        head.flush_all();
        assert_eq!(parsed.failed, 1);
        assert_eq!(parsed.errors[0].to_string().split(':').nth(1), Some("21"));
        let otlp_spans = text
            .iter()
            .filter(|l| l.starts_with("{\"resourceSpans"))
            .map(|l| crate::span::otlp_json::parse(l).unwrap().len() as u64)
            .sum::<u64>();
        assert_eq!(here, otlp_spans);
        let mut kinds = Vec::new();
        for (i, rx) in receivers.iter().enumerate() {
            let mut got = Vec::new();
            let mut shard_parsed = ReadStats::default();
            for m in rx.try_iter() {
                match m {
                    WorkerMsg::Spans(b) => {
                        kinds.push("spans");
                        got.extend(b);
                    }
                    WorkerMsg::Lines(l) => {
                        kinds.push("lines");
                        assert!(l.len() <= 8);
                        l.parse(&mut shard_parsed, &mut got);
                    }
                    _ => panic!("spans and lines only"),
                }
            }
            assert_eq!(shard_parsed.failed, 0);
            let ids = |s: &[Span]| s.iter().map(|s| s.span_id).collect::<Vec<_>>();
            let mine: Vec<Span> = expected
                .iter()
                .filter(|s| Forward::shard_of(&s.trace_id, 2) == i)
                .cloned()
                .collect();
            assert_eq!(ids(&got), ids(&mine), "shard {i}");
        }
        assert!(kinds.contains(&"spans") && kinds.contains(&"lines"));
    }

    #[test]
    fn shard_counters_are_summed() {
        let entry = |spans: u64, nanos: u64| super::super::stats::EntryStats {
            name: "price".into(),
            spans_in: spans,
            spans_out: spans,
            nanos,
            ..Default::default()
        };
        let shard = |spans, nanos| PipelineStats {
            stages: vec![entry(spans, nanos)],
            ..Default::default()
        };
        let head = PipelineStats {
            spans_in: 30,
            ..Default::default()
        };
        let tail = PipelineStats {
            spans_out: 29,
            ..Default::default()
        };
        let all = combine_stats(head, &[shard(10, 100), shard(20, 50)], tail);
        assert_eq!((all.spans_in, all.spans_out), (30, 29));
        assert_eq!(all.stages, vec![entry(30, 150)]);
    }
}
