//! One model call, one cost, end to end on spans recorded from the real
//! libraries (`tests/data/genai`): whatever the instrumentations, the arrival
//! order and the batching, the default pipeline's ledger total equals the sum
//! of the distinct calls' list prices, and exactly one span per call says
//! `plume.cost.counted = true`.

use plume::config;
use plume::engine::batcher::Batcher;
use plume::engine::{Engine, EngineOptions, HoldClock};
use plume::ingest::jsonl::read_to_end;
use plume::plugin::runtime::Runtime;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;

/// USD per token from the embedded table (LiteLLM 1.110.2).
mod price {
    pub const GPT_4O: (f64, f64, f64) = (2.5e-6, 10e-6, 1.25e-6); // input, output, cache read
    pub const SONNET_4_5: (f64, f64, f64, f64) = (3e-6, 15e-6, 0.3e-6, 3.75e-6); // + cache write
}

/// An OpenAI call: inclusive prompt tokens, cached among them, completion.
fn gpt_4o(prompt: f64, cached: f64, completion: f64) -> f64 {
    let (i, o, c) = price::GPT_4O;
    (prompt - cached) * i + cached * c + completion * o
}

/// An Anthropic call: uncached input, cache read, cache write, output.
fn sonnet(input: f64, read: f64, write: f64, output: f64) -> f64 {
    let (i, o, r, w) = price::SONNET_4_5;
    input * i + read * r + write * w + output * o
}

struct Case {
    file: &'static str,
    /// The distinct calls' costs, from the stub's answers and the list prices.
    calls: Vec<f64>,
}

fn cases() -> Vec<Case> {
    let anthropic = || {
        vec![
            sonnet(412.0, 2048.0, 1024.0, 187.0),
            sonnet(380.0, 0.0, 0.0, 64.0),
        ]
    };
    vec![
        // The SDK traces itself and the instrumentation's LLM span is its parent.
        Case {
            file: "anthropic_sdk_openinference.jsonl",
            calls: anthropic(),
        },
        // Sibling spans under the app root, sharing the response id.
        Case {
            file: "anthropic_sdk_openllmetry.jsonl",
            calls: anthropic(),
        },
        // No app root: the two spans of each call are in unrelated traces.
        Case {
            file: "anthropic_sdk_openllmetry_noroot.jsonl",
            calls: anthropic(),
        },
        // One instrumentation: every priced span is a call.
        Case {
            file: "anthropic_sdk_only.jsonl",
            calls: anthropic(),
        },
        // Two genuine calls (max_tokens, then end_turn), each recorded twice.
        Case {
            file: "anthropic_sdk_openinference_retry.jsonl",
            calls: vec![
                sonnet(412.0, 2048.0, 1024.0, 256.0),
                sonnet(412.0, 2048.0, 1024.0, 187.0),
            ],
        },
        // openai-v2 reports no cached tokens: both calls at the full input rate.
        Case {
            file: "openai_genuine_retry.jsonl",
            calls: vec![gpt_4o(1610.0, 0.0, 64.0), gpt_4o(1610.0, 0.0, 24.0)],
        },
        // LangChain's LLM span and the OpenAI span are siblings, nested in time.
        Case {
            file: "langchain_openinference.jsonl",
            calls: vec![gpt_4o(1610.0, 1408.0, 24.0)],
        },
        Case {
            file: "langchain_openllmetry.jsonl",
            calls: vec![gpt_4o(1610.0, 1408.0, 24.0)],
        },
        // invoke_agent restates the summed usage of its two calls.
        Case {
            file: "vercel/ai_sdk_tool_loop.jsonl",
            calls: vec![gpt_4o(1450.0, 1024.0, 38.0), gpt_4o(1610.0, 1408.0, 24.0)],
        },
    ]
}

struct Outcome {
    spans: Vec<Value>,
    report: Value,
    stats: plume::engine::stats::PipelineStats,
}

/// The default pipeline (stdout export replaced by a file) over `lines`,
/// in batches of `batch` spans, in event time as `replay` runs it.
fn run(rt: &Runtime, lines: &[&str], batch: usize, traces: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let text = format!(
        "{traces}\n{}",
        config::DEFAULT_PIPELINE.replace(
            r#"config = { path = "-" }"#,
            &format!("config = {{ path = {:?} }}", out.display().to_string()),
        )
    );
    let p = config::parse("default", &text, |_| None).unwrap_or_else(|e| panic!("{e}"));
    let options = EngineOptions {
        clock: HoldClock::Event,
        ..EngineOptions::default()
    };
    let mut engine = Engine::build(&p, rt, &options).unwrap_or_else(|e| panic!("{e}"));
    let input = lines.join("\n");
    let mut batcher = Batcher::new(batch);
    let read = read_to_end("input", input.as_bytes(), |s| {
        batcher.push(s, |b| engine.process(b))
    })
    .unwrap();
    assert_eq!(read.failed, 0);
    if let Some(b) = batcher.take() {
        engine.process(b);
    }
    engine.flush();
    let report = engine.report();
    let stats = engine.stats();
    // The export writes alerts as lines too; keep the spans.
    let spans = std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v.get("span_id").is_some())
        .collect();
    Outcome {
        spans,
        report,
        stats,
    }
}

fn fixture(file: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/genai")
            .join(file),
    )
    .unwrap()
}

/// Checks one outcome against the case: total to 1e-9 USD, one counted span
/// per call, every other priced span pointing at a counted one.
fn check(case: &Case, o: &Outcome, label: &str) {
    let expected: f64 = case.calls.iter().sum();
    let total = o.report["cost"]["total_usd"].as_f64().unwrap();
    assert!(
        (total - expected).abs() < 1e-9,
        "{label}: ledger {total} != {expected} (the distinct calls)"
    );
    let counted: Vec<&Value> = o
        .spans
        .iter()
        .filter(|s| s["attributes"]["plume.cost.counted"] == true)
        .collect();
    assert_eq!(counted.len(), case.calls.len(), "{label}: counted spans");
    let counted_sum: f64 = counted
        .iter()
        .map(|s| s["attributes"]["gen_ai.usage.cost"].as_f64().unwrap())
        .sum();
    assert!(
        (counted_sum - expected).abs() < 1e-9,
        "{label}: counted spans' costs"
    );
    let counted_ids: HashSet<&str> = counted
        .iter()
        .map(|s| s["span_id"].as_str().unwrap())
        .collect();
    for s in &o.spans {
        let a = &s["attributes"];
        if a["gen_ai.usage.cost"].is_number() || a["gen_ai.usage.input_tokens"].is_number() {
            assert!(
                a["plume.cost.counted"].is_boolean(),
                "{label}: unmarked {s}"
            );
        }
        if a["plume.cost.counted"] == false {
            for id in a["plume.cost.duplicate_of"].as_str().unwrap().split(',') {
                assert!(
                    counted_ids.contains(id),
                    "{label}: {id} is not a counted span"
                );
            }
        }
    }
}

/// Arrival orders: as recorded, reversed, and shuffled by a few seeds;
/// batch sizes from one span to all of them.
#[test]
fn every_call_is_counted_once_whatever_the_order_and_batching() {
    let rt = Runtime::new().unwrap();
    for case in cases() {
        let text = fixture(case.file);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut orders: Vec<(String, Vec<&str>)> = vec![("recorded".into(), lines.clone())];
        orders.push(("reversed".into(), lines.iter().rev().copied().collect()));
        for seed in 1..=3 {
            let mut shuffled = lines.clone();
            fastrand::Rng::with_seed(seed).shuffle(&mut shuffled);
            orders.push((format!("shuffle {seed}"), shuffled));
        }
        for (k, (name, order)) in orders.iter().enumerate() {
            let batch = [1, 2, 256][k % 3];
            let label = format!("{} ({name}, batches of {batch})", case.file);
            check(&case, &run(&rt, order, batch, ""), &label);
        }
    }
}

/// The restating agent span keeps its calls' summed cost for display, is not
/// counted, and names the calls; no price of its own remains.
#[test]
fn an_agent_span_restating_its_calls_is_not_a_call() {
    let rt = Runtime::new().unwrap();
    let text = fixture("vercel/ai_sdk_tool_loop.jsonl");
    let lines: Vec<&str> = text.lines().collect();
    let o = run(&rt, &lines, 256, "");
    let agent = o
        .spans
        .iter()
        .find(|s| s["attributes"]["gen_ai.operation.name"] == "invoke_agent")
        .unwrap();
    let a = &agent["attributes"];
    assert_eq!(a["plume.cost.counted"], false);
    let chats: Vec<&Value> = o
        .spans
        .iter()
        .filter(|s| s["attributes"]["gen_ai.operation.name"] == "chat")
        .collect();
    assert_eq!(chats.len(), 2);
    let ids: Vec<&str> = a["plume.cost.duplicate_of"]
        .as_str()
        .unwrap()
        .split(',')
        .collect();
    let mut chat_ids: Vec<&str> = chats
        .iter()
        .map(|s| s["span_id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    chat_ids.sort();
    assert_eq!(sorted, chat_ids);
    let sum: f64 = chats
        .iter()
        .map(|s| s["attributes"]["gen_ai.usage.cost"].as_f64().unwrap())
        .sum();
    assert!((a["gen_ai.usage.cost"].as_f64().unwrap() - sum).abs() < 1e-12);
    assert!(a["plume.price.model"].is_null() && a["plume.cost.input"].is_null());
}

/// A span resent while held (an exporter retrying) is dropped and counted;
/// with the hold off and one span per batch, the spans of each call meet in
/// no batch, and the response id still keeps each call to one cost.
#[test]
fn resent_spans_and_late_duplicates_are_not_counted_again() {
    let rt = Runtime::new().unwrap();
    let case = cases()
        .into_iter()
        .find(|c| c.file == "anthropic_sdk_openllmetry_noroot.jsonl")
        .unwrap();
    let text = fixture(case.file);
    let lines: Vec<&str> = text.lines().collect();
    let mut resent = lines.clone();
    resent.extend_from_slice(&lines[..2]);
    let o = run(&rt, &resent, 256, "");
    check(&case, &o, "resent");
    assert_eq!(o.stats.hold.duplicate_spans, 2);
    assert_eq!(o.spans.len(), lines.len());
    let o = run(&rt, &lines, 1, "[traces]\nwait = \"0s\"");
    check(&case, &o, "no hold");
}
