//! Deduplication, repeat intervals, grouping, resolution and routes.

use super::*;

const MIN: u64 = 60_000_000_000;

fn state(json: &str) -> State {
    State::new(plume_sdk::parse_config(json).unwrap()).unwrap()
}

fn alert(rule: &str, severity: Severity, labels: &[(&str, &str)], firing: bool, at: u64) -> Alert {
    Alert {
        rule: rule.into(),
        severity,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        summary: format!("{rule} {labels:?}"),
        value: 1.0,
        threshold: 0.5,
        runbook: "examples/runbooks/error-rate-spike.md".into(),
        firing,
        at,
    }
}

/// An evaluator that raises the same alert every minute for ten minutes
/// yields one notification, whose count then says how often it was raised;
/// clearing sends one resolved notice.
#[test]
fn ten_minutes_of_one_condition_is_one_notification() {
    let mut s = state(r#"{"repeat_interval": "1h"}"#);
    let mut sent = Vec::new();
    for m in 0..10 {
        sent.extend(s.route(
            vec![alert(
                "error_rate",
                Severity::Page,
                &[("model", "gpt-4o")],
                true,
                m * MIN,
            )],
            m * MIN,
        ));
    }
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].count, 1);
    let report = s.report(|t| t.to_string());
    assert_eq!(report["alerts"][0]["count"], 10);
    assert_eq!(report["alerts"][0]["status"], "firing");
    let resolved = s.route(
        vec![alert(
            "error_rate",
            Severity::Page,
            &[("model", "gpt-4o")],
            false,
            11 * MIN,
        )],
        11 * MIN,
    );
    assert_eq!(resolved.len(), 1);
    assert!(!resolved[0].alert.firing);
    assert_eq!(resolved[0].count, 10);
    assert_eq!(
        s.report(|t| t.to_string())["alerts"][0]["status"],
        "resolved"
    );
}

#[test]
fn repeats_after_the_interval_with_the_count() {
    let mut s = state(r#"{"repeat_interval": "30m"}"#);
    let mut sent = Vec::new();
    for m in 0..61 {
        sent.extend(s.route(
            vec![alert("slo_burn", Severity::Warning, &[], true, m * MIN)],
            m * MIN,
        ));
    }
    assert_eq!(
        sent.iter().map(|n| n.count).collect::<Vec<_>>(),
        vec![1, 31, 61]
    );
}

#[test]
fn different_labels_are_different_alerts_and_same_rule_groups() {
    let mut s = state("{}");
    let out = s.route(
        vec![
            alert("error_rate", Severity::Warning, &[("model", "a")], true, 0),
            alert("error_rate", Severity::Page, &[("model", "b")], true, 0),
            alert("latency_p99", Severity::Warning, &[("model", "a")], true, 0),
        ],
        0,
    );
    assert_eq!(out.len(), 2, "grouped by rule");
    let er = out.iter().find(|n| n.alert.rule == "error_rate").unwrap();
    assert!(
        matches!(er.alert.severity, Severity::Page),
        "the most severe leads"
    );
    assert!(er.alert.summary.contains("and 1 more"));
    assert_eq!(
        s.report(|t| t.to_string())["alerts"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn routes_by_severity_and_labels() {
    let mut s = state(
        r#"{"routes": [{"severity": "page", "labels": {"feature": "chat"}, "to": ["pager"]},
                       {"severity": "page", "to": ["oncall"]}],
            "default_to": ["slack"], "group_by": ["rule", "feature"]}"#,
    );
    let out = s.route(
        vec![
            alert(
                "cost_hard_limit",
                Severity::Page,
                &[("feature", "chat")],
                true,
                0,
            ),
            alert(
                "cost_hard_limit",
                Severity::Page,
                &[("feature", "triage")],
                true,
                0,
            ),
            alert("cost_projection", Severity::Warning, &[], true, 0),
        ],
        0,
    );
    let to = |rule: &str, feature: &str| {
        out.iter()
            .find(|n| {
                n.alert.rule == rule
                    && n.alert
                        .labels
                        .iter()
                        .all(|(k, v)| k != "feature" || v == feature)
            })
            .unwrap()
            .destinations
            .clone()
    };
    assert_eq!(to("cost_hard_limit", "chat"), vec!["pager"]);
    assert_eq!(to("cost_hard_limit", "triage"), vec!["oncall"]);
    assert_eq!(to("cost_projection", ""), vec!["slack"]);
}

#[test]
fn fingerprints_ignore_label_order() {
    let a = alert("r", Severity::Info, &[("a", "1"), ("b", "2")], true, 0);
    let b = alert("r", Severity::Page, &[("b", "2"), ("a", "1")], true, 5);
    assert_eq!(fingerprint(&a), fingerprint(&b));
    assert_ne!(
        fingerprint(&a),
        fingerprint(&alert("r", Severity::Info, &[("a", "2")], true, 0))
    );
}
