//! Where exporter payloads are written. The host owns the I/O; plugins only
//! produce bytes (and references to host-rendered spans).

use super::delivery::Delivery;
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

/// An open destination.
pub enum Sink {
    /// Standard output.
    Stdout(std::io::Stdout),
    /// An append-only file.
    File(BufWriter<File>),
    /// An HTTP or gRPC endpoint, sent from a queue with retries.
    Remote(Delivery),
    /// Nothing (benchmarks).
    Discard,
}

impl Sink {
    /// Opens `path` (`-` = stdout) for appending, creating parent folders.
    pub fn open(path: &str) -> Result<Sink> {
        if path == "-" {
            return Ok(Sink::Stdout(std::io::stdout()));
        }
        let path = Path::new(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {} for appending", path.display()))?;
        Ok(Sink::File(BufWriter::with_capacity(256 * 1024, file)))
    }

    /// Writes a whole payload carrying `spans` spans (0 for alerts). A remote
    /// sink queues it: what happens next is in its delivery counters.
    pub fn write_all(&mut self, bytes: &[u8], spans: u64) -> std::io::Result<()> {
        match self {
            Sink::Stdout(s) => {
                let mut lock = s.lock();
                lock.write_all(bytes)?;
                lock.flush()
            }
            Sink::File(f) => f.write_all(bytes),
            Sink::Remote(d) => {
                d.send(bytes.to_vec(), spans);
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
            Sink::File(f) => f.flush(),
            Sink::Remote(_) | Sink::Discard => Ok(()),
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
