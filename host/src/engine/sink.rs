//! Where exporter payloads are written. The host owns the I/O; plugins only
//! produce bytes (and references to host-rendered spans).

use super::delivery::Delivery;
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// An open destination.
pub enum Sink {
    /// Standard output.
    Stdout(std::io::Stdout),
    /// An append-only file, rotated by size.
    File(FileSink),
    /// An HTTP or gRPC endpoint, sent from a queue with retries.
    Remote(Delivery),
    /// Nothing (benchmarks).
    Discard,
}

/// A file appended to, and rotated (`path` -> `path.1` -> ... -> `path.keep`)
/// before it would pass `rotate_bytes`.
pub struct FileSink {
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes in the current file (including those still buffered).
    size: u64,
    rotate_bytes: u64,
    keep: u32,
}

impl FileSink {
    fn open(path: &Path, rotate_bytes: u64, keep: u32) -> Result<FileSink> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {} for appending", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(FileSink {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(256 * 1024, file),
            size,
            rotate_bytes,
            keep,
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let len = bytes.len() as u64;
        if self.rotate_bytes > 0 && self.size > 0 && self.size + len > self.rotate_bytes {
            self.rotate()?;
        }
        self.out.write_all(bytes)?;
        self.size += len;
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Shifts `path.N-1` to `path.N` down to `path` to `path.1`, dropping the
    /// oldest beyond `keep`, and starts an empty file.
    fn rotate(&mut self) -> std::io::Result<()> {
        // Synced before it is renamed: the write-ahead log may release spans
        // that are only in this file.
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(self.rotated(self.keep));
            for n in (1..self.keep).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.out = BufWriter::with_capacity(256 * 1024, file);
        self.size = 0;
        tracing::info!(path = %self.path.display(), "rotated");
        Ok(())
    }
}

impl Sink {
    /// Opens `path` (`-` = stdout) for appending, creating parent folders.
    pub fn open(path: &str) -> Result<Sink> {
        Sink::open_rotating(path, 0, 0)
    }

    /// Opens `path` for appending, rotated by size (`rotate_bytes` 0: never).
    pub fn open_rotating(path: &str, rotate_bytes: u64, keep: u32) -> Result<Sink> {
        if path == "-" {
            return Ok(Sink::Stdout(std::io::stdout()));
        }
        Ok(Sink::File(FileSink::open(
            Path::new(path),
            rotate_bytes,
            keep,
        )?))
    }

    /// Writes a whole payload carrying `spans` spans (0 for alerts), the
    /// lowest of which came from log record `seq` (0: none). A remote sink
    /// queues it: what happens next is in its delivery counters.
    pub fn write_all(&mut self, bytes: &[u8], spans: u64, seq: u64) -> std::io::Result<()> {
        match self {
            Sink::Stdout(s) => {
                let mut lock = s.lock();
                lock.write_all(bytes)?;
                lock.flush()
            }
            Sink::File(f) => f.write_all(bytes),
            Sink::Remote(d) => {
                d.send(bytes.to_vec(), spans, seq);
                Ok(())
            }
            Sink::Discard => Ok(()),
        }
    }

    /// True for sinks that take one request per payload.
    pub fn is_remote(&self) -> bool {
        matches!(self, Sink::Remote(_))
    }

    /// Flushes buffered bytes to the OS.
    pub fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(s) => s.flush(),
            Sink::File(f) => f.out.flush(),
            Sink::Remote(_) | Sink::Discard => Ok(()),
        }
    }

    /// Makes what was written durable (fsync); a no-op for other sinks.
    pub fn sync(&mut self) -> std::io::Result<()> {
        match self {
            Sink::File(f) => {
                f.out.flush()?;
                f.out.get_ref().sync_data()
            }
            Sink::Stdout(_) | Sink::Remote(_) | Sink::Discard => Ok(()),
        }
    }

    /// Flushes, and for a remote sink waits (up to its `drain_timeout`) until
    /// everything queued was sent or given up.
    pub fn drain(&mut self) -> std::io::Result<()> {
        if let Sink::Remote(d) = self {
            d.drain();
        }
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_between_payloads_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spans.jsonl");
        let mut sink = Sink::open_rotating(&path.display().to_string(), 25, 2).unwrap();
        for i in 0..10 {
            sink.write_all(format!("line {i:04}\n").as_bytes(), 1, 0)
                .unwrap(); // 10 bytes
        }
        sink.flush().unwrap();
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        let rotated = |n: u32| {
            let mut s = path.clone().into_os_string();
            s.push(format!(".{n}"));
            PathBuf::from(s)
        };
        // Two lines fit in 25 bytes: files of 2 lines, newest last.
        assert_eq!(read(path.clone()), "line 0008\nline 0009\n");
        assert_eq!(read(rotated(1)), "line 0006\nline 0007\n");
        assert_eq!(read(rotated(2)), "line 0004\nline 0005\n");
        assert!(!rotated(3).exists(), "older files removed");
    }

    #[test]
    fn a_file_that_is_already_large_rotates_on_the_first_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, "x".repeat(100)).unwrap();
        let mut sink = Sink::open_rotating(&path.display().to_string(), 50, 1).unwrap();
        sink.write_all(b"new\n", 1, 0).unwrap();
        sink.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
    }
}
