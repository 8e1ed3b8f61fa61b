//! The cost of one call, by LiteLLM's rules (`shared/reference/genai-attributes.md`
//! section 4a): input counts are inclusive of cached tokens; a crossed
//! threshold or a `tiered_pricing` range prices the whole request.

use crate::table::{Entry, Rates};

/// Token counts of one call. `input` includes cache reads and writes;
/// `output` includes reasoning.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
    pub reasoning: f64,
}

/// The cost and its parts, USD.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    /// Uncached input tokens.
    pub input: f64,
    /// Output tokens other than reasoning.
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
    pub reasoning: f64,
}

impl Cost {
    /// The total.
    pub fn total(&self) -> f64 {
        self.prompt() + self.completion()
    }
    /// Input side (LiteLLM's prompt cost).
    pub fn prompt(&self) -> f64 {
        self.input + self.cache_read + self.cache_write
    }
    /// Output side (LiteLLM's completion cost).
    pub fn completion(&self) -> f64 {
        self.output + self.reasoning
    }
}

/// The rates that apply to a request of `input` tokens.
pub fn rates_for(entry: &Entry, input: f64) -> Rates {
    if !entry.ranges.is_empty() {
        // The range with start < input <= end; below the first, the first;
        // above every range, the last.
        let range = entry
            .ranges
            .iter()
            .find(|r| r.start < input && input <= r.end)
            .or_else(|| entry.ranges.first().filter(|r| input <= r.start))
            .or(entry.ranges.last());
        if let Some(r) = range {
            return r.rates.clone();
        }
    }
    let mut rates = entry.rates.clone();
    for t in &entry.thresholds {
        let crossed = if entry.threshold_inclusive {
            input >= t.above as f64
        } else {
            input > t.above as f64
        };
        if crossed {
            rates.input = t.input.unwrap_or(rates.input);
            rates.output = t.output.unwrap_or(rates.output);
            rates.cache_read = t.cache_read.or(rates.cache_read);
            rates.cache_write = t.cache_write.or(rates.cache_write);
            rates.reasoning = t.reasoning.or(rates.reasoning);
        }
    }
    rates
}

/// Prices one call.
pub fn price(entry: &Entry, usage: &Usage) -> Cost {
    let r = rates_for(entry, usage.input);
    let text = (usage.input - usage.cache_read - usage.cache_write).max(0.0);
    let plain_output = (usage.output - usage.reasoning).max(0.0);
    Cost {
        input: text * r.input,
        cache_read: usage.cache_read * r.cache_read.unwrap_or(r.input),
        cache_write: usage.cache_write * r.cache_write.unwrap_or(r.input),
        output: plain_output * r.output,
        reasoning: usage.reasoning * r.reasoning.unwrap_or(r.output),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table;

    /// LiteLLM's whole price file (`.ci/run` extracts it from the litellm
    /// 1.110.2 wheel and sets `PLUME_LITELLM_PRICES`) loads as it is, and every
    /// reference case resolves to the same entry and cost with it.
    #[test]
    fn reads_litellm_full_price_file() {
        let Ok(path) = std::env::var("PLUME_LITELLM_PRICES") else {
            assert!(
                std::env::var("CI").is_err(),
                "CI must set PLUME_LITELLM_PRICES (see .ci/run)"
            );
            eprintln!("PLUME_LITELLM_PRICES not set: full-file check not run");
            return;
        };
        let table =
            table::from_litellm(&std::fs::read_to_string(path).unwrap(), "litellm").unwrap();
        // 4,877 entries, of which ~4,000 have token prices (the rest price images,
        // audio or searches, or are `alias_of` names).
        assert!(table.len() > 3500, "{} entries", table.len());
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../host/tests/data/pricing");
        let cases: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{dir}/litellm_cases.json")).unwrap(),
        )
        .unwrap();
        for c in cases["cases"].as_array().unwrap() {
            let model = c["model"].as_str().unwrap();
            let entry = table
                .lookup(model, None)
                .unwrap_or_else(|| panic!("{model}"));
            assert_eq!(entry.name, c["price_key"].as_str().unwrap(), "{model}");
            let u = &c["usage"];
            let usage = Usage {
                input: u["prompt_tokens"].as_f64().unwrap(),
                output: u["completion_tokens"].as_f64().unwrap(),
                cache_read: u["cache_read_input_tokens"].as_f64().unwrap(),
                cache_write: u["cache_creation_input_tokens"].as_f64().unwrap(),
                reasoning: u["reasoning_tokens"].as_f64().unwrap(),
            };
            let want = c["total_cost_usd"].as_f64().unwrap();
            assert!(
                (price(entry, &usage).total() - want).abs() <= 1e-9 * want.abs().max(1e-12),
                "{model}"
            );
        }
    }

    /// Every case of `host/tests/data/pricing/litellm_cases.json` was computed
    /// by running LiteLLM 1.110.2's own cost functions on entries of its price
    /// file (`litellm_models_used.json` holds those entries verbatim). plume,
    /// given the same file, must agree to a relative error of 1e-9.
    #[test]
    fn agrees_with_litellm_on_its_own_price_file() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../host/tests/data/pricing");
        let prices = std::fs::read_to_string(format!("{dir}/litellm_models_used.json")).unwrap();
        let table = table::from_litellm(&prices, "litellm").unwrap();
        let cases: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{dir}/litellm_cases.json")).unwrap(),
        )
        .unwrap();
        let cases = cases["cases"].as_array().unwrap();
        assert!(cases.len() >= 40);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1e-12);
        for c in cases {
            let model = c["model"].as_str().unwrap();
            let entry = table
                .lookup(model, None)
                .unwrap_or_else(|| panic!("{model}: no entry"));
            assert_eq!(
                entry.name,
                c["price_key"].as_str().unwrap(),
                "{model}: matched entry"
            );
            let u = &c["usage"];
            let usage = Usage {
                input: u["prompt_tokens"].as_f64().unwrap(),
                output: u["completion_tokens"].as_f64().unwrap(),
                cache_read: u["cache_read_input_tokens"].as_f64().unwrap(),
                cache_write: u["cache_creation_input_tokens"].as_f64().unwrap(),
                reasoning: u["reasoning_tokens"].as_f64().unwrap(),
            };
            let cost = price(entry, &usage);
            let what = format!(
                "{model} {} ({})",
                u,
                c["note"]
                    .as_str()
                    .unwrap_or_default()
                    .split('.')
                    .next()
                    .unwrap_or_default()
            );
            assert!(
                close(cost.prompt(), c["prompt_cost_usd"].as_f64().unwrap()),
                "{what}: prompt {} vs {}",
                cost.prompt(),
                c["prompt_cost_usd"]
            );
            assert!(
                close(
                    cost.completion(),
                    c["completion_cost_usd"].as_f64().unwrap()
                ),
                "{what}: completion {} vs {}",
                cost.completion(),
                c["completion_cost_usd"]
            );
            assert!(
                close(cost.total(), c["total_cost_usd"].as_f64().unwrap()),
                "{what}: total"
            );
        }
    }
}
