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

/// Parses one line into spans (a flat line is one span; an OTLP line any
/// number). Blank lines give no spans.
pub fn parse_line(line: &str) -> Result<Vec<Span>, String> {
    if line.trim().is_empty() {
        return Ok(Vec::new());
    }
    match detect(line) {
        LineForm::Flat => flat::parse(line).map(|s| vec![s]),
        LineForm::OtlpJson => otlp_json::parse(line),
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

    #[test]
    fn detects_by_first_key() {
        assert_eq!(detect(r#"  {"resourceSpans":[]}"#), LineForm::OtlpJson);
        assert_eq!(
            detect(r#"{"trace_id":"x","attributes":{"resourceSpans":1}}"#),
            LineForm::Flat
        );
        assert!(parse_line("   ").unwrap().is_empty());
        assert!(parse_line("{not json").is_err());
    }
}
