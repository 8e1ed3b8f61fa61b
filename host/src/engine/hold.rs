//! The trace hold: spans wait here until the rest of their trace has come in.
//!
//! One model call is often recorded by several spans (a framework span around
//! a provider span, two instrumentations, an agent span restating its calls),
//! and they arrive seconds apart, in any order, in different batches. The hold
//! groups spans by trace id, and also by the values of `join_on` attributes
//! (a provider's response id shared by spans of *unrelated* traces), and
//! releases a group once no span has joined it for `wait`, or for `after_root`
//! once its root span has arrived (a process exports a root after its
//! children). Processors then see every span of a call in one batch, so their
//! decisions do not depend on arrival order.
//!
//! Time is whatever clock the engine passes: wall time for the service, event
//! time for `replay` (so a replay is deterministic). Memory is bounded by
//! `max_spans`: beyond it the groups due first are released early, counted.
//! A span that arrives again with the same trace and span id while its first
//! copy is held (an exporter retrying a request) is dropped and counted.
//!
//! Sub-agents that start a trace of their own but record their caller's W3C
//! `traceparent` (in a `stitch_attributes` attribute, or as a span link with
//! `stitch_links`) are stitched under the caller: their spans join the
//! caller's group, and on release take the caller's trace id, their root
//! takes the calling span as parent, and keeps its own trace id in
//! `plume.trace.stitched_from`. Stitched trace ids are remembered (bounded)
//! so their late spans are stitched too.

use crate::span::trace_context::parse_traceparent;
use crate::span::{AttrValue, Key, Span, SpanId, TraceId};
use foldhash::{HashMap, HashMapExt, HashSet};
use slab::Slab;
use smallvec::SmallVec;
use std::cmp::Reverse as Later;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

/// How the hold groups and releases spans (`[traces]` in pipeline.toml).
#[derive(Debug, Clone, PartialEq)]
pub struct HoldSettings {
    /// Release a group once no span joined it for this long. Zero disables the hold.
    pub wait: Duration,
    /// Release sooner, this long after the last arrival, once the group's root arrived.
    pub after_root: Duration,
    /// Spans held at most; the groups due first are released early beyond it.
    pub max_spans: usize,
    /// Attributes whose equal values join spans of different traces into one group.
    pub join_on: Vec<String>,
    /// Attributes in which a sub-agent's root span records its caller's `traceparent`.
    pub stitch_attributes: Vec<String>,
    /// Stitch a root span under the span its first link (to another trace) points at.
    pub stitch_links: bool,
}

/// The attribute a stitched root span keeps its own trace id in.
pub const STITCHED_FROM: &str = "plume.trace.stitched_from";

/// Stitched trace ids remembered for their late spans, at most.
const STITCH_MEMORY: usize = 100_000;

impl Default for HoldSettings {
    fn default() -> Self {
        HoldSettings {
            wait: Duration::from_secs(5),
            after_root: Duration::from_millis(250),
            max_spans: 100_000,
            join_on: vec!["gen_ai.response.id".into()],
            stitch_attributes: Vec::new(),
            stitch_links: false,
        }
    }
}

/// Counters of the hold, for the report and `/metrics`.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub struct HoldStats {
    /// Spans held now.
    pub held: u64,
    /// Most spans held at once.
    pub held_max: u64,
    /// Groups released because `max_spans` was reached.
    pub released_early: u64,
    /// Spans dropped because the same trace and span id was already held.
    pub duplicate_spans: u64,
    /// Groups merged because a `join_on` value linked their traces.
    pub joined_groups: u64,
    /// Traces stitched under a caller's trace.
    pub stitched_traces: u64,
    /// `traceparent` values in `stitch_attributes` that were invalid (ignored).
    pub invalid_traceparents: u64,
    /// Time spent holding and releasing, ns.
    pub nanos: u64,
}

struct Group {
    spans: Vec<Span>,
    /// Mostly one trace and a call's response ids: kept inline, so that a
    /// new group allocates only its spans.
    traces: SmallVec<[TraceId; 1]>,
    /// The group's `join_on` values, by [`join_hash`].
    keys: SmallVec<[u64; 2]>,
    /// The (trace, span) ids held, once the group is large enough that
    /// looking through its spans for a resent one would cost more.
    ids: Option<HashSet<(TraceId, SpanId)>>,
    has_root: bool,
    /// Arrival order of the group's first span: ties in release order, and
    /// tells a group from an earlier one in the same slot.
    seq: u64,
    deadline: u64,
    /// The last `push` that added a span (see `Hold::touched`).
    pushed_in: u64,
}

/// Groups larger than this keep a set of their span ids for the duplicate
/// test; smaller ones are looked through.
const GROUP_ID_SET: usize = 32;

impl Group {
    /// True when the group holds a span with these ids.
    fn holds(&self, trace: TraceId, span: SpanId) -> bool {
        match &self.ids {
            Some(ids) => ids.contains(&(trace, span)),
            None => self
                .spans
                .iter()
                .any(|s| s.span_id == span && s.trace_id == trace),
        }
    }

    /// Adds one span, keeping `ids` when the group needs it. (One span at a
    /// time and by value: a `Span` is moved once, from the arriving batch.)
    fn add(&mut self, span: Span) {
        if let Some(ids) = &mut self.ids {
            ids.insert((span.trace_id, span.span_id));
        }
        self.spans.push(span);
        self.index_ids();
    }

    /// Takes the spans of a group merged into this one.
    fn absorb(&mut self, spans: Vec<Span>) {
        if let Some(ids) = &mut self.ids {
            ids.extend(spans.iter().map(|s| (s.trace_id, s.span_id)));
        }
        self.spans.extend(spans);
        self.index_ids();
    }

    fn index_ids(&mut self) {
        if self.ids.is_none() && self.spans.len() > GROUP_ID_SET {
            self.ids = Some(self.spans.iter().map(|s| (s.trace_id, s.span_id)).collect());
        }
    }
}

/// A `join_on` value as the hold indexes it: a fixed 64-bit hash, so that
/// indexing a span's response id allocates nothing. Two values that share a
/// hash (about one chance in 10^10 among 100,000 held values) only put
/// their traces in one group, released together; the stages still tell
/// the calls apart by the values themselves.
fn join_hash(value: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x706c_756d_6568).hash_one(value)
}

fn keys(names: &[String]) -> Vec<Key> {
    names.iter().map(|n| Key::from(n.as_str())).collect()
}

/// Spans waiting for their trace; see the module documentation.
pub struct Hold {
    settings: HoldSettings,
    /// `join_on` and `stitch_attributes` as keys, looked up in every span
    /// (interned keys compare by address).
    join_keys: Vec<Key>,
    stitch_keys: Vec<Key>,
    /// Groups by slot; a released group's slot is reused.
    groups: Slab<Group>,
    by_trace: HashMap<TraceId, usize>,
    by_key: HashMap<u64, usize>,
    /// Spans held in all groups.
    held: usize,
    /// (deadline, seq, slot): stale entries are skipped when popped.
    due: BinaryHeap<Later<(u64, u64, usize)>>,
    next_seq: u64,
    /// Groups that got spans in the current `push`: their deadlines are
    /// queued once per push, not once per span.
    touched: Vec<usize>,
    pushes: u64,
    stats: HoldStats,
    /// Stitched trace -> (caller's trace, calling span), and arrival order to
    /// bound it.
    stitched: HashMap<TraceId, (TraceId, SpanId)>,
    stitched_order: VecDeque<TraceId>,
}

impl Hold {
    /// The lowest write-ahead log record of a held span, if any.
    pub fn min_seq(&self) -> Option<u64> {
        self.groups
            .iter()
            .flat_map(|(_, g)| g.spans.iter().map(|s| s.seq))
            .filter(|&q| q != 0)
            .min()
    }

    /// The settings in force.
    pub fn settings(&self) -> &HoldSettings {
        &self.settings
    }

    /// Takes new settings (a reload); held spans stay, with the deadlines
    /// they already have.
    pub fn set_settings(&mut self, settings: HoldSettings) {
        self.join_keys = keys(&settings.join_on);
        self.stitch_keys = keys(&settings.stitch_attributes);
        self.settings = settings;
    }

    /// An empty hold.
    pub fn new(settings: HoldSettings) -> Hold {
        Hold {
            join_keys: keys(&settings.join_on),
            stitch_keys: keys(&settings.stitch_attributes),
            settings,
            groups: Slab::new(),
            by_trace: HashMap::new(),
            by_key: HashMap::new(),
            held: 0,
            due: BinaryHeap::new(),
            next_seq: 0,
            touched: Vec::new(),
            pushes: 0,
            stats: HoldStats::default(),
            stitched: HashMap::new(),
            stitched_order: VecDeque::new(),
        }
    }

    /// False when `wait` is zero: spans pass straight through.
    pub fn enabled(&self) -> bool {
        !self.settings.wait.is_zero()
    }

    /// Counters so far.
    pub fn stats(&self) -> HoldStats {
        self.stats.clone()
    }

    /// Adds spans that arrived at `now` (ns on the engine's clock).
    pub fn push(&mut self, spans: Vec<Span>, now: u64) {
        let started = std::time::Instant::now();
        self.pushes += 1;
        for span in spans {
            if let Some(id) = self.place(&span, now) {
                self.groups[id].add(span);
            }
        }
        for id in std::mem::take(&mut self.touched) {
            if let Some(g) = self.groups.get(id) {
                self.due.push(Later((g.deadline, g.seq, id)));
            }
        }
        self.stats.held = self.held as u64;
        self.stats.held_max = self.stats.held_max.max(self.stats.held);
        self.stats.nanos += started.elapsed().as_nanos() as u64;
    }

    /// The group `span` joins, made or merged as its trace and join keys
    /// need, and updated for its arrival; `None` for a resent span (dropped).
    fn place(&mut self, span: &Span, now: u64) -> Option<usize> {
        // The span's group: its trace's, merged with those of its join keys.
        // A resent span can only be in its trace's group.
        let mut id = self.by_trace.get(&span.trace_id).copied();
        if let Some(g) = id
            && self.groups[g].holds(span.trace_id, span.span_id)
        {
            self.stats.duplicate_spans += 1;
            return None;
        }
        self.held += 1;
        for k in 0..self.join_keys.len() {
            let Some(value) = span
                .attributes
                .get_key(&self.join_keys[k])
                .and_then(|v| v.as_str())
            else {
                continue;
            };
            if value.is_empty() {
                continue;
            }
            let value = join_hash(value);
            id = Some(match (id, self.by_key.get(&value).copied()) {
                (Some(a), Some(b)) if a != b => self.merge(a, b),
                (Some(a), _) => {
                    let group = &mut self.groups[a];
                    if !group.keys.contains(&value) {
                        group.keys.push(value);
                        self.by_key.insert(value, a);
                    }
                    a
                }
                (None, Some(b)) => b,
                (None, None) => {
                    let g = self.new_group();
                    self.groups[g].keys.push(value);
                    self.by_key.insert(value, g);
                    g
                }
            });
        }
        let mut id = id.unwrap_or_else(|| self.new_group());
        let caller = self.caller_of(span);
        if let Some((caller_trace, _)) = caller {
            id = self.join_trace(id, caller_trace);
        }
        let group = &mut self.groups[id];
        if !group.traces.contains(&span.trace_id) {
            group.traces.push(span.trace_id);
            self.by_trace.insert(span.trace_id, id);
        }
        // A stitched sub-agent's root is not the root of the whole trace.
        group.has_root |= span.parent_span_id.is_none() && caller.is_none();
        let quiet = if group.has_root {
            self.settings.after_root.min(self.settings.wait)
        } else {
            self.settings.wait
        };
        group.deadline = now.saturating_add(quiet.as_nanos() as u64);
        if group.pushed_in != self.pushes {
            group.pushed_in = self.pushes;
            self.touched.push(id);
        }
        Some(id)
    }

    /// The caller a sub-agent's root span records, when stitching is on;
    /// remembers the stitch.
    fn caller_of(&mut self, span: &Span) -> Option<(TraceId, SpanId)> {
        if span.parent_span_id.is_some() {
            return None;
        }
        let mut caller = None;
        for key in &self.stitch_keys {
            let Some(value) = span.attributes.get_key(key).and_then(AttrValue::as_str) else {
                continue;
            };
            match parse_traceparent(value) {
                Ok(tp) => {
                    caller = Some((tp.trace_id, tp.parent_id));
                    break;
                }
                Err(e) => {
                    self.stats.invalid_traceparents += 1;
                    tracing::debug!(span = %span.span_id, "{key}: {e}");
                }
            }
        }
        if caller.is_none() && self.settings.stitch_links {
            caller = span
                .links
                .iter()
                .find(|l| l.trace_id != span.trace_id)
                .map(|l| (l.trace_id, l.span_id));
        }
        let (trace, at) = caller.filter(|(t, _)| *t != span.trace_id)?;
        if !self.stitched.contains_key(&span.trace_id) {
            self.stats.stitched_traces += 1;
            if self.stitched_order.len() >= STITCH_MEMORY
                && let Some(old) = self.stitched_order.pop_front()
            {
                self.stitched.remove(&old);
            }
            self.stitched_order.push_back(span.trace_id);
        }
        self.stitched.insert(span.trace_id, (trace, at));
        Some((trace, at))
    }

    /// Puts trace `trace` in group `id` (merging with the group it is in).
    fn join_trace(&mut self, id: usize, trace: TraceId) -> usize {
        match self.by_trace.get(&trace).copied() {
            Some(other) if other != id => self.merge(id, other),
            Some(_) => id,
            None => {
                self.groups[id].traces.push(trace);
                self.by_trace.insert(trace, id);
                id
            }
        }
    }

    /// Gives spans of stitched traces their caller's trace id (the outermost
    /// caller's, for sub-agents of sub-agents) and their roots the calling span.
    fn stitch(&self, spans: &mut [Span]) {
        if self.stitched.is_empty() {
            return;
        }
        let key = Key::from(STITCHED_FROM);
        for s in spans {
            let Some(&(mut top, at)) = self.stitched.get(&s.trace_id) else {
                continue;
            };
            // Bounded: a cycle of stitches must not loop.
            for _ in 0..16 {
                match self.stitched.get(&top) {
                    Some(&(up, _)) if up != s.trace_id => top = up,
                    _ => break,
                }
            }
            if s.parent_span_id.is_none() {
                s.parent_span_id = Some(at);
                s.attributes
                    .set(key.clone(), AttrValue::Str(s.trace_id.to_string().into()));
            }
            s.trace_id = top;
        }
    }

    fn new_group(&mut self) -> usize {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.groups.insert(Group {
            spans: Vec::new(),
            traces: SmallVec::new(),
            keys: SmallVec::new(),
            ids: None,
            has_root: false,
            seq,
            deadline: 0,
            pushed_in: 0,
        })
    }

    /// Merges two groups; returns the survivor (the larger keeps its storage).
    fn merge(&mut self, a: usize, b: usize) -> usize {
        let (a_len, b_len) = (self.groups[a].spans.len(), self.groups[b].spans.len());
        let (into, from) = if a_len >= b_len { (a, b) } else { (b, a) };
        let from_group = self.groups.remove(from);
        for t in &from_group.traces {
            self.by_trace.insert(*t, into);
        }
        for k in &from_group.keys {
            self.by_key.insert(*k, into);
        }
        let group = &mut self.groups[into];
        group.absorb(from_group.spans);
        group.traces.extend(from_group.traces);
        group.keys.extend(from_group.keys);
        group.has_root |= from_group.has_root;
        group.seq = group.seq.min(from_group.seq);
        self.stats.joined_groups += 1;
        into
    }

    /// Releases the groups due at `now`, and beyond `max_spans` the ones due
    /// first; calls `out` once per group, in release order.
    pub fn release_due(&mut self, now: u64, mut out: impl FnMut(Vec<Span>)) {
        let started = std::time::Instant::now();
        while let Some(&Later((deadline, seq, id))) = self.due.peek() {
            let over = self.held > self.settings.max_spans;
            if deadline > now && !over {
                break;
            }
            self.due.pop();
            let current = self
                .groups
                .get(id)
                .is_some_and(|g| g.deadline == deadline && g.seq == seq);
            if !current {
                continue; // superseded by a later arrival, or merged away
            }
            if deadline > now {
                self.stats.released_early += 1;
            }
            out(self.remove(id));
        }
        self.stats.held = self.held as u64;
        self.stats.nanos += started.elapsed().as_nanos() as u64;
    }

    /// Releases everything held, in release order (shutdown, end of a replay).
    pub fn release_all(&mut self, out: impl FnMut(Vec<Span>)) {
        self.release_due(u64::MAX, out);
    }

    fn remove(&mut self, id: usize) -> Vec<Span> {
        let group = self.groups.remove(id);
        for t in &group.traces {
            self.by_trace.remove(t);
        }
        for k in &group.keys {
            self.by_key.remove(k);
        }
        self.held -= group.spans.len();
        let mut spans = group.spans;
        self.stitch(&mut spans);
        spans
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{AttrValue, Attributes};

    const MS: u64 = 1_000_000;

    fn span(trace: u8, id: u8, parent: Option<u8>, response: Option<&str>) -> Span {
        let mut attributes = Attributes::default();
        if let Some(r) = response {
            attributes.set("gen_ai.response.id".into(), AttrValue::Str(r.into()));
        }
        Span {
            trace_id: TraceId([trace; 16]),
            span_id: SpanId([id; 8]),
            parent_span_id: parent.map(|p| SpanId([p; 8])),
            attributes,
            ..Span::default()
        }
    }

    fn settings() -> HoldSettings {
        HoldSettings {
            wait: Duration::from_millis(100),
            after_root: Duration::from_millis(10),
            max_spans: 1000,
            ..HoldSettings::default()
        }
    }

    fn ids(groups: &[Vec<Span>]) -> Vec<Vec<u8>> {
        groups
            .iter()
            .map(|g| g.iter().map(|s| s.span_id.0[0]).collect())
            .collect()
    }

    #[test]
    fn a_trace_waits_until_quiet_then_leaves_whole() {
        let mut hold = Hold::new(settings());
        let mut out = Vec::new();
        hold.push(vec![span(1, 2, Some(1), None)], 0);
        hold.push(vec![span(2, 9, Some(8), None)], 50 * MS);
        hold.push(vec![span(1, 3, Some(1), None)], 60 * MS);
        hold.release_due(120 * MS, |g| out.push(g));
        assert!(
            out.is_empty(),
            "trace 1 got a span at 60 ms, trace 2 at 50 ms"
        );
        hold.release_due(150 * MS, |g| out.push(g));
        assert_eq!(ids(&out), vec![vec![9]]);
        hold.release_due(160 * MS, |g| out.push(g));
        assert_eq!(ids(&out), vec![vec![9], vec![2, 3]]);
        assert_eq!(hold.stats().held, 0);
    }

    #[test]
    fn a_root_span_shortens_the_wait() {
        let mut hold = Hold::new(settings());
        let mut out = Vec::new();
        hold.push(vec![span(1, 2, Some(1), None), span(1, 1, None, None)], 0);
        hold.release_due(9 * MS, |g| out.push(g));
        assert!(out.is_empty());
        hold.release_due(10 * MS, |g| out.push(g));
        assert_eq!(ids(&out), vec![vec![2, 1]]);
    }

    #[test]
    fn a_shared_response_id_joins_unrelated_traces() {
        let mut hold = Hold::new(settings());
        let mut out = Vec::new();
        hold.push(vec![span(1, 1, Some(7), Some("msg_1"))], 0);
        hold.push(vec![span(3, 5, Some(7), None)], 0);
        hold.push(vec![span(2, 2, Some(7), Some("msg_1"))], 30 * MS);
        // A later span of trace 1 still finds the merged group.
        hold.push(vec![span(1, 3, Some(7), None)], 40 * MS);
        hold.release_all(|g| out.push(g));
        assert_eq!(ids(&out), vec![vec![5], vec![1, 2, 3]]);
        assert_eq!(hold.stats().joined_groups, 0, "the span joined one group");
    }

    #[test]
    fn a_span_linking_two_groups_merges_them() {
        let mut hold = Hold::new(settings());
        let mut out = Vec::new();
        hold.push(vec![span(1, 1, Some(7), None)], 0);
        hold.push(vec![span(2, 2, Some(7), Some("r"))], 0);
        // Trace 1, response r: both groups are one call's.
        hold.push(vec![span(1, 3, Some(7), Some("r"))], 0);
        hold.release_all(|g| out.push(g));
        assert_eq!(out.len(), 1);
        assert_eq!(hold.stats().joined_groups, 1);
        let mut got: Vec<u8> = out[0].iter().map(|s| s.span_id.0[0]).collect();
        got.sort();
        assert_eq!(got, vec![1, 2, 3]);
    }

    #[test]
    fn a_resent_span_is_dropped_while_held() {
        let mut hold = Hold::new(settings());
        let mut out = Vec::new();
        hold.push(vec![span(1, 1, None, None), span(1, 1, None, None)], 0);
        hold.release_all(|g| out.push(g));
        assert_eq!(ids(&out), vec![vec![1]]);
        assert_eq!(hold.stats().duplicate_spans, 1);
    }

    /// Resent spans are found in groups of every size (large ones keep a
    /// set of their ids), also after two groups merged on a response id;
    /// the same span id in another trace is another span.
    #[test]
    fn resent_spans_are_found_in_small_large_and_merged_groups() {
        let mut hold = Hold::new(settings());
        let many: Vec<Span> = (1..=100).map(|i| span(1, i, Some(1), None)).collect();
        hold.push(many, 0);
        hold.push(
            vec![span(1, 5, Some(1), None), span(1, 90, Some(1), None)],
            0,
        );
        assert_eq!(hold.stats().duplicate_spans, 2);
        hold.push(
            vec![span(2, 5, None, Some("r1")), span(3, 6, None, Some("r1"))],
            0,
        );
        hold.push(vec![span(3, 6, None, None), span(2, 5, None, None)], 0);
        assert_eq!(hold.stats().duplicate_spans, 4);
        hold.push(vec![span(4, 5, None, None)], 0);
        assert_eq!(hold.stats().duplicate_spans, 4);
        assert_eq!(hold.stats().held, 103);
        let mut out = Vec::new();
        hold.release_all(|g| out.push(g));
        assert_eq!(out.iter().map(Vec::len).sum::<usize>(), 103);
        assert_eq!(hold.stats().held, 0);
        // Released: the same ids are new spans again.
        hold.push(vec![span(1, 5, Some(1), None)], 0);
        assert_eq!((hold.stats().held, hold.stats().duplicate_spans), (1, 4));
    }

    #[test]
    fn beyond_max_spans_the_first_due_leave_early() {
        let mut hold = Hold::new(HoldSettings {
            max_spans: 2,
            ..settings()
        });
        let mut out = Vec::new();
        hold.push(vec![span(1, 1, Some(9), None)], 0);
        hold.push(vec![span(2, 2, Some(9), None)], MS);
        hold.push(vec![span(3, 3, Some(9), None)], 2 * MS);
        hold.release_due(3 * MS, |g| out.push(g));
        assert_eq!(ids(&out), vec![vec![1]]);
        assert_eq!(hold.stats().released_early, 1);
        assert_eq!(hold.stats().held_max, 3);
    }

    fn stitching() -> HoldSettings {
        HoldSettings {
            stitch_attributes: vec!["traceparent".into()],
            stitch_links: true,
            join_on: vec![],
            ..settings()
        }
    }

    fn traceparent(trace: u8, span: u8) -> String {
        format!(
            "00-{}-{}-01",
            const_hex::encode([trace; 16]),
            const_hex::encode([span; 8])
        )
    }

    /// A sub-agent's trace (2) whose root records its caller (span 1 of
    /// trace 1) arrives first; the caller's trace after. One group; the
    /// sub-agent's spans take trace 1 and hang under span 1.
    #[test]
    fn a_sub_agent_trace_is_stitched_under_its_caller() {
        let mut h = Hold::new(stitching());
        let mut sub_root = span(2, 20, None, None);
        sub_root.attributes.set(
            "traceparent".into(),
            AttrValue::Str(traceparent(1, 1).into()),
        );
        h.push(vec![span(2, 21, Some(20), None), sub_root], 0);
        h.push(
            vec![span(1, 2, Some(1), None), span(1, 1, None, None)],
            5 * MS,
        );
        let mut out = Vec::new();
        h.release_due(100 * MS, |g| out.push(g));
        assert_eq!(out.len(), 1, "one group");
        let g = &out[0];
        assert!(g.iter().all(|s| s.trace_id == TraceId([1; 16])));
        let root = g.iter().find(|s| s.span_id == SpanId([20; 8])).unwrap();
        assert_eq!(root.parent_span_id, Some(SpanId([1; 8])));
        assert_eq!(
            root.attributes.get(STITCHED_FROM).and_then(|v| v.as_str()),
            Some(const_hex::encode([2u8; 16]).as_str())
        );
        assert_eq!(h.stats().stitched_traces, 1);
        // A late span of the sub-agent's trace is stitched too.
        h.push(vec![span(2, 22, Some(20), None)], 200 * MS);
        let mut late = Vec::new();
        h.release_all(|g| late.push(g));
        assert_eq!(late[0][0].trace_id, TraceId([1; 16]));
        assert_eq!(late[0][0].parent_span_id, Some(SpanId([20; 8])));
    }

    #[test]
    fn links_stitch_and_sub_agents_of_sub_agents_reach_the_top() {
        let mut h = Hold::new(stitching());
        let mut sub = span(2, 20, None, None);
        sub.links.push(crate::span::Link {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([1; 8]),
            trace_state: String::new(),
            attributes: Attributes::default(),
        });
        let mut subsub = span(3, 30, None, None);
        subsub.attributes.set(
            "traceparent".into(),
            AttrValue::Str(traceparent(2, 20).into()),
        );
        h.push(vec![span(1, 1, None, None), sub, subsub], 0);
        let mut out = Vec::new();
        h.release_all(|g| out.push(g));
        assert_eq!(out.len(), 1);
        assert!(out[0].iter().all(|s| s.trace_id == TraceId([1; 16])));
        let s30 = out[0]
            .iter()
            .find(|s| s.span_id == SpanId([30; 8]))
            .unwrap();
        assert_eq!(s30.parent_span_id, Some(SpanId([20; 8])));
    }

    #[test]
    fn invalid_traceparents_do_not_stitch_and_are_counted() {
        let mut h = Hold::new(stitching());
        let mut bad = span(2, 20, None, None);
        bad.attributes.set(
            "traceparent".into(),
            AttrValue::Str(traceparent(1, 1).replacen("00-", "ff-", 1).into()),
        );
        h.push(vec![span(1, 1, None, None), bad], 0);
        let mut out = Vec::new();
        h.release_all(|g| out.push(g));
        assert_eq!(out.len(), 2, "two traces");
        assert_eq!(h.stats().invalid_traceparents, 1);
        assert_eq!(h.stats().stitched_traces, 0);
        assert!(
            out.iter()
                .flatten()
                .all(|s| s.attributes.get(STITCHED_FROM).is_none())
        );
    }

    #[test]
    fn stitching_is_off_by_default() {
        let mut h = Hold::new(settings());
        let mut sub = span(2, 20, None, None);
        sub.attributes.set(
            "traceparent".into(),
            AttrValue::Str(traceparent(1, 1).into()),
        );
        h.push(vec![span(1, 1, None, None), sub], 0);
        let mut out = Vec::new();
        h.release_all(|g| out.push(g));
        assert_eq!(out.len(), 2);
    }
}
