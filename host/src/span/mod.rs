//! The span model held in host memory, and its two JSONL encodings.
//!
//! A span is parsed once at ingest and lives in a [`Batch`] until it is
//! exported; plugins see projections of it (see `plugin::projection`).

pub mod flat;
mod flat_fast;
pub mod jsonl;
mod key;
pub mod otlp_json;
pub mod otlp_proto;
pub mod trace_context;

use compact_str::CompactString;
use serde_json::value::RawValue;
use std::fmt;
use std::sync::Arc;

pub use key::Key;

/// An attribute value. Arrays and maps keep their JSON text, as they came.
#[derive(Debug, Clone)]
pub enum AttrValue {
    /// A string. Most attribute values are short (model names, operations,
    /// statuses): up to 24 bytes live inline, without allocating.
    Str(CompactString),
    /// A signed integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// An array or object, as JSON text.
    Json(Box<RawValue>),
}

impl PartialEq for AttrValue {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (AttrValue::Str(a), AttrValue::Str(b)) => a == b,
            (AttrValue::Int(a), AttrValue::Int(b)) => a == b,
            (AttrValue::Float(a), AttrValue::Float(b)) => a == b,
            (AttrValue::Bool(a), AttrValue::Bool(b)) => a == b,
            (AttrValue::Json(a), AttrValue::Json(b)) => a.get() == b.get(),
            _ => false,
        }
    }
}

impl AttrValue {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number as f64 (ints, floats).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            AttrValue::Int(i) => Some(*i as f64),
            AttrValue::Float(f) => Some(*f),
            _ => None,
        }
    }
}

/// Attributes in arrival order. Spans carry ~10-30 attributes, where a linear
/// scan beats hashing and keeps the order stable for output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes(pub Vec<(Key, AttrValue)>);

impl Attributes {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&AttrValue> {
        self.0.iter().find(|(k, _)| &**k == key).map(|(_, v)| v)
    }

    /// The value of `key`, comparing interned keys by address (see `Key`'s
    /// `PartialEq`): what projections use, once per read of every span.
    pub fn get_key(&self, key: &Key) -> Option<&AttrValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key`, replacing an existing value in place.
    pub fn set(&mut self, key: Key, value: AttrValue) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// Removes `key`; true if it was present.
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|(k, _)| &**k != key);
        before != self.0.len()
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A 16-byte W3C trace id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct SpanId(pub [u8; 8]);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_string(&self.0))
    }
}
impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_string(&self.0))
    }
}
impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Appends the lowercase hex of `bytes` (ids are written on every span:
/// no formatter, no temporary string). Four bytes at a time in one word
/// (SWAR): ids are 8 or 16 bytes, too short for `const_hex`'s vector code to
/// pay for its set-up (~150 instructions an id against ~40).
pub fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    // Span ids and trace ids: one copy of their digits from the stack.
    if let Ok(id) = <&[u8; 8]>::try_from(bytes) {
        out.extend_from_slice(&hex8(id));
    } else if let Some((a, b)) = bytes.split_first_chunk::<8>()
        && let Ok(b) = <&[u8; 8]>::try_from(b)
    {
        let mut digits = [0u8; 32];
        digits[..16].copy_from_slice(&hex8(a));
        digits[16..].copy_from_slice(&hex8(b));
        out.extend_from_slice(&digits);
    } else {
        out.reserve(bytes.len() * 2);
        let mut words = bytes.chunks_exact(4);
        for w in &mut words {
            out.extend_from_slice(&hex_word(u32::from_be_bytes([w[0], w[1], w[2], w[3]])));
        }
        for &b in words.remainder() {
            out.extend_from_slice(&hex_word(u32::from(b))[6..]);
        }
    }
}

/// The 16 hex digits of 8 bytes.
#[inline(always)]
fn hex8(b: &[u8; 8]) -> [u8; 16] {
    let mut digits = [0u8; 16];
    digits[..8].copy_from_slice(&hex_word(u32::from_be_bytes([b[0], b[1], b[2], b[3]])));
    digits[8..].copy_from_slice(&hex_word(u32::from_be_bytes([b[4], b[5], b[6], b[7]])));
    digits
}

/// The 8 lowercase hex digits of `x`, most significant first.
#[inline(always)]
fn hex_word(x: u32) -> [u8; 8] {
    const LANES: u64 = 0x0101_0101_0101_0101;
    // One nibble per byte, most significant in the highest byte.
    let mut v = u64::from(x);
    v = (v | (v << 16)) & 0x0000_ffff_0000_ffff;
    v = (v | (v << 8)) & 0x00ff_00ff_00ff_00ff;
    v = (v | (v << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    // Nibbles of 10 and more (those that carry into bit 4 when 6 is added)
    // go from '0' + n to 'a' + n - 10: 39 more. No byte overflows.
    let letters = ((v + 6 * LANES) >> 4) & LANES;
    (v + b'0' as u64 * LANES + letters * 39).to_be_bytes()
}

/// The lowercase hex of `bytes`, in one allocation.
pub fn hex_string(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    // Hex digits are ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// Parses an id of `N` bytes of hex (either case). All zeros is not an id
/// (W3C Trace Context). `what` names the field in errors.
pub fn parse_hex_id<const N: usize>(s: &str, what: &str) -> Result<[u8; N], String> {
    if s.len() != N * 2 {
        return Err(format!(
            "{what} must be {} hex digits, got {} characters",
            N * 2,
            s.len()
        ));
    }
    let mut out = [0u8; N];
    const_hex::decode_to_slice(s, &mut out).map_err(|_| format!("{what} is not hex: {s:?}"))?;
    if out == [0u8; N] {
        return Err(format!("{what} is all zeros, which is not a valid id"));
    }
    Ok(out)
}

/// OTLP span kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpanKind {
    /// Not given.
    #[default]
    Unspecified,
    /// In-process work.
    Internal,
    /// Handles a request.
    Server,
    /// Makes a request.
    Client,
    /// Sends a message.
    Producer,
    /// Receives a message.
    Consumer,
}

impl SpanKind {
    /// The lowercase name used in flat JSON and in plugin fields.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "unspecified",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }

    /// The OTLP enum number.
    pub fn otlp_number(self) -> i32 {
        self as i32
    }

    /// From the OTLP enum number.
    pub fn from_otlp_number(n: i64) -> Option<Self> {
        Some(match n {
            0 => SpanKind::Unspecified,
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => return None,
        })
    }

    /// From a name: `client`, `CLIENT`, `SPAN_KIND_CLIENT`.
    pub fn from_name(s: &str) -> Option<Self> {
        // The usual spelling, without lowercasing a copy.
        match s {
            "internal" => return Some(SpanKind::Internal),
            "server" => return Some(SpanKind::Server),
            "client" => return Some(SpanKind::Client),
            _ => {}
        }
        let s = s
            .strip_prefix("SPAN_KIND_")
            .unwrap_or(s)
            .to_ascii_lowercase();
        Some(match s.as_str() {
            "unspecified" | "" => SpanKind::Unspecified,
            "internal" => SpanKind::Internal,
            "server" => SpanKind::Server,
            "client" => SpanKind::Client,
            "producer" => SpanKind::Producer,
            "consumer" => SpanKind::Consumer,
            _ => return None,
        })
    }
}

/// OTLP status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatusCode {
    /// Not set.
    #[default]
    Unset,
    /// Explicitly OK.
    Ok,
    /// Failed.
    Error,
}

impl StatusCode {
    /// The lowercase name used in flat JSON and in plugin fields.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "unset",
            StatusCode::Ok => "ok",
            StatusCode::Error => "error",
        }
    }

    /// From the OTLP enum number.
    pub fn from_otlp_number(n: i64) -> Option<Self> {
        Some(match n {
            0 => StatusCode::Unset,
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => return None,
        })
    }

    /// From a name: `error`, `ERROR`, `STATUS_CODE_ERROR`.
    pub fn from_name(s: &str) -> Option<Self> {
        // The usual spelling, without lowercasing a copy.
        match s {
            "unset" => return Some(StatusCode::Unset),
            "ok" => return Some(StatusCode::Ok),
            "error" => return Some(StatusCode::Error),
            _ => {}
        }
        let s = s
            .strip_prefix("STATUS_CODE_")
            .unwrap_or(s)
            .to_ascii_lowercase();
        Some(match s.as_str() {
            "unset" | "" => StatusCode::Unset,
            "ok" => StatusCode::Ok,
            "error" => StatusCode::Error,
            _ => return None,
        })
    }
}

/// Span status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// The code.
    pub code: StatusCode,
    /// A message, usually only for errors.
    pub message: String,
}

/// A timed event within a span (e.g. `exception`).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Event name.
    pub name: String,
    /// Time, ns since the Unix epoch.
    pub time_unix_nano: u64,
    /// Event attributes.
    pub attributes: Attributes,
}

/// A link to another span (e.g. the caller of a sub-agent).
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// Linked trace.
    pub trace_id: TraceId,
    /// Linked span.
    pub span_id: SpanId,
    /// W3C tracestate of the link, if any.
    pub trace_state: String,
    /// Link attributes.
    pub attributes: Attributes,
}

/// Instrumentation scope (library) that produced a span.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    /// Library name, e.g. `openinference.instrumentation.openai`.
    pub name: String,
    /// Library version.
    pub version: String,
}

/// One span.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Span {
    /// Trace id.
    pub trace_id: TraceId,
    /// Span id.
    pub span_id: SpanId,
    /// Parent span id; `None` for a root.
    pub parent_span_id: Option<SpanId>,
    /// W3C tracestate, if any.
    pub trace_state: String,
    /// Span name.
    pub name: CompactString,
    /// Span kind.
    pub kind: SpanKind,
    /// Start, ns since the Unix epoch.
    pub start_time_unix_nano: u64,
    /// End, ns since the Unix epoch.
    pub end_time_unix_nano: u64,
    /// Status.
    pub status: Status,
    /// Span attributes.
    pub attributes: Attributes,
    /// Events.
    pub events: Vec<Event>,
    /// Links.
    pub links: Vec<Link>,
    /// Resource attributes, shared by the spans of one resource.
    pub resource: Arc<Attributes>,
    /// Instrumentation scope, shared by the spans of one scope.
    pub scope: Option<Arc<Scope>>,
    /// The write-ahead log record that holds this span; 0 when not logged.
    /// Host bookkeeping, never exported.
    pub seq: u64,
}

impl Span {
    /// Duration in ns; 0 if the clock went backwards.
    pub fn duration_nanos(&self) -> u64 {
        self.end_time_unix_nano
            .saturating_sub(self.start_time_unix_nano)
    }
}

/// Spans moving through the pipeline together.
pub type Batch = Vec<Span>;

/// Formats ns since the Unix epoch as RFC 3339 UTC (e.g. for alert times).
pub fn format_unix_nanos(nanos: u64) -> String {
    let secs = nanos / 1_000_000_000;
    let millis = (nanos % 1_000_000_000) / 1_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm), valid for all u64 days here.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{d:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_complete() {
        assert_eq!(hex_string(&[0x00, 0xab, 0x7f]), "00ab7f");
        let id = TraceId([0xfe; 16]);
        assert_eq!(id.to_string(), "fe".repeat(16));
        // Every byte value in every position of a word, and every length
        // up to past two words, against const-hex; appended, not replaced.
        for b in 0..=255u8 {
            for at in 0..4 {
                let mut bytes = [0x5a; 4];
                bytes[at] = b;
                assert_eq!(hex_string(&bytes), const_hex::encode(bytes));
            }
        }
        let mut rng = fastrand::Rng::with_seed(9);
        for len in 0..=40 {
            let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let mut out = b"x".to_vec();
            push_hex(&mut out, &bytes);
            assert_eq!(
                out,
                [b"x".to_vec(), const_hex::encode(&bytes).into_bytes()].concat()
            );
        }
    }

    #[test]
    fn formats_times_as_rfc3339() {
        assert_eq!(format_unix_nanos(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_unix_nanos(1_732_000_001_200_000_000),
            "2024-11-19T07:06:41.200Z"
        );
        assert_eq!(
            format_unix_nanos(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn set_replaces_in_place_and_remove_removes() {
        let mut a = Attributes::default();
        a.set(Key::from("a"), AttrValue::Int(1));
        a.set(Key::from("b"), AttrValue::Int(2));
        a.set(Key::from("a"), AttrValue::Int(3));
        assert_eq!(a.0.len(), 2);
        assert_eq!(a.0[0], (Key::from("a"), AttrValue::Int(3)));
        assert!(a.remove("a"));
        assert!(!a.remove("a"));
        assert_eq!(a.len(), 1);
    }
}
