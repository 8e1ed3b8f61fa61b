//! An example custom classifier, the kind a team writes for its own tools.
//!
//! Build:   cargo build -p rust-classifier --target wasm32-wasip2 --release
//! Use:     plugin = "target/wasm32-wasip2/release/rust_classifier.wasm"
//!
//! For every tool span it writes:
//! - `team.owner`: the team that owns the tool, from a prefix map in config
//!   (`owners = { "payments." = "payments-team" }`), else `"unowned"`;
//! - `team.error.kind` on failed tool calls: `business` when the error text
//!   matches one of `business_errors` (declined cards, insufficient funds:
//!   expected outcomes, not incidents), `upstream` for HTTP 5xx, `client` for
//!   HTTP 4xx, else `internal`;
//! - `team.tool.slow` (derived): true when the call took longer than `slow_ms`.

use plume_sdk::processor::{Guest, export_processor};
use plume_sdk::types::{Batch, BatchResult, Edits, EventAttribute, Field, Manifest, Value};
use plume_sdk::{Rows, ValueRef};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::BTreeMap;

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    owners: BTreeMap<String, String>,
    #[serde(default = "default_business_errors")]
    business_errors: Vec<String>,
    #[serde(default = "default_slow_ms")]
    slow_ms: i64,
}

fn default_business_errors() -> Vec<String> {
    vec![
        "card_declined".into(),
        "insufficient_funds".into(),
        "not allowed".into(),
    ]
}

fn default_slow_ms() -> i64 {
    2000
}

thread_local! {
    static CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
}

const TOOL: usize = 0;
const STATUS: usize = 1;
const HTTP: usize = 2;
const MESSAGE: usize = 3;
const STATUS_MESSAGE: usize = 4;
const DURATION: usize = 5;

/// The attributes written for one tool span: (slot, value).
pub(crate) fn classify(config: &Config, v: &[ValueRef<'_>]) -> Vec<(u32, Value)> {
    let Some(tool) = v[TOOL].as_str() else {
        return vec![];
    };
    let owner = config
        .owners
        .iter()
        .filter(|(prefix, _)| tool.starts_with(prefix.as_str()))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, team)| team.as_str())
        .unwrap_or("unowned");
    let mut out = vec![(0, Value::Str(owner.into()))];
    let http = v[HTTP].as_i64();
    if v[STATUS].as_str() == Some("error") || http.is_some_and(|h| h >= 400) {
        let text = format!(
            "{} {}",
            v[MESSAGE].as_str().unwrap_or_default(),
            v[STATUS_MESSAGE].as_str().unwrap_or_default()
        )
        .to_lowercase();
        let kind = if config
            .business_errors
            .iter()
            .any(|e| text.contains(&e.to_lowercase()))
        {
            "business"
        } else if http.is_some_and(|h| h >= 500) {
            "upstream"
        } else if http.is_some_and(|h| h >= 400) {
            "client"
        } else {
            "internal"
        };
        out.push((1, Value::Str(kind.into())));
    }
    if let Some(ns) = v[DURATION].as_i64() {
        out.push((2, Value::Boolean(ns > config.slow_ms * 1_000_000)));
    }
    out
}

struct Classifier;

impl Guest for Classifier {
    fn init(config: String) -> Result<Manifest, String> {
        let config: Config = plume_sdk::parse_config(&config)?;
        CONFIG.with(|c| *c.borrow_mut() = Some(config));
        Ok(Manifest {
            reads: vec![
                Field::Attribute("gen_ai.tool.name".into()),
                Field::StatusCode,
                Field::Attribute("http.response.status_code".into()),
                Field::EventAttribute(EventAttribute {
                    event: "exception".into(),
                    key: "exception.message".into(),
                }),
                Field::StatusMessage,
                Field::Duration,
            ],
            writes: vec![
                "team.owner".into(),
                "team.error.kind".into(),
                "team.tool.slow".into(),
            ],
            // Only tool spans are sent.
            require_any: vec![TOOL as u32],
            sparse: false,
        })
    }

    fn process(batch: Batch) -> Result<BatchResult, String> {
        CONFIG.with(|c| {
            let c = c.borrow();
            let config = c.as_ref().ok_or("process before init")?;
            let mut edits = Edits::new();
            for (row, v) in Rows::new(&batch, 6)?.iter() {
                for (slot, value) in classify(config, v) {
                    edits.set(row, slot, value.as_ref());
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
mod tests {
    use super::*;

    #[test]
    fn owners_error_kinds_and_slowness() {
        let config: Config = plume_sdk::parse_config(
            r#"{"owners":{"payments.":"payments-team","payments.refunds.":"refunds"}}"#,
        )
        .unwrap();
        let mut v = vec![ValueRef::Absent; 6];
        v[TOOL] = ValueRef::Str("payments.refunds.create");
        v[STATUS] = ValueRef::Str("error");
        v[MESSAGE] = ValueRef::Str("Stripe: card_declined");
        v[DURATION] = ValueRef::Int(3_000_000_000);
        let out = classify(&config, &v);
        assert_eq!(
            out,
            vec![
                (0, Value::Str("refunds".into())),
                (1, Value::Str("business".into())),
                (2, Value::Boolean(true))
            ]
        );
    }
}
