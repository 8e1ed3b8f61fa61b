//! Delivery of exporter payloads to remote endpoints (HTTP POST, unary gRPC).
//!
//! Each remote sink has a bounded queue and one worker thread, so the engine
//! hands a payload over and goes on; the worker sends it and retries what the
//! backend asks to be retried (HTTP 429/502/503/504 and connection errors;
//! gRPC UNAVAILABLE, RESOURCE_EXHAUSTED and the other retryable codes of the
//! OTLP spec) with exponential backoff and jitter, honouring `Retry-After`,
//! until `max_elapsed`. When the queue is full the engine waits (`block`, the
//! default: backpressure reaches the receivers, which answer 503) or the
//! payload is dropped and counted (`drop-newest`). Every payload ends in
//! exactly one of: sent, failed (permanent error or retries exhausted), dropped.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// When the process began to shut down: from then on, blocked sends and
/// retries wait at most `drain_timeout`, so a dead backend cannot hold the
/// process past it.
static SHUTDOWN_AT: OnceLock<Instant> = OnceLock::new();

/// Marks the start of shutdown (SIGTERM).
pub fn begin_shutdown() {
    let _ = SHUTDOWN_AT.set(Instant::now());
}

fn past_drain(settings: &DeliverySettings) -> bool {
    SHUTDOWN_AT
        .get()
        .is_some_and(|t| t.elapsed() >= settings.drain_timeout)
}

/// What to do with a payload when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenFull {
    /// The engine waits for room: the pipeline slows down and the receivers
    /// push back on their clients.
    #[default]
    Block,
    /// The payload is dropped and counted.
    DropNewest,
}

/// `[[export]] delivery = { ... }` in pipeline.toml.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliverySettings {
    /// Payloads waiting to be sent, at most.
    pub queue: usize,
    /// Policy when the queue is full.
    pub when_full: WhenFull,
    /// First retry delay; doubled after each retry, up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest delay between two attempts.
    pub max_backoff: Duration,
    /// Time after the first attempt when a payload is given up.
    pub max_elapsed: Duration,
    /// Time allowed for one attempt.
    pub timeout: Duration,
    /// How long a flush (shutdown, reload) waits for the queue to empty.
    pub drain_timeout: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            queue: 256,
            when_full: WhenFull::Block,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Where payloads go.
#[derive(Debug, Clone)]
pub enum Target {
    /// One POST per payload.
    Http {
        /// URL.
        url: String,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// The payload's content type.
        content_type: String,
    },
    /// One unary call per payload; the payload is the protobuf request body.
    Grpc {
        /// Server URL, e.g. `http://127.0.0.1:4317`.
        endpoint: String,
        /// Method path, e.g. `/opentelemetry.proto.collector.trace.v1.TraceService/Export`.
        method: String,
        /// Extra metadata.
        headers: Vec<(String, String)>,
    },
}

impl Target {
    fn describe(&self) -> &str {
        match self {
            Target::Http { url, .. } => url,
            Target::Grpc { endpoint, .. } => endpoint,
        }
    }
}

/// Counters of one remote sink, in payloads and the spans they carry.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DeliveryStats {
    /// Payloads sent and acknowledged.
    pub sent: u64,
    /// Spans in them.
    pub sent_spans: u64,
    /// Spans the backend acknowledged but rejected (OTLP partial success).
    pub rejected_spans: u64,
    /// Attempts that were retried.
    pub retries: u64,
    /// Payloads given up: a permanent error, or retries exhausted.
    pub failed: u64,
    /// Spans in them.
    pub failed_spans: u64,
    /// Payloads dropped because the queue was full (`drop-newest`) or the
    /// sink was closed before they could be sent.
    pub dropped: u64,
    /// Spans in them.
    pub dropped_spans: u64,
    /// Payloads waiting or being sent now.
    pub queued: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    sent_spans: AtomicU64,
    rejected_spans: AtomicU64,
    retries: AtomicU64,
    failed: AtomicU64,
    failed_spans: AtomicU64,
    dropped: AtomicU64,
    dropped_spans: AtomicU64,
    /// Payloads accepted and not yet finished; `idle` is signalled at zero.
    pending: Mutex<u64>,
    idle: Condvar,
    /// Write-ahead log records (lowest per payload) of payloads not finished,
    /// with their count: the log keeps them until they are (see `wal`).
    in_flight: Mutex<BTreeMap<u64, u32>>,
}

/// How a payload ended, for the write-ahead log.
#[derive(Clone, Copy, PartialEq)]
enum End {
    /// Sent, or given up by policy (counted as failed or dropped): its log
    /// record may go.
    Settled,
    /// Abandoned because the process or the sink is closing: its log record
    /// stays, so the payload is sent again after a restart.
    Abandoned,
}

impl Counters {
    fn finish(&self, seq: u64, end: End) {
        if seq != 0 && end == End::Settled {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = in_flight.get_mut(&seq) {
                *n -= 1;
                if *n == 0 {
                    in_flight.remove(&seq);
                }
            }
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        *pending = pending.saturating_sub(1);
        if *pending == 0 {
            self.idle.notify_all();
        }
    }
}

/// The oldest write-ahead log record a remote sink still needs.
#[derive(Clone)]
pub struct Floor(Arc<Counters>);

impl Floor {
    /// The lowest record of an unfinished (or abandoned) payload, if any.
    pub fn min_seq(&self) -> Option<u64> {
        let in_flight = self.0.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        in_flight.keys().next().copied()
    }
}

struct Payload {
    body: Vec<u8>,
    spans: u64,
    /// Lowest write-ahead log record of its spans; 0: none.
    seq: u64,
}

/// A remote sink: queue, worker and counters.
pub struct Delivery {
    name: String,
    tx: Option<SyncSender<Payload>>,
    counters: Arc<Counters>,
    closing: Arc<AtomicBool>,
    worker: Option<std::thread::JoinHandle<()>>,
    settings: DeliverySettings,
}

/// The outcome of one attempt.
enum Attempt {
    /// Acknowledged; spans the backend rejected inside a success.
    Sent { rejected: u64 },
    /// Worth retrying, after the backend's `Retry-After` when it gave one.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Will not succeed if repeated.
    Permanent(String),
}

impl Delivery {
    /// Starts the worker for `target`. `name` is the `[[export]]` entry.
    pub fn start(name: &str, target: Target, settings: DeliverySettings) -> Result<Delivery> {
        let sender = Sender::new(&target, &settings)?;
        let (tx, rx) = sync_channel::<Payload>(settings.queue.max(1));
        let counters = Arc::new(Counters::default());
        let closing = Arc::new(AtomicBool::new(false));
        let worker = {
            let counters = counters.clone();
            let closing = closing.clone();
            let settings = settings.clone();
            let name = name.to_string();
            std::thread::Builder::new()
                .name(format!("plume-export-{name}"))
                .spawn(move || work(&name, sender, rx, &counters, &closing, &settings))
                .context("cannot start the delivery thread")?
        };
        Ok(Delivery {
            name: name.to_string(),
            tx: Some(tx),
            counters,
            closing,
            worker: Some(worker),
            settings,
        })
    }

    /// Queues a payload carrying `spans` spans (0 for alerts), the lowest
    /// of which came from log record `seq` (0: none).
    pub fn send(&self, body: Vec<u8>, spans: u64, seq: u64) {
        if body.is_empty() {
            return;
        }
        let Some(tx) = &self.tx else { return };
        *self
            .counters
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner()) += 1;
        if seq != 0 {
            *self
                .counters
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(seq)
                .or_default() += 1;
        }
        let mut payload = Payload { body, spans, seq };
        let refused = loop {
            match tx.try_send(payload) {
                Ok(()) => break None,
                Err(TrySendError::Disconnected(p)) => break Some(p),
                Err(TrySendError::Full(p)) => {
                    if self.settings.when_full == WhenFull::DropNewest || past_drain(&self.settings)
                    {
                        break Some(p);
                    }
                    // Blocking: the engine waits, the receivers push back.
                    payload = p;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        };
        if let Some(p) = refused {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            self.counters
                .dropped_spans
                .fetch_add(p.spans, Ordering::Relaxed);
            let end = if self.settings.when_full == WhenFull::DropNewest {
                End::Settled
            } else {
                End::Abandoned
            };
            self.counters.finish(p.seq, end);
            tracing::warn!(export = %self.name, spans = p.spans, "delivery queue full: payload dropped");
        }
    }

    /// Waits until every queued payload is finished, at most `drain_timeout`.
    /// True when the queue emptied.
    pub fn drain(&self) -> bool {
        let deadline = Instant::now() + self.settings.drain_timeout;
        let mut pending = self
            .counters
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while *pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(export = %self.name, pending = *pending, "delivery did not drain in time");
                return false;
            }
            pending = self
                .counters
                .idle
                .wait_timeout(pending, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// The oldest log record this sink still needs, as it changes.
    pub fn floor(&self) -> Floor {
        Floor(self.counters.clone())
    }

    /// Current counters.
    pub fn stats(&self) -> DeliveryStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DeliveryStats {
            sent: get(&c.sent),
            sent_spans: get(&c.sent_spans),
            rejected_spans: get(&c.rejected_spans),
            retries: get(&c.retries),
            failed: get(&c.failed),
            failed_spans: get(&c.failed_spans),
            dropped: get(&c.dropped),
            dropped_spans: get(&c.dropped_spans),
            queued: *c.pending.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }
}

impl Drop for Delivery {
    /// Stops retrying; what is still queued is counted as dropped.
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Relaxed);
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn work(
    name: &str,
    mut sender: Sender,
    rx: Receiver<Payload>,
    c: &Counters,
    closing: &AtomicBool,
    settings: &DeliverySettings,
) {
    while let Ok(p) = rx.recv() {
        if closing.load(Ordering::Relaxed) {
            c.dropped.fetch_add(1, Ordering::Relaxed);
            c.dropped_spans.fetch_add(p.spans, Ordering::Relaxed);
            c.finish(p.seq, End::Abandoned);
            continue;
        }
        let first = Instant::now();
        let mut backoff = settings.initial_backoff;
        let mut end = End::Settled;
        loop {
            match sender.attempt(&p.body) {
                Attempt::Sent { rejected } => {
                    c.sent.fetch_add(1, Ordering::Relaxed);
                    c.sent_spans.fetch_add(p.spans, Ordering::Relaxed);
                    c.rejected_spans.fetch_add(rejected, Ordering::Relaxed);
                    if rejected > 0 {
                        tracing::warn!(export = name, rejected, "the backend rejected spans");
                    }
                    break;
                }
                Attempt::Permanent(reason) => {
                    c.failed.fetch_add(1, Ordering::Relaxed);
                    c.failed_spans.fetch_add(p.spans, Ordering::Relaxed);
                    tracing::error!(
                        export = name,
                        spans = p.spans,
                        "{}: {reason}; payload not sent",
                        sender.target.describe()
                    );
                    break;
                }
                Attempt::Retry { reason, after } => {
                    let delay = after
                        .unwrap_or_else(|| jitter(backoff))
                        .min(settings.max_backoff);
                    let closed = closing.load(Ordering::Relaxed) || past_drain(settings);
                    if first.elapsed() + delay > settings.max_elapsed || closed {
                        if closed {
                            end = End::Abandoned;
                        }
                        c.failed.fetch_add(1, Ordering::Relaxed);
                        c.failed_spans.fetch_add(p.spans, Ordering::Relaxed);
                        tracing::error!(
                            export = name,
                            spans = p.spans,
                            "{}: {reason}; giving up after {:?}",
                            sender.target.describe(),
                            first.elapsed()
                        );
                        break;
                    }
                    c.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        export = name,
                        "{}: {reason}; retrying in {delay:?}",
                        sender.target.describe()
                    );
                    sleep_unless(delay, closing, settings);
                    backoff = (backoff * 2).min(settings.max_backoff);
                }
            }
        }
        c.finish(p.seq, end);
    }
}

/// A delay drawn uniformly from [0.5, 1.5) x `base`, so clients that failed
/// together do not retry together.
fn jitter(base: Duration) -> Duration {
    base.mul_f64(0.5 + fastrand::f64())
}

/// Sleeps `d`, waking early when the sink is closing or shutdown has waited
/// long enough.
fn sleep_unless(d: Duration, closing: &AtomicBool, settings: &DeliverySettings) {
    let until = Instant::now() + d;
    while !closing.load(Ordering::Relaxed) && !past_drain(settings) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// The sending half of a target: an HTTP agent, or a gRPC channel with the
/// runtime it needs.
struct Sender {
    target: Target,
    http: Option<ureq::Agent>,
    grpc: Option<(tokio::runtime::Runtime, tonic::transport::Channel)>,
}

impl Sender {
    fn new(target: &Target, settings: &DeliverySettings) -> Result<Sender> {
        match target {
            Target::Http { url, .. } => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    anyhow::bail!("sink URL must start with http:// or https://, got {url:?}");
                }
                let agent = ureq::Agent::config_builder()
                    .timeout_global(Some(settings.timeout))
                    .http_status_as_error(false)
                    .build()
                    .new_agent();
                Ok(Sender {
                    target: target.clone(),
                    http: Some(agent),
                    grpc: None,
                })
            }
            Target::Grpc { endpoint, .. } => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let channel = {
                    let _entered = rt.enter();
                    tonic::transport::Endpoint::from_shared(endpoint.clone())
                        .with_context(|| format!("{endpoint:?} is not a gRPC endpoint URL"))?
                        .timeout(settings.timeout)
                        .connect_timeout(settings.timeout)
                        .connect_lazy()
                };
                Ok(Sender {
                    target: target.clone(),
                    http: None,
                    grpc: Some((rt, channel)),
                })
            }
        }
    }

    fn attempt(&mut self, body: &[u8]) -> Attempt {
        match (&self.target, &self.http, &self.grpc) {
            (
                Target::Http {
                    url,
                    headers,
                    content_type,
                },
                Some(agent),
                _,
            ) => post(agent, url, headers, content_type, body),
            (
                Target::Grpc {
                    method, headers, ..
                },
                _,
                Some((rt, channel)),
            ) => rt.block_on(unary(channel.clone(), method, headers, body.to_vec())),
            _ => Attempt::Permanent("sink not initialised".into()),
        }
    }
}

fn post(
    agent: &ureq::Agent,
    url: &str,
    headers: &[(String, String)],
    content_type: &str,
    body: &[u8],
) -> Attempt {
    let mut req = agent.post(url).header("content-type", content_type);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let mut resp = match req.send(body) {
        Ok(r) => r,
        Err(e) => {
            return Attempt::Retry {
                reason: e.to_string(),
                after: None,
            };
        }
    };
    let status = resp.status().as_u16();
    match status {
        200..=299 => {
            let protobuf = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-protobuf"));
            let rejected = if protobuf {
                resp.body_mut()
                    .read_to_vec()
                    .ok()
                    .map_or(0, |b| rejected_spans(&b))
            } else {
                0
            };
            Attempt::Sent { rejected }
        }
        429 | 502 | 503 | 504 => Attempt::Retry {
            reason: format!("HTTP {status}"),
            after: resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        },
        _ => {
            let text = resp
                .body_mut()
                .with_config()
                .limit(512)
                .read_to_string()
                .unwrap_or_default();
            Attempt::Permanent(format!("HTTP {status} {}", text.trim()))
        }
    }
}

/// `rejected_spans` of an OTLP `ExportTraceServiceResponse`, 0 if absent.
fn rejected_spans(body: &[u8]) -> u64 {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    use prost::Message;
    ExportTraceServiceResponse::decode(body)
        .ok()
        .and_then(|r| r.partial_success)
        .map_or(0, |p| p.rejected_spans.max(0) as u64)
}

async fn unary(
    channel: tonic::transport::Channel,
    method: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Attempt {
    use tonic::Code;
    let path = match method.parse::<tonic::codegen::http::uri::PathAndQuery>() {
        Ok(p) => p,
        Err(e) => return Attempt::Permanent(format!("bad gRPC method {method:?}: {e}")),
    };
    let mut grpc = tonic::client::Grpc::new(channel);
    if let Err(e) = grpc.ready().await {
        return Attempt::Retry {
            reason: format!("not connected: {e}"),
            after: None,
        };
    }
    let mut request = tonic::Request::new(body);
    for (k, v) in headers {
        match (
            tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes()),
            v.parse(),
        ) {
            (Ok(k), Ok(v)) => {
                request.metadata_mut().insert(k, v);
            }
            _ => {
                return Attempt::Permanent(format!("header {k:?} cannot be sent as gRPC metadata"));
            }
        }
    }
    match grpc.unary(request, path, RawCodec).await {
        Ok(resp) => Attempt::Sent {
            rejected: rejected_spans(resp.get_ref()),
        },
        Err(status) => {
            let reason = format!("gRPC {:?}: {}", status.code(), status.message());
            match status.code() {
                Code::Unavailable
                | Code::ResourceExhausted
                | Code::Aborted
                | Code::Cancelled
                | Code::DeadlineExceeded
                | Code::OutOfRange
                | Code::DataLoss => Attempt::Retry {
                    reason,
                    after: None,
                },
                _ => Attempt::Permanent(reason),
            }
        }
    }
}

/// Passes payloads through as the message bytes: the exporter already
/// produced the protobuf encoding, so the host does not decode it again.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A one-thread HTTP server answering each request with the next status
    /// of `script` (then 200), counting requests.
    fn scripted_server(script: Vec<(u16, &'static str)>) -> (String, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicU64::new(0));
        let seen = hits.clone();
        std::thread::spawn(move || {
            let mut script = script.into_iter();
            for stream in listener.incoming() {
                let mut s = stream.unwrap();
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                // Read headers and the body (Content-Length).
                loop {
                    let n = s.read(&mut buf).unwrap();
                    got.extend_from_slice(&buf[..n]);
                    if let Some(end) = find(&got, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map(|v| v.trim().parse().unwrap())
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                    if n == 0 {
                        break;
                    }
                }
                seen.fetch_add(1, Ordering::Relaxed);
                let (status, extra) = script.next().unwrap_or((200, ""));
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n{extra}\r\n"
                );
            }
        });
        (url, hits)
    }

    fn find(h: &[u8], n: &[u8]) -> Option<usize> {
        h.windows(n.len()).position(|w| w == n)
    }

    fn quick() -> DeliverySettings {
        DeliverySettings {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            max_elapsed: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
            ..DeliverySettings::default()
        }
    }

    fn http(url: String) -> Target {
        Target::Http {
            url,
            headers: vec![],
            content_type: "application/x-protobuf".into(),
        }
    }

    #[test]
    fn retries_what_the_backend_asks_to_retry_then_sends() {
        let (url, hits) = scripted_server(vec![(503, "retry-after: 0\r\n"), (429, ""), (502, "")]);
        let d = Delivery::start("t", http(url), quick()).unwrap();
        d.send(b"payload".to_vec(), 7, 0);
        assert!(d.drain());
        let s = d.stats();
        assert_eq!((s.sent, s.sent_spans, s.retries, s.failed), (1, 7, 3, 0));
        assert_eq!(hits.load(Ordering::Relaxed), 4);
        assert_eq!(s.queued, 0);
    }

    #[test]
    fn a_permanent_error_is_not_retried() {
        let (url, hits) = scripted_server(vec![(400, "")]);
        let d = Delivery::start("t", http(url), quick()).unwrap();
        d.send(b"payload".to_vec(), 3, 0);
        assert!(d.drain());
        let s = d.stats();
        assert_eq!((s.sent, s.failed, s.failed_spans, s.retries), (0, 1, 3, 0));
        assert_eq!(hits.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn retries_stop_after_max_elapsed() {
        let (url, _) = scripted_server(vec![(503, ""); 1000]);
        let settings = DeliverySettings {
            max_elapsed: Duration::from_millis(200),
            ..quick()
        };
        let d = Delivery::start("t", http(url), settings).unwrap();
        d.send(b"payload".to_vec(), 2, 0);
        assert!(d.drain());
        let s = d.stats();
        assert_eq!((s.sent, s.failed, s.failed_spans), (0, 1, 2));
        assert!(s.retries >= 3, "{s:?}");
    }

    #[test]
    fn a_full_queue_drops_newest_when_told_to_and_counts_it() {
        // Nothing listens: every attempt fails and is retried for a while,
        // so the one-slot queue stays full.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = DeliverySettings {
            queue: 1,
            when_full: WhenFull::DropNewest,
            max_elapsed: Duration::from_millis(300),
            ..quick()
        };
        let d = Delivery::start("t", http(format!("http://127.0.0.1:{port}/")), settings).unwrap();
        for seq in 1..=10 {
            d.send(b"p".to_vec(), 1, seq);
        }
        assert!(d.drain());
        assert_eq!(d.floor().min_seq(), None, "given up by policy: released");
        let s = d.stats();
        assert_eq!(s.sent + s.failed + s.dropped, 10, "{s:?}");
        assert!(s.dropped >= 8, "{s:?}");
        assert_eq!(s.dropped_spans, s.dropped);
    }

    #[test]
    fn jitter_stays_within_half_and_one_and_a_half() {
        for _ in 0..1000 {
            let d = jitter(Duration::from_millis(100));
            assert!(d >= Duration::from_millis(50) && d < Duration::from_millis(150));
        }
    }

    #[test]
    fn closing_counts_what_was_left_as_dropped() {
        let (url, _) = scripted_server(vec![(503, ""); 1000]);
        let settings = DeliverySettings {
            max_elapsed: Duration::from_secs(60),
            ..quick()
        };
        let d = Delivery::start("t", http(url), settings).unwrap();
        for seq in 7..10 {
            d.send(b"p".to_vec(), 5, seq);
        }
        std::thread::sleep(Duration::from_millis(100));
        let counters = d.counters.clone();
        let floor = d.floor();
        drop(d);
        assert_eq!(
            floor.min_seq(),
            Some(7),
            "abandoned payloads keep their log records for a restart"
        );
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        // The one in flight gives up (failed), the two queued are dropped.
        assert_eq!(g(&counters.failed) + g(&counters.dropped), 3);
        assert_eq!(g(&counters.dropped), 2);
        assert_eq!(g(&counters.sent), 0);
    }
}
