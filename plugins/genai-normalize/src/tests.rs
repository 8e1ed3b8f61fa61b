//! Each convention's spelling of the same call normalises to the same
//! attributes.

use super::*;
use plume_sdk::types::Value;
use std::collections::BTreeMap;

/// Runs the plugin's row logic over one span given as (key, value) pairs plus
/// a duration, and returns the attributes it writes.
fn normalize(attrs: &[(&str, Value)], duration_ns: i64, config: Config) -> BTreeMap<String, Value> {
    let (manifest, state) = build(config);
    let row: Vec<ValueRef<'_>> = manifest
        .reads
        .iter()
        .map(|f| match f {
            Field::Attribute(k) => attrs
                .iter()
                .find(|(a, _)| a == k)
                .map(|(_, v)| v.as_ref())
                .unwrap_or(ValueRef::Absent),
            Field::Duration => ValueRef::Int(duration_ns),
            Field::ScopeName => ValueRef::Str("test.scope"),
            _ => ValueRef::Absent,
        })
        .collect();
    let present: Vec<Cell<'_>> = row
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_present())
        .map(|(read, &value)| Cell {
            read: read as u32,
            value,
        })
        .collect();
    let mut edits = Edits::new();
    normalize_row(&state, 0, &row, &present, &mut edits);
    edits
        .to_vec()
        .unwrap()
        .into_iter()
        .map(|(_, slot, value)| (manifest.writes[slot as usize].clone(), value.to_value()))
        .collect()
}

fn s(v: &str) -> Value {
    Value::Str(v.into())
}

fn i(v: i64) -> Value {
    Value::Int(v)
}

/// The same Anthropic call (1000 input of which 800 cache read and 100 cache
/// write, 500 output, stopped at max tokens, 2 s) in each spelling.
#[test]
fn every_convention_normalizes_to_the_same_call() {
    let cases: Vec<(&str, Vec<(&str, Value)>)> = vec![
        (
            "otel current",
            vec![
                ("gen_ai.operation.name", s("chat")),
                ("gen_ai.provider.name", s("anthropic")),
                ("gen_ai.request.model", s("claude-sonnet-4-5")),
                ("gen_ai.usage.input_tokens", i(1000)),
                ("gen_ai.usage.output_tokens", i(500)),
                ("gen_ai.usage.cache_read.input_tokens", i(800)),
                ("gen_ai.usage.cache_write.input_tokens", i(100)),
                (
                    "gen_ai.response.finish_reasons",
                    Value::Json(r#"["max_tokens"]"#.into()),
                ),
            ],
        ),
        (
            "otel deprecated",
            vec![
                ("gen_ai.system", s("anthropic")),
                ("gen_ai.request.model", s("claude-sonnet-4-5")),
                ("gen_ai.usage.prompt_tokens", i(1000)),
                ("gen_ai.usage.completion_tokens", i(500)),
                ("gen_ai.usage.cache_read_input_tokens", i(800)),
                ("gen_ai.usage.cache_creation_input_tokens", i(100)),
                ("gen_ai.response.finish_reason", s("max_tokens")),
                ("llm.request.type", s("chat")),
            ],
        ),
        (
            "openinference",
            vec![
                ("openinference.span.kind", s("LLM")),
                ("llm.provider", s("anthropic")),
                ("llm.request.model_name", s("claude-sonnet-4-5")),
                ("llm.token_count.prompt", i(1000)),
                ("llm.token_count.completion", i(500)),
                ("llm.token_count.prompt_details.cache_read", i(800)),
                ("llm.token_count.prompt_details.cache_write", i(100)),
                ("llm.finish_reason", s("max_tokens")),
            ],
        ),
        (
            "openllmetry",
            vec![
                ("gen_ai.system", s("Anthropic")),
                ("llm.request.type", s("chat")),
                ("gen_ai.request.model", s("claude-sonnet-4-5")),
                ("gen_ai.usage.input_tokens", i(1000)),
                ("gen_ai.usage.output_tokens", i(500)),
                ("gen_ai.usage.cache_read.input_tokens", i(800)),
                ("gen_ai.usage.cache_creation.input_tokens", i(100)),
                ("gen_ai.usage.total_tokens", i(1500)),
                (
                    "gen_ai.response.finish_reasons",
                    Value::Json(r#"["length"]"#.into()),
                ),
            ],
        ),
        (
            "langfuse exclusive buckets",
            vec![
                ("langfuse.observation.type", s("generation")),
                ("gen_ai.system", s("anthropic")),
                ("langfuse.observation.model.name", s("claude-sonnet-4-5")),
                (
                    "langfuse.observation.usage_details",
                    s(
                        r#"{"input":100,"output":500,"input_cached_tokens":800,"input_cache_creation":100}"#,
                    ),
                ),
                ("gen_ai.response.finish_reason", s("max_tokens")),
            ],
        ),
        (
            "vercel ai sdk",
            vec![
                ("ai.operationId", s("ai.generateText.doGenerate")),
                ("ai.model.provider", s("anthropic.messages")),
                ("ai.model.id", s("claude-sonnet-4-5")),
                ("ai.usage.inputTokens", i(1000)),
                ("ai.usage.outputTokens", i(500)),
                ("ai.usage.cachedInputTokens", i(800)),
                ("gen_ai.usage.cache_creation.input_tokens", i(100)),
                ("ai.response.finishReason", s("length")),
            ],
        ),
        (
            "raw exclusive under the inclusive name, detected by total",
            vec![
                ("gen_ai.operation.name", s("chat")),
                ("gen_ai.system", s("anthropic")),
                ("gen_ai.request.model", s("claude-sonnet-4-5")),
                ("gen_ai.usage.input_tokens", i(100)),
                ("gen_ai.usage.output_tokens", i(500)),
                ("gen_ai.usage.cache_read.input_tokens", i(800)),
                ("gen_ai.usage.cache_write.input_tokens", i(100)),
                ("gen_ai.usage.total_tokens", i(1500)),
                ("anthropic.message.stop_reason", s("max_tokens")),
            ],
        ),
    ];
    let keys = [
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_write.input_tokens",
        "plume.finish_reason",
        "plume.truncated",
        "plume.tokens_per_second",
    ];
    let expected: Vec<Value> = vec![
        s("chat"),
        s("anthropic"),
        s("claude-sonnet-4-5"),
        i(1000),
        i(500),
        i(800),
        i(100),
        s("length"),
        Value::Boolean(true),
        Value::Float(250.0),
    ];
    for (name, attrs) in cases {
        let out = normalize(&attrs, 2_000_000_000, Config::default());
        for (k, want) in keys.iter().zip(&expected) {
            // What the span already had under the current name counts too.
            let got = out
                .get(*k)
                .cloned()
                .or_else(|| attrs.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone()));
            assert_eq!(got.as_ref(), Some(want), "{name}: {k}");
        }
    }
}

#[test]
fn exclusive_scopes_are_configurable() {
    let attrs = vec![
        ("gen_ai.usage.input_tokens", i(200)),
        ("gen_ai.usage.cache_read.input_tokens", i(800)),
    ];
    let out = normalize(&attrs, 0, Config::default());
    assert_eq!(
        out.get("gen_ai.usage.input_tokens"),
        None,
        "inclusive by default: left alone"
    );
    let config = Config {
        exclusive_input_scopes: vec!["test.".into()],
        overwrite: false,
    };
    let out = normalize(&attrs, 0, config);
    assert_eq!(out.get("gen_ai.usage.input_tokens"), Some(&i(1000)));
    assert_eq!(out.get("plume.usage.input_tokens_exclusive"), Some(&i(200)));
}

#[test]
fn finish_reasons_of_each_provider() {
    for (raw, want) in [
        ("stop", "stop"),
        ("end_turn", "stop"),
        ("STOP", "stop"),
        ("COMPLETE", "stop"),
        ("tool_calls", "tool_use"),
        ("tool-calls", "tool_use"),
        ("tool_use", "tool_use"),
        ("function_call", "tool_use"),
        ("max_tokens", "length"),
        ("MAX_TOKENS", "length"),
        ("model_context_window_exceeded", "length"),
        ("refusal", "content_filter"),
        ("SAFETY", "content_filter"),
        ("guardrail_intervened", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "error"),
        ("pause_turn", "other"),
        ("compaction", "other"),
        ("", "other"),
        ("  Tool-Use ", "tool_use"),
        (&"stop".repeat(20), "other"),
        ("stöp", "other"),
    ] {
        assert_eq!(finish::normalize(raw), want, "{raw}");
    }
}

/// The first reason, read without a JSON parser where the array is plain,
/// is the first of what the parser reads, whatever the array holds.
#[test]
fn first_reason_is_the_first_of_the_raw_reasons() {
    for json in [
        r#"["stop"]"#,
        r#" [ "length" , "stop" ] "#,
        "[]",
        r#"["", "x"]"#,
        r#"["a,b","c"]"#,
        r#"["say \"hi\"","x"]"#,
        r#"["tool_calls", 3, null]"#,
        r#"[3, "late"]"#,
        r#"["unterminated]"#,
        r#"["x"] trailing"#,
        "[\"tab\there\"]",
    ] {
        for value in [ValueRef::Json(json), ValueRef::Str(json)] {
            let values = [value, ValueRef::Str("fallback")];
            let raw = finish::raw_reasons(values.into_iter());
            let first = finish::first_reason(values.into_iter());
            assert_eq!(
                first.as_deref(),
                raw.first().map(String::as_str),
                "{value:?}"
            );
        }
    }
}

/// `canonical_index` is a canonical's discriminant: `ALIASES` must list them
/// in the enum's order.
#[test]
fn aliases_are_in_canonical_order() {
    for (i, (c, _)) in ALIASES.iter().enumerate() {
        assert_eq!(canonical_index(*c), i, "{c:?}");
    }
}

#[test]
fn tool_and_agent_spellings() {
    let out = normalize(
        &[
            ("openinference.span.kind", s("TOOL")),
            ("tool.name", s("search")),
            ("tool_call.id", s("c1")),
        ],
        0,
        Config::default(),
    );
    assert_eq!(out.get("gen_ai.operation.name"), Some(&s("execute_tool")));
    assert_eq!(out.get("gen_ai.tool.name"), Some(&s("search")));
    assert_eq!(out.get("gen_ai.tool.call.id"), Some(&s("c1")));
    let out = normalize(
        &[
            ("ai.toolCall.name", s("get_weather")),
            ("ai.telemetry.metadata.userId", s("u1")),
        ],
        0,
        Config::default(),
    );
    assert_eq!(out.get("gen_ai.operation.name"), Some(&s("execute_tool")));
    assert_eq!(out.get("user.id"), Some(&s("u1")));
    assert_eq!(
        normalize(
            &[("gen_ai.system", s("az.ai.openai"))],
            0,
            Config::default()
        )
        .get("gen_ai.provider.name"),
        Some(&s("azure.ai.openai"))
    );
}
