//! Finish reasons: the raw values from any spelling, and their normalised
//! form (`stop`, `length`, `tool_use`, `content_filter`, `error`, `other`),
//! per section 3 of `shared/reference/genai-attributes.md`.

use plume_sdk::ValueRef;

use std::borrow::Cow;

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

/// The first of [`raw_reasons`], borrowed where it can be: every LLM span
/// needs it, while the whole list is needed only when it is written.
pub fn first_reason<'a>(values: impl Iterator<Item = ValueRef<'a>>) -> Option<Cow<'a, str>> {
    for v in values {
        let array = match v {
            ValueRef::Str(s) if s.trim_start().starts_with('[') => s,
            ValueRef::Str(s) if !s.is_empty() => return Some(Cow::Borrowed(s)),
            ValueRef::Json(j) => j,
            _ => continue,
        };
        match first_plain_string(array) {
            Some(Some(first)) => return Some(Cow::Borrowed(first)),
            Some(None) => continue,
            // Not a plain array of strings: as `raw_reasons` reads it.
            None => {
                if let Some(first) = raw_reasons(std::iter::once(v)).into_iter().next() {
                    return Some(Cow::Owned(first));
                }
            }
        }
    }
    None
}

/// For a JSON array of strings without escapes (`["stop"]`, what
/// instrumentations write): its first string, or `Some(None)` when it is
/// empty. `None` for any other JSON, which the caller parses in full.
fn first_plain_string(json: &str) -> Option<Option<&str>> {
    let b = json.as_bytes();
    let ws = |i: &mut usize| {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\n' | b'\r') {
            *i += 1;
        }
    };
    let mut i = 0;
    ws(&mut i);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    i += 1;
    ws(&mut i);
    let mut first = None;
    if b.get(i) == Some(&b']') {
        i += 1;
    } else {
        loop {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let start = i + 1;
            let len = b[start..]
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
            let end = start + len;
            if b[end] != b'"' {
                return None;
            }
            first.get_or_insert(&json[start..end]);
            i = end + 1;
            ws(&mut i);
            match b.get(i) {
                Some(b',') => {
                    i += 1;
                    ws(&mut i);
                }
                Some(b']') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    ws(&mut i);
    (i == b.len()).then_some(first)
}

/// The longest raw reason that [`normalize`] tells apart; longer ones are
/// `other`.
const LONGEST_REASON: usize = 40;

/// Normalises one raw finish reason (case and `-` / `_` do not matter).
pub fn normalize(raw: &str) -> &'static str {
    let raw = raw.trim();
    if raw.len() > LONGEST_REASON {
        return "other";
    }
    // Lowercased on the stack: this runs for every LLM span.
    let mut buf = [0u8; LONGEST_REASON];
    for (b, &c) in buf.iter_mut().zip(raw.as_bytes()) {
        *b = if c == b'-' {
            b'_'
        } else {
            c.to_ascii_lowercase()
        };
    }
    match std::str::from_utf8(&buf[..raw.len()]).unwrap_or_default() {
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
