//! Counts kept per pipeline entry: never silent about what was dropped,
//! failed or dead-lettered. Serialised into the report's `pipeline` section.

use serde::Serialize;
use std::collections::BTreeMap;

/// Counters of one processor, evaluator, router or exporter.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct EntryStats {
    /// Entry name.
    pub name: String,
    /// Spans that reached the entry.
    pub spans_in: u64,
    /// Spans it passed on (processors).
    pub spans_out: u64,
    /// Spans the plugin chose to drop.
    pub dropped_by_plugin: u64,
    /// Calls that failed, by cause (timeout, memory, trap, error, contract).
    pub errors: BTreeMap<&'static str, u64>,
    /// Spans passed on unchanged because the entry failed (`on_error = pass`).
    pub passed_on_error: u64,
    /// Spans dropped because the entry failed (`on_error = drop`).
    pub dropped_on_error: u64,
    /// Spans written to the dead-letter file (`on_error = dead-letter`).
    pub dead_lettered: u64,
    /// Spans exported (exporters).
    pub exported: u64,
    /// Bytes written (exporters).
    pub bytes: u64,
    /// Instances rebuilt after a trap.
    pub restarts: u64,
    /// Linear memory the plugin's instance has grown to, bytes (it never
    /// shrinks: the high-water mark of its state and batches).
    pub memory_bytes: u64,
    /// Time spent in the entry (projection, call, applying edits), ns.
    pub nanos: u64,
    /// Of `nanos`: building the projection (host).
    pub project_nanos: u64,
    /// Of `nanos`: applying the plugin's edits and drops (host). The rest is
    /// the call: lowering into the guest, the guest's work, lifting back.
    pub apply_nanos: u64,
    /// True while the crash-loop breaker keeps the plugin disabled.
    pub disabled: bool,
    /// Times the breaker disabled it.
    pub breaker_trips: u64,
    /// What a remote sink sent, retried, gave up and dropped (exporters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<super::delivery::DeliveryStats>,
}

impl EntryStats {
    /// Adds another instance's counters of the same entry (processor shards).
    pub fn absorb(&mut self, other: &EntryStats) {
        let EntryStats {
            name: _,
            spans_in,
            spans_out,
            dropped_by_plugin,
            errors,
            passed_on_error,
            dropped_on_error,
            dead_lettered,
            exported,
            bytes,
            restarts,
            memory_bytes,
            nanos,
            project_nanos,
            apply_nanos,
            disabled,
            breaker_trips,
            delivery: _,
        } = other;
        self.spans_in += spans_in;
        self.spans_out += spans_out;
        self.dropped_by_plugin += dropped_by_plugin;
        for (cause, n) in errors {
            *self.errors.entry(cause).or_default() += n;
        }
        self.passed_on_error += passed_on_error;
        self.dropped_on_error += dropped_on_error;
        self.dead_lettered += dead_lettered;
        self.exported += exported;
        self.bytes += bytes;
        self.restarts += restarts;
        self.memory_bytes += memory_bytes;
        self.nanos += nanos;
        self.project_nanos += project_nanos;
        self.apply_nanos += apply_nanos;
        self.disabled |= disabled;
        self.breaker_trips += breaker_trips;
    }
}

/// Counters of the whole run.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PipelineStats {
    /// Lines read from JSONL sources.
    pub lines_read: u64,
    /// Lines that could not be parsed.
    pub lines_failed: u64,
    /// Spans that entered the pipeline.
    pub spans_in: u64,
    /// Spans that reached the exporters.
    pub spans_out: u64,
    /// Processor stages, in order.
    pub stages: Vec<EntryStats>,
    /// Evaluators.
    pub evaluators: Vec<EntryStats>,
    /// Router.
    pub router: Option<EntryStats>,
    /// Exporters.
    pub exports: Vec<EntryStats>,
    /// The trace hold.
    pub hold: super::hold::HoldStats,
    /// The write-ahead log, when `[wal]` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal: Option<crate::wal::WalStats>,
}
