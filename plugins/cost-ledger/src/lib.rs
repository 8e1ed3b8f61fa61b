//! `builtin:cost-ledger`: what each model, feature, user and request costs,
//! the day's spend against a budget, and a hard limit per feature.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `daily_budget_usd` | none | the day's budget (UTC days, event time) |
//! | `hard_limit_usd` | none | a daily limit per feature: a number for every feature, or a table `{ feature = usd }` |
//! | `feature_keys` | `["plume.feature", "app.feature"]` | the first present names the feature |
//! | `user_keys` | `["user.id", "enduser.id", "langfuse.user.id"]` | the first present names the user |
//! | `projection_window` | `"1h"` | trailing window of the spend rate |
//! | `alert_at_fraction` | `0.8` | warn when the projection passes this fraction of the budget |
//! | `top_traces` | `20` | most expensive traces listed in the report |
//! | `runbook` | `"examples/runbooks/cost-runaway.md"` | linked from its alerts |
//! | `revision_window` | `"10m"` | how long (event time) a call stays revisable by response id (at most the last 100,000 calls) |
//!
//! **Projection.** `projected_daily_usd` = spent so far today + the spend rate
//! over the trailing `projection_window` x the time left in the UTC day, all
//! in event time, so a replay gives the same answer as live traffic. Early in
//! a day the rate dominates; at its end the projection is the spend.
//!
//! **One call, one cost.** A span enters the totals when it has
//! `gen_ai.usage.cost` and is not marked `plume.cost.counted = false` (a span
//! that records a call counted on another span: see `builtin:call-dedup`).
//! As a second line, for pipelines without that stage and for spans that
//! arrive after their call was decided, the ledger keeps each counted call's
//! `gen_ai.response.id` for `revision_window` of event time: a second span
//! with the same response id does not add a second cost; if it is the more
//! complete record of the call (more tokens, or as many and a smaller span
//! id), the ledger's entry is revised to it, so totals do not depend on the
//! order the spans arrived in. A span resent with the same span id is
//! counted once.

use plume_sdk::evaluator::{Guest, export_evaluator};
use plume_sdk::hash::{HashMap, fixed_str};
use plume_sdk::types::{Alert, Batch, Field, Manifest, Severity};
use plume_sdk::{Rows, ValueRef};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

const DAY: u64 = 86_400_000_000_000;

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum HardLimit {
    Every(f64),
    PerFeature(BTreeMap<String, f64>),
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Config {
    daily_budget_usd: Option<f64>,
    hard_limit_usd: Option<HardLimit>,
    #[serde(default = "default_feature_keys")]
    feature_keys: Vec<String>,
    #[serde(default = "default_user_keys")]
    user_keys: Vec<String>,
    #[serde(default = "default_window")]
    projection_window: String,
    #[serde(default = "default_fraction")]
    alert_at_fraction: f64,
    #[serde(default = "default_top")]
    top_traces: usize,
    #[serde(default = "default_runbook")]
    runbook: String,
    #[serde(default = "default_revision_window")]
    revision_window: String,
}

fn default_feature_keys() -> Vec<String> {
    vec!["plume.feature".into(), "app.feature".into()]
}
fn default_user_keys() -> Vec<String> {
    vec![
        "user.id".into(),
        "enduser.id".into(),
        "langfuse.user.id".into(),
    ]
}
fn default_window() -> String {
    "1h".into()
}
fn default_fraction() -> f64 {
    0.8
}
fn default_top() -> usize {
    20
}
fn default_runbook() -> String {
    "examples/runbooks/cost-runaway.md".into()
}
fn default_revision_window() -> String {
    "10m".into()
}

/// Calls remembered for revision at most, whatever the window.
const MAX_REVISABLE: usize = 100_000;

/// Traces whose spend is kept for `top_traces` at most; past it the cheapest
/// tenth is forgotten.
const MAX_TRACES: usize = 20_000;

/// Fixed reads; feature and user keys follow.
mod read {
    pub const COST: usize = 0;
    pub const COUNTED: usize = 1;
    pub const MODEL: usize = 2;
    pub const RESPONSE_MODEL: usize = 3;
    pub const TRACE: usize = 4;
    pub const END: usize = 5;
    pub const MISSING: usize = 6;
    pub const RESPONSE_ID: usize = 7;
    pub const SPAN: usize = 8;
    pub const INPUT: usize = 9;
    pub const OUTPUT: usize = 10;
    pub const FIXED: usize = 11;
}

/// The ledger: sums in USD (f64; a call's cost carries ~16 significant
/// digits, far below a cent over any realistic number of calls).
#[derive(Default, Serialize, Deserialize)]
pub struct Ledger {
    total: f64,
    // Sums by name are hash maps, looked up for every priced span (a
    // B-tree compared several names per lookup, byte by byte in wasm); the
    // report sorts them (serde_json's maps are sorted).
    by_model: HashMap<String, f64>,
    by_feature: HashMap<String, f64>,
    by_user: HashMap<String, f64>,
    /// Spend per trace, for the most expensive: at most `MAX_TRACES`.
    by_trace: HashMap<String, f64>,
    /// UTC day (days since epoch) -> spend, and per feature.
    by_day: BTreeMap<u64, f64>,
    feature_day: BTreeMap<u64, HashMap<String, f64>>,
    /// Spend within the projection window, in buckets of 1/60 of it (oldest
    /// first): memory bounded by the window's shape, not by the traffic.
    recent: VecDeque<Bucket>,
    now: u64,
    missing_price_spans: u64,
    /// Features past their hard limit, by day.
    disabled: BTreeSet<(String, u64)>,
    budget_alerted_day: Option<u64>,
    /// Counted calls by response id hash, revisable within the revision window.
    #[serde(with = "packed::calls")]
    calls: HashMap<u64, Counted>,
    /// (event time, response id hash) in arrival order, to expire `calls`.
    #[serde(with = "packed::order")]
    call_order: VecDeque<(u64, u64)>,
    /// Spans not added because they record a call counted on another span.
    #[serde(default)]
    duplicate_spans: u64,
    /// Entries replaced by a more complete record of the same call.
    #[serde(default)]
    revised_calls: u64,
    #[serde(skip)]
    pending: Vec<Alert>,
}

/// Spend in one slice of the projection window.
#[derive(Default, Serialize, Deserialize)]
struct Bucket {
    /// Event time the slice starts at.
    start: u64,
    total: f64,
    by_feature: HashMap<String, f64>,
}

/// A priced call, as the ledger receives it.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub span: &'a str,
    /// Input + output tokens: the more, the more complete the record.
    pub tokens: i64,
    pub cost: f64,
    pub model: Option<&'a str>,
    pub feature: Option<&'a str>,
    pub user: Option<&'a str>,
    pub trace: &'a str,
    pub at: u64,
}

/// What the ledger keeps of a counted call with a response id, to revise it:
/// 24 bytes, hashes rather than strings, so a window of calls stays small.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Counted {
    span: u64,
    tokens: i64,
    cost: f64,
}

impl Counted {
    fn of(call: &Call<'_>) -> Counted {
        Counted {
            span: fixed_str(call.span),
            tokens: call.tokens,
            cost: call.cost,
        }
    }

    /// True when `self` is the more complete record of the same call
    /// (more tokens; as many: the smaller span id hash, for a fixed order).
    fn ranks_before(&self, other: &Counted) -> bool {
        (self.tokens, std::cmp::Reverse(self.span)) > (other.tokens, std::cmp::Reverse(other.span))
    }
}

/// The revision window in snapshots, as fixed-width little-endian records in
/// one byte string. It holds up to 100,000 calls and snapshots are taken on
/// the pipeline thread while spans wait: as bytes it is one copy (0.4-0.5 ms
/// natively for 100k calls) instead of a serializer call per field.
mod packed {
    use serde::{Deserializer, Serializer, de};

    /// `N` u64 words per record.
    fn write<const N: usize, S: Serializer>(
        records: impl ExactSizeIterator<Item = [u64; N]>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut out = Vec::with_capacity(records.len() * 8 * N);
        for r in records {
            for w in r {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
        s.serialize_bytes(&out)
    }

    fn read<'de, const N: usize, D: Deserializer<'de>>(d: D) -> Result<Vec<[u64; N]>, D::Error> {
        struct Bytes;
        impl de::Visitor<'_> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        let bytes = d.deserialize_bytes(Bytes)?;
        if bytes.len() % (8 * N) != 0 {
            return Err(de::Error::invalid_length(bytes.len(), &"whole records"));
        }
        Ok(bytes
            .chunks_exact(8 * N)
            .map(|c| {
                std::array::from_fn(|i| u64::from_le_bytes(std::array::from_fn(|j| c[8 * i + j])))
            })
            .collect())
    }

    /// `calls`: (response id hash, span id hash, tokens, cost bits).
    pub mod calls {
        use super::super::{Counted, HashMap};
        use serde::{Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            m: &HashMap<u64, Counted>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            let records = m
                .iter()
                .map(|(id, c)| [*id, c.span, c.tokens as u64, c.cost.to_bits()]);
            super::write(records, s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<HashMap<u64, Counted>, D::Error> {
            Ok(super::read::<4, D>(d)?
                .into_iter()
                .map(|[id, span, tokens, cost]| {
                    (
                        id,
                        Counted {
                            span,
                            tokens: tokens as i64,
                            cost: f64::from_bits(cost),
                        },
                    )
                })
                .collect())
        }
    }

    /// `call_order`: (event time, response id hash).
    pub mod order {
        use serde::{Deserializer, Serializer};
        use std::collections::VecDeque;

        pub fn serialize<S: Serializer>(q: &VecDeque<(u64, u64)>, s: S) -> Result<S::Ok, S::Error> {
            super::write(q.iter().map(|(at, id)| [*at, *id]), s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<VecDeque<(u64, u64)>, D::Error> {
            Ok(super::read::<2, D>(d)?
                .into_iter()
                .map(|[at, id]| (at, id))
                .collect())
        }
    }
}

pub struct State {
    config: Config,
    window: u64,
    revision_window: u64,
    ledger: Ledger,
}

impl State {
    fn new(config: Config) -> Result<State, String> {
        let window = plume_sdk::parse_duration(&config.projection_window)
            .map_err(|e| format!("config.projection_window: {e}"))?;
        let revision_window = plume_sdk::parse_duration(&config.revision_window)
            .map_err(|e| format!("config.revision_window: {e}"))?;
        if let Some(b) = config.daily_budget_usd
            && (b.is_nan() || b <= 0.0)
        {
            return Err("config.daily_budget_usd must be positive".into());
        }
        if !(0.0..=1.0).contains(&config.alert_at_fraction) {
            return Err("config.alert_at_fraction must be within 0..=1".into());
        }
        Ok(State {
            config,
            window,
            revision_window,
            ledger: Ledger::default(),
        })
    }

    fn limit_for(&self, feature: &str) -> Option<f64> {
        match &self.config.hard_limit_usd {
            None => None,
            Some(HardLimit::Every(x)) => Some(*x),
            Some(HardLimit::PerFeature(m)) => m.get(feature).copied(),
        }
    }

    /// Records one priced call; with a response id, at most once per call
    /// (see the module docs). A more complete record of a counted call
    /// replaces it: the difference in cost is booked on the new record's
    /// model, feature, user and trace (one call's records name the same ones,
    /// except where two instrumentations spell the model differently).
    pub fn record(&mut self, call: Call<'_>, response_id: Option<&str>) {
        let Some(id) = response_id.filter(|r| !r.is_empty()).map(fixed_str) else {
            self.add_call(&call, call.cost);
            return;
        };
        let new = Counted::of(&call);
        match self.ledger.calls.get(&id).copied() {
            None => {
                self.add_call(&call, call.cost);
                self.ledger.calls.insert(id, new);
                self.ledger.call_order.push_back((call.at, id));
                while self.ledger.call_order.len() > MAX_REVISABLE {
                    if let Some((_, old)) = self.ledger.call_order.pop_front() {
                        self.ledger.calls.remove(&old);
                    }
                }
            }
            Some(held) if new.ranks_before(&held) => {
                self.add_call(&call, new.cost - held.cost);
                self.ledger.calls.insert(id, new);
                self.ledger.revised_calls += 1;
                self.ledger.duplicate_spans += 1;
            }
            Some(_) => self.ledger.duplicate_spans += 1,
        }
    }

    fn add_call(&mut self, c: &Call<'_>, cost: f64) {
        self.add(cost, c.model, c.feature, c.user, c.trace, c.at);
    }

    /// Adds `cost` (negative to take a revised entry back out) to every total.
    pub fn add(
        &mut self,
        cost: f64,
        model: Option<&str>,
        feature: Option<&str>,
        user: Option<&str>,
        trace: &str,
        at: u64,
    ) {
        let l = &mut self.ledger;
        l.total += cost;
        let feature = feature.unwrap_or("unknown");
        bump(&mut l.by_model, model.unwrap_or("unknown"), cost);
        bump(&mut l.by_feature, feature, cost);
        if let Some(u) = user {
            bump(&mut l.by_user, u, cost);
        }
        match l.by_trace.get_mut(trace) {
            Some(sum) => *sum += cost,
            None => {
                l.by_trace.insert(trace.to_string(), cost);
            }
        }
        let day = at / DAY;
        *l.by_day.entry(day).or_default() += cost;
        let width = (self.window / 60).max(1);
        let start = at / width * width;
        let i = match l.recent.back() {
            Some(b) if b.start == start => l.recent.len() - 1,
            _ => match l.recent.binary_search_by_key(&start, |b| b.start) {
                Ok(i) => i,
                Err(i) => {
                    l.recent.insert(
                        i,
                        Bucket {
                            start,
                            ..Bucket::default()
                        },
                    );
                    i
                }
            },
        };
        if let Some(b) = l.recent.get_mut(i) {
            b.total += cost;
            bump(&mut b.by_feature, feature, cost);
        }
        let spent = bump(l.feature_day.entry(day).or_default(), feature, cost);
        l.now = l.now.max(at);
        if let Some(limit) = self.limit_for(feature)
            && spent > limit
            && self.ledger.disabled.insert((feature.to_string(), day))
        {
            self.ledger.pending.push(Alert {
                    rule: "cost_hard_limit".into(),
                    severity: Severity::Page,
                    labels: vec![("feature".into(), feature.to_string())],
                    summary: format!("feature {feature} spent ${spent:.2} today, over its hard limit of ${limit:.2}: disabled"),
                    value: spent,
                    threshold: limit,
                    runbook: self.config.runbook.clone(),
                    firing: true,
                    at,
                });
        }
        // Bound the per-trace map: forget the cheapest, a tenth at a time.
        if self.ledger.by_trace.len() > MAX_TRACES {
            plume_sdk::bound::forget_lowest(&mut self.ledger.by_trace, MAX_TRACES / 10, |c| *c);
        }
    }

    /// Today's spend and its projection at the ledger's event time.
    pub fn projection(&self) -> (f64, f64) {
        let now = self.ledger.now;
        let day = now / DAY;
        let spent = self.ledger.by_day.get(&day).copied().unwrap_or(0.0);
        let in_window: f64 = self.in_window().map(|b| b.total).sum();
        let rate = in_window / self.window as f64; // USD per ns
        let left = ((day + 1) * DAY).saturating_sub(now) as f64;
        (spent, spent + rate * left)
    }

    /// Per feature: today's spend, its projection (same method as the total,
    /// over the feature's own spend), its hard limit and whether it is
    /// disabled. Features with a limit appear even before they spend.
    pub fn features_today(&self) -> BTreeMap<String, serde_json::Value> {
        let l = &self.ledger;
        let now = l.now;
        let day = now / DAY;
        let left = ((day + 1) * DAY).saturating_sub(now) as f64;
        let mut window: BTreeMap<&str, f64> = BTreeMap::new();
        for b in self.in_window() {
            for (f, c) in &b.by_feature {
                *window.entry(f.as_str()).or_default() += c;
            }
        }
        let today = l.feature_day.get(&day);
        let mut names: BTreeSet<&str> = today
            .into_iter()
            .flat_map(|m| m.keys().map(String::as_str))
            .collect();
        if let Some(HardLimit::PerFeature(m)) = &self.config.hard_limit_usd {
            names.extend(m.keys().map(String::as_str));
        }
        names
            .into_iter()
            .map(|f| {
                let spent = today.and_then(|m| m.get(f)).copied().unwrap_or(0.0);
                let rate = window.get(f).copied().unwrap_or(0.0) / self.window as f64;
                let entry = serde_json::json!({
                    "spent_usd": spent,
                    "projected_usd": spent + rate * left,
                    "limit_usd": self.limit_for(f),
                    "disabled": l.disabled.contains(&(f.to_string(), day)),
                });
                (f.to_string(), entry)
            })
            .collect()
    }

    /// The buckets that overlap the projection window (it moves in steps of
    /// a bucket: 1/60 of the window).
    fn in_window(&self) -> impl Iterator<Item = &Bucket> {
        let width = (self.window / 60).max(1);
        let since = self.ledger.now.saturating_sub(self.window);
        self.ledger
            .recent
            .iter()
            .filter(move |b| b.start + width > since)
    }

    fn advance(&mut self, now: u64) -> Vec<Alert> {
        self.ledger.now = self.ledger.now.max(now);
        let since = self.ledger.now.saturating_sub(self.window);
        let width = (self.window / 60).max(1);
        while self
            .ledger
            .recent
            .front()
            .is_some_and(|b| b.start + width <= since)
        {
            self.ledger.recent.pop_front();
        }
        let settled = self.ledger.now.saturating_sub(self.revision_window);
        while self
            .ledger
            .call_order
            .front()
            .is_some_and(|(t, _)| *t <= settled)
        {
            if let Some((_, id)) = self.ledger.call_order.pop_front() {
                self.ledger.calls.remove(&id);
            }
        }
        let mut alerts = std::mem::take(&mut self.ledger.pending);
        if let Some(budget) = self.config.daily_budget_usd {
            let (spent, projected) = self.projection();
            let day = self.ledger.now / DAY;
            if projected > budget * self.config.alert_at_fraction
                && self.ledger.budget_alerted_day != Some(day)
            {
                self.ledger.budget_alerted_day = Some(day);
                alerts.push(Alert {
                    rule: "cost_projection".into(),
                    severity: if projected > budget { Severity::Page } else { Severity::Warning },
                    labels: vec![],
                    summary: format!(
                        "projected daily spend ${projected:.2} is {:.0}% of the ${budget:.2} budget (spent ${spent:.2} so far)",
                        projected / budget * 100.0
                    ),
                    value: projected,
                    threshold: budget * self.config.alert_at_fraction,
                    runbook: self.config.runbook.clone(),
                    firing: true,
                    at: self.ledger.now,
                });
            }
        }
        alerts
    }

    /// The report section (DESIGN.md shape plus details).
    pub fn report(&self) -> serde_json::Value {
        let l = &self.ledger;
        let (spent, projected) = self.projection();
        let mut top: Vec<(&String, &f64)> = l.by_trace.iter().collect();
        top.sort_by(|a, b| b.1.total_cmp(a.1).then_with(|| a.0.cmp(b.0)));
        top.truncate(self.config.top_traces);
        let today = l.now / DAY;
        let disabled: Vec<&String> = l
            .disabled
            .iter()
            .filter(|(_, d)| *d == today)
            .map(|(f, _)| f)
            .collect();
        serde_json::json!({"cost": {
            "total_usd": l.total,
            "by_model": l.by_model,
            "by_feature": l.by_feature,
            "by_user": l.by_user,
            "daily_budget_usd": self.config.daily_budget_usd,
            "spent_today_usd": spent,
            "projected_daily_usd": projected,
            "over_budget": self.config.daily_budget_usd.map(|b| projected > b),
            "projection_method": "spent today + spend rate over the trailing projection_window x time left in the UTC day (event time)",
            "disabled_features": disabled,
            "features_today": self.features_today(),
            "default_limit_usd": match &self.config.hard_limit_usd {
                Some(HardLimit::Every(x)) => Some(*x),
                _ => None,
            },
            "top_traces": top.into_iter().map(|(t, c)| serde_json::json!({"trace_id": t, "cost_usd": c})).collect::<Vec<_>>(),
            "missing_price_spans": l.missing_price_spans,
            "duplicate_spans": l.duplicate_spans,
            "revised_calls": l.revised_calls,
        }})
    }
}

/// Adds `by` to `key`'s sum, allocating the key only when it is new (this
/// runs for every priced span); returns the new sum.
fn bump(map: &mut HashMap<String, f64>, key: &str, by: f64) -> f64 {
    match map.get_mut(key) {
        Some(sum) => {
            *sum += by;
            *sum
        }
        None => {
            map.insert(key.to_string(), by);
            by
        }
    }
}

impl State {
    /// The ledger as bytes for the host to keep (`snapshot`). Failing to
    /// serialise is a bug, not a state to hide: it panics, which the host
    /// reports as a trap.
    pub fn snapshot(&self) -> Vec<u8> {
        plume_sdk::state::save(&self.ledger)
    }
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fn first_str<'a>(v: &[ValueRef<'a>], from: usize, n: usize) -> Option<&'a str> {
    v[from..from + n].iter().find_map(|x| x.as_str())
}

struct CostLedger;

impl Guest for CostLedger {
    fn init(config: String) -> Result<Manifest, String> {
        let state = State::new(plume_sdk::parse_config(&config)?)?;
        let attr = |k: &str| Field::Attribute(k.to_string());
        let mut reads = vec![
            attr("gen_ai.usage.cost"),
            attr("plume.cost.counted"),
            attr("gen_ai.request.model"),
            attr("gen_ai.response.model"),
            Field::TraceId,
            Field::EndTime,
            attr("plume.price.missing"),
            attr("gen_ai.response.id"),
            Field::SpanId,
            attr("gen_ai.usage.input_tokens"),
            attr("gen_ai.usage.output_tokens"),
        ];
        reads.extend(state.config.feature_keys.iter().map(|k| attr(k)));
        reads.extend(state.config.user_keys.iter().map(|k| attr(k)));
        STATE.with(|s| *s.borrow_mut() = Some(state));
        Ok(Manifest {
            reads,
            writes: vec![],
            require_any: vec![read::COST as u32, read::MISSING as u32],
            sparse: false,
        })
    }

    fn observe(batch: Batch) -> Result<(), String> {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let st = s.as_mut().ok_or("observe before init")?;
            let (nf, nu) = (st.config.feature_keys.len(), st.config.user_keys.len());
            for (_, v) in Rows::new(&batch, read::FIXED + nf + nu)?.iter() {
                if v[read::MISSING].as_bool() == Some(true) {
                    st.ledger.missing_price_spans += 1;
                }
                let Some(cost) = v[read::COST].as_f64() else {
                    continue;
                };
                if v[read::COUNTED].as_bool() == Some(false) {
                    st.ledger.duplicate_spans += 1;
                    continue;
                }
                let model = v[read::MODEL].as_str().or(v[read::RESPONSE_MODEL].as_str());
                let feature = first_str(v, read::FIXED, nf);
                let user = first_str(v, read::FIXED + nf, nu);
                let trace = v[read::TRACE].as_str().unwrap_or_default();
                let at = v[read::END].as_i64().unwrap_or(0).max(0) as u64;
                let tokens = |i: usize| v[i].as_i64().unwrap_or(0);
                let call = Call {
                    span: v[read::SPAN].as_str().unwrap_or_default(),
                    tokens: tokens(read::INPUT) + tokens(read::OUTPUT),
                    cost,
                    model,
                    feature,
                    user,
                    trace,
                    at,
                };
                st.record(call, v[read::RESPONSE_ID].as_str());
            }
            Ok(())
        })
    }

    fn tick(now: u64) -> Result<Vec<Alert>, String> {
        STATE.with(|s| {
            Ok(s.borrow_mut()
                .as_mut()
                .map(|st| st.advance(now))
                .unwrap_or_default())
        })
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
                .map(|st| st.snapshot())
                .unwrap_or_default()
        })
    }

    fn restore(state: Vec<u8>) -> Result<(), String> {
        let ledger: Ledger = plume_sdk::state::load(&state)?;
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.as_mut().ok_or("restore before init")?.ledger = ledger;
            Ok(())
        })
    }
}

export_evaluator!(CostLedger);

#[cfg(test)]
mod tests;
