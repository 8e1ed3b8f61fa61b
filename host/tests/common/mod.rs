//! Starting and stopping `plume run` for end-to-end tests: loopback ports
//! only, a temporary folder per run.

#![allow(dead_code)] // each test binary uses part of it

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `plume run`.
pub struct Service {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
}

/// A test that fails midway must not leave plume running.
impl Drop for Service {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Service {
    /// Writes `pipeline` (where `{dir}` is the run's folder) and starts plume
    /// on it with `env`, then waits until every port in `ports` accepts.
    pub fn start(pipeline: &str, ports: &[u16], env: &[(&str, &str)]) -> Service {
        Service::start_in(tempfile::tempdir().unwrap(), pipeline, ports, env)
    }

    /// As `start`, in a folder the test prepared (e.g. with a pricing table).
    pub fn start_in(
        dir: tempfile::TempDir,
        pipeline: &str,
        ports: &[u16],
        env: &[(&str, &str)],
    ) -> Service {
        let path = dir.path().join("pipeline.toml");
        std::fs::write(
            &path,
            pipeline.replace("{dir}", &dir.path().display().to_string()),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_plume"))
            .arg("run")
            .arg(&path)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        for &port in ports {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "plume did not listen on {port}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Service {
            child: Some(child),
            dir,
        }
    }

    /// The pipeline file, to rewrite before a reload.
    pub fn pipeline_path(&self) -> std::path::PathBuf {
        self.dir.path().join("pipeline.toml")
    }

    /// Sends `signal` (e.g. `-HUP`) to plume.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        assert!(
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Peak resident memory of plume so far (VmHWM), in MiB; Linux only.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        plume::bench::peak_rss_mib(self.child.as_ref()?.id())
    }

    /// SIGKILL (a crash: nothing is flushed or drained); returns the run's
    /// folder, to start plume again on what it left.
    pub fn kill(mut self) -> tempfile::TempDir {
        self.signal("-KILL");
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// SIGTERM; asserts a clean exit and returns plume's output.
    pub fn stop(mut self) -> (Output, tempfile::TempDir) {
        self.signal("-TERM");
        let output = self
            .child
            .take()
            .expect("running")
            .wait_with_output()
            .unwrap();
        assert!(
            output.status.success(),
            "plume failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (output, dir)
    }
}

/// An HTTP client that returns error statuses instead of failing on them.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// GET `http://127.0.0.1:{port}{path}`: status and body.
pub fn get(port: u16, path: &str) -> (u16, String) {
    let mut r = agent()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .call()
        .unwrap();
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// POST `body` to `http://127.0.0.1:{port}{path}`, with a bearer `token` and
/// a `content-encoding` when given: status and body.
pub fn post(
    port: u16,
    path: &str,
    content_type: &str,
    token: Option<&str>,
    encoding: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let mut req = agent()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", content_type);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let mut resp = req.send(body).unwrap();
    (
        resp.status().as_u16(),
        resp.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// Builds the example Rust classifier (`examples/plugins/rust-classifier`)
/// for wasm32-wasip2 as its README says; returns the component's path.
pub fn build_rust_classifier() -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let target = root.join("target/examples");
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args([
            "build",
            "-p",
            "rust-classifier",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "plugin",
            "--target-dir",
        ])
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cargo build of the Rust classifier failed"
    );
    target.join("wasm32-wasip2/plugin/rust_classifier.wasm")
}

/// Polls `check` every 50 ms until it is true or `secs` pass.
pub fn wait_until(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
