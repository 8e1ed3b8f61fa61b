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

use plume_sdk::hash::HashMap;

/// What kind of work a span records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A model call (chat, completion, embeddings), or an unknown span with usage.
    Inference,
    /// An agent, workflow, step or chain span: its usage restates its calls.
    Wrapper,
}

/// The facts about one span that the decision needs.
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

/// Decides every span with usage in `spans`; `None` for the others.
pub fn decide(spans: &[CallSpan<'_>], joins: Joins) -> Vec<Option<Verdict>> {
    let n = spans.len();
    // Spans by span id alone, the trace compared on a hit: hashing the pair
    // of strings for every step up a tree cost twice as much. Ids are
    // random, so a span id shared by two traces is rare; such spans are
    // chained, and the last span with the (trace, span id) pair wins.
    const END: usize = usize::MAX;
    let mut first_by_id: HashMap<&str, usize> =
        HashMap::with_capacity_and_hasher(n, Default::default());
    let mut next_same_id = vec![END; n];
    for (i, s) in spans.iter().enumerate().rev() {
        if let Some(later) = first_by_id.insert(s.span, i) {
            next_same_id[i] = later;
        }
    }
    let parent_of = |i: usize| -> Option<usize> {
        let s = &spans[i];
        let mut at = *first_by_id.get(s.parent?)?;
        let mut found = None;
        while at != END {
            if spans[at].trace == s.trace {
                found = Some(at);
            }
            at = next_same_id[at];
        }
        found
    };
    let role = |i: usize| spans[i].role.unwrap_or(Role::Inference);

    // Who is below whom, among spans with usage.
    let mut below: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut nearest_inference: Vec<Option<usize>> = vec![None; n];
    let mut inference_children = vec![0usize; n];
    for i in (0..n).filter(|&i| spans[i].usage) {
        let mut at = parent_of(i);
        let mut depth = 0;
        while let Some(a) = at {
            if a == i || depth > MAX_DEPTH {
                break;
            }
            if spans[a].usage {
                below[a].push(i);
                if role(i) == Role::Inference
                    && role(a) == Role::Inference
                    && nearest_inference[i].is_none()
                {
                    nearest_inference[i] = Some(a);
                    inference_children[a] += 1;
                }
            }
            at = parent_of(a);
            depth += 1;
        }
    }
    let restates = |i: usize| match role(i) {
        Role::Wrapper => !below[i].is_empty(),
        Role::Inference => inference_children[i] > 1,
    };

    // One call, several spans: union-find over the spans that record calls.
    let mut sets = UnionFind::new(n);
    let recorders: Vec<usize> = (0..n).filter(|&i| spans[i].usage && !restates(i)).collect();
    for &i in &recorders {
        if let Some(a) = nearest_inference[i]
            && !restates(a)
        {
            sets.union(i, a);
        }
    }
    let inference: Vec<usize> = recorders
        .iter()
        .copied()
        .filter(|&i| role(i) == Role::Inference)
        .collect();
    if joins.response_id {
        let mut by_id: HashMap<&str, usize> =
            HashMap::with_capacity_and_hasher(inference.len(), Default::default());
        for &i in &inference {
            if let Some(id) = spans[i].response_id.filter(|s| !s.is_empty()) {
                match by_id.get(id) {
                    Some(&j) => sets.union(i, j),
                    None => {
                        by_id.insert(id, i);
                    }
                }
            }
        }
    }
    if joins.contained_siblings {
        let mut siblings: HashMap<(&str, &str, i64, i64), Vec<usize>> =
            HashMap::with_capacity_and_hasher(inference.len(), Default::default());
        for &i in &inference {
            let s = &spans[i];
            if let Some(p) = s.parent
                && s.input_tokens + s.output_tokens > 0
            {
                siblings
                    .entry((s.trace, p, s.input_tokens, s.output_tokens))
                    .or_default()
                    .push(i);
            }
        }
        for group in siblings.values().filter(|g| g.len() > 1) {
            for (x, &i) in group.iter().enumerate() {
                for &j in &group[x + 1..] {
                    let (a, b) = (&spans[i], &spans[j]);
                    let contains =
                        |o: &CallSpan, p: &CallSpan| o.start <= p.start && p.end <= o.end;
                    if contains(a, b) || contains(b, a) {
                        sets.union(i, j);
                    }
                }
            }
        }
    }

    // The counted span of each call.
    let mut best: HashMap<usize, usize> =
        HashMap::with_capacity_and_hasher(recorders.len(), Default::default());
    for &i in &recorders {
        let root = sets.find(i);
        let better = match best.get(&root) {
            None => true,
            Some(&b) => rank_before(&spans[i], &spans[b]),
        };
        if better {
            best.insert(root, i);
        }
    }
    let mut verdicts: Vec<Option<Verdict>> = vec![None; n];
    for &i in &recorders {
        let counted = best[&sets.find(i)];
        verdicts[i] = Some(if counted == i {
            Verdict::Counted
        } else {
            Verdict::Duplicate {
                of: spans[counted].span.to_owned(),
            }
        });
    }
    for i in (0..n).filter(|&i| spans[i].usage && restates(i)) {
        let mut calls: Vec<usize> = below[i]
            .iter()
            .filter(|&&j| !restates(j))
            .map(|&j| best[&sets.find(j)])
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

struct UnionFind(Vec<usize>);

impl UnionFind {
    fn new(n: usize) -> Self {
        UnionFind((0..n).collect())
    }
    fn find(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.0[ra.max(rb)] = ra.min(rb);
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
        let named = |spans: &[CallSpan<'_>]| {
            let v = decide(spans, ALL);
            let mut out: Vec<(String, String)> = spans
                .iter()
                .zip(v)
                .map(|(s, v)| {
                    let v = match v {
                        Some(Verdict::Restates { calls }) => {
                            format!(
                                "restates {:?}",
                                calls.iter().map(|&c| &spans[c].span).collect::<Vec<_>>()
                            )
                        }
                        other => format!("{other:?}"),
                    };
                    (s.span.to_owned(), v)
                })
                .collect();
            out.sort();
            out
        };
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
}
