//! Hot reload of the running service (SIGHUP, `POST /admin/reload`).
//!
//! The pipeline file is read and validated and every plugin of the new
//! pipeline is instantiated and initialised *before* anything changes; if any
//! of that fails, the running pipeline goes on and the error is returned. The
//! new engine then replaces the old one on the engine thread between two
//! batches ([`crate::engine::Engine::take_over`]): held spans move over, so no span is lost
//! or processed twice, and evaluators running unchanged code keep their state.
//! Plugin files are compiled again when their bytes changed, so a plugin or a
//! pricing table swapped on disk takes effect.
//!
//! Listen addresses, tokens, JSONL sources, batching and shards are fixed for the life
//! of the process: a reload that changes them says a restart is needed.

use crate::api::EngineMsg;
use crate::config::Pipeline;
use crate::engine::EngineOptions;
use crate::engine::shards::Plan;
use crate::plugin::runtime::Runtime;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// What a successful reload did.
#[derive(Debug, Serialize)]
pub struct Reloaded {
    /// The pipeline file read.
    pub pipeline: String,
    /// Evaluators whose state carried over.
    pub state_carried_over: Vec<String>,
    /// Settings that changed but take effect only after a restart.
    pub restart_needed_for: Vec<&'static str>,
}

/// Reloads the service's pipeline.
pub struct Reloader {
    /// The pipeline file; `None` is the embedded default.
    pub file: Option<PathBuf>,
    /// The runtime the engines are built on (compiled plugins are shared).
    pub runtime: Arc<Runtime>,
    /// The engine thread's queue.
    pub engine: mpsc::Sender<EngineMsg>,
    /// The pipeline running now.
    pub running: Mutex<Pipeline>,
    /// Processor shards running (fixed for the life of the process).
    pub shards: usize,
    /// One reload at a time.
    pub busy: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// Loads, builds and swaps in the pipeline; on any error the running
    /// pipeline is untouched and the error is returned.
    pub async fn reload(&self) -> Result<Reloaded, String> {
        let _one_at_a_time = self.busy.lock().await;
        let file = self.file.clone();
        let rt = self.runtime.clone();
        let shards = self.shards;
        let (pipeline, engine) = tokio::task::spawn_blocking(move || {
            let pipeline = crate::cli::load(file.as_deref()).map_err(|e| e.to_string())?;
            let engine = Plan::build(&pipeline, &rt, &EngineOptions::default(), shards)
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((pipeline, engine))
        })
        .await
        .map_err(|e| format!("reload failed: {e}"))??;
        let restart_needed_for = {
            let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            restart_needed(&running, &pipeline)
        };
        let (tx, rx) = oneshot::channel();
        self.engine
            .send(EngineMsg::Swap(Box::new(engine), tx))
            .await
            .map_err(|_| "the pipeline is shutting down".to_string())?;
        let state_carried_over = rx
            .await
            .map_err(|_| "the pipeline is shutting down".to_string())?;
        let name = pipeline.file.clone();
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = pipeline;
        for setting in &restart_needed_for {
            tracing::warn!("{setting} changed: it takes effect after a restart");
        }
        tracing::info!(pipeline = %name, carried = ?state_carried_over, "pipeline reloaded");
        Ok(Reloaded {
            pipeline: name,
            state_carried_over,
            restart_needed_for,
        })
    }
}

/// Settings fixed for the life of the process that differ.
fn restart_needed(old: &Pipeline, new: &Pipeline) -> Vec<&'static str> {
    let addr = |a: &Option<toml::Spanned<String>>| a.as_ref().map(|a| a.get_ref().clone());
    let mut out = Vec::new();
    if addr(&old.ingest.otlp_http) != addr(&new.ingest.otlp_http) {
        out.push("ingest.otlp_http");
    }
    if addr(&old.ingest.otlp_grpc) != addr(&new.ingest.otlp_grpc) {
        out.push("ingest.otlp_grpc");
    }
    if old.ingest.jsonl != new.ingest.jsonl {
        out.push("ingest.jsonl");
    }
    if old.ingest.token != new.ingest.token {
        out.push("ingest.token");
    }
    if old.ingest.max_body_bytes != new.ingest.max_body_bytes {
        out.push("ingest.max_body_bytes");
    }
    if old.ingest.max_queued_spans != new.ingest.max_queued_spans {
        out.push("ingest.max_queued_spans");
    }
    if old.api_listen != new.api_listen {
        out.push("api.listen");
    }
    if old.admin_token != new.admin_token {
        out.push("api.admin_token");
    }
    if (old.batch_max_spans, old.batch_max_wait_ms) != (new.batch_max_spans, new.batch_max_wait_ms)
    {
        out.push("batch");
    }
    if old.shards != new.shards {
        out.push("engine.shards");
    }
    if old.wal != new.wal {
        out.push("wal");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_settings_that_need_a_restart() {
        let parse = |t: &str| crate::config::parse("p.toml", t, |_| None).unwrap();
        let a =
            parse("[ingest]\notlp_http = \"127.0.0.1:4318\"\n[api]\nlisten = \"127.0.0.1:9464\"\n");
        let b = parse(
            "[ingest]\notlp_http = \"127.0.0.1:4319\"\n[api]\nlisten = \"127.0.0.1:9464\"\nadmin_token = \"x\"\n[batch]\nmax_spans = 10\n",
        );
        assert_eq!(
            restart_needed(&a, &b),
            ["ingest.otlp_http", "api.admin_token", "batch"]
        );
        assert!(restart_needed(&a, &a).is_empty());
    }
}
