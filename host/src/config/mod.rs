//! `pipeline.toml`: parsing, environment substitution and validation.
//!
//! ```toml
//! [ingest]
//! jsonl = ["spans.jsonl"]          # files to read; "-" is stdin. Default: none
//! otlp_http = "127.0.0.1:4318"     # OTLP/HTTP listener: POST /v1/traces, protobuf or JSON, gzip
//! otlp_grpc = "127.0.0.1:4317"     # OTLP/gRPC listener (TraceService/Export)
//! token = "${PLUME_INGEST_TOKEN}"  # required as `Authorization: Bearer ...` when set
//! max_body_bytes = 8388608         # larger requests get 413 (gRPC: RESOURCE_EXHAUSTED)
//! max_queued_spans = 8192          # received or read, not yet batched; beyond: 503 / readers wait
//! tls = { cert = "cert.pem", key = "key.pem" }   # serve both receivers over TLS (rustls)
//!
//! [api]
//! listen = "127.0.0.1:9464"        # /healthz /readyz /metrics /v1/reports[/NAME] /v1/budget/FEATURE
//! admin_token = "${PLUME_ADMIN_TOKEN}"  # POST /admin/reload needs `Authorization: Bearer ...`;
//!                                  # without it admin calls are served on loopback only
//! tls = { cert = "cert.pem", key = "key.pem" }   # serve the API over TLS
//!
//! [batch]
//! max_spans = 256                  # spans per batch, 1..=65536
//! max_wait_ms = 200                # a partial batch is flushed after this long (service mode)
//!
//! [engine]
//! shards = "auto"                  # copies of the processors, each on its own thread, spans
//!                                  # assigned by trace (after the trace hold); "auto": one per
//!                                  # core the process may use, at most 4; 1: all on one thread
//!
//! [dead_letter]
//! path = "dead-letter.jsonl"       # where `on_error = "dead-letter"` writes
//!
//! [traces]                         # the trace hold (engine::hold)
//! wait = "5s"                      # release a trace this long after its last span; "0s": no hold
//! after_root = "250ms"             # ... or this long after, once its root span arrived
//! max_spans = 100000               # held at most; beyond, the traces due first leave early
//! join_on = ["gen_ai.response.id"] # equal values join spans of different traces
//! stitch_attributes = []           # e.g. ["traceparent"]: a root span carrying its caller's W3C
//!                                  # traceparent there is stitched under the caller's trace
//! stitch_links = false             # ... or a root span's first link to another trace
//!
//! [wal]                            # durability (the `wal` module); off unless set
//! dir = "/var/lib/plume/wal"       # spans are logged here before they are acknowledged and
//!                                  # replayed after a crash until every sink has them
//! fsync = "always"                 # "always": before each acknowledgement; "100ms": at most that
//!                                  # late (a power loss can take it; a crash of plume cannot);
//!                                  # "never": left to the OS
//! max_bytes = 1073741824           # bound on disk; at it, when_full decides:
//! when_full = "block"              # "block": OTLP clients get 503 + Retry-After;
//!                                  # "drop-oldest": the oldest segment goes (counted, alert wal_dropped)
//! segment_bytes = 67108864         # segment file size
//!
//! [[stage]]                        # processors, in order
//! name = "price"                   # default: the plugin's name; unique
//! plugin = "builtin:pricer"        # or a path to a .wasm component
//! config = { table = "p.json" }    # given to the plugin as JSON; default {}
//! on_error = "pass"                # pass | drop | dead-letter; default pass
//! limits = { memory_mb = 64, timeout_ms = 100 }   # defaults shown; 1..=4096 MiB, 0..=60000 ms (0: none);
//!                                  # also `fuel = N`: at most ~N wasm instructions per call (optional)
//! grants = { read = ["DIR"], write = ["DIR"], env = ["NAME"] }   # capabilities; default none
//! breaker = { max_failures = 5, window = "60s", cooldown = "5m", policy = "bypass" }
//!                                  # crash-loop breaker, defaults shown: after max_failures traps,
//!                                  # timeouts or memory failures within window, the entry is not
//!                                  # called for cooldown (alert plugin_disabled, /readyz 503);
//!                                  # meanwhile spans bypass it, or with "stop" are dead-lettered;
//!                                  # max_failures = 0 turns it off
//!
//! [[evaluator]]                    # same keys as a stage
//! [[router]]                       # at most one; same keys
//! [[export]]                       # same keys, and for remote sinks (HTTP, gRPC):
//! delivery = { queue = 256, when_full = "block", initial_backoff = "1s", max_backoff = "30s",
//!              max_elapsed = "5m", timeout = "10s", drain_timeout = "30s" }   # defaults shown;
//!                                  # when_full = "drop-newest" drops (counted) instead of blocking
//! ```
//! Relative paths are relative to the working directory, as in the
//! OpenTelemetry Collector. `${NAME}` and `${NAME:-default}` are substituted
//! from the environment before parsing.

pub mod env;

use crate::engine::delivery::{DeliverySettings, WhenFull};
use crate::engine::hold::HoldSettings;
use crate::plugin::PluginKind;
use crate::plugin::builtins;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The whole pipeline file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Sources.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// The HTTP API.
    #[serde(default)]
    pub api: Option<ApiConfig>,
    /// Batching.
    #[serde(default)]
    pub batch: BatchConfig,
    /// How the pipeline uses the machine's cores.
    #[serde(default)]
    pub engine: EngineConfig,
    /// How long spans wait for the rest of their trace.
    #[serde(default)]
    pub traces: TracesConfig,
    /// Where dead-lettered spans go.
    #[serde(default)]
    pub dead_letter: DeadLetterConfig,
    /// The write-ahead log (durability).
    #[serde(default)]
    pub wal: Option<Spanned<WalConfig>>,
    /// Processors, in order.
    #[serde(default)]
    pub stage: Vec<Spanned<PluginConfig>>,
    /// Evaluators.
    #[serde(default)]
    pub evaluator: Vec<Spanned<PluginConfig>>,
    /// The alert router (at most one).
    #[serde(default)]
    pub router: Vec<Spanned<PluginConfig>>,
    /// Exporters.
    #[serde(default)]
    pub export: Vec<Spanned<PluginConfig>>,
}

/// `[ingest]`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// OTLP/HTTP listen address.
    pub otlp_http: Option<Spanned<String>>,
    /// OTLP/gRPC listen address.
    pub otlp_grpc: Option<Spanned<String>>,
    /// JSONL files; `-` is standard input.
    #[serde(default)]
    pub jsonl: Vec<String>,
    /// Bearer token the OTLP receivers require, when set.
    pub token: Option<String>,
    /// Largest OTLP request body, compressed or inflated, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Spans received or read but not yet batched, at most; beyond, OTLP
    /// clients get 503 and file readers wait.
    #[serde(default = "default_max_queued_spans")]
    pub max_queued_spans: usize,
    /// Serve the OTLP receivers over TLS with this certificate.
    pub tls: Option<TlsFiles>,
}

/// A certificate chain and its private key, PEM files (`tls = { cert, key }`).
#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain (PEM).
    pub cert: PathBuf,
    /// The private key (PEM).
    pub key: PathBuf,
}

fn default_max_queued_spans() -> usize {
    8192
}

fn default_max_body_bytes() -> usize {
    8 << 20
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            otlp_http: None,
            otlp_grpc: None,
            jsonl: Vec::new(),
            token: None,
            max_body_bytes: default_max_body_bytes(),
            max_queued_spans: default_max_queued_spans(),
            tls: None,
        }
    }
}

/// `[api]`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address.
    pub listen: Spanned<String>,
    /// Bearer token `POST /admin/reload` requires. Without one, admin calls
    /// are served only when the API listens on loopback.
    pub admin_token: Option<String>,
    /// Serve the API over TLS with this certificate.
    pub tls: Option<TlsFiles>,
}

/// `[batch]`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Spans per batch.
    #[serde(default = "default_max_spans")]
    pub max_spans: Spanned<usize>,
    /// Flush a partial batch after this long.
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
}

fn default_max_spans() -> Spanned<usize> {
    Spanned::new(0..0, 256)
}
fn default_max_wait_ms() -> u64 {
    200
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_spans: default_max_spans(),
            max_wait_ms: default_max_wait_ms(),
        }
    }
}

/// `[engine]`.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Processor shards: `"auto"` (the default) or a count.
    pub shards: Option<Spanned<ShardCount>>,
}

/// `[engine] shards`: a number, or `"auto"`.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum ShardCount {
    /// This many shards.
    Count(i64),
    /// Should be `"auto"`.
    Named(String),
}

/// Most processor shards: each holds its own instances of every processor.
pub const MAX_SHARDS: usize = 64;

/// Most shards "auto" picks. Every span also passes the one tail thread
/// (evaluators, exporters): with the default pipeline the tail spends about
/// 6 µs per span and the processors about 8 (BENCHMARKS.md), so past two or
/// three shards the tail is the limit, and each shard holds its own plugin
/// instances (~20 MiB).
pub const AUTO_MAX_SHARDS: usize = 4;

/// `[wal]`: spans are logged on disk before they are acknowledged (see `wal`).
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct WalConfig {
    /// The log's folder; required.
    pub dir: Option<PathBuf>,
    /// `"always"` (default), `"never"`, or a period like `"100ms"`.
    pub fsync: Option<String>,
    /// Bound on the log's bytes on disk (default 1 GiB).
    pub max_bytes: Option<u64>,
    /// Segment file size (default 64 MiB).
    pub segment_bytes: Option<u64>,
    /// `block` (default) or `drop-oldest`.
    pub when_full: Option<crate::wal::WhenFull>,
}

/// `[traces]`: the trace hold (see `engine::hold`).
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    /// Release a trace once no span joined it for this long (`"0s"`: no hold).
    pub wait: Option<Spanned<String>>,
    /// Release sooner, this long after the last span, once the root arrived.
    pub after_root: Option<Spanned<String>>,
    /// Spans held at most.
    pub max_spans: Option<Spanned<usize>>,
    /// Attributes whose equal values join spans of different traces.
    pub join_on: Option<Vec<String>>,
    /// Attributes in which a sub-agent's root span carries its caller's
    /// W3C `traceparent`: such traces are stitched under the caller.
    pub stitch_attributes: Option<Vec<String>>,
    /// Stitch a root span under the span its first link to another trace names.
    pub stitch_links: Option<bool>,
}

/// `[dead_letter]`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// JSONL file that receives dead-lettered spans with their error.
    #[serde(default = "default_dead_letter_path")]
    pub path: PathBuf,
}

fn default_dead_letter_path() -> PathBuf {
    PathBuf::from("dead-letter.jsonl")
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            path: default_dead_letter_path(),
        }
    }
}

/// What happens to a batch when its stage fails (trap, limit, plugin error).
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// The batch goes on unchanged by this stage.
    #[default]
    Pass,
    /// The batch is dropped (and counted).
    Drop,
    /// The batch's spans are written to the dead-letter file with the error.
    DeadLetter,
}

/// Per-plugin limits.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Linear memory limit, MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// Wall-clock limit per call, ms (enforced by epoch interruption). 0:
    /// none, and the plugin's code is compiled without the epoch checks
    /// (faster; a plugin that never returns then stalls its shard for good).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Fuel per call (about one unit per WebAssembly instruction): a limit
    /// on work that does not depend on the machine's speed or load. None by
    /// default; plugins with it run slightly slower (fuel checks).
    #[serde(default)]
    pub fuel: Option<u64>,
}

fn default_memory_mb() -> u64 {
    64
}
fn default_timeout_ms() -> u64 {
    100
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: default_memory_mb(),
            timeout_ms: default_timeout_ms(),
            fuel: None,
        }
    }
}

/// One `[[stage]]`, `[[evaluator]]`, `[[router]]` or `[[export]]` entry.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Unique name; defaults to the plugin's name.
    pub name: Option<String>,
    /// `builtin:NAME` or a path to a `.wasm` component.
    pub plugin: Spanned<String>,
    /// Plugin configuration, passed as JSON.
    #[serde(default)]
    pub config: toml::Table,
    /// Failure policy.
    #[serde(default)]
    pub on_error: OnError,
    /// Limits.
    #[serde(default = "default_limits")]
    pub limits: Spanned<Limits>,
    /// Capabilities granted to the plugin; none by default.
    #[serde(default = "default_grants")]
    pub grants: Spanned<Grants>,
    /// Queue and retries of a remote sink ([[export]] only).
    pub delivery: Option<Spanned<DeliveryConfig>>,
    /// The crash-loop breaker.
    pub breaker: Option<Spanned<BreakerConfig>>,
}

/// `breaker = { ... }`: a plugin that fails `max_failures` times within
/// `window` is disabled for `cooldown`, then tried again.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Failures (traps, timeouts, memory, broken contracts; not errors the
    /// plugin returns) that disable it; 0 turns the breaker off. Default 5.
    pub max_failures: Option<u32>,
    /// The window they are counted in (default `"60s"`).
    pub window: Option<String>,
    /// How long it stays disabled before one more try (default `"5m"`).
    pub cooldown: Option<String>,
    /// While disabled: `bypass` (spans pass the stage untouched, the default)
    /// or `stop` (spans go to the dead-letter file; processors only).
    pub policy: Option<BreakerPolicy>,
}

/// What a processor's batches do while its breaker is open.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerPolicy {
    /// Spans pass the stage untouched.
    #[default]
    Bypass,
    /// Spans stop there: written to the dead-letter file, with the reason.
    Stop,
}

/// The crash-loop breaker's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    /// Failures within `window` that open the breaker; 0: never.
    pub max_failures: u32,
    /// The counting window.
    pub window: std::time::Duration,
    /// Time disabled before the next try.
    pub cooldown: std::time::Duration,
    /// While disabled.
    pub policy: BreakerPolicy,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            max_failures: 5,
            window: std::time::Duration::from_secs(60),
            cooldown: std::time::Duration::from_secs(300),
            policy: BreakerPolicy::Bypass,
        }
    }
}

/// `delivery = { ... }` of an `[[export]]` whose sink is remote (HTTP, gRPC).
/// Durations are written like `"500ms"`, `"30s"`, `"5m"`.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Payloads waiting to be sent, at most (default 256).
    pub queue: Option<usize>,
    /// `block` (default) or `drop-newest`.
    pub when_full: Option<WhenFull>,
    /// First retry delay (default 1s), doubled per retry.
    pub initial_backoff: Option<String>,
    /// Longest retry delay (default 30s).
    pub max_backoff: Option<String>,
    /// Give a payload up this long after its first attempt (default 5m).
    pub max_elapsed: Option<String>,
    /// Time allowed per attempt (default 10s).
    pub timeout: Option<String>,
    /// How long shutdown and reload wait for the queue to empty (default 30s).
    pub drain_timeout: Option<String>,
}

/// Capabilities a plugin gets, by name. Nothing is granted by default.
#[derive(Debug, Deserialize, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Directories the plugin may read (read-only), visible to it under the
    /// same path as written here (e.g. `"pricing"` to read `pricing/table.json`).
    #[serde(default)]
    pub read: Vec<String>,
    /// Directories the plugin may read and write, under the same path.
    #[serde(default)]
    pub write: Vec<String>,
    /// Environment variables the plugin may read, by name (their values are
    /// taken from plume's environment when the plugin starts).
    #[serde(default)]
    pub env: Vec<String>,
}

fn default_grants() -> Spanned<Grants> {
    Spanned::new(0..0, Grants::default())
}

fn default_limits() -> Spanned<Limits> {
    Spanned::new(0..0, Limits::default())
}

/// Where a plugin's code comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PluginSource {
    /// Embedded in the binary.
    Builtin(String),
    /// A component file.
    Path(PathBuf),
}

impl PluginSource {
    /// Parses a `plugin = "..."` value.
    pub fn parse(s: &str) -> PluginSource {
        match s.strip_prefix("builtin:") {
            Some(name) => PluginSource::Builtin(name.to_string()),
            None => PluginSource::Path(PathBuf::from(s)),
        }
    }

    /// A short default name: the builtin's name or the file stem.
    pub fn default_name(&self) -> String {
        match self {
            PluginSource::Builtin(n) => n.clone(),
            PluginSource::Path(p) => p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// A validated plugin entry, ready to instantiate.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// Unique name.
    pub name: String,
    /// Which world it implements.
    pub kind: PluginKind,
    /// Where its code is.
    pub source: PluginSource,
    /// Its config as JSON text.
    pub config_json: String,
    /// Failure policy.
    pub on_error: OnError,
    /// Limits.
    pub limits: Limits,
    /// Granted capabilities.
    pub grants: Grants,
    /// Queue and retries, for an exporter with a remote sink.
    pub delivery: DeliverySettings,
    /// The crash-loop breaker.
    pub breaker: BreakerSettings,
    /// The file it was declared in.
    pub file: String,
    /// The line of its `[[section]]` header.
    pub line: usize,
    /// Its key path, e.g. `stage[2]`.
    pub key: String,
    /// How many instances of this entry share the spans: one per processor
    /// shard for processors and exporters, else 1. Plugins read it (the
    /// host's `instances`) to divide state bounded by a count of keys.
    pub instances: u32,
}

impl PluginSpec {
    /// An entry the host adds itself (not from a file), with default limits.
    pub fn builtin(
        name: &str,
        kind: PluginKind,
        builtin: &str,
        config_json: String,
        key: &str,
    ) -> PluginSpec {
        PluginSpec {
            name: name.to_string(),
            kind,
            source: PluginSource::Builtin(builtin.to_string()),
            config_json,
            on_error: OnError::Pass,
            limits: Limits::default(),
            grants: Grants::default(),
            delivery: DeliverySettings::default(),
            breaker: BreakerSettings::default(),
            file: "<plume>".to_string(),
            line: 0,
            key: key.to_string(),
            instances: 1,
        }
    }

    /// A configuration error about this entry.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self.line,
            key: format!("{} ({})", self.key, self.name),
            message: message.into(),
        }
    }
}

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The file it came from (or `<embedded default>`).
    pub file: String,
    /// Sources.
    pub ingest: IngestConfig,
    /// API listen address, if any.
    pub api_listen: Option<SocketAddr>,
    /// `[api] admin_token`.
    pub admin_token: Option<String>,
    /// `[api] tls`.
    pub api_tls: Option<TlsFiles>,
    /// Spans per batch.
    pub batch_max_spans: usize,
    /// Flush a partial batch after this long, ms.
    pub batch_max_wait_ms: u64,
    /// `[engine] shards`: `None` is "auto" (see [`Pipeline::shard_count`]).
    pub shards: Option<usize>,
    /// Dead-letter file.
    pub dead_letter_path: PathBuf,
    /// The trace hold.
    pub hold: HoldSettings,
    /// The write-ahead log, when `[wal]` is set.
    pub wal: Option<crate::wal::WalSettings>,
    /// Processors, in order.
    pub stages: Vec<PluginSpec>,
    /// Evaluators.
    pub evaluators: Vec<PluginSpec>,
    /// Router.
    pub router: Option<PluginSpec>,
    /// Exporters.
    pub exports: Vec<PluginSpec>,
}

impl Pipeline {
    /// Every plugin entry: processors, evaluators, the router, exporters.
    pub fn entries(&self) -> impl Iterator<Item = &PluginSpec> {
        (self.stages.iter())
            .chain(&self.evaluators)
            .chain(&self.router)
            .chain(&self.exports)
    }

    /// Every plugin entry, to change (as [`Pipeline::entries`]).
    pub fn entries_mut(&mut self) -> impl Iterator<Item = &mut PluginSpec> {
        (self.stages.iter_mut())
            .chain(&mut self.evaluators)
            .chain(&mut self.router)
            .chain(&mut self.exports)
    }

    /// Processor shards to run: `[engine] shards`, or for "auto" one per
    /// core this process may run on (its CPU affinity and quota included), at
    /// most [`AUTO_MAX_SHARDS`]. One without processors: there is nothing to
    /// share out, and extra threads would only pass spans along.
    pub fn shard_count(&self) -> usize {
        if self.stages.is_empty() {
            return 1;
        }
        self.shards.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(AUTO_MAX_SHARDS)
        })
    }
}

/// A configuration error: file, line and the key path.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// File name.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// Key path, e.g. `stage[1].limits.memory_mb`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.key.is_empty()) {
            (0, true) => write!(f, "{}: {}", self.file, self.message),
            (0, false) => write!(f, "{}: {}: {}", self.file, self.key, self.message),
            (l, true) => write!(f, "{}:{}: {}", self.file, l, self.message),
            (l, false) => write!(f, "{}:{}: {}: {}", self.file, l, self.key, self.message),
        }
    }
}

/// All errors found in one file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The pipeline used when `plume run` is given no file.
pub const DEFAULT_PIPELINE: &str = include_str!("default_pipeline.toml");

/// Loads and validates a pipeline file.
pub fn load(path: &Path) -> Result<Pipeline, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            line: 0,
            key: String::new(),
            message: format!("cannot read: {e}"),
        }])
    })?;
    parse(&file, &text, |name| std::env::var(name).ok())
}

/// Parses and validates pipeline text. `file` names it in messages.
pub fn parse(
    file: &str,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Pipeline, ConfigErrors> {
    let err = |line: usize, key: &str, message: String| ConfigError {
        file: file.to_string(),
        line,
        key: key.to_string(),
        message,
    };
    let text = env::substitute(text, env).map_err(|errs| {
        ConfigErrors(errs.into_iter().map(|(line, m)| err(line, "", m)).collect())
    })?;
    let raw: PipelineConfig = toml::from_str(&text).map_err(|e| {
        let line = e.span().map(|s| line_of(&text, s.start)).unwrap_or(0);
        ConfigErrors(vec![err(line, "", e.message().trim().to_string())])
    })?;
    validate(file, &text, raw)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

fn validate(file: &str, text: &str, raw: PipelineConfig) -> Result<Pipeline, ConfigErrors> {
    let mut errors = Vec::new();
    let mut err = |span: std::ops::Range<usize>, key: String, message: String| {
        let line = if span.is_empty() && span.start == 0 {
            0
        } else {
            line_of(text, span.start)
        };
        errors.push(ConfigError {
            file: file.to_string(),
            line,
            key,
            message,
        });
    };

    let mut names: HashMap<String, String> = HashMap::new();
    let mut specs =
        |section: &str,
         kind: PluginKind,
         entries: Vec<Spanned<PluginConfig>>,
         err: &mut dyn FnMut(std::ops::Range<usize>, String, String)| {
            let mut out = Vec::new();
            for (i, entry) in entries.into_iter().enumerate() {
                let span = entry.span();
                let c = entry.into_inner();
                let key = format!("{section}[{i}]");
                let source = PluginSource::parse(c.plugin.get_ref());
                match &source {
                    PluginSource::Builtin(name) => match builtins::lookup(name) {
                        None => err(
                            c.plugin.span(),
                            format!("{key}.plugin"),
                            format!(
                                "unknown builtin {:?}; builtins are: {}",
                                c.plugin.get_ref(),
                                builtins::names().join(", ")
                            ),
                        ),
                        Some(b) if b.kind != kind => err(
                            c.plugin.span(),
                            format!("{key}.plugin"),
                            format!(
                                "builtin:{name} is {} plugin; [[{section}]] needs {} plugin",
                                b.kind.with_article(),
                                kind.with_article()
                            ),
                        ),
                        Some(_) => {}
                    },
                    PluginSource::Path(p) => {
                        if !p.is_file() {
                            err(
                                c.plugin.span(),
                                format!("{key}.plugin"),
                                format!(
                                    "plugin file {} not found (a path to a .wasm component, or builtin:NAME)",
                                    p.display()
                                ),
                            );
                        }
                    }
                }
                let name = c.name.clone().unwrap_or_else(|| source.default_name());
                if name.is_empty() {
                    err(
                        span.clone(),
                        format!("{key}.name"),
                        "must not be empty".into(),
                    );
                }
                if let Some(other) = names.insert(name.clone(), key.clone()) {
                    err(
                        span.clone(),
                        format!("{key}.name"),
                        format!("name {name:?} is already used by {other}; set a unique `name`"),
                    );
                }
                let limits = *c.limits.get_ref();
                if !(1..=4096).contains(&limits.memory_mb) {
                    err(
                        c.limits.span(),
                        format!("{key}.limits.memory_mb"),
                        format!("must be 1..=4096, got {}", limits.memory_mb),
                    );
                }
                if limits.timeout_ms > 60_000 {
                    err(
                        c.limits.span(),
                        format!("{key}.limits.timeout_ms"),
                        format!(
                            "must be 0..=60000 (0: no time limit), got {}",
                            limits.timeout_ms
                        ),
                    );
                }
                if limits.fuel == Some(0) {
                    err(
                        c.limits.span(),
                        format!("{key}.limits.fuel"),
                        "must be more than 0 (leave it out for no fuel limit)".into(),
                    );
                }
                let grants = c.grants.get_ref();
                for (list, dirs) in [("read", &grants.read), ("write", &grants.write)] {
                    for (j, dir) in dirs.iter().enumerate() {
                        if !Path::new(dir).is_dir() {
                            err(
                                c.grants.span(),
                                format!("{key}.grants.{list}[{j}]"),
                                format!("{dir:?} is not a directory (grants name directories)"),
                            );
                        }
                    }
                }
                for (j, name) in grants.env.iter().enumerate() {
                    if name.is_empty() || name.contains('=') {
                        err(
                            c.grants.span(),
                            format!("{key}.grants.env[{j}]"),
                            format!("{name:?} is not an environment variable name"),
                        );
                    }
                }
                if kind != PluginKind::Processor && c.on_error == OnError::DeadLetter {
                    err(
                        span.clone(),
                        format!("{key}.on_error"),
                        "dead-letter applies to [[stage]] processors only; use pass or drop".into(),
                    );
                }
                let delivery = match &c.delivery {
                    Some(d) if kind != PluginKind::Exporter => {
                        err(
                            d.span(),
                            format!("{key}.delivery"),
                            "applies to [[export]] entries only".into(),
                        );
                        DeliverySettings::default()
                    }
                    Some(d) => delivery_settings(d, &key, err),
                    None => DeliverySettings::default(),
                };
                let breaker = breaker_settings(c.breaker.as_ref(), kind, &key, err);
                let config_json = match serde_json::to_string(&c.config) {
                    Ok(j) => j,
                    Err(e) => {
                        err(
                            span.clone(),
                            format!("{key}.config"),
                            format!("cannot be passed to the plugin: {e}"),
                        );
                        String::new()
                    }
                };
                out.push(PluginSpec {
                    name,
                    kind,
                    source,
                    config_json,
                    on_error: c.on_error,
                    limits,
                    grants: c.grants.get_ref().clone(),
                    delivery,
                    breaker,
                    file: file.to_string(),
                    line: line_of(text, span.start),
                    key,
                    instances: 1,
                });
            }
            out
        };
    let stages = specs("stage", PluginKind::Processor, raw.stage, &mut err);
    let evaluators = specs("evaluator", PluginKind::Evaluator, raw.evaluator, &mut err);
    let router_span = raw.router.get(1).map(|r| r.span());
    let mut routers = specs("router", PluginKind::Router, raw.router, &mut err);
    let exports = specs("export", PluginKind::Exporter, raw.export, &mut err);
    if let Some(span) = router_span {
        err(
            span,
            "router[1]".into(),
            "at most one [[router]] is allowed".into(),
        );
    }

    for (key, addr) in [
        ("ingest.otlp_http", &raw.ingest.otlp_http),
        ("ingest.otlp_grpc", &raw.ingest.otlp_grpc),
    ] {
        if let Some(a) = addr
            && a.get_ref().parse::<SocketAddr>().is_err()
        {
            err(
                a.span(),
                key.into(),
                format!("{:?} is not an address like 127.0.0.1:4318", a.get_ref()),
            );
        }
    }
    let api_listen = match &raw.api {
        None => None,
        Some(api) => match api.listen.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                err(
                    api.listen.span(),
                    "api.listen".into(),
                    format!(
                        "{:?} is not an address like 127.0.0.1:9464",
                        api.listen.get_ref()
                    ),
                );
                None
            }
        },
    };
    for (key, tls) in [
        ("ingest.tls", raw.ingest.tls.as_ref()),
        ("api.tls", raw.api.as_ref().and_then(|a| a.tls.as_ref())),
    ] {
        if let Some(t) = tls {
            for (part, path) in [("cert", &t.cert), ("key", &t.key)] {
                if !path.is_file() {
                    err(
                        0..0,
                        format!("{key}.{part}"),
                        format!("{} not found (a PEM file)", path.display()),
                    );
                }
            }
        }
    }
    let max_spans = *raw.batch.max_spans.get_ref();
    if !(1..=65_536).contains(&max_spans) {
        err(
            raw.batch.max_spans.span(),
            "batch.max_spans".into(),
            format!("must be 1..=65536, got {max_spans}"),
        );
    }
    let shards = match &raw.engine.shards {
        None => None,
        Some(s) => match s.get_ref() {
            ShardCount::Named(n) if n == "auto" => None,
            ShardCount::Count(n) if (1..=MAX_SHARDS as i64).contains(n) => Some(*n as usize),
            other => {
                let got = match other {
                    ShardCount::Count(n) => n.to_string(),
                    ShardCount::Named(n) => format!("{n:?}"),
                };
                err(
                    s.span(),
                    "engine.shards".into(),
                    format!("must be \"auto\" or 1..={MAX_SHARDS}, got {got}"),
                );
                None
            }
        },
    };
    let hold = hold_settings(&raw.traces, &mut err);
    let wal = raw.wal.as_ref().and_then(|w| wal_settings(w, &mut err));
    if exports.is_empty() && !stages.is_empty() {
        tracing::debug!("{file}: no [[export]]: processed spans are discarded");
    }

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Pipeline {
        file: file.to_string(),
        // An empty token (e.g. `${TOKEN:-}` with TOKEN unset) means none.
        ingest: IngestConfig {
            token: raw.ingest.token.clone().filter(|t| !t.is_empty()),
            ..raw.ingest
        },
        api_listen,
        admin_token: raw
            .api
            .as_ref()
            .and_then(|a| a.admin_token.clone())
            .filter(|t| !t.is_empty()),
        api_tls: raw.api.as_ref().and_then(|a| a.tls.clone()),
        batch_max_spans: max_spans,
        batch_max_wait_ms: raw.batch.max_wait_ms,
        shards,
        dead_letter_path: raw.dead_letter.path,
        hold,
        wal,
        stages,
        evaluators,
        router: routers.pop(),
        exports,
    })
}

/// `[traces]` as settings; bad values are reported through `err`.
fn hold_settings(
    raw: &TracesConfig,
    err: &mut impl FnMut(std::ops::Range<usize>, String, String),
) -> HoldSettings {
    let mut settings = HoldSettings::default();
    if let Some(v) = &raw.wait {
        duration(
            v.get_ref(),
            v.span(),
            "traces.wait",
            &mut settings.wait,
            err,
        );
    }
    if let Some(v) = &raw.after_root {
        duration(
            v.get_ref(),
            v.span(),
            "traces.after_root",
            &mut settings.after_root,
            err,
        );
    }
    if let Some(m) = &raw.max_spans {
        if *m.get_ref() == 0 {
            err(
                m.span(),
                "traces.max_spans".into(),
                "must be at least 1".into(),
            );
        }
        settings.max_spans = *m.get_ref();
    }
    if let Some(keys) = &raw.join_on {
        settings.join_on = keys.clone();
    }
    if let Some(keys) = &raw.stitch_attributes {
        settings.stitch_attributes = keys.clone();
    }
    if let Some(on) = raw.stitch_links {
        settings.stitch_links = on;
    }
    settings
}

/// `[wal]` as settings; bad values are reported through `err`.
fn wal_settings(
    raw: &Spanned<WalConfig>,
    err: &mut impl FnMut(std::ops::Range<usize>, String, String),
) -> Option<crate::wal::WalSettings> {
    use crate::wal::{Fsync, WalSettings};
    let w = raw.get_ref();
    let Some(dir) = &w.dir else {
        err(
            raw.span(),
            "wal.dir".into(),
            "required: the folder of the log (e.g. \"/var/lib/plume/wal\")".into(),
        );
        return None;
    };
    let mut s = WalSettings::new(dir.clone());
    match w.fsync.as_deref() {
        None | Some("always") => {}
        Some("never") => s.fsync = Fsync::Never,
        Some(period) => {
            let mut every = std::time::Duration::ZERO;
            duration(period, raw.span(), "wal.fsync", &mut every, err);
            if !every.is_zero() {
                s.fsync = Fsync::Every(every);
            }
        }
    }
    if let Some(b) = w.segment_bytes {
        if b < 4096 {
            err(
                raw.span(),
                "wal.segment_bytes".into(),
                format!("must be at least 4096, got {b}"),
            );
        }
        s.segment_bytes = b;
    }
    if let Some(b) = w.max_bytes {
        s.max_bytes = b;
    }
    if s.max_bytes < 2 * s.segment_bytes {
        err(
            raw.span(),
            "wal.max_bytes".into(),
            format!(
                "must be at least two segments ({} bytes with segment_bytes = {})",
                2 * s.segment_bytes,
                s.segment_bytes
            ),
        );
    }
    if let Some(p) = w.when_full {
        s.when_full = p;
    }
    Some(s)
}

/// Parses a duration setting into `into`; a bad value is reported through `err`.
fn duration(
    text: &str,
    span: std::ops::Range<usize>,
    key: &str,
    into: &mut std::time::Duration,
    err: &mut (impl FnMut(std::ops::Range<usize>, String, String) + ?Sized),
) {
    match humantime::parse_duration(text) {
        Ok(d) => *into = d,
        Err(e) => err(
            span,
            key.to_string(),
            format!("{text:?} is not a duration like \"5s\" or \"250ms\": {e}"),
        ),
    }
}

/// `breaker = {...}` as settings; bad values are reported through `err`.
fn breaker_settings(
    raw: Option<&Spanned<BreakerConfig>>,
    kind: PluginKind,
    key: &str,
    err: &mut dyn FnMut(std::ops::Range<usize>, String, String),
) -> BreakerSettings {
    let mut s = BreakerSettings::default();
    let Some(raw) = raw else { return s };
    let b = raw.get_ref();
    if let Some(n) = b.max_failures {
        s.max_failures = n;
    }
    if let Some(p) = b.policy {
        if p == BreakerPolicy::Stop && kind != PluginKind::Processor {
            err(
                raw.span(),
                format!("{key}.breaker.policy"),
                "stop applies to [[stage]] processors only (their spans go to the dead-letter file)"
                    .into(),
            );
        }
        s.policy = p;
    }
    for (name, value, into) in [
        ("window", &b.window, &mut s.window),
        ("cooldown", &b.cooldown, &mut s.cooldown),
    ] {
        if let Some(v) = value {
            duration(v, raw.span(), &format!("{key}.breaker.{name}"), into, err);
        }
    }
    s
}

/// `delivery = {...}` as settings; bad values are reported through `err`.
fn delivery_settings(
    raw: &Spanned<DeliveryConfig>,
    key: &str,
    err: &mut dyn FnMut(std::ops::Range<usize>, String, String),
) -> DeliverySettings {
    let mut s = DeliverySettings::default();
    let d = raw.get_ref();
    if let Some(q) = d.queue {
        if q == 0 {
            err(
                raw.span(),
                format!("{key}.delivery.queue"),
                "must be at least 1".into(),
            );
        }
        s.queue = q.max(1);
    }
    if let Some(w) = d.when_full {
        s.when_full = w;
    }
    for (name, value, into) in [
        (
            "initial_backoff",
            &d.initial_backoff,
            &mut s.initial_backoff,
        ),
        ("max_backoff", &d.max_backoff, &mut s.max_backoff),
        ("max_elapsed", &d.max_elapsed, &mut s.max_elapsed),
        ("timeout", &d.timeout, &mut s.timeout),
        ("drain_timeout", &d.drain_timeout, &mut s.drain_timeout),
    ] {
        if let Some(v) = value {
            duration(v, raw.span(), &format!("{key}.delivery.{name}"), into, err);
        }
    }
    if s.initial_backoff.is_zero() || s.timeout.is_zero() {
        err(
            raw.span(),
            format!("{key}.delivery"),
            "initial_backoff and timeout must be more than zero".into(),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn empty_tokens_mean_no_token() {
        let p = parse(
            "p.toml",
            "[ingest]\ntoken = \"${T:-}\"\n[api]\nlisten = \"127.0.0.1:1\"\nadmin_token = \"\"\n",
            no_env,
        )
        .unwrap();
        assert_eq!((p.ingest.token, p.admin_token), (None, None));
    }

    #[test]
    fn shards_are_auto_or_a_count() {
        let shards = |v: &str| parse("p.toml", &format!("[engine]\nshards = {v}\n"), no_env);
        assert_eq!(shards("3").unwrap().shards, Some(3));
        // No processors (none in this file): one thread, whatever was asked.
        assert_eq!(shards("3").unwrap().shard_count(), 1);
        let auto = shards("\"auto\"").unwrap();
        assert_eq!(auto.shards, None);
        assert!((1..=AUTO_MAX_SHARDS).contains(&auto.shard_count()));
        assert_eq!(parse("p.toml", "", no_env).unwrap().shards, None);
        for bad in ["0", "65", "-1", "\"many\""] {
            let e = shards(bad).unwrap_err().to_string();
            assert!(
                e.starts_with("p.toml:2: engine.shards: must be \"auto\" or 1..=64, got"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn the_embedded_default_is_valid() {
        let p = parse("<default>", DEFAULT_PIPELINE, no_env).unwrap();
        assert!(!p.exports.is_empty());
    }

    #[test]
    fn unknown_stage_key_names_key_and_line() {
        let text = "[[stage]]\nplugin = \"builtin:attributes\"\nbogus = 1\n";
        let e = parse("p.toml", text, no_env).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].line, 3);
        assert!(e.0[0].to_string().starts_with("p.toml:3:"), "{}", e);
        assert!(e.0[0].message.contains("unknown field `bogus`"), "{}", e);
    }

    #[test]
    fn wal_and_fuel_settings_are_checked() {
        let text = "[wal]\nfsync = \"sometimes\"\nmax_bytes = 100\n\n[[stage]]\nplugin = \"builtin:attributes\"\nlimits = { fuel = 0 }\n";
        let e = parse("p.toml", text, no_env).unwrap_err().to_string();
        assert!(e.contains("wal.dir: required"), "{e}");
        let text = text.replace("[wal]\n", "[wal]\ndir = \"w\"\n");
        let e = parse("p.toml", &text, no_env).unwrap_err().to_string();
        assert!(
            e.contains("wal.fsync: \"sometimes\" is not a duration"),
            "{e}"
        );
        assert!(
            e.contains("wal.max_bytes: must be at least two segments"),
            "{e}"
        );
        assert!(
            e.contains("stage[0].limits.fuel: must be more than 0"),
            "{e}"
        );
        let ok = parse(
            "p.toml",
            "[wal]\ndir = \"w\"\nfsync = \"100ms\"\nwhen_full = \"drop-oldest\"\n",
            no_env,
        )
        .unwrap();
        let wal = ok.wal.unwrap();
        assert_eq!(
            wal.fsync,
            crate::wal::Fsync::Every(std::time::Duration::from_millis(100))
        );
        assert_eq!(wal.when_full, crate::wal::WhenFull::DropOldest);
    }

    #[test]
    fn reports_every_error_at_once() {
        let text = r#"
[[stage]]
plugin = "builtin:nope"

[[stage]]
name = "a"
plugin = "builtin:attributes"
limits = { memory_mb = 0 }

[[export]]
name = "a"
plugin = "builtin:attributes"
"#;
        let e = parse("p.toml", text, no_env).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("p.toml:3: stage[0].plugin: unknown builtin"),
            "{text}"
        );
        assert!(
            text.contains("p.toml:8: stage[1].limits.memory_mb: must be 1..=4096, got 0"),
            "{text}"
        );
        assert!(
            text.contains("export[0].name: name \"a\" is already used by stage[1]"),
            "{text}"
        );
        assert!(text.contains("export[0].plugin: builtin:attributes is a processor plugin; [[export]] needs an exporter plugin"), "{text}");
    }

    #[test]
    fn substitutes_environment_and_passes_config_as_json() {
        let text =
            "[[export]]\nplugin = \"builtin:jsonl\"\nconfig = { path = \"${OUT:-out/x.jsonl}\" }\n";
        let p = parse("p.toml", text, no_env).unwrap();
        assert_eq!(p.exports[0].config_json, r#"{"path":"out/x.jsonl"}"#);
        assert_eq!(p.exports[0].name, "jsonl");
        assert_eq!(
            (p.exports[0].line, p.exports[0].key.as_str()),
            (1, "export[0]")
        );
    }
}
