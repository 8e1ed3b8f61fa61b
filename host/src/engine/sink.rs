//! Where exporter payloads are written. The host owns the I/O; plugins only
//! produce bytes (and references to host-rendered spans).

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

    /// Writes a whole payload.
    pub fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout(s) => {
                let mut lock = s.lock();
                lock.write_all(bytes)?;
                lock.flush()
            }
            Sink::File(f) => f.write_all(bytes),
            Sink::Discard => Ok(()),
        }
    }

    /// Flushes buffered bytes to the OS.
    pub fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(s) => s.flush(),
            Sink::File(f) => f.flush(),
            Sink::Discard => Ok(()),
        }
    }
}
