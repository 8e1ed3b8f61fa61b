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

    /// Parses the whole lines at the start of `bytes` until `out` holds
    /// `max_spans`; returns the bytes parsed (up to the last newline used).
    fn whole_lines(
        &mut self,
        source: &str,
        bytes: &[u8],
        out: &mut Vec<Span>,
        max_spans: usize,
    ) -> usize {
        let mut used = 0;
        while out.len() < max_spans
            && let Some(nl) = memchr::memchr(b'\n', &bytes[used..])
        {
            self.line(source, &bytes[used..used + nl + 1], out);
            used += nl + 1;
        }
        used
    }

    /// Parses one line (its newline included, if any) and appends its spans to `out`.
    fn line(&mut self, source: &str, bytes: &[u8], out: &mut Vec<Span>) {
        self.lines += 1;
        let before = out.len();
        let parsed = std::str::from_utf8(bytes)
            .map_err(|e| format!("not UTF-8: {e}"))
            .and_then(|line| parse_line(line, out));
        match parsed {
            Ok(()) => self.spans += (out.len() - before) as u64,
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

/// Spans handed on at most at once by [`read_to_end`]; fewer when the
/// lines read so far end (the next read may wait for more input).
const CHUNK_SPANS: usize = 1024;

/// The buffer standard input is read through: a read fills it with ~100
/// lines of spans, where stdin's own 8 KiB holds ~13.
const STDIN_BUFFER: usize = 64 * 1024;

/// Standard input, buffered for [`read_to_end`].
pub fn stdin() -> impl BufRead {
    std::io::BufReader::with_capacity(STDIN_BUFFER, std::io::stdin().lock())
}

/// Reads `reader` to its end, calling `on_spans` with the spans of the good
/// lines. Lines are parsed where the reader buffered them (only a line split
/// between two reads is copied), and spans are handed on in chunks of up to
/// [`CHUNK_SPANS`], each as soon as the lines read so far are parsed: a slow
/// source is not held back, and a fast one is not handed on span by span
/// (a send to another thread per line cost more than parsing it).
pub fn read_to_end(
    source: &str,
    mut reader: impl BufRead,
    mut on_spans: impl FnMut(Vec<Span>),
) -> std::io::Result<ReadStats> {
    let mut stats = ReadStats::default();
    // The start of a line whose end has not been read yet.
    let mut split: Vec<u8> = Vec::new();
    let mut spans = Vec::new();
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            // The end: a last line without its newline still counts.
            if !split.is_empty() {
                stats.line(source, &split, &mut spans);
            }
            if !spans.is_empty() {
                on_spans(spans);
            }
            return Ok(stats);
        }
        let mut used = 0;
        if !split.is_empty() {
            let end = memchr::memchr(b'\n', buf).map_or(buf.len(), |nl| nl + 1);
            split.extend_from_slice(&buf[..end]);
            used = end;
            if split.ends_with(b"\n") {
                stats.line(source, &split, &mut spans);
                split.clear();
            }
        }
        used += stats.whole_lines(source, &buf[used..], &mut spans, CHUNK_SPANS);
        if spans.len() < CHUNK_SPANS {
            // What is left has no newline: the start of a line.
            split.extend_from_slice(&buf[used..]);
            used = buf.len();
        }
        reader.consume(used);
        if !spans.is_empty() {
            on_spans(std::mem::replace(
                &mut spans,
                Vec::with_capacity(CHUNK_SPANS),
            ));
        }
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
        let mut spans = Vec::new();
        let start = stats.whole_lines(path, &pending, &mut spans, usize::MAX);
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

    /// Whatever the reader's buffer size (lines split across reads, a
    /// buffer smaller than a line), every line is read once, in order, with
    /// the right numbers; chunks stay within `CHUNK_SPANS`; a last line
    /// without its newline counts.
    #[test]
    fn lines_split_between_reads_and_chunks() {
        let line = |i: usize| {
            format!(
                r#"{{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"{:016x}","name":"s{i}","start_time_unix_nano":1,"end_time_unix_nano":2}}"#,
                i + 1
            )
        };
        let n = CHUNK_SPANS * 2 + 7;
        let mut input: String = (0..n).map(|i| line(i) + "\n").collect();
        input.push_str("{broken\n");
        input.push_str(&line(n)); // no newline at the end
        for capacity in [1, 7, 150, 4096, 1 << 20] {
            let reader = std::io::BufReader::with_capacity(capacity, input.as_bytes());
            let mut names = Vec::new();
            let mut chunks = Vec::new();
            let stats = read_to_end("mem", reader, |s| {
                chunks.push(s.len());
                names.extend(s.into_iter().map(|s| s.name.to_string()));
            })
            .unwrap();
            let expected: Vec<String> = (0..=n).map(|i| format!("s{i}")).collect();
            assert_eq!(names, expected, "buffer of {capacity}");
            assert_eq!((stats.lines, stats.failed), (n as u64 + 2, 1));
            assert_eq!(stats.errors[0].line, n as u64 + 1);
            assert!(chunks.iter().all(|&c| (1..=CHUNK_SPANS).contains(&c)));
        }
        // A slice is one buffer: still handed on in chunks, not at once.
        let mut chunks = Vec::new();
        read_to_end("mem", input.as_bytes(), |s| chunks.push(s.len())).unwrap();
        assert_eq!(chunks[..2], [CHUNK_SPANS, CHUNK_SPANS]);
    }
}
