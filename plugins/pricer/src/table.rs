//! Pricing tables: LiteLLM's `model_prices_and_context_window.json` read as it
//! is, and plume's TOML format; model-name matching.

use regex_lite::Regex;
use serde_json::Value as Json;
use std::collections::HashMap;

/// USD per token for each kind of token. `None` falls back as LiteLLM does:
/// cache reads and writes to the input rate, reasoning to the output rate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    pub input: f64,
    pub output: f64,
    pub cache_read: Option<f64>,
    pub cache_write: Option<f64>,
    pub reasoning: Option<f64>,
}

/// Rates that replace the base ones once the request's input (inclusive of
/// cached tokens) is above `above` tokens. Absent fields keep the base rate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Threshold {
    pub above: u64,
    pub input: Option<f64>,
    pub output: Option<f64>,
    pub cache_read: Option<f64>,
    pub cache_write: Option<f64>,
    pub reasoning: Option<f64>,
}

/// A LiteLLM `tiered_pricing` range: `start < input <= end` selects it.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    pub start: f64,
    pub end: f64,
    pub rates: Rates,
}

/// One priced model.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The name as written in the table.
    pub name: String,
    pub rates: Rates,
    /// Sorted by `above`, ascending; every crossed threshold applies in turn.
    pub thresholds: Vec<Threshold>,
    /// Whether a threshold is crossed at exactly `above` tokens (LiteLLM's
    /// rule for xAI) instead of strictly above it.
    pub threshold_inclusive: bool,
    pub ranges: Vec<Range>,
}

/// A whole table with its lookup indexes.
#[derive(Debug, Default)]
pub struct Table {
    pub entries: Vec<Entry>,
    /// Lowercase name or alias -> entry.
    names: HashMap<String, usize>,
    patterns: Vec<(Regex, usize)>,
    /// Where the table came from, for the report.
    pub source: String,
}

impl Table {
    fn index(&mut self, name: &str, entry: usize) {
        self.names.entry(name.to_ascii_lowercase()).or_insert(entry);
    }

    /// Number of priced models.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no model is priced.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry for a model name, trying in order: the provider-qualified
    /// name, the exact name, the name without provider prefixes, then without
    /// a date or version suffix, then the table's regular expressions. Case is
    /// ignored.
    pub fn lookup(&self, model: &str, provider: Option<&str>) -> Option<&Entry> {
        self.find(model, provider).map(|i| &self.entries[i])
    }

    /// Like `lookup`, returning the entry's index.
    pub fn find(&self, model: &str, provider: Option<&str>) -> Option<usize> {
        let lower = model.trim().to_ascii_lowercase();
        if lower.is_empty() {
            return None;
        }
        let mut candidates: Vec<String> = Vec::new();
        let base = strip_date(&lower);
        for name in [lower.clone(), base.clone()] {
            if let Some(prefix) = provider.and_then(provider_prefix) {
                candidates.push(format!("{prefix}/{name}"));
            }
            let mut n = name.as_str();
            candidates.push(n.to_string());
            while let Some((_, rest)) = n.split_once('/') {
                n = rest;
                candidates.push(n.to_string());
            }
        }
        for c in &candidates {
            if let Some(&i) = self.names.get(c) {
                return Some(i);
            }
        }
        self.patterns
            .iter()
            .find(|(re, _)| re.is_match(&lower) || re.is_match(model))
            .map(|(_, i)| *i)
    }
}

/// LiteLLM's key prefix for a `gen_ai.provider.name`.
fn provider_prefix(provider: &str) -> Option<&'static str> {
    Some(match provider {
        "openai" => "openai",
        "anthropic" => "anthropic",
        "gcp.gemini" => "gemini",
        "gcp.vertex_ai" | "gcp.gen_ai" => "vertex_ai",
        "aws.bedrock" => "bedrock",
        "azure.ai.openai" => "azure",
        "azure.ai.inference" => "azure_ai",
        "mistral_ai" => "mistral",
        "deepseek" => "deepseek",
        "x_ai" => "xai",
        "groq" => "groq",
        "cohere" => "cohere",
        "perplexity" => "perplexity",
        "moonshot_ai" => "moonshot",
        _ => return None,
    })
}

/// Removes a trailing date or version: `-2024-08-06`, `-20250514`,
/// `@20250514`, `-v1:0`, `-latest`.
fn strip_date(name: &str) -> String {
    let b = name.as_bytes();
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let n = b.len();
    if n > 11
        && b[n - 11] == b'-'
        && b[n - 6] == b'-'
        && b[n - 3] == b'-'
        && digits(&b[n - 10..n - 6])
        && digits(&b[n - 5..n - 3])
        && digits(&b[n - 2..])
    {
        return name[..n - 11].to_string();
    }
    if n > 9 && (b[n - 9] == b'-' || b[n - 9] == b'@') && digits(&b[n - 8..]) {
        return name[..n - 9].to_string();
    }
    if let Some(pos) = name.rfind("-v") {
        let rest = &name[pos + 2..];
        if rest.split(':').all(|p| digits(p.as_bytes())) {
            return strip_date(&name[..pos]);
        }
    }
    name.strip_suffix("-latest")
        .map(str::to_string)
        .unwrap_or_else(|| name.to_string())
}

fn num(v: Option<&Json>) -> Option<f64> {
    v.and_then(Json::as_f64)
}

/// Parses a threshold key such as `input_cost_per_token_above_200k_tokens`.
fn threshold_key(key: &str) -> Option<(&'static str, u64)> {
    const FIELDS: [(&str, &str); 5] = [
        ("input_cost_per_token_above_", "input"),
        ("output_cost_per_token_above_", "output"),
        ("cache_read_input_token_cost_above_", "cache_read"),
        ("cache_creation_input_token_cost_above_", "cache_write"),
        ("output_cost_per_reasoning_token_above_", "reasoning"),
    ];
    for (prefix, field) in FIELDS {
        if let Some(rest) = key.strip_prefix(prefix) {
            // Service-tier variants (`_priority`, `_flex`, `_batches`) and TTL
            // variants (`_above_1hr`) do not end in `_tokens`: not thresholds.
            let amount = rest.strip_suffix("_tokens")?;
            let (digits, scale) = match amount.strip_suffix('k') {
                Some(d) => (d, 1000),
                None => (amount, 1),
            };
            return digits.parse::<u64>().ok().map(|n| (field, n * scale));
        }
    }
    None
}

/// Reads LiteLLM's price file as it is. Entries without token prices (image,
/// audio-only, `sample_spec`) are skipped; `alias_of` entries point at their
/// target.
pub fn from_litellm(text: &str, source: &str) -> Result<Table, String> {
    let root: serde_json::Map<String, Json> = serde_json::from_str(text)
        .map_err(|e| format!("{source}: not a LiteLLM price file: {e}"))?;
    let mut table = Table {
        source: source.to_string(),
        ..Table::default()
    };
    let mut aliases = Vec::new();
    for (name, e) in &root {
        if name == "sample_spec" {
            continue;
        }
        let Some(obj) = e.as_object() else { continue };
        if let Some(target) = obj.get("alias_of").and_then(Json::as_str) {
            aliases.push((name.clone(), target.to_string()));
            continue;
        }
        let input = num(obj.get("input_cost_per_token"));
        let output = num(obj.get("output_cost_per_token"));
        let ranges: Vec<Range> = obj
            .get("tiered_pricing")
            .and_then(Json::as_array)
            .map(|tiers| {
                tiers
                    .iter()
                    .filter_map(|t| {
                        let r = t.get("range")?.as_array()?;
                        Some(Range {
                            start: r.first()?.as_f64()?,
                            end: r.get(1)?.as_f64()?,
                            rates: Rates {
                                input: num(t.get("input_cost_per_token")).unwrap_or(0.0),
                                output: num(t.get("output_cost_per_token")).unwrap_or(0.0),
                                cache_read: num(t.get("cache_read_input_token_cost")),
                                cache_write: num(t.get("cache_creation_input_token_cost")),
                                reasoning: num(t.get("output_cost_per_reasoning_token")),
                            },
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        if input.is_none() && output.is_none() && ranges.is_empty() {
            continue;
        }
        let mut thresholds: Vec<Threshold> = Vec::new();
        for (key, v) in obj {
            let (Some((field, above)), Some(rate)) = (threshold_key(key), v.as_f64()) else {
                continue;
            };
            let t = match thresholds.iter_mut().find(|t| t.above == above) {
                Some(t) => t,
                None => {
                    thresholds.push(Threshold {
                        above,
                        ..Threshold::default()
                    });
                    thresholds.last_mut().expect("just pushed")
                }
            };
            match field {
                "input" => t.input = Some(rate),
                "output" => t.output = Some(rate),
                "cache_read" => t.cache_read = Some(rate),
                "cache_write" => t.cache_write = Some(rate),
                _ => t.reasoning = Some(rate),
            }
        }
        thresholds.sort_by_key(|t| t.above);
        let provider = obj
            .get("litellm_provider")
            .and_then(Json::as_str)
            .unwrap_or_default();
        table.entries.push(Entry {
            name: name.clone(),
            rates: Rates {
                input: input.unwrap_or(0.0),
                output: output.unwrap_or(0.0),
                cache_read: num(obj.get("cache_read_input_token_cost")),
                cache_write: num(obj.get("cache_creation_input_token_cost")),
                reasoning: num(obj.get("output_cost_per_reasoning_token")),
            },
            thresholds,
            threshold_inclusive: provider == "xai",
            ranges,
        });
        let i = table.entries.len() - 1;
        table.index(name, i);
    }
    for (alias, target) in aliases {
        if let Some(&i) = table.names.get(&target.to_ascii_lowercase()) {
            table.index(&alias, i);
        }
    }
    Ok(table)
}

/// plume's TOML pricing format (prices in USD per million tokens):
///
/// ```toml
/// [meta]
/// source = "where the prices come from"
/// date = "2026-11-25"
///
/// [models."gpt-4o"]
/// input = 2.5            # USD per million input tokens (required)
/// output = 10.0          # USD per million output tokens (required)
/// cache_read = 1.25      # optional; default: the input price
/// cache_write = 3.75     # optional; default: the input price
/// reasoning = 10.0       # optional; default: the output price
/// aliases = ["gpt-4o-latest"]          # other names for it
/// match = "^gpt-4o-audio"              # a regular expression on the model name
/// threshold_inclusive = false          # true: a tier applies at exactly `above_input_tokens`
///
/// [[models."gemini-2.5-pro".tiers]]    # the whole request is priced at the
/// above_input_tokens = 200000          # highest tier whose threshold its input
/// input = 2.5                          # (cached tokens included) is above;
/// output = 15.0                        # absent prices keep the base price
/// ```
pub fn from_plume_toml(text: &str, source: &str) -> Result<Table, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        meta: toml::Table,
        #[serde(default)]
        models: std::collections::BTreeMap<String, Model>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Model {
        input: f64,
        output: f64,
        cache_read: Option<f64>,
        cache_write: Option<f64>,
        reasoning: Option<f64>,
        #[serde(default)]
        aliases: Vec<String>,
        #[serde(rename = "match")]
        pattern: Option<String>,
        #[serde(default)]
        threshold_inclusive: bool,
        #[serde(default)]
        tiers: Vec<Tier>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Tier {
        above_input_tokens: u64,
        input: Option<f64>,
        output: Option<f64>,
        cache_read: Option<f64>,
        cache_write: Option<f64>,
        reasoning: Option<f64>,
    }
    let file: File = toml::from_str(text).map_err(|e| format!("{source}: {e}"))?;
    let per_token = |v: f64| v / 1e6;
    let mut table = Table {
        source: source.to_string(),
        ..Table::default()
    };
    for (name, m) in file.models {
        let mut thresholds: Vec<Threshold> = m
            .tiers
            .iter()
            .map(|t| Threshold {
                above: t.above_input_tokens,
                input: t.input.map(per_token),
                output: t.output.map(per_token),
                cache_read: t.cache_read.map(per_token),
                cache_write: t.cache_write.map(per_token),
                reasoning: t.reasoning.map(per_token),
            })
            .collect();
        thresholds.sort_by_key(|t| t.above);
        table.entries.push(Entry {
            name: name.clone(),
            rates: Rates {
                input: per_token(m.input),
                output: per_token(m.output),
                cache_read: m.cache_read.map(per_token),
                cache_write: m.cache_write.map(per_token),
                reasoning: m.reasoning.map(per_token),
            },
            thresholds,
            threshold_inclusive: m.threshold_inclusive,
            ranges: Vec::new(),
        });
        let i = table.entries.len() - 1;
        table.index(&name, i);
        for a in &m.aliases {
            table.index(a, i);
        }
        if let Some(p) = &m.pattern {
            let re =
                Regex::new(p).map_err(|e| format!("{source}: models.\"{name}\".match: {e}"))?;
            table.patterns.push((re, i));
        }
    }
    if let Some(src) = file.meta.get("source").and_then(|v| v.as_str()) {
        table.source = format!("{source} ({src})");
    }
    Ok(table)
}

/// Reads a table, choosing the format from its content.
pub fn parse(text: &str, source: &str) -> Result<Table, String> {
    if text.trim_start().starts_with('{') {
        from_litellm(text, source)
    } else {
        from_plume_toml(text, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_dates_and_versions() {
        assert_eq!(strip_date("gpt-4o-2024-08-06"), "gpt-4o");
        assert_eq!(strip_date("claude-sonnet-4-20250514"), "claude-sonnet-4");
        assert_eq!(
            strip_date("claude-3-5-sonnet@20240620"),
            "claude-3-5-sonnet"
        );
        assert_eq!(
            strip_date("anthropic.claude-sonnet-4-5-20250929-v1:0"),
            "anthropic.claude-sonnet-4-5"
        );
        assert_eq!(strip_date("mistral-large-latest"), "mistral-large");
        assert_eq!(strip_date("gpt-4o"), "gpt-4o");
    }

    #[test]
    fn threshold_keys() {
        assert_eq!(
            threshold_key("input_cost_per_token_above_200k_tokens"),
            Some(("input", 200_000))
        );
        assert_eq!(
            threshold_key("output_cost_per_token_above_128_tokens"),
            Some(("output", 128))
        );
        assert_eq!(
            threshold_key("input_cost_per_token_above_272k_tokens_priority"),
            None
        );
        assert_eq!(
            threshold_key("cache_creation_input_token_cost_above_1hr"),
            None
        );
    }

    #[test]
    fn matching_handles_prefixes_dates_case_and_patterns() {
        let t = from_plume_toml(
            r#"
[models."gpt-4o"]
input = 2.5
output = 10
[models."gemini/gemini-2.5-pro"]
input = 1.25
output = 10
[models."claude-sonnet-4"]
input = 3
output = 15
aliases = ["sonnet"]
[models."house-model"]
input = 1
output = 1
match = "^acme-.*-instruct$"
"#,
            "t",
        )
        .unwrap();
        let name = |m: &str, p: Option<&str>| t.lookup(m, p).map(|e| e.name.as_str());
        assert_eq!(name("openai/gpt-4o", None), Some("gpt-4o"));
        assert_eq!(name("GPT-4o-2024-08-06", None), Some("gpt-4o"));
        assert_eq!(
            name("gemini-2.5-pro", Some("gcp.gemini")),
            Some("gemini/gemini-2.5-pro")
        );
        assert_eq!(
            name("claude-sonnet-4-20250514", None),
            Some("claude-sonnet-4")
        );
        assert_eq!(name("Sonnet", None), Some("claude-sonnet-4"));
        assert_eq!(name("acme-7b-instruct", None), Some("house-model"));
        assert_eq!(name("llama-9", None), None);
        assert_eq!(
            t.lookup("gpt-4o", None).unwrap().rates.input,
            2.5e-6,
            "per million, divided exactly"
        );
    }
}
