//! `builtin:traces`: a summary of each trace: the agents in it, its depth, its
//! cost, its end-to-end latency and its errors; the report lists the most
//! expensive and slowest traces and the latest with errors, and counts over
//! all traces kept.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `max_traces` | `10000` | traces kept; beyond it the least recently active are forgotten, down to half of it (counted) |
//! | `top` | `10` | entries in each list of the report |
//!
//! The trace hold delivers a trace's spans together, and sub-agent traces
//! stitched under their caller (`[traces] stitch_attributes`) arrive as part
//! of the caller's trace; spans that come later are added to their trace's
//! summary while it is kept. Cost sums `gen_ai.usage.cost` over the spans
//! that count it (`plume.cost.counted` not false). Agents are the distinct
//! `gen_ai.agent.name` values, or the `service.name` of `invoke_agent` spans
//! without one. Depth is the longest chain of parent links (a root alone is 1).

use plume_sdk::evaluator::{Guest, export_evaluator};
use plume_sdk::hash::HashMap;
use plume_sdk::ids::{TraceKey, hex16, same};
use plume_sdk::types::{Alert, Batch, Field, Manifest};
use plume_sdk::{Rows, ValueRef};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::RefCell;
use std::rc::Rc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_max_traces")]
    max_traces: usize,
    #[serde(default = "default_top")]
    top: usize,
}

fn default_max_traces() -> usize {
    10_000
}
fn default_top() -> usize {
    10
}

mod read {
    pub const TRACE: usize = 0;
    pub const SPAN: usize = 1;
    pub const PARENT: usize = 2;
    pub const START: usize = 3;
    pub const END: usize = 4;
    pub const STATUS: usize = 5;
    pub const AGENT: usize = 6;
    pub const COST: usize = 7;
    pub const COUNTED: usize = 8;
    pub const SERVICE: usize = 9;
    pub const OPERATION: usize = 10;
    pub const STITCHED_FROM: usize = 11;
    pub const WIDTH: usize = 12;
}

/// Most agent names kept per trace.
const MAX_AGENTS: usize = 32;

/// One trace, as far as seen.
#[derive(Serialize, Deserialize, Clone, Default, Debug, PartialEq)]
pub struct Trace {
    spans: u32,
    start: u64,
    end: u64,
    errors: u32,
    cost: f64,
    /// Sorted, distinct: not a `BTreeSet`, whose first node alone takes ~300
    /// bytes for the one agent most traces have (and 10,000 traces are
    /// kept). Snapshots and reports read the same either way.
    agents: Names,
    /// Trace ids of sub-agent traces stitched into this one (sorted, distinct).
    stitched: Vec<String>,
    /// Span -> parent (0: root), first 8 bytes of the ids: enough for depth.
    parents: Parents,
}

impl Trace {
    fn new() -> Trace {
        Trace {
            start: u64::MAX,
            ..Trace::default()
        }
    }

    /// Adds one span of this trace; `last_agent` is the agent name added
    /// last (to any trace), shared when it comes again.
    fn add<'a>(&mut self, v: &Row<'a>, last_agent: &mut Option<Rc<str>>, ids: &mut Ids<'a>) {
        let t = self;
        t.spans += 1;
        let start = v[read::START].as_i64().unwrap_or(0).max(0) as u64;
        let end = v[read::END].as_i64().unwrap_or(0).max(0) as u64;
        t.start = t.start.min(start);
        t.end = t.end.max(end);
        if v[read::STATUS].as_str().is_some_and(|s| same(s, "error")) {
            t.errors += 1;
        }
        if v[read::COUNTED].as_bool() != Some(false)
            && let Some(c) = v[read::COST].as_f64()
        {
            t.cost += c;
        }
        let agent = v[read::AGENT].as_str().or_else(|| {
            (v[read::OPERATION]
                .as_str()
                .is_some_and(|o| same(o, "invoke_agent")))
            .then(|| v[read::SERVICE].as_str())
            .flatten()
        });
        if let Some(a) = agent {
            t.agents.insert(a, last_agent);
        }
        if let Some(from) = v[read::STITCHED_FROM].as_str() {
            insert_sorted(&mut t.stitched, from);
        }
        let span = ids.span(v[read::SPAN]);
        t.parents.insert(span, ids.parent(v[read::PARENT]));
    }

    /// The longest chain of parent links; a parent not seen ends a chain.
    pub fn depth(&self) -> u32 {
        let parents = self.parents.to_map();
        let mut memo: HashMap<u64, u32> =
            HashMap::with_capacity_and_hasher(parents.len(), Default::default());
        let mut deepest = 0;
        for &span in parents.keys() {
            // Walk up to a known depth, then fill in on the way back.
            let mut chain = Vec::new();
            let mut at = span;
            let base = loop {
                if let Some(&d) = memo.get(&at) {
                    break d;
                }
                if chain.len() > parents.len() {
                    break 0; // a cycle: ids are not trusted input
                }
                chain.push(at);
                match parents.get(&at) {
                    Some(&p) if p != 0 && parents.contains_key(&p) => at = p,
                    _ => break 0,
                }
            };
            for (i, s) in chain.iter().rev().enumerate() {
                memo.insert(*s, base + i as u32 + 1);
            }
            deepest = deepest.max(memo.get(&span).copied().unwrap_or(1));
        }
        deepest
    }

    fn duration_ms(&self) -> f64 {
        self.end.saturating_sub(self.start) as f64 / 1e6
    }

    fn summary(&self, id: &str) -> serde_json::Value {
        serde_json::json!({
            "trace_id": id,
            "spans": self.spans,
            "agents": self.agents,
            "depth": self.depth(),
            "cost_usd": self.cost,
            "duration_ms": self.duration_ms(),
            "errors": self.errors,
            "start_unix_nano": self.start,
            "stitched_traces": self.stitched,
        })
    }
}

/// Adds `item` to a sorted set of at most `MAX_AGENTS` names.
fn insert_sorted(set: &mut Vec<String>, item: &str) {
    if set.len() < MAX_AGENTS
        && let Err(at) = set.binary_search_by(|s| s.as_str().cmp(item))
    {
        set.insert(at, item.to_string());
    }
}

/// Agent names of a trace, sorted and distinct, at most `MAX_AGENTS`: none
/// or one (most traces) without a vector, and each shared (`Rc`) with the
/// span it came from when the next span names it again (one allocation
/// for a run of traces with the same agent). Encoded as a list of strings.
#[derive(Clone, Default, Debug, PartialEq)]
enum Names {
    #[default]
    None,
    One(Rc<str>),
    Many(Vec<Rc<str>>),
}

impl Names {
    fn as_slice(&self) -> &[Rc<str>] {
        match self {
            Names::None => &[],
            Names::One(name) => std::slice::from_ref(name),
            Names::Many(names) => names,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        self.as_slice().iter().map(|n| &**n)
    }

    /// Adds `name` as `insert_sorted` does; `last` is the name added last.
    fn insert(&mut self, name: &str, last: &mut Option<Rc<str>>) {
        let names = self.as_slice();
        if names.len() >= MAX_AGENTS {
            return;
        }
        let Err(at) = names.binary_search_by(|n| (**n).cmp(name)) else {
            return;
        };
        let name = match last {
            Some(l) if same(l, name) => l.clone(),
            _ => last.insert(name.into()).clone(),
        };
        *self = match std::mem::take(self) {
            Names::None => Names::One(name),
            Names::One(first) if at == 0 => Names::Many(vec![name, first]),
            Names::One(first) => Names::Many(vec![first, name]),
            Names::Many(mut names) => {
                names.insert(at, name);
                Names::Many(names)
            }
        };
    }
}

impl From<Vec<String>> for Names {
    /// Names already sorted and distinct (as encoded).
    fn from(names: Vec<String>) -> Names {
        match names.len() {
            0 => Names::None,
            1 => Names::One(names[0].as_str().into()),
            _ => Names::Many(names.iter().map(|n| n.as_str().into()).collect()),
        }
    }
}

impl Serialize for Names {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<String>::deserialize(d)?.into())
    }
}

/// The first 8 bytes of a hex id as a number (0 when absent or not hex),
/// as `u64::from_str_radix` reads its first 16 characters.
#[inline(always)]
fn id64(v: ValueRef<'_>) -> u64 {
    v.as_str()
        .and_then(|s| s.as_bytes().first_chunk::<16>())
        .and_then(hex16)
        .unwrap_or(0)
}

/// A row of a batch: the values of the reads, in manifest order.
type Row<'a> = [ValueRef<'a>; read::WIDTH];

/// The ids of a run of one trace's spans read last, with their `id64`: a
/// span's parent is usually one of them (the root, most often), found here
/// by comparing rather than read again.
#[derive(Default)]
struct Ids<'a> {
    /// Starts as `("", 0)`: also what `id64` gives an empty id.
    recent: [(&'a str, u64); 4],
    next: usize,
}

impl<'a> Ids<'a> {
    /// `id64` of a span's id, kept for the spans after it.
    #[inline(always)]
    fn span(&mut self, v: ValueRef<'a>) -> u64 {
        let id = id64(v);
        if let Some(s) = v.as_str() {
            self.recent[self.next % 4] = (s, id);
            self.next += 1;
        }
        id
    }

    /// `id64` of a parent id, from the ids kept if it is one of them.
    #[inline(always)]
    fn parent(&mut self, v: ValueRef<'a>) -> u64 {
        if let Some(p) = v.as_str()
            && let Some(&(_, id)) = self.recent.iter().find(|(s, _)| same(s, p))
        {
            return id;
        }
        id64(v)
    }
}

/// A trace's span -> parent links, in the order added: a push per span
/// where a map hashed and often grew (most traces have a few spans). A span
/// added again is resolved when read, the last link winning as in a map;
/// `insert` compacts the list before it grows, so spans sent again and again
/// do not grow it without bound. Encoded as the map it replaces.
#[derive(Clone, Default, Debug)]
struct Parents(Vec<(u64, u64)>);

impl Parents {
    fn insert(&mut self, span: u64, parent: u64) {
        if self.0.len() == self.0.capacity() && self.0.len() >= 16 {
            self.compact();
        }
        self.0.push((span, parent));
    }

    /// Keeps the last link of each span; leaves room for as many again, so
    /// that compacting costs a constant per link added.
    fn compact(&mut self) {
        // Stable: within a span, links stay in the order added.
        self.0.sort_by_key(|&(span, _)| span);
        let mut kept = 0;
        for i in 0..self.0.len() {
            if i + 1 == self.0.len() || self.0[i + 1].0 != self.0[i].0 {
                self.0[kept] = self.0[i];
                kept += 1;
            }
        }
        self.0.truncate(kept);
        self.0.reserve(kept);
    }

    fn reserve(&mut self, more: usize) {
        self.0.reserve(more);
    }

    /// Span -> parent, the last link of each span.
    fn to_map(&self) -> HashMap<u64, u64> {
        let mut map = HashMap::with_capacity_and_hasher(self.0.len(), Default::default());
        map.extend(self.0.iter().copied());
        map
    }
}

impl PartialEq for Parents {
    fn eq(&self, other: &Self) -> bool {
        self.to_map() == other.to_map()
    }
}

impl Serialize for Parents {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_map().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Parents {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = HashMap::<u64, u64>::deserialize(d)?;
        Ok(Parents(map.into_iter().collect()))
    }
}

/// The traces kept, by id; looked up by `&str` (an id of the usual length is
/// copied onto the stack, not allocated).
#[derive(Serialize, Deserialize, Default)]
#[serde(transparent)]
struct TraceMap(HashMap<TraceKey, Trace>);

impl TraceMap {
    fn get(&self, id: &str) -> Option<&Trace> {
        self.0.get(&TraceKey::of(id))
    }

    #[cfg(test)]
    fn contains_key(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn values(&self) -> impl Iterator<Item = &Trace> {
        self.0.values()
    }
}

impl std::ops::Index<&str> for TraceMap {
    type Output = Trace;
    fn index(&self, id: &str) -> &Trace {
        self.get(id).expect("a kept trace")
    }
}

#[derive(Serialize, Deserialize, Default)]
struct Kept {
    traces: TraceMap,
    /// Traces seen in all, and forgotten for `max_traces`.
    seen: u64,
    forgotten: u64,
}

pub struct State {
    config: Config,
    kept: Kept,
    /// The agent name added last (see `Names`).
    last_agent: Option<Rc<str>>,
}

impl State {
    fn new(config: Config) -> Result<State, String> {
        if config.max_traces == 0 {
            return Err("config.max_traces must be at least 1".into());
        }
        Ok(State {
            config,
            kept: Kept::default(),
            last_agent: None,
        })
    }

    /// Adds one span.
    pub fn add(&mut self, v: &[ValueRef<'_>]) {
        if let Some(id) = v[read::TRACE].as_str() {
            let v = v.first_chunk().expect("rows of WIDTH");
            let t = Self::trace(&mut self.kept, id, 1);
            t.add(v, &mut self.last_agent, &mut Ids::default());
        }
    }

    /// Adds a batch's spans. A trace's spans come together (the trace
    /// hold releases traces whole): one lookup for each run of them.
    fn add_rows(&mut self, rows: &Rows<'_>) {
        let mut r = 0;
        while r < rows.len() {
            let Some(id) = rows.row(r)[read::TRACE].as_str() else {
                r += 1;
                continue;
            };
            let end = (r + 1..rows.len())
                .find(|&e| {
                    !rows.row(e)[read::TRACE]
                        .as_str()
                        .is_some_and(|t| same(t, id))
                })
                .unwrap_or(rows.len());
            let t = Self::trace(&mut self.kept, id, end - r);
            let mut ids = Ids::default();
            for row in r..end {
                let v = rows.row(row).first_chunk().expect("rows of WIDTH");
                t.add(v, &mut self.last_agent, &mut ids);
            }
            r = end;
        }
    }

    /// The trace `id`, kept from now on if it was not, with room for
    /// `spans` more.
    fn trace<'k>(kept: &'k mut Kept, id: &str, spans: usize) -> &'k mut Trace {
        let seen = &mut kept.seen;
        let t = kept.traces.0.entry(TraceKey::of(id)).or_insert_with(|| {
            *seen += 1;
            Trace::new()
        });
        t.parents.reserve(spans);
        t
    }

    /// Forgets the least recently active traces beyond `max_traces`, down
    /// to half of it (`plume_sdk::bound`: short pauses, constant work per
    /// span). Each forgetting is a pass over every trace kept; down to nine
    /// tenths, those passes cost ~100 ns a span at 25,000 traces a second
    /// (BENCHMARKS.md), down to half a fifth of that.
    fn bound(&mut self) {
        let max = self.config.max_traces;
        if self.kept.traces.len() <= max {
            return;
        }
        let drop = self.kept.traces.len() - (max - max / 2);
        let forgotten = plume_sdk::bound::forget_lowest(&mut self.kept.traces.0, drop, |t| t.end);
        self.kept.forgotten += forgotten as u64;
    }

    pub fn report(&self) -> serde_json::Value {
        let traces = &self.kept.traces;
        let top = |mut v: Vec<(&TraceKey, &Trace)>, key: &dyn Fn(&Trace) -> f64| {
            v.sort_by(|a, b| {
                key(b.1)
                    .total_cmp(&key(a.1))
                    .then_with(|| a.0.as_str().cmp(b.0.as_str()))
            });
            v.into_iter()
                .take(self.config.top)
                .map(|(id, t)| t.summary(id.as_str()))
                .collect::<Vec<_>>()
        };
        let all: Vec<(&TraceKey, &Trace)> = traces.0.iter().collect();
        let errors: Vec<(&TraceKey, &Trace)> =
            all.iter().copied().filter(|(_, t)| t.errors > 0).collect();
        let mut durations: Vec<f64> = traces.values().map(Trace::duration_ms).collect();
        durations.sort_by(f64::total_cmp);
        let pct = |q: f64| -> Option<f64> {
            if durations.is_empty() {
                return None;
            }
            let i = ((q * durations.len() as f64).ceil() as usize).clamp(1, durations.len()) - 1;
            Some(durations[i])
        };
        serde_json::json!({"traces": {
            "kept": traces.len(),
            "seen": self.kept.seen,
            "forgotten": self.kept.forgotten,
            "with_errors": errors.len(),
            "multi_agent": traces.values().filter(|t| t.agents.len() > 1).count(),
            "with_stitched_sub_agents": traces.values().filter(|t| !t.stitched.is_empty()).count(),
            "max_depth": traces.values().map(Trace::depth).max().unwrap_or(0),
            "duration_ms": {"p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99)},
            "most_expensive": top(all.clone(), &|t| t.cost),
            "slowest": top(all, &Trace::duration_ms),
            "latest_with_errors": top(errors, &|t| t.end as f64),
        }})
    }
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

struct Traces;

impl Guest for Traces {
    fn init(config: String) -> Result<Manifest, String> {
        let state = State::new(plume_sdk::parse_config(&config)?)?;
        let attr = |k: &str| Field::Attribute(k.to_string());
        let reads = vec![
            Field::TraceId,
            Field::SpanId,
            Field::ParentSpanId,
            Field::StartTime,
            Field::EndTime,
            Field::StatusCode,
            attr("gen_ai.agent.name"),
            attr("gen_ai.usage.cost"),
            attr("plume.cost.counted"),
            Field::ResourceAttribute("service.name".into()),
            attr("gen_ai.operation.name"),
            attr("plume.trace.stitched_from"),
        ];
        debug_assert_eq!(reads.len(), read::WIDTH);
        STATE.with(|s| *s.borrow_mut() = Some(state));
        Ok(Manifest {
            reads,
            writes: vec![],
            require_any: vec![],
            sparse: false,
        })
    }

    fn observe(batch: Batch) -> Result<(), String> {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let state = s.as_mut().ok_or("observe before init")?;
            state.add_rows(&Rows::new(&batch, read::WIDTH)?);
            state.bound();
            Ok(())
        })
    }

    fn tick(_now: u64) -> Result<Vec<Alert>, String> {
        Ok(vec![])
    }

    fn report() -> String {
        STATE.with(|s| {
            s.borrow()
                .as_ref()
                .map(|st| st.report().to_string())
                .unwrap_or_else(|| "{}".into())
        })
    }

    fn snapshot() -> Vec<u8> {
        STATE.with(|s| {
            s.borrow()
                .as_ref()
                .map(|st| plume_sdk::state::save(&st.kept))
                .unwrap_or_default()
        })
    }

    fn restore(state: Vec<u8>) -> Result<(), String> {
        let kept: Kept = plume_sdk::state::load(&state)?;
        STATE.with(|s| {
            s.borrow_mut().as_mut().ok_or("restore before init")?.kept = kept;
            Ok(())
        })
    }
}

export_evaluator!(Traces);

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[allow(clippy::too_many_arguments)]
    fn row<'a>(
        trace: &'a str,
        span: &'a str,
        parent: Option<&'a str>,
        start_ms: i64,
        end_ms: i64,
        error: bool,
        agent: Option<&'a str>,
        cost: Option<(f64, bool)>,
    ) -> Vec<ValueRef<'a>> {
        let mut v = vec![ValueRef::Absent; read::WIDTH];
        v[read::TRACE] = ValueRef::Str(trace);
        v[read::SPAN] = ValueRef::Str(span);
        v[read::PARENT] = parent.map_or(ValueRef::Absent, ValueRef::Str);
        v[read::START] = ValueRef::Int(start_ms * MS);
        v[read::END] = ValueRef::Int(end_ms * MS);
        v[read::STATUS] = ValueRef::Str(if error { "error" } else { "unset" });
        v[read::AGENT] = agent.map_or(ValueRef::Absent, ValueRef::Str);
        if let Some((c, counted)) = cost {
            v[read::COST] = ValueRef::Float(c);
            v[read::COUNTED] = ValueRef::Boolean(counted);
        }
        v
    }

    fn state() -> State {
        State::new(Config {
            max_traces: 10,
            top: 3,
        })
        .unwrap()
    }

    #[test]
    fn summarises_agents_depth_cost_latency_and_errors() {
        let mut st = state();
        let t = "aa";
        for v in [
            row(
                t,
                "0000000000000001",
                None,
                0,
                900,
                false,
                Some("planner"),
                None,
            ),
            row(
                t,
                "0000000000000002",
                Some("0000000000000001"),
                10,
                300,
                false,
                None,
                Some((0.5, true)),
            ),
            // The same call recorded again: not counted.
            row(
                t,
                "0000000000000003",
                Some("0000000000000002"),
                20,
                290,
                false,
                None,
                Some((0.5, false)),
            ),
            row(
                t,
                "0000000000000004",
                Some("0000000000000001"),
                400,
                800,
                true,
                Some("researcher"),
                Some((0.25, true)),
            ),
        ] {
            st.add(&v);
        }
        let tr = &st.kept.traces[t];
        assert_eq!(tr.spans, 4);
        assert_eq!(tr.depth(), 3);
        assert_eq!(tr.cost, 0.75);
        assert_eq!(tr.errors, 1);
        assert_eq!(tr.duration_ms(), 900.0);
        assert_eq!(
            tr.agents.iter().collect::<Vec<_>>(),
            ["planner", "researcher"]
        );
    }

    #[test]
    fn agent_names_stay_sorted_distinct_and_bounded() {
        let mut agents = Vec::new();
        for a in ["writer", "planner", "writer", "critic", "planner"] {
            insert_sorted(&mut agents, a);
        }
        assert_eq!(agents, ["critic", "planner", "writer"]);
        for i in 0..100 {
            insert_sorted(&mut agents, &format!("agent-{i:03}"));
        }
        assert_eq!(agents.len(), MAX_AGENTS);
        assert!(agents.windows(2).all(|w| w[0] < w[1]));
        // Written as the BTreeSet it replaces was, so older snapshots load.
        let set: std::collections::BTreeSet<String> = agents.iter().cloned().collect();
        assert_eq!(
            plume_sdk::state::save(&set),
            plume_sdk::state::save(&agents)
        );
    }

    #[test]
    fn a_late_span_joins_its_trace_and_depth_survives_missing_parents() {
        let mut st = state();
        st.add(&row(
            "bb",
            "0000000000000002",
            Some("0000000000000001"),
            5,
            10,
            false,
            None,
            None,
        ));
        assert_eq!(st.kept.traces["bb"].depth(), 1, "parent not seen yet");
        st.add(&row(
            "bb",
            "0000000000000001",
            None,
            0,
            20,
            false,
            None,
            None,
        ));
        assert_eq!(st.kept.traces["bb"].depth(), 2);
        assert_eq!(st.kept.seen, 1);
    }

    #[test]
    fn keeps_at_most_max_traces_forgetting_the_least_recent() {
        let mut st = state();
        for i in 0..25 {
            st.add(&row(
                &format!("t{i:02}"),
                "0000000000000001",
                None,
                i,
                i + 1,
                false,
                None,
                None,
            ));
            st.bound();
        }
        assert!(st.kept.traces.len() <= 10);
        assert!(st.kept.traces.contains_key("t24"));
        assert!(!st.kept.traces.contains_key("t00"));
        assert_eq!(st.kept.seen, 25);
        assert_eq!(st.kept.forgotten as usize + st.kept.traces.len(), 25);
    }

    #[test]
    fn forgetting_stops_at_the_bound_when_traces_end_at_the_same_time() {
        let mut st = state();
        for i in 0..11 {
            st.add(&row(
                &format!("t{i:02}"),
                "0000000000000001",
                None,
                5,
                7,
                false,
                None,
                None,
            ));
        }
        st.bound();
        assert_eq!(st.kept.traces.len(), 5, "max 10 keeps 5 after a bound");
        assert_eq!(st.kept.forgotten, 6);
    }

    #[test]
    fn report_lists_the_notable_traces() {
        let mut st = state();
        st.add(&row(
            "cheap",
            "0000000000000001",
            None,
            0,
            5000,
            false,
            None,
            Some((0.01, true)),
        ));
        st.add(&row(
            "dear",
            "0000000000000001",
            None,
            0,
            10,
            true,
            None,
            Some((3.0, true)),
        ));
        let r = &st.report()["traces"];
        assert_eq!(r["most_expensive"][0]["trace_id"], "dear");
        assert_eq!(r["slowest"][0]["trace_id"], "cheap");
        assert_eq!(r["latest_with_errors"][0]["trace_id"], "dear");
        assert_eq!(r["with_errors"], 1);
        assert_eq!(r["duration_ms"]["p50"], 10.0);
    }

    #[test]
    fn depth_terminates_on_a_cycle() {
        let mut st = state();
        st.add(&row(
            "cc",
            "0000000000000001",
            Some("0000000000000002"),
            0,
            1,
            false,
            None,
            None,
        ));
        st.add(&row(
            "cc",
            "0000000000000002",
            Some("0000000000000001"),
            0,
            1,
            false,
            None,
            None,
        ));
        assert!(st.kept.traces["cc"].depth() <= 3);
    }

    /// `id64` reads ids exactly as `u64::from_str_radix` of their first 16
    /// characters did (0 when it failed), eight digits at a time.
    #[test]
    fn ids_read_as_from_str_radix_did() {
        let reference = |s: &str| {
            s.get(..16)
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .unwrap_or(0)
        };
        let ids: Vec<String> = [
            "0000000000000000",
            "ffffffffffffffff",
            "FFFFFFFFFFFFFFFF",
            "0123456789abcdef",
            "0123456789ABCDEF",
            "fEdCbA9876543210",
            "0123456789abcdef0123",
            "+123456789abcdef",
            "++23456789abcdef",
            "-123456789abcdef",
            "0123456789abcde",
            "0123456789abcdeg",
            "0123456789abcdé",
            "0123456789abcdeé",
            "é123456789abcdef",
            "",
            "1",
        ]
        .map(String::from)
        .to_vec();
        // Every byte at every place: `plume_sdk::ids`'s tests.
        for s in &ids {
            assert_eq!(id64(ValueRef::Str(s)), reference(s), "{s:?}");
        }
        assert_eq!(id64(ValueRef::Absent), 0);
        assert_eq!(id64(ValueRef::Int(5)), 0);
    }

    #[test]
    fn parent_links_keep_the_last_link_of_a_span_and_stay_bounded() {
        let mut p = Parents::default();
        p.insert(1, 0);
        p.insert(2, 1);
        p.insert(2, 7); // the same span again: the last link wins
        assert_eq!(p.to_map(), [(1, 0), (2, 7)].into_iter().collect());
        // A span sent again and again does not grow the list without bound.
        for i in 0..10_000 {
            p.insert(3, i);
        }
        assert!(p.0.len() <= 64, "{} links kept", p.0.len());
        assert_eq!(p.to_map()[&3], 9_999);
        assert_eq!(p.to_map()[&2], 7);
        // Distinct spans are all kept, compacted or not.
        let mut q = Parents::default();
        for i in 0..1_000 {
            q.insert(i, i / 2);
        }
        let m = q.to_map();
        assert_eq!(m.len(), 1_000);
        assert!((0..1_000).all(|i| m[&i] == i / 2));
    }

    /// Snapshots keep the format of a map from trace id strings to traces
    /// with a map of parent links, so they load across builds.
    #[test]
    fn snapshots_encode_ids_and_links_as_the_maps_they_replace() {
        #[derive(Serialize)]
        struct OldTrace {
            spans: u32,
            start: u64,
            end: u64,
            errors: u32,
            cost: f64,
            agents: Vec<String>,
            stitched: Vec<String>,
            parents: std::collections::BTreeMap<u64, u64>,
        }
        #[derive(Serialize)]
        struct OldKept {
            traces: std::collections::BTreeMap<String, OldTrace>,
            seen: u64,
            forgotten: u64,
        }
        let long = "0af7651916cd43dd8448eb211c80319c";
        let old_trace = |parents: &[(u64, u64)]| OldTrace {
            spans: 2,
            start: 5,
            end: 9,
            errors: 1,
            cost: 0.5,
            agents: vec!["planner".into()],
            stitched: vec![],
            parents: parents.iter().copied().collect(),
        };
        let old = OldKept {
            traces: [long, "short"]
                .map(|id| (id.to_string(), old_trace(&[(1, 0), (2, 1)])))
                .into(),
            seen: 3,
            forgotten: 1,
        };
        let kept: Kept = plume_sdk::state::load(&plume_sdk::state::save(&old)).expect("loads");
        assert_eq!((kept.seen, kept.forgotten, kept.traces.len()), (3, 1, 2));
        assert!(matches!(
            kept.traces.0.keys().find(|k| k.as_str() == long),
            Some(TraceKey::Id(_))
        ));
        let t = &kept.traces["short"];
        assert_eq!((t.spans, t.depth(), t.agents.len()), (2, 2, 1));

        // One trace with one link encodes to the very same bytes (maps of
        // several entries differ only in their order).
        let old_one = OldKept {
            traces: [(long.to_string(), old_trace(&[(1, 0)]))].into(),
            seen: 0,
            forgotten: 0,
        };
        let mut trace = Trace::new();
        (
            trace.spans,
            trace.start,
            trace.end,
            trace.errors,
            trace.cost,
        ) = (2, 5, 9, 1, 0.5);
        trace.agents = vec!["planner".to_string()].into();
        trace.parents.insert(1, 0);
        let mut mine = Kept::default();
        mine.traces.0.insert(TraceKey::of(long), trace);
        assert_eq!(
            plume_sdk::state::save(&mine),
            plume_sdk::state::save(&old_one)
        );
    }

    /// A batch is added a run of a trace's spans at a time; traces that
    /// come back later in the batch, or interleave, add up as span by span.
    #[test]
    fn runs_of_a_trace_add_up_as_single_spans() {
        let ids = [
            "t1",
            "0af7651916cd43dd8448eb211c80319c",
            "t1",
            "t2",
            "t2",
            "t1",
        ];
        let links: Vec<(String, String)> = (0..ids.len())
            .map(|i| (format!("{:016x}", i + 1), format!("{i:016x}")))
            .collect();
        let rows: Vec<Vec<ValueRef>> = ids
            .iter()
            .zip(&links)
            .enumerate()
            .map(|(i, (t, (span, parent)))| {
                let (start, end) = (i as i64, 10 + i as i64);
                row(
                    t,
                    span,
                    Some(parent),
                    start,
                    end,
                    i == 3,
                    Some("a"),
                    Some((0.5, true)),
                )
            })
            .collect();
        let mut one_by_one = state();
        for v in &rows {
            one_by_one.add(v);
        }
        // The same rows through a batch.
        let batch = plume_sdk::dense_batch(&rows);
        let mut by_runs = state();
        by_runs.add_rows(&Rows::new(&batch, read::WIDTH).expect("a batch"));
        assert_eq!(by_runs.kept.seen, 3);
        assert_eq!(by_runs.report(), one_by_one.report());
        for id in ["t1", "t2", ids[1]] {
            assert_eq!(by_runs.kept.traces[id], one_by_one.kept.traces[id]);
        }
        assert_eq!(by_runs.kept.traces["t1"].spans, 3);
    }
}
