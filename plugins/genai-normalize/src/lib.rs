//! `builtin:genai-normalize`: recognises the GenAI attribute spellings of the
//! OpenTelemetry GenAI conventions (current and deprecated), OpenInference,
//! OpenLLMetry, Langfuse, the Vercel AI SDK and Sentry, and writes the current
//! OpenTelemetry names, keeping the originals. Also derives
//! `plume.finish_reason`, `plume.truncated` and `plume.tokens_per_second`.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `exclusive_input_scopes` | `[]` | instrumentation scope names (prefixes) whose input token count excludes cached tokens (Anthropic-style raw counts under an inclusive name) |
//! | `overwrite` | `false` | rewrite a current-name attribute even when the span already has it |
//!
//! Cached tokens are counted once: the current convention's
//! `gen_ai.usage.input_tokens` includes cache reads and writes. Sources that
//! report exclusive buckets (Langfuse `usage_details`; a span whose total
//! equals input + output + cache; scopes listed in `exclusive_input_scopes`)
//! are converted to the inclusive count, and the raw value is kept in
//! `plume.usage.input_tokens_exclusive`.

mod finish;
mod tables;

use plume_sdk::processor::{Guest, export_processor};
use plume_sdk::types::{Batch, BatchResult, Edits, Field, Manifest};
use plume_sdk::{Cell, Cells, ValueRef};
use serde::Deserialize;
use std::cell::RefCell;
use tables::{ALIASES, Canonical};

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    exclusive_input_scopes: Vec<String>,
    #[serde(default)]
    overwrite: bool,
}

/// Where each alias and extra field sits in the row, resolved at init.
struct Layout {
    /// For each canonical attribute: the read indexes of its aliases, the
    /// canonical name first.
    aliases: Vec<Vec<usize>>,
    /// For each read: the canonical attribute it is an alias of, and its
    /// rank among that attribute's aliases (0: the canonical name).
    alias_of: Vec<Option<(u8, u8)>>,
    provider: Vec<usize>,
    operation_hints: Vec<(usize, tables::OperationHint)>,
    finish: Vec<usize>,
    langfuse_usage: usize,
    invocation_parameters: usize,
    total_tokens: Vec<usize>,
    duration: usize,
    scope: usize,
    width: usize,
}

/// Output slots (indexes into `writes`).
mod slot {
    pub const PROVIDER: u32 = 0;
    pub const OPERATION: u32 = 1;
    pub const FINISH_REASONS: u32 = 2;
    pub const FINISH_REASON: u32 = 3;
    pub const TRUNCATED: u32 = 4;
    pub const TOKENS_PER_SECOND: u32 = 5;
    pub const INPUT_EXCLUSIVE: u32 = 6;
    /// Canonical attributes follow, in `ALIASES` order.
    pub const CANONICAL: u32 = 7;
}

const FIXED_WRITES: [&str; 7] = [
    "gen_ai.provider.name",
    "gen_ai.operation.name",
    "gen_ai.response.finish_reasons",
    "plume.finish_reason",
    "plume.truncated",
    "plume.tokens_per_second",
    "plume.usage.input_tokens_exclusive",
];

struct State {
    config: Config,
    layout: Layout,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fn build(config: Config) -> (Manifest, State) {
    let mut reads: Vec<Field> = Vec::new();
    let mut index = |f: Field| {
        reads.push(f);
        reads.len() - 1
    };
    let aliases: Vec<Vec<usize>> = ALIASES
        .iter()
        .map(|(_, names)| {
            names
                .iter()
                .map(|n| index(Field::Attribute(n.to_string())))
                .collect()
        })
        .collect();
    let provider = tables::PROVIDER_KEYS
        .iter()
        .map(|k| index(Field::Attribute(k.to_string())))
        .collect();
    let operation_hints = tables::OPERATION_HINTS
        .iter()
        .map(|(k, h)| (index(Field::Attribute(k.to_string())), *h))
        .collect();
    let finish = tables::FINISH_KEYS
        .iter()
        .map(|k| index(Field::Attribute(k.to_string())))
        .collect();
    let langfuse_usage = index(Field::Attribute(
        "langfuse.observation.usage_details".into(),
    ));
    let invocation_parameters = index(Field::Attribute("llm.invocation_parameters".into()));
    let total_tokens = tables::TOTAL_KEYS
        .iter()
        .map(|k| index(Field::Attribute(k.to_string())))
        .collect();
    let duration = index(Field::Duration);
    let scope = index(Field::ScopeName);
    let width = reads.len();
    let mut alias_of = vec![None; width];
    for (canonical, idx) in aliases.iter().enumerate() {
        for (rank, &read) in idx.iter().enumerate() {
            alias_of[read] = Some((canonical as u8, rank as u8));
        }
    }
    let mut writes: Vec<String> = FIXED_WRITES.iter().map(|s| s.to_string()).collect();
    writes.extend(ALIASES.iter().map(|(c, _)| c.name().to_string()));
    let layout = Layout {
        aliases,
        alias_of,
        provider,
        operation_hints,
        finish,
        langfuse_usage,
        invocation_parameters,
        total_tokens,
        duration,
        scope,
        width,
    };
    (
        Manifest {
            reads,
            writes,
            require_any: vec![],
            sparse: true,
        },
        State { config, layout },
    )
}

/// The first present value among `indexes`.
fn first<'a>(row: &[ValueRef<'a>], indexes: &[usize]) -> Option<ValueRef<'a>> {
    indexes.iter().map(|&i| row[i]).find(ValueRef::is_present)
}

/// `ALIASES` lists the canonical attributes in the enum's order (a test
/// checks it), so a canonical's index is its discriminant.
const fn canonical_index(c: Canonical) -> usize {
    c as usize
}

/// How many canonical attributes there are (one per `ALIASES` entry).
const CANONICAL: usize = ALIASES.len();
const _: () = assert!(
    CANONICAL <= 32,
    "normalize_row keeps a bit per canonical in a u32"
);

/// Normalises one span's row into edits. `row` holds every read (absent
/// ones too), `present` the row's present values: the aliases are looked up
/// through these (a span has a few of ~50), not alias by alias.
fn normalize_row<'a>(
    state: &State,
    row_no: u32,
    row: &[ValueRef<'a>],
    present: &[Cell<'a>],
    edits: &mut Edits,
) {
    let l = &state.layout;
    // For each canonical attribute, its first alias present (lowest rank);
    // `found_mask` has a bit per canonical found, so that the loops below
    // visit the few a span has, not all of them (in wasm every loop
    // iteration also pays the host's interruption check).
    let mut found: [Option<(u8, ValueRef<'a>)>; CANONICAL] = [None; CANONICAL];
    let mut found_mask: u32 = 0;
    for c in present {
        if let Some((i, rank)) = l.alias_of[c.read as usize] {
            let slot = &mut found[i as usize];
            if slot.is_none_or(|(r, _)| rank < r) {
                *slot = Some((rank, c.value));
                found_mask |= 1 << i;
            }
        }
    }
    let value_of = |c: Canonical| found[canonical_index(c)].map(|(_, v)| v);
    let set = |edits: &mut Edits, slot: u32, value: ValueRef<'_>| edits.set(row_no, slot, value);
    // OpenInference keeps the request model only inside its JSON invocation
    // parameters (and on failed calls there is no other model attribute).
    let model_slot = canonical_index(Canonical::RequestModel);
    let params_model = if found[model_slot].is_none() {
        row[l.invocation_parameters]
            .as_str()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
            .and_then(|p| p.get("model").and_then(|m| m.as_str()).map(str::to_string))
    } else {
        None
    };
    // Plain renames: copy the first alias found to the canonical name. The
    // values are borrowed from the row: only what is written is copied.
    let mut each = found_mask;
    while each != 0 {
        let i = each.trailing_zeros() as usize;
        each &= each - 1;
        if let Some((rank, v)) = found[i] {
            // Rank 0 is the canonical name itself.
            let current = if rank == 0 { v } else { row[l.aliases[i][0]] };
            if !current.is_present() || (state.config.overwrite && current != v) {
                set(edits, slot::CANONICAL + i as u32, v);
            }
        }
    }
    if let Some(m) = &params_model {
        set(edits, slot::CANONICAL + model_slot as u32, ValueRef::Str(m));
    }
    // Whether the span has a canonical attribute under any of its names
    // (the request model in the invocation parameters is `params_model`),
    // and its number.
    let has = |c: Canonical| found_mask & (1 << canonical_index(c)) != 0;
    let get_num = |c: Canonical| value_of(c).and_then(|v| v.as_f64());

    // Tokens: Langfuse usage_details (exclusive buckets) fill gaps, and
    // exclusive input counts become inclusive.
    let mut input = get_num(Canonical::InputTokens);
    let mut output = get_num(Canonical::OutputTokens);
    let mut cache_read = get_num(Canonical::CacheReadTokens);
    let mut cache_write = get_num(Canonical::CacheWriteTokens);
    let mut reasoning = get_num(Canonical::ReasoningTokens);
    let mut exclusive = false;
    if let Some(details) = row[l.langfuse_usage]
        .as_str()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
    {
        let num = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| details.get(*k).and_then(|v| v.as_f64()))
        };
        let lf_cache_read = num(&[
            "input_cached_tokens",
            "input_cache_read",
            "cache_read_input_tokens",
        ]);
        let lf_cache_write = num(&[
            "input_cache_creation",
            "cache_creation_input_tokens",
            "cache_write_tokens",
        ]);
        if input.is_none()
            && let Some(i) = num(&["input", "input_tokens", "prompt_tokens"])
        {
            input = Some(i);
            exclusive = true;
        }
        output = output.or_else(|| num(&["output", "output_tokens", "completion_tokens"]));
        cache_read = cache_read.or(lf_cache_read);
        cache_write = cache_write.or(lf_cache_write);
        reasoning = reasoning.or_else(|| {
            num(&[
                "output_reasoning_tokens",
                "reasoning_tokens",
                "output_reasoning",
            ])
        });
        for (c, v) in [
            (Canonical::OutputTokens, output),
            (Canonical::CacheReadTokens, cache_read),
            (Canonical::CacheWriteTokens, cache_write),
            (Canonical::ReasoningTokens, reasoning),
        ] {
            if !has(c)
                && let Some(v) = v
            {
                let i = canonical_index(c);
                set(edits, slot::CANONICAL + i as u32, ValueRef::Int(v as i64));
            }
        }
    }
    let scope = row[l.scope].as_str().unwrap_or_default();
    if state
        .config
        .exclusive_input_scopes
        .iter()
        .any(|p| !p.is_empty() && scope.starts_with(p.as_str()))
    {
        exclusive = true;
    }
    if let (Some(i), Some(o)) = (input, output)
        && let Some(total) = first(row, &l.total_tokens).and_then(|v| v.as_f64())
    {
        let cache = cache_read.unwrap_or(0.0) + cache_write.unwrap_or(0.0);
        if cache > 0.0 && i + o != total && i + o + cache == total {
            exclusive = true;
        }
    }
    if exclusive && let Some(i) = input {
        let inclusive = i + cache_read.unwrap_or(0.0) + cache_write.unwrap_or(0.0);
        edits.set_int(row_no, slot::INPUT_EXCLUSIVE, i as i64);
        edits.set_int(
            row_no,
            slot::CANONICAL + canonical_index(Canonical::InputTokens) as u32,
            inclusive as i64,
        );
    }

    // Provider: looked up only when it may be written (most spans carry
    // the current attribute already).
    let provider_present = row[l.provider[0]].is_present();
    if (!provider_present || state.config.overwrite)
        && let Some(p) = l
            .provider
            .iter()
            .filter_map(|&i| row[i].as_str())
            .find_map(tables::provider)
        && (!provider_present || row[l.provider[0]].as_str() != Some(p.as_str()))
    {
        edits.set_str(row_no, slot::PROVIDER, &p);
    }

    // Operation.
    if !row[l.operation_hints[0].0].is_present() {
        let op = l
            .operation_hints
            .iter()
            .find_map(|(i, hint)| tables::operation(*hint, row[*i]));
        let op = op.or_else(|| {
            // A model with token usage and nothing else saying what it is: an
            // inference call.
            let has_model = has(Canonical::RequestModel)
                || params_model.is_some()
                || has(Canonical::ResponseModel);
            (has_model && input.is_some()).then_some("chat")
        });
        if let Some(op) = op {
            edits.set_str(row_no, slot::OPERATION, op);
        }
    }

    // Finish reasons.
    let reasons = || l.finish.iter().map(|&i| row[i]);
    if let Some(first_reason) = finish::first_reason(reasons()) {
        if !row[l.finish[0]].is_present() {
            let raw = finish::raw_reasons(reasons());
            let raw = serde_json::to_string(&raw).unwrap_or_default();
            edits.set(row_no, slot::FINISH_REASONS, ValueRef::Json(&raw));
        }
        let normalized = finish::normalize(&first_reason);
        edits.set_str(row_no, slot::FINISH_REASON, normalized);
        edits.set_bool(row_no, slot::TRUNCATED, normalized == "length");
    }

    // Speed.
    if let (Some(o), Some(d)) = (output, row[l.duration].as_i64())
        && o > 0.0
        && d > 0
    {
        edits.set_float(row_no, slot::TOKENS_PER_SECOND, o / (d as f64 / 1e9));
    }
}

struct Normalize;

impl Guest for Normalize {
    fn init(config: String) -> Result<Manifest, String> {
        let (manifest, state) = build(plume_sdk::parse_config(&config)?);
        STATE.with(|s| *s.borrow_mut() = Some(state));
        Ok(manifest)
    }

    fn process(batch: Batch) -> Result<BatchResult, String> {
        STATE.with(|s| {
            let s = s.borrow();
            let state = s.as_ref().ok_or("process before init")?;
            // A few edits per span: sized once, not grown.
            let mut edits = Edits::with_capacity(batch.rows as usize * 4);
            // Of ~75 reads a span has a dozen: one row buffer, filled with
            // each span's present values and cleared after them.
            let cells = Cells::new(&batch, state.layout.width)?;
            let mut values = vec![ValueRef::Absent; state.layout.width];
            for (row, present) in cells.iter() {
                for c in present {
                    values[c.read as usize] = c.value;
                }
                normalize_row(state, row, &values, present, &mut edits);
                for c in present {
                    values[c.read as usize] = ValueRef::Absent;
                }
            }
            Ok(BatchResult {
                edits,
                drops: vec![],
            })
        })
    }

    fn report() -> String {
        "{}".into()
    }
}

export_processor!(Normalize);

#[cfg(test)]
mod tests;
