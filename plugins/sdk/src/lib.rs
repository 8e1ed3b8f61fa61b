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
//! Besides the bindings, this crate offers [`Rows`] to walk a projected batch,
//! [`parse_config`] to read the JSON config, and [`log`] helpers.

#![allow(unsafe_code)] // generated bindings

/// Bindings of the `processor` world.
#[allow(missing_docs)]
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
#[allow(missing_docs)]
pub mod evaluator {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "evaluator",
        pub_export_macro: true,
        export_macro_name: "export_evaluator",
        default_bindings_module: "plume_sdk::evaluator",
        with: {
            "plume:pipeline/types@0.1.0": crate::processor::plume::pipeline::types,
            "plume:pipeline/host@0.1.0": crate::processor::plume::pipeline::host,
        },
    });
}

/// Bindings of the `router` world.
#[allow(missing_docs)]
pub mod router {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "router",
        pub_export_macro: true,
        export_macro_name: "export_router",
        default_bindings_module: "plume_sdk::router",
        with: {
            "plume:pipeline/types@0.1.0": crate::processor::plume::pipeline::types,
            "plume:pipeline/host@0.1.0": crate::processor::plume::pipeline::host,
        },
    });
}

/// Bindings of the `exporter` world.
#[allow(missing_docs)]
pub mod exporter {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "exporter",
        pub_export_macro: true,
        export_macro_name: "export_exporter",
        default_bindings_module: "plume_sdk::exporter",
        with: {
            "plume:pipeline/types@0.1.0": crate::processor::plume::pipeline::types,
            "plume:pipeline/host@0.1.0": crate::processor::plume::pipeline::host,
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

    /// `std::collections::HashMap` with [`Seeded`] foldhash.
    pub type HashMap<K, V> = std::collections::HashMap<K, V, Seeded>;
    /// `std::collections::HashSet` with [`Seeded`] foldhash.
    pub type HashSet<K> = std::collections::HashSet<K, Seeded>;
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

/// Logs through the host at `warn`.
pub fn log_warn(message: &str) {
    host::log(host::Level::Warn, message);
}

/// A view of a projected batch as rows of values, one value per declared
/// read, whichever form (dense or sparse) the batch came in.
pub struct Rows<'a> {
    width: usize,
    values: std::borrow::Cow<'a, [Value]>,
    rows: usize,
}

impl<'a> Rows<'a> {
    /// Views `batch` as rows of `width` values (`width` = number of reads).
    /// A sparse batch is laid out densely here, in the guest, where it is cheap.
    pub fn new(batch: &'a Batch, width: usize) -> Self {
        let rows = batch.rows as usize;
        if batch.cells.is_empty() && !(batch.values.is_empty() && rows > 0 && width > 0) {
            debug_assert_eq!(batch.values.len(), rows * width);
            return Rows {
                width,
                values: std::borrow::Cow::Borrowed(&batch.values),
                rows,
            };
        }
        let mut dense = vec![Value::Absent; rows * width];
        for c in &batch.cells {
            let (r, f) = (c.row as usize, c.field as usize);
            if r < rows && f < width {
                dense[r * width + f] = c.value.clone();
            }
        }
        Rows {
            width,
            values: std::borrow::Cow::Owned(dense),
            rows,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The values of row `r`, in manifest order.
    pub fn row(&self, r: usize) -> &[Value] {
        &self.values[r * self.width..(r + 1) * self.width]
    }

    /// Iterates over `(row index, values)`.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[Value])> + '_ {
        (0..self.rows).map(move |r| (r as u32, self.row(r)))
    }
}

impl Value {
    /// The string, if this is a `str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number as `f64` for `int` and `float`, and for numeric strings
    /// (some instrumentations record token counts as strings).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The number as `i64` for `int`, integral `float`s and integer strings.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The boolean for `boolean`, and for the strings `true` / `false`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            Value::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }

    /// True unless the field was absent.
    pub fn is_present(&self) -> bool {
        !matches!(self, Value::Absent)
    }
}
