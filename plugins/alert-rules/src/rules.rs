//! The rules' state and logic, independent of the plugin glue.

use plume_sdk::types::{Alert, Severity};
use serde::Deserialize;
use sketches_ddsketch::{Config as SketchConfig, DDSketch};
use std::collections::{BTreeMap, HashMap, VecDeque};

const MINUTE: u64 = 60_000_000_000;

/// A duration in whole minutes (the rules keep per-minute counts).
fn parse_minutes(s: &str, what: &str) -> Result<u64, String> {
    let ns = plume_sdk::parse_duration(s).map_err(|e| format!("{what}: {e}"))?;
    if ns % MINUTE != 0 {
        return Err(format!(
            "{what}: use whole minutes or hours, e.g. 5m, 1h (got {s:?})"
        ));
    }
    Ok(ns / MINUTE)
}

macro_rules! defaults {
    ($($f:ident: $t:ty = $v:expr),* $(,)?) => {
        $(fn $f() -> $t { $v })*
    };
}

defaults! {
    yes: bool = true,
    model_key: String = "gen_ai.request.model".into(),
    five_minutes: String = "5m".into(),
    one_hour: String = "1h".into(),
    three: f64 = 3.0,
    two: f64 = 2.0,
    twenty: u64 = 20,
    ten: u64 = 10,
    loop_memory: usize = 100_000,
    version_key: String = "gen_ai.prompt.version".into(),
    score_key: String = "gen_ai.evaluation.score".into(),
    drop_default: f64 = 0.1,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct LatencyRule {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "model_key")]
    pub group_by: String,
    #[serde(default = "five_minutes")]
    pub window: String,
    #[serde(default = "one_hour")]
    pub baseline: String,
    #[serde(default = "three")]
    pub factor: f64,
    #[serde(default = "twenty")]
    pub min_count: u64,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RateRule {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "model_key")]
    pub group_by: String,
    #[serde(default = "five_minutes")]
    pub window: String,
    pub threshold: Option<f64>,
    #[serde(default = "twenty")]
    pub min_count: u64,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct LoopRule {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "ten")]
    pub calls: u64,
    #[serde(default = "loop_memory")]
    pub memory: usize,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct VersionRule {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "version_key")]
    pub version_key: String,
    #[serde(default = "score_key")]
    pub score_key: String,
    #[serde(default = "two")]
    pub factor: f64,
    #[serde(default = "drop_default")]
    pub drop: f64,
    #[serde(default = "twenty")]
    pub min_count: u64,
}

fn empty<T: serde::de::DeserializeOwned>() -> T {
    serde_json::from_str("{}").expect("every key has a default")
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "empty")]
    pub latency_p99: LatencyRule,
    #[serde(default = "empty")]
    pub error_rate: RateRule,
    #[serde(default = "empty")]
    pub truncation_rate: RateRule,
    #[serde(default = "empty")]
    pub agent_loop: LoopRule,
    #[serde(default = "empty")]
    pub invalid_args_after_prompt_change: VersionRule,
    #[serde(default = "empty")]
    pub quality_regression: VersionRule,
    #[serde(default)]
    pub runbooks: BTreeMap<String, String>,
}

/// One span, as the rules see it.
pub struct Observation {
    pub latency_group: Option<String>,
    pub error_group: Option<String>,
    pub failed: bool,
    pub duration_ns: u64,
    pub at: u64,
    pub operation: String,
    pub truncated: bool,
    pub trace: String,
    pub tool: Option<String>,
    pub invalid_args: bool,
    pub args_version: Option<String>,
    pub score: Option<f64>,
    pub score_version: Option<String>,
}

fn sketch() -> DDSketch {
    DDSketch::new(SketchConfig::new(0.01, 2048, 1.0e-9))
}

/// Per-minute latency sketches of one group.
#[derive(Default)]
struct Minutes {
    sketches: VecDeque<(u64, DDSketch)>,
}

impl Minutes {
    fn add(&mut self, minute: u64, ms: f64) {
        match self.sketches.iter_mut().find(|(m, _)| *m == minute) {
            Some((_, s)) => s.add(ms),
            None => {
                let mut s = sketch();
                s.add(ms);
                let pos = self
                    .sketches
                    .iter()
                    .position(|(m, _)| *m > minute)
                    .unwrap_or(self.sketches.len());
                self.sketches.insert(pos, (minute, s));
            }
        }
    }
    fn merged(&self, from: u64, to: u64) -> Option<DDSketch> {
        let mut out: Option<DDSketch> = None;
        for (_, s) in self.sketches.iter().filter(|(m, _)| *m >= from && *m <= to) {
            match &mut out {
                None => out = Some(s.clone()),
                Some(o) => o.merge(s).ok()?,
            }
        }
        out
    }
    fn expire(&mut self, before: u64) {
        while self.sketches.front().is_some_and(|(m, _)| *m < before) {
            self.sketches.pop_front();
        }
    }
}

/// Per-minute (total, hits) counts of one group.
#[derive(Default)]
struct Counts(BTreeMap<u64, (u64, u64)>);

impl Counts {
    fn add(&mut self, minute: u64, hit: bool) {
        let e = self.0.entry(minute).or_default();
        e.0 += 1;
        e.1 += u64::from(hit);
    }
    fn sum(&self, from: u64, to: u64) -> (u64, u64) {
        self.0
            .range(from..=to)
            .fold((0, 0), |(t, h), (_, (a, b))| (t + a, h + b))
    }
    fn expire(&mut self, before: u64) {
        self.0 = self.0.split_off(&before);
    }
}

/// Running stats of one prompt version.
#[derive(Default, Clone, Copy)]
struct VersionStats {
    calls: u64,
    invalid: u64,
    scores: u64,
    score_sum: f64,
}

/// All rules' state.
pub struct Rules {
    c: Config,
    window: u64,
    baseline: u64,
    err_window: u64,
    trunc_window: u64,
    now: u64,
    latency: HashMap<String, Minutes>,
    errors: HashMap<String, Counts>,
    truncation: Counts,
    loops: HashMap<(String, String), u64>,
    loop_order: VecDeque<(String, String)>,
    loop_pending: Vec<(String, String, u64)>,
    /// Prompt versions in order of first appearance, with their stats.
    args_versions: Vec<(String, VersionStats)>,
    score_versions: Vec<(String, VersionStats)>,
    /// Firing alerts by fingerprint (rule + labels), to send one resolve.
    firing: BTreeMap<(String, Vec<(String, String)>), Alert>,
}

impl Rules {
    pub fn new(c: Config) -> Result<Rules, String> {
        let window = parse_minutes(&c.latency_p99.window, "config.latency_p99.window")?;
        let baseline = parse_minutes(&c.latency_p99.baseline, "config.latency_p99.baseline")?;
        let err_window = parse_minutes(&c.error_rate.window, "config.error_rate.window")?;
        let trunc_window =
            parse_minutes(&c.truncation_rate.window, "config.truncation_rate.window")?;
        if c.latency_p99.factor <= 1.0 {
            return Err("config.latency_p99.factor must be above 1".into());
        }
        Ok(Rules {
            c,
            window,
            baseline,
            err_window,
            trunc_window,
            now: 0,
            latency: HashMap::new(),
            errors: HashMap::new(),
            truncation: Counts::default(),
            loops: HashMap::new(),
            loop_order: VecDeque::new(),
            loop_pending: Vec::new(),
            args_versions: Vec::new(),
            score_versions: Vec::new(),
            firing: BTreeMap::new(),
        })
    }

    pub fn observe(&mut self, o: Observation) {
        let minute = o.at / MINUTE;
        self.now = self.now.max(o.at);
        let is_llm = matches!(
            o.operation.as_str(),
            "chat" | "text_completion" | "generate_content" | "embeddings"
        );
        if let Some(g) = o
            .latency_group
            .as_ref()
            .filter(|_| self.c.latency_p99.enabled)
        {
            self.latency
                .entry(g.clone())
                .or_default()
                .add(minute, o.duration_ns as f64 / 1e6);
        }
        if let Some(g) = o.error_group.as_ref().filter(|_| self.c.error_rate.enabled) {
            self.errors
                .entry(g.clone())
                .or_default()
                .add(minute, o.failed);
        }
        if is_llm && self.c.truncation_rate.enabled {
            self.truncation.add(minute, o.truncated);
        }
        if let (Some(tool), true) = (&o.tool, self.c.agent_loop.enabled) {
            let key = (o.trace.clone(), tool.clone());
            let n = match self.loops.get_mut(&key) {
                Some(n) => {
                    *n += 1;
                    *n
                }
                None => {
                    if self.loop_order.len() >= self.c.agent_loop.memory
                        && let Some(old) = self.loop_order.pop_front()
                    {
                        self.loops.remove(&old);
                    }
                    self.loop_order.push_back(key.clone());
                    self.loops.insert(key.clone(), 1);
                    1
                }
            };
            if n == self.c.agent_loop.calls {
                self.loop_pending.push((key.0, key.1, n));
            }
        }
        if let (Some(v), Some(_)) = (&o.args_version, &o.tool) {
            let s = stats_for(&mut self.args_versions, v);
            s.calls += 1;
            s.invalid += u64::from(o.invalid_args);
        }
        if let (Some(v), Some(score)) = (&o.score_version, o.score) {
            let s = stats_for(&mut self.score_versions, v);
            s.scores += 1;
            s.score_sum += score;
        }
    }

    fn runbook(&self, rule: &str, default: &str) -> String {
        self.c
            .runbooks
            .get(rule)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    /// Evaluates every rule at `now`; returns alerts that start or clear.
    pub fn tick(&mut self, now: u64) -> Vec<Alert> {
        self.now = self.now.max(now);
        let m = self.now / MINUTE;
        let mut holding: Vec<Alert> = Vec::new();
        let mk = |rule: &str,
                  severity,
                  labels: Vec<(String, String)>,
                  summary: String,
                  value: f64,
                  threshold: f64,
                  runbook: String| Alert {
            rule: rule.into(),
            severity,
            labels,
            summary,
            value,
            threshold,
            runbook,
            firing: true,
            at: now,
        };
        // latency_p99: window (m - window, m] against the baseline just before it.
        let lr = self.c.latency_p99.clone();
        let lat_runbook = self.runbook("latency_p99", "examples/runbooks/latency-spike.md");
        for (group, mins) in &mut self.latency {
            mins.expire(m.saturating_sub(self.window + self.baseline));
            let cur = mins.merged(m + 1 - self.window.min(m + 1), m);
            let base = mins.merged(
                m.saturating_sub(self.window + self.baseline) + 1,
                m.saturating_sub(self.window),
            );
            if let (Some(cur), Some(base)) = (cur, base) {
                if (cur.count() as u64) < lr.min_count || (base.count() as u64) < lr.min_count {
                    continue;
                }
                let (Ok(Some(p)), Ok(Some(b))) = (cur.quantile(0.99), base.quantile(0.99)) else {
                    continue;
                };
                if p > lr.factor * b {
                    holding.push(mk(
                        "latency_p99",
                        Severity::Page,
                        vec![(lr.group_by.clone(), group.clone())],
                        format!(
                            "p99 of {group} is {p:.0} ms, {:.1}x its {} baseline of {b:.0} ms",
                            p / b,
                            lr.baseline
                        ),
                        p,
                        lr.factor * b,
                        lat_runbook.clone(),
                    ));
                }
            }
        }
        let er = self.c.error_rate.clone();
        let err_runbook = self.runbook("error_rate", "examples/runbooks/error-rate-spike.md");
        for (group, counts) in &mut self.errors {
            counts.expire(m.saturating_sub(self.err_window));
            let (total, failed) = counts.sum(m + 1 - self.err_window.min(m + 1), m);
            let threshold = er.threshold.unwrap_or(0.05);
            if total >= er.min_count && failed as f64 / total as f64 > threshold {
                let rate = failed as f64 / total as f64;
                holding.push(mk(
                    "error_rate",
                    Severity::Page,
                    vec![(er.group_by.clone(), group.clone())],
                    format!(
                        "{:.1}% of {group} calls failed over {} ({failed} of {total})",
                        rate * 100.0,
                        er.window
                    ),
                    rate,
                    threshold,
                    err_runbook.clone(),
                ));
            }
        }
        let tr = self.c.truncation_rate.clone();
        self.truncation.expire(m.saturating_sub(self.trunc_window));
        let (total, cut) = self.truncation.sum(m + 1 - self.trunc_window.min(m + 1), m);
        let threshold = tr.threshold.unwrap_or(0.1);
        if tr.enabled && total >= tr.min_count && cut as f64 / total as f64 > threshold {
            holding.push(mk(
                "truncation_rate",
                Severity::Warning,
                vec![],
                format!(
                    "{:.1}% of model calls stopped at their token limit over {}",
                    cut as f64 / total as f64 * 100.0,
                    tr.window
                ),
                cut as f64 / total as f64,
                threshold,
                self.runbook("truncation_rate", "examples/runbooks/error-rate-spike.md"),
            ));
        }
        let mut events: Vec<Alert> = Vec::new();
        for (trace, tool, n) in std::mem::take(&mut self.loop_pending) {
            // A loop is an event: it fires once and needs no resolution.
            let mut a = mk(
                "agent_loop",
                Severity::Warning,
                vec![
                    ("trace_id".into(), trace.clone()),
                    ("tool".into(), tool.clone()),
                ],
                format!("tool {tool} called {n} times in trace {trace}: agent loop?"),
                n as f64,
                self.c.agent_loop.calls as f64,
                self.runbook("agent_loop", "examples/runbooks/cost-runaway.md"),
            );
            a.at = now;
            events.push(a);
        }
        let va = self.c.invalid_args_after_prompt_change.clone();
        if va.enabled
            && let [.., (prev, p), (cur, c)] = self.args_versions.as_slice()
            && p.calls >= va.min_count
            && c.calls >= va.min_count
        {
            let (pr, cr) = (
                p.invalid as f64 / p.calls as f64,
                c.invalid as f64 / c.calls as f64,
            );
            if cr > (pr * va.factor).max(pr + 0.01) {
                holding.push(mk(
                    "invalid_args_after_prompt_change",
                    Severity::Warning,
                    vec![
                        ("prompt_version".into(), cur.clone()),
                        ("previous_version".into(), prev.clone()),
                    ],
                    format!(
                        "invalid tool arguments at {:.1}% with prompt {cur}, {:.1}% with {prev}",
                        cr * 100.0,
                        pr * 100.0
                    ),
                    cr,
                    pr * va.factor,
                    self.runbook(
                        "invalid_args_after_prompt_change",
                        "examples/runbooks/error-rate-spike.md",
                    ),
                ));
            }
        }
        let q = self.c.quality_regression.clone();
        if q.enabled
            && let [.., (prev, p), (cur, c)] = self.score_versions.as_slice()
            && p.scores >= q.min_count
            && c.scores >= q.min_count
        {
            let (pm, cm) = (p.score_sum / p.scores as f64, c.score_sum / c.scores as f64);
            if cm < pm - q.drop {
                holding.push(mk(
                    "quality_regression",
                    Severity::Warning,
                    vec![
                        ("prompt_version".into(), cur.clone()),
                        ("previous_version".into(), prev.clone()),
                    ],
                    format!(
                        "mean {} fell from {pm:.3} ({prev}) to {cm:.3} ({cur})",
                        q.score_key
                    ),
                    cm,
                    pm - q.drop,
                    self.runbook(
                        "quality_regression",
                        "examples/runbooks/error-rate-spike.md",
                    ),
                ));
            }
        }
        // Start the new ones, clear the ones that stopped holding.
        let mut out = events;
        let mut still = BTreeMap::new();
        for a in holding {
            let key = (a.rule.clone(), a.labels.clone());
            if !self.firing.contains_key(&key) {
                out.push(a.clone());
            }
            still.insert(key, a);
        }
        for (key, mut a) in std::mem::take(&mut self.firing) {
            if !still.contains_key(&key) {
                a.firing = false;
                a.at = now;
                a.summary = format!("resolved: {}", a.summary);
                out.push(a);
            }
        }
        self.firing = still;
        out
    }
}

fn stats_for<'a>(versions: &'a mut Vec<(String, VersionStats)>, v: &str) -> &'a mut VersionStats {
    let i = match versions.iter().position(|(name, _)| name == v) {
        Some(i) => i,
        None => {
            versions.push((v.to_string(), VersionStats::default()));
            // Keep the last few versions only: the comparison needs two.
            if versions.len() > 8 {
                versions.remove(0);
            }
            versions.len() - 1
        }
    };
    &mut versions[i].1
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
