//! `builtin:pricer`: prices each LLM span from a pricing table that is data,
//! not code.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `table` | the embedded table (`plugins/pricer/tables/default.toml`) | path to a LiteLLM `model_prices_and_context_window.json` (read as it is) or a plume TOML table; its directory must be granted: `grants = { read = ["DIR"] }` |
//! | `overwrite` | `false` | price spans that already carry `gen_ai.usage.cost` (by default a cost given by the source is kept) |
//!
//! Reads the current OpenTelemetry names (run `builtin:genai-normalize`
//! first for other spellings). Writes `gen_ai.usage.cost`, its parts
//! `plume.cost.{input,output,cache_read,cache_write,reasoning}` (each only
//! when the span reports that token count; absent parts are zero) and
//! `plume.price.model`; a span with a model and token counts but no matching
//! entry gets `plume.price.missing = true` and no cost, and is listed in the
//! report under `pricing.missing_models`.

pub mod cost;
pub mod table;

use cost::{Usage, price};
use plume_sdk::hash::HashMap;
use plume_sdk::processor::{Guest, export_processor};
use plume_sdk::types::{Batch, BatchResult, Edits, Field, Manifest};
use plume_sdk::{Rows, ValueRef};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// The embedded default table; its source and date are in its `[meta]`.
pub const DEFAULT_TABLE: &str = include_str!("../tables/default.toml");

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    table: Option<String>,
    #[serde(default)]
    overwrite: bool,
}

const READS: [&str; 9] = [
    "gen_ai.response.model",
    "gen_ai.request.model",
    "gen_ai.provider.name",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.cost",
];

const WRITES: [&str; 8] = [
    "gen_ai.usage.cost",
    "plume.cost.input",
    "plume.cost.output",
    "plume.cost.cache_read",
    "plume.cost.cache_write",
    "plume.cost.reasoning",
    "plume.price.model",
    "plume.price.missing",
];

/// Distinct (model, provider) pairs whose match is remembered; a pipeline
/// sees few, so matching (lowercasing, prefix and date stripping) runs once
/// per pair instead of once per span.
const MATCH_CACHE: usize = 4096;

#[derive(Default)]
struct State {
    table: table::Table,
    /// Provider (empty when none) -> model -> entry: looked up with the
    /// span's borrowed strings, so a known pair costs no allocation.
    matches: HashMap<String, HashMap<String, Option<usize>>>,
    /// Pairs in `matches`.
    matched: usize,
    overwrite: bool,
    priced: u64,
    missing: BTreeMap<String, u64>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn load(config: &Config) -> Result<table::Table, String> {
    match &config.table {
        None => table::parse(DEFAULT_TABLE, "embedded default table"),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                format!("config.table: cannot read {path}: {e} (grant its directory read access in pipeline.toml: grants = {{ read = [\"DIR\"] }})")
            })?;
            table::parse(&text, path)
        }
    }
}

impl State {
    fn find(&mut self, model: &str, provider: Option<&str>) -> Option<usize> {
        let provider_key = provider.unwrap_or_default();
        if let Some(&hit) = self.matches.get(provider_key).and_then(|m| m.get(model)) {
            return hit;
        }
        let found = self.table.find(model, provider);
        if self.matched >= MATCH_CACHE {
            self.matches.clear();
            self.matched = 0;
        }
        self.matches
            .entry(provider_key.to_string())
            .or_default()
            .insert(model.to_string(), found);
        self.matched += 1;
        found
    }
}

/// Prices one row: `None` when it is not a priced call, `Err(model)` when
/// its model has no entry.
fn price_row(
    state: &mut State,
    row: u32,
    v: &[ValueRef<'_>],
    edits: &mut Edits,
) -> Option<Result<(), String>> {
    if v[8].is_present() && !state.overwrite {
        return None;
    }
    let model = v[0].as_str().or(v[1].as_str())?;
    let (input, output) = (v[3].as_f64(), v[4].as_f64());
    if input.is_none() && output.is_none() {
        return None;
    }
    let provider = v[2].as_str();
    // Prefer the response model (often dated, so more specific), then the request model.
    let found = v[0]
        .as_str()
        .and_then(|m| state.find(m, provider))
        .or_else(|| v[1].as_str().and_then(|m| state.find(m, provider)));
    let Some(entry) = found.map(|i| &state.table.entries[i]) else {
        edits.set_bool(row, 7, true);
        return Some(Err(model.to_string()));
    };
    let usage = Usage {
        input: input.unwrap_or(0.0),
        output: output.unwrap_or(0.0),
        cache_read: v[5].as_f64().unwrap_or(0.0),
        cache_write: v[6].as_f64().unwrap_or(0.0),
        reasoning: v[7].as_f64().unwrap_or(0.0),
    };
    let c = price(entry, &usage);
    edits.set_float(row, 0, c.total());
    // A part only for the token counts the span reports: most calls report
    // no cache writes or reasoning, and a zero part there says nothing.
    for (slot, read, value) in [
        (1, 3, c.input),
        (2, 4, c.output),
        (3, 5, c.cache_read),
        (4, 6, c.cache_write),
        (5, 7, c.reasoning),
    ] {
        if v[read].is_present() {
            edits.set_float(row, slot, value);
        }
    }
    edits.set_str(row, 6, &entry.name);
    Some(Ok(()))
}

struct Pricer;

impl Guest for Pricer {
    fn init(config: String) -> Result<Manifest, String> {
        let config: Config = plume_sdk::parse_config(&config)?;
        let table = load(&config)?;
        if table.is_empty() {
            return Err(format!(
                "config.table: {} holds no priced models",
                table.source
            ));
        }
        STATE.with(|s| {
            *s.borrow_mut() = State {
                table,
                overwrite: config.overwrite,
                ..State::default()
            }
        });
        Ok(Manifest {
            reads: READS
                .iter()
                .map(|k| Field::Attribute(k.to_string()))
                .collect(),
            writes: WRITES.iter().map(|k| k.to_string()).collect(),
            // Only spans with a model are sent.
            require_any: vec![0, 1],
            sparse: false,
        })
    }

    fn process(batch: Batch) -> Result<BatchResult, String> {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let mut edits = Edits::with_capacity(batch.rows as usize * 8);
            let mut missing = Vec::new();
            let mut priced = 0;
            for (row, v) in Rows::new(&batch, READS.len())?.iter() {
                match price_row(&mut s, row, v, &mut edits) {
                    Some(Ok(())) => priced += 1,
                    Some(Err(model)) => missing.push(model),
                    None => {}
                }
            }
            s.priced += priced;
            for m in missing {
                *s.missing.entry(m).or_default() += 1;
            }
            Ok(BatchResult {
                edits,
                drops: vec![],
            })
        })
    }

    fn report() -> String {
        STATE.with(|s| {
            let s = s.borrow();
            // Counts only: with several shards, each has its own pricer
            // and the host adds their numbers up.
            serde_json::json!({"pricing": {
                "table": format!("{} ({} models)", s.table.source, s.table.len()),
                "priced_spans": s.priced,
                "missing_spans": s.missing.values().sum::<u64>(),
                "missing_models": s.missing,
            }})
            .to_string()
        })
    }
}

export_processor!(Pricer);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_table_loads_and_prices_common_models() {
        let t = table::parse(DEFAULT_TABLE, "default").unwrap();
        assert!(t.len() > 50, "{}", t.len());
        for m in [
            "gpt-4o",
            "gpt-4o-mini",
            "claude-sonnet-4-5",
            "gemini-2.5-pro",
        ] {
            assert!(t.lookup(m, None).is_some(), "{m}");
        }
    }

    /// A pricer on the embedded table.
    fn default_state() -> State {
        State {
            table: table::parse(DEFAULT_TABLE, "default").unwrap(),
            ..State::default()
        }
    }

    #[test]
    fn unknown_models_are_flagged_never_priced_zero() {
        let mut state = default_state();
        let mut row = vec![ValueRef::Absent; READS.len()];
        row[1] = ValueRef::Str("totally-unknown-model-x");
        row[3] = ValueRef::Int(100);
        let mut edits = Edits::new();
        assert_eq!(
            price_row(&mut state, 0, &row, &mut edits),
            Some(Err("totally-unknown-model-x".into()))
        );
        assert_eq!(edits.to_vec().unwrap(), [(0, 7, ValueRef::Boolean(true))]);
    }

    /// The total always; a part only for a token count the span reports
    /// (a reported zero is a part of zero).
    #[test]
    fn parts_only_for_the_token_counts_reported() {
        let mut state = default_state();
        let mut row = vec![ValueRef::Absent; READS.len()];
        row[0] = ValueRef::Str("gpt-4o");
        row[3] = ValueRef::Int(1000);
        row[4] = ValueRef::Int(200);
        row[6] = ValueRef::Int(0);
        let mut edits = Edits::new();
        assert_eq!(price_row(&mut state, 0, &row, &mut edits), Some(Ok(())));
        let slots: Vec<u32> = edits.to_vec().unwrap().iter().map(|e| e.1).collect();
        // total, input, output, cache_write (reported as 0), the entry's name.
        assert_eq!(slots, [0, 1, 2, 4, 6]);
        let parts: f64 = (edits.to_vec().unwrap().iter())
            .filter(|e| (1..=5).contains(&e.1))
            .filter_map(|e| e.2.as_f64())
            .sum();
        let total = edits.to_vec().unwrap()[0].2.as_f64().unwrap();
        assert!((parts - total).abs() < 1e-12, "{parts} {total}");
    }

    /// The match cache answers as the table does, per (model, provider)
    /// pair, and stays within its bound.
    #[test]
    fn match_cache_agrees_with_the_table_and_is_bounded() {
        let mut state = default_state();
        for _ in 0..2 {
            for (model, provider) in [
                ("gpt-4o-2024-08-06", Some("openai")),
                ("gpt-4o-2024-08-06", None),
                ("claude-sonnet-4-5", Some("anthropic")),
                ("no-such-model", Some("openai")),
            ] {
                let expected = state.table.find(model, provider);
                assert_eq!(
                    state.find(model, provider),
                    expected,
                    "{model} {provider:?}"
                );
            }
        }
        assert_eq!(state.matched, 4);
        for i in 0..MATCH_CACHE + 10 {
            state.find(&format!("model-{i}"), None);
        }
        assert!(state.matched <= MATCH_CACHE);
        let pairs: usize = state.matches.values().map(|m| m.len()).sum();
        assert_eq!(pairs, state.matched);
    }
}
