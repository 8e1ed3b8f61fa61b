//! Rust guest SDK for plume plugins.
//!
//! A plugin crate is a `cdylib` built for `wasm32-wasip2`. It implements the
//! `Guest` trait of one world and exports it with that world's macro:
//!
//! ```ignore
//! use plume_sdk::processor::{Guest, export_processor};
//! use plume_sdk::types::{Batch, BatchResult, Manifest};
//!
//! struct MyPlugin;
//! impl Guest for MyPlugin {
//!     fn init(config: String) -> Result<Manifest, String> { todo!() }
//!     fn process(batch: Batch) -> Result<BatchResult, String> { todo!() }
//! }
//! export_processor!(MyPlugin);
//! ```
//!
//! The WIT in `wit/pipeline.wit` is the reference for every type and call.
//! Besides the bindings, this crate offers [`Rows`] to walk a projected batch
//! (and [`Cells`], its present values only, for manifests with many reads),
//! [`parse_config`] to read the JSON config, and [`log`] helpers.

#![allow(unsafe_code)] // generated bindings

/// The plugin's heap (feature `talc`, on by default): see `Cargo.toml`.
#[cfg(all(
    feature = "talc",
    target_family = "wasm",
    not(target_feature = "atomics")
))]
#[global_allocator]
static HEAP: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

pub mod ids;
mod memcmp;

/// Bindings of the `processor` world.
#[allow(missing_docs, clippy::too_many_arguments)] // generated: a packed batch lowers as 13 arguments
pub mod processor {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "processor",
        additional_derives: [PartialEq],
        pub_export_macro: true,
        export_macro_name: "export_processor",
        default_bindings_module: "plume_sdk::processor",
    });
}

/// Bindings of the `evaluator` world.
#[allow(missing_docs, clippy::too_many_arguments)] // generated: a packed batch lowers as 13 arguments
pub mod evaluator {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "evaluator",
        pub_export_macro: true,
        export_macro_name: "export_evaluator",
        default_bindings_module: "plume_sdk::evaluator",
        with: {
            "plume:pipeline/types@0.3.0": crate::processor::plume::pipeline::types,
            "plume:pipeline/host@0.3.0": crate::processor::plume::pipeline::host,
        },
    });
}

/// Bindings of the `router` world.
#[allow(missing_docs, clippy::too_many_arguments)] // generated: a packed batch lowers as 13 arguments
pub mod router {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "router",
        pub_export_macro: true,
        export_macro_name: "export_router",
        default_bindings_module: "plume_sdk::router",
        with: {
            "plume:pipeline/types@0.3.0": crate::processor::plume::pipeline::types,
            "plume:pipeline/host@0.3.0": crate::processor::plume::pipeline::host,
        },
    });
}

/// Bindings of the `exporter` world.
#[allow(missing_docs, clippy::too_many_arguments)] // generated: a packed batch lowers as 13 arguments
pub mod exporter {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "exporter",
        pub_export_macro: true,
        export_macro_name: "export_exporter",
        default_bindings_module: "plume_sdk::exporter",
        with: {
            "plume:pipeline/types@0.3.0": crate::processor::plume::pipeline::types,
            "plume:pipeline/host@0.3.0": crate::processor::plume::pipeline::host,
        },
    });
}

/// Hash maps for plugin state on the per-span path: foldhash, several times
/// faster than std's SipHash on short keys such as ids, seeded once per
/// instance from WASI randomness (as std's maps are) so that clients cannot
/// precompute colliding span or trace ids. Build them with `default()` or
/// `with_capacity_and_hasher(n, Default::default())`.
pub mod hash {
    use foldhash::SharedSeed;
    use foldhash::fast::{FoldHasher, SeedableRandomState};
    use std::hash::BuildHasher;
    use std::sync::OnceLock;

    /// A foldhash state seeded from the instance's random seed.
    #[derive(Clone, Debug)]
    pub struct Seeded(SeedableRandomState);

    impl Default for Seeded {
        fn default() -> Self {
            static SEED: OnceLock<(u64, SharedSeed)> = OnceLock::new();
            let (per_hasher, shared) = SEED.get_or_init(|| {
                let random = std::hash::RandomState::new();
                (
                    random.hash_one(1u8),
                    SharedSeed::from_u64(random.hash_one(2u8)),
                )
            });
            Seeded(SeedableRandomState::with_seed(*per_hasher, shared))
        }
    }

    impl BuildHasher for Seeded {
        type Hasher = FoldHasher<'static>;
        fn build_hasher(&self) -> Self::Hasher {
            self.0.build_hasher()
        }
    }

    /// A hasher that gives the same value in every run of one build
    /// (foldhash with a fixed seed): for hashes kept in place of long strings
    /// (response ids, tool arguments), so that a replay decides the same way
    /// each time. Not for bytes meant to outlive the build: evaluator
    /// snapshots do not (the host keeps them in memory, for the process that
    /// took them).
    pub fn fixed() -> FoldHasher<'static> {
        foldhash::fast::FixedState::with_seed(0x706c_756d_6501).build_hasher()
    }

    /// [`fixed`] of one string.
    pub fn fixed_str(s: &str) -> u64 {
        use std::hash::Hasher;
        let mut h = fixed();
        h.write(s.as_bytes());
        h.finish()
    }

    /// `std::collections::HashMap` with [`Seeded`] foldhash.
    pub type HashMap<K, V> = std::collections::HashMap<K, V, Seeded>;
    /// `std::collections::HashSet` with [`Seeded`] foldhash.
    pub type HashSet<K> = std::collections::HashSet<K, Seeded>;
}

/// Evaluator state for `snapshot` and `restore`: one encoding for every
/// builtin. The host takes snapshots on the pipeline thread while every span
/// waits, so they are binary (postcard) rather than JSON: several times
/// cheaper to write for a ledger of 100k calls. The bytes are private to the
/// plugin that wrote them; a version byte leads, so a later format can refuse
/// an older one with a message instead of misreading it.
pub mod state {
    /// The format written by [`save`].
    const VERSION: u8 = 1;

    /// Encodes `value` for `snapshot`. Failing to encode is a bug, not a
    /// state to hide: it panics, which the host reports as a trap.
    pub fn save<T: serde::Serialize>(value: &T) -> Vec<u8> {
        // Measured first, then written into a buffer of that size: a buffer
        // grown by doubling would hold twice the state for a moment, and a
        // plugin's linear memory never shrinks back.
        let size = postcard::serialize_with_flavor::<T, _, usize>(
            value,
            postcard::ser_flavors::Size::default(),
        )
        .expect("plugin state encodes (postcard)");
        let mut out = Vec::with_capacity(1 + size);
        out.push(VERSION);
        postcard::to_extend(value, out).expect("plugin state encodes (postcard)")
    }

    /// Decodes bytes written by [`save`] of the same plugin.
    pub fn load<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        match bytes.split_first() {
            Some((&VERSION, rest)) => postcard::from_bytes(rest).map_err(|e| format!("state: {e}")),
            Some((v, _)) => Err(format!("state: format {v} is not {VERSION}")),
            None => Err("state: empty".into()),
        }
    }
}

/// Keeping per-key state bounded (traces, calls) without stalling the
/// pipeline: the host calls a plugin on its pipeline thread, so a bound that
/// sorts the whole map delays every span behind it.
pub mod bound {
    use std::collections::HashMap;
    use std::collections::hash_map::{Entry, VacantEntry};
    use std::hash::{BuildHasher, Hash};

    /// Forgets the `count` entries of `map` with the lowest `score` (exactly
    /// `count`, ties broken by iteration order), in one pass to find the
    /// cutoff (`select_nth_unstable`, no sort, no copies of the keys) and one
    /// `retain`. Returns how many were forgotten. Call it when the map passes
    /// its bound, with `count` a fraction of the bound: the work per insert
    /// stays constant, and the larger the fraction, the smaller it is (each
    /// call is a pass over the whole map; the builtins forget half).
    pub fn forget_lowest<K, V, S, T>(
        map: &mut HashMap<K, V, S>,
        count: usize,
        score: impl Fn(&V) -> T,
    ) -> usize
    where
        K: Hash + Eq,
        S: BuildHasher,
        T: PartialOrd + Copy,
    {
        let count = count.min(map.len());
        if count == 0 {
            return 0;
        }
        let order = |a: &T, b: &T| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal);
        let mut scores: Vec<T> = map.values().map(&score).collect();
        let cutoff = *scores.select_nth_unstable_by(count - 1, order).1;
        let lower = scores
            .iter()
            .filter(|s| order(s, &cutoff) == std::cmp::Ordering::Less)
            .count();
        let mut at_cutoff = count - lower;
        let before = map.len();
        map.retain(|_, v| match order(&score(v), &cutoff) {
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal if at_cutoff > 0 => {
                at_cutoff -= 1;
                false
            }
            _ => true,
        });
        before - map.len()
    }

    /// Values for the most recent keys (calls, tool invocations), at least
    /// `at_least` of them and at most twice that, in two generations: new
    /// keys go into the current one, and when it holds `at_least` it becomes
    /// the previous one, whose keys are forgotten together. A key found in
    /// the previous generation moves to the current one, so keys in use stay.
    ///
    /// Why not one map and a queue of keys, oldest forgotten first: every
    /// forgotten key leaves a tombstone in the map, tombstones make it grow
    /// to twice the size it needs (and a plugin's memory never shrinks), and
    /// the queue costs 8 bytes per key more. Two maps of `at_least` keys stay
    /// the size they first grew to, cleared in place.
    #[derive(Debug, Clone)]
    pub struct Recent<K, V> {
        current: crate::hash::HashMap<K, V>,
        previous: crate::hash::HashMap<K, V>,
        at_least: usize,
    }

    impl<K: Hash + Eq, V> Recent<K, V> {
        /// Remembers at least the last `at_least` keys; 0 remembers none.
        pub fn new(at_least: usize) -> Self {
            Recent {
                current: Default::default(),
                previous: Default::default(),
                at_least,
            }
        }

        /// The value of `key`, if it is remembered.
        pub fn get(&self, key: &K) -> Option<&V> {
            self.current.get(key).or_else(|| self.previous.get(key))
        }

        /// The value of `key` to change, the key then counting as recent
        /// again; when `key` is not remembered, remembers it with `value`
        /// and returns `None`.
        pub fn get_mut_or_insert(&mut self, key: K, value: V) -> Option<&mut V> {
            if self.at_least == 0 {
                return None;
            }
            match self.find(key) {
                Ok(held) => Some(held),
                Err(slot) => {
                    slot.insert(value);
                    None
                }
            }
        }

        /// True when `key` is remembered.
        pub fn contains_key(&self, key: &K) -> bool {
            self.get(key).is_some()
        }

        /// Remembers `key` with `value` (replacing a value it had).
        pub fn insert(&mut self, key: K, value: V) {
            if self.at_least == 0 {
                return;
            }
            match self.find(key) {
                Ok(held) => *held = value,
                Err(slot) => {
                    slot.insert(value);
                }
            }
        }

        /// `key`'s value, moved to the current generation, or the current
        /// generation's place for it: one lookup in each generation (a
        /// lookup and then an insert made four, in maps larger than the
        /// cache).
        fn find(&mut self, key: K) -> Result<&mut V, VacantEntry<'_, K, V>> {
            // A new key in a full generation starts a new one; a value kept
            // in the previous generation, which then goes, is taken first.
            let mut moved = None;
            if self.current.len() >= self.at_least && !self.current.contains_key(&key) {
                moved = self.previous.remove(&key);
                std::mem::swap(&mut self.current, &mut self.previous);
                self.current.clear();
            }
            if self.current.capacity() == 0 {
                // A generation's full size at once (twice in a plugin's
                // life): a map grown by doubling holds its old table and
                // the new one for a moment, and linear memory keeps that
                // peak for good.
                self.current.reserve(self.at_least);
            }
            match self.current.entry(key) {
                Entry::Occupied(held) => Ok(held.into_mut()),
                Entry::Vacant(slot) => match moved.or_else(|| self.previous.remove(slot.key())) {
                    Some(held) => Ok(slot.insert(held)),
                    None => Err(slot),
                },
            }
        }

        /// Forgets each generation whose values are all `old` (the previous
        /// one first; the current one only after it): how a time window
        /// frees what it no longer needs. A scan stops at the first value
        /// that is not old; an empty generation is not scanned (a map's
        /// scan reads every bucket, full or not, and a plugin calls this
        /// on every tick).
        pub fn forget_old(&mut self, old: impl Fn(&V) -> bool) {
            let all_old = |m: &crate::hash::HashMap<K, V>| m.is_empty() || m.values().all(&old);
            if all_old(&self.previous) {
                self.previous.clear();
                if all_old(&self.current) {
                    self.current.clear();
                }
            }
        }

        /// The generations, previous then current (to save them).
        pub fn generations(&self) -> [&crate::hash::HashMap<K, V>; 2] {
            [&self.previous, &self.current]
        }

        /// Generations as [`generations`](Self::generations) gave them.
        pub fn from_generations(
            at_least: usize,
            previous: crate::hash::HashMap<K, V>,
            current: crate::hash::HashMap<K, V>,
        ) -> Self {
            Recent {
                current,
                previous,
                at_least,
            }
        }

        /// How many keys are remembered now.
        pub fn len(&self) -> usize {
            self.current.len() + self.previous.len()
        }

        /// True when no key is remembered.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }
    }
}

use processor::plume::pipeline::host;
/// The shared WIT types (`value`, `field`, `manifest`, `batch`, `alert`, ...).
pub use processor::plume::pipeline::types;
use types::{Batch, Value};

/// Parses the plugin's JSON config into `T`; `{}` when the stage has none.
///
/// Errors name the offending key, as serde_json reports it, prefixed with
/// `config: ` so the host can show it next to the stage name.
pub fn parse_config<T: serde::de::DeserializeOwned>(config: &str) -> Result<T, String> {
    let text = if config.trim().is_empty() {
        "{}"
    } else {
        config
    };
    serde_json::from_str(text).map_err(|e| format!("config: {e}"))
}

/// Parses a duration such as `250ms`, `30s`, `5m`, `1h` or `1d` into
/// nanoseconds; it must be positive. The one spelling of durations in every
/// builtin's config.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?} (use e.g. 30s, 5m, 1h, 1d)"))?;
    let scale: u64 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        _ => return Err(format!("bad duration unit in {s:?} (use ms, s, m, h or d)")),
    };
    if n == 0 {
        return Err("duration must be positive".into());
    }
    n.checked_mul(scale)
        .ok_or_else(|| format!("duration {s:?} is too long"))
}

/// Logs through the host at `info`.
pub fn log_info(message: &str) {
    host::log(host::Level::Info, message);
}

/// An event time as RFC 3339 UTC (`2026-11-25T10:00:00.000Z`), formatted by
/// the host so every plugin's reports agree.
pub fn format_time(unix_nanos: u64) -> String {
    host::format_time(unix_nanos)
}

/// How many instances of this entry share the pipeline's spans (one per
/// processor shard; 1 without shards), each seeing the traces of its shard.
/// Divide state bounded by a count of keys by it ([`share_of`]).
pub fn instances() -> u32 {
    #[cfg(target_family = "wasm")]
    return host::instances();
    // Unit tests run natively, without a host: one instance.
    #[cfg(not(target_family = "wasm"))]
    1
}

/// This instance's share of `total` (a bound for the whole pipeline), when
/// `instances` share the spans: rounded up, and never 0 unless `total` is.
pub fn share_of(total: usize, instances: u32) -> usize {
    total.div_ceil(instances.max(1) as usize)
}

/// Logs through the host at `warn`.
pub fn log_warn(message: &str) {
    host::log(host::Level::Warn, message);
}

/// A value read from a batch: its strings borrowed from the batch, so reading
/// a batch allocates one vector, whatever it holds. [`ValueRef::to_value`]
/// makes an owned [`Value`] (e.g. to write it back in an edit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// The span has no such field.
    Absent,
    /// A string.
    Str(&'a str),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// A boolean.
    Boolean(bool),
    /// An array or a map, as JSON text.
    Json(&'a str),
}

impl<'a> ValueRef<'a> {
    /// The string, if this is a `str`.
    #[inline]
    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            ValueRef::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number as `f64` for `int` and `float`, and for numeric strings
    /// (some instrumentations record token counts as strings).
    #[inline]
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            ValueRef::Int(i) => Some(i as f64),
            ValueRef::Float(f) => Some(f),
            ValueRef::Str(s) => parse_trimmed(s),
            _ => None,
        }
    }

    /// The number as `i64` for `int`, integral `float`s and integer strings.
    #[inline]
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            ValueRef::Int(i) => Some(i),
            ValueRef::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
            ValueRef::Str(s) => parse_trimmed(s),
            _ => None,
        }
    }

    /// The boolean for `boolean`, and for the strings `true` / `false`.
    #[inline]
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            ValueRef::Boolean(b) => Some(b),
            ValueRef::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
            ValueRef::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }

    /// True unless the field was absent.
    #[inline]
    pub fn is_present(&self) -> bool {
        !matches!(self, ValueRef::Absent)
    }

    /// The value as an owned WIT `value`.
    pub fn to_value(&self) -> Value {
        match *self {
            ValueRef::Absent => Value::Absent,
            ValueRef::Str(s) => Value::Str(s.to_string()),
            ValueRef::Int(i) => Value::Int(i),
            ValueRef::Float(f) => Value::Float(f),
            ValueRef::Boolean(b) => Value::Boolean(b),
            ValueRef::Json(s) => Value::Json(s.to_string()),
        }
    }
}

/// A number recorded as a string (some instrumentations do): out of line,
/// so that the readers inline to a match on the usual kinds.
#[inline(never)]
fn parse_trimmed<T: std::str::FromStr>(s: &str) -> Option<T> {
    s.trim().parse().ok()
}

impl Value {
    /// The value borrowed, with [`ValueRef`]'s readers (`as_str`, `as_f64`...).
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Absent => ValueRef::Absent,
            Value::Str(s) => ValueRef::Str(s),
            Value::Int(i) => ValueRef::Int(*i),
            Value::Float(f) => ValueRef::Float(*f),
            Value::Boolean(b) => ValueRef::Boolean(*b),
            Value::Json(s) => ValueRef::Json(s),
        }
    }
}

/// A processor's attribute writes (`record edits` in the WIT), packed in
/// columns as the host reads them: a string written is copied into the
/// answer's text, not allocated on its own.
///
/// ```ignore
/// let mut edits = Edits::with_capacity(batch.rows as usize);
/// edits.set(row, SLOT_COST, ValueRef::Float(0.0125));
/// edits.set_str(row, SLOT_STATUS, "success");
/// Ok(BatchResult { edits, drops: vec![] })
/// ```
impl types::Edits {
    /// No edits.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// No edits, with room for `n` before growing.
    pub fn with_capacity(n: usize) -> Self {
        types::Edits {
            rows: Vec::with_capacity(n),
            slots: Vec::with_capacity(n),
            kinds: Vec::with_capacity(n),
            ints: Vec::new(),
            floats: Vec::new(),
            text: Vec::new(),
            text_ends: Vec::new(),
        }
    }

    /// Sets slot `slot` (index into the manifest's `writes`) of row `row` to
    /// `value`; [`ValueRef::Absent`] removes the attribute.
    pub fn set(&mut self, row: u32, slot: u32, value: ValueRef<'_>) {
        self.rows.push(row);
        self.slots.push(slot);
        let kind = push_payload(
            &mut self.ints,
            &mut self.floats,
            &mut self.text,
            &mut self.text_ends,
            value,
        );
        self.kinds.push(kind);
    }

    /// Sets a string.
    pub fn set_str(&mut self, row: u32, slot: u32, value: &str) {
        self.set(row, slot, ValueRef::Str(value));
    }

    /// Sets an integer.
    pub fn set_int(&mut self, row: u32, slot: u32, value: i64) {
        self.set(row, slot, ValueRef::Int(value));
    }

    /// Sets a float.
    pub fn set_float(&mut self, row: u32, slot: u32, value: f64) {
        self.set(row, slot, ValueRef::Float(value));
    }

    /// Sets a boolean.
    pub fn set_bool(&mut self, row: u32, slot: u32, value: bool) {
        self.set(row, slot, ValueRef::Boolean(value));
    }

    /// Removes the attribute.
    pub fn remove(&mut self, row: u32, slot: u32) {
        self.set(row, slot, ValueRef::Absent);
    }

    /// Number of edits.
    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// The edits as `(row, slot, value)`, in order (for tests). Fails on
    /// columns that do not match the kinds, which `set` never writes.
    pub fn to_vec(&self) -> Result<Vec<(u32, u32, ValueRef<'_>)>, String> {
        if self.rows.len() != self.kinds.len() || self.slots.len() != self.kinds.len() {
            return Err(bad("edits: rows, slots and kinds differ in length"));
        }
        let mut payloads = Payloads::new(&self.ints, &self.floats, &self.text, &self.text_ends)?;
        let mut out = Vec::with_capacity(self.kinds.len());
        for (i, &kind) in self.kinds.iter().enumerate() {
            let value = payloads
                .next(kind)
                .ok_or_else(|| bad(&payloads.fault(kind)))?;
            out.push((self.rows[i], self.slots[i], value));
        }
        Ok(out)
    }
}

impl Default for types::Edits {
    fn default() -> Self {
        Self::new()
    }
}

/// A dense batch of the given rows, each value in read order: what the host
/// sends, for a plugin's tests (and those of [`Rows`]).
pub fn dense_batch<'a, R: AsRef<[ValueRef<'a>]>>(rows: &[R]) -> types::Batch {
    let mut b = types::Batch {
        rows: rows.len() as u32,
        kinds: vec![],
        positions: vec![],
        ints: vec![],
        floats: vec![],
        text: vec![],
        text_ends: vec![],
    };
    for v in rows.iter().flat_map(|r| r.as_ref()) {
        let kind = push_payload(
            &mut b.ints,
            &mut b.floats,
            &mut b.text,
            &mut b.text_ends,
            *v,
        );
        b.kinds.push(kind);
    }
    b
}

/// Appends `value`'s payload to the column of its kind (none for `absent`)
/// and returns the kind: how batches and edits are packed alike.
fn push_payload(
    ints: &mut Vec<i64>,
    floats: &mut Vec<f64>,
    text: &mut Vec<u8>,
    text_ends: &mut Vec<u32>,
    value: ValueRef<'_>,
) -> u8 {
    let mut push_text = |s: &str| {
        text.extend_from_slice(s.as_bytes());
        text_ends.push(text.len() as u32);
    };
    match value {
        ValueRef::Absent => 0,
        ValueRef::Str(s) => {
            push_text(s);
            1
        }
        ValueRef::Int(i) => {
            ints.push(i);
            2
        }
        ValueRef::Float(f) => {
            floats.push(f);
            3
        }
        ValueRef::Boolean(b) => {
            ints.push(i64::from(b));
            4
        }
        ValueRef::Json(s) => {
            push_text(s);
            5
        }
    }
}

/// A projected batch as rows of values, one per declared read, whether the
/// batch came dense or sparse. Reading it decodes the WIT's packed columns
/// (see `record batch`) once, borrowing every string from the batch.
pub struct Rows<'a> {
    width: usize,
    rows: usize,
    values: Vec<ValueRef<'a>>,
}

impl<'a> Rows<'a> {
    /// Views `batch` as rows of `width` values (`width` = number of reads).
    /// Fails only on a batch that breaks the WIT's layout, which the host
    /// never sends.
    pub fn new(batch: &'a Batch, width: usize) -> Result<Self, String> {
        let layout = Layout::check(batch, width)?;
        let values = if layout.dense {
            decode_dense(batch)?
        } else {
            let mut values = vec![ValueRef::Absent; layout.cells];
            let mut out_of_range = false;
            decode(batch, |at, value| match values.get_mut(at) {
                Some(slot) => *slot = value,
                None => out_of_range = true,
            })?;
            if out_of_range {
                return Err(bad("position out of range"));
            }
            values
        };
        Ok(Rows {
            width,
            rows: batch.rows as usize,
            values,
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values of row `r`, in manifest order.
    #[inline]
    pub fn row(&self, r: usize) -> &[ValueRef<'a>] {
        &self.values[r * self.width..(r + 1) * self.width]
    }

    /// Iterates over `(row index, values)`.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[ValueRef<'a>])> + '_ {
        (0..self.len()).map(move |r| (r as u32, self.row(r)))
    }
}

/// The present values of a projected batch, row by row, without laying out
/// the absent ones: for plugins that declare many reads of which few are
/// set on any one span (e.g. every spelling of an attribute), where
/// [`Rows`] would fill a row of `width` values for every span. Dense and
/// sparse batches read alike.
pub struct Cells<'a> {
    cells: Vec<Cell<'a>>,
    /// For each row, the index in `cells` where its values end.
    ends: Vec<u32>,
}

/// A present value and the read (index into the manifest's `reads`) it
/// answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell<'a> {
    /// Index into the manifest's `reads`.
    pub read: u32,
    /// The value; never [`ValueRef::Absent`].
    pub value: ValueRef<'a>,
}

impl<'a> Cells<'a> {
    /// The present values of `batch`, projected onto `width` reads. Fails
    /// only on a batch that breaks the WIT's layout (as [`Rows::new`]), or
    /// whose sparse entries are not row by row.
    pub fn new(batch: &'a Batch, width: usize) -> Result<Self, String> {
        let layout = Layout::check(batch, width)?;
        let rows = batch.rows as usize;
        let mut cells = Vec::with_capacity(batch.kinds.len());
        let mut ends = Vec::with_capacity(rows);
        // Positions only grow from row to row; `row_end` is where the
        // current row's positions end.
        let mut row_end = width;
        let (mut out_of_order, mut out_of_range) = (false, false);
        decode(batch, |at, value| {
            if at >= layout.cells {
                out_of_range = true;
                return;
            }
            if at < row_end - width {
                out_of_order = true;
                return;
            }
            while at >= row_end {
                ends.push(cells.len() as u32);
                row_end += width;
            }
            if value.is_present() {
                let read = (at + width - row_end) as u32;
                cells.push(Cell { read, value });
            }
        })?;
        if out_of_range {
            return Err(bad("position out of range"));
        }
        if out_of_order {
            return Err("batch: sparse entries are not row by row".into());
        }
        ends.resize(rows, cells.len() as u32);
        Ok(Cells { cells, ends })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Iterates over `(row index, present values of the row)`, the values in
    /// the order the host sent them.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[Cell<'a>])> + '_ {
        let mut start = 0usize;
        self.ends.iter().enumerate().map(move |(row, &end)| {
            let cells = &self.cells[start..end as usize];
            start = end as usize;
            (row as u32, cells)
        })
    }
}

/// The shape of a batch, checked against the manifest's width.
struct Layout {
    dense: bool,
    /// Rows times width.
    cells: usize,
}

impl Layout {
    fn check(batch: &Batch, width: usize) -> Result<Layout, String> {
        let cells = (batch.rows as usize)
            .checked_mul(width)
            .ok_or_else(|| bad("too many values"))?;
        let dense = batch.positions.is_empty() && !batch.kinds.is_empty();
        if dense && batch.kinds.len() != cells {
            return Err(bad(&format!(
                "{} values for {} rows of {width}",
                batch.kinds.len(),
                batch.rows
            )));
        }
        // A sparse batch's positions are checked by its readers as they
        // decode them (a pass of its own cost ~100 instructions a span).
        if !dense && batch.positions.len() != batch.kinds.len() {
            return Err(bad("positions and kinds differ in length"));
        }
        Ok(Layout { dense, cells })
    }
}

#[cold]
fn bad(what: &str) -> String {
    format!("batch: {what}")
}

/// Decodes every entry of a batch that passed [`Layout::check`], in order,
/// as (position, value): the position is the entry's index in a dense
/// batch. One loop per layout, each value decoded in place: this runs for
/// every value of every batch, in every plugin.
#[inline(always)]
fn decode<'a>(batch: &'a Batch, mut emit: impl FnMut(usize, ValueRef<'a>)) -> Result<(), String> {
    let mut payloads = Payloads::of(batch)?;
    if batch.positions.is_empty() {
        for (at, &kind) in batch.kinds.iter().enumerate() {
            match payloads.next(kind) {
                Some(value) => emit(at, value),
                None => return Err(bad(&payloads.fault(kind))),
            }
        }
    } else {
        for (&kind, &at) in batch.kinds.iter().zip(&batch.positions) {
            match payloads.next(kind) {
                Some(value) => emit(at as usize, value),
                None => return Err(bad(&payloads.fault(kind))),
            }
        }
    }
    Ok(())
}

/// The values of a dense batch, in order. Collected from an iterator of
/// known length, so each value is written without a capacity check and the
/// length is stored once; out of line, so that the loop is compiled alone.
/// (In wasm, where Cranelift compiles the loop, pushing one value at a time
/// inside `Rows::new` cost ~65 instructions a value: the vector's length and
/// the decoder's state went through memory on every value.)
#[inline(never)]
fn decode_dense(batch: &Batch) -> Result<Vec<ValueRef<'_>>, String> {
    let mut payloads = Payloads::of(batch)?;
    let mut fault = None;
    let values = batch
        .kinds
        .iter()
        .map(|&kind| match payloads.next(kind) {
            Some(value) => value,
            None => {
                if fault.is_none() {
                    fault = Some(payloads.fault(kind));
                }
                ValueRef::Absent
            }
        })
        .collect();
    match fault {
        None => Ok(values),
        Some(fault) => Err(bad(&fault)),
    }
}

/// `text` as a `str`, if it is UTF-8, and whether it is ASCII. A batch's
/// text nearly always is, which is checked here 32 bytes an iteration
/// (`from_utf8` goes 8 at a time on wasm32, and in a plugin every loop
/// iteration also pays the host's interruption check); any other text goes
/// through `from_utf8`.
fn utf8(text: &[u8]) -> Option<(&str, bool)> {
    let (blocks, rest) = text.as_chunks::<32>();
    let mut high = 0u64;
    for block in blocks {
        for word in block.as_chunks::<8>().0 {
            high |= u64::from_ne_bytes(*word);
        }
    }
    for &b in rest {
        high |= u64::from(b);
    }
    if high & 0x8080_8080_8080_8080 == 0 {
        // SAFETY: no byte has its high bit set: the text is ASCII, which is
        // valid UTF-8.
        return Some((unsafe { std::str::from_utf8_unchecked(text) }, true));
    }
    std::str::from_utf8(text).ok().map(|t| (t, false))
}

/// The payload columns of a batch, read in step with its kinds.
struct Payloads<'a, 'b> {
    ints: std::slice::Iter<'b, i64>,
    floats: std::slice::Iter<'b, f64>,
    ends: std::slice::Iter<'b, u32>,
    text: &'a str,
    /// The text is ASCII: any piece of it is a `str`, without the check
    /// that a piece starts and ends on a character boundary.
    ascii: bool,
    start: usize,
}

impl<'a> Payloads<'a, 'a> {
    /// The payloads of `batch`, its text checked as UTF-8 once.
    fn of(batch: &'a Batch) -> Result<Self, String> {
        Self::new(&batch.ints, &batch.floats, &batch.text, &batch.text_ends)
    }

    /// The payloads of these columns, the text checked as UTF-8 once.
    fn new(
        ints: &'a [i64],
        floats: &'a [f64],
        text: &'a [u8],
        ends: &'a [u32],
    ) -> Result<Self, String> {
        let (text, ascii) = utf8(text).ok_or_else(|| bad("text is not UTF-8"))?;
        Ok(Payloads {
            ints: ints.iter(),
            floats: floats.iter(),
            ends: ends.iter(),
            text,
            ascii,
            start: 0,
        })
    }
}

impl<'a> Payloads<'a, '_> {
    /// The next value of `kind`; `None` when the batch breaks the layout
    /// (see [`Payloads::fault`]).
    #[inline(always)]
    fn next(&mut self, kind: u8) -> Option<ValueRef<'a>> {
        Some(match kind {
            0 => ValueRef::Absent,
            1 => ValueRef::Str(self.next_text()?),
            2 => ValueRef::Int(*self.ints.next()?),
            3 => ValueRef::Float(*self.floats.next()?),
            4 => ValueRef::Boolean(*self.ints.next()? != 0),
            5 => ValueRef::Json(self.next_text()?),
            _ => return None,
        })
    }

    /// The next string; an end that is out of range is left unread, so
    /// that [`Payloads::fault`] tells it from a missing one.
    #[inline(always)]
    fn next_text(&mut self) -> Option<&'a str> {
        let (&end, rest) = self.ends.as_slice().split_first()?;
        let range = self.start..end as usize;
        let s = if self.ascii {
            let bytes = self.text.as_bytes().get(range)?;
            // SAFETY: the whole text is ASCII, so every piece of it is UTF-8.
            unsafe { std::str::from_utf8_unchecked(bytes) }
        } else {
            self.text.get(range)?
        };
        self.ends = rest.iter();
        self.start = end as usize;
        Some(s)
    }

    /// What was wrong when [`Payloads::next`] gave `None` for `kind`.
    #[cold]
    fn fault(&self, kind: u8) -> String {
        match kind {
            1 | 5 if self.ends.len() == 0 => "fewer text ends than texts".into(),
            1 | 5 => "text end out of range".into(),
            2..=4 => "fewer payloads than values".into(),
            other => format!("unknown kind {other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{bound, state};
    use std::collections::{BTreeMap, HashMap};

    /// The ASCII fast path answers as `from_utf8` does: every length around
    /// the block size, a non-ASCII or invalid byte at every place.
    #[test]
    fn utf8_agrees_with_from_utf8() {
        for len in 0..80usize {
            let ascii: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            fn text(t: &[u8]) -> Option<&str> {
                super::utf8(t).map(|(s, _)| s)
            }
            assert_eq!(super::utf8(&ascii).map(|(_, a)| a), Some(true));
            assert_eq!(text(&ascii), std::str::from_utf8(&ascii).ok());
            for at in 0..len {
                for bad in [&[0xc3u8, 0xa9][..], &[0xff], &[0xe2, 0x82], &[0x80]] {
                    let mut t = ascii.clone();
                    t.splice(at..at + 1, bad.iter().copied());
                    assert_eq!(text(&t), std::str::from_utf8(&t).ok(), "{len} {at}");
                    assert_ne!(super::utf8(&t).map(|(_, a)| a), Some(true));
                }
            }
        }
    }

    #[test]
    fn a_share_rounds_up_and_keeps_zero_and_one() {
        assert_eq!(super::share_of(100_000, 1), 100_000);
        assert_eq!(super::share_of(100_000, 2), 50_000);
        assert_eq!(super::share_of(100_001, 2), 50_001);
        assert_eq!(super::share_of(1, 4), 1);
        assert_eq!(super::share_of(0, 4), 0);
        assert_eq!(super::share_of(10, 0), 10);
    }

    #[test]
    fn recent_keeps_at_least_the_bound_and_keys_in_use() {
        let mut r: bound::Recent<u64, u32> = bound::Recent::new(100);
        r.insert(7, 0);
        for k in 1000..2000u64 {
            r.insert(k, 0);
            // Key 7 is in use throughout: it is never forgotten.
            *r.get_mut_or_insert(7, 0).expect("key 7 stays while in use") += 1;
            assert!(r.len() <= 200, "at most twice the bound: {}", r.len());
        }
        assert_eq!(r.get(&7), Some(&1000));
        // The last 100 keys are all remembered; the first ones are not.
        assert!((1900..2000).all(|k| r.contains_key(&k)));
        assert!(!r.contains_key(&1000) && !r.contains_key(&1500));
        // Inserting a key again replaces its value, without a second entry.
        let before = r.len();
        r.insert(1999, 5);
        assert_eq!((r.get(&1999), r.len()), (Some(&5), before));

        // The generations' maps are sized once, never grown by doubling.
        let [previous, current] = r.generations();
        assert!(previous.capacity() >= 100 && current.capacity() >= 100);
        assert!(previous.capacity() < 200 && current.capacity() < 200);

        // Old generations go as a whole, the previous one first.
        let mut w: bound::Recent<u64, u64> = bound::Recent::new(2);
        for (k, at) in [(1, 10), (2, 11), (3, 20), (4, 30)] {
            w.insert(k, at);
        }
        w.forget_old(|&at| at <= 15);
        assert!(!w.contains_key(&1) && w.contains_key(&3) && w.len() == 2);
        w.forget_old(|&at| at <= 25);
        assert_eq!(w.len(), 2, "the current generation holds a value not old");
        w.insert(5, 40);
        w.forget_old(|&at| at <= 35);
        assert!(w.contains_key(&5) && w.len() == 1);
        w.forget_old(|&at| at <= 45);
        assert!(w.is_empty());

        // A key of the previous generation, found just as the current one
        // is full, moves to the new generation rather than going with the old.
        let mut g: bound::Recent<u64, u32> = bound::Recent::new(2);
        for k in 1..=4 {
            assert_eq!(g.get_mut_or_insert(k, 10 + k as u32), None, "new key {k}");
        }
        // Now previous {1, 2}, current {3, 4} (full).
        assert_eq!(g.get_mut_or_insert(1, 0).copied(), Some(11));
        assert!(g.contains_key(&1) && !g.contains_key(&2) && g.len() == 3);
        assert_eq!(g.get_mut_or_insert(3, 0).copied(), Some(13));

        let mut none: bound::Recent<u64, ()> = bound::Recent::new(0);
        none.insert(1, ());
        assert!(none.get_mut_or_insert(1, ()).is_none() && none.is_empty());
    }

    #[test]
    fn forget_lowest_drops_exactly_the_lowest_even_with_ties() {
        let mut m: HashMap<u32, f64> = (0..100).map(|i| (i, f64::from(i % 10))).collect();
        // Scores 0..9, ten keys each: forgetting 25 takes the twenty 0s and
        // 1s and five of the 2s.
        assert_eq!(bound::forget_lowest(&mut m, 25, |v| *v), 25);
        assert_eq!(m.len(), 75);
        assert!(m.values().all(|v| *v >= 2.0));
        assert_eq!(m.values().filter(|v| **v == 2.0).count(), 5);
        // All equal (e.g. traces that cost nothing): still exactly `count`.
        let mut same: HashMap<u32, f64> = (0..50).map(|i| (i, 0.0)).collect();
        assert_eq!(bound::forget_lowest(&mut same, 5, |v| *v), 5);
        assert_eq!(same.len(), 45);
        assert_eq!(bound::forget_lowest(&mut same, 500, |v| *v), 45);
        assert!(same.is_empty());
        assert_eq!(bound::forget_lowest(&mut same, 1, |v| *v), 0);
    }

    /// Dense and sparse batches read the same; a batch that breaks the
    /// layout is refused with a message, never misread.
    #[test]
    fn edits_read_back_as_written() {
        use super::ValueRef;
        let mut e = super::types::Edits::new();
        assert!(e.is_empty());
        e.set_str(0, 1, "héllo");
        e.set_int(0, 2, -7);
        e.set_float(1, 0, 2.5);
        e.set_bool(1, 3, true);
        e.set(2, 1, ValueRef::Json(r#"["stop"]"#));
        e.remove(2, 2);
        e.set_str(3, 0, "");
        assert_eq!(e.len(), 7);
        assert_eq!(
            e.to_vec().unwrap(),
            vec![
                (0, 1, ValueRef::Str("héllo")),
                (0, 2, ValueRef::Int(-7)),
                (1, 0, ValueRef::Float(2.5)),
                (1, 3, ValueRef::Boolean(true)),
                (2, 1, ValueRef::Json(r#"["stop"]"#)),
                (2, 2, ValueRef::Absent),
                (3, 0, ValueRef::Str("")),
            ]
        );
        e.kinds.push(2);
        assert!(e.to_vec().is_err());
    }

    #[test]
    fn rows_read_dense_and_sparse_batches_alike() {
        use super::types::Batch;
        use super::{Rows, ValueRef};
        let dense = Batch {
            rows: 2,
            kinds: vec![1, 0, 0, 2, 5, 3, 4, 1],
            positions: vec![],
            ints: vec![7, 1],
            floats: vec![0.5],
            text: "aé[1]".into(),
            text_ends: vec![3, 6, 6],
        };
        fn read<'a>(r: &Rows<'a>) -> Vec<(u32, Vec<ValueRef<'a>>)> {
            r.iter().map(|(i, v)| (i, v.to_vec())).collect()
        }
        let expected = vec![
            (
                0,
                vec![
                    ValueRef::Str("aé"),
                    ValueRef::Absent,
                    ValueRef::Absent,
                    ValueRef::Int(7),
                ],
            ),
            (
                1,
                vec![
                    ValueRef::Json("[1]"),
                    ValueRef::Float(0.5),
                    ValueRef::Boolean(true),
                    ValueRef::Str(""),
                ],
            ),
        ];
        assert_eq!(read(&Rows::new(&dense, 4).unwrap()), expected);
        // `dense_batch` packs those rows as the batch above.
        let rows: Vec<Vec<ValueRef>> = expected.iter().map(|(_, v)| v.clone()).collect();
        let packed = super::dense_batch(&rows);
        assert_eq!(
            (packed.rows, &packed.kinds, &packed.ints, &packed.floats),
            (dense.rows, &dense.kinds, &dense.ints, &dense.floats)
        );
        assert_eq!(
            (&packed.text, &packed.text_ends),
            (&dense.text, &dense.text_ends)
        );
        assert!(packed.positions.is_empty());
        // The same present values, sparse, in another order within rows.
        let sparse = Batch {
            rows: 2,
            kinds: vec![2, 1, 3, 5, 1, 4],
            positions: vec![3, 0, 5, 4, 7, 6],
            ints: vec![7, 1],
            floats: vec![0.5],
            text: "aé[1]".into(),
            text_ends: vec![3, 6, 6],
        };
        assert_eq!(read(&Rows::new(&sparse, 4).unwrap()), expected);
        // Nothing present: every value absent.
        let none = Batch {
            kinds: vec![],
            positions: vec![],
            ints: vec![],
            floats: vec![],
            text: vec![],
            text_ends: vec![],
            ..sparse.clone()
        };
        let rows = Rows::new(&none, 4).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows.row(1).iter().all(|v| !v.is_present()));

        // A manifest that reads nothing still sees its rows.
        let rows = Rows::new(&none, 0).unwrap();
        assert_eq!((rows.len(), rows.row(1).len()), (2, 0));

        let broken = [
            Batch {
                rows: 3,
                ..dense.clone()
            },
            Batch {
                positions: vec![3, 0, 8, 4, 7, 6],
                ..sparse.clone()
            },
            Batch {
                positions: vec![3],
                ..sparse.clone()
            },
            Batch {
                text_ends: vec![2, 6, 6],
                ..dense.clone()
            }, // inside 'é'
            Batch {
                text_ends: vec![3, 6, 60],
                ..dense.clone()
            },
            Batch {
                text_ends: vec![3, 6],
                ..dense.clone()
            },
            Batch {
                ints: vec![7],
                ..dense.clone()
            },
            Batch {
                kinds: vec![1, 0, 0, 2, 5, 3, 4, 9],
                ..dense.clone()
            },
        ];
        for b in broken {
            let err = Rows::new(&b, 4).err().expect("refused");
            assert!(err.starts_with("batch: "), "{err}");
        }
        // The two ways text ends go wrong are told apart.
        let out_of_range = Batch {
            text_ends: vec![3, 6, 60],
            ..dense.clone()
        };
        let short = Batch {
            text_ends: vec![3, 6],
            ..dense.clone()
        };
        assert_eq!(
            Rows::new(&out_of_range, 4).err().as_deref(),
            Some("batch: text end out of range")
        );
        // An end inside a character (the text is not ASCII: é is two bytes).
        let mid_char = Batch {
            text_ends: vec![2, 6, 6],
            ..dense.clone()
        };
        assert_eq!(
            Rows::new(&mid_char, 4).err().as_deref(),
            Some("batch: text end out of range")
        );
        assert_eq!(
            Rows::new(&short, 4).err().as_deref(),
            Some("batch: fewer text ends than texts")
        );
    }

    /// Cells give each row's present values, the same from a dense and a
    /// sparse batch, rows without any included; a sparse batch whose
    /// entries go back to an earlier row is refused.
    #[test]
    fn cells_give_present_values_row_by_row() {
        use super::types::Batch;
        use super::{Cell, Cells, ValueRef};
        let dense = Batch {
            rows: 3,
            kinds: vec![1, 0, 0, 0, 0, 0, 2, 4, 0],
            positions: vec![],
            ints: vec![7, 1],
            floats: vec![],
            text: "ab".into(),
            text_ends: vec![2],
        };
        let sparse = Batch {
            rows: 3,
            kinds: vec![1, 4, 2],
            positions: vec![0, 7, 6],
            ints: vec![1, 7],
            ..dense.clone()
        };
        fn read<'a>(c: &Cells<'a>) -> Vec<(u32, Vec<(u32, ValueRef<'a>)>)> {
            c.iter()
                .map(|(r, cells)| (r, cells.iter().map(|c: &Cell| (c.read, c.value)).collect()))
                .collect()
        }
        let d = Cells::new(&dense, 3).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(
            read(&d),
            vec![
                (0, vec![(0, ValueRef::Str("ab"))]),
                (1, vec![]),
                (2, vec![(0, ValueRef::Int(7)), (1, ValueRef::Boolean(true))]),
            ]
        );
        // Within a row the host may send reads in any order.
        assert_eq!(
            read(&Cells::new(&sparse, 3).unwrap()),
            vec![
                (0, vec![(0, ValueRef::Str("ab"))]),
                (1, vec![]),
                (2, vec![(1, ValueRef::Boolean(true)), (0, ValueRef::Int(7))]),
            ]
        );
        // Trailing rows with nothing present are still rows.
        let first_only = Batch {
            kinds: vec![1],
            positions: vec![0],
            ints: vec![],
            ..sparse.clone()
        };
        let c = Cells::new(&first_only, 3).unwrap();
        assert_eq!(
            (c.len(), c.iter().last().map(|(r, v)| (r, v.len()))),
            (3, Some((2, 0)))
        );
        let backwards = Batch {
            kinds: vec![2, 1, 4],
            positions: vec![6, 0, 7],
            ints: vec![7, 1],
            ..sparse.clone()
        };
        assert_eq!(
            Cells::new(&backwards, 3).err().as_deref(),
            Some("batch: sparse entries are not row by row")
        );
        // An absent entry in a sparse batch (the host sends none) is left out.
        let with_absent = Batch {
            kinds: vec![1, 0, 4, 2],
            positions: vec![0, 3, 7, 6],
            ..sparse.clone()
        };
        assert_eq!(
            read(&Cells::new(&with_absent, 3).unwrap()),
            read(&Cells::new(&sparse, 3).unwrap())
        );
        // Payloads that break the layout fail a sparse batch as a dense one.
        let long_text = Batch {
            text_ends: vec![3],
            ..sparse.clone()
        };
        assert_eq!(
            Cells::new(&long_text, 3).err().as_deref(),
            Some("batch: text end out of range")
        );
        // A position past the last row, in either reader.
        let past_end = Batch {
            positions: vec![0, 7, 99],
            ..sparse.clone()
        };
        assert_eq!(
            Cells::new(&past_end, 3).err().as_deref(),
            Some("batch: position out of range")
        );
        assert_eq!(
            crate::Rows::new(&past_end, 3).err().as_deref(),
            Some("batch: position out of range")
        );
        assert!(Cells::new(&Batch { rows: 2, ..sparse }, 3).is_err());
    }

    #[test]
    fn state_round_trips_and_refuses_other_formats() {
        let ledger: BTreeMap<String, (u64, f64)> = [
            ("chat".to_string(), (3, 0.25)),
            ("search".to_string(), (1, 1e-9)),
        ]
        .into();
        let bytes = state::save(&ledger);
        assert_eq!(bytes[0], 1);
        // Written into a buffer of exactly its size (a plugin's memory
        // keeps its largest moment).
        assert_eq!(bytes.capacity(), bytes.len());
        let back: BTreeMap<String, (u64, f64)> = state::load(&bytes).unwrap();
        assert_eq!(back, ledger);
        // JSON written by an older build is refused with a message, not misread.
        let json = b"{\"chat\":[3,0.25]}";
        let err = state::load::<BTreeMap<String, (u64, f64)>>(json).unwrap_err();
        assert!(err.contains("format 123"), "{err}");
        assert!(state::load::<u64>(&[]).is_err());
        // Truncated bytes fail instead of yielding a partial state.
        assert!(state::load::<BTreeMap<String, (u64, f64)>>(&bytes[..bytes.len() - 3]).is_err());
    }
}
