//! `builtin:call-dedup`: one model call, one cost. Real agents record one
//! call several times (a framework span around a provider span, two
//! instrumentations, a provider SDK tracing itself, an agent span restating
//! its calls' summed usage). This stage writes, on every span with usage:
//! - `plume.cost.counted = true` on the one span whose cost enters the
//!   totals for its call, `false` on the others;
//! - `plume.cost.duplicate_of`: on a span that records a counted call again,
//!   that span's id; on a span that restates several calls (an agent span),
//!   their ids joined by `,`.
//!
//! A restating span keeps the summed cost of the calls it restates in
//! `gen_ai.usage.cost` for display, never a price of its own: its
//! `plume.cost.*` parts and `plume.price.model` are removed.
//!
//! How calls are told apart is in `calls.rs`. It needs the spans of a call in
//! one batch: the host's trace hold (`[traces]` in pipeline.toml) groups them
//! by trace and by response id before the stages run. A span arriving after
//! its call's group was released is matched by response id against the calls
//! this stage remembers.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `wrapper_operations` | `["invoke_agent", "invoke_workflow", "agent_step", "handle_conversation_turn", "create_agent", "plan", "workflow", "chain", "task"]` | `gen_ai.operation.name` values whose usage restates the calls below |
//! | `join_response_id` | `true` | spans with the same `gen_ai.response.id` are one call |
//! | `join_contained_siblings` | `true` | siblings with equal token counts, one inside the other in time, are one call |
//! | `remember` | `100000` | response ids of counted calls remembered for late spans (the most recent, at least this many and at most twice; 0: none) |
//!
//! Spans marked as wrappers also by their framework's own attributes:
//! OpenInference `CHAIN`/`AGENT`, OpenLLMetry `workflow`/`task`/`agent`, and
//! the Vercel AI SDK's outer `ai.generateText`-style operations.

mod calls;

use calls::{CallSpan, Joins, Role, Verdict};
use plume_sdk::bound::Recent;
use plume_sdk::hash::{HashMap, fixed_str};
use plume_sdk::processor::{Guest, export_processor};
use plume_sdk::types::{Batch, BatchResult, Edit, Field, Manifest, Value};
use plume_sdk::{Rows, ValueRef};
use serde::Deserialize;
use std::cell::RefCell;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_wrappers")]
    wrapper_operations: Vec<String>,
    #[serde(default = "yes")]
    join_response_id: bool,
    #[serde(default = "yes")]
    join_contained_siblings: bool,
    #[serde(default = "default_remember")]
    remember: usize,
}

fn default_wrappers() -> Vec<String> {
    [
        "invoke_agent",
        "invoke_workflow",
        "agent_step",
        "handle_conversation_turn",
        "create_agent",
        "plan",
        "workflow",
        "chain",
        "task",
    ]
    .map(String::from)
    .to_vec()
}
fn yes() -> bool {
    true
}
fn default_remember() -> usize {
    100_000
}

/// Reads, in manifest order.
mod read {
    pub const TRACE: usize = 0;
    pub const SPAN: usize = 1;
    pub const PARENT: usize = 2;
    pub const OPERATION: usize = 3;
    pub const OPENINFERENCE_KIND: usize = 4;
    pub const TRACELOOP_KIND: usize = 5;
    pub const VERCEL_OPERATION: usize = 6;
    pub const RESPONSE_ID: usize = 7;
    pub const INPUT: usize = 8;
    pub const OUTPUT: usize = 9;
    pub const COST: usize = 10;
    /// Detail attributes: cache read, cache write, reasoning, response model,
    /// provider, finish reasons (and the response id above).
    pub const DETAIL: std::ops::Range<usize> = 11..17;
    pub const START: usize = 17;
    pub const END: usize = 18;
    pub const WIDTH: usize = 19;
}

const READ_ATTRIBUTES: [(usize, &str); 14] = [
    (read::OPERATION, "gen_ai.operation.name"),
    (read::OPENINFERENCE_KIND, "openinference.span.kind"),
    (read::TRACELOOP_KIND, "traceloop.span.kind"),
    (read::VERCEL_OPERATION, "ai.operationId"),
    (read::RESPONSE_ID, "gen_ai.response.id"),
    (read::INPUT, "gen_ai.usage.input_tokens"),
    (read::OUTPUT, "gen_ai.usage.output_tokens"),
    (read::COST, "gen_ai.usage.cost"),
    (11, "gen_ai.usage.cache_read.input_tokens"),
    (12, "gen_ai.usage.cache_write.input_tokens"),
    (13, "gen_ai.usage.reasoning.output_tokens"),
    (14, "gen_ai.response.model"),
    (15, "gen_ai.provider.name"),
    (16, "gen_ai.response.finish_reasons"),
];

/// Writes, in manifest order.
mod write {
    pub const COUNTED: u32 = 0;
    pub const DUPLICATE_OF: u32 = 1;
    pub const COST: u32 = 2;
    /// `plume.cost.*` parts and `plume.price.model`, removed on restatements.
    pub const OWN_PRICE: std::ops::Range<u32> = 3..9;
}

const WRITES: [&str; 9] = [
    "plume.cost.counted",
    "plume.cost.duplicate_of",
    "gen_ai.usage.cost",
    "plume.cost.input",
    "plume.cost.output",
    "plume.cost.cache_read",
    "plume.cost.cache_write",
    "plume.cost.reasoning",
    "plume.price.model",
];

/// A span id as the host writes it (16 lowercase hex digits) in 8 bytes.
fn pack_span_id(span: &str) -> Option<u64> {
    (span.len() == 16)
        .then(|| u64::from_str_radix(span, 16).ok())
        .flatten()
}

struct State {
    wrappers: Vec<String>,
    joins: Joins,
    /// Response id (hashed) -> the span id counted for it (its 8 bytes), for
    /// spans arriving late: 16 bytes a call instead of two strings, so
    /// remembering 100,000 calls takes a few MiB (see `Recent`).
    counted_ids: Recent<u64, u64>,
}

impl State {
    fn role(&self, v: &[ValueRef<'_>]) -> Option<Role> {
        let lower = |i: usize| v[i].as_str().map(str::to_ascii_lowercase);
        if let Some(op) = v[read::OPERATION].as_str() {
            return Some(if self.wrappers.iter().any(|w| w == op) {
                Role::Wrapper
            } else {
                Role::Inference
            });
        }
        if let Some(k) = lower(read::OPENINFERENCE_KIND) {
            return Some(match k.as_str() {
                "chain" | "agent" => Role::Wrapper,
                _ => Role::Inference,
            });
        }
        if let Some(k) = lower(read::TRACELOOP_KIND) {
            return Some(match k.as_str() {
                "workflow" | "task" | "agent" => Role::Wrapper,
                _ => Role::Inference,
            });
        }
        if let Some(op) = lower(read::VERCEL_OPERATION) {
            // `ai.generateText` wraps `ai.generateText.doGenerate`, the call.
            let inner = op.contains(".do") || op == "ai.toolcall";
            return Some(if inner {
                Role::Inference
            } else {
                Role::Wrapper
            });
        }
        None
    }

    fn call_span<'a>(&self, v: &[ValueRef<'a>]) -> CallSpan<'a> {
        let tokens = |i: usize| v[i].as_i64();
        let (input, output) = (tokens(read::INPUT), tokens(read::OUTPUT));
        let cost = v[read::COST].as_f64();
        let response_id = v[read::RESPONSE_ID].as_str();
        CallSpan {
            trace: v[read::TRACE].as_str().unwrap_or_default(),
            span: v[read::SPAN].as_str().unwrap_or_default(),
            parent: v[read::PARENT].as_str(),
            role: self.role(v),
            usage: input.is_some() || output.is_some() || cost.is_some(),
            input_tokens: input.unwrap_or(0),
            output_tokens: output.unwrap_or(0),
            cost,
            detail: read::DETAIL.filter(|&i| v[i].is_present()).count() as u32
                + response_id.is_some() as u32,
            response_id,
            start: v[read::START].as_i64().unwrap_or(0),
            end: v[read::END].as_i64().unwrap_or(0),
        }
    }

    /// Remembers the response ids of counted calls, oldest forgotten first.
    fn remember(&mut self, response_id: &str, span: &str) {
        let (id, Some(span)) = (fixed_str(response_id), pack_span_id(span)) else {
            return;
        };
        if !self.counted_ids.contains_key(&id) {
            self.counted_ids.insert(id, span);
        }
    }

    fn process(&mut self, batch: &Batch) -> Result<Vec<Edit>, String> {
        let rows = Rows::new(batch, read::WIDTH)?;
        let has_usage = |v: &[ValueRef<'_>]| {
            [read::INPUT, read::OUTPUT, read::COST]
                .iter()
                .any(|&i| v[i].is_present())
        };
        if !rows.iter().any(|(_, v)| has_usage(v)) {
            return Ok(Vec::new());
        }
        let spans: Vec<CallSpan> = rows.iter().map(|(_, v)| self.call_span(v)).collect();
        let mut verdicts = calls::decide(&spans, self.joins);

        // A call counted in an earlier batch (its other spans came late).
        let mut earlier: HashMap<String, String> = HashMap::default(); // counted here -> counted before
        for (i, v) in verdicts.iter().enumerate() {
            if v == &Some(Verdict::Counted)
                && let Some(before) = spans[i]
                    .response_id
                    .and_then(|r| self.counted_ids.get(&fixed_str(r)))
                    .map(|&s| format!("{s:016x}"))
                && before != spans[i].span
            {
                earlier.insert(spans[i].span.to_owned(), before);
            }
        }
        if !earlier.is_empty() {
            for (i, v) in verdicts.iter_mut().enumerate() {
                let key = match v {
                    Some(Verdict::Counted) => spans[i].span,
                    Some(Verdict::Duplicate { of }) => of.as_str(),
                    _ => continue,
                };
                if let Some(before) = earlier.get(key) {
                    *v = Some(Verdict::Duplicate { of: before.clone() });
                }
            }
        }
        for (i, v) in verdicts.iter().enumerate() {
            if v == &Some(Verdict::Counted)
                && let Some(r) = spans[i].response_id
            {
                self.remember(r, spans[i].span);
            }
        }

        let mut edits = Vec::new();
        for (row, verdict) in verdicts.into_iter().enumerate() {
            let row = row as u32;
            let mut set = |slot: u32, value: Value| edits.push(Edit { row, slot, value });
            match verdict {
                None => {}
                Some(Verdict::Counted) => set(write::COUNTED, Value::Boolean(true)),
                Some(Verdict::Duplicate { of }) => {
                    set(write::COUNTED, Value::Boolean(false));
                    set(write::DUPLICATE_OF, Value::Str(of));
                }
                Some(Verdict::Restates { calls }) => {
                    set(write::COUNTED, Value::Boolean(false));
                    let ids: Vec<&str> = calls.iter().map(|&c| spans[c].span).collect();
                    set(write::DUPLICATE_OF, Value::Str(ids.join(",")));
                    let costs: Vec<f64> = calls.iter().filter_map(|&c| spans[c].cost).collect();
                    set(
                        write::COST,
                        if costs.is_empty() {
                            Value::Absent
                        } else {
                            Value::Float(costs.iter().sum())
                        },
                    );
                    for slot in write::OWN_PRICE {
                        set(slot, Value::Absent);
                    }
                }
            }
        }
        Ok(edits)
    }
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

struct CallDedup;

impl Guest for CallDedup {
    fn init(config: String) -> Result<Manifest, String> {
        let c: Config = plume_sdk::parse_config(&config)?;
        let mut reads: Vec<Option<Field>> = vec![None; read::WIDTH];
        reads[read::TRACE] = Some(Field::TraceId);
        reads[read::SPAN] = Some(Field::SpanId);
        reads[read::PARENT] = Some(Field::ParentSpanId);
        reads[read::START] = Some(Field::StartTime);
        reads[read::END] = Some(Field::EndTime);
        for (i, key) in READ_ATTRIBUTES {
            reads[i] = Some(Field::Attribute(key.into()));
        }
        let reads = reads
            .into_iter()
            .collect::<Option<Vec<Field>>>()
            .ok_or("every read slot is declared")?;
        STATE.with(|s| {
            *s.borrow_mut() = Some(State {
                wrappers: c.wrapper_operations,
                joins: Joins {
                    response_id: c.join_response_id,
                    contained_siblings: c.join_contained_siblings,
                },
                counted_ids: Recent::new(c.remember),
            })
        });
        Ok(Manifest {
            reads,
            writes: WRITES.iter().map(|k| (*k).to_string()).collect(),
            require_any: vec![],
            sparse: false,
        })
    }

    fn process(batch: Batch) -> Result<BatchResult, String> {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let state = s.as_mut().ok_or("process before init")?;
            Ok(BatchResult {
                edits: state.process(&batch)?,
                drops: vec![],
            })
        })
    }

    fn report() -> String {
        "{}".into()
    }
}

export_processor!(CallDedup);
