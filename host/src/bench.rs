//! Synthetic GenAI spans for `plume bench` and the benchmark scripts:
//! realistic shapes (chat calls of several providers, tool calls, agent
//! spans; ~12 attributes each), deterministic for a given seed; and the
//! resident-memory reading that the load test and the chaos tests report.

use crate::span::{
    AttrValue, Attributes, Key, Span, SpanId, SpanKind, Status, StatusCode, TraceId,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const MODELS: &[(&str, &str)] = &[
    ("gpt-4o", "openai"),
    ("gpt-4o-mini", "openai"),
    ("claude-sonnet-4-5", "anthropic"),
    ("claude-haiku-4-5", "anthropic"),
    ("gemini-2.5-pro", "gcp.gemini"),
];
const TOOLS: &[&str] = &["search_docs", "get_weather", "create_ticket", "run_sql"];
const FEATURES: &[&str] = &["chat", "summarize", "triage"];

/// `n` spans in traces of 4 (agent, two chat calls, one tool call), starting
/// at `start_ns`, one trace every 50 ms of event time.
pub fn synthetic_spans(n: usize, seed: u64, start_ns: u64) -> Vec<Span> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let resource = Arc::new(Attributes(vec![
        (
            Key::from("service.name"),
            AttrValue::Str("support-agent".into()),
        ),
        (Key::from("service.version"), AttrValue::Str("1.4.2".into())),
    ]));
    let mut out = Vec::with_capacity(n);
    let mut trace_no = 0u64;
    while out.len() < n {
        let mut trace = [0u8; 16];
        rng.fill(&mut trace);
        let trace_id = TraceId(trace);
        let t0 = start_ns + trace_no * 50_000_000;
        trace_no += 1;
        let root = SpanId(rng.u64(..).to_be_bytes());
        let user = format!("user-{}", rng.u32(..500));
        let feature = FEATURES[rng.usize(..FEATURES.len())];
        let span = |span_id: SpanId,
                    name: String,
                    parent: Option<SpanId>,
                    kind: SpanKind,
                    dur_ms: u64,
                    attrs: Vec<(&str, AttrValue)>,
                    error: bool| Span {
            trace_id,
            span_id,
            parent_span_id: parent,
            trace_state: String::new(),
            name: name.into(),
            kind,
            start_time_unix_nano: t0,
            end_time_unix_nano: t0 + dur_ms * 1_000_000,
            status: if error {
                Status {
                    code: StatusCode::Error,
                    message: "rate limited".into(),
                }
            } else {
                Status::default()
            },
            attributes: Attributes(attrs.into_iter().map(|(k, v)| (Key::from(k), v)).collect()),
            events: Vec::new(),
            links: Vec::new(),
            resource: resource.clone(),
            scope: None,
            seq: 0,
        };
        let s = |v: &str| AttrValue::Str(v.into());
        out.push(span(
            root,
            "invoke_agent support".into(),
            None,
            SpanKind::Internal,
            3000,
            vec![
                ("gen_ai.operation.name", s("invoke_agent")),
                ("gen_ai.agent.name", s("support")),
                ("plume.feature", s(feature)),
                ("user.id", s(&user)),
            ],
            false,
        ));
        for _ in 0..2 {
            let (model, provider) = MODELS[rng.usize(..MODELS.len())];
            let input = rng.i64(200..8000);
            let output = rng.i64(20..1200);
            let error = rng.u32(..100) < 3;
            let id = SpanId(rng.u64(..).to_be_bytes());
            let response_id = format!("chatcmpl-{:016x}", rng.u64(..));
            out.push(span(
                id,
                format!("chat {model}"),
                Some(root),
                SpanKind::Client,
                300 + input as u64 / 4 + output as u64 * 2,
                vec![
                    ("gen_ai.operation.name", s("chat")),
                    ("gen_ai.provider.name", s(provider)),
                    ("gen_ai.request.model", s(model)),
                    ("gen_ai.response.model", s(model)),
                    ("gen_ai.response.id", s(&response_id)),
                    ("gen_ai.usage.input_tokens", AttrValue::Int(input)),
                    ("gen_ai.usage.output_tokens", AttrValue::Int(output)),
                    (
                        "gen_ai.usage.cache_read.input_tokens",
                        AttrValue::Int(input / 4),
                    ),
                    ("gen_ai.request.temperature", AttrValue::Float(0.2)),
                    (
                        "gen_ai.response.finish_reasons",
                        AttrValue::Json(
                            serde_json::value::RawValue::from_string(r#"["stop"]"#.into())
                                .expect("valid JSON"),
                        ),
                    ),
                    ("plume.feature", s(feature)),
                    ("user.id", s(&user)),
                ],
                error,
            ));
        }
        let tool = TOOLS[rng.usize(..TOOLS.len())];
        let id = SpanId(rng.u64(..).to_be_bytes());
        let call_id = format!("call_{:012x}", rng.u64(..1 << 48));
        let tool_ms = rng.u64(5..800);
        out.push(span(
            id,
            format!("execute_tool {tool}"),
            Some(root),
            SpanKind::Internal,
            tool_ms,
            vec![
                ("gen_ai.operation.name", s("execute_tool")),
                ("gen_ai.tool.name", s(tool)),
                ("gen_ai.tool.call.id", s(&call_id)),
                ("gen_ai.tool.type", s("function")),
                ("plume.feature", s(feature)),
                ("user.id", s(&user)),
            ],
            false,
        ));
    }
    out.truncate(n);
    out
}

/// CPU time this process has used (user and system, all threads), seconds;
/// Linux only, in clock ticks (1/100 s: enough for phases of seconds).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// CPU time of this process's threads over a phase, by role: a sharded
/// pipeline's head (the thread that reads and routes), shards and tail. A
/// thread of its own reads `/proc/self/task` every 20 ms, because the
/// pipeline's threads end with the phase. Linux only (empty elsewhere), in
/// clock ticks: for phases of seconds.
pub struct ThreadCpu {
    stop: Arc<AtomicBool>,
    sampler: Option<std::thread::JoinHandle<BTreeMap<u64, (String, f64)>>>,
}

/// The sampler's own thread name, left out of what it reports.
const SAMPLER: &str = "plume-cpu";

impl ThreadCpu {
    pub fn start() -> ThreadCpu {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let sampler = std::thread::Builder::new()
            .name(SAMPLER.into())
            .spawn(move || {
                // Threads that were there before the phase count from here.
                let before: BTreeMap<u64, f64> = thread_seconds()
                    .into_iter()
                    .map(|(t, _, s)| (t, s))
                    .collect();
                let mut last = BTreeMap::new();
                loop {
                    let done = stopped.load(Ordering::Relaxed);
                    for (tid, name, secs) in thread_seconds() {
                        let base = before.get(&tid).copied().unwrap_or(0.0);
                        last.insert(tid, (name, secs - base));
                    }
                    if done {
                        return last;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            })
            .ok();
        ThreadCpu { stop, sampler }
    }

    /// Seconds of CPU by role since `start`: threads named `plume-shard-N`
    /// as `shards`, `plume-tail` as `tail`, and the process's main thread
    /// (which runs the head in `plume bench`) as `head`.
    pub fn stop(self) -> BTreeMap<&'static str, f64> {
        self.stop.store(true, Ordering::Relaxed);
        let threads = self.sampler.and_then(|t| t.join().ok()).unwrap_or_default();
        let main = u64::from(std::process::id());
        let mut roles = BTreeMap::new();
        for (tid, (name, secs)) in threads {
            let role = match name.as_str() {
                n if n.starts_with("plume-shard") => "shards",
                "plume-tail" => "tail",
                _ if tid == main => "head",
                _ => continue,
            };
            *roles.entry(role).or_default() += secs;
        }
        roles
    }
}

/// Each thread of this process: id, name, CPU seconds (user and system).
fn thread_seconds() -> Vec<(u64, String, f64)> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let tid = task.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let (name, secs) = stat_cpu_seconds(&stat)?;
            Some((tid, name.to_string(), secs))
        })
        .filter(|(_, name, _)| name != SAMPLER)
        .collect()
}

/// A thread's name and CPU seconds (user and system, 10 ms ticks) from its
/// `/proc/.../stat` line.
fn stat_cpu_seconds(stat: &str) -> Option<(&str, f64)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((name, (ticks(11)? + ticks(12)?) / 100.0))
}

/// The highest resident set size of process `pid` so far, MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    status_mib(pid, "VmHWM:")
}

/// The resident set size of process `pid` now, MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    status_mib(pid, "VmRSS:")
}

fn status_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// This thread's CPU seconds, as the kernel counts them (10 ms ticks).
    fn own_cpu_seconds() -> f64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("thread stat");
        stat_cpu_seconds(&stat).expect("stat line").1
    }

    /// A shard thread's CPU is counted as the shards', even though the
    /// thread has ended before the phase does; an idle tail counts ~nothing.
    #[test]
    fn thread_cpu_by_role() {
        let cpu = ThreadCpu::start();
        let spin = |name: &str, busy: bool| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    let started = std::time::Instant::now();
                    let wall = std::time::Duration::from_millis(300);
                    if busy {
                        // Until it has had 300 ms of CPU, however busy the
                        // machine (other tests run alongside): spinning for
                        // 300 ms of wall time got 150 ms of CPU under load.
                        while own_cpu_seconds() < 0.3 && started.elapsed() < 40 * wall {
                            for i in 0..100_000u64 {
                                std::hint::black_box(i);
                            }
                        }
                    } else {
                        while started.elapsed() < wall {
                            std::thread::sleep(std::time::Duration::from_millis(10));
                        }
                    }
                })
                .unwrap()
        };
        let (shard, tail) = (spin("plume-shard-0", true), spin("plume-tail", false));
        shard.join().unwrap();
        tail.join().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let roles = cpu.stop();
        assert!(roles["shards"] >= 0.2, "{roles:?}");
        assert!(roles.get("tail").copied().unwrap_or(0.0) < 0.1, "{roles:?}");
    }
}
