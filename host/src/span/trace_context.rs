//! W3C Trace Context: `traceparent` and `tracestate` values, validated as the
//! specification (https://www.w3.org/TR/trace-context/) says. plume meets them
//! in span attributes (a sub-agent recording its caller's `traceparent`) and in
//! the `trace_state` of spans and links.

use super::{SpanId, TraceId};
use std::fmt;

/// A parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// Format version (00 today).
    pub version: u8,
    /// The trace.
    pub trace_id: TraceId,
    /// The caller's span.
    pub parent_id: SpanId,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

/// Why a `traceparent` or `tracestate` value is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn invalid<T>(why: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid(why.into()))
}

/// Lowercase hex of exactly `N` bytes (the spec does not allow uppercase).
fn lower_hex<const N: usize>(s: &str, what: &str) -> Result<[u8; N], Invalid> {
    if s.len() != 2 * N
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return invalid(format!("{what} must be {} lowercase hex digits", 2 * N));
    }
    let mut out = [0u8; N];
    const_hex::decode_to_slice(s, &mut out).map_err(|e| Invalid(format!("{what}: {e}")))?;
    Ok(out)
}

/// Parses a `traceparent` value. Version `ff` is invalid; a future version is
/// read for its first four fields, and may carry more after a `-`, as the
/// specification asks of parsers; version 00 must be exactly 55 characters.
/// All-zero trace and parent ids are invalid.
pub fn parse_traceparent(value: &str) -> Result<TraceParent, Invalid> {
    let v = value.trim_matches([' ', '\t']);
    // Fields are cut by byte position below: only ASCII may be sliced so.
    if !v.is_ascii() {
        return invalid("traceparent must be ASCII");
    }
    if v.len() < 55 {
        return invalid(format!(
            "traceparent is {} characters; at least 55 expected",
            v.len()
        ));
    }
    let version = lower_hex::<1>(&v[..2], "version")?[0];
    if version == 0xff {
        return invalid("traceparent version ff is invalid");
    }
    if version == 0 && v.len() != 55 {
        return invalid("a version 00 traceparent is exactly 55 characters");
    }
    if v.len() > 55 && v.as_bytes()[55] != b'-' {
        return invalid("fields after the flags must follow a '-'");
    }
    let b = v.as_bytes();
    if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return invalid("traceparent fields must be separated by '-'");
    }
    let trace_id = lower_hex::<16>(&v[3..35], "trace-id")?;
    if trace_id == [0; 16] {
        return invalid("trace-id is all zeros");
    }
    let parent_id = lower_hex::<8>(&v[36..52], "parent-id")?;
    if parent_id == [0; 8] {
        return invalid("parent-id is all zeros");
    }
    let flags = lower_hex::<1>(&v[53..55], "trace-flags")?[0];
    Ok(TraceParent {
        version,
        trace_id: TraceId(trace_id),
        parent_id: SpanId(parent_id),
        flags,
    })
}

/// At most this many list members in a `tracestate`.
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Checks a `tracestate` value: at most 32 list members, each `key=value`
/// with a valid simple or multi-tenant key and value, no key twice. Empty
/// members (`a=1,,b=2`) are allowed, as the specification says.
pub fn validate_tracestate(value: &str) -> Result<(), Invalid> {
    let mut keys: Vec<&str> = Vec::new();
    for member in value.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        let Some((key, val)) = member.split_once('=') else {
            return invalid(format!("tracestate member {member:?} has no '='"));
        };
        check_key(key)?;
        check_value(val)?;
        if keys.contains(&key) {
            return invalid(format!("tracestate key {key:?} appears twice"));
        }
        keys.push(key);
        if keys.len() > MAX_TRACESTATE_MEMBERS {
            return invalid(format!(
                "tracestate has more than {MAX_TRACESTATE_MEMBERS} members"
            ));
        }
    }
    Ok(())
}

/// A span's `trace_state` as plume keeps it: unchanged when valid, empty
/// otherwise (an invalid tracestate is not propagated).
pub fn cleaned(mut value: String) -> String {
    if !value.is_empty() && validate_tracestate(&value).is_err() {
        value.clear();
    }
    value
}

fn key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'/')
}

fn check_key(key: &str) -> Result<(), Invalid> {
    let bad = || Invalid(format!("tracestate key {key:?} is invalid"));
    match key.split_once('@') {
        None => {
            // simple-key = lcalpha 0*255(lcalpha / DIGIT / "_" / "-" / "*" / "/")
            let b = key.as_bytes();
            if b.is_empty() || b.len() > 256 || !b[0].is_ascii_lowercase() {
                return Err(bad());
            }
            if !b.iter().all(|&c| key_char(c)) {
                return Err(bad());
            }
        }
        Some((tenant, system)) => {
            // tenant-id = (lcalpha / DIGIT) 0*240(...); system-id = lcalpha 0*13(...)
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            if t.is_empty()
                || t.len() > 241
                || !(t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
            {
                return Err(bad());
            }
            if s.is_empty() || s.len() > 14 || !s[0].is_ascii_lowercase() {
                return Err(bad());
            }
            if !t.iter().chain(s).all(|&c| key_char(c)) {
                return Err(bad());
            }
        }
    }
    Ok(())
}

fn check_value(value: &str) -> Result<(), Invalid> {
    // value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr;
    // nblk-chr = %x21-2B / %x2D-3C / %x3E-7E (no ',' or '=')
    let b = value.as_bytes();
    let nblk = |c: u8| (0x21..=0x7e).contains(&c) && c != b',' && c != b'=';
    if b.is_empty() || b.len() > 256 || !nblk(b[b.len() - 1]) {
        return invalid(format!("tracestate value {value:?} is invalid"));
    }
    if !b.iter().all(|&c| c == b' ' || nblk(c)) {
        return invalid(format!("tracestate value {value:?} is invalid"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn accepts_the_spec_example() {
        let tp = parse_traceparent(VALID).unwrap();
        assert_eq!(tp.version, 0);
        assert_eq!(tp.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.parent_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(tp.flags, 1);
        assert!(parse_traceparent(&VALID.replace("-01", "-00")).is_ok());
    }

    #[test]
    fn rejects_what_the_spec_rejects() {
        let cases = [
            ("version ff", VALID.replacen("00-", "ff-", 1)),
            (
                "all-zero trace id",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01".into(),
            ),
            (
                "all-zero parent id",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01".into(),
            ),
            ("uppercase hex", VALID.to_uppercase()),
            ("too short", VALID[..54].to_string()),
            ("version 00 with more fields", format!("{VALID}-extra")),
            ("a wrong separator", VALID.replacen('-', "_", 1)),
            ("non-hex flags", VALID.replace("-01", "-0x")),
            (
                "a short trace id",
                "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-011".into(),
            ),
            ("empty", String::new()),
            // Found by fuzzing: slicing a multi-byte character panicked.
            (
                "non-ASCII",
                "cֺ0fo f3577b343ad5c9ae29d0v0e4736-016fcc-4bf6ae2b7-01-exa".into(),
            ),
            ("non-ASCII in a field", VALID.replacen('4', "é", 1)),
        ];
        for (what, value) in cases {
            assert!(parse_traceparent(&value).is_err(), "{what}: {value:?}");
        }
    }

    #[test]
    fn reads_future_versions_and_ignores_their_extra_fields() {
        let future = VALID.replacen("00-", "cc-", 1);
        assert_eq!(parse_traceparent(&future).unwrap().version, 0xcc);
        let more = format!("{future}-what-the-future-will-bring");
        assert!(parse_traceparent(&more).is_ok());
        // Extra characters must start with '-'.
        assert!(parse_traceparent(&format!("{future}x")).is_err());
    }

    #[test]
    fn tracestate_limits() {
        assert!(validate_tracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE").is_ok());
        assert!(validate_tracestate("fw529a3039@dt=1,a=b,,  c=d").is_ok());
        assert!(validate_tracestate("").is_ok());
        let members = |n: usize| {
            (0..n)
                .map(|i| format!("k{i}=v"))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert!(validate_tracestate(&members(32)).is_ok());
        assert!(validate_tracestate(&members(33)).is_err(), "33 members");
        for bad in [
            "Rojo=1",     // uppercase key
            "1abc=1",     // simple key starting with a digit
            "a=1,a=2",    // duplicate key
            "a=",         // empty value
            "a=b=c",      // '=' in the value
            "a=ctl\u{1}", // a control character
            "novalue",    // no '='
            "t@toolongsystemid=1",
        ] {
            assert!(validate_tracestate(bad).is_err(), "{bad}");
        }
        let long_value = format!("a={}", "x".repeat(257));
        assert!(validate_tracestate(&long_value).is_err());
        assert_eq!(cleaned("a=1,a=2".into()), "");
        assert_eq!(cleaned("a=1".into()), "a=1");
    }
}
