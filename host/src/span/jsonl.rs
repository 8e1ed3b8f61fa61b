//! Span JSONL: one flat span, or one OTLP/JSON request, per line; the form is
//! detected per line from the first key of the object.

use super::{Span, TraceId, flat, otlp_json, parse_hex_id};

/// The encoding of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineForm {
    /// plume's flat span.
    Flat,
    /// An OTLP/JSON `ExportTraceServiceRequest`.
    OtlpJson,
}

/// Detects the form from the first key: `resourceSpans` means OTLP/JSON.
pub fn detect(line: &str) -> LineForm {
    let rest = line
        .trim_start()
        .strip_prefix('{')
        .unwrap_or("")
        .trim_start();
    if rest.starts_with("\"resourceSpans\"") || rest.starts_with("\"resource_spans\"") {
        LineForm::OtlpJson
    } else {
        LineForm::Flat
    }
}

/// Parses one line and appends its spans to `out` (a flat line is one span;
/// an OTLP line any number; a blank line none); on an error `out` is left
/// as it was. Appending, not returning a vector, saves an allocation a line.
pub fn parse_line(line: &str, out: &mut Vec<Span>) -> Result<(), String> {
    if line.trim().is_empty() {
        return Ok(());
    }
    match detect(line) {
        LineForm::Flat => out.push(flat::parse(line)?),
        LineForm::OtlpJson => out.extend(otlp_json::parse(line)?),
    }
    Ok(())
}

/// The trace id of a flat span line, read without parsing the line: the
/// value of its top-level `trace_id` key, the other members skipped
/// unchecked. `None` where that is not certain (an OTLP/JSON line, which
/// may hold several traces; escapes in keys; anything not JSON-shaped): the
/// line is then parsed to learn it. For a line that parses, the id is the
/// parsed span's (the one top-level `trace_id`: the parser refuses
/// duplicate keys); a line that does not parse fails wherever it is parsed.
/// This lets one thread send lines, by trace, to threads that parse them
/// (`engine::shards`), at the cost of reading up to the id: plume writes it
/// first.
pub fn trace_id_of_line(line: &[u8]) -> Option<TraceId> {
    let mut i = skip_ws(line, 0);
    if line.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(line, i);
        let (key, after) = plain_string(line, i)?;
        i = skip_ws(line, after);
        if line.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(line, i + 1);
        match key {
            b"trace_id" => {
                let (hex, _) = plain_string(line, i)?;
                let hex = std::str::from_utf8(hex).ok()?;
                return parse_hex_id(hex, "").ok().map(TraceId);
            }
            b"resourceSpans" | b"resource_spans" => return None,
            _ => i = skip_value(line, i)?,
        }
        i = skip_ws(line, i);
        if line.get(i) != Some(&b',') {
            return None;
        }
        i += 1;
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// A string without escapes at `i`: its bytes, and where it ends.
fn plain_string(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let len = memchr::memchr2(b'"', b'\\', &b[i + 1..])?;
    let end = i + 1 + len;
    (b[end] == b'"').then(|| (&b[i + 1..end], end + 1))
}

/// Skips the value at `i` (a string, an array or object, or a scalar),
/// without checking it; returns where it ends.
fn skip_value(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *b.get(i)? {
            b'"' => {
                // To the closing quote, over escaped ones.
                i += 1;
                loop {
                    i += memchr::memchr2(b'"', b'\\', b.get(i..)?)?;
                    if b[i] == b'"' {
                        break;
                    }
                    i += 2;
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.checked_sub(1)?,
            b',' if depth == 0 => return Some(i),
            _ => {}
        }
        i += 1;
        if depth == 0 && matches!(b.get(i), Some(b',' | b'}' | b' ' | b'\t' | b'\r' | b'\n')) {
            return Some(i);
        }
    }
}

/// A line that could not be read, kept for the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    /// Where it came from (file path or `-`).
    pub source: String,
    /// 1-based line number.
    pub line: u64,
    /// What was wrong.
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.source, self.line, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id read without parsing is the parsed span's, wherever the key
    /// is and whatever comes before it; where that is not certain, none.
    #[test]
    fn trace_id_of_a_line_is_the_parsed_spans() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let rest =
            r#""span_id":"00f067aa0ba902b7","start_time_unix_nano":1,"end_time_unix_nano":2"#;
        let lines = [
            format!(r#"{{"trace_id":"{id}",{rest}}}"#),
            format!(r#" {{ "trace_id" : "{}" , {rest} }}"#, id.to_uppercase()),
            format!(
                r#"{{"name":"a,b}}\"]","attributes":{{"trace_id":"{}","x":[1,{{"y":"}}"}}]}},"kind":2,"n":null,"t":true,"f":-1.5e3,{rest},"trace_id":"{id}"}}"#,
                "0".repeat(31) + "1"
            ),
        ];
        for line in &lines {
            let parsed = flat::parse(line).unwrap();
            assert_eq!(
                trace_id_of_line(line.as_bytes()),
                Some(parsed.trace_id),
                "{line}"
            );
        }
        for unsure in [
            r#"{"resourceSpans":[{"scopeSpans":[]}],"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#.to_string(),
            format!(r#"{{"trace\u005fid":"{id}",{rest}}}"#),
            format!(r#"{{"trace_id":"{}",{rest}}}"#, "0".repeat(32)),
            format!(r#"{{{rest}}}"#),
            "".into(),
            "[1]".into(),
        ] {
            assert_eq!(trace_id_of_line(unsure.as_bytes()), None, "{unsure}");
        }
        // Every one-byte change of a line: an id read is the parsed one.
        let base = &lines[2];
        for at in 0..base.len() {
            for byte in [b'"', b'\\', b'{', b'}', b',', b':', b'x', b'1'] {
                let mut b = base.as_bytes().to_vec();
                b[at] = byte;
                if let (Some(read), Ok(line)) = (trace_id_of_line(&b), std::str::from_utf8(&b))
                    && let Ok(span) = flat::parse(line)
                {
                    assert_eq!(read, span.trace_id, "{line}");
                }
            }
        }
    }

    #[test]
    fn detects_by_first_key() {
        assert_eq!(detect(r#"  {"resourceSpans":[]}"#), LineForm::OtlpJson);
        assert_eq!(
            detect(r#"{"trace_id":"x","attributes":{"resourceSpans":1}}"#),
            LineForm::Flat
        );
        let mut out = Vec::new();
        parse_line("   ", &mut out).unwrap();
        assert!(out.is_empty());
        assert!(parse_line("{not json", &mut out).is_err());
        assert!(out.is_empty());
    }
}
