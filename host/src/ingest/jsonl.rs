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

    /// Reads the whole lines at the start of `bytes` into `out` until it
    /// holds `max`; returns the bytes read (up to the last newline used).
    fn whole_lines<G: Gather>(
        &mut self,
        source: &str,
        bytes: &[u8],
        out: &mut G,
        max: usize,
    ) -> usize {
        let mut used = 0;
        while out.len() < max
            && let Some(nl) = memchr::memchr(b'\n', &bytes[used..])
        {
            out.add(self, source, &bytes[used..used + nl + 1]);
            used += nl + 1;
        }
        used
    }

    /// Parses one line (its newline included, if any) and appends its spans to `out`.
    fn line(&mut self, source: &str, bytes: &[u8], out: &mut Vec<Span>) {
        self.lines += 1;
        self.parse(source, self.lines, bytes, out);
    }

    /// Parses line `number` of `source` and appends its spans to `out`;
    /// counts its spans, or its failure (not the line: it was counted where
    /// it was read).
    pub fn parse(&mut self, source: &str, number: u64, bytes: &[u8], out: &mut Vec<Span>) {
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
                    line: number,
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

/// What a reader hands on: the spans of the lines, parsed where they are
/// read, or the lines themselves ([`Lines`]), for the pipeline's shards to
/// parse.
pub trait Gather {
    /// An empty one, for lines of `source`.
    fn new(source: &Arc<str>) -> Self;
    /// Takes one line read (its newline included, if any).
    fn add(&mut self, stats: &mut ReadStats, source: &str, line: &[u8]);
    /// Spans or lines held.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Gather for Vec<Span> {
    fn new(_: &Arc<str>) -> Self {
        Vec::with_capacity(CHUNK_SPANS)
    }

    fn add(&mut self, stats: &mut ReadStats, source: &str, line: &[u8]) {
        stats.line(source, line, self);
    }

    fn len(&self) -> usize {
        Vec::len(self)
    }
}

/// Whole lines of one source, as read, with their numbers: a reader's
/// chunk, or what the head of a sharded pipeline sends one shard. Parsing a
/// line is most of what the host does for a span before the plugins; where
/// the pipeline runs on several cores, the shards parse their own lines,
/// and the spans are then first read on the core that runs them
/// (BENCHMARKS.md: parsing on the head cost two shards a quarter more CPU).
#[derive(Default)]
pub struct Lines {
    source: Arc<str>,
    /// The lines, one after the other.
    bytes: Vec<u8>,
    /// Each line's end in `bytes`, and its number in the source.
    ends: Vec<(usize, u64)>,
}

impl Lines {
    pub fn source(&self) -> &Arc<str> {
        &self.source
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Adds line `number` of `source`; lines of another source than those
    /// held must wait for an empty one (see [`Lines::takes`]).
    pub fn push(&mut self, source: &Arc<str>, number: u64, line: &[u8]) {
        if self.is_empty() && !Arc::ptr_eq(&self.source, source) {
            self.source = source.clone();
        }
        self.append(number, line);
    }

    fn append(&mut self, number: u64, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.ends.push((self.bytes.len(), number));
    }

    /// These lines, leaving an empty set with room for as many again.
    pub fn take(&mut self) -> Lines {
        let room = Lines {
            source: self.source.clone(),
            bytes: Vec::with_capacity(self.bytes.len()),
            ends: Vec::with_capacity(self.ends.len()),
        };
        std::mem::replace(self, room)
    }

    /// Whether a line of `source` can join these.
    pub fn takes(&self, source: &Arc<str>) -> bool {
        self.is_empty() || Arc::ptr_eq(&self.source, source)
    }

    /// Each line, with its number.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let mut start = 0;
        self.ends.iter().map(move |&(end, number)| {
            let line = &self.bytes[start..end];
            start = end;
            (number, line)
        })
    }

    /// Parses every line into `out`, counting spans and failures in `stats`.
    pub fn parse(&self, stats: &mut ReadStats, out: &mut Vec<Span>) {
        for (number, line) in self.iter() {
            stats.parse(&self.source, number, line, out);
        }
    }
}

impl Gather for Lines {
    fn new(source: &Arc<str>) -> Self {
        Lines {
            source: source.clone(),
            // About what one read brings (see STDIN_BUFFER).
            bytes: Vec::with_capacity(STDIN_BUFFER),
            ends: Vec::new(),
        }
    }

    /// Counts the line; a blank one goes no further.
    fn add(&mut self, stats: &mut ReadStats, _: &str, line: &[u8]) {
        stats.lines += 1;
        if !line.trim_ascii().is_empty() {
            self.append(stats.lines, line);
        }
    }

    fn len(&self) -> usize {
        Lines::len(self)
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

/// Reads `reader` to its end, calling `on_chunk` with the spans of the
/// good lines (or the lines, see [`Gather`]). Lines are read where the
/// reader buffered them (only a line split between two reads is copied),
/// and handed on in chunks of up to [`CHUNK_SPANS`], each as soon as the
/// lines read so far are taken: a slow source is not held back, and a fast
/// one is not handed on span by span (a send to another thread per line
/// cost more than parsing it).
pub fn read_to_end<G: Gather>(
    source: &str,
    mut reader: impl BufRead,
    mut on_chunk: impl FnMut(G),
) -> std::io::Result<ReadStats> {
    let mut stats = ReadStats::default();
    let name: Arc<str> = source.into();
    // The start of a line whose end has not been read yet.
    let mut split: Vec<u8> = Vec::new();
    let mut chunk = G::new(&name);
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            // The end: a last line without its newline still counts.
            if !split.is_empty() {
                chunk.add(&mut stats, source, &split);
            }
            if !chunk.is_empty() {
                on_chunk(chunk);
            }
            return Ok(stats);
        }
        let mut used = 0;
        if !split.is_empty() {
            let end = memchr::memchr(b'\n', buf).map_or(buf.len(), |nl| nl + 1);
            split.extend_from_slice(&buf[..end]);
            used = end;
            if split.ends_with(b"\n") {
                chunk.add(&mut stats, source, &split);
                split.clear();
            }
        }
        used += stats.whole_lines(source, &buf[used..], &mut chunk, CHUNK_SPANS);
        if chunk.len() < CHUNK_SPANS {
            // What is left has no newline: the start of a line.
            split.extend_from_slice(&buf[used..]);
            used = buf.len();
        }
        reader.consume(used);
        if !chunk.is_empty() {
            on_chunk(std::mem::replace(&mut chunk, G::new(&name)));
        }
    }
}

/// Reads the file at `path` from byte `start` to its end, then follows it as
/// it grows (like `tail -F`: a truncated file is read again from the start)
/// until `stop`. A last line without its newline waits for it. `on_chunk`
/// gets the spans (or lines, see [`Gather`]) of each chunk read, with the
/// offset just past their last line (where to resume).
pub fn follow<G: Gather>(
    path: &str,
    start: u64,
    stop: Arc<AtomicBool>,
    poll: Duration,
    mut on_chunk: impl FnMut(G, u64),
) -> std::io::Result<ReadStats> {
    let mut stats = ReadStats::default();
    let name: Arc<str> = path.into();
    let mut file = std::fs::File::open(path)?;
    let mut offset: u64 = start;
    let mut pending: Vec<u8> = Vec::new();
    let mut read = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(offset);
        if len < offset {
            tracing::info!(path, "file was truncated; reading from the start");
            file = std::fs::File::open(path)?;
            offset = 0;
            pending.clear();
        }
        file.seek(SeekFrom::Start(offset))?;
        let n = file.read(&mut read)?;
        if n == 0 {
            std::thread::sleep(poll);
            continue;
        }
        offset += n as u64;
        pending.extend_from_slice(&read[..n]);
        let mut chunk = G::new(&name);
        let start = stats.whole_lines(path, &pending, &mut chunk, usize::MAX);
        pending.drain(..start);
        if !chunk.is_empty() {
            on_chunk(chunk, offset - pending.len() as u64);
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
        let stats = read_to_end("mem", input.as_bytes(), |s: Vec<Span>| spans += s.len()).unwrap();
        assert_eq!(spans, 2);
        assert_eq!((stats.lines, stats.failed, stats.spans), (4, 1, 2));
        assert_eq!(stats.errors[0].line, 2);
        assert!(stats.errors[0].to_string().starts_with("mem:2: "));
    }

    /// Span line `i`: named `s{i}`, with span id `i + 1`.
    fn line(i: usize) -> String {
        format!(
            r#"{{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"{:016x}","name":"s{i}","start_time_unix_nano":1,"end_time_unix_nano":2}}"#,
            i + 1
        )
    }

    /// Whatever the reader's buffer size (lines split across reads, a
    /// buffer smaller than a line), every line is read once, in order, with
    /// the right numbers; chunks stay within `CHUNK_SPANS`; a last line
    /// without its newline counts.
    #[test]
    fn lines_split_between_reads_and_chunks() {
        let n = CHUNK_SPANS * 2 + 7;
        let mut input: String = (0..n).map(|i| line(i) + "\n").collect();
        input.push_str("{broken\n");
        input.push_str(&line(n)); // no newline at the end
        for capacity in [1, 7, 150, 4096, 1 << 20] {
            let reader = std::io::BufReader::with_capacity(capacity, input.as_bytes());
            let mut names = Vec::new();
            let mut chunks = Vec::new();
            let stats = read_to_end("mem", reader, |s: Vec<Span>| {
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
        read_to_end("mem", input.as_bytes(), |s: Vec<Span>| chunks.push(s.len())).unwrap();
        assert_eq!(chunks[..2], [CHUNK_SPANS, CHUNK_SPANS]);
    }

    /// Lines handed on unparsed, then parsed (by a shard), give the spans
    /// and the numbered failures that parsing where they are read gives.
    #[test]
    fn lines_parsed_later_read_as_lines_parsed_at_once() {
        let mut input = String::new();
        for i in 0..3000 {
            input += &line(i);
            input += match i % 700 {
                5 => "\n{broken\n",
                6 => "\n   \n",
                _ => "\n",
            };
        }
        input += &line(3000); // no newline at the end
        let mut spans = Vec::new();
        let at_once = read_to_end("mem", input.as_bytes(), |s: Vec<Span>| spans.extend(s)).unwrap();
        for capacity in [7, 4096, 1 << 20] {
            let reader = std::io::BufReader::with_capacity(capacity, input.as_bytes());
            let mut chunks = Vec::new();
            let read = read_to_end("mem", reader, |l: Lines| chunks.push(l)).unwrap();
            assert_eq!(read.lines, at_once.lines);
            assert!(chunks.iter().all(|c| (1..=CHUNK_SPANS).contains(&c.len())));
            let mut later = ReadStats::default();
            let mut parsed = Vec::new();
            for c in &chunks {
                assert_eq!(&**c.source(), "mem");
                c.parse(&mut later, &mut parsed);
            }
            let names = |s: &[Span]| s.iter().map(|s| s.name.to_string()).collect::<Vec<_>>();
            assert_eq!(names(&parsed), names(&spans), "buffer of {capacity}");
            assert_eq!((later.failed, later.spans), (at_once.failed, at_once.spans));
            let numbers =
                |s: &ReadStats| s.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>();
            assert_eq!(numbers(&later), numbers(&at_once));
        }
        assert_eq!(at_once.failed, 5);
    }
}
