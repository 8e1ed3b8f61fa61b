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
//! | `revision_window` | `"10m"` | how long (event time) a call stays revisable by response id (for the last 50,000 calls at least, 100,000 at most) |
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

use plume_sdk::bound::Recent;
use plume_sdk::evaluator::{Guest, export_evaluator};
use plume_sdk::hash::fixed_str;
use plume_sdk::ids::TraceKey;
use plume_sdk::types::{Alert, Batch, Field, Manifest, Severity};
use plume_sdk::{Rows, ValueRef};
use quick::HashMap;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::hash_map::Entry;
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

/// Calls remembered for revision, whatever the window: the last 50,000 at
/// least and 100,000 at most (two generations, see `plume_sdk::bound::Recent`).
const REVISABLE: usize = 50_000;

/// Traces whose spend is kept for `top_traces` at most; past it the cheaper
/// half is forgotten. Each forgetting is a pass over the whole map, so the
/// share forgotten sets its cost per trace: a tenth at a time cost the
/// ledger 60-80 ns a span (BENCHMARKS.md); half, a fifth of that. The most
/// expensive traces, the only ones reported, stay either way.
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
    // Sums by name: each name is looked up once per priced span (or not at
    // all when it is the previous span's), and the feature's slot then
    // indexes its day's and its window bucket's sums.
    // Models and features are few, users many.
    by_model: Sums<4>,
    by_feature: Sums<4>,
    by_user: Sums<1>,
    /// Spend per trace, for the most expensive: at most `MAX_TRACES`.
    #[serde(with = "packed::traces")]
    by_trace: HashMap<TraceKey, f64>,
    /// UTC day (days since epoch) -> spend, in total and per feature.
    days: BTreeMap<u64, Day>,
    /// Spend within the projection window, in buckets of 1/60 of it (oldest
    /// first): memory bounded by the window's shape, not by the traffic.
    recent: VecDeque<Bucket>,
    now: u64,
    missing_price_spans: u64,
    budget_alerted_day: Option<u64>,
    /// Counted calls by response id hash, revisable within the revision window.
    #[serde(with = "packed::calls")]
    calls: Calls,
    /// Spans not added because they record a call counted on another span.
    duplicate_spans: u64,
    /// Entries replaced by a more complete record of the same call.
    revised_calls: u64,
    #[serde(skip)]
    pending: Vec<Alert>,
}

/// Sums by name. A name gets a slot the first time it is added to; the
/// last `RECENT` names looked up are remembered (most recent first), so that
/// a span naming one of them costs string comparisons, not a hash lookup.
#[derive(Default, Serialize, Deserialize)]
struct Sums<const RECENT: usize> {
    /// Name -> index into `sums`.
    slots: HashMap<String, u32>,
    sums: Vec<f64>,
    /// Recent names and their slots, most recent first.
    #[serde(skip)]
    recent: Vec<(String, usize)>,
}

impl<const RECENT: usize> Sums<RECENT> {
    /// Adds `by` to `name`'s sum (a new name starts at `by`); returns the
    /// name's slot.
    fn add(&mut self, name: &str, by: f64) -> usize {
        if let Some(i) = self.recent.iter().position(|(n, _)| n == name) {
            let slot = self.recent[i].1;
            self.recent[..=i].rotate_right(1);
            self.sums[slot] += by;
            return slot;
        }
        let slot = match self.slots.get(name) {
            Some(&slot) => {
                let slot = slot as usize;
                self.sums[slot] += by;
                slot
            }
            None => {
                let slot = self.sums.len();
                self.slots.insert(name.to_string(), slot as u32);
                self.sums.push(by);
                slot
            }
        };
        // The oldest entry's string is reused: no allocation per span.
        if self.recent.len() < RECENT {
            self.recent.push((String::new(), 0));
        }
        self.recent.rotate_right(1);
        let (last, at) = &mut self.recent[0];
        last.clear();
        last.push_str(name);
        *at = slot;
        slot
    }

    /// Names and their slots, in no particular order.
    fn slots(&self) -> impl Iterator<Item = (&str, usize)> {
        self.slots.iter().map(|(n, s)| (n.as_str(), *s as usize))
    }

    /// Name -> sum, sorted by name.
    fn sorted(&self) -> BTreeMap<&str, f64> {
        self.slots().map(|(n, s)| (n, self.sums[s])).collect()
    }

    fn len(&self) -> usize {
        self.sums.len()
    }
}

/// One UTC day's spend.
#[derive(Default, Serialize, Deserialize)]
struct Day {
    total: f64,
    /// By feature slot (`Ledger::by_feature`).
    features: Vec<FeatureDay>,
}

/// One feature's spend in one day.
#[derive(Default, Clone, Copy, Serialize, Deserialize)]
struct FeatureDay {
    /// `None` until the feature spends that day.
    spent: Option<f64>,
    /// Past its hard limit that day.
    disabled: bool,
}

/// Spend in one slice of the projection window.
#[derive(Default, Serialize, Deserialize)]
struct Bucket {
    /// Event time the slice starts at.
    start: u64,
    total: f64,
    /// By feature slot; 0 for a feature that did not spend in the slice
    /// (adding 0.0 to a sum leaves it as it is).
    by_feature: Vec<f64>,
}

/// `slots[slot]`, the vector grown to hold it.
fn at_slot<T: Default + Clone>(slots: &mut Vec<T>, slot: usize) -> &mut T {
    if slot >= slots.len() {
        slots.resize(slot + 1, T::default());
    }
    &mut slots[slot]
}

/// Hash maps of the per-span path: the SDK's seeded foldhash, except that
/// each integer write is folded in at once (one multiply) rather than
/// through foldhash's 128-bit sponge, whose variable shift wasm32 emulates in
/// a libcall (`__ashlti3`). A `str` key ends with such a write (a 0xff
/// marker), a `u64` key is one.
mod quick {
    use plume_sdk::hash::Seeded;
    use std::hash::{BuildHasher, Hasher};

    #[derive(Clone, Debug, Default)]
    pub struct State(Seeded);

    impl BuildHasher for State {
        type Hasher = QuickHasher;
        fn build_hasher(&self) -> QuickHasher {
            QuickHasher(self.0.build_hasher())
        }
    }

    pub struct QuickHasher(<Seeded as BuildHasher>::Hasher);

    impl Hasher for QuickHasher {
        #[inline]
        fn write(&mut self, bytes: &[u8]) {
            self.0.write(bytes);
        }
        #[inline]
        fn write_u8(&mut self, i: u8) {
            self.0.write_u128(i.into());
        }
        #[inline]
        fn write_u16(&mut self, i: u16) {
            self.0.write_u128(i.into());
        }
        #[inline]
        fn write_u32(&mut self, i: u32) {
            self.0.write_u128(i.into());
        }
        #[inline]
        fn write_u64(&mut self, i: u64) {
            self.0.write_u128(i.into());
        }
        #[inline]
        fn write_u128(&mut self, i: u128) {
            self.0.write_u128(i);
        }
        #[inline]
        fn write_usize(&mut self, i: usize) {
            self.0.write_u128(i as u128);
        }
        #[inline]
        fn finish(&self) -> u64 {
            self.0.finish()
        }
    }

    pub type HashMap<K, V> = std::collections::HashMap<K, V, State>;
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

/// Counted calls by response id hash. Generations cleared in place rather
/// than a map and an expiry queue: removing the oldest call one at a time
/// leaves tombstones, and past half full they make the map double.
pub struct Calls(Recent<u64, Counted>);

impl Default for Calls {
    fn default() -> Self {
        Calls(Recent::new(REVISABLE))
    }
}

/// What the ledger keeps of a counted call with a response id, to revise it:
/// 32 bytes, hashes rather than strings, so a window of calls stays small.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Counted {
    span: u64,
    tokens: i64,
    cost: f64,
    /// Event time, for the revision window.
    at: u64,
}

impl Counted {
    fn of(call: &Call<'_>) -> Counted {
        Counted {
            span: fixed_str(call.span),
            tokens: call.tokens,
            cost: call.cost,
            at: call.at,
        }
    }

    /// True when `self` is the more complete record of the same call
    /// (more tokens; as many: the smaller span id hash, for a fixed order).
    fn ranks_before(&self, other: &Counted) -> bool {
        (self.tokens, std::cmp::Reverse(self.span)) > (other.tokens, std::cmp::Reverse(other.span))
    }
}

/// The revision window in snapshots, as fixed-width little-endian records in
/// byte strings. It holds up to 100,000 calls and snapshots are taken on the
/// pipeline thread while spans wait: as bytes it is a copy (0.4-0.5 ms
/// natively for 100k calls) instead of a serializer call per field. The
/// records go out in chunks through one small buffer: a buffer of the whole
/// window (3 MiB for 100k calls) would stay in the plugin's linear memory,
/// which never shrinks.
mod packed {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

    /// Records per chunk (32 KiB for the widest).
    const CHUNK: usize = 1024;

    /// Records of `N` u64 words, from a function that lists them (called
    /// twice: to count them, then to write them), as byte strings of at
    /// most `CHUNK` records.
    struct Records<F>(F);

    impl<F, I, const N: usize> Serialize for Records<F>
    where
        F: Fn() -> I,
        I: Iterator<Item = [u64; N]>,
    {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let count = (self.0)().count();
            let mut seq = s.serialize_seq(Some(count.div_ceil(CHUNK)))?;
            let mut buf = Vec::with_capacity(CHUNK.min(count) * 8 * N);
            let mut records = (self.0)();
            loop {
                buf.clear();
                for r in records.by_ref().take(CHUNK) {
                    for w in r {
                        buf.extend_from_slice(&w.to_le_bytes());
                    }
                }
                if buf.is_empty() {
                    break;
                }
                seq.serialize_element(&Bytes(&buf))?;
            }
            seq.end()
        }
    }

    /// What [`Records`] wrote, read back.
    struct Unpacked<const N: usize>(Vec<[u64; N]>);

    impl<'de, const N: usize> Deserialize<'de> for Unpacked<N> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let chunks: Vec<ByteBuf> = Deserialize::deserialize(d)?;
            let mut out = Vec::new();
            for ByteBuf(bytes) in chunks {
                if !bytes.len().is_multiple_of(8 * N) {
                    return Err(de::Error::invalid_length(bytes.len(), &"whole records"));
                }
                out.extend(bytes.chunks_exact(8 * N).map(|c| {
                    std::array::from_fn(|i| {
                        u64::from_le_bytes(std::array::from_fn(|j| c[8 * i + j]))
                    })
                }));
            }
            Ok(Unpacked(out))
        }
    }

    /// A byte string out (serde's derive would write a `Vec<u8>` a byte at a
    /// time) ...
    struct Bytes<'a>(&'a [u8]);

    impl Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    /// ... and in.
    struct ByteBuf(Vec<u8>);

    impl<'de> Deserialize<'de> for ByteBuf {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteBuf, D::Error> {
            struct Visitor;
            impl de::Visitor<'_> for Visitor {
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
            d.deserialize_bytes(Visitor).map(ByteBuf)
        }
    }

    /// `calls`: each generation as (response id hash, span id hash, tokens,
    /// cost bits, event time) records.
    pub mod calls {
        use super::super::{Calls, Counted, REVISABLE};
        use super::{Records, Unpacked};
        use plume_sdk::bound::Recent;
        use plume_sdk::hash::HashMap;
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        fn records(m: &HashMap<u64, Counted>) -> impl Iterator<Item = [u64; 5]> + '_ {
            m.iter()
                .map(|(id, c)| [*id, c.span, c.tokens as u64, c.cost.to_bits(), c.at])
        }

        fn map(records: Unpacked<5>) -> HashMap<u64, Counted> {
            let calls = records.0.into_iter().map(|[id, span, tokens, cost, at]| {
                let cost = f64::from_bits(cost);
                let tokens = tokens as i64;
                (
                    id,
                    Counted {
                        span,
                        tokens,
                        cost,
                        at,
                    },
                )
            });
            calls.collect()
        }

        pub fn serialize<S: Serializer>(c: &Calls, s: S) -> Result<S::Ok, S::Error> {
            let [previous, current] = c.0.generations();
            (Records(|| records(previous)), Records(|| records(current))).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Calls, D::Error> {
            let (previous, current) = <(Unpacked<5>, Unpacked<5>)>::deserialize(d)?;
            Ok(Calls(Recent::from_generations(
                REVISABLE,
                map(previous),
                map(current),
            )))
        }
    }

    /// `by_trace`: 32-byte ids as (4 words of id, cost bits) records, and
    /// the other ids as (text, cost).
    pub mod traces {
        use super::super::{HashMap, TraceKey};
        use super::{Records, Unpacked};
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        fn words(id: &[u8; 32]) -> [u64; 4] {
            std::array::from_fn(|i| u64::from_le_bytes(std::array::from_fn(|j| id[8 * i + j])))
        }

        pub fn serialize<S: Serializer>(
            m: &HashMap<TraceKey, f64>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            let ids = || {
                m.iter().filter_map(|(t, c)| match t {
                    TraceKey::Id(id) => {
                        let [a, b, c2, d] = words(id);
                        Some([a, b, c2, d, c.to_bits()])
                    }
                    TraceKey::Text(_) => None,
                })
            };
            let texts: Vec<(&str, f64)> = m
                .iter()
                .filter_map(|(t, c)| match t {
                    TraceKey::Text(text) => Some((&**text, *c)),
                    TraceKey::Id(_) => None,
                })
                .collect();
            (Records(ids), texts).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<HashMap<TraceKey, f64>, D::Error> {
            let (ids, texts): (Unpacked<5>, Vec<(Box<str>, f64)>) = Deserialize::deserialize(d)?;
            let ids = ids.0.into_iter().map(|[a, b, c, d, cost]| {
                let mut id = [0u8; 32];
                for (chunk, w) in id.chunks_exact_mut(8).zip([a, b, c, d]) {
                    chunk.copy_from_slice(&w.to_le_bytes());
                }
                (TraceKey::Id(id), f64::from_bits(cost))
            });
            let texts = texts.into_iter().map(|(t, c)| (TraceKey::Text(t), c));
            Ok(ids.chain(texts).collect())
        }
    }
}

fn limit_for(limits: &Option<HardLimit>, feature: &str) -> Option<f64> {
    match limits {
        None => None,
        Some(HardLimit::Every(x)) => Some(*x),
        Some(HardLimit::PerFeature(m)) => m.get(feature).copied(),
    }
}

pub struct State {
    config: Config,
    window: u64,
    /// Width of a projection bucket: 1/60 of the window.
    width: u64,
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
            width: (window / 60).max(1),
            revision_window,
            ledger: Ledger::default(),
        })
    }

    fn limit_for(&self, feature: &str) -> Option<f64> {
        limit_for(&self.config.hard_limit_usd, feature)
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
        let settled = self.ledger.now.saturating_sub(self.revision_window);
        let l = &mut self.ledger;
        let cost = match l.calls.0.get_mut_or_insert(id, new) {
            Some(held) if held.at > settled => {
                if !new.ranks_before(held) {
                    l.duplicate_spans += 1;
                    return;
                }
                let old = std::mem::replace(held, new);
                l.revised_calls += 1;
                l.duplicate_spans += 1;
                new.cost - old.cost
            }
            // Settled (its generation not yet forgotten): counted anew.
            Some(held) => {
                *held = new;
                call.cost
            }
            // Unknown: now remembered.
            None => call.cost,
        };
        self.add_call(&call, cost);
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
        l.by_model.add(model.unwrap_or("unknown"), cost);
        let slot = l.by_feature.add(feature, cost);
        if let Some(u) = user {
            l.by_user.add(u, cost);
        }
        match l.by_trace.entry(TraceKey::of(trace)) {
            Entry::Occupied(mut sum) => *sum.get_mut() += cost,
            Entry::Vacant(v) => {
                v.insert(cost);
            }
        }
        let day = at / DAY;
        // Spans mostly belong to the latest day.
        let today = match l.days.last_entry() {
            Some(d) if *d.key() == day => d.into_mut(),
            _ => l.days.entry(day).or_default(),
        };
        today.total += cost;
        let start = at / self.width * self.width;
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
            *at_slot(&mut b.by_feature, slot) += cost;
        }
        let spend = at_slot(&mut today.features, slot);
        let spent = spend.spent.map_or(cost, |s| s + cost);
        spend.spent = Some(spent);
        l.now = l.now.max(at);
        if let Some(limit) = limit_for(&self.config.hard_limit_usd, feature)
            && spent > limit
            && !spend.disabled
        {
            spend.disabled = true;
            l.pending.push(Alert {
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
        // Bound the per-trace map: forget the cheaper half.
        if l.by_trace.len() > MAX_TRACES {
            plume_sdk::bound::forget_lowest(&mut l.by_trace, MAX_TRACES / 2, |c| *c);
        }
    }

    /// Today's spend and its projection at the ledger's event time.
    pub fn projection(&self) -> (f64, f64) {
        let now = self.ledger.now;
        let day = now / DAY;
        let spent = self.ledger.days.get(&day).map_or(0.0, |d| d.total);
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
        // By feature slot.
        let mut window = vec![0.0; l.by_feature.len()];
        for b in self.in_window() {
            for (w, c) in window.iter_mut().zip(&b.by_feature) {
                *w += c;
            }
        }
        let today = |slot: usize| {
            l.days
                .get(&day)
                .and_then(|d| d.features.get(slot))
                .copied()
                .unwrap_or_default()
        };
        let mut names: BTreeSet<&str> = l
            .by_feature
            .slots()
            .filter(|&(_, slot)| today(slot).spent.is_some())
            .map(|(f, _)| f)
            .collect();
        if let Some(HardLimit::PerFeature(m)) = &self.config.hard_limit_usd {
            names.extend(m.keys().map(String::as_str));
        }
        names
            .into_iter()
            .map(|f| {
                let slot = l.by_feature.slots.get(f).map(|&s| s as usize);
                let spend = slot.map(today).unwrap_or_default();
                let spent = spend.spent.unwrap_or(0.0);
                let in_window = slot.and_then(|s| window.get(s)).copied().unwrap_or(0.0);
                let rate = in_window / self.window as f64;
                let entry = serde_json::json!({
                    "spent_usd": spent,
                    "projected_usd": spent + rate * left,
                    "limit_usd": self.limit_for(f),
                    "disabled": spend.disabled,
                });
                (f.to_string(), entry)
            })
            .collect()
    }

    /// The buckets that overlap the projection window (it moves in steps of
    /// a bucket: 1/60 of the window).
    fn in_window(&self) -> impl Iterator<Item = &Bucket> {
        let width = self.width;
        let since = self.ledger.now.saturating_sub(self.window);
        self.ledger
            .recent
            .iter()
            .filter(move |b| b.start + width > since)
    }

    fn advance(&mut self, now: u64) -> Vec<Alert> {
        self.ledger.now = self.ledger.now.max(now);
        let since = self.ledger.now.saturating_sub(self.window);
        let width = self.width;
        while self
            .ledger
            .recent
            .front()
            .is_some_and(|b| b.start + width <= since)
        {
            self.ledger.recent.pop_front();
        }
        let settled = self.ledger.now.saturating_sub(self.revision_window);
        self.ledger.calls.0.forget_old(|c| c.at <= settled);
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
        let mut top: Vec<(&TraceKey, &f64)> = l.by_trace.iter().collect();
        top.sort_by(|a, b| {
            b.1.total_cmp(a.1)
                .then_with(|| a.0.as_str().cmp(b.0.as_str()))
        });
        top.truncate(self.config.top_traces);
        let disabled: Vec<&str> = match l.days.get(&(l.now / DAY)) {
            Some(today) => l
                .by_feature
                .slots()
                .filter(|&(_, slot)| today.features.get(slot).is_some_and(|f| f.disabled))
                .map(|(f, _)| f)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            None => vec![],
        };
        serde_json::json!({"cost": {
            "total_usd": l.total,
            "by_model": l.by_model.sorted(),
            "by_feature": l.by_feature.sorted(),
            "by_user": l.by_user.sorted(),
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
            "top_traces": top.into_iter().map(|(t, c)| serde_json::json!({"trace_id": t.as_str(), "cost_usd": c})).collect::<Vec<_>>(),
            "missing_price_spans": l.missing_price_spans,
            "duplicate_spans": l.duplicate_spans,
            "revised_calls": l.revised_calls,
        }})
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
