//! `builtin:attributes`: insert, update, upsert or delete span attributes, like
//! the OpenTelemetry Collector's attributes processor.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `actions` | `[]` | list of actions, applied in order to every span |
//!
//! Each action has `key`, `action` (`insert`: only if absent; `update`: only if
//! present; `upsert`: always; `delete`) and, except for `delete`, exactly one of
//! `value` (a literal: string, number, boolean, array or table) or
//! `from_attribute` (copy another attribute; nothing happens when it is absent).
//!
//! ```toml
//! config = { actions = [
//!   { key = "plume.feature", action = "insert", from_attribute = "app.feature" },
//!   { key = "deployment.environment", action = "upsert", value = "prod" },
//!   { key = "gen_ai.input.messages", action = "delete" },
//! ] }
//! ```

use plume_sdk::processor::{Guest, export_processor};
use plume_sdk::types::{Batch, BatchResult, Edits, Field, Manifest, Value};
use plume_sdk::{Rows, ValueRef};
use serde::Deserialize;
use std::cell::RefCell;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    actions: Vec<ActionConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionConfig {
    key: String,
    #[serde(rename = "action")]
    kind: Kind,
    value: Option<serde_json::Value>,
    from_attribute: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Debug)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Insert,
    Update,
    Upsert,
    Delete,
}

#[derive(Debug, PartialEq)]
enum Source {
    Literal(Value),
    /// Index of the source attribute among the reads.
    Attribute(usize),
    Nothing,
}

/// A validated action: indexes into the manifest's reads and writes.
#[derive(Debug)]
struct Action {
    kind: Kind,
    /// Read index of the target key (its current value).
    target_read: usize,
    /// Write slot of the target key.
    slot: u32,
    source: Source,
}

#[derive(Debug, Default)]
struct Plan {
    reads: Vec<String>,
    writes: Vec<String>,
    actions: Vec<Action>,
}

thread_local! {
    static PLAN: RefCell<Plan> = RefCell::new(Plan::default());
}

fn index_of(list: &mut Vec<String>, key: &str) -> usize {
    match list.iter().position(|k| k == key) {
        Some(i) => i,
        None => {
            list.push(key.to_string());
            list.len() - 1
        }
    }
}

fn literal(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::String(s) => Value::Str(s),
        serde_json::Value::Bool(b) => Value::Boolean(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        other => Value::Json(other.to_string()),
    }
}

fn plan(config: Config) -> Result<Plan, String> {
    let mut p = Plan::default();
    for (i, a) in config.actions.into_iter().enumerate() {
        let at = format!("config.actions[{i}]");
        if a.key.is_empty() {
            return Err(format!("{at}.key must not be empty"));
        }
        let source = match (a.kind, a.value, a.from_attribute) {
            (Kind::Delete, None, None) => Source::Nothing,
            (Kind::Delete, _, _) => {
                return Err(format!(
                    "{at}: delete takes neither value nor from_attribute"
                ));
            }
            (_, Some(v), None) => Source::Literal(literal(v)),
            (_, None, Some(from)) => Source::Attribute(index_of(&mut p.reads, &from)),
            _ => return Err(format!("{at}: give exactly one of value or from_attribute")),
        };
        let target_read = index_of(&mut p.reads, &a.key);
        let slot = index_of(&mut p.writes, &a.key) as u32;
        p.actions.push(Action {
            kind: a.kind,
            target_read,
            slot,
            source,
        });
    }
    Ok(p)
}

/// Applies the plan to one row. `current` tracks writes made by earlier actions
/// so that actions see each other's effects, as they would applied one by one.
fn apply_row(plan: &Plan, row: u32, values: &[ValueRef<'_>], edits: &mut Edits) {
    let mut current: Vec<Value> = values.iter().map(ValueRef::to_value).collect();
    for a in &plan.actions {
        let present = current[a.target_read] != Value::Absent;
        let new = match (&a.source, a.kind) {
            (_, Kind::Insert) if present => continue,
            (_, Kind::Update) if !present => continue,
            (Source::Nothing, _) => {
                if !present {
                    continue;
                }
                Value::Absent
            }
            (Source::Literal(v), _) => v.clone(),
            (Source::Attribute(from), _) => match &current[*from] {
                Value::Absent => continue,
                v => v.clone(),
            },
        };
        edits.set(row, a.slot, new.as_ref());
        current[a.target_read] = new;
    }
}

struct Attributes;

impl Guest for Attributes {
    fn init(config: String) -> Result<Manifest, String> {
        let p = plan(plume_sdk::parse_config(&config)?)?;
        let manifest = Manifest {
            reads: p.reads.iter().cloned().map(Field::Attribute).collect(),
            writes: p.writes.clone(),
            require_any: vec![],
            sparse: false,
        };
        PLAN.with(|cell| *cell.borrow_mut() = p);
        Ok(manifest)
    }

    fn process(batch: Batch) -> Result<BatchResult, String> {
        PLAN.with(|cell| {
            let plan = cell.borrow();
            let mut edits = Edits::new();
            for (row, values) in Rows::new(&batch, plan.reads.len())?.iter() {
                apply_row(&plan, row, values, &mut edits);
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

export_processor!(Attributes);

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(json: &str) -> Result<Plan, String> {
        plan(plume_sdk::parse_config(json)?)
    }

    #[test]
    fn insert_only_when_absent_and_copies_attributes() {
        let p = plan_of(
            r#"{"actions":[{"key":"plume.feature","action":"insert","from_attribute":"app.feature"}]}"#,
        )
        .unwrap();
        assert_eq!(p.reads, vec!["app.feature", "plume.feature"]);
        let mut edits = Edits::new();
        apply_row(
            &p,
            0,
            &[ValueRef::Str("chat"), ValueRef::Absent],
            &mut edits,
        );
        apply_row(
            &p,
            1,
            &[ValueRef::Str("chat"), ValueRef::Str("kept")],
            &mut edits,
        );
        apply_row(&p, 2, &[ValueRef::Absent, ValueRef::Absent], &mut edits);
        assert_eq!(edits.to_vec().unwrap(), [(0, 0, ValueRef::Str("chat"))]);
    }

    #[test]
    fn later_actions_see_earlier_writes() {
        let p = plan_of(
            r#"{"actions":[{"key":"a","action":"upsert","value":1},
                           {"key":"b","action":"insert","from_attribute":"a"},
                           {"key":"a","action":"delete"}]}"#,
        )
        .unwrap();
        let mut edits = Edits::new();
        apply_row(&p, 0, &[ValueRef::Absent, ValueRef::Absent], &mut edits);
        let got: Vec<_> = (edits.to_vec().unwrap().into_iter())
            .map(|(_, slot, value)| (p.writes[slot as usize].as_str(), value))
            .collect();
        assert_eq!(got.len(), 3);
        assert!(matches!(got[1], ("b", ValueRef::Int(1))));
        assert!(matches!(got[2], ("a", ValueRef::Absent)));
    }

    #[test]
    fn rejects_ambiguous_actions() {
        let e = plan_of(r#"{"actions":[{"key":"a","action":"upsert"}]}"#).unwrap_err();
        assert!(e.contains("config.actions[0]"), "{e}");
        let e = plan_of(r#"{"actions":[{"key":"a","action":"explode"}]}"#).unwrap_err();
        assert!(e.contains("explode"), "{e}");
    }
}
