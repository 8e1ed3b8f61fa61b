//! GenAI enrichment end to end on spans recorded from the real libraries
//! (`tests/data/genai`, recorded by `record/record.py` against a local stub):
//! the same calls written by different instrumentations normalise to the same
//! attributes, are priced, and failures are classified.

use plume::config;
use plume::engine::batcher::Batcher;
use plume::engine::{Engine, EngineOptions};
use plume::ingest::jsonl::read_to_end;
use plume::plugin::runtime::Runtime;
use serde_json::Value;
use std::path::Path;

/// Runs a fixture through the embedded default pipeline's stages.
fn enrich(fixture: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let text = config::DEFAULT_PIPELINE.replace(
        r#"config = { path = "-" }"#,
        &format!("config = {{ path = {:?} }}", out.display().to_string()),
    );
    let p = config::parse("default", &text, |_| None).unwrap();
    let rt = Runtime::new().unwrap();
    let mut engine =
        Engine::build(&p, &rt, &EngineOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/genai")
        .join(fixture);
    let mut batcher = Batcher::new(256);
    let read = read_to_end(
        fixture,
        std::io::BufReader::new(std::fs::File::open(path).unwrap()),
        |s| batcher.push(s, |b| engine.process(b)),
    )
    .unwrap();
    assert_eq!(read.failed, 0);
    if let Some(b) = batcher.take() {
        engine.process(b);
    }
    engine.flush();
    std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn llm_spans(spans: &[Value]) -> Vec<&Value> {
    spans
        .iter()
        .filter(|s| s["attributes"]["gen_ai.operation.name"] == "chat")
        .collect()
}

/// What a convention-independent view of one call looks like.
fn call(s: &Value) -> (String, i64, i64, i64, i64, String) {
    let a = &s["attributes"];
    (
        a["gen_ai.response.model"]
            .as_str()
            .or(a["gen_ai.request.model"].as_str())
            .unwrap_or_default()
            .to_string(),
        a["gen_ai.usage.input_tokens"].as_i64().unwrap_or(-1),
        a["gen_ai.usage.output_tokens"].as_i64().unwrap_or(-1),
        a["gen_ai.usage.cache_read.input_tokens"]
            .as_i64()
            .unwrap_or(0),
        a["gen_ai.usage.cache_write.input_tokens"]
            .as_i64()
            .unwrap_or(0),
        a["plume.finish_reason"]
            .as_str()
            .unwrap_or("none")
            .to_string(),
    )
}

#[test]
fn anthropic_calls_normalise_the_same_in_every_instrumentation() {
    // claude-sonnet-4-5 rates (LiteLLM 1.110.2): input 3e-6, cache read 3e-7,
    // cache write 3.75e-6, output 1.5e-5 USD per token. Input 3484 includes
    // 2048 cache reads and 1024 cache writes.
    let want_cost = 412.0 * 3e-6 + 2048.0 * 3e-7 + 1024.0 * 3.75e-6 + 187.0 * 1.5e-5;
    for fixture in [
        "anthropic_sdk_only.jsonl",
        "anthropic_sdk_openinference.jsonl",
        "anthropic_sdk_openllmetry.jsonl",
    ] {
        let spans = enrich(fixture);
        let calls = llm_spans(&spans);
        assert!(calls.len() >= 3, "{fixture}");
        for s in &calls {
            let a = &s["attributes"];
            assert_eq!(a["gen_ai.provider.name"], "anthropic", "{fixture}");
            let (_, input, output, cache_read, cache_write, finish) = call(s);
            if s["status"]["code"] == "error" {
                assert_eq!(a["plume.error.category"], "rate_limit", "{fixture}: {s}");
                continue;
            }
            match finish.as_str() {
                "stop" => {
                    assert_eq!(
                        (input, output, cache_read, cache_write),
                        (3484, 187, 2048, 1024),
                        "{fixture}"
                    );
                    let cost = a["gen_ai.usage.cost"].as_f64().unwrap();
                    assert!(
                        (cost - want_cost).abs() < 1e-12,
                        "{fixture}: {cost} vs {want_cost}"
                    );
                    assert_eq!(a["plume.price.model"], "claude-sonnet-4-5-20250929");
                }
                "length" => {
                    assert_eq!(a["plume.truncated"], true);
                    assert_eq!((input, output), (380, 64));
                }
                other => panic!("{fixture}: unexpected finish reason {other}"),
            }
        }
    }
}

#[test]
fn openai_calls_normalise_the_same_in_every_instrumentation() {
    let views: Vec<Vec<(String, i64, i64, i64, i64, String)>> = [
        "openllmetry_openai_chat.jsonl",
        "openinference_openai_chat.jsonl",
    ]
    .iter()
    .map(|f| {
        llm_spans(&enrich(f))
            .into_iter()
            .filter(|s| s["status"]["code"] != "error")
            .map(call)
            .collect()
    })
    .collect();
    assert_eq!(views[0].len(), 3);
    assert_eq!(views[0], views[1], "OpenLLMetry and OpenInference agree");
    let finishes: Vec<&str> = views[0].iter().map(|c| c.5.as_str()).collect();
    assert_eq!(finishes, ["tool_use", "stop", "length"]);
    // The official instrumentation records no cached tokens: same calls otherwise.
    let v2: Vec<_> = llm_spans(&enrich("openai_v2_chat.jsonl"))
        .into_iter()
        .filter(|s| s["status"]["code"] != "error")
        .map(call)
        .collect();
    let strip = |v: &Vec<(String, i64, i64, i64, i64, String)>| {
        v.iter()
            .map(|c| (c.0.clone(), c.1, c.2, c.5.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&v2), strip(&views[0]));
}

#[test]
fn openai_failures_and_tools_are_classified() {
    for fixture in [
        "openai_v2_chat.jsonl",
        "openllmetry_openai_chat.jsonl",
        "openinference_openai_chat.jsonl",
    ] {
        let spans = enrich(fixture);
        let categories: Vec<&str> = llm_spans(&spans)
            .iter()
            .filter(|s| s["status"]["code"] == "error")
            .map(|s| {
                s["attributes"]["plume.error.category"]
                    .as_str()
                    .unwrap_or("none")
            })
            .collect();
        assert_eq!(categories, ["rate_limit", "context_length"], "{fixture}");
        for s in llm_spans(&spans) {
            assert!(
                s["attributes"]["gen_ai.request.model"].is_string(),
                "{fixture}: every call has its model: {s}"
            );
        }
    }
    let spans = enrich("openai_v2_chat.jsonl");
    let tools: Vec<&Value> = spans
        .iter()
        .filter(|s| s["attributes"]["gen_ai.operation.name"] == "execute_tool")
        .collect();
    assert_eq!(tools.len(), 2);
    assert_eq!(tools[0]["attributes"]["plume.tool.status"], "timeout");
    assert_eq!(tools[0]["attributes"]["plume.error.category"], "timeout");
    assert_eq!(tools[0]["attributes"]["plume.retry.count"], 0);
    assert_eq!(tools[1]["attributes"]["plume.tool.status"], "success");
    assert_eq!(
        tools[1]["attributes"]["plume.retry.count"], 1,
        "the same call again under the same parent is a retry"
    );
    // The reasoning model's call was cut off.
    let o4 = llm_spans(&spans)
        .into_iter()
        .find(|s| s["attributes"]["gen_ai.request.model"] == "o4-mini")
        .unwrap();
    assert_eq!(o4["attributes"]["plume.truncated"], true);
    assert!(
        o4["attributes"]["plume.tokens_per_second"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

/// The default pipeline's ledger sums the priced calls (one instrumentation
/// here, so every priced span is a distinct call).
#[test]
fn ledger_totals_equal_the_priced_calls() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let report = dir.path().join("report.json");
    let pipeline =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/genai/openai_v2_chat.jsonl");
    let default = dir.path().join("default.toml");
    std::fs::write(
        &default,
        config::DEFAULT_PIPELINE.replace(r#"jsonl = ["-"]"#, "jsonl = []"),
    )
    .unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_plume"))
        .arg("replay")
        .arg(&default)
        .arg("--input")
        .arg(&pipeline)
        .arg("--output")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let spans: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sum: f64 = spans
        .iter()
        .filter_map(|s| s["attributes"]["gen_ai.usage.cost"].as_f64())
        .sum();
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let total = report["cost"]["total_usd"].as_f64().unwrap();
    assert!(sum > 0.0);
    assert!((total - sum).abs() < 1e-12, "{total} vs {sum}");
    let by_model: f64 = report["cost"]["by_model"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!((by_model - sum).abs() < 1e-12);
    assert!(!report["latency"].as_array().unwrap().is_empty());
    // 4 of the 11 spans failed: the error SLO pages, and the router keeps one alert.
    assert_eq!(report["slo"][0]["state"], "page");
    let alerts = report["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["rule"], "slo_burn");
    assert!(alerts[0]["first_seen"].as_str().unwrap().ends_with('Z'));
    assert!(
        alerts[0]["runbook"]
            .as_str()
            .unwrap()
            .starts_with("examples/runbooks/")
    );
}

/// The Vercel AI SDK 7 (recorded with `vercel/record.mjs`): its `chat` spans
/// normalise to the same calls the Python instrumentations recorded against
/// the same stub answers; the tool loop's two calls are priced, and the
/// 429 is a rate limit.
#[test]
fn vercel_ai_sdk_calls_normalise_like_the_others() {
    let spans = enrich("vercel/ai_sdk_tool_loop.jsonl");
    let chats: Vec<(i64, i64, i64, String)> = llm_spans(&spans)
        .into_iter()
        .map(|s| {
            let c = call(s);
            assert_eq!(s["attributes"]["gen_ai.provider.name"], "openai");
            assert!(s["attributes"]["gen_ai.usage.cost"].as_f64().unwrap() > 0.0);
            (c.1, c.2, c.3, c.5)
        })
        .collect();
    let python: Vec<(i64, i64, i64, String)> = llm_spans(&enrich("openllmetry_openai_chat.jsonl"))
        .into_iter()
        .take(2)
        .map(call)
        .map(|c| (c.1, c.2, c.3, c.5))
        .collect();
    assert_eq!(chats, python);
    let tool = spans
        .iter()
        .find(|s| s["attributes"]["gen_ai.operation.name"] == "execute_tool")
        .unwrap();
    assert_eq!(tool["attributes"]["plume.tool.status"], "success");
    let failed = enrich("vercel/ai_sdk_error.jsonl");
    let chat = llm_spans(&failed)[0];
    assert_eq!(chat["attributes"]["plume.error.category"], "rate_limit");
}
