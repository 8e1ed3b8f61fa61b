//! Which span carries each model call's cost: a pure function of a group of
//! spans (a held trace, or traces joined by a response id), so the answer
//! does not depend on the order the spans arrived in.
//!
//! 1. Only spans with usage (token counts or a cost) take part.
//! 2. A *wrapper* (agent, workflow, step, chain span) with usage restates the
//!    calls below it when any span with usage is below it; it is priced only
//!    when nothing below records its calls (then it is the only record).
//! 3. An inference span whose nearest inference ancestor has exactly one such
//!    child records the same call as that ancestor (a framework or
//!    instrumentation span around the provider's); an inference span with
//!    several inference children restates them, like a wrapper.
//! 4. Inference spans with the same provider response id record one call,
//!    across traces. So do sibling inference spans with the same token counts
//!    where one's time interval contains the other's (an instrumentation that
//!    does not make its span current: nested in time, not in the tree).
//! 5. Of one call's spans, the counted one has a cost if any does, then the
//!    most tokens (a complete stream over a partial snapshot), then the most
//!    detail (response id, cache and reasoning counts, provider, finish
//!    reasons), then the smallest span id.

use plume_sdk::hash::{HashMap, fixed_str};
use plume_sdk::ids::{hash_id, same};
use std::collections::hash_map::Entry;
use std::hash::{Hash, Hasher};

/// What kind of work a span records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A model call (chat, completion, embeddings), or an unknown span with usage.
    Inference,
    /// An agent, workflow, step or chain span: its usage restates its calls.
    Wrapper,
}

/// The facts about one span that the decision needs. Of a span without
/// `usage`, only `trace`, `span` and `parent` are read.
#[derive(Debug, Clone, Default)]
pub struct CallSpan<'a> {
    pub trace: &'a str,
    pub span: &'a str,
    pub parent: Option<&'a str>,
    pub role: Option<Role>,
    /// Token counts (input + output) and a cost: `usage` is true when either is present.
    pub usage: bool,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost: Option<f64>,
    pub response_id: Option<&'a str>,
    /// `plume_sdk::hash::fixed_str` of `response_id`, if the caller has it
    /// (else computed here).
    pub response_key: Option<u64>,
    /// How many detail attributes the span has (see the module docs).
    pub detail: u32,
    pub start: i64,
    pub end: i64,
}

/// The verdict on a span with usage.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// This span's cost enters the totals.
    Counted,
    /// This span records the call counted on span `of` again.
    Duplicate { of: String },
    /// This span restates the calls counted on these spans (indices).
    Restates { calls: Vec<usize> },
}

/// Which mechanisms join spans into one call.
#[derive(Debug, Clone, Copy)]
pub struct Joins {
    pub response_id: bool,
    pub contained_siblings: bool,
}

/// Deepest ancestor walk; a cycle or a very deep tree stops here.
const MAX_DEPTH: usize = 256;

/// No span (an index sentinel).
const NONE: u32 = u32::MAX;

/// Decides every span with usage in `spans`; `None` for the others.
pub fn decide(spans: &[CallSpan<'_>], joins: Joins) -> Vec<Option<Verdict>> {
    let n = spans.len();
    let mut tree = Tree::new(spans);
    let role = |i: usize| spans[i].role.unwrap_or(Role::Inference);

    // Who is below whom, among spans with usage: (ancestor, descendant)
    // pairs in the order found, one list for the batch rather than a vector
    // per span.
    let mut below: Vec<(u32, u32)> = Vec::new();
    let mut below_count = vec![0u32; n];
    let mut nearest_inference = vec![NONE; n];
    let mut inference_children = vec![0u32; n];
    for i in (0..n).filter(|&i| spans[i].usage) {
        let mut at = tree.parent(i);
        let mut depth = 0;
        while let Some(a) = at {
            if a == i || depth > MAX_DEPTH {
                break;
            }
            if spans[a].usage {
                below.push((a as u32, i as u32));
                below_count[a] += 1;
                if role(i) == Role::Inference
                    && role(a) == Role::Inference
                    && nearest_inference[i] == NONE
                {
                    nearest_inference[i] = a as u32;
                    inference_children[a] += 1;
                }
            }
            at = tree.parent(a);
            depth += 1;
        }
    }
    let restates = |i: usize| match role(i) {
        Role::Wrapper => below_count[i] > 0,
        Role::Inference => inference_children[i] > 1,
    };

    // One call, several spans: union-find over the spans that record calls.
    let mut sets = UnionFind::new(n);
    let mut recorders: Vec<usize> = Vec::with_capacity(n);
    let mut inference: Vec<usize> = Vec::with_capacity(n);
    for (i, s) in spans.iter().enumerate() {
        if s.usage && !restates(i) {
            recorders.push(i);
            if role(i) == Role::Inference {
                inference.push(i);
            }
        }
    }
    for &i in &recorders {
        let a = nearest_inference[i];
        if a != NONE && !restates(a as usize) {
            sets.union(i, a as usize);
        }
    }
    if joins.response_id {
        // By the id's hash, the id compared on a hit; ids whose hash another
        // id took first are looked up by text.
        let mut by_key: HashMap<Word, u32> =
            HashMap::with_capacity_and_hasher(inference.len(), Default::default());
        let mut by_text: HashMap<&str, u32> = HashMap::default();
        for &i in &inference {
            let s = &spans[i];
            let Some(id) = s.response_id.filter(|s| !s.is_empty()) else {
                continue;
            };
            let key = Word(s.response_key.unwrap_or_else(|| fixed_str(id)));
            match by_key.entry(key) {
                Entry::Vacant(v) => {
                    v.insert(i as u32);
                }
                Entry::Occupied(first)
                    if spans[*first.get() as usize]
                        .response_id
                        .is_some_and(|f| same(f, id)) =>
                {
                    sets.union(i, *first.get() as usize);
                }
                Entry::Occupied(_) => match by_text.entry(id) {
                    Entry::Occupied(first) => sets.union(i, *first.get() as usize),
                    Entry::Vacant(v) => {
                        v.insert(i as u32);
                    }
                },
            }
        }
    }
    if joins.contained_siblings {
        // Siblings with the same (trace, parent id, input, output): in a
        // local trace, paired directly; elsewhere grouped by that key, each
        // group's first and last span kept, the others chained through
        // `next` in order.
        let mut groups: HashMap<Siblings, (u32, u32)> = HashMap::default();
        let mut next = vec![NONE; n];
        let contains = |o: &CallSpan, p: &CallSpan| o.start <= p.start && p.end <= o.end;
        for (x, &i) in inference.iter().enumerate() {
            let s = &spans[i];
            let Some(p) = s.parent else { continue };
            if s.input_tokens + s.output_tokens <= 0 {
                continue;
            }
            let key = Siblings {
                parent: tree.key(i, p),
                input: s.input_tokens,
                output: s.output_tokens,
            };
            if let Some(run) = tree.local(i) {
                // Its siblings are in its trace's few spans: the later ones
                // come next in `inference`.
                for &j in inference[x + 1..].iter().take_while(|&&j| j < run.end) {
                    let o = &spans[j];
                    if let Some(q) = o.parent
                        && (o.input_tokens, o.output_tokens) == (key.input, key.output)
                        && tree.key(j, q) == key.parent
                        && (contains(s, o) || contains(o, s))
                    {
                        sets.union(i, j);
                    }
                }
                continue;
            }
            match groups.entry(key) {
                Entry::Occupied(mut g) => {
                    let (_, last) = g.get_mut();
                    next[*last as usize] = i as u32;
                    *last = i as u32;
                }
                Entry::Vacant(v) => {
                    v.insert((i as u32, i as u32));
                }
            }
        }
        for &(first, last) in groups.values() {
            if first == last {
                continue;
            }
            let mut i = first;
            while i != NONE {
                let mut j = next[i as usize];
                while j != NONE {
                    let (a, b) = (&spans[i as usize], &spans[j as usize]);
                    if contains(a, b) || contains(b, a) {
                        sets.union(i as usize, j as usize);
                    }
                    j = next[j as usize];
                }
                i = next[i as usize];
            }
        }
    }

    // The counted span of each call, by the call's root in `sets`.
    let mut best = vec![NONE; n];
    for &i in &recorders {
        let root = sets.find(i);
        let b = best[root];
        if b == NONE || rank_before(&spans[i], &spans[b as usize]) {
            best[root] = i as u32;
        }
    }
    let mut counted = |i: usize| best[sets.find(i)] as usize;
    let mut verdicts: Vec<Option<Verdict>> = vec![None; n];
    for &i in &recorders {
        let c = counted(i);
        verdicts[i] = Some(if c == i {
            Verdict::Counted
        } else {
            Verdict::Duplicate {
                of: spans[c].span.to_owned(),
            }
        });
    }
    if below.is_empty() {
        return verdicts; // nothing restates (a restating span has usage below)
    }
    // Each span's descendants, still in the order found (a stable sort).
    below.sort_by_key(|&(a, _)| a);
    for i in (0..n).filter(|&i| spans[i].usage && restates(i)) {
        let from = below.partition_point(|&(a, _)| (a as usize) < i);
        let mut calls: Vec<usize> = below[from..from + below_count[i] as usize]
            .iter()
            .map(|&(_, j)| j as usize)
            .filter(|&j| !restates(j))
            .map(&mut counted)
            .collect();
        calls.sort_by(|&a, &b| {
            spans[a]
                .start
                .cmp(&spans[b].start)
                .then(spans[a].span.cmp(spans[b].span))
        });
        calls.dedup();
        verdicts[i] = Some(Verdict::Restates { calls });
    }
    verdicts
}

/// True when `a` should carry the call's cost rather than `b`.
fn rank_before(a: &CallSpan<'_>, b: &CallSpan<'_>) -> bool {
    let key = |s: &CallSpan<'_>| (s.cost.is_some(), s.input_tokens + s.output_tokens, s.detail);
    match key(a).cmp(&key(b)) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => a.span < b.span,
    }
}

/// A trace id as a key: the usual 32 bytes hashed as two 128-bit words,
/// others by their bytes. (`str`'s `Hash` goes through foldhash's 128-bit
/// buffer, whose shifts wasm32 emulates.)
struct TraceText<'a>(&'a str);

impl PartialEq for TraceText<'_> {
    fn eq(&self, other: &Self) -> bool {
        same(self.0, other.0)
    }
}

impl Eq for TraceText<'_> {}

impl Hash for TraceText<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        hash_id(self.0, h);
    }
}

/// A 64-bit hash as a key, hashed as one 128-bit word: foldhash then does
/// one multiply, where a `u64` goes through its 128-bit buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Word(pub u64);

impl Hash for Word {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u128(self.0.into());
    }
}

/// A span id within one group: its trace, numbered in the group, and the
/// id's 16 bytes when it has the usual length, as two words (no hex to
/// parse: equal bytes, equal ids); any other id is `(its number, u64::MAX)`,
/// never the bytes of a string (0xff is not in UTF-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SpanKey {
    trace: u32,
    id: (u64, u64),
}

/// Whole 128-bit words: foldhash does one multiply for each (its
/// `write_u32`/`write_u64` go through a 128-bit buffer, shifted in
/// software on wasm32).
fn words128((a, b): (u64, u64)) -> u128 {
    (u128::from(b) << 64) | u128::from(a)
}

impl Hash for SpanKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u128(words128(self.id));
        h.write_u128(self.trace.into());
    }
}

/// The key of contained-sibling candidates.
#[derive(PartialEq, Eq)]
struct Siblings {
    parent: SpanKey,
    input: i64,
    output: i64,
}

impl Hash for Siblings {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u128(words128(self.parent.id));
        h.write_u128(words128((self.input as u64, self.output as u64)));
        h.write_u128(self.parent.trace.into());
    }
}

/// Traces of at most this many spans, arriving together, have their parent
/// links looked up among their own spans rather than in a map.
const LOCAL: usize = 16;

/// Parent links within a group of spans.
struct Tree<'s, 'a> {
    spans: &'s [CallSpan<'a>],
    /// Each span's (trace, span id).
    keys: Vec<SpanKey>,
    /// Each span's trace's spans, when they are consecutive and at most
    /// `LOCAL` (its parent and its siblings are among them); `0..0` when not.
    local: Vec<(u32, u32)>,
    /// Numbers of span ids that are not 16 bytes long.
    other_ids: HashMap<&'a str, u32>,
    /// (trace, span id) -> the last span with it, for spans not `local`.
    by_key: HashMap<SpanKey, u32>,
    /// Each span's parent once looked up (`UNKNOWN` before, `NONE` for none).
    parents: Vec<u32>,
}

const UNKNOWN: u32 = u32::MAX - 1;

impl<'s, 'a> Tree<'s, 'a> {
    fn new(spans: &'s [CallSpan<'a>]) -> Self {
        let n = spans.len();
        // Runs of consecutive spans of one trace: the trace hold releases
        // traces whole, so a trace is usually one run.
        let mut runs: Vec<(usize, usize)> = Vec::with_capacity(n);
        for (i, s) in spans.iter().enumerate() {
            match runs.last_mut() {
                Some(run) if same(spans[run.0].trace, s.trace) => run.1 = i + 1,
                _ => runs.push((i, i + 1)),
            }
        }
        // Number the traces; one seen in several runs is split.
        let mut numbers: HashMap<TraceText<'a>, u32> =
            HashMap::with_capacity_and_hasher(runs.len(), Default::default());
        let mut split: Vec<bool> = Vec::with_capacity(runs.len());
        let mut run_traces = Vec::with_capacity(runs.len());
        for &(start, _) in &runs {
            let next = split.len() as u32;
            let t = *numbers
                .entry(TraceText(spans[start].trace))
                .and_modify(|&mut t| split[t as usize] = true)
                .or_insert(next);
            if t == next {
                split.push(false);
            }
            run_traces.push(t);
        }
        let mut tree = Tree {
            spans,
            keys: Vec::with_capacity(n),
            local: Vec::with_capacity(n),
            other_ids: HashMap::default(),
            by_key: HashMap::default(),
            parents: vec![UNKNOWN; n],
        };
        for (&(start, end), &t) in runs.iter().zip(&run_traces) {
            let local = !split[t as usize] && end - start <= LOCAL;
            for (i, s) in spans.iter().enumerate().take(end).skip(start) {
                let id = tree.id(s.span);
                tree.keys.push(SpanKey { trace: t, id });
                tree.local.push(if local {
                    (start as u32, end as u32)
                } else {
                    (0, 0)
                });
                if !local {
                    // Ids are random, so a (trace, span id) pair shared by
                    // two spans is rare; the last one wins.
                    tree.by_key.insert(SpanKey { trace: t, id }, i as u32);
                }
            }
        }
        tree
    }

    /// A span id's bytes, or its number when it is not 16 bytes long.
    #[inline(always)]
    fn id(&mut self, id: &'a str) -> (u64, u64) {
        match <&[u8; 16]>::try_from(id.as_bytes()) {
            Ok(b) => {
                let (a, b) = b.split_at(8);
                let word = |w: &[u8]| u64::from_le_bytes(w.try_into().unwrap_or_default());
                (word(a), word(b))
            }
            Err(_) => self.other_id(id),
        }
    }

    #[cold]
    fn other_id(&mut self, id: &'a str) -> (u64, u64) {
        let next = self.other_ids.len() as u32;
        let n = *self.other_ids.entry(id).or_insert(next);
        (n.into(), u64::MAX)
    }

    /// The key of span id `id` in span `i`'s trace.
    #[inline(always)]
    fn key(&mut self, i: usize, id: &'a str) -> SpanKey {
        SpanKey {
            trace: self.keys[i].trace,
            id: self.id(id),
        }
    }

    /// The spans of span `i`'s trace, when they are few and consecutive.
    fn local(&self, i: usize) -> Option<std::ops::Range<usize>> {
        let (start, end) = self.local[i];
        (end > start).then_some(start as usize..end as usize)
    }

    /// The span that is span `i`'s parent, if it is in the group.
    #[inline(always)]
    fn parent(&mut self, i: usize) -> Option<usize> {
        if self.parents[i] == UNKNOWN {
            self.parents[i] = self.find_parent(i);
        }
        (self.parents[i] != NONE).then_some(self.parents[i] as usize)
    }

    /// Span `i`'s parent (`NONE`: none in the group), looked up.
    fn find_parent(&mut self, i: usize) -> u32 {
        let Some(p) = self.spans[i].parent else {
            return NONE;
        };
        let key = self.key(i, p);
        match self.local(i) {
            // The last span with the key, as in the map.
            Some(run) => run.rev().find(|&j| self.keys[j].id == key.id),
            None => self.by_key.get(&key).map(|&j| j as usize),
        }
        .map_or(NONE, |j| j as u32)
    }
}

struct UnionFind(Vec<u32>);

impl UnionFind {
    fn new(n: usize) -> Self {
        UnionFind((0..n as u32).collect())
    }
    fn find(&mut self, i: usize) -> usize {
        let mut i = i as u32;
        while self.0[i as usize] != i {
            self.0[i as usize] = self.0[self.0[i as usize] as usize];
            i = self.0[i as usize];
        }
        i as usize
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.0[ra.max(rb)] = ra.min(rb) as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Joins = Joins {
        response_id: true,
        contained_siblings: true,
    };

    fn span<'a>(
        trace: &'a str,
        id: &'a str,
        parent: Option<&'a str>,
        role: Option<Role>,
    ) -> CallSpan<'a> {
        CallSpan {
            trace,
            span: id,
            parent,
            role,
            start: 0,
            end: 100,
            ..CallSpan::default()
        }
    }

    fn call(mut s: CallSpan<'_>, input: i64, output: i64, cost: f64) -> CallSpan<'_> {
        s.usage = true;
        s.input_tokens = input;
        s.output_tokens = output;
        s.cost = Some(cost);
        s
    }

    fn counted(v: &[Option<Verdict>]) -> Vec<usize> {
        (0..v.len())
            .filter(|&i| v[i] == Some(Verdict::Counted))
            .collect()
    }

    #[test]
    fn a_provider_span_inside_an_instrumentation_span_is_one_call() {
        // OpenInference's LLM span, the Anthropic SDK's below it with more detail.
        let mut sdk = call(
            span("t", "b", Some("a"), Some(Role::Inference)),
            3484,
            187,
            0.01,
        );
        sdk.detail = 3;
        let spans = vec![
            call(
                span("t", "a", Some("root"), Some(Role::Inference)),
                3484,
                187,
                0.01,
            ),
            sdk,
            span("t", "root", None, Some(Role::Wrapper)),
        ];
        let v = decide(&spans, ALL);
        assert_eq!(v[1], Some(Verdict::Counted));
        assert_eq!(v[0], Some(Verdict::Duplicate { of: "b".into() }));
        assert_eq!(v[2], None, "no usage, no verdict");
    }

    #[test]
    fn a_shared_response_id_joins_spans_of_unrelated_traces() {
        let mut a = call(span("t1", "a", None, Some(Role::Inference)), 10, 5, 0.5);
        let mut b = call(span("t2", "b", None, Some(Role::Inference)), 10, 5, 0.5);
        a.response_id = Some("msg_1");
        b.response_id = Some("msg_1");
        let v = decide(&[a.clone(), b.clone()], ALL);
        assert_eq!(counted(&v), vec![0]);
        let off = decide(
            &[a, b],
            Joins {
                response_id: false,
                ..ALL
            },
        );
        assert_eq!(counted(&off), vec![0, 1]);
    }

    #[test]
    fn span_ids_shared_by_two_traces_stay_apart() {
        let spans = vec![
            call(span("t1", "r", None, Some(Role::Wrapper)), 10, 5, 0.5),
            call(
                span("t1", "c", Some("r"), Some(Role::Inference)),
                10,
                5,
                0.5,
            ),
            call(span("t2", "r", None, Some(Role::Wrapper)), 20, 5, 0.7),
            call(
                span("t2", "c", Some("r"), Some(Role::Inference)),
                20,
                5,
                0.7,
            ),
        ];
        let v = decide(&spans, ALL);
        assert_eq!(counted(&v), vec![1, 3]);
        assert_eq!(v[0], Some(Verdict::Restates { calls: vec![1] }));
        assert_eq!(v[2], Some(Verdict::Restates { calls: vec![3] }));
    }

    #[test]
    fn an_agent_span_restating_two_calls_is_not_priced() {
        // Vercel AI SDK: invoke_agent > step > chat, twice.
        let spans = vec![
            call(span("t", "agent", None, Some(Role::Wrapper)), 30, 12, 0.9),
            span("t", "step1", Some("agent"), Some(Role::Wrapper)),
            call(
                span("t", "chat1", Some("step1"), Some(Role::Inference)),
                10,
                5,
                0.3,
            ),
            span("t", "step2", Some("agent"), Some(Role::Wrapper)),
            call(
                span("t", "chat2", Some("step2"), Some(Role::Inference)),
                20,
                7,
                0.6,
            ),
        ];
        let v = decide(&spans, ALL);
        assert_eq!(counted(&v), vec![2, 4]);
        assert_eq!(v[0], Some(Verdict::Restates { calls: vec![2, 4] }));
    }

    #[test]
    fn an_agent_span_with_nothing_below_is_the_only_record() {
        let spans = vec![
            call(span("t", "agent", None, Some(Role::Wrapper)), 30, 12, 0.9),
            span("t", "tool", Some("agent"), None),
        ];
        assert_eq!(counted(&decide(&spans, ALL)), vec![0]);
    }

    #[test]
    fn a_genuine_retry_is_two_calls() {
        let mut a = call(
            span("t", "a", Some("root"), Some(Role::Inference)),
            1610,
            64,
            0.1,
        );
        let mut b = call(
            span("t", "b", Some("root"), Some(Role::Inference)),
            1610,
            24,
            0.09,
        );
        a.response_id = Some("r1");
        b.response_id = Some("r2");
        (b.start, b.end) = (200, 300);
        assert_eq!(counted(&decide(&[a, b], ALL)), vec![0, 1]);
    }

    #[test]
    fn identical_retries_sequential_in_time_stay_two_calls() {
        // Same counts, same parent, no response ids, one after the other.
        let a = call(
            span("t", "a", Some("root"), Some(Role::Inference)),
            100,
            10,
            0.1,
        );
        let mut b = call(
            span("t", "b", Some("root"), Some(Role::Inference)),
            100,
            10,
            0.1,
        );
        (b.start, b.end) = (150, 250);
        assert_eq!(counted(&decide(&[a, b], ALL)), vec![0, 1]);
    }

    #[test]
    fn a_sibling_contained_in_time_with_the_same_counts_is_one_call() {
        // OpenInference's LangChain span does not become current: the OpenAI
        // span is its sibling, inside it in time.
        let a = call(
            span("t", "lc", Some("root"), Some(Role::Inference)),
            1610,
            24,
            0.1,
        );
        let mut b = call(
            span("t", "oai", Some("root"), Some(Role::Inference)),
            1610,
            24,
            0.1,
        );
        (b.start, b.end) = (10, 90);
        let v = decide(&[a, b], ALL);
        assert_eq!(counted(&v), vec![0], "equal rank: the smaller span id");
        assert_eq!(v[1], Some(Verdict::Duplicate { of: "lc".into() }));
    }

    #[test]
    fn a_priced_span_wins_over_an_unpriced_one() {
        let a = call(span("t", "a", None, Some(Role::Inference)), 10, 5, 0.0);
        let mut b = call(span("t", "b", Some("a"), Some(Role::Inference)), 10, 5, 0.0);
        let mut a = a;
        a.cost = None;
        b.detail = 0;
        let v = decide(&[a, b], ALL);
        assert_eq!(counted(&v), vec![1]);
    }

    #[test]
    fn an_inference_span_over_several_calls_restates_them() {
        let spans = vec![
            call(span("t", "p", None, Some(Role::Inference)), 30, 10, 0.3),
            call(
                span("t", "c1", Some("p"), Some(Role::Inference)),
                10,
                5,
                0.1,
            ),
            call(
                span("t", "c2", Some("p"), Some(Role::Inference)),
                20,
                5,
                0.2,
            ),
        ];
        let v = decide(&spans, ALL);
        assert_eq!(counted(&v), vec![1, 2]);
        assert!(matches!(v[0], Some(Verdict::Restates { .. })));
    }

    #[test]
    fn the_verdicts_do_not_depend_on_span_order() {
        let mut spans = vec![
            call(span("t", "agent", None, Some(Role::Wrapper)), 30, 12, 0.9),
            call(
                span("t", "oi", Some("agent"), Some(Role::Inference)),
                10,
                5,
                0.3,
            ),
            call(
                span("t", "sdk", Some("oi"), Some(Role::Inference)),
                10,
                5,
                0.3,
            ),
            call(span("u", "other", None, Some(Role::Inference)), 10, 5, 0.3),
        ];
        spans[2].response_id = Some("x");
        spans[3].response_id = Some("x");
        spans[2].detail = 2;
        let first = named(&spans);
        assert_eq!(
            first.iter().filter(|(_, v)| v == "Some(Counted)").count(),
            1
        );
        spans.reverse();
        assert_eq!(named(&spans), first);
        spans.swap(0, 2);
        assert_eq!(named(&spans), first);
    }

    /// Verdicts by span name, restated calls by name too.
    fn named(spans: &[CallSpan<'_>]) -> Vec<(String, String)> {
        let v = decide(spans, ALL);
        let mut out: Vec<(String, String)> = spans
            .iter()
            .zip(v)
            .map(|(s, v)| {
                let v = match v {
                    Some(Verdict::Restates { calls }) => {
                        let names: Vec<&str> = calls.iter().map(|&c| spans[c].span).collect();
                        format!("restates {names:?}")
                    }
                    other => format!("{other:?}"),
                };
                (format!("{}/{}", s.trace, s.span), v)
            })
            .collect();
        out.sort();
        out
    }

    /// A trace of a few spans in a row has its links looked up among its
    /// spans; a trace split across the batch, or a long one, in a map. Both
    /// decide alike.
    #[test]
    fn local_and_mapped_traces_decide_alike() {
        let trace = |t: &'static str| {
            let mut spans = vec![
                call(span(t, "agent", None, Some(Role::Wrapper)), 30, 12, 0.9),
                call(
                    span(t, "0000000000000001", Some("agent"), Some(Role::Inference)),
                    10,
                    5,
                    0.3,
                ),
                call(
                    span(
                        t,
                        "0000000000000002",
                        Some("0000000000000001"),
                        Some(Role::Inference),
                    ),
                    10,
                    5,
                    0.3,
                ),
                call(
                    span(t, "lc", Some("agent"), Some(Role::Inference)),
                    20,
                    7,
                    0.6,
                ),
                call(
                    span(t, "oai", Some("agent"), Some(Role::Inference)),
                    20,
                    7,
                    0.6,
                ),
                span(t, "tool", Some("agent"), None),
            ];
            (spans[4].start, spans[4].end) = (10, 90);
            spans[2].detail = 2;
            spans
        };
        let (a, b) = (trace("a"), trace("b"));
        let together: Vec<CallSpan> = a.iter().chain(&b).cloned().collect();
        let first = named(&together);
        assert_eq!(
            first.iter().filter(|(_, v)| v == "Some(Counted)").count(),
            4
        );
        // Interleaved: each trace in several runs.
        let interleaved: Vec<CallSpan> = a
            .iter()
            .zip(&b)
            .flat_map(|(x, y)| [x.clone(), y.clone()])
            .collect();
        assert_eq!(named(&interleaved), first);
        // Long: more spans than `LOCAL` in the trace.
        let mut long = together.clone();
        long.extend((0..LOCAL).map(|_| span("a", "filler", None, None)));
        let mut long_named = named(&long);
        long_named.retain(|(s, _)| !s.ends_with("/filler"));
        assert_eq!(long_named, first);
    }

    /// Of two spans with one (trace, span id), the later one is the parent
    /// of the spans that name it, whether looked up locally or in a map.
    #[test]
    fn the_last_span_with_an_id_is_the_parent() {
        let spans = |filler: usize| {
            let mut s = vec![
                call(span("t", "p", None, Some(Role::Inference)), 10, 5, 0.3),
                span("t", "p", None, None),
                call(span("t", "c", Some("p"), Some(Role::Inference)), 10, 5, 0.3),
            ];
            s.extend((0..filler).map(|_| span("t", "filler", None, None)));
            s
        };
        for filler in [0, LOCAL] {
            let v = decide(&spans(filler), ALL);
            // Below the second `p` (no usage), `c` records a call of its own.
            assert_eq!(counted(&v), vec![0, 2], "{filler} more spans");
        }
    }

    #[test]
    fn span_ids_of_any_length_link() {
        for id in ["", "p", "0123456789abcdef", "0123456789abcdef0", "é"] {
            let spans = vec![
                call(span("t", id, None, Some(Role::Wrapper)), 10, 5, 0.3),
                call(span("t", "c", Some(id), Some(Role::Inference)), 10, 5, 0.3),
            ];
            let v = decide(&spans, ALL);
            assert_eq!(v[0], Some(Verdict::Restates { calls: vec![1] }), "{id:?}");
            assert_eq!(v[1], Some(Verdict::Counted));
        }
    }

    /// Response ids are joined by their hash, checked against the ids: ids
    /// that share a hash (here forced) stay apart, and equal ones still join.
    #[test]
    fn response_ids_sharing_a_hash_are_told_apart() {
        let with_id = |name: &'static str, id: &'static str| {
            let mut s = call(span("t", name, None, Some(Role::Inference)), 10, 5, 0.5);
            s.response_id = Some(id);
            s.response_key = Some(7);
            s
        };
        let spans = vec![
            with_id("a", "x"),
            with_id("b", "y"),
            with_id("c", "x"),
            with_id("d", "y"),
            with_id("e", "z"),
        ];
        let v = decide(&spans, ALL);
        assert_eq!(counted(&v), vec![0, 1, 4]);
        assert_eq!(v[2], Some(Verdict::Duplicate { of: "a".into() }));
        assert_eq!(v[3], Some(Verdict::Duplicate { of: "b".into() }));
    }

    #[test]
    fn strings_compare_as_with_eq() {
        let words = [
            "",
            "a",
            "ab",
            "abcdefgh",
            "abcdefgi",
            "abcdefghi",
            "abcdefghj",
            "é",
            "e",
        ];
        for a in words {
            for b in words {
                assert_eq!(same(a, b), a == b, "{a:?} {b:?}");
            }
        }
        let long = "0af7651916cd43dd8448eb211c80319c";
        for at in 0..long.len() {
            let mut other = long.as_bytes().to_vec();
            other[at] = b'x';
            let other = String::from_utf8(other).expect("ASCII");
            assert!(!same(long, &other) && same(long, long), "{at}");
        }
    }
}
