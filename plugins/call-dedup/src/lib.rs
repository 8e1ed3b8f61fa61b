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
//! | `remember` | `100000` | response ids of counted calls remembered for late spans (the most recent, at least this many and at most twice; 0: none), across the pipeline: with processor shards each shard's instance remembers its share of them |
//!
//! Spans marked as wrappers also by their framework's own attributes:
//! OpenInference `CHAIN`/`AGENT`, OpenLLMetry `workflow`/`task`/`agent`, and
//! the Vercel AI SDK's outer `ai.generateText`-style operations.

mod calls;

use calls::{CallSpan, Joins, Role, Verdict, Word};
use plume_sdk::bound::Recent;
use plume_sdk::hash::{HashMap, fixed_str};
use plume_sdk::ids::{hex16, same};
use plume_sdk::processor::{Guest, export_processor};
use plume_sdk::types::{Batch, BatchResult, Edits, Field, Manifest};
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

/// A span id as the host writes it (16 lowercase hex digits) in 8 bytes;
/// other ids of 16 characters pack as `u64::from_str_radix(id, 16)` reads
/// them.
fn pack_span_id(span: &str) -> Option<u64> {
    hex16(span.as_bytes().try_into().ok()?)
}

/// `wrapper_operations`, each with its length and first and last bytes in
/// one word (its head), and a bit of each head's hash in `mask`: most
/// operations are no wrapper, and miss the mask; the others are compared in
/// full only with names of the same head.
struct Wrappers {
    mask: u64,
    heads: Vec<u64>,
    names: Vec<String>,
}

impl Wrappers {
    fn new(names: Vec<String>) -> Self {
        let heads: Vec<u64> = names.iter().map(|n| Self::head(n)).collect();
        let mask = heads.iter().fold(0, |m, &h| m | Self::bit(h));
        Wrappers { mask, heads, names }
    }

    fn head(s: &str) -> u64 {
        let b = s.as_bytes();
        let (first, last) = (b.first().copied(), b.last().copied());
        (b.len() as u64) << 16 | u64::from(first.unwrap_or(0)) << 8 | u64::from(last.unwrap_or(0))
    }

    fn bit(head: u64) -> u64 {
        1 << (head.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58)
    }

    fn contains(&self, op: &str) -> bool {
        let head = Self::head(op);
        self.mask & Self::bit(head) != 0
            && (self.heads.iter().zip(&self.names)).any(|(&h, w)| h == head && same(w, op))
    }
}

/// A row of a batch: the values of the reads, in manifest order.
type Row<'a> = [ValueRef<'a>; read::WIDTH];

struct State {
    wrappers: Wrappers,
    joins: Joins,
    /// Response id (hashed) -> the span id counted for it (its 8 bytes), for
    /// spans arriving late: 16 bytes a call instead of two strings, so
    /// remembering 100,000 calls takes a few MiB (see `Recent`).
    counted_ids: Recent<Word, u64>,
}

impl State {
    fn role(&self, v: &Row<'_>) -> Option<Role> {
        // Kinds compare without case (no lowercased copy).
        let is = |k: &str, names: &[&str]| names.iter().any(|n| k.eq_ignore_ascii_case(n));
        if let Some(op) = v[read::OPERATION].as_str() {
            return Some(if self.wrappers.contains(op) {
                Role::Wrapper
            } else {
                Role::Inference
            });
        }
        if let Some(k) = v[read::OPENINFERENCE_KIND].as_str() {
            return Some(if is(k, &["chain", "agent"]) {
                Role::Wrapper
            } else {
                Role::Inference
            });
        }
        if let Some(k) = v[read::TRACELOOP_KIND].as_str() {
            return Some(if is(k, &["workflow", "task", "agent"]) {
                Role::Wrapper
            } else {
                Role::Inference
            });
        }
        if let Some(op) = v[read::VERCEL_OPERATION].as_str() {
            // `ai.generateText` wraps `ai.generateText.doGenerate`, the call.
            let inner = op
                .as_bytes()
                .windows(3)
                .any(|w| w.eq_ignore_ascii_case(b".do"))
                || is(op, &["ai.toolcall"]);
            return Some(if inner {
                Role::Inference
            } else {
                Role::Wrapper
            });
        }
        None
    }

    fn call_span<'a>(&self, v: &Row<'a>) -> CallSpan<'a> {
        let tokens = |i: usize| v[i].as_i64();
        let (input, output) = (tokens(read::INPUT), tokens(read::OUTPUT));
        let cost = v[read::COST].as_f64();
        let ids = CallSpan {
            trace: v[read::TRACE].as_str().unwrap_or_default(),
            span: v[read::SPAN].as_str().unwrap_or_default(),
            parent: v[read::PARENT].as_str(),
            ..CallSpan::default()
        };
        if input.is_none() && output.is_none() && cost.is_none() {
            // Without usage, a span only links others (`calls::decide`
            // reads nothing else of it).
            return ids;
        }
        let response_id = v[read::RESPONSE_ID].as_str();
        CallSpan {
            response_key: response_id.map(fixed_str),
            role: self.role(v),
            usage: true,
            input_tokens: input.unwrap_or(0),
            output_tokens: output.unwrap_or(0),
            cost,
            detail: read::DETAIL.filter(|&i| v[i].is_present()).count() as u32
                + response_id.is_some() as u32,
            response_id,
            start: v[read::START].as_i64().unwrap_or(0),
            end: v[read::END].as_i64().unwrap_or(0),
            ..ids
        }
    }

    fn process(&mut self, batch: &Batch) -> Result<Edits, String> {
        let rows = Rows::new(batch, read::WIDTH)?;
        let spans: Vec<CallSpan> = (0..rows.len())
            .map(|r| self.call_span(rows.row(r).first_chunk().expect("rows of WIDTH")))
            .collect();
        if !spans.iter().any(|s| s.usage) {
            return Ok(Edits::new()); // nothing to decide
        }
        let mut verdicts = calls::decide(&spans, self.joins);
        self.late_calls(&spans, &mut verdicts);
        Ok(edits(&spans, verdicts))
    }

    /// Marks calls counted in an earlier batch (whose other spans came
    /// late) and remembers the calls counted here.
    fn late_calls(&mut self, spans: &[CallSpan<'_>], verdicts: &mut [Option<Verdict>]) {
        // Counted spans with a response id, and its hash: looked up before
        // any is remembered, then remembered.
        let mut keyed: Vec<(usize, Word)> = Vec::new();
        for (i, v) in verdicts.iter().enumerate() {
            if v == &Some(Verdict::Counted)
                && let Some(key) = spans[i].response_key
            {
                keyed.push((i, Word(key)));
            }
        }
        // A call counted in an earlier batch (its other spans came late).
        let mut earlier: HashMap<String, String> = HashMap::default(); // counted here -> counted before
        let mut found = Vec::with_capacity(keyed.len());
        for &(i, key) in &keyed {
            let before = self.counted_ids.get(&key).copied();
            found.push(before.is_some());
            if let Some(before) = before.map(|s| format!("{s:016x}"))
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
        // Remembered for late spans (the first span of an id kept), those
        // still counted. Whether an id is remembered is known from the
        // lookups above, unless an insert has forgotten older ids since, or
        // the id may have come earlier in the batch (a bit of its hash set
        // in `seen`): only then is it looked up again.
        let mut seen = [0u64; 64];
        let mut forgot = false;
        for (&(i, key), &known) in keyed.iter().zip(&found) {
            if verdicts[i] == Some(Verdict::Counted)
                && let Some(span) = pack_span_id(spans[i].span)
            {
                let bit = (key.0 >> 52) as usize;
                let again = seen[bit / 64] & 1 << (bit % 64) != 0;
                seen[bit / 64] |= 1 << (bit % 64);
                let remembered = if forgot || again {
                    self.counted_ids.contains_key(&key)
                } else {
                    known
                };
                if !remembered {
                    let before = self.counted_ids.len();
                    self.counted_ids.insert(key, span);
                    forgot |= self.counted_ids.len() != before + 1;
                }
            }
        }
    }
}

/// The edits for the verdicts, row by row.
fn edits(spans: &[CallSpan<'_>], verdicts: Vec<Option<Verdict>>) -> Edits {
    let edit_count = |v: &Option<Verdict>| match v {
        None => 0,
        Some(Verdict::Counted) => 1,
        Some(Verdict::Duplicate { .. }) => 2,
        Some(Verdict::Restates { .. }) => 3 + write::OWN_PRICE.len(),
    };
    let mut edits = Edits::with_capacity(verdicts.iter().map(edit_count).sum());
    for (row, verdict) in verdicts.into_iter().enumerate() {
        let row = row as u32;
        let mut set = |slot: u32, value: ValueRef<'_>| edits.set(row, slot, value);
        match verdict {
            None => {}
            Some(Verdict::Counted) => set(write::COUNTED, ValueRef::Boolean(true)),
            Some(Verdict::Duplicate { of }) => {
                set(write::COUNTED, ValueRef::Boolean(false));
                set(write::DUPLICATE_OF, ValueRef::Str(&of));
            }
            Some(Verdict::Restates { calls }) => {
                set(write::COUNTED, ValueRef::Boolean(false));
                let mut ids = String::with_capacity(calls.len() * 17);
                for (k, &c) in calls.iter().enumerate() {
                    if k > 0 {
                        ids.push(',');
                    }
                    ids.push_str(spans[c].span);
                }
                set(write::DUPLICATE_OF, ValueRef::Str(&ids));
                let mut costs = calls.iter().filter_map(|&c| spans[c].cost).peekable();
                set(
                    write::COST,
                    if costs.peek().is_none() {
                        ValueRef::Absent
                    } else {
                        ValueRef::Float(costs.sum())
                    },
                );
                for slot in write::OWN_PRICE {
                    set(slot, ValueRef::Absent);
                }
            }
        }
    }
    edits
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
                wrappers: Wrappers::new(c.wrapper_operations),
                joins: Joins {
                    response_id: c.join_response_id,
                    contained_siblings: c.join_contained_siblings,
                },
                // Each shard's instance remembers the calls of its traces.
                counted_ids: Recent::new(plume_sdk::share_of(c.remember, plume_sdk::instances())),
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

#[cfg(test)]
mod tests {
    use super::*;
    use plume_sdk::types::Value;

    #[test]
    fn span_ids_pack_as_from_str_radix_read_them() {
        let ids: Vec<String> = [
            "0123456789abcdef",
            "0123456789ABCDEF",
            "ffffffffffffffff",
            "+123456789abcdef",
            "++23456789abcdef",
            "-123456789abcdef",
            "0123456789abcde",
            "0123456789abcdef0",
            "0123456789abcdé",
            "",
        ]
        .map(String::from)
        .to_vec();
        // Every byte at every place: `plume_sdk::ids`'s tests.
        for id in &ids {
            let reference = (id.len() == 16)
                .then(|| u64::from_str_radix(id, 16).ok())
                .flatten();
            assert_eq!(pack_span_id(id), reference, "{id:?}");
        }
    }

    #[test]
    fn wrappers_match_whole_names_only() {
        let names = ["invoke_agent", "invoke_agents", "chain", "a", "", "ünïcode"];
        let w = Wrappers::new(names.map(String::from).to_vec());
        for op in [
            "invoke_agent",
            "invoke_agents",
            "invoke_agen",
            "invoke_agent_",
            "chain",
            "chai",
            "chainx",
            "a",
            "b",
            "",
            "ünïcode",
            "ünïcodE",
        ] {
            assert_eq!(w.contains(op), names.contains(&op), "{op:?}");
        }
    }

    /// A dense batch of `read::WIDTH` reads per row.
    fn batch(rows: &[Vec<ValueRef<'_>>]) -> Batch {
        plume_sdk::dense_batch(rows)
    }

    /// A chat span with usage and a response id.
    fn chat<'a>(trace: &'a str, span: &'a str, response: &'a str) -> Vec<ValueRef<'a>> {
        let mut v = vec![ValueRef::Absent; read::WIDTH];
        v[read::TRACE] = ValueRef::Str(trace);
        v[read::SPAN] = ValueRef::Str(span);
        v[read::OPERATION] = ValueRef::Str("chat");
        v[read::RESPONSE_ID] = ValueRef::Str(response);
        v[read::INPUT] = ValueRef::Int(10);
        v[read::OUTPUT] = ValueRef::Int(5);
        v[read::COST] = ValueRef::Float(0.25);
        v
    }

    fn verdicts(rows: &[Vec<ValueRef<'_>>]) -> Vec<(u32, u32, Value)> {
        let r = CallDedup::process(batch(rows)).expect("processed");
        (r.edits.to_vec().expect("packed edits").into_iter())
            .map(|(row, slot, value)| (row, slot, value.to_value()))
            .collect()
    }

    /// A span arriving after its call was counted is a duplicate of the
    /// counted span; only spans still counted at the end of a batch have
    /// their response ids remembered.
    #[test]
    fn late_spans_are_duplicates_of_the_span_counted_before() {
        CallDedup::init("{}".into()).expect("init");
        let (x, y) = ("00000000000000aa", "00000000000000bb");
        let t = [
            "0af7651916cd43dd8448eb211c80319c",
            "1af7651916cd43dd8448eb211c80319c",
        ];
        assert_eq!(
            verdicts(&[chat(t[0], x, "r1")]),
            [(0, write::COUNTED, Value::Boolean(true))]
        );
        let duplicate_of_x = [
            (0, write::COUNTED, Value::Boolean(false)),
            (0, write::DUPLICATE_OF, Value::Str(x.into())),
            (1, write::COUNTED, Value::Boolean(false)),
            (1, write::DUPLICATE_OF, Value::Str(x.into())),
        ];
        // `y` records r1 again, late. Another span with the id `y` (in
        // another trace) is taken for it too, and so is not remembered for
        // r2.
        assert_eq!(
            verdicts(&[chat(t[1], y, "r1"), chat(t[0], y, "r2")]),
            duplicate_of_x
        );
        assert_eq!(
            verdicts(&[chat(t[1], "00000000000000cc", "r2")]),
            [(0, write::COUNTED, Value::Boolean(true))]
        );
    }

    #[test]
    fn framework_kinds_compare_without_case() {
        CallDedup::init("{}".into()).expect("init");
        let state = |f: &dyn Fn(&State) -> Option<Role>| {
            STATE.with(|s| f(s.borrow().as_ref().expect("init")))
        };
        let role = |read: usize, kind: &'static str| {
            state(&|s: &State| {
                let mut v = [ValueRef::Absent; read::WIDTH];
                v[read] = ValueRef::Str(kind);
                s.role(&v)
            })
        };
        use Role::{Inference, Wrapper};
        for (read, kind, want) in [
            (read::OPENINFERENCE_KIND, "CHAIN", Wrapper),
            (read::OPENINFERENCE_KIND, "Agent", Wrapper),
            (read::OPENINFERENCE_KIND, "LLM", Inference),
            (read::TRACELOOP_KIND, "Workflow", Wrapper),
            (read::TRACELOOP_KIND, "TASK", Wrapper),
            (read::TRACELOOP_KIND, "llm", Inference),
            (read::VERCEL_OPERATION, "ai.generateText", Wrapper),
            (
                read::VERCEL_OPERATION,
                "ai.generateText.doGenerate",
                Inference,
            ),
            (read::VERCEL_OPERATION, "AI.STREAMTEXT.DOSTREAM", Inference),
            (read::VERCEL_OPERATION, "ai.toolCall", Inference),
            (read::VERCEL_OPERATION, "ai.toolCalls", Wrapper),
        ] {
            assert_eq!(role(read, kind), Some(want), "{kind}");
        }
        assert_eq!(role(read::OPERATION, "invoke_agent"), Some(Wrapper));
        assert_eq!(role(read::OPERATION, "Invoke_Agent"), Some(Inference));
        assert_eq!(role(read::COST, "x"), None);
    }
}
