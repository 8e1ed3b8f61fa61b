//! `builtin:latency`: p50 / p95 / p99 latency per group over a rolling window,
//! in event time.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `group_by` | `["model", "operation"]` | group keys: `model`, `operation`, `provider`, `tool`, `agent`, `feature`, `service`, or any attribute key |
//! | `window` | `"1h"` | rolling window in event time (`30s`, `5m`, `1h`, `1d`), kept as 12 sub-windows |
//! | `window_spans` | none | instead of time: the last N spans of each group (kept as 10 sub-windows of N/10) |
//! | `max_groups` | `1000` | beyond this, new groups are counted under `{"overflow": "true"}` |
//!
//! Each sub-window holds a DDSketch (`sketches-ddsketch`, relative accuracy
//! 1%, at most 2048 bins), so a group's memory is bounded whatever its traffic:
//! percentiles are within 1% relative error. A span counts when it has at least
//! one group key; its latency is its duration.

mod window;

use plume_sdk::evaluator::{Guest, export_evaluator};
use plume_sdk::types::{Alert, Batch, Field, Manifest};
use plume_sdk::{Rows, ValueRef};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::BTreeMap;
use window::{Rolling, WindowKind};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_group_by")]
    group_by: Vec<String>,
    #[serde(default)]
    window: Option<String>,
    #[serde(default)]
    window_spans: Option<u64>,
    #[serde(default = "default_max_groups")]
    max_groups: usize,
}

fn default_group_by() -> Vec<String> {
    vec!["model".into(), "operation".into()]
}
fn default_max_groups() -> usize {
    1000
}

/// The field a group key reads.
pub fn key_field(key: &str) -> Field {
    let attr = |k: &str| Field::Attribute(k.to_string());
    match key {
        "model" => attr("gen_ai.request.model"),
        "operation" => attr("gen_ai.operation.name"),
        "provider" => attr("gen_ai.provider.name"),
        "tool" => attr("gen_ai.tool.name"),
        "agent" => attr("gen_ai.agent.name"),
        "feature" => attr("plume.feature"),
        "service" => Field::ResourceAttribute("service.name".into()),
        other => attr(other),
    }
}

/// The evaluator's state: one rolling window per group.
pub struct State {
    keys: Vec<String>,
    kind: WindowKind,
    max_groups: usize,
    groups: BTreeMap<Vec<Option<String>>, Rolling>,
    now: u64,
    /// Spans that arrived after their window had passed.
    late: u64,
}

impl State {
    fn new(config: Config) -> Result<State, String> {
        if config.group_by.is_empty() {
            return Err("config.group_by must name at least one key".into());
        }
        let kind = match (config.window, config.window_spans) {
            (Some(_), Some(_)) => {
                return Err("config: give window or window_spans, not both".into());
            }
            (_, Some(0)) => return Err("config.window_spans must be positive".into()),
            (_, Some(n)) => WindowKind::Spans(n),
            (w, None) => WindowKind::Time(
                plume_sdk::parse_duration(w.as_deref().unwrap_or("1h"))
                    .map_err(|e| format!("config.window: {e}"))?,
            ),
        };
        Ok(State {
            keys: config.group_by,
            kind,
            max_groups: config.max_groups.max(1),
            groups: BTreeMap::new(),
            now: 0,
            late: 0,
        })
    }

    /// Adds one observation. `group` is borrowed: it is copied only for a
    /// group not seen before, so a span costs no allocation.
    pub fn observe(&mut self, group: &[Option<String>], end_ns: u64, duration_ns: u64) {
        let ms = duration_ns as f64 / 1e6;
        let on_time = match self.groups.get_mut(group) {
            Some(rolling) => rolling.add(end_ns, ms),
            None => {
                let group = if self.groups.len() < self.max_groups {
                    group.to_vec()
                } else {
                    vec![Some("overflow".to_string())]
                };
                let kind = self.kind;
                self.groups
                    .entry(group)
                    .or_insert_with(|| Rolling::new(kind))
                    .add(end_ns, ms)
            }
        };
        if !on_time {
            self.late += 1;
        }
    }

    /// Moves event time forward, expiring old sub-windows.
    pub fn advance(&mut self, now: u64) {
        self.now = self.now.max(now);
        for r in self.groups.values_mut() {
            r.expire(self.now);
        }
    }

    /// The report section.
    pub fn report(&self) -> serde_json::Value {
        let mut rows = Vec::new();
        for (group, r) in &self.groups {
            let Some(s) = r.merged() else { continue };
            let mut g = serde_json::Map::new();
            if group.len() == 1 && group[0].as_deref() == Some("overflow") && self.keys.len() != 1 {
                g.insert("overflow".into(), "true".into());
            } else {
                for (k, v) in self.keys.iter().zip(group) {
                    g.insert(
                        k.clone(),
                        v.clone()
                            .map_or(serde_json::Value::Null, serde_json::Value::from),
                    );
                }
            }
            let q = |p: f64| {
                s.quantile(p)
                    .ok()
                    .flatten()
                    .map(|v| (v * 1000.0).round() / 1000.0)
            };
            rows.push(serde_json::json!({
                "group": g, "count": s.count() as u64, "p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99),
            }));
        }
        serde_json::json!({ "latency": rows })
    }
}

/// Sets one value of a group key in place, reusing the string it held: a
/// string as it is, a number as text; anything else is no value.
fn fill_group_value(slot: &mut Option<String>, value: ValueRef<'_>) {
    use std::fmt::Write as _;
    if let ValueRef::Str(text) = value {
        let s = slot.get_or_insert_with(String::new);
        s.clear();
        s.push_str(text);
    } else if let Some(f) = value.as_f64() {
        let s = slot.get_or_insert_with(String::new);
        s.clear();
        let _ = write!(s, "{f}");
    } else {
        *slot = None;
    }
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

struct Latency;

impl Guest for Latency {
    fn init(config: String) -> Result<Manifest, String> {
        let state = State::new(plume_sdk::parse_config(&config)?)?;
        let mut reads: Vec<Field> = state.keys.iter().map(|k| key_field(k)).collect();
        reads.push(Field::EndTime);
        reads.push(Field::Duration);
        let require_any = (0..state.keys.len() as u32).collect();
        STATE.with(|s| *s.borrow_mut() = Some(state));
        Ok(Manifest {
            reads,
            writes: vec![],
            require_any,
            sparse: false,
        })
    }

    fn observe(batch: Batch) -> Result<(), String> {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let state = s.as_mut().ok_or("observe before init")?;
            let n = state.keys.len();
            // One group key for the batch, its strings reused from span to span.
            let mut group: Vec<Option<String>> = vec![None; n];
            for (_, v) in Rows::new(&batch, n + 2)?.iter() {
                for (slot, x) in group.iter_mut().zip(&v[..n]) {
                    fill_group_value(slot, *x);
                }
                let end = v[n].as_i64().unwrap_or(0).max(0) as u64;
                let dur = v[n + 1].as_i64().unwrap_or(0).max(0) as u64;
                state.observe(&group, end, dur);
            }
            Ok(())
        })
    }

    fn tick(now: u64) -> Result<Vec<Alert>, String> {
        STATE.with(|s| {
            if let Some(state) = s.borrow_mut().as_mut() {
                state.advance(now);
            }
        });
        Ok(vec![])
    }

    fn report() -> String {
        STATE.with(|s| {
            s.borrow()
                .as_ref()
                .map(|st| st.report().to_string())
                .unwrap_or_else(|| "{}".into())
        })
    }

    fn snapshot() -> Vec<u8> {
        STATE.with(|s| {
            let s = s.borrow();
            let Some(st) = s.as_ref() else {
                return Vec::new();
            };
            let groups: Vec<(&Vec<Option<String>>, &Rolling)> = st.groups.iter().collect();
            plume_sdk::state::save(&(st.now, groups))
        })
    }

    fn restore(state: Vec<u8>) -> Result<(), String> {
        type Saved = (u64, Vec<(Vec<Option<String>>, Rolling)>);
        let (now, groups): Saved = plume_sdk::state::load(&state)?;
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let st = s.as_mut().ok_or("restore before init")?;
            st.now = now;
            st.groups = groups.into_iter().collect();
            Ok(())
        })
    }
}

export_evaluator!(Latency);

#[cfg(test)]
mod tests;
