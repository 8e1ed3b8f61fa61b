//! `builtin:alert-router`: one notification per alert, not one per evaluation.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `repeat_interval` | `"4h"` | a firing alert is notified again after this long (event time); in between, repeats only count |
//! | `group_by` | `["rule"]` | alerts raised together with the same values of these (`rule`, `severity`, or label names) go out as one notification |
//! | `routes` | `[]` | `[{ severity = "page", labels = { feature = "chat" }, to = ["pager"] }]`: the first route whose conditions all hold chooses the exporters |
//! | `default_to` | `[]` | exporters for alerts no route matches; empty means every exporter |
//! | `send_resolved` | `true` | notify when a firing alert clears |
//!
//! An alert's identity (fingerprint) is its rule and its sorted labels. The
//! report's `alerts` lists every alert seen: id, rule, severity, status,
//! first_seen, count (times raised), runbook.

use plume_sdk::router::{Guest, export_router};
use plume_sdk::types::{Alert, Notification, Severity};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::BTreeMap;

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Route {
    severity: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    to: Vec<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_repeat")]
    repeat_interval: String,
    #[serde(default = "default_group_by")]
    group_by: Vec<String>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    default_to: Vec<String>,
    #[serde(default = "yes")]
    send_resolved: bool,
}

fn default_repeat() -> String {
    "4h".into()
}
fn default_group_by() -> Vec<String> {
    vec!["rule".into()]
}
fn yes() -> bool {
    true
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Page => "page",
    }
}

fn rank(s: Severity) -> u8 {
    match s {
        Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Page => 2,
    }
}

/// What the router remembers of one alert.
struct Known {
    alert: Alert,
    first_seen: u64,
    last_notified: u64,
    /// Times raised while firing (since it last started firing).
    count: u32,
    /// Raised since the last notification (suppressed repeats).
    pending: u32,
    firing: bool,
}

/// The router's state.
pub struct State {
    config: Config,
    repeat: u64,
    known: BTreeMap<String, Known>,
}

/// Rule and sorted labels, stable across runs.
pub fn fingerprint(alert: &Alert) -> String {
    let mut labels = alert.labels.clone();
    labels.sort();
    // FNV-1a over rule and labels.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |b: &[u8]| {
        for x in b {
            h ^= u64::from(*x);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(alert.rule.as_bytes());
    for (k, v) in &labels {
        feed(&[0]);
        feed(k.as_bytes());
        feed(&[1]);
        feed(v.as_bytes());
    }
    format!("{h:016x}")
}

impl State {
    fn new(config: Config) -> Result<State, String> {
        let repeat = plume_sdk::parse_duration(&config.repeat_interval)
            .map_err(|e| format!("config.repeat_interval: {e}"))?;
        for (i, r) in config.routes.iter().enumerate() {
            if r.to.is_empty() {
                return Err(format!(
                    "config.routes[{i}].to must name at least one export"
                ));
            }
            if let Some(s) = &r.severity
                && !["info", "warning", "page"].contains(&s.as_str())
            {
                return Err(format!(
                    "config.routes[{i}].severity must be info, warning or page"
                ));
            }
        }
        Ok(State {
            config,
            repeat,
            known: BTreeMap::new(),
        })
    }

    fn destinations(&self, a: &Alert) -> Vec<String> {
        for r in &self.config.routes {
            let sev_ok = r
                .severity
                .as_deref()
                .is_none_or(|s| s == severity_name(a.severity));
            let labels_ok = r
                .labels
                .iter()
                .all(|(k, v)| a.labels.iter().any(|(ak, av)| ak == k && av == v));
            if sev_ok && labels_ok {
                return r.to.clone();
            }
        }
        self.config.default_to.clone()
    }

    fn group_key(&self, a: &Alert) -> Vec<String> {
        self.config
            .group_by
            .iter()
            .map(|k| match k.as_str() {
                "rule" => a.rule.clone(),
                "severity" => severity_name(a.severity).to_string(),
                label => a
                    .labels
                    .iter()
                    .find(|(lk, _)| lk == label)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Routes alerts raised at `now`.
    pub fn route(&mut self, alerts: Vec<Alert>, now: u64) -> Vec<Notification> {
        let mut out: Vec<Notification> = Vec::new();
        for a in alerts {
            let fp = fingerprint(&a);
            let notify = match self.known.get_mut(&fp) {
                None if !a.firing => false, // clearing something never seen
                None => {
                    self.known.insert(
                        fp.clone(),
                        Known {
                            alert: a.clone(),
                            first_seen: a.at,
                            last_notified: now,
                            count: 1,
                            pending: 0,
                            firing: true,
                        },
                    );
                    true
                }
                Some(k) if a.firing && !k.firing => {
                    // Fires again after it had cleared: a new episode.
                    *k = Known {
                        alert: a.clone(),
                        first_seen: a.at,
                        last_notified: now,
                        count: 1,
                        pending: 0,
                        firing: true,
                    };
                    true
                }
                Some(k) if a.firing => {
                    k.count += 1;
                    k.pending += 1;
                    k.alert = a.clone();
                    if now.saturating_sub(k.last_notified) >= self.repeat {
                        k.last_notified = now;
                        k.pending = 0;
                        true
                    } else {
                        false
                    }
                }
                Some(k) if k.firing => {
                    k.firing = false;
                    k.alert = a.clone();
                    self.config.send_resolved
                }
                Some(_) => false,
            };
            if notify {
                let k = &self.known[&fp];
                out.push(Notification {
                    alert: a.clone(),
                    fingerprint: fp,
                    count: k.count,
                    first_seen: k.first_seen,
                    destinations: self.destinations(&a),
                });
            }
        }
        self.group(out)
    }

    /// Merges notifications of one group (same key, same firing state) into
    /// one: the most severe goes out, naming the others.
    fn group(&self, notifications: Vec<Notification>) -> Vec<Notification> {
        let mut groups: BTreeMap<(Vec<String>, bool), Vec<Notification>> = BTreeMap::new();
        for n in notifications {
            groups
                .entry((self.group_key(&n.alert), n.alert.firing))
                .or_default()
                .push(n);
        }
        groups
            .into_values()
            .map(|mut members| {
                members.sort_by_key(|n| std::cmp::Reverse(rank(n.alert.severity)));
                let mut lead = members.remove(0);
                if !members.is_empty() {
                    let others: Vec<String> =
                        members.iter().map(|n| n.alert.summary.clone()).collect();
                    lead.alert.summary = format!(
                        "{} (and {} more: {})",
                        lead.alert.summary,
                        others.len(),
                        others.join("; ")
                    );
                    for m in &members {
                        for d in &m.destinations {
                            if !lead.destinations.contains(d) {
                                lead.destinations.push(d.clone());
                            }
                        }
                    }
                }
                lead
            })
            .collect()
    }

    /// The report's `alerts` section (DESIGN.md shape).
    pub fn report(&self, format_time: impl Fn(u64) -> String) -> serde_json::Value {
        let alerts: Vec<serde_json::Value> = self
            .known
            .iter()
            .map(|(fp, k)| {
                let labels: serde_json::Map<String, serde_json::Value> = k
                    .alert
                    .labels
                    .iter()
                    .map(|(a, b)| (a.clone(), b.clone().into()))
                    .collect();
                serde_json::json!({
                    "id": fp,
                    "rule": k.alert.rule,
                    "severity": severity_name(k.alert.severity),
                    "status": if k.firing { "firing" } else { "resolved" },
                    "labels": labels,
                    "summary": k.alert.summary,
                    "first_seen": format_time(k.first_seen),
                    "count": k.count,
                    "suppressed_since_last_notice": k.pending,
                    "runbook": k.alert.runbook,
                })
            })
            .collect();
        serde_json::json!({ "alerts": alerts })
    }
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

struct AlertRouter;

impl Guest for AlertRouter {
    fn init(config: String) -> Result<(), String> {
        let state = State::new(plume_sdk::parse_config(&config)?)?;
        STATE.with(|s| *s.borrow_mut() = Some(state));
        Ok(())
    }

    fn route(alerts: Vec<Alert>, now: u64) -> Result<Vec<Notification>, String> {
        STATE.with(|s| {
            Ok(s.borrow_mut()
                .as_mut()
                .ok_or("route before init")?
                .route(alerts, now))
        })
    }

    fn report() -> String {
        STATE.with(|s| {
            s.borrow()
                .as_ref()
                .map(|st| st.report(plume_sdk::format_time).to_string())
                .unwrap_or_else(|| "{}".into())
        })
    }
}

export_router!(AlertRouter);

#[cfg(test)]
mod tests;
