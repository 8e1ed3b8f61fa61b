//! plume's flat span JSON: one span per object (see DESIGN.md, "Span JSONL").
//!
//! Reading is lenient where producers differ (ids in either case, times as
//! integers or decimal strings, kinds and status codes as names or OTLP
//! numbers) and strict where a guess would corrupt data (bad ids, bad times).

use super::{
    AttrValue, Attributes, Event, Key, Link, Scope, Span, SpanId, SpanKind, Status, StatusCode,
    TraceId, parse_hex_id, push_hex,
};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

#[derive(Deserialize)]
struct FlatSpan<'a> {
    #[serde(borrow)]
    trace_id: Cow<'a, str>,
    #[serde(borrow)]
    span_id: Cow<'a, str>,
    #[serde(default, borrow)]
    parent_span_id: Option<Cow<'a, str>>,
    #[serde(default)]
    trace_state: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: Option<NameOrNumber>,
    #[serde(deserialize_with = "de_time")]
    start_time_unix_nano: u64,
    #[serde(deserialize_with = "de_time")]
    end_time_unix_nano: u64,
    #[serde(default)]
    status: Option<FlatStatus>,
    #[serde(default)]
    attributes: Attributes,
    #[serde(default)]
    events: Vec<FlatEvent>,
    #[serde(default, borrow)]
    links: Vec<FlatLink<'a>>,
    #[serde(default)]
    resource: Option<Attributes>,
    #[serde(default)]
    scope: Option<FlatScope>,
}

#[derive(Deserialize)]
struct FlatStatus {
    #[serde(default)]
    code: Option<NameOrNumber>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct FlatEvent {
    #[serde(default)]
    name: String,
    #[serde(default, deserialize_with = "de_time")]
    time_unix_nano: u64,
    #[serde(default)]
    attributes: Attributes,
}

#[derive(Deserialize)]
struct FlatLink<'a> {
    #[serde(borrow)]
    trace_id: Cow<'a, str>,
    #[serde(borrow)]
    span_id: Cow<'a, str>,
    #[serde(default)]
    trace_state: Option<String>,
    #[serde(default)]
    attributes: Attributes,
}

#[derive(Deserialize)]
struct FlatScope {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
}

/// A kind or status code given as a name or as its OTLP number.
pub(crate) enum NameOrNumber {
    Number(i64),
    Name(String),
}

/// By hand rather than `#[serde(untagged)]`: untagged buffers the value and
/// tries the number first, so every name (the usual case) built and dropped
/// a formatted error message (5% of parsing, measured).
impl<'de> Deserialize<'de> for NameOrNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NameOrNumber;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name or an OTLP number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NameOrNumber, E> {
                Ok(NameOrNumber::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NameOrNumber, E> {
                i64::try_from(v)
                    .map(NameOrNumber::Number)
                    .map_err(|_| E::custom(format!("number out of range: {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NameOrNumber, E> {
                Ok(NameOrNumber::Name(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses one flat span object. The usual shape is read by a scanner of its
/// own (`flat_fast`), which gives exactly what serde gives; anything else,
/// errors included, is read by serde ([`parse_serde`]).
pub fn parse(line: &str) -> Result<Span, String> {
    match super::flat_fast::parse(line) {
        Some(span) => Ok(span),
        None => parse_serde(line),
    }
}

/// A span kind from its name or OTLP number.
pub(super) fn span_kind(k: NameOrNumber) -> Result<SpanKind, String> {
    match k {
        NameOrNumber::Number(n) => {
            SpanKind::from_otlp_number(n).ok_or_else(|| format!("unknown span kind {n}"))
        }
        NameOrNumber::Name(s) => {
            SpanKind::from_name(&s).ok_or_else(|| format!("unknown span kind {s:?}"))
        }
    }
}

/// A status code from its name or OTLP number.
pub(super) fn status_code(c: NameOrNumber) -> Result<StatusCode, String> {
    match c {
        NameOrNumber::Number(n) => {
            StatusCode::from_otlp_number(n).ok_or_else(|| format!("unknown status code {n}"))
        }
        NameOrNumber::Name(n) => {
            StatusCode::from_name(&n).ok_or_else(|| format!("unknown status code {n:?}"))
        }
    }
}

/// Parses one flat span object with serde: every form the format allows,
/// and the error messages.
pub fn parse_serde(line: &str) -> Result<Span, String> {
    let f: FlatSpan = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let kind = match f.kind {
        None => SpanKind::Unspecified,
        Some(k) => span_kind(k)?,
    };
    let status = match f.status {
        None => Status::default(),
        Some(s) => Status {
            code: match s.code {
                None => StatusCode::Unset,
                Some(c) => status_code(c)?,
            },
            message: s.message.unwrap_or_default(),
        },
    };
    let parent_span_id = match f.parent_span_id.as_deref() {
        None | Some("") => None,
        Some(p) => Some(SpanId(parse_hex_id(p, "parent_span_id")?)),
    };
    let links = f
        .links
        .into_iter()
        .map(|l| {
            Ok(Link {
                trace_id: TraceId(parse_hex_id(&l.trace_id, "links[].trace_id")?),
                span_id: SpanId(parse_hex_id(&l.span_id, "links[].span_id")?),
                trace_state: l.trace_state.unwrap_or_default(),
                attributes: l.attributes,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Span {
        trace_id: TraceId(parse_hex_id(&f.trace_id, "trace_id")?),
        span_id: SpanId(parse_hex_id(&f.span_id, "span_id")?),
        parent_span_id,
        trace_state: super::trace_context::cleaned(f.trace_state.unwrap_or_default()),
        name: f.name.into(),
        kind,
        start_time_unix_nano: f.start_time_unix_nano,
        end_time_unix_nano: f.end_time_unix_nano,
        status,
        attributes: f.attributes,
        events: f
            .events
            .into_iter()
            .map(|e| Event {
                name: e.name,
                time_unix_nano: e.time_unix_nano,
                attributes: e.attributes,
            })
            .collect(),
        links,
        resource: Arc::new(f.resource.unwrap_or_default()),
        scope: f.scope.map(|s| {
            Arc::new(Scope {
                name: s.name,
                version: s.version,
            })
        }),
        seq: 0,
    })
}

/// Times: a non-negative integer, or a decimal string (JSON cannot carry
/// every u64 exactly as a number for all producers).
pub(crate) fn de_time<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a time in ns since the Unix epoch (integer or decimal string)")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("negative time {v}")))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            time_from_text(v).map_err(E::custom)
        }
    }
    d.deserialize_any(V)
}

/// A time written as a decimal string.
pub(super) fn time_from_text(v: &str) -> Result<u64, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("time is not a decimal integer: {v:?}"))
}

/// Classifies a raw JSON value by its first byte and parses only that value.
pub(crate) fn attr_value_from_raw(raw: &RawValue) -> Result<Option<AttrValue>, String> {
    attr_value_from_text(raw.get(), || AttrValue::Json(raw.to_owned()))
}

/// The attribute value of one valid JSON value's text; `json` makes the
/// value of an array or object.
pub(super) fn attr_value_from_text(
    text: &str,
    json: impl FnOnce() -> AttrValue,
) -> Result<Option<AttrValue>, String> {
    Ok(Some(match text.as_bytes().first() {
        // Most strings have no escapes: their text is the value.
        Some(b'"') if text.len() >= 2 && !text.contains('\\') => {
            AttrValue::Str(text[1..text.len() - 1].into())
        }
        Some(b'"') => AttrValue::Str(
            serde_json::from_str::<String>(text)
                .map_err(|e| e.to_string())?
                .into(),
        ),
        Some(b't') => AttrValue::Bool(true),
        Some(b'f') => AttrValue::Bool(false),
        Some(b'n') => return Ok(None),
        Some(b'[' | b'{') => json(),
        Some(_) => {
            if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
                AttrValue::Float(text.parse().map_err(|_| format!("bad number {text}"))?)
            } else {
                match text.parse::<i64>() {
                    Ok(i) => AttrValue::Int(i),
                    // Integers beyond i64 (e.g. u64 counters) keep their magnitude.
                    Err(_) => {
                        AttrValue::Float(text.parse().map_err(|_| format!("bad number {text}"))?)
                    }
                }
            }
        }
        None => return Err("empty value".into()),
    }))
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Attributes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of attributes")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Attributes, E> {
                Ok(Attributes::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attributes, A::Error> {
                // Gathered in a reused buffer, then moved into a vector of
                // the exact size: a span may wait in the trace hold for
                // seconds, and a vector grown by doubling has up to half of
                // its room unused (16 slots for the usual 13 attributes).
                thread_local! {
                    static SCRATCH: Cell<Vec<(Key, AttrValue)>> = const { Cell::new(Vec::new()) };
                }
                let mut scratch = SCRATCH.take();
                scratch.clear();
                let mut gather = || {
                    while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                        let raw: &'de RawValue = map.next_value()?;
                        if let Some(v) = attr_value_from_raw(raw).map_err(de::Error::custom)? {
                            scratch.push((Key::new(&key), v));
                        }
                    }
                    Ok(())
                };
                let gathered = gather();
                let mut out = Vec::with_capacity(scratch.len());
                out.append(&mut scratch);
                SCRATCH.set(scratch);
                gathered.map(|()| Attributes(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Writes a JSON string (escaped).
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Whether `b` holds a byte JSON escapes (a quote, a backslash, a control
/// character). Almost no attribute does; see [`plain_len`].
fn needs_escape(b: &[u8]) -> bool {
    plain_len(b) < b.len()
}

/// How many bytes of `b` come before a quote, a backslash or a control
/// character: the bytes JSON escapes, and that end a string when reading.
/// Strings are most of a line's bytes, read and written: they are tested 16
/// bytes at a time on x86_64 (SSE2), 8 at a time in a word elsewhere (SWAR:
/// each test leaves the top bit of a byte set where it holds; the lowest
/// such byte is exact), without a branch per byte.
/// serde_json's writer looks each byte up in a table instead (callgrind:
/// about 6 instructions per byte written).
#[inline]
pub(super) fn plain_len(b: &[u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        plain_len_sse2(b)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        plain_len_swar(b)
    }
}

/// [`plain_len`] 16 bytes at a time (SSE2 is part of every x86_64): a
/// compare per special byte kind and one mask, ~7 instructions a block
/// against ~12 for 8 bytes in SWAR.
#[cfg(target_arch = "x86_64")]
#[inline]
#[allow(unsafe_code)] // one 16-byte load; see SAFETY below
fn plain_len_sse2(b: &[u8]) -> usize {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // The positions of specials in 16 bytes, one bit each.
    let specials = |block: &[u8; 16]| {
        // SAFETY: SSE2 is part of the x86_64 baseline, and the load reads
        // exactly the 16 bytes of `block` (unaligned).
        unsafe {
            let x = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
            let control = _mm_set1_epi8(0x1f);
            // Unsigned x <= 0x1f exactly when max(x, 0x1f) is 0x1f.
            let low = _mm_cmpeq_epi8(_mm_max_epu8(x, control), control);
            let quote = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
            _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), low)) as u32
        }
    };
    let (blocks, rest) = b.as_chunks::<16>();
    for (n, block) in blocks.iter().enumerate() {
        let found = specials(block);
        if found != 0 {
            return n * 16 + found.trailing_zeros() as usize;
        }
    }
    // The rest padded with spaces, which are not special.
    let mut last = [b' '; 16];
    last[..rest.len()].copy_from_slice(rest);
    let found = specials(&last);
    if found == 0 {
        b.len()
    } else {
        blocks.len() * 16 + found.trailing_zeros() as usize
    }
}

/// [`plain_len`] 8 bytes at a time in a word, for other targets.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline]
fn plain_len_swar(b: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let specials = |w: u64| {
        let zero = |v: u64| v.wrapping_sub(ONES) & !v;
        (zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')))
            | w.wrapping_sub(ONES * 0x20) & !w)
            & HIGHS
    };
    let (words, rest) = b.as_chunks::<8>();
    for (n, word) in words.iter().enumerate() {
        let found = specials(u64::from_le_bytes(*word));
        if found != 0 {
            return n * 8 + found.trailing_zeros() as usize / 8;
        }
    }
    // The rest padded with spaces, which are not special.
    let mut last = [b' '; 8];
    last[..rest.len()].copy_from_slice(rest);
    let found = specials(u64::from_le_bytes(last));
    if found == 0 {
        b.len()
    } else {
        words.len() * 8 + found.trailing_zeros() as usize / 8
    }
}

/// Writes an attribute key as a JSON string: an interned key's is written
/// once, when it is interned.
#[inline]
pub(crate) fn write_key(out: &mut Vec<u8>, k: &Key) {
    match k.json() {
        Some(json) => out.extend_from_slice(json.as_bytes()),
        None => write_str(out, k),
    }
}

/// Writes an integer in decimal.
fn push_int(out: &mut Vec<u8>, i: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
}

/// Writes one attribute value as JSON.
pub(crate) fn write_value(out: &mut Vec<u8>, v: &AttrValue) {
    match v {
        AttrValue::Str(s) => write_str(out, s),
        AttrValue::Int(i) => push_int(out, *i),
        AttrValue::Float(f) => {
            let _ = serde_json::to_writer(&mut *out, f);
        }
        AttrValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        AttrValue::Json(raw) => out.extend_from_slice(raw.get().as_bytes()),
    }
}

fn write_attributes(out: &mut Vec<u8>, attrs: &Attributes) {
    out.push(b'{');
    for (i, (k, v)) in attrs.0.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_key(out, k);
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

/// Appends the span as one flat JSON object (no newline).
pub fn write(out: &mut Vec<u8>, s: &Span) {
    out.extend_from_slice(br#"{"trace_id":""#);
    push_hex(out, &s.trace_id.0);
    out.extend_from_slice(br#"","span_id":""#);
    push_hex(out, &s.span_id.0);
    out.extend_from_slice(br#"","parent_span_id":"#);
    match s.parent_span_id {
        Some(p) => {
            out.push(b'"');
            push_hex(out, &p.0);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    if !s.trace_state.is_empty() {
        out.extend_from_slice(br#","trace_state":"#);
        write_str(out, &s.trace_state);
    }
    out.extend_from_slice(br#","name":"#);
    write_str(out, &s.name);
    out.extend_from_slice(br#","kind":""#);
    out.extend_from_slice(s.kind.as_str().as_bytes());
    out.extend_from_slice(br#"","start_time_unix_nano":"#);
    push_int(out, s.start_time_unix_nano);
    out.extend_from_slice(br#","end_time_unix_nano":"#);
    push_int(out, s.end_time_unix_nano);
    out.extend_from_slice(br#","status":{"code":""#);
    out.extend_from_slice(s.status.code.as_str().as_bytes());
    out.push(b'"');
    if !s.status.message.is_empty() {
        out.extend_from_slice(br#","message":"#);
        write_str(out, &s.status.message);
    }
    out.extend_from_slice(br#"},"attributes":"#);
    write_attributes(out, &s.attributes);
    if !s.events.is_empty() {
        out.extend_from_slice(br#","events":["#);
        for (i, e) in s.events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"name":"#);
            write_str(out, &e.name);
            out.extend_from_slice(br#","time_unix_nano":"#);
            push_int(out, e.time_unix_nano);
            out.extend_from_slice(br#","attributes":"#);
            write_attributes(out, &e.attributes);
            out.push(b'}');
        }
        out.push(b']');
    }
    if !s.links.is_empty() {
        out.extend_from_slice(br#","links":["#);
        for (i, l) in s.links.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"trace_id":""#);
            push_hex(out, &l.trace_id.0);
            out.extend_from_slice(br#"","span_id":""#);
            push_hex(out, &l.span_id.0);
            out.push(b'"');
            if !l.trace_state.is_empty() {
                out.extend_from_slice(br#","trace_state":"#);
                write_str(out, &l.trace_state);
            }
            out.extend_from_slice(br#","attributes":"#);
            write_attributes(out, &l.attributes);
            out.push(b'}');
        }
        out.push(b']');
    }
    if !s.resource.is_empty() {
        out.extend_from_slice(br#","resource":"#);
        write_attributes(out, &s.resource);
    }
    if let Some(scope) = &s.scope {
        out.extend_from_slice(br#","scope":{"name":"#);
        write_str(out, &scope.name);
        out.extend_from_slice(br#","version":"#);
        write_str(out, &scope.version);
        out.push(b'}');
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways of finding the first special byte agree with a byte loop,
    /// for every length to past two blocks and every kind of byte.
    #[test]
    fn plain_len_agrees_with_a_byte_loop() {
        let naive = |b: &[u8]| {
            b.iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .unwrap_or(b.len())
        };
        let mut rng = fastrand::Rng::with_seed(3);
        for len in 0..=40 {
            for _ in 0..200 {
                // Mostly plain bytes (ASCII and high), a special one now and then.
                let b: Vec<u8> = (0..len)
                    .map(|_| match rng.u8(..40) {
                        0 => b'"',
                        1 => b'\\',
                        2 => rng.u8(..0x20),
                        3 => rng.u8(0x80..),
                        _ => rng.u8(0x20..0x7f),
                    })
                    .collect();
                assert_eq!(plain_len(&b), naive(&b), "{b:?}");
                assert_eq!(plain_len_swar(&b), naive(&b), "{b:?}");
            }
        }
    }

    const DESIGN_EXAMPLE: &str = r#"{"trace_id":"4BF92F3577B34DA6A3CE929D0E0E4736","span_id":"00f067aa0ba902b7",
 "parent_span_id":null,"name":"chat gpt-4o","kind":"client",
 "start_time_unix_nano":1732000000000000000,"end_time_unix_nano":"1732000001200000000",
 "status":{"code":"error","message":"rate limited"},
 "attributes":{"gen_ai.request.model":"gpt-4o","gen_ai.usage.input_tokens":1200,"x.f":0.5,"x.b":true,"x.a":[1,"two"],"x.n":null},
 "events":[{"name":"exception","time_unix_nano":1732000001100000000,
            "attributes":{"exception.type":"RateLimitError","exception.message":"..."}}],
 "resource":{"service.name":"support-agent"}}"#;

    #[test]
    fn reads_the_design_example() {
        let s = parse(DESIGN_EXAMPLE).unwrap();
        assert_eq!(s.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s.kind, SpanKind::Client);
        assert_eq!(s.duration_nanos(), 1_200_000_000);
        assert_eq!(s.status.code, StatusCode::Error);
        assert_eq!(
            s.attributes.get("gen_ai.usage.input_tokens"),
            Some(&AttrValue::Int(1200))
        );
        assert_eq!(s.attributes.get("x.f"), Some(&AttrValue::Float(0.5)));
        assert_eq!(s.attributes.get("x.b"), Some(&AttrValue::Bool(true)));
        assert!(
            matches!(s.attributes.get("x.a"), Some(AttrValue::Json(j)) if j.get() == r#"[1,"two"]"#)
        );
        assert_eq!(s.attributes.get("x.n"), None, "null attributes are dropped");
        assert_eq!(
            s.events[0]
                .attributes
                .get("exception.type")
                .and_then(|v| v.as_str()),
            Some("RateLimitError")
        );
        assert_eq!(
            s.resource.get("service.name").and_then(|v| v.as_str()),
            Some("support-agent")
        );
    }

    #[test]
    fn write_then_read_is_identity() {
        let s = parse(DESIGN_EXAMPLE).unwrap();
        let mut out = Vec::new();
        write(&mut out, &s);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(r#""trace_id":"4bf92f3577b34da6a3ce929d0e0e4736""#),
            "ids are written lower case"
        );
        assert_eq!(parse(&text).unwrap(), s);
    }

    #[test]
    fn rejects_bad_ids_and_times() {
        let bad_id = DESIGN_EXAMPLE.replace("00f067aa0ba902b7", "00f067aa0ba902");
        assert!(
            parse(&bad_id)
                .unwrap_err()
                .contains("span_id must be 16 hex digits")
        );
        let bad_time = DESIGN_EXAMPLE.replace(r#""1732000001200000000""#, r#""soon""#);
        assert!(
            parse(&bad_time)
                .unwrap_err()
                .contains("time is not a decimal integer")
        );
    }

    /// The fast path writes exactly what serde_json writes, wherever in
    /// the string (a 16-byte block or the rest) an escaped byte falls.
    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for len in [0, 1, 15, 16, 17, 31, 32, 33, 40] {
            for at in 0..len.max(1) {
                for special in ['"', '\\', '\n', '\u{1}', '\u{1f}', '\u{7f}', 'é', ' '] {
                    let mut s: String = "a".repeat(len);
                    if len > 0 {
                        s.replace_range(at..at + 1, &special.to_string());
                    }
                    let mut ours = Vec::new();
                    write_str(&mut ours, &s);
                    assert_eq!(
                        String::from_utf8(ours).unwrap(),
                        serde_json::to_string(&s).unwrap(),
                        "{s:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn kinds_and_codes_accept_otlp_numbers_and_names() {
        let s = DESIGN_EXAMPLE
            .replace(r#""kind":"client""#, r#""kind":3"#)
            .replace(r#""code":"error""#, r#""code":"STATUS_CODE_OK""#);
        let s = parse(&s).unwrap();
        assert_eq!(s.kind, SpanKind::Client);
        assert_eq!(s.status.code, StatusCode::Ok);
        for (bad, says) in [
            (r#""kind":true"#, "expected a name or an OTLP number"),
            (r#""kind":2.5"#, "expected a name or an OTLP number"),
            (r#""kind":9"#, "unknown span kind 9"),
            (r#""kind":"sideways""#, "unknown span kind \"sideways\""),
        ] {
            let e = parse(&DESIGN_EXAMPLE.replace(r#""kind":"client""#, bad))
                .err()
                .unwrap_or_else(|| panic!("{bad} was accepted"));
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
