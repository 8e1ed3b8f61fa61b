//! Constructed streams: each rule fires at its threshold, once, and clears.

use super::*;

fn rules(json: &str) -> Rules {
    Rules::new(serde_json::from_str(json).unwrap()).unwrap()
}

fn obs(at: u64) -> Observation {
    Observation {
        latency_group: Some("gpt-4o".into()),
        error_group: Some("gpt-4o".into()),
        failed: false,
        duration_ns: 1_000_000_000,
        at,
        operation: "chat".into(),
        truncated: false,
        trace: "t".into(),
        tool: None,
        invalid_args: false,
        args_version: None,
        score: None,
        score_version: None,
    }
}

const T0: u64 = 500_000 * MINUTE;

#[test]
fn p99_at_three_times_baseline() {
    let mut r = rules("{}");
    // An hour at 1 s.
    for i in 0..600 {
        r.observe(obs(T0 + i * MINUTE / 10));
    }
    assert!(r.tick(T0 + 60 * MINUTE - 1).is_empty());
    // Five minutes at 3.5 s: p99 above 3x the 1 s baseline.
    for i in 0..100 {
        let mut o = obs(T0 + 60 * MINUTE + i * MINUTE / 20);
        o.duration_ns = 3_500_000_000;
        r.observe(o);
    }
    let a = r.tick(T0 + 65 * MINUTE - 1);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].rule, "latency_p99");
    assert!(
        r.tick(T0 + 65 * MINUTE - 1).is_empty(),
        "still holding: no repeat"
    );
    // Back to 1 s for 5 minutes: clears.
    for i in 0..100 {
        r.observe(obs(T0 + 65 * MINUTE + i * MINUTE / 20));
    }
    let a = r.tick(T0 + 70 * MINUTE - 1);
    assert!(a.iter().any(|x| x.rule == "latency_p99" && !x.firing));
}

#[test]
fn error_rate_above_five_percent_with_minimum_count() {
    let mut r = rules(r#"{"latency_p99": {"enabled": false}}"#);
    // 19 spans, 5 failed: above 5% but under the minimum count.
    for i in 0..19 {
        let mut o = obs(T0 + i);
        o.failed = i < 5;
        r.observe(o);
    }
    assert!(r.tick(T0 + MINUTE).is_empty());
    // 100 spans at exactly 5%: not above.
    let mut r = rules("{}");
    for i in 0..100 {
        let mut o = obs(T0 + i);
        o.failed = i < 5;
        r.observe(o);
    }
    assert!(r.tick(T0 + 1000).is_empty());
    let mut o = obs(T0 + 2000);
    o.failed = true;
    r.observe(o);
    let a = r.tick(T0 + 2000);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].rule, "error_rate");
    assert_eq!(
        a[0].labels,
        vec![("gen_ai.request.model".to_string(), "gpt-4o".to_string())]
    );
}

#[test]
fn agent_loop_fires_once_per_trace_and_tool() {
    let mut r = rules(r#"{"agent_loop": {"calls": 3}}"#);
    for i in 0..5 {
        let mut o = obs(T0 + i);
        o.operation = "execute_tool".into();
        o.tool = Some("search".into());
        r.observe(o);
    }
    let a = r.tick(T0 + 10);
    assert_eq!(a.iter().filter(|x| x.rule == "agent_loop").count(), 1);
    assert!(r.tick(T0 + 20).iter().all(|x| x.rule != "agent_loop"));
}

#[test]
fn truncation_invalid_args_and_quality_after_prompt_change() {
    let mut r = rules("{}");
    for i in 0..40u64 {
        let mut o = obs(T0 + i);
        o.truncated = i % 5 == 0; // 20% truncated
        r.observe(o);
        let mut t = obs(T0 + i);
        t.operation = "execute_tool".into();
        t.tool = Some("search".into());
        t.trace = format!("trace-{i}");
        t.args_version = Some(if i < 20 { "v1" } else { "v2" }.into());
        t.invalid_args = i >= 20 && i % 4 == 0; // v1: 0%, v2: 25%
        t.score_version = t.args_version.clone();
        t.score = Some(if i < 20 { 0.9 } else { 0.7 });
        r.observe(t);
    }
    let a = r.tick(T0 + MINUTE);
    let rules: Vec<&str> = a.iter().map(|x| x.rule.as_str()).collect();
    assert!(rules.contains(&"truncation_rate"), "{rules:?}");
    assert!(
        rules.contains(&"invalid_args_after_prompt_change"),
        "{rules:?}"
    );
    assert!(rules.contains(&"quality_regression"), "{rules:?}");
    let q = a.iter().find(|x| x.rule == "quality_regression").unwrap();
    assert!(
        q.labels
            .contains(&("prompt_version".to_string(), "v2".to_string()))
    );
}
