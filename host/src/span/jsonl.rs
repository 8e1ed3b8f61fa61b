//! Span JSONL: one flat span, or one OTLP/JSON request, per line; the form is
//! detected per line from the first key of the object.

use super::{Span, flat, otlp_json};

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
