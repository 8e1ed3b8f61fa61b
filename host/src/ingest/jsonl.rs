//! JSONL sources: a file read once (replay), a file followed as it grows
//! (service mode), or standard input. A malformed line is reported with its
//! number and skipped; every other line is still read.

use crate::span::Span;
use crate::span::jsonl::{LineError, parse_line};
use serde::Serialize;
use std::io::{BufRead, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Errors kept for the report; beyond this only the count grows.
const MAX_KEPT_ERRORS: usize = 100;

/// What a source read.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ReadStats {
    /// Lines read (blank ones included).
    pub lines: u64,
    /// Lines that failed to parse.
    pub failed: u64,
    /// Spans parsed.
    pub spans: u64,
    /// The first failures, with source and line number.
    #[serde(serialize_with = "errors_as_strings")]
    pub errors: Vec<LineError>,
}

fn errors_as_strings<S: serde::Serializer>(errors: &[LineError], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(errors.iter().map(|e| e.to_string()))
}

impl ReadStats {
    /// Adds another source's counts.
    pub fn merge(&mut self, other: ReadStats) {
        self.lines += other.lines;
        self.failed += other.failed;
        self.spans += other.spans;
        let room = MAX_KEPT_ERRORS.saturating_sub(self.errors.len());
        self.errors.extend(other.errors.into_iter().take(room));
    }

    fn line(&mut self, source: &str, bytes: &[u8], on_spans: &mut impl FnMut(Vec<Span>)) {
        self.lines += 1;
        let parsed = std::str::from_utf8(bytes)
            .map_err(|e| format!("not UTF-8: {e}"))
            .and_then(parse_line);
        match parsed {
            Ok(spans) if spans.is_empty() => {}
            Ok(spans) => {
                self.spans += spans.len() as u64;
                on_spans(spans);
            }
            Err(message) => {
                self.failed += 1;
                let error = LineError {
                    source: source.to_string(),
                    line: self.lines,
                    message,
                };
                tracing::warn!("{error}");
                if self.errors.len() < MAX_KEPT_ERRORS {
                    self.errors.push(error);
                }
            }
        }
    }
}

/// Reads `reader` to its end, calling `on_spans` for every good line.
pub fn read_to_end(
    source: &str,
    mut reader: impl BufRead,
    mut on_spans: impl FnMut(Vec<Span>),
) -> std::io::Result<ReadStats> {
    let mut stats = ReadStats::default();
    let mut buf = Vec::with_capacity(4096);
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(stats);
        }
        stats.line(source, &buf, &mut on_spans);
    }
}

/// Reads the file at `path` from byte `start` to its end, then follows it as
/// it grows (like `tail -F`: a truncated file is read again from the start)
/// until `stop`. A last line without its newline waits for it. `on_spans`
/// gets the spans of each chunk read, with the offset just past their last
/// line (where to resume).
pub fn follow(
    path: &str,
    start: u64,
    stop: Arc<AtomicBool>,
    poll: Duration,
    mut on_spans: impl FnMut(Vec<Span>, u64),
) -> std::io::Result<ReadStats> {
    let mut stats = ReadStats::default();
    let mut file = std::fs::File::open(path)?;
    let mut offset: u64 = start;
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(offset);
        if len < offset {
            tracing::info!(path, "file was truncated; reading from the start");
            file = std::fs::File::open(path)?;
            offset = 0;
            pending.clear();
        }
        file.seek(SeekFrom::Start(offset))?;
        let n = file.read(&mut chunk)?;
        if n == 0 {
            std::thread::sleep(poll);
            continue;
        }
        offset += n as u64;
        pending.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        let mut spans = Vec::new();
        while let Some(nl) = pending[start..].iter().position(|&b| b == b'\n') {
            stats.line(path, &pending[start..start + nl + 1], &mut |s| {
                spans.extend(s)
            });
            start += nl + 1;
        }
        pending.drain(..start);
        if !spans.is_empty() {
            on_spans(spans, offset - pending.len() as u64);
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_numbered_and_skipped() {
        let good = r#"{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","name":"a","start_time_unix_nano":1,"end_time_unix_nano":2}"#;
        let input = format!("{good}\n{{broken\n\n{good}\n");
        let mut spans = 0;
        let stats = read_to_end("mem", input.as_bytes(), |s| spans += s.len()).unwrap();
        assert_eq!(spans, 2);
        assert_eq!((stats.lines, stats.failed, stats.spans), (4, 1, 2));
        assert_eq!(stats.errors[0].line, 2);
        assert!(stats.errors[0].to_string().starts_with("mem:2: "));
    }
}
