//! `plume load`: a loopback load test of the service. It starts an OTLP
//! backend in this process, starts `plume run` (optionally pinned to CPUs with
//! `taskset`) on a pipeline that takes spans over OTLP/HTTP, OTLP/gRPC or a
//! followed JSONL file (`--protocol`) and exports OTLP/HTTP to that backend,
//! and drives it with synthetic GenAI spans:
//!
//! 1. throughput: `--clients` senders as fast as plume accepts (503s and
//!    UNAVAILABLE are retried; file writes are never refused), until every
//!    span has reached the backend;
//! 2. latency: the same at fixed rates (50% and 90% of the measured maximum,
//!    or `--rate`), each span stamped with its send time; the backend records
//!    when it arrives: the added latency is ingest, queueing, the trace hold,
//!    the pipeline and the export together.
//!
//! With `--cpus`, plume is pinned to those CPUs and this process (senders
//! and backend) to the others, when there are others, so that what is
//! measured is plume's own time; the report's `generator_cpus` says where
//! the generator ran (`null`: on plume's CPUs too).
//!
//! The pipeline is the embedded default one (`--stages default`) or none
//! (`--stages none`, the passthrough to compare with), with `[traces] wait`
//! as given (`--hold`, default the default hold; `0s` turns it off).

use crate::bench::{peak_rss_mib, rss_mib, synthetic_spans};
use crate::config::DEFAULT_PIPELINE;
use crate::span::otlp_proto::to_proto;
use crate::span::{AttrValue, Key, Span};
use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::extract::State;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Arguments of `plume load`.
#[derive(clap::Args)]
pub struct LoadArgs {
    /// `default` (the embedded default pipeline's stages and evaluators) or
    /// `none` (receive and export only).
    #[arg(long, default_value = "default")]
    stages: String,
    /// `[traces] wait` for the run ("0s": no hold); default: the default hold.
    #[arg(long)]
    hold: Option<String>,
    /// Spans in the throughput phase.
    #[arg(long, default_value_t = 200_000)]
    spans: usize,
    /// Spans per request (whole traces of 4).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Concurrent senders.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Spans/s of the one latency phase (default: two phases, at 50% and 90%
    /// of the measured throughput).
    #[arg(long)]
    rate: Option<f64>,
    /// How spans reach plume.
    #[arg(long, value_enum, default_value = "http")]
    protocol: Protocol,
    /// Seconds of each latency phase.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// CPUs for plume (`taskset -c`), e.g. `0`. The load generator and the
    /// backend then run on the other CPUs, if there are any.
    #[arg(long)]
    cpus: Option<String>,
    /// Log spans before acknowledging them (`[wal]`) with this `fsync`
    /// (`always`, `never` or a period like `100ms`); default: no log.
    #[arg(long)]
    wal: Option<String>,
}

/// How the load reaches plume.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/HTTP protobuf requests.
    Http,
    /// OTLP/gRPC `Export` calls.
    Grpc,
    /// Flat span lines appended to a file plume follows.
    Jsonl,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Http => "otlp-http",
            Protocol::Grpc => "otlp-grpc",
            Protocol::Jsonl => "jsonl",
        }
    }
}

/// What the backend saw.
#[derive(Default)]
struct Received {
    spans: AtomicU64,
    /// Arrival minus send time of stamped spans, ns.
    latencies: Mutex<Vec<u64>>,
}

const SENT: &str = "bench.sent_unix_nano";

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

async fn receive(State(r): State<Arc<Received>>, body: Bytes) -> &'static str {
    let now = now_ns();
    let Ok(req) =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(body)
    else {
        return "";
    };
    let mut n = 0;
    let mut lat = Vec::new();
    for rs in &req.resource_spans {
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                n += 1;
                let sent = s
                    .attributes
                    .iter()
                    .find(|kv| kv.key == SENT)
                    .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                        opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(i) => {
                            Some(*i as u64)
                        }
                        _ => None,
                    });
                if let Some(sent) = sent {
                    lat.push(now.saturating_sub(sent));
                }
            }
        }
    }
    r.spans.fetch_add(n, Ordering::Relaxed);
    if !lat.is_empty() {
        r.latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(lat);
    }
    ""
}

/// The pipeline text: the default pipeline's entries (or none), OTLP/HTTP in,
/// OTLP/HTTP out to the backend.
/// Where `plume run` takes the load: the `[ingest]` and `[api]` sections.
struct Ingest {
    /// The `[ingest]` keys.
    keys: String,
    /// The API's port (readiness: plume listens once it is ready).
    api: u16,
}

fn pipeline_text(
    stages: &str,
    hold: Option<&str>,
    wal: Option<(&str, &std::path::Path)>,
    ingest: &Ingest,
    backend: u16,
) -> anyhow::Result<String> {
    let entries = match stages {
        "default" => {
            let start = DEFAULT_PIPELINE
                .find("[[stage]]")
                .context("the default pipeline has stages")?;
            let end = DEFAULT_PIPELINE
                .find("[[export]]")
                .context("the default pipeline has an export")?;
            DEFAULT_PIPELINE[start..end].to_string()
        }
        "none" => String::new(),
        other => bail!("--stages must be default or none, got {other:?}"),
    };
    let hold = hold
        .map(|w| format!("[traces]\nwait = \"{w}\"\n"))
        .unwrap_or_default();
    let wal = wal
        .map(|(fsync, dir)| {
            format!(
                "[wal]\ndir = {:?}\nfsync = {fsync:?}\n",
                dir.display().to_string()
            )
        })
        .unwrap_or_default();
    Ok(format!(
        "[ingest]\n{}\n[api]\nlisten = \"127.0.0.1:{}\"\n\n{hold}\n{wal}\n{entries}\n[[export]]\nname = \"backend\"\nplugin = \"builtin:otlp\"\nconfig = {{ endpoint = \"http://127.0.0.1:{backend}\" }}\n",
        ingest.keys, ingest.api
    ))
}

/// The spans, stamped with the send time when `stamp`.
fn stamped(spans: &[Span], stamp: bool) -> std::borrow::Cow<'_, [Span]> {
    if !stamp {
        return spans.into();
    }
    let now = now_ns() as i64;
    let key = Key::from(SENT);
    spans
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.attributes.set(key.clone(), AttrValue::Int(now));
            s
        })
        .collect::<Vec<_>>()
        .into()
}

/// A request ready to send.
enum Payload {
    /// OTLP protobuf bytes (HTTP) or flat JSONL lines (file).
    Bytes(Vec<u8>),
    /// An OTLP request (gRPC).
    Request(ExportTraceServiceRequest),
}

/// The load's side of the connection to plume.
enum Client {
    Http {
        agent: ureq::Agent,
        url: String,
    },
    Grpc {
        rt: tokio::runtime::Runtime,
        client: TraceServiceClient<tonic::transport::Channel>,
    },
    Jsonl {
        file: Mutex<std::fs::File>,
    },
}

impl Client {
    fn prepare(&self, spans: &[Span], stamp: bool) -> Payload {
        let spans = stamped(spans, stamp);
        match self {
            Client::Http { .. } => Payload::Bytes(to_proto(spans.iter()).encode_to_vec()),
            Client::Grpc { .. } => Payload::Request(to_proto(spans.iter())),
            Client::Jsonl { .. } => {
                let mut out = Vec::with_capacity(spans.len() * 600);
                for s in spans.iter() {
                    crate::span::flat::write(&mut out, s);
                    out.push(b'\n');
                }
                Payload::Bytes(out)
            }
        }
    }

    /// Sends one request until plume takes it; returns the refusals met
    /// (503 / UNAVAILABLE), each retried after 5 ms.
    fn send(&self, payload: &Payload) -> anyhow::Result<u64> {
        let mut throttled = 0;
        loop {
            let busy = match (self, payload) {
                (Client::Http { agent, url }, Payload::Bytes(body)) => {
                    let resp = agent
                        .post(url)
                        .header("content-type", "application/x-protobuf")
                        .send(body.as_slice())?;
                    match resp.status().as_u16() {
                        200 => false,
                        503 => true,
                        s => bail!("plume answered HTTP {s}"),
                    }
                }
                (Client::Grpc { rt, client }, Payload::Request(req)) => {
                    let mut client = client.clone();
                    match rt.block_on(client.export(req.clone())) {
                        Ok(_) => false,
                        Err(s) if s.code() == tonic::Code::Unavailable => true,
                        Err(s) => bail!("plume answered gRPC {:?}: {}", s.code(), s.message()),
                    }
                }
                (Client::Jsonl { file }, Payload::Bytes(lines)) => {
                    use std::io::Write;
                    file.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .write_all(lines)?;
                    false
                }
                _ => bail!("payload prepared for another protocol"),
            };
            if !busy {
                return Ok(throttled);
            }
            throttled += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i] as f64 / 1e6
}

pub(super) fn load(args: &LoadArgs) -> anyhow::Result<ExitCode> {
    // Before any thread starts, so that every one of them inherits it.
    let generator_cpus = args.cpus.as_deref().and_then(pin_generator);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let received = Arc::new(Received::default());
    let backend_port = {
        let received = received.clone();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let port = listener.local_addr()?.port();
            let app = axum::Router::new()
                .route("/v1/traces", axum::routing::post(receive))
                .with_state(received);
            tokio::spawn(async move { axum::serve(listener, app).await });
            anyhow::Ok(port)
        })?
    };
    let dir = std::env::temp_dir().join(format!("plume-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let spans_file = dir.join("spans.jsonl");
    let ingest = Ingest {
        keys: match args.protocol {
            Protocol::Http => format!("otlp_http = \"127.0.0.1:{port}\""),
            Protocol::Grpc => format!("otlp_grpc = \"127.0.0.1:{port}\""),
            Protocol::Jsonl => {
                std::fs::File::create(&spans_file)?;
                format!("jsonl = [{:?}]", spans_file.display().to_string())
            }
        },
        api: free_port()?,
    };
    let file = dir.join("pipeline.toml");
    let wal_dir = dir.join("wal");
    std::fs::write(
        &file,
        pipeline_text(
            &args.stages,
            args.hold.as_deref(),
            args.wal.as_deref().map(|fsync| (fsync, wal_dir.as_path())),
            &ingest,
            backend_port,
        )?,
    )?;
    let exe = std::env::current_exe()?;
    let mut cmd = match &args.cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let mut child = cmd
        .arg("run")
        .arg(&file)
        // The service logs warnings only, unless PLUME_LOG asks for more.
        .env(
            "PLUME_LOG",
            std::env::var("PLUME_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .spawn()
        .context("cannot start plume run")?;
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", ingest.api)).is_err() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            bail!("plume did not listen on {}", ingest.api);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let client = match args.protocol {
        Protocol::Http => Client::Http {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into(),
            url: format!("http://127.0.0.1:{port}/v1/traces"),
        },
        Protocol::Grpc => {
            let grpc = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let client = grpc.block_on(TraceServiceClient::connect(format!(
                "http://127.0.0.1:{port}"
            )))?;
            Client::Grpc { rt: grpc, client }
        }
        Protocol::Jsonl => Client::Jsonl {
            file: Mutex::new(std::fs::OpenOptions::new().append(true).open(&spans_file)?),
        },
    };
    let idle_rss = peak_rss_mib(child.id());
    let result = drive(args, &client, &received, child.id()).map(|mut report| {
        report["generator_cpus"] = serde_json::json!(generator_cpus);
        // taskset execs plume: the child's pid is plume's.
        report["rss_mib"] = serde_json::json!({
            "at_start": idle_rss,
            "peak": peak_rss_mib(child.id()),
        });
        report
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}

/// Waits until the backend has `n` spans (at most `limit`).
fn wait_for(received: &Received, n: u64, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while received.spans.load(Ordering::Relaxed) < n {
        if started.elapsed() > limit {
            bail!(
                "only {} of {n} spans reached the backend",
                received.spans.load(Ordering::Relaxed)
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn drive(
    args: &LoadArgs,
    client: &Client,
    received: &Received,
    plume_pid: u32,
) -> anyhow::Result<serde_json::Value> {
    let batch = args.batch.max(4) / 4 * 4;
    let spans = synthetic_spans(args.spans, 7, now_ns());
    let requests: Vec<Payload> = spans
        .chunks(batch)
        .map(|c| client.prepare(c, false))
        .collect();

    // 1. Throughput: as fast as plume takes them, until all are exported.
    let next = AtomicU64::new(0);
    let throttled = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let mut senders = Vec::new();
        for _ in 0..args.clients.max(1) {
            senders.push(s.spawn(|| -> anyhow::Result<()> {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(payload) = requests.get(i) else {
                        return Ok(());
                    };
                    throttled.fetch_add(client.send(payload)?, Ordering::Relaxed);
                }
            }));
        }
        for t in senders {
            t.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
        }
        Ok(())
    })?;
    let sent_in = started.elapsed();
    let total = spans.len() as u64;
    wait_for(received, total, Duration::from_secs(600))?;
    let elapsed = started.elapsed().as_secs_f64();
    let throughput = total as f64 / elapsed;

    // 2. Latency at fixed rates, one sender on schedule.
    let rates: Vec<(Option<f64>, f64)> = match args.rate {
        Some(r) => vec![(None, r)],
        None => vec![(Some(0.5), throughput * 0.5), (Some(0.9), throughput * 0.9)],
    };
    let mut phases = Vec::new();
    for (fraction, rate) in rates {
        let rate = rate.max(1.0);
        let interval = Duration::from_secs_f64(batch as f64 / rate);
        let lat_spans = synthetic_spans(
            ((rate * args.seconds as f64) as usize).max(batch),
            11,
            now_ns(),
        );
        received.spans.store(0, Ordering::Relaxed);
        received
            .latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let begin = Instant::now();
        let mut sent = 0u64;
        let mut refused = 0u64;
        for (k, chunk) in lat_spans.chunks(batch).enumerate() {
            let due = begin + interval * k as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            refused += client.send(&client.prepare(chunk, true))?;
            sent += chunk.len() as u64;
        }
        let behind = begin.elapsed().as_secs_f64() - args.seconds as f64;
        // Resident memory after `seconds` at this rate: the steady state.
        let rss = rss_mib(plume_pid);
        wait_for(received, sent, Duration::from_secs(60))?;
        let mut lat =
            std::mem::take(&mut *received.latencies.lock().unwrap_or_else(|e| e.into_inner()));
        lat.sort_unstable();
        phases.push(serde_json::json!({
            "fraction_of_max": fraction,
            "rate_spans_per_second": rate,
            "spans": lat.len(),
            "refused": refused,
            "sender_behind_schedule_s": behind.max(0.0),
            "p50_ms": percentile(&lat, 0.50),
            "p99_ms": percentile(&lat, 0.99),
            "max_ms": percentile(&lat, 1.0),
            "rss_mib": rss,
        }));
    }
    Ok(serde_json::json!({
        "protocol": args.protocol.name(),
        "stages": args.stages,
        "hold": args.hold.clone().unwrap_or_else(|| "default".into()),
        "wal_fsync": args.wal,
        "cpus": args.cpus,
        "spans_per_request": batch,
        "clients": args.clients,
        "throughput": {
            "spans": total,
            "seconds": elapsed,
            "spans_per_second": throughput,
            "seconds_to_accept": sent_in.as_secs_f64(),
            "requests_throttled": throttled.load(Ordering::Relaxed),
        },
        "latency": phases,
    }))
}

/// The CPUs of a `taskset -c` list such as `0,2-3`; `None` if malformed.
fn cpu_list(text: &str) -> Option<std::collections::BTreeSet<u32>> {
    let mut cpus = std::collections::BTreeSet::new();
    for part in text.trim().split(',') {
        let (from, to): (u32, u32) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
            None => {
                let n = part.trim().parse().ok()?;
                (n, n)
            }
        };
        if from > to {
            return None;
        }
        cpus.extend(from..=to);
    }
    Some(cpus)
}

/// Pins this process (the load generator and the backend) to the online
/// CPUs that plume is not given, so that they neither take plume's CPU time
/// nor preempt its threads; returns that list. `None` (nothing pinned) when
/// plume has every CPU: then the two share them, and the report says so.
fn pin_generator(plume_cpus: &str) -> Option<String> {
    let plume = cpu_list(plume_cpus)?;
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
    let others: Vec<String> = (cpu_list(&online)?.difference(&plume))
        .map(u32::to_string)
        .collect();
    if others.is_empty() {
        return None;
    }
    let list = others.join(",");
    let pinned = Command::new("taskset")
        .args(["-p", "-c", &list, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    pinned.then_some(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_read_as_taskset_writes_them() {
        let set = |v: &[u32]| v.iter().copied().collect();
        assert_eq!(cpu_list("0"), Some(set(&[0])));
        assert_eq!(cpu_list("0-1\n"), Some(set(&[0, 1])));
        assert_eq!(cpu_list("0,2-4,7"), Some(set(&[0, 2, 3, 4, 7])));
        assert_eq!(cpu_list("3-1"), None);
        assert_eq!(cpu_list("a"), None);
        assert_eq!(cpu_list(""), None);
    }

    #[test]
    fn the_load_pipelines_are_valid() {
        let dir = std::path::Path::new("/tmp/wal");
        for (stages, wal) in [("default", None), ("none", Some(("100ms", dir)))] {
            let ingest = Ingest {
                keys: "otlp_grpc = \"127.0.0.1:1\"".into(),
                api: 3,
            };
            let text = pipeline_text(stages, Some("0s"), wal, &ingest, 2).unwrap();
            let p = crate::config::parse("load.toml", &text, |_| None)
                .unwrap_or_else(|e| panic!("{stages}: {e}\n{text}"));
            assert_eq!(p.exports.len(), 1);
            assert_eq!(p.stages.is_empty(), stages == "none");
            assert_eq!(p.wal.is_some(), wal.is_some());
        }
    }
}
