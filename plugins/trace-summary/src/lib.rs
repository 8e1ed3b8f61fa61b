//! `builtin:traces`: a summary of each trace: the agents in it, its depth, its
//! cost, its end-to-end latency and its errors; the report lists the most
//! expensive and slowest traces and the latest with errors, and counts over
//! all traces kept.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `max_traces` | `10000` | traces kept; beyond it the least recently active are forgotten (counted) |
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
use plume_sdk::types::{Alert, Batch, Field, Manifest};
use plume_sdk::{Rows, ValueRef};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;

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
    /// Sorted, distinct: a vector rather than a `BTreeSet`, whose first node
    /// alone takes ~300 bytes for the one agent most traces have (and 10,000
    /// traces are kept). Snapshots and reports read the same either way.
    agents: Vec<String>,
    /// Trace ids of sub-agent traces stitched into this one (sorted, distinct).
    stitched: Vec<String>,
    /// Span -> parent (0: root), first 8 bytes of the ids: enough for depth.
    parents: HashMap<u64, u64>,
}

impl Trace {
    /// Adds one span of this trace.
    fn add(&mut self, v: &[ValueRef<'_>]) {
        let t = self;
        t.spans += 1;
        let start = v[read::START].as_i64().unwrap_or(0).max(0) as u64;
        let end = v[read::END].as_i64().unwrap_or(0).max(0) as u64;
        t.start = t.start.min(start);
        t.end = t.end.max(end);
        if v[read::STATUS].as_str() == Some("error") {
            t.errors += 1;
        }
        if v[read::COUNTED].as_bool() != Some(false)
            && let Some(c) = v[read::COST].as_f64()
        {
            t.cost += c;
        }
        let agent = v[read::AGENT].as_str().or_else(|| {
            (v[read::OPERATION].as_str() == Some("invoke_agent"))
                .then(|| v[read::SERVICE].as_str())
                .flatten()
        });
        if let Some(a) = agent {
            insert_sorted(&mut t.agents, a);
        }
        if let Some(from) = v[read::STITCHED_FROM].as_str() {
            insert_sorted(&mut t.stitched, from);
        }
        t.parents.insert(id64(v[read::SPAN]), id64(v[read::PARENT]));
    }

    /// The longest chain of parent links; a parent not seen ends a chain.
    pub fn depth(&self) -> u32 {
        let mut memo: HashMap<u64, u32> =
            HashMap::with_capacity_and_hasher(self.parents.len(), Default::default());
        let mut deepest = 0;
        for &span in self.parents.keys() {
            // Walk up to a known depth, then fill in on the way back.
            let mut chain = Vec::new();
            let mut at = span;
            let base = loop {
                if let Some(&d) = memo.get(&at) {
                    break d;
                }
                if chain.len() > self.parents.len() {
                    break 0; // a cycle: ids are not trusted input
                }
                chain.push(at);
                match self.parents.get(&at) {
                    Some(&p) if p != 0 && self.parents.contains_key(&p) => at = p,
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

/// The first 8 bytes of a hex id as a number (0 when absent or not hex).
fn id64(v: ValueRef<'_>) -> u64 {
    v.as_str()
        .and_then(|s| s.get(..16))
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .unwrap_or(0)
}

#[derive(Serialize, Deserialize, Default)]
struct Kept {
    traces: HashMap<String, Trace>,
    /// Traces seen in all, and forgotten for `max_traces`.
    seen: u64,
    forgotten: u64,
}

pub struct State {
    config: Config,
    kept: Kept,
}

impl State {
    fn new(config: Config) -> Result<State, String> {
        if config.max_traces == 0 {
            return Err("config.max_traces must be at least 1".into());
        }
        Ok(State {
            config,
            kept: Kept::default(),
        })
    }

    /// Adds one span.
    pub fn add(&mut self, v: &[ValueRef<'_>]) {
        let Some(trace_id) = v[read::TRACE].as_str() else {
            return;
        };
        // Most spans join a trace already kept: one lookup, and a key
        // allocated only for a new trace.
        if let Some(t) = self.kept.traces.get_mut(trace_id) {
            t.add(v);
            return;
        }
        self.kept.seen += 1;
        self.kept
            .traces
            .entry(trace_id.to_string())
            .or_insert(Trace {
                start: u64::MAX,
                ..Trace::default()
            })
            .add(v);
    }

    /// Forgets the least recently active traces beyond `max_traces`, a tenth
    /// at a time (`plume_sdk::bound`: short pauses, constant work per span).
    fn bound(&mut self) {
        let max = self.config.max_traces;
        if self.kept.traces.len() <= max {
            return;
        }
        let drop = self.kept.traces.len() - (max - max / 10);
        let forgotten = plume_sdk::bound::forget_lowest(&mut self.kept.traces, drop, |t| t.end);
        self.kept.forgotten += forgotten as u64;
    }

    pub fn report(&self) -> serde_json::Value {
        let traces = &self.kept.traces;
        let top = |mut v: Vec<(&String, &Trace)>, key: &dyn Fn(&Trace) -> f64| {
            v.sort_by(|a, b| key(b.1).total_cmp(&key(a.1)).then_with(|| a.0.cmp(b.0)));
            v.into_iter()
                .take(self.config.top)
                .map(|(id, t)| t.summary(id))
                .collect::<Vec<_>>()
        };
        let all: Vec<(&String, &Trace)> = traces.iter().collect();
        let errors: Vec<(&String, &Trace)> =
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
            for (_, v) in Rows::new(&batch, read::WIDTH)?.iter() {
                state.add(v);
            }
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
        assert_eq!(st.kept.traces.len(), 9, "max 10 keeps 9 after a bound");
        assert_eq!(st.kept.forgotten, 2);
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
}
