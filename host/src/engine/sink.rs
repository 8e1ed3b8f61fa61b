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
    /// An HTTP endpoint: one POST per payload.
    Http(HttpSink),
    /// Nothing (benchmarks).
    Discard,
}

/// A URL that receives each payload as a POST.
pub struct HttpSink {
    url: String,
    headers: Vec<(String, String)>,
    content_type: String,
    agent: ureq::Agent,
}

impl HttpSink {
    /// A sink for `url`; fails on a URL that is not http(s).
    pub fn new(url: &str, headers: Vec<(String, String)>, content_type: &str) -> Result<HttpSink> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("sink URL must start with http:// or https://, got {url:?}");
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Ok(HttpSink {
            url: url.to_string(),
            headers,
            content_type: content_type.to_string(),
            agent,
        })
    }

    fn post(&self, body: &[u8]) -> std::io::Result<()> {
        if body.is_empty() {
            return Ok(());
        }
        let mut req = self
            .agent
            .post(&self.url)
            .header("content-type", &self.content_type);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let resp = req.send(body).map_err(std::io::Error::other)?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "{} answered HTTP {status}",
                self.url
            )))
        }
    }
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
            Sink::Http(h) => h.post(bytes),
            Sink::Discard => Ok(()),
        }
    }

    /// True for sinks that take one request per payload.
    pub fn is_http(&self) -> bool {
        matches!(self, Sink::Http(_))
    }

    /// Flushes buffered bytes to the OS.
    pub fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(s) => s.flush(),
            Sink::File(f) => f.flush(),
            Sink::Http(_) | Sink::Discard => Ok(()),
        }
    }
}
