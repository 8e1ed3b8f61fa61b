//! `builtin:alert-rules`: the alerts agent operators ask for, in event time.
//! Each rule has defaults and can be tuned or turned off (`enabled = false`).
//!
//! | rule | fires when | keys (defaults) |
//! |---|---|---|
//! | `latency_p99` | a group's p99 over `window` is above `factor` x its p99 over the trailing `baseline` before it | `group_by` (`"gen_ai.request.model"`), `window` (`"5m"`), `baseline` (`"1h"`), `factor` (`3.0`), `min_count` (`20`) |
//! | `error_rate` | failed spans / spans of a group over `window` above `threshold` | `group_by` (`"gen_ai.request.model"`), `window` (`"5m"`), `threshold` (`0.05`), `min_count` (`20`) |
//! | `truncation_rate` | `plume.truncated` spans / LLM spans over `window` above `threshold` | `window` (`"5m"`), `threshold` (`0.1`), `min_count` (`20`) |
//! | `agent_loop` | the same tool called `calls` times in one trace | `calls` (`10`), `memory` (`100000` traces) |
//! | `invalid_args_after_prompt_change` | tool calls with `plume.tool.status = invalid_args` rise for a new prompt version against the previous one | `version_key` (`"gen_ai.prompt.version"`), `factor` (`2.0`), `min_count` (`20`) |
//! | `quality_regression` | the mean of an eval score drops for a new prompt version against the previous one | `version_key`, `score_key` (`"gen_ai.evaluation.score"`), `drop` (`0.1`), `min_count` (`20`) |
//!
//! Config: `{ error_rate = { threshold = 0.02 }, agent_loop = { enabled = false } }`.
//! Alerts clear (a resolved notice) when their condition no longer holds.

mod rules;

use plume_sdk::Rows;
use plume_sdk::evaluator::{Guest, export_evaluator};
use plume_sdk::types::{Alert, Batch, Field, Manifest};
use rules::{Config, Observation, Rules};
use std::cell::RefCell;

thread_local! {
    static STATE: RefCell<Option<Rules>> = const { RefCell::new(None) };
}

/// The reads, in `Observation` order.
fn reads(config: &Config) -> Vec<Field> {
    let attr = |k: &str| Field::Attribute(k.to_string());
    vec![
        attr(&config.latency_p99.group_by),
        attr(&config.error_rate.group_by),
        Field::StatusCode,
        Field::Duration,
        Field::EndTime,
        attr("gen_ai.operation.name"),
        attr("plume.truncated"),
        Field::TraceId,
        attr("gen_ai.tool.name"),
        attr("plume.tool.status"),
        attr(&config.invalid_args_after_prompt_change.version_key),
        attr(&config.quality_regression.score_key),
        attr(&config.quality_regression.version_key),
    ]
}

struct AlertRules;

impl Guest for AlertRules {
    fn init(config: String) -> Result<Manifest, String> {
        let config: Config = plume_sdk::parse_config(&config)?;
        let reads = reads(&config);
        let rules = Rules::new(config)?;
        STATE.with(|s| *s.borrow_mut() = Some(rules));
        Ok(Manifest {
            reads,
            writes: vec![],
            require_any: vec![5, 8],
            sparse: false,
        })
    }

    fn observe(batch: Batch) -> Result<(), String> {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let rules = s.as_mut().ok_or("observe before init")?;
            for (_, v) in Rows::new(&batch, 13)?.iter() {
                let text = |i: usize| {
                    v[i].as_str()
                        .map(str::to_string)
                        .or_else(|| v[i].as_f64().map(|f| f.to_string()))
                };
                rules.observe(Observation {
                    latency_group: text(0),
                    error_group: text(1),
                    failed: v[2].as_str() == Some("error"),
                    duration_ns: v[3].as_i64().unwrap_or(0).max(0) as u64,
                    at: v[4].as_i64().unwrap_or(0).max(0) as u64,
                    operation: v[5].as_str().unwrap_or_default().to_string(),
                    truncated: v[6].as_bool() == Some(true),
                    trace: v[7].as_str().unwrap_or_default().to_string(),
                    tool: v[8].as_str().map(str::to_string),
                    invalid_args: v[9].as_str() == Some("invalid_args"),
                    args_version: text(10),
                    score: v[11].as_f64(),
                    score_version: text(12),
                });
            }
            Ok(())
        })
    }

    fn tick(now: u64) -> Result<Vec<Alert>, String> {
        STATE.with(|s| {
            Ok(s.borrow_mut()
                .as_mut()
                .map(|r| r.tick(now))
                .unwrap_or_default())
        })
    }

    fn report() -> String {
        "{}".into()
    }

    fn snapshot() -> Vec<u8> {
        Vec::new()
    }

    fn restore(_state: Vec<u8>) -> Result<(), String> {
        // Windows refill from traffic; baselines restart after a reload.
        Ok(())
    }
}

export_evaluator!(AlertRules);
