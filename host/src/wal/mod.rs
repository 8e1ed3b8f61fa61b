//! Durability: spans are written to an on-disk log before plume acknowledges
//! them, and replayed after a crash until every sink has them.
//!
//! The path of a span with `[wal] dir` set:
//! 1. a receiver hands the decoded spans to the [`Wal`] writer thread and
//!    waits; the writer appends them as one record (OTLP protobuf), fsyncs per
//!    `fsync`, passes the spans on to the pipeline stamped with the record's
//!    sequence number, and only then lets the receiver answer success;
//! 2. the engine reports the lowest sequence number it still holds (held
//!    traces, payloads queued for remote sinks): everything below is released
//!    once file sinks are flushed and synced, and whole segments are deleted;
//! 3. on start, records not released are decoded and run through the pipeline
//!    again before the receivers open: delivery is at least once, so a sink
//!    may see a span twice after a crash, never zero times.
//!
//! The log is bounded by `max_bytes`. When it is full, `when_full = "block"`
//! refuses new spans (OTLP clients get 503 / UNAVAILABLE with Retry-After)
//! and `drop-oldest` deletes the oldest segment: its spans lose their
//! protection against a crash (they are still in memory and go on through the
//! pipeline), which is counted and raises the `wal_dropped` alert.

pub mod log;

use crate::span::Span;
use crate::span::otlp_proto::{from_proto, to_proto};
use anyhow::{Context, Result};
use log::{Checkpoint, Log, Recovery};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When appended records are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Before each acknowledgement (records arriving together share one fsync).
    Always,
    /// At most this long after the acknowledgement: a power loss can take
    /// that much; a crash of plume alone cannot (the kernel has the data).
    Every(Duration),
    /// Left to the operating system.
    Never,
}

/// What a full log does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WhenFull {
    /// Refuse new spans until records are released (503 with Retry-After).
    #[default]
    Block,
    /// Delete the oldest segment, counted, with an alert.
    DropOldest,
}

/// `[wal]` as settings.
#[derive(Debug, Clone, PartialEq)]
pub struct WalSettings {
    /// The log's folder.
    pub dir: PathBuf,
    /// When records are synced.
    pub fsync: Fsync,
    /// Bound on the bytes on disk.
    pub max_bytes: u64,
    /// Size at which a new segment file is started.
    pub segment_bytes: u64,
    /// What happens at `max_bytes`.
    pub when_full: WhenFull,
}

impl WalSettings {
    /// Defaults for a log in `dir`.
    pub fn new(dir: PathBuf) -> WalSettings {
        WalSettings {
            dir,
            fsync: Fsync::Always,
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            when_full: WhenFull::Block,
        }
    }
}

/// Why spans were not accepted.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// The log is at `max_bytes` (policy `block`).
    Full,
    /// The pipeline behind the log is full, or the writer is behind.
    Busy,
    /// Writing failed (disk error): nothing is acknowledged while it lasts.
    Failed(String),
}

/// Counters for `/metrics` and the run summary.
#[derive(Debug, Default)]
pub struct WalCounters {
    /// Records appended.
    pub appended: AtomicU64,
    /// Spans appended.
    pub appended_spans: AtomicU64,
    /// fsync calls.
    pub syncs: AtomicU64,
    /// Requests refused because the log was full.
    pub refused_full: AtomicU64,
    /// Records and spans deleted unreleased by `drop-oldest`.
    pub dropped_records: AtomicU64,
    /// Spans of those records.
    pub dropped_spans: AtomicU64,
    /// Records and spans replayed at start.
    pub replayed_records: AtomicU64,
    /// Spans replayed at start.
    pub replayed_spans: AtomicU64,
    /// Bytes on disk.
    pub bytes: AtomicU64,
    /// First sequence number still needed.
    pub keep_from: AtomicU64,
    /// Next sequence number.
    pub next_seq: AtomicU64,
    /// The bound, `max_bytes`.
    pub max_bytes: AtomicU64,
}

/// A snapshot of the counters.
#[derive(Debug, Default, Clone, serde::Serialize, PartialEq)]
pub struct WalStats {
    /// Records appended since start.
    pub appended: u64,
    /// Spans appended since start.
    pub appended_spans: u64,
    /// fsync calls.
    pub syncs: u64,
    /// Requests refused: log full.
    pub refused_full: u64,
    /// Records deleted unreleased (`drop-oldest`).
    pub dropped_records: u64,
    /// Their spans.
    pub dropped_spans: u64,
    /// Records replayed at start.
    pub replayed_records: u64,
    /// Spans replayed at start.
    pub replayed_spans: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// Records not released yet.
    pub unreleased: u64,
    /// The bound on bytes.
    pub max_bytes: u64,
}

impl WalCounters {
    /// A snapshot.
    pub fn stats(&self) -> WalStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WalStats {
            appended: get(&self.appended),
            appended_spans: get(&self.appended_spans),
            syncs: get(&self.syncs),
            refused_full: get(&self.refused_full),
            dropped_records: get(&self.dropped_records),
            dropped_spans: get(&self.dropped_spans),
            replayed_records: get(&self.replayed_records),
            replayed_spans: get(&self.replayed_spans),
            bytes: get(&self.bytes),
            unreleased: get(&self.next_seq).saturating_sub(get(&self.keep_from)),
            max_bytes: get(&self.max_bytes),
        }
    }
}

/// Spans to append: `source` is a followed file and the offset reached
/// after these spans' lines.
struct Append {
    spans: Vec<Span>,
    source: Option<(String, u64)>,
    done: tokio::sync::oneshot::Sender<Outcome>,
}

/// An append's result; a refused append gives its spans back.
type Outcome = Result<(), (Refused, Vec<Span>)>;

impl Append {
    fn refuse(self, why: Refused) {
        let _ = self.done.send(Err((why, self.spans)));
    }
}

/// The shared half of the log: appends go through the writer thread,
/// releases come from the engine thread.
struct Shared {
    log: Mutex<Log>,
    counters: Arc<WalCounters>,
    settings: WalSettings,
    /// Offsets reached in followed files, as appended.
    sources: Mutex<BTreeMap<String, u64>>,
}

/// The write-ahead log of a running service. Cloned freely.
#[derive(Clone)]
pub struct Wal {
    tx: SyncSender<Append>,
    shared: Arc<Shared>,
}

/// Requests waiting for the writer at most; beyond, receivers are told to
/// retry.
const WRITER_QUEUE: usize = 256;
/// Records written together under one fsync, at most.
const GROUP: usize = 128;

/// What [`Wal::open`] found on disk.
pub struct Opened {
    /// The log.
    pub wal: Wal,
    /// Spans of records not released before, each stamped with its record's
    /// sequence number, oldest first; run them before new spans.
    pub replay: Vec<Vec<Span>>,
    /// The checkpoint read (source offsets for followed files).
    pub checkpoint: Checkpoint,
    /// What recovery found.
    pub recovery: Recovery,
}

impl Wal {
    /// Opens the log and starts its writer, which passes accepted spans to
    /// `pipeline`.
    pub fn open(
        settings: WalSettings,
        pipeline: tokio::sync::mpsc::Sender<Vec<Span>>,
    ) -> Result<Opened> {
        let mut replay = Vec::new();
        let mut bad = 0u64;
        let (log, checkpoint, recovery) =
            Log::open(&settings.dir, settings.segment_bytes, |record| {
                match ExportTraceServiceRequest::decode(record.payload.as_slice()) {
                    Ok(req) => {
                        let mut spans = from_proto(req).spans;
                        for s in &mut spans {
                            s.seq = record.seq;
                        }
                        replay.push(spans);
                    }
                    Err(_) => bad += 1,
                }
            })
            .with_context(|| format!("[wal] dir: cannot open {}", settings.dir.display()))?;
        if bad > 0 {
            tracing::error!(records = bad, "log records that do not decode were skipped");
        }
        let counters = Arc::new(WalCounters::default());
        counters
            .replayed_records
            .store(replay.len() as u64, Ordering::Relaxed);
        counters.replayed_spans.store(
            replay.iter().map(|r| r.len() as u64).sum(),
            Ordering::Relaxed,
        );
        counters.bytes.store(log.bytes(), Ordering::Relaxed);
        counters.keep_from.store(log.keep_from(), Ordering::Relaxed);
        counters.next_seq.store(log.next_seq(), Ordering::Relaxed);
        counters
            .max_bytes
            .store(settings.max_bytes, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            log: Mutex::new(log),
            counters,
            settings,
            sources: Mutex::new(checkpoint.sources.clone()),
        });
        let (tx, rx) = sync_channel(WRITER_QUEUE);
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("plume-wal".into())
            .spawn(move || write_loop(&writer, &rx, &pipeline))
            .context("cannot start the log writer")?;
        Ok(Opened {
            wal: Wal { tx, shared },
            replay,
            checkpoint,
            recovery,
        })
    }

    /// Appends `spans` and passes them on to the pipeline; resolves once they
    /// are durable (per `fsync`). `Full` at once when the writer is behind.
    pub async fn append(&self, spans: Vec<Span>) -> Result<(), Refused> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let msg = Append {
            spans,
            source: None,
            done,
        };
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(Refused::Busy),
            Err(TrySendError::Disconnected(_)) => {
                return Err(Refused::Failed("the log writer stopped".into()));
            }
        }
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err((refused, _))) => Err(refused),
            Err(_) => Err(Refused::Failed("the log writer stopped".into())),
        }
    }

    /// For a followed file: appends `spans` read up to `offset` of `source`,
    /// waiting while the log is full. Err when the log cannot be written.
    pub fn append_blocking(&self, mut spans: Vec<Span>, source: &str, offset: u64) -> Result<()> {
        loop {
            let (done, wait) = tokio::sync::oneshot::channel();
            let msg = Append {
                spans,
                source: Some((source.to_string(), offset)),
                done,
            };
            self.tx
                .send(msg)
                .map_err(|_| anyhow::anyhow!("the log writer stopped"))?;
            match wait.blocking_recv() {
                Ok(Ok(())) => return Ok(()),
                Ok(Err((Refused::Full | Refused::Busy, back))) => {
                    spans = back;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(Err((Refused::Failed(e), _))) => anyhow::bail!(e),
                Err(_) => anyhow::bail!("the log writer stopped"),
            }
        }
    }

    /// Releases every record below `keep_from` (the engine holds none of
    /// them any more and file sinks are synced).
    pub fn release(&self, keep_from: u64) -> std::io::Result<()> {
        let sources = self
            .shared
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut log = self.shared.log.lock().unwrap_or_else(|e| e.into_inner());
        log.release(keep_from, &sources)?;
        let c = &self.shared.counters;
        c.bytes.store(log.bytes(), Ordering::Relaxed);
        c.keep_from.store(log.keep_from(), Ordering::Relaxed);
        Ok(())
    }

    /// Whether file sinks must be synced before a release.
    pub fn syncs_files(&self) -> bool {
        self.shared.settings.fsync != Fsync::Never
    }

    /// Counters.
    pub fn counters(&self) -> Arc<WalCounters> {
        self.shared.counters.clone()
    }

    /// The first sequence number still needed.
    pub fn keep_from(&self) -> u64 {
        self.shared.counters.keep_from.load(Ordering::Relaxed)
    }
}

/// The writer: takes what is waiting (up to `GROUP`), appends it, syncs once,
/// passes the spans on, then acknowledges.
fn write_loop(
    shared: &Shared,
    rx: &Receiver<Append>,
    pipeline: &tokio::sync::mpsc::Sender<Vec<Span>>,
) {
    let c = &shared.counters;
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    let mut payload = Vec::new();
    loop {
        let first = match shared.settings.fsync {
            Fsync::Every(d) if unsynced => {
                match rx.recv_timeout(d.saturating_sub(last_sync.elapsed())) {
                    Ok(m) => Some(m),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            _ => match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => break,
            },
        };
        let mut group: Vec<Append> = first.into_iter().collect();
        while group.len() < GROUP {
            match rx.try_recv() {
                Ok(m) => group.push(m),
                Err(_) => break,
            }
        }
        let mut log = shared.log.lock().unwrap_or_else(|e| e.into_inner());
        let mut accepted = Vec::with_capacity(group.len());
        // Only what the pipeline has room for is logged: the rest is told to
        // retry at once instead of waiting behind a full pipeline.
        let mut room = pipeline.capacity();
        let mut failure: Option<String> = None;
        for mut msg in group {
            payload.clear();
            if let Err(e) = to_proto(&msg.spans).encode(&mut payload) {
                msg.refuse(Refused::Failed(e.to_string()));
                continue;
            }
            if let Some(e) = &failure {
                msg.refuse(Refused::Failed(e.clone()));
                continue;
            }
            if room == 0 {
                msg.refuse(Refused::Busy);
                continue;
            }
            if !make_room(&mut log, shared, payload.len() as u64) {
                c.refused_full.fetch_add(1, Ordering::Relaxed);
                msg.refuse(Refused::Full);
                continue;
            }
            match log.append(msg.spans.len() as u32, &payload) {
                Ok(seq) => {
                    for s in &mut msg.spans {
                        s.seq = seq;
                    }
                    c.appended.fetch_add(1, Ordering::Relaxed);
                    c.appended_spans
                        .fetch_add(msg.spans.len() as u64, Ordering::Relaxed);
                    room -= 1;
                    accepted.push(msg);
                }
                Err(e) => {
                    tracing::error!("cannot append to the log: {e}");
                    let reason = format!("cannot write the log: {e}");
                    msg.refuse(Refused::Failed(reason.clone()));
                    failure = Some(reason);
                }
            }
        }
        let due = match shared.settings.fsync {
            Fsync::Always => !accepted.is_empty(),
            Fsync::Every(d) => (unsynced || !accepted.is_empty()) && last_sync.elapsed() >= d,
            Fsync::Never => false,
        };
        unsynced |= !accepted.is_empty();
        if due {
            if let Err(e) = log.sync() {
                // Nothing of this group is acknowledged: the client retries.
                tracing::error!("cannot sync the log: {e}");
                for msg in accepted.drain(..) {
                    msg.refuse(Refused::Failed(format!("cannot sync the log: {e}")));
                }
            }
            c.syncs.fetch_add(1, Ordering::Relaxed);
            last_sync = Instant::now();
            unsynced = false;
        }
        c.bytes.store(log.bytes(), Ordering::Relaxed);
        c.next_seq.store(log.next_seq(), Ordering::Relaxed);
        drop(log);
        for msg in accepted {
            if let Some((source, offset)) = &msg.source {
                shared
                    .sources
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(source.clone(), *offset);
            }
            // There is room (checked above; the writer is the only sender
            // while the log is on, but for standard input).
            match pipeline.blocking_send(msg.spans) {
                Ok(()) => {
                    let _ = msg.done.send(Ok(()));
                }
                Err(e) => {
                    let _ = msg
                        .done
                        .send(Err((Refused::Failed("the pipeline stopped".into()), e.0)));
                }
            }
        }
    }
    let mut log = shared.log.lock().unwrap_or_else(|e| e.into_inner());
    let _ = log.sync();
}

/// Frees space for `needed` bytes per the policy; false when the record
/// must be refused.
fn make_room(log: &mut Log, shared: &Shared, needed: u64) -> bool {
    let max = shared.settings.max_bytes;
    while log.bytes() + needed > max {
        match shared.settings.when_full {
            WhenFull::Block => return false,
            WhenFull::DropOldest => match log.drop_oldest() {
                Ok(Some((records, spans))) => {
                    let c = &shared.counters;
                    c.dropped_records.fetch_add(records, Ordering::Relaxed);
                    c.dropped_spans.fetch_add(spans, Ordering::Relaxed);
                    c.keep_from.store(log.keep_from(), Ordering::Relaxed);
                    tracing::warn!(
                        records,
                        spans,
                        "log full: oldest segment deleted; its spans are no longer protected against a crash"
                    );
                }
                // Only the active segment is left: it cannot hold more.
                Ok(None) => return false,
                Err(e) => {
                    tracing::error!("cannot delete a log segment: {e}");
                    return false;
                }
            },
        }
    }
    true
}
