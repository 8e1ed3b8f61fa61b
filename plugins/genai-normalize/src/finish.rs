//! Finish reasons: the raw values from any spelling, and their normalised
//! form (`stop`, `length`, `tool_use`, `content_filter`, `error`, `other`),
//! per section 3 of `shared/reference/genai-attributes.md`.

use plume_sdk::ValueRef;

/// The raw reasons from the first key that has any (arrays or single values).
pub fn raw_reasons<'a>(values: impl Iterator<Item = ValueRef<'a>>) -> Vec<String> {
    for v in values {
        let reasons: Vec<String> = match v {
            ValueRef::Str(s) if s.trim_start().starts_with('[') => {
                serde_json::from_str(s).unwrap_or_default()
            }
            ValueRef::Str(s) if !s.is_empty() => vec![s.to_string()],
            ValueRef::Json(j) => serde_json::from_str::<Vec<serde_json::Value>>(j)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => continue,
        };
        if !reasons.is_empty() {
            return reasons;
        }
    }
    Vec::new()
}

/// Normalises one raw finish reason.
pub fn normalize(raw: &str) -> &'static str {
    let r = raw.trim().to_ascii_lowercase().replace('-', "_");
    match r.as_str() {
        // OpenAI, OTel, Mistral, Anthropic, Bedrock, Gemini, Cohere, Titan, AI21, HF.
        "stop" | "end_turn" | "stop_sequence" | "completed" | "complete" | "finish"
        | "endoftext" | "eos" | "eos_token" => "stop",
        "length"
        | "max_tokens"
        | "max_output_tokens"
        | "model_length"
        | "model_context_window_exceeded" => "length",
        "tool_calls" | "tool_call" | "function_call" | "tool_use" => "tool_use",
        "content_filter"
        | "content_filtered"
        | "refusal"
        | "guardrail_intervened"
        | "safety"
        | "recitation"
        | "language"
        | "blocklist"
        | "prohibited_content"
        | "spii"
        | "image_safety"
        | "image_prohibited_content"
        | "image_recitation"
        | "image_other"
        | "model_armor"
        | "error_toxic" => "content_filter",
        "error"
        | "failed"
        | "malformed_function_call"
        | "unexpected_tool_call"
        | "too_many_tool_calls"
        | "missing_thought_signature"
        | "malformed_response"
        | "malformed_model_output"
        | "malformed_tool_use" => "error",
        _ => "other",
    }
}
