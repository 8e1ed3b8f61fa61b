//! `plume load`: a loopback load test of the service. It starts an OTLP
//! backend in this process, starts `plume run` (optionally pinned to CPUs with
//! `taskset`) on a pipeline that receives OTLP/HTTP and exports OTLP/HTTP to
//! that backend, and drives it with synthetic GenAI spans in OTLP protobuf
//! requests:
//!
//! 1. throughput: `--clients` senders as fast as plume accepts (503s are
//!    retried), until every span has reached the backend;
//! 2. latency: the same at a fixed rate (default: half the measured maximum),
//!    each span stamped with its send time; the backend records when it
//!    arrives: the added latency is ingest, queueing, the trace hold, the
//!    pipeline and the export together.
//!
//! The pipeline is the embedded default one (`--stages default`) or none
//! (`--stages none`, the passthrough to compare with), with `[traces] wait`
//! as given (`--hold`, default the default hold; `0s` turns it off).

use crate::bench::synthetic_spans;
use crate::config::DEFAULT_PIPELINE;
use crate::span::otlp_proto::to_proto;
use crate::span::{AttrValue, Key, Span};
use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::extract::State;
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
    /// Spans/s in the latency phase (default: half the measured throughput).
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of the latency phase.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// CPUs for plume (`taskset -c`), e.g. `0`.
    #[arg(long)]
    cpus: Option<String>,
    /// Log spans before acknowledging them (`[wal]`) with this `fsync`
    /// (`always`, `never` or a period like `100ms`); default: no log.
    #[arg(long)]
    wal: Option<String>,
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
fn pipeline_text(
    stages: &str,
    hold: Option<&str>,
    wal: Option<(&str, &std::path::Path)>,
    ingest: u16,
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
        "[ingest]\notlp_http = \"127.0.0.1:{ingest}\"\n\n{hold}\n{wal}\n{entries}\n[[export]]\nname = \"backend\"\nplugin = \"builtin:otlp\"\nconfig = {{ endpoint = \"http://127.0.0.1:{backend}\" }}\n"
    ))
}

/// Requests of `batch` spans (whole traces), stamped with the send time when
/// `stamp`.
fn encode(spans: &[Span], stamp: bool) -> Vec<u8> {
    if !stamp {
        return to_proto(spans).encode_to_vec();
    }
    let now = now_ns() as i64;
    let key = Key::from(SENT);
    let stamped: Vec<Span> = spans
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.attributes.set(key.clone(), AttrValue::Int(now));
            s
        })
        .collect();
    to_proto(&stamped).encode_to_vec()
}

/// Posts one request until plume accepts it; returns the 503s met.
fn post(agent: &ureq::Agent, url: &str, body: &[u8]) -> anyhow::Result<u64> {
    let mut throttled = 0;
    loop {
        let resp = agent
            .post(url)
            .header("content-type", "application/x-protobuf")
            .send(body)?;
        match resp.status().as_u16() {
            200 => return Ok(throttled),
            503 => {
                throttled += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            s => bail!("plume answered HTTP {s}"),
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
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1e6
}

pub(super) fn load(args: &LoadArgs) -> anyhow::Result<ExitCode> {
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
    let ingest = free_port()?;
    let dir = std::env::temp_dir().join(format!("plume-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("pipeline.toml");
    let wal_dir = dir.join("wal");
    std::fs::write(
        &file,
        pipeline_text(
            &args.stages,
            args.hold.as_deref(),
            args.wal.as_deref().map(|fsync| (fsync, wal_dir.as_path())),
            ingest,
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
        .env("PLUME_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .context("cannot start plume run")?;
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", ingest)).is_err() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            bail!("plume did not listen on {ingest}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let idle_rss = peak_rss_mib(child.id());
    let result = drive(args, ingest, &received).map(|mut report| {
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

/// Peak resident memory of process `pid` so far (VmHWM), MiB; Linux only.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

fn drive(args: &LoadArgs, ingest: u16, received: &Received) -> anyhow::Result<serde_json::Value> {
    let url = format!("http://127.0.0.1:{ingest}/v1/traces");
    let batch = args.batch.max(4) / 4 * 4;
    let spans = synthetic_spans(args.spans, 7, now_ns());
    let requests: Vec<Vec<u8>> = spans.chunks(batch).map(|c| encode(c, false)).collect();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();

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
                    let Some(body) = requests.get(i) else {
                        return Ok(());
                    };
                    throttled.fetch_add(post(&agent, &url, body)?, Ordering::Relaxed);
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
    while received.spans.load(Ordering::Relaxed) < total {
        if started.elapsed() > Duration::from_secs(600) {
            bail!(
                "only {} of {total} spans reached the backend",
                received.spans.load(Ordering::Relaxed)
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let throughput = total as f64 / elapsed;

    // 2. Latency at a fixed rate.
    let rate = args.rate.unwrap_or(throughput / 2.0).max(1.0);
    let interval = Duration::from_secs_f64(batch as f64 / rate);
    let lat_spans = synthetic_spans(
        ((rate * args.seconds as f64) as usize).max(batch),
        11,
        now_ns(),
    );
    received.spans.store(0, Ordering::Relaxed);
    let begin = Instant::now();
    let mut sent = 0u64;
    for (k, chunk) in lat_spans.chunks(batch).enumerate() {
        let due = begin + interval * k as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        post(&agent, &url, &encode(chunk, true))?;
        sent += chunk.len() as u64;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.spans.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut lat =
        std::mem::take(&mut *received.latencies.lock().unwrap_or_else(|e| e.into_inner()));
    lat.sort_unstable();
    Ok(serde_json::json!({
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
            "requests_throttled_503": throttled.load(Ordering::Relaxed),
        },
        "latency": {
            "rate_spans_per_second": rate,
            "spans": lat.len(),
            "p50_ms": percentile(&lat, 0.50),
            "p99_ms": percentile(&lat, 0.99),
            "max_ms": percentile(&lat, 1.0),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_pipelines_are_valid() {
        let dir = std::path::Path::new("/tmp/wal");
        for (stages, wal) in [("default", None), ("none", Some(("100ms", dir)))] {
            let text = pipeline_text(stages, Some("0s"), wal, 1, 2).unwrap();
            let p = crate::config::parse("load.toml", &text, |_| None)
                .unwrap_or_else(|e| panic!("{stages}: {e}\n{text}"));
            assert_eq!(p.exports.len(), 1);
            assert_eq!(p.stages.is_empty(), stages == "none");
            assert_eq!(p.wal.is_some(), wal.is_some());
        }
    }
}
