//! `builtin:tool-classifier`: every tool span gets `plume.tool.status`
//! (`success`, `error`, `timeout`, `rate_limited`, `invalid_args`); every
//! failed LLM or tool span gets `plume.error.category`; tool spans get
//! `plume.retry.count`.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `rules` | `[]` | extra rules, tried before the built-in ones (see below) |
//! | `builtin_rules` | `true` | false to use only `rules` |
//! | `retry_keys` | `["plume.retry.count", "http.request.resend_count", "retry.count", "gen_ai.tool.retry.count"]` | attributes that already hold a retry count |
//! | `retry_memory` | `100000` | tool calls remembered to count repeats across batches (the most recent, at least this many and at most twice), across the pipeline: with processor shards each shard's instance remembers its share of them |
//!
//! A rule: `{ category = "quota", pattern = "(?i)insufficient_quota", http_status = [402], tool_status = "rate_limited" }`.
//! It matches when any of its conditions holds: `pattern` (a regular
//! expression over the error text: `error.type`, the exception event's type and
//! message, and the status message), `error_type` (a regular expression over
//! `error.type` and the exception type only), or `http_status`. `tool_status`
//! sets the tool status for that category (default: `rate_limited` for
//! `rate_limit`, `timeout` for `timeout`, `invalid_args` for `invalid_args`,
//! `error` otherwise).
//!
//! A span failed when its status is `error`, its HTTP status is 400 or more,
//! `error.type` is set, it has an `exception` event, or OpenLLMetry's
//! `gen_ai.task.status` is `failure`. Retries: a retry attribute wins;
//! otherwise the n-th call of the same tool with the same arguments under the
//! same parent span counts n-1 retries.

mod rules;

use plume_sdk::bound::Recent;
use plume_sdk::hash::Seeded;
use plume_sdk::processor::{Guest, export_processor};
use plume_sdk::types::{Batch, BatchResult, Edits, EventAttribute, Field, Manifest};
use plume_sdk::{Rows, ValueRef};
use rules::{Rule, RuleConfig};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::HashMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    rules: Vec<RuleConfig>,
    #[serde(default = "yes")]
    builtin_rules: bool,
    #[serde(default = "default_retry_keys")]
    retry_keys: Vec<String>,
    #[serde(default = "default_retry_memory")]
    retry_memory: usize,
}

fn yes() -> bool {
    true
}
fn default_retry_keys() -> Vec<String> {
    [
        "plume.retry.count",
        "http.request.resend_count",
        "retry.count",
        "gen_ai.tool.retry.count",
    ]
    .map(String::from)
    .to_vec()
}
fn default_retry_memory() -> usize {
    100_000
}

/// Fixed reads, then the retry keys.
mod read {
    pub const OPERATION: usize = 0;
    pub const TOOL_NAME: usize = 1;
    pub const MODEL: usize = 2;
    pub const STATUS: usize = 3;
    pub const STATUS_MESSAGE: usize = 4;
    pub const ERROR_TYPE: usize = 5;
    pub const HTTP_STATUS: usize = 6;
    pub const EXCEPTION_TYPE: usize = 7;
    pub const EXCEPTION_MESSAGE: usize = 8;
    pub const TASK_STATUS: usize = 9;
    pub const TRACE: usize = 10;
    pub const PARENT: usize = 11;
    pub const ARGUMENTS: usize = 12;
    pub const START: usize = 13;
    pub const HTTP_STATUS_OLD: usize = 14;
    pub const FIXED: usize = 15;
}

mod slot {
    pub const TOOL_STATUS: u32 = 0;
    pub const CATEGORY: u32 = 1;
    pub const RETRIES: u32 = 2;
}

const LLM_OPERATIONS: &[&str] = &[
    "chat",
    "text_completion",
    "generate_content",
    "embeddings",
    "completion",
];

struct State {
    rules: Vec<Rule>,
    matches: RuleMemo,
    retry_keys: usize,
    /// Calls seen per (trace, parent, tool, arguments), hashed (arguments can
    /// be kilobytes): the last `retry_memory` at least.
    seen: Recent<u64, u32>,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// What one span is, as far as this plugin cares.
#[derive(Debug, PartialEq)]
pub struct Verdict {
    pub tool_status: Option<&'static str>,
    pub category: Option<String>,
}

fn text(v: &ValueRef<'_>) -> Option<String> {
    match *v {
        ValueRef::Str(s) => Some(s.to_string()),
        ValueRef::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Classifies one row (no retry logic).
/// Distinct failures whose matching rule is remembered, at most; the memory
/// is emptied when full.
const RULE_MEMO: usize = 1024;

/// The first rule each failure seen matched (by its error types, its text,
/// its HTTP status and whether it is a tool call). The rules are regular
/// expressions run over the error text, ~50,000 instructions for a short
/// message through the built-in rules (regex-lite simulates the NFA byte by
/// byte), and a failing dependency repeats the same few messages.
#[derive(Default)]
pub struct RuleMemo {
    seen: HashMap<Failure, Option<usize>, Seeded>,
}

/// What the rules see of a failure: tool call or not, HTTP status, error
/// types, all error text.
type Failure = (bool, Option<i64>, String, String);

impl RuleMemo {
    /// The index of the first rule in `rules` that matches.
    fn first_match(
        &mut self,
        rules: &[Rule],
        types: String,
        all: String,
        http: Option<i64>,
        is_tool: bool,
    ) -> Option<usize> {
        let key = (is_tool, http, types, all);
        if let Some(&found) = self.seen.get(&key) {
            return found;
        }
        let found = rules
            .iter()
            .position(|r| r.matches(&key.2, &key.3, http, is_tool));
        if self.seen.len() >= RULE_MEMO {
            self.seen.clear();
        }
        self.seen.insert(key, found);
        found
    }
}

/// A span's tool status (tool calls) and error category (failed calls).
pub fn classify(rules: &[Rule], memo: &mut RuleMemo, v: &[ValueRef<'_>]) -> Verdict {
    let op = v[read::OPERATION].as_str().unwrap_or_default();
    let is_tool = op == "execute_tool" || v[read::TOOL_NAME].is_present();
    let is_llm = !is_tool && (LLM_OPERATIONS.contains(&op) || v[read::MODEL].is_present());
    if !is_tool && !is_llm {
        return Verdict {
            tool_status: None,
            category: None,
        };
    }
    let http = v[read::HTTP_STATUS]
        .as_i64()
        .or_else(|| v[read::HTTP_STATUS_OLD].as_i64());
    let failed = v[read::STATUS].as_str() == Some("error")
        || http.is_some_and(|h| h >= 400)
        || v[read::ERROR_TYPE].is_present()
        || v[read::EXCEPTION_TYPE].is_present()
        || v[read::TASK_STATUS]
            .as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("failure"));
    if !failed {
        return Verdict {
            tool_status: is_tool.then_some("success"),
            category: None,
        };
    }
    let types: Vec<String> = [read::ERROR_TYPE, read::EXCEPTION_TYPE]
        .iter()
        .filter_map(|&i| text(&v[i]))
        .collect();
    let mut all = types.clone();
    all.extend(
        [read::EXCEPTION_MESSAGE, read::STATUS_MESSAGE]
            .iter()
            .filter_map(|&i| text(&v[i])),
    );
    let types = types.join(" | ");
    let all = all.join(" | ");
    let rule = memo
        .first_match(rules, types, all, http, is_tool)
        .map(|i| &rules[i]);
    let (category, tool_status) = match rule {
        Some(r) => (r.category.clone(), r.tool_status()),
        None => ("unknown".to_string(), "error"),
    };
    Verdict {
        tool_status: is_tool.then_some(tool_status),
        category: Some(category),
    }
}

impl State {
    /// The retry count of a tool call: from an attribute, or its rank among
    /// identical calls under the same parent.
    fn retries(&mut self, v: &[ValueRef<'_>]) -> u32 {
        for i in 0..self.retry_keys {
            if let Some(n) = v[read::FIXED + i].as_i64() {
                return n.max(0) as u32;
            }
        }
        let key = {
            use std::hash::{Hash, Hasher};
            let mut h = plume_sdk::hash::fixed();
            for i in [read::TRACE, read::PARENT, read::TOOL_NAME, read::ARGUMENTS] {
                match v[i] {
                    ValueRef::Str(s) | ValueRef::Json(s) => s.hash(&mut h),
                    _ => "".hash(&mut h),
                }
            }
            h.finish()
        };
        match self.seen.get_mut_or_insert(key, 0) {
            Some(n) => {
                *n += 1;
                *n
            }
            None => 0,
        }
    }
}

struct Classifier;

impl Guest for Classifier {
    fn init(config: String) -> Result<Manifest, String> {
        let config: Config = plume_sdk::parse_config(&config)?;
        let mut rules = Vec::new();
        for (i, r) in config.rules.into_iter().enumerate() {
            rules.push(Rule::new(r).map_err(|e| format!("config.rules[{i}]: {e}"))?);
        }
        if config.builtin_rules {
            rules.extend(rules::builtin());
        }
        let attr = |k: &str| Field::Attribute(k.to_string());
        let exception = |k: &str| {
            Field::EventAttribute(EventAttribute {
                event: "exception".into(),
                key: k.into(),
            })
        };
        let mut reads = vec![
            attr("gen_ai.operation.name"),
            attr("gen_ai.tool.name"),
            attr("gen_ai.request.model"),
            Field::StatusCode,
            Field::StatusMessage,
            attr("error.type"),
            attr("http.response.status_code"),
            exception("exception.type"),
            exception("exception.message"),
            attr("gen_ai.task.status"),
            Field::TraceId,
            Field::ParentSpanId,
            attr("gen_ai.tool.call.arguments"),
            Field::StartTime,
            attr("http.status_code"),
        ];
        let retry_keys = config.retry_keys.len();
        reads.extend(config.retry_keys.iter().map(|k| attr(k)));
        STATE.with(|s| {
            *s.borrow_mut() = Some(State {
                rules,
                matches: RuleMemo::default(),
                retry_keys,
                // Each shard's instance remembers the calls of its traces.
                seen: Recent::new(plume_sdk::share_of(
                    config.retry_memory.max(1),
                    plume_sdk::instances(),
                )),
            })
        });
        Ok(Manifest {
            reads,
            writes: vec![
                "plume.tool.status".into(),
                "plume.error.category".into(),
                "plume.retry.count".into(),
            ],
            // Only spans that are tool or LLM calls are sent.
            require_any: vec![
                read::OPERATION as u32,
                read::TOOL_NAME as u32,
                read::MODEL as u32,
            ],
            sparse: true,
        })
    }

    fn process(batch: Batch) -> Result<BatchResult, String> {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let state = s.as_mut().ok_or("process before init")?;
            let width = read::FIXED + state.retry_keys;
            let rows = Rows::new(&batch, width)?;
            // Repeats are ranked in start-time order, whatever the arrival order.
            let mut order: Vec<(u32, &[ValueRef<'_>])> = rows.iter().collect();
            order.sort_by_key(|(_, v)| v[read::START].as_i64().unwrap_or(0));
            let mut edits = Edits::with_capacity(batch.rows as usize * 3);
            for (row, v) in order {
                let verdict = classify(&state.rules, &mut state.matches, v);
                if let Some(status) = verdict.tool_status {
                    edits.set_str(row, slot::TOOL_STATUS, status);
                    let retries = state.retries(v);
                    edits.set_int(row, slot::RETRIES, retries as i64);
                }
                if let Some(c) = verdict.category {
                    edits.set_str(row, slot::CATEGORY, &c);
                }
            }
            Ok(BatchResult {
                edits,
                drops: vec![],
            })
        })
    }

    fn report() -> String {
        "{}".into()
    }
}

export_processor!(Classifier);

#[cfg(test)]
mod tests;
