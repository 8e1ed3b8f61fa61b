//! An append-only log of records in segment files, with a checkpoint.
//!
//! Records are written once, read back only after a crash, and released in
//! order, which is all a log of segment files has to do; an embedded B-tree
//! store would write each record twice (its own journal, then its pages) and
//! reclaim space page by page instead of by deleting whole files.
//!
//! On disk, in the log's folder:
//! - `<first seq, 20 digits>.wal`: segments, each a run of frames
//!   `len u32 | crc32 u32 | seq u64 | spans u32 | payload` (little endian;
//!   the CRC covers seq, spans and payload);
//! - `checkpoint.json`: the first sequence number still needed, and the
//!   source offsets recorded with it; replaced atomically (write, fsync, rename);
//! - `LOCK`: held while a process uses the folder.
//!
//! A torn frame at the end of the newest segment (a crash in the middle of a
//! write) is cut off when the log is opened; a frame that fails its CRC
//! anywhere else ends the readable part of its segment, and is reported.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

const HEADER: usize = 4 + 4 + 8 + 4;
/// A frame longer than this is corruption, not a record.
const MAX_RECORD: u32 = 256 * 1024 * 1024;

/// What the checkpoint file holds.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    /// Records below this sequence number are released (delivered).
    pub keep_from: u64,
    /// Byte offsets reached in followed files (JSONL sources), by path.
    #[serde(default)]
    pub sources: BTreeMap<String, u64>,
}

/// A record read back when the log is opened.
#[derive(Debug)]
pub struct Record {
    /// Its sequence number.
    pub seq: u64,
    /// Spans in the payload, as counted when it was written.
    pub spans: u32,
    /// The payload.
    pub payload: Vec<u8>,
}

/// What opening the log found besides the records.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Recovery {
    /// Records handed back (not released before the log was closed).
    pub records: u64,
    /// Bytes of a torn frame cut off the end of the newest segment.
    pub torn_bytes: u64,
    /// Segments whose readable part ended at a damaged frame.
    pub damaged_segments: u64,
}

struct Segment {
    first_seq: u64,
    path: PathBuf,
    bytes: u64,
    records: u64,
    spans: u64,
}

/// An open log. One writer; not shared between processes (see `LOCK`).
pub struct Log {
    dir: PathBuf,
    /// Oldest first; the last one is appended to.
    segments: VecDeque<Segment>,
    active: File,
    next_seq: u64,
    checkpoint: Checkpoint,
    segment_bytes: u64,
    _lock: File,
    /// The frame being written, reused: appends are the log's hot path.
    frame: Vec<u8>,
}

impl Log {
    /// Opens (or creates) the log in `dir`, calling `unreleased` with every
    /// record not released yet, oldest first.
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        mut unreleased: impl FnMut(Record),
    ) -> Result<(Log, Checkpoint, Recovery)> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the log folder {}", dir.display()))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))
            .with_context(|| format!("cannot open {}", dir.join("LOCK").display()))?;
        if lock.try_lock().is_err() {
            bail!(
                "{} is in use by another plume process (one log per process)",
                dir.display()
            );
        }
        let checkpoint = read_checkpoint(dir)?;
        let mut paths: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let path = e.path();
                let name = path.file_name()?.to_str()?;
                let seq = name.strip_suffix(".wal")?.parse().ok()?;
                Some((seq, path))
            })
            .collect();
        paths.sort();

        let mut recovery = Recovery::default();
        let mut segments = VecDeque::new();
        let mut next_seq = checkpoint.keep_from.max(1);
        let last = paths.len().saturating_sub(1);
        for (i, (first_seq, path)) in paths.into_iter().enumerate() {
            let scan = scan_segment(&path, checkpoint.keep_from, &mut |r| {
                recovery.records += 1;
                unreleased(r)
            })?;
            if scan.damaged {
                if i == last {
                    // A crash mid-write: cut the torn frame off.
                    let file = OpenOptions::new().write(true).open(&path)?;
                    file.set_len(scan.valid_bytes)?;
                    file.sync_all()?;
                    recovery.torn_bytes += scan.file_bytes - scan.valid_bytes;
                } else {
                    recovery.damaged_segments += 1;
                    tracing::error!(segment = %path.display(), "damaged frame: the rest of this log segment is unreadable");
                }
            }
            if let Some(last_seq) = scan.last_seq {
                next_seq = next_seq.max(last_seq + 1);
            }
            segments.push_back(Segment {
                first_seq,
                path,
                bytes: scan.valid_bytes,
                records: scan.records,
                spans: scan.spans,
            });
        }
        // Append to a fresh segment: what was there stays as it was read.
        let active = match segments.back() {
            Some(s) if s.records == 0 && s.first_seq == next_seq => open_append(&s.path)?,
            _ => {
                let seg = new_segment(dir, next_seq)?;
                let file = open_append(&seg.path)?;
                segments.push_back(seg);
                file
            }
        };
        let mut log = Log {
            dir: dir.to_path_buf(),
            segments,
            active,
            next_seq,
            checkpoint: checkpoint.clone(),
            segment_bytes: segment_bytes.max(4096),
            _lock: lock,
            frame: Vec::new(),
        };
        log.delete_released()?;
        Ok((log, checkpoint, recovery))
    }

    /// Appends a record of `spans` spans; returns its sequence number. Not
    /// durable until [`Log::sync`] (or the OS writes it back).
    pub fn append(&mut self, spans: u32, payload: &[u8]) -> std::io::Result<u64> {
        let needed = (HEADER + payload.len()) as u64;
        let active = self.segments.back().map_or(0, |s| s.bytes);
        if active > 0 && active + needed > self.segment_bytes {
            self.roll()?;
        }
        let seq = self.next_seq;
        let frame = &mut self.frame;
        frame.clear();
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(&seq.to_le_bytes());
        frame.extend_from_slice(&spans.to_le_bytes());
        frame.extend_from_slice(payload);
        let crc = crc32fast::hash(&frame[8..]);
        frame[4..8].copy_from_slice(&crc.to_le_bytes());
        if let Err(e) = self.active.write_all(&self.frame) {
            // Cut a partial frame off (a full disk, say), so that records
            // appended later are not hidden behind it when the log is read.
            let _ = self
                .active
                .set_len(self.segments.back().map_or(0, |s| s.bytes));
            return Err(e);
        }
        self.next_seq += 1;
        if let Some(s) = self.segments.back_mut() {
            s.bytes += needed;
            s.records += 1;
            s.spans += u64::from(spans);
        }
        Ok(seq)
    }

    /// Makes every appended record durable (fsync).
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.active.sync_data()
    }

    /// Releases every record below `keep_from` and records `sources`; whole
    /// segments that hold only released records are deleted.
    pub fn release(
        &mut self,
        keep_from: u64,
        sources: &BTreeMap<String, u64>,
    ) -> std::io::Result<()> {
        let keep_from = keep_from.min(self.next_seq);
        if keep_from <= self.checkpoint.keep_from && *sources == self.checkpoint.sources {
            return Ok(());
        }
        self.checkpoint.keep_from = self.checkpoint.keep_from.max(keep_from);
        self.checkpoint.sources.clone_from(sources);
        write_checkpoint(&self.dir, &self.checkpoint)?;
        self.delete_released()
    }

    /// Deletes the oldest segment that is not being appended to, released or
    /// not; returns the records and spans it held. For a bounded log that
    /// must make room.
    pub fn drop_oldest(&mut self) -> std::io::Result<Option<(u64, u64)>> {
        if self.segments.len() < 2 {
            return Ok(None);
        }
        let Some(seg) = self.segments.pop_front() else {
            return Ok(None);
        };
        std::fs::remove_file(&seg.path)?;
        let next = self.segments.front().map_or(self.next_seq, |s| s.first_seq);
        let lost_from = seg.first_seq.max(self.checkpoint.keep_from);
        self.checkpoint.keep_from = self.checkpoint.keep_from.max(next);
        write_checkpoint(&self.dir, &self.checkpoint)?;
        // Records of the segment that were already released were not lost.
        let lost = next.saturating_sub(lost_from).min(seg.records);
        let spans = (seg.spans * lost).checked_div(seg.records).unwrap_or(0);
        Ok(Some((lost, spans)))
    }

    /// Bytes of all segments on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The first sequence number still needed.
    pub fn keep_from(&self) -> u64 {
        self.checkpoint.keep_from
    }

    /// Segment files on disk.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn roll(&mut self) -> std::io::Result<()> {
        self.active.sync_data()?;
        let seg = new_segment(&self.dir, self.next_seq)?;
        self.active = open_append(&seg.path)?;
        self.segments.push_back(seg);
        sync_dir(&self.dir)
    }

    /// Deletes segments whose records are all released (never the active one).
    fn delete_released(&mut self) -> std::io::Result<()> {
        while self.segments.len() >= 2 && self.segments[1].first_seq <= self.checkpoint.keep_from {
            if let Some(seg) = self.segments.pop_front() {
                std::fs::remove_file(&seg.path)?;
            }
        }
        Ok(())
    }
}

struct Scan {
    valid_bytes: u64,
    file_bytes: u64,
    records: u64,
    spans: u64,
    last_seq: Option<u64>,
    damaged: bool,
}

/// Reads the frames of one segment, handing back those at or after `keep_from`.
fn scan_segment(path: &Path, keep_from: u64, out: &mut impl FnMut(Record)) -> Result<Scan> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file_bytes = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut scan = Scan {
        valid_bytes: 0,
        file_bytes,
        records: 0,
        spans: 0,
        last_seq: None,
        damaged: false,
    };
    let mut header = [0u8; HEADER];
    loop {
        match read_full(&mut reader, &mut header)? {
            0 => break,
            n if n < HEADER => {
                scan.damaged = true;
                break;
            }
            _ => {}
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_RECORD || scan.valid_bytes + (HEADER as u64) + u64::from(len) > file_bytes {
            scan.damaged = true;
            break;
        }
        let mut payload = vec![0u8; len as usize];
        if read_full(&mut reader, &mut payload)? < payload.len() {
            scan.damaged = true;
            break;
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header[8..]);
        hasher.update(&payload);
        if hasher.finalize() != crc {
            scan.damaged = true;
            break;
        }
        let seq = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
        let spans = u32::from_le_bytes(header[16..20].try_into().unwrap_or_default());
        scan.valid_bytes += (HEADER + payload.len()) as u64;
        scan.records += 1;
        scan.spans += u64::from(spans);
        scan.last_seq = Some(seq);
        if seq >= keep_from {
            out(Record {
                seq,
                spans,
                payload,
            });
        }
    }
    Ok(scan)
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn new_segment(dir: &Path, first_seq: u64) -> std::io::Result<Segment> {
    let path = dir.join(format!("{first_seq:020}.wal"));
    File::create(&path)?;
    Ok(Segment {
        first_seq,
        path,
        bytes: 0,
        records: 0,
        spans: 0,
    })
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().append(true).open(path)
}

fn read_checkpoint(dir: &Path) -> Result<Checkpoint> {
    let path = dir.join("checkpoint.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a plume checkpoint", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Checkpoint::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes the checkpoint so that a crash leaves either the old or the new one.
fn write_checkpoint(dir: &Path, checkpoint: &Checkpoint) -> std::io::Result<()> {
    let tmp = dir.join("checkpoint.json.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(checkpoint).unwrap_or_default())?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join("checkpoint.json"))?;
    sync_dir(dir)
}

/// Makes renames and new files in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> (Log, Vec<(u64, Vec<u8>)>, Recovery) {
        let mut records = Vec::new();
        let (log, _, recovery) =
            Log::open(dir, 4096, |r| records.push((r.seq, r.payload))).expect("open");
        (log, records, recovery)
    }

    fn payload(i: u64) -> Vec<u8> {
        format!("record {i} ").repeat(20).into_bytes()
    }

    #[test]
    fn records_come_back_until_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, records, _) = open(dir.path());
        assert!(records.is_empty());
        let seqs: Vec<u64> = (0..100)
            .map(|i| log.append(1, &payload(i)).expect("append"))
            .collect();
        assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
        log.sync().expect("sync");
        assert!(log.segment_count() > 1, "rolled over to new segments");
        log.release(41, &BTreeMap::new()).expect("release");
        drop(log);

        let (log, records, recovery) = open(dir.path());
        assert_eq!(records.len(), 60);
        assert_eq!(records[0], (41, payload(40)));
        assert_eq!(recovery.records, 60);
        assert_eq!(log.next_seq(), 101, "sequence numbers go on");
    }

    #[test]
    fn released_segments_are_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _, _) = open(dir.path());
        for i in 0..200 {
            log.append(1, &payload(i)).expect("append");
        }
        let before = log.segment_count();
        let bytes = log.bytes();
        log.release(201, &BTreeMap::new()).expect("release");
        assert_eq!(log.segment_count(), 1, "only the active segment stays");
        assert!(before > 5 && log.bytes() < bytes);
        let files = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "wal"))
            })
            .count();
        assert_eq!(files, 1);
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_log_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _, _) = open(dir.path());
        for i in 0..3 {
            log.append(2, &payload(i)).expect("append");
        }
        drop(log);
        // A crash in the middle of the fourth frame.
        let seg = dir.path().join(format!("{:020}.wal", 1));
        let mut f = OpenOptions::new().append(true).open(&seg).expect("seg");
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).expect("write");
        drop(f);

        let (mut log, records, recovery) = open(dir.path());
        assert_eq!(records.len(), 3);
        assert_eq!(recovery.torn_bytes, 7);
        assert_eq!(log.append(1, b"next").expect("append"), 4);
        drop(log);
        let (_, records, recovery) = open(dir.path());
        assert_eq!(records.len(), 4);
        assert_eq!(records[3], (4, b"next".to_vec()));
        assert_eq!(recovery.torn_bytes, 0);
    }

    #[test]
    fn a_flipped_bit_ends_the_segment_and_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _, _) = open(dir.path());
        for i in 0..40 {
            log.append(1, &payload(i)).expect("append");
        }
        assert!(log.segment_count() >= 3);
        drop(log);
        let first = dir.path().join(format!("{:020}.wal", 1));
        let mut bytes = std::fs::read(&first).expect("read");
        let frame = HEADER + payload(0).len();
        bytes[frame + HEADER + 3] ^= 0x20; // inside the second record's payload
        std::fs::write(&first, bytes).expect("write");

        let (_, records, recovery) = open(dir.path());
        assert_eq!(recovery.damaged_segments, 1);
        assert_eq!(records[0].0, 1);
        assert!(
            records.iter().all(|(seq, p)| *p == payload(seq - 1)),
            "no damaged record is handed back"
        );
        assert!(!records.iter().any(|(seq, _)| *seq == 2));
    }

    #[test]
    fn dropping_the_oldest_segment_counts_unreleased_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _, _) = open(dir.path());
        for i in 0..40 {
            log.append(3, &payload(i)).expect("append");
        }
        let first_of_second = log.segments[1].first_seq;
        log.release(3, &BTreeMap::new()).expect("release");
        let (records, spans) = log.drop_oldest().expect("drop").expect("a segment");
        assert_eq!(records, first_of_second - 3);
        assert_eq!(spans, records * 3);
        assert_eq!(log.keep_from(), first_of_second);
        drop(log);
        let (_, replayed, _) = open(dir.path());
        assert_eq!(replayed[0].0, first_of_second);
    }

    #[test]
    fn source_offsets_survive_in_the_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _, _) = open(dir.path());
        log.append(1, b"x").expect("append");
        let sources = BTreeMap::from([("agent.jsonl".to_string(), 1234)]);
        log.release(2, &sources).expect("release");
        drop(log);
        let (_, checkpoint, _) = Log::open(dir.path(), 4096, |_| {}).expect("open");
        assert_eq!(checkpoint.keep_from, 2);
        assert_eq!(checkpoint.sources, sources);
    }

    #[test]
    fn a_folder_is_used_by_one_process_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_log, _, _) = open(dir.path());
        let second = Log::open(dir.path(), 4096, |_| {});
        assert!(second.is_err_and(|e| e.to_string().contains("in use")));
    }
}
