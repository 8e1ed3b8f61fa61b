//! `builtin:slo`: a service-level objective over spans, its burn rates in
//! event time, and a state (`ok`, `alert`, `page`) with alerts on changes.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `name` | `"slo"` | the SLO's name in the report and alert labels |
//! | `objective` | `0.995` | the fraction of good spans |
//! | `sli` | `"errors"` | `errors` (a span is bad when its status is error) or `latency` (bad when slower than `latency_threshold_ms`) |
//! | `latency_threshold_ms` | `10000` | for `sli = "latency"` |
//! | `filter_key` | `"gen_ai.operation.name"` | only spans with this attribute count |
//! | `filter_values` | `[]` | ... and, if not empty, with one of these values |
//! | `policy` | `"seed"` | `seed`: burn rates over 1h and 5m, `alert` above 2, `page` above 10 (the higher of the two); `multiwindow`: the SRE workbook's policy, page when 1h and 5m burn > 14.4 or 6h and 30m > 6, alert when 3d and 6h > 1 |
//! | `alert_burn`, `page_burn` | `2`, `10` | the seed policy's thresholds |
//! | `runbook` | `"examples/runbooks/error-rate-spike.md"` | linked from its alerts |
//!
//! Burn rate = (bad / total in the window) / (1 - objective). Counts are kept
//! per minute of event time for at most three days: bounded memory.

use plume_sdk::Rows;
use plume_sdk::evaluator::{Guest, export_evaluator};
use plume_sdk::types::{Alert, Batch, Field, Manifest, Severity};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;

const MINUTE: u64 = 60_000_000_000;
const KEEP_MINUTES: u64 = 3 * 24 * 60;

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_name")]
    name: String,
    #[serde(default = "default_objective")]
    objective: f64,
    #[serde(default = "default_sli")]
    sli: String,
    #[serde(default = "default_threshold")]
    latency_threshold_ms: f64,
    #[serde(default = "default_filter_key")]
    filter_key: String,
    #[serde(default)]
    filter_values: Vec<String>,
    #[serde(default = "default_policy")]
    policy: String,
    #[serde(default = "default_alert_burn")]
    alert_burn: f64,
    #[serde(default = "default_page_burn")]
    page_burn: f64,
    #[serde(default = "default_runbook")]
    runbook: String,
}

fn default_name() -> String {
    "slo".into()
}
fn default_objective() -> f64 {
    0.995
}
fn default_sli() -> String {
    "errors".into()
}
fn default_threshold() -> f64 {
    10_000.0
}
fn default_filter_key() -> String {
    "gen_ai.operation.name".into()
}
fn default_policy() -> String {
    "seed".into()
}
fn default_alert_burn() -> f64 {
    2.0
}
fn default_page_burn() -> f64 {
    10.0
}
fn default_runbook() -> String {
    "examples/runbooks/error-rate-spike.md".into()
}

/// The SLO's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Level {
    Ok,
    Alert,
    Page,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Alert => "alert",
            Level::Page => "page",
        }
    }
}

/// Per-minute (total, bad) counts and the current state.
#[derive(Default, Serialize, Deserialize)]
pub struct Counts {
    minutes: BTreeMap<u64, (u64, u64)>,
    now: u64,
    level: Option<Level>,
}

pub struct State {
    config: Config,
    counts: Counts,
}

/// Windows each policy reports, in minutes.
fn windows(policy: &str) -> &'static [(&'static str, u64)] {
    if policy == "multiwindow" {
        &[
            ("5m", 5),
            ("30m", 30),
            ("1h", 60),
            ("6h", 360),
            ("3d", 4320),
        ]
    } else {
        &[("1h", 60), ("5m", 5)]
    }
}

impl State {
    fn new(config: Config) -> Result<State, String> {
        if !(config.objective > 0.0 && config.objective < 1.0) {
            return Err("config.objective must be between 0 and 1 (exclusive), e.g. 0.995".into());
        }
        if !["errors", "latency"].contains(&config.sli.as_str()) {
            return Err(format!(
                "config.sli must be errors or latency, not {:?}",
                config.sli
            ));
        }
        if !["seed", "multiwindow"].contains(&config.policy.as_str()) {
            return Err(format!(
                "config.policy must be seed or multiwindow, not {:?}",
                config.policy
            ));
        }
        Ok(State {
            config,
            counts: Counts::default(),
        })
    }

    /// Counts one span.
    pub fn add(&mut self, at: u64, bad: bool) {
        let m = at / MINUTE;
        if m + KEEP_MINUTES < self.counts.now / MINUTE {
            return; // older than anything reported
        }
        let e = self.counts.minutes.entry(m).or_default();
        e.0 += 1;
        e.1 += u64::from(bad);
        self.counts.now = self.counts.now.max(at);
    }

    /// Burn rate over the last `minutes` of event time.
    pub fn burn(&self, minutes: u64) -> f64 {
        let end = self.counts.now / MINUTE;
        let start = (end + 1).saturating_sub(minutes);
        let (total, bad) = self
            .counts
            .minutes
            .range(start..=end)
            .fold((0, 0), |(t, b), (_, (ct, cb))| (t + ct, b + cb));
        if total == 0 {
            0.0
        } else {
            (bad as f64 / total as f64) / (1.0 - self.config.objective)
        }
    }

    /// The state the policy gives now.
    pub fn level(&self) -> Level {
        let c = &self.config;
        if c.policy == "multiwindow" {
            let b = |m| self.burn(m);
            if (b(60) > 14.4 && b(5) > 14.4) || (b(360) > 6.0 && b(30) > 6.0) {
                Level::Page
            } else if b(4320) > 1.0 && b(360) > 1.0 {
                Level::Alert
            } else {
                Level::Ok
            }
        } else {
            let worst = self.burn(60).max(self.burn(5));
            if worst > c.page_burn {
                Level::Page
            } else if worst > c.alert_burn {
                Level::Alert
            } else {
                Level::Ok
            }
        }
    }

    /// Advances event time; returns an alert when the state changes.
    pub fn advance(&mut self, now: u64) -> Vec<Alert> {
        self.counts.now = self.counts.now.max(now);
        let oldest = (self.counts.now / MINUTE).saturating_sub(KEEP_MINUTES);
        self.counts.minutes = self.counts.minutes.split_off(&oldest);
        let level = self.level();
        let before = self.counts.level.replace(level).unwrap_or(Level::Ok);
        if level == before {
            return vec![];
        }
        let burn = self.burn(60).max(self.burn(5));
        let c = &self.config;
        vec![Alert {
            rule: "slo_burn".into(),
            severity: if level == Level::Page || (level == Level::Ok && before == Level::Page) {
                Severity::Page
            } else {
                Severity::Warning
            },
            labels: vec![("slo".into(), c.name.clone())],
            summary: format!(
                "SLO {} ({}) is {}: burn rate {burn:.1}",
                c.name,
                c.objective,
                level.name()
            ),
            value: burn,
            threshold: if level == Level::Page {
                c.page_burn
            } else {
                c.alert_burn
            },
            runbook: c.runbook.clone(),
            firing: level != Level::Ok,
            at: self.counts.now,
        }]
    }

    /// The report section.
    pub fn report(&self) -> serde_json::Value {
        let rates: serde_json::Map<String, serde_json::Value> = windows(&self.config.policy)
            .iter()
            .map(|(name, m)| {
                (
                    name.to_string(),
                    serde_json::json!((self.burn(*m) * 1000.0).round() / 1000.0),
                )
            })
            .collect();
        serde_json::json!({"slo": [{
            "name": self.config.name,
            "objective": self.config.objective,
            "sli": self.config.sli,
            "policy": self.config.policy,
            "burn_rates": rates,
            "state": self.level().name(),
        }]})
    }
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

struct Slo;

impl Guest for Slo {
    fn init(config: String) -> Result<Manifest, String> {
        let state = State::new(plume_sdk::parse_config(&config)?)?;
        let reads = vec![
            Field::Attribute(state.config.filter_key.clone()),
            Field::StatusCode,
            Field::Duration,
            Field::EndTime,
        ];
        STATE.with(|s| *s.borrow_mut() = Some(state));
        Ok(Manifest {
            reads,
            writes: vec![],
            require_any: vec![0],
            sparse: false,
        })
    }

    fn observe(batch: Batch) -> Result<(), String> {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let st = s.as_mut().ok_or("observe before init")?;
            for (_, v) in Rows::new(&batch, 4)?.iter() {
                let c = &st.config;
                if !c.filter_values.is_empty()
                    && !v[0]
                        .as_str()
                        .is_some_and(|x| c.filter_values.iter().any(|f| f == x))
                {
                    continue;
                }
                let bad = match c.sli.as_str() {
                    "latency" => v[2]
                        .as_i64()
                        .is_some_and(|ns| ns as f64 / 1e6 > c.latency_threshold_ms),
                    _ => v[1].as_str() == Some("error"),
                };
                let at = v[3].as_i64().unwrap_or(0).max(0) as u64;
                st.add(at, bad);
            }
            Ok(())
        })
    }

    fn tick(now: u64) -> Result<Vec<Alert>, String> {
        STATE.with(|s| {
            Ok(s.borrow_mut()
                .as_mut()
                .map(|st| st.advance(now))
                .unwrap_or_default())
        })
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
            s.borrow()
                .as_ref()
                .map(|st| plume_sdk::state::save(&st.counts))
                .unwrap_or_default()
        })
    }

    fn restore(state: Vec<u8>) -> Result<(), String> {
        let counts: Counts = plume_sdk::state::load(&state)?;
        STATE.with(|s| {
            s.borrow_mut().as_mut().ok_or("restore before init")?.counts = counts;
            Ok(())
        })
    }
}

export_evaluator!(Slo);

#[cfg(test)]
mod tests {
    use super::*;

    fn state(json: &str) -> State {
        State::new(plume_sdk::parse_config(json).unwrap()).unwrap()
    }

    const T0: u64 = 1_000_000 * MINUTE;

    /// 100 spans a minute; `bad` of them failing, for `minutes` minutes.
    fn traffic(s: &mut State, from: u64, minutes: u64, bad: u64) -> Vec<Alert> {
        let mut alerts = vec![];
        for m in 0..minutes {
            for i in 0..100 {
                s.add(from + m * MINUTE + i * 100_000_000, i < bad);
            }
            alerts.extend(s.advance(from + (m + 1) * MINUTE - 1));
        }
        alerts
    }

    #[test]
    fn seed_thresholds_and_transitions() {
        // objective 0.99 -> 1% budget. 1.5% errors = burn 1.5 (ok); 3% = 3 (alert); 12% = 12 (page).
        let mut s = state(r#"{"objective": 0.99}"#);
        assert!(traffic(&mut s, T0, 60, 1).is_empty());
        assert!((s.burn(60) - 1.0).abs() < 1e-9);
        let a = traffic(&mut s, T0 + 60 * MINUTE, 10, 3);
        assert_eq!(a.len(), 1, "one notice on the change, not one per minute");
        assert!(a[0].firing && matches!(a[0].severity, Severity::Warning));
        assert_eq!(s.report()["slo"][0]["state"], "alert");
        let a = traffic(&mut s, T0 + 70 * MINUTE, 10, 12);
        assert_eq!(a.len(), 1);
        assert!(matches!(a[0].severity, Severity::Page));
        // Recovery: clean traffic until both windows are under 2.
        let a = traffic(&mut s, T0 + 80 * MINUTE, 120, 0);
        let last = a.last().unwrap();
        assert!(!last.firing, "a resolved notice when it clears");
        assert_eq!(s.report()["slo"][0]["state"], "ok");
    }

    #[test]
    fn burn_exactly_at_the_threshold_is_not_over_it() {
        // 2% errors with a 1% budget: burn exactly 2, which is not above 2.
        let mut s = state(r#"{"objective": 0.99}"#);
        assert!(traffic(&mut s, T0, 60, 2).is_empty());
        assert_eq!(s.report()["slo"][0]["state"], "ok");
    }

    #[test]
    fn multiwindow_pages_on_fast_burn_only_when_both_windows_agree() {
        let mut s = state(r#"{"objective": 0.999, "policy": "multiwindow"}"#);
        // An hour at 2% errors: burn 20 over 1h and 5m -> page.
        let a = traffic(&mut s, T0, 60, 2);
        assert_eq!(s.level(), Level::Page);
        assert_eq!(a.len(), 1, "one page, not one per minute");
        assert!(matches!(a[0].severity, Severity::Page));
        let r = s.report();
        assert!((r["slo"][0]["burn_rates"]["1h"].as_f64().unwrap() - 20.0).abs() < 1e-6);
        // Five clean minutes: the fast pair (1h and 5m) no longer agrees, but
        // the slow pair (6h and 30m, both > 6) still pages.
        traffic(&mut s, T0 + 60 * MINUTE, 5, 0);
        assert_eq!(s.burn(5), 0.0);
        assert!(s.burn(60) > 14.4);
        assert_eq!(s.level(), Level::Page);
        // Thirty more: the 30m window clears; the 3d and 6h windows still burn > 1.
        traffic(&mut s, T0 + 65 * MINUTE, 30, 0);
        assert_eq!(s.level(), Level::Alert);
    }

    #[test]
    fn bad_config_is_rejected() {
        assert!(State::new(plume_sdk::parse_config(r#"{"objective": 1.5}"#).unwrap()).is_err());
        assert!(State::new(plume_sdk::parse_config(r#"{"sli": "vibes"}"#).unwrap()).is_err());
    }
}
