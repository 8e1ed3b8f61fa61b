//! `builtin:webhook`: sends alerts to a URL. The host does the sending: one
//! POST per alert.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `url` | required | the endpoint (`${VAR}` in pipeline.toml keeps secrets out of the file) |
//! | `format` | `"json"` | `json` (plume's alert object), `slack` (an incoming-webhook message), `pagerduty` (an Events API v2 event) |
//! | `routing_key` | none | PagerDuty integration key; required for `pagerduty` |
//! | `headers` | `{}` | extra request headers |
//!
//! Spans are not sent (an empty payload sends nothing).

use plume_sdk::exporter::{Guest, export_exporter};
use plume_sdk::types::{Batch, ExporterManifest, HttpSink, Notification, Part, Severity, Sink};
use serde::Deserialize;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::BTreeMap;

#[derive(Deserialize, Clone, Copy, PartialEq, Debug, Default)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Json,
    Slack,
    Pagerduty,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    #[serde(default)]
    format: Format,
    routing_key: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

thread_local! {
    static CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Page => "page",
    }
}

fn labels(n: &Notification) -> serde_json::Map<String, Value> {
    n.alert
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect()
}

/// The payload for one notification.
fn payload(config: &Config, n: &Notification, first_seen: &str) -> Value {
    let a = &n.alert;
    let status = if a.firing { "firing" } else { "resolved" };
    match config.format {
        Format::Json => json!({
            "id": n.fingerprint, "rule": a.rule, "severity": severity(a.severity), "status": status,
            "labels": labels(n), "summary": a.summary, "value": a.value, "threshold": a.threshold,
            "count": n.count, "first_seen": first_seen, "runbook": a.runbook,
        }),
        Format::Slack => {
            let icon = match (a.firing, a.severity) {
                (false, _) => ":white_check_mark:",
                (true, Severity::Page) => ":rotating_light:",
                (true, _) => ":warning:",
            };
            let label_text: Vec<String> =
                a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            json!({
                "text": format!("{icon} [{}] {} {status}: {}", severity(a.severity).to_uppercase(), a.rule, a.summary),
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text": format!(
                        "{icon} *{}* {status} ({}, raised {} times since {first_seen})\n{}", a.rule, severity(a.severity), n.count, a.summary)}},
                    {"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
                        "{} | runbook: {}", if label_text.is_empty() { "no labels".to_string() } else { label_text.join(" ") }, a.runbook)}]},
                ],
            })
        }
        Format::Pagerduty => json!({
            "routing_key": config.routing_key.clone().unwrap_or_default(),
            "event_action": if a.firing { "trigger" } else { "resolve" },
            "dedup_key": n.fingerprint,
            "payload": {
                "summary": a.summary,
                "source": "plume",
                "severity": match a.severity { Severity::Page => "critical", Severity::Warning => "warning", Severity::Info => "info" },
                "component": a.rule,
                "custom_details": { "labels": labels(n), "value": a.value, "threshold": a.threshold, "count": n.count, "first_seen": first_seen },
            },
            "links": [{ "href": a.runbook, "text": "runbook" }],
        }),
    }
}

struct Webhook;

impl Guest for Webhook {
    fn init(config: String) -> Result<ExporterManifest, String> {
        let c: Config = plume_sdk::parse_config(&config)?;
        if c.format == Format::Pagerduty && c.routing_key.as_deref().unwrap_or_default().is_empty()
        {
            return Err("config.routing_key is required for format = \"pagerduty\"".into());
        }
        let sink = Sink::Http(HttpSink {
            url: c.url.clone(),
            headers: c
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            content_type: "application/json".into(),
        });
        CONFIG.with(|cell| *cell.borrow_mut() = Some(c));
        Ok(ExporterManifest {
            reads: vec![],
            sink,
        })
    }

    fn export_spans(_batch: Batch) -> Result<Vec<Part>, String> {
        Ok(vec![])
    }

    fn export_alerts(notifications: Vec<Notification>) -> Result<Vec<Part>, String> {
        CONFIG.with(|cell| {
            let c = cell.borrow();
            let c = c.as_ref().ok_or("export before init")?;
            // The host sends one notification per call to an HTTP sink; were
            // there more, a JSON array keeps the body valid.
            let bodies: Vec<Value> = notifications
                .iter()
                .map(|n| payload(c, n, &plume_sdk::format_time(n.first_seen)))
                .collect();
            let body = if bodies.len() == 1 {
                bodies[0].to_string()
            } else {
                Value::Array(bodies).to_string()
            };
            Ok(vec![Part::Text(body)])
        })
    }
}

export_exporter!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;
    use plume_sdk::types::Alert;

    fn n(firing: bool) -> Notification {
        Notification {
            alert: Alert {
                rule: "error_rate".into(),
                severity: Severity::Page,
                labels: vec![("model".into(), "gpt-4o".into())],
                summary: "7.0% of gpt-4o calls failed".into(),
                value: 0.07,
                threshold: 0.05,
                runbook: "examples/runbooks/error-rate-spike.md".into(),
                firing,
                at: 5,
            },
            fingerprint: "abc".into(),
            count: 3,
            first_seen: 1,
            destinations: vec![],
        }
    }

    fn config(format: &str) -> Config {
        plume_sdk::parse_config(&format!(
            r#"{{"url":"http://127.0.0.1:9/x","format":"{format}","routing_key":"R"}}"#
        ))
        .unwrap()
    }

    #[test]
    fn pagerduty_events_v2_shape() {
        let p = payload(&config("pagerduty"), &n(true), "t");
        assert_eq!(p["event_action"], "trigger");
        assert_eq!(p["routing_key"], "R");
        assert_eq!(p["dedup_key"], "abc");
        assert_eq!(p["payload"]["severity"], "critical");
        assert_eq!(p["payload"]["source"], "plume");
        assert_eq!(
            p["links"][0]["href"],
            "examples/runbooks/error-rate-spike.md"
        );
        assert_eq!(
            payload(&config("pagerduty"), &n(false), "t")["event_action"],
            "resolve"
        );
    }

    #[test]
    fn slack_and_json_shapes() {
        let s = payload(&config("slack"), &n(true), "t");
        assert!(
            s["text"]
                .as_str()
                .unwrap()
                .starts_with(":rotating_light: [PAGE] error_rate firing")
        );
        assert_eq!(s["blocks"][0]["type"], "section");
        let j = payload(&config("json"), &n(false), "2026-01-01T00:00:00.000Z");
        assert_eq!(j["status"], "resolved");
        assert_eq!(j["count"], 3);
        assert_eq!(j["labels"]["model"], "gpt-4o");
    }
}
