//! plume: a WebAssembly plugin host for observability pipelines of LLM agents.
//!
//! The data path, one module each: [`ingest`] reads spans, [`span`] holds
//! them, [`engine`] runs batches through the plugins of [`plugin`] as declared
//! by [`config`], and the [`cli`] ties it together.

pub mod api;
pub mod bench;
pub mod cli;
pub mod config;
pub mod engine;
pub mod ingest;
pub mod plugin;
pub mod reload;
pub mod span;
pub mod wal;
