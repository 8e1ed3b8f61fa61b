//! Test fixture, not embedded: exercises the evaluator world end to end.
//! Counts spans with status `error`; `tick` raises one `error_count` page alert
//! when the count reaches `threshold` (default 1); the report is
//! `{"test_errors": [{"name": NAME, "errors": N, "spans": M}]}`.

use plume_sdk::Rows;
use plume_sdk::evaluator::{Guest, export_evaluator};
use plume_sdk::types::{Alert, Batch, Field, Manifest, Severity};
use serde::Deserialize;
use std::cell::RefCell;

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "one")]
    threshold: u64,
    #[serde(default)]
    name: String,
    /// Trap (panic) when a batch holds a span with this attribute.
    trap_on_attribute: Option<String>,
}

fn one() -> u64 {
    1
}

#[derive(Default)]
struct State {
    config: Config,
    errors: u64,
    spans: u64,
    fired: bool,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

struct Counter;

impl Guest for Counter {
    fn init(config: String) -> Result<Manifest, String> {
        let config: Config = plume_sdk::parse_config(&config)?;
        let mut reads = vec![Field::StatusCode];
        reads.extend(
            config
                .trap_on_attribute
                .iter()
                .map(|k| Field::Attribute(k.clone())),
        );
        STATE.with(|s| s.borrow_mut().config = config);
        Ok(Manifest {
            reads,
            writes: vec![],
            require_any: vec![],
            sparse: false,
        })
    }

    fn observe(batch: Batch) -> Result<(), String> {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let width = 1 + usize::from(s.config.trap_on_attribute.is_some());
            let rows = Rows::new(&batch, width)?;
            if width == 2 && rows.iter().any(|(_, row)| row[1].is_present()) {
                panic!("test-evaluator: trap requested");
            }
            for (_, row) in rows.iter() {
                s.spans += 1;
                if row[0].as_str() == Some("error") {
                    s.errors += 1;
                }
            }
            Ok(())
        })
    }

    fn tick(now: u64) -> Result<Vec<Alert>, String> {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            if s.fired || s.errors < s.config.threshold {
                return Ok(vec![]);
            }
            s.fired = true;
            Ok(vec![Alert {
                rule: "error_count".into(),
                severity: Severity::Page,
                labels: vec![("evaluator".into(), s.config.name.clone())],
                summary: format!("{} error spans", s.errors),
                value: s.errors as f64,
                threshold: s.config.threshold as f64,
                runbook: "examples/runbooks/error-rate-spike.md".into(),
                firing: true,
                at: now,
            }])
        })
    }

    fn report() -> String {
        STATE.with(|s| {
            let s = s.borrow();
            serde_json::json!({"test_errors": [{"name": s.config.name, "errors": s.errors, "spans": s.spans}]}).to_string()
        })
    }

    fn snapshot() -> Vec<u8> {
        STATE.with(|s| {
            let s = s.borrow();
            format!("{} {}", s.errors, s.spans).into_bytes()
        })
    }

    fn restore(state: Vec<u8>) -> Result<(), String> {
        let text = String::from_utf8(state).map_err(|e| e.to_string())?;
        let mut parts = text
            .split(' ')
            .map(|p| p.parse::<u64>().map_err(|e| e.to_string()));
        let (errors, spans) = (parts.next().ok_or("empty")??, parts.next().ok_or("short")??);
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.errors = errors;
            s.spans = spans;
        });
        Ok(())
    }
}

export_evaluator!(Counter);
