//! Constructed streams with exact expectations.

use super::*;

fn state(json: &str) -> State {
    State::new(plume_sdk::parse_config(json).unwrap()).unwrap()
}

const H: u64 = 3_600_000_000_000;
const DAY0: u64 = 20_000 * DAY; // a UTC midnight

#[test]
fn totals_to_the_cent_by_model_feature_user_and_trace() {
    let mut s = state("{}");
    s.add(
        0.10,
        Some("gpt-4o"),
        Some("chat"),
        Some("u1"),
        "t1",
        DAY0 + H,
    );
    s.add(
        0.25,
        Some("gpt-4o"),
        Some("chat"),
        Some("u2"),
        "t1",
        DAY0 + H,
    );
    s.add(
        1.00,
        Some("claude-sonnet-4-5"),
        Some("triage"),
        None,
        "t2",
        DAY0 + 2 * H,
    );
    let r = s.report()["cost"].clone();
    let cents = |v: &serde_json::Value| (v.as_f64().unwrap() * 100.0).round() as i64;
    assert_eq!(cents(&r["total_usd"]), 135);
    assert_eq!(cents(&r["by_model"]["gpt-4o"]), 35);
    assert_eq!(cents(&r["by_feature"]["triage"]), 100);
    assert_eq!(cents(&r["by_user"]["u2"]), 25);
    assert_eq!(r["top_traces"][0]["trace_id"], "t2");
    assert_eq!(cents(&r["top_traces"][1]["cost_usd"]), 35);
}

/// Six hours into the day, $6 spent, the last hour at $2/h: the projection is
/// 6 + 2 x 18 = $42.
#[test]
fn projection_is_spend_plus_trailing_rate() {
    let mut s = state(r#"{"daily_budget_usd": 50}"#);
    for h in 0..5 {
        s.add(0.8, Some("m"), None, None, "t", DAY0 + h * H + H / 2); // $0.8/h for 5h = $4
    }
    s.add(1.0, Some("m"), None, None, "t", DAY0 + 5 * H + H / 4);
    s.add(1.0, Some("m"), None, None, "t", DAY0 + 5 * H + 3 * H / 4);
    let alerts = s.advance(DAY0 + 6 * H);
    let (spent, projected) = s.projection();
    assert!((spent - 6.0).abs() < 1e-9);
    // Window (5h, 6h]: $2 -> 2/h x 18h left = 36.
    assert!((projected - 42.0).abs() < 1e-9, "{projected}");
    let r = s.report()["cost"].clone();
    assert_eq!(r["over_budget"], false);
    // 42 > 0.8 x 50 = 40: one warning, once per day.
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].rule, "cost_projection");
    assert!(matches!(alerts[0].severity, Severity::Warning));
    assert!(s.advance(DAY0 + 6 * H + 1).is_empty());
}

#[test]
fn hard_limit_pages_once_and_disables_the_feature() {
    let mut s = state(r#"{"hard_limit_usd": {"chat": 1.0}}"#);
    s.add(0.6, Some("m"), Some("chat"), None, "t", DAY0 + H);
    assert!(s.advance(DAY0 + H).is_empty());
    s.add(0.6, Some("m"), Some("chat"), None, "t", DAY0 + 2 * H);
    s.add(0.6, Some("m"), Some("chat"), None, "t", DAY0 + 3 * H);
    s.add(5.0, Some("m"), Some("triage"), None, "t", DAY0 + 3 * H);
    let alerts = s.advance(DAY0 + 3 * H);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].rule, "cost_hard_limit");
    assert!(matches!(alerts[0].severity, Severity::Page));
    assert_eq!(
        s.report()["cost"]["disabled_features"],
        serde_json::json!(["chat"])
    );
    // The next day starts enabled.
    s.advance(DAY0 + DAY + H);
    assert_eq!(
        s.report()["cost"]["disabled_features"],
        serde_json::json!([])
    );
}

/// The budget switch's numbers: per feature, today's spend, its own
/// projection, its limit, and whether it is disabled; limited features appear
/// before they spend.
#[test]
fn features_today_give_spend_projection_limit_and_switch() {
    let mut s = state(r#"{"hard_limit_usd": {"chat": 1.0, "search": 3.0}}"#);
    s.add(
        0.5,
        Some("m"),
        Some("chat"),
        None,
        "t",
        DAY0 + 5 * H + H / 2,
    );
    s.add(
        0.7,
        Some("m"),
        Some("chat"),
        None,
        "t",
        DAY0 + 5 * H + 3 * H / 4,
    );
    s.add(2.0, Some("m"), Some("triage"), None, "t", DAY0 + H); // outside the 1h window
    s.advance(DAY0 + 6 * H);
    let f = s.features_today();
    let chat = &f["chat"];
    assert!((chat["spent_usd"].as_f64().unwrap() - 1.2).abs() < 1e-9);
    // $1.2 in the last hour x 18 h left + 1.2 = 22.8
    assert!(
        (chat["projected_usd"].as_f64().unwrap() - 22.8).abs() < 1e-9,
        "{chat}"
    );
    assert_eq!(chat["limit_usd"], 1.0);
    assert_eq!(chat["disabled"], true);
    let triage = &f["triage"];
    assert_eq!(triage["projected_usd"], 2.0, "no spend in the window");
    assert_eq!(triage["limit_usd"], serde_json::Value::Null);
    assert_eq!(triage["disabled"], false);
    assert_eq!(f["search"]["spent_usd"], 0.0);
    assert_eq!(f["search"]["disabled"], false);
    // A new day: nothing spent, nothing disabled.
    s.advance(DAY0 + DAY + H);
    let f = s.features_today();
    assert_eq!(f.keys().collect::<Vec<_>>(), ["chat", "search"]);
    assert_eq!(f["chat"]["disabled"], false);
}

fn entry<'a>(span: &'a str, tokens: i64, cost: f64, model: &'a str, trace: &'a str) -> Call<'a> {
    Call {
        span,
        tokens,
        cost,
        model: Some(model),
        feature: Some("chat"),
        user: None,
        trace,
        at: DAY0 + H,
    }
}

/// Two records of one call (same response id) and a resent span: one cost,
/// the most complete record's, in whichever order they come.
#[test]
fn a_call_recorded_twice_is_counted_once_in_any_order() {
    let records = [
        (entry("a1", 1000, 0.010, "claude", "t1"), Some("msg_1")),
        // A partial stream snapshot of the same call, in another trace.
        (entry("b2", 900, 0.009, "claude", "t2"), Some("msg_1")),
        (entry("a1", 1000, 0.010, "claude", "t1"), Some("msg_1")),
        // Another call: no response id, always counted.
        (entry("c3", 50, 0.002, "gpt-4o", "t3"), None),
    ];
    let orders: [[usize; 4]; 4] = [[0, 1, 2, 3], [1, 0, 3, 2], [3, 2, 1, 0], [1, 3, 2, 0]];
    for order in orders {
        let mut s = state("{}");
        for i in order {
            let (e, r) = &records[i];
            s.record(*e, *r);
        }
        let r = s.report()["cost"].clone();
        let micros = |v: &serde_json::Value| (v.as_f64().unwrap() * 1e6).round() as i64;
        assert_eq!(micros(&r["total_usd"]), 12_000, "order {order:?}");
        assert_eq!(micros(&r["by_model"]["claude"]), 10_000, "order {order:?}");
        assert_eq!(micros(&r["by_feature"]["chat"]), 12_000, "order {order:?}");
        assert_eq!(r["duplicate_spans"], 2, "order {order:?}");
    }
}

/// After the revision window a response id is forgotten.
#[test]
fn calls_settle_after_the_revision_window() {
    let mut s = state(r#"{"revision_window": "1h"}"#);
    s.record(entry("a", 10, 1.0, "m", "t"), Some("r"));
    s.advance(DAY0 + 3 * H);
    assert!(s.ledger.calls.0.is_empty());
    // The same response id later is a call of its own.
    let mut later = entry("b", 10, 1.0, "m", "t");
    later.at = DAY0 + 3 * H;
    s.record(later, Some("r"));
    let r = s.report()["cost"].clone();
    assert_eq!(
        (r["total_usd"].as_f64(), r["duplicate_spans"].as_u64()),
        (Some(2.0), Some(0))
    );
}

/// A call settles at the end of its window even before its generation of
/// calls is forgotten: a record then is not a revision.
#[test]
fn a_settled_call_is_not_revised_before_it_is_forgotten() {
    let mut s = state(r#"{"revision_window": "1h"}"#);
    s.record(entry("a", 10, 1.0, "m", "t"), Some("r"));
    let mut fresh = entry("x", 5, 1.0, "m", "t");
    fresh.at = DAY0 + 2 * H + 1;
    s.record(fresh, None);
    assert_eq!(s.ledger.calls.0.len(), 1, "not forgotten yet (no tick)");
    let mut fuller = entry("b", 20, 3.0, "m", "t");
    fuller.at = DAY0 + 2 * H + 2;
    s.record(fuller, Some("r"));
    let r = s.report()["cost"].clone();
    assert_eq!(r["revised_calls"], 0);
    assert_eq!(r["total_usd"].as_f64(), Some(5.0));
}

/// What the host keeps across a trap or a reload gives the same ledger back.
#[test]
fn a_snapshot_restores_the_whole_ledger() {
    let mut s = state(r#"{"hard_limit_usd": {"chat": 1.0}, "daily_budget_usd": 10}"#);
    s.add(0.6, Some("m"), Some("chat"), Some("u"), "t1", DAY0 + H);
    s.add(0.6, Some("m"), Some("chat"), None, "t2", DAY0 + 2 * H);
    s.advance(DAY0 + 2 * H);
    let bytes = s.snapshot();
    assert!(!bytes.is_empty());
    let mut fresh = state(r#"{"hard_limit_usd": {"chat": 1.0}, "daily_budget_usd": 10}"#);
    fresh.ledger = plume_sdk::state::load(&bytes).unwrap();
    assert_eq!(fresh.report(), s.report());
    assert_eq!(fresh.features_today()["chat"]["disabled"], true);
}

/// The revision window survives a snapshot: a more complete record of a call
/// counted before the snapshot revises it after the restore, as it would have
/// without one.
#[test]
fn a_snapshot_keeps_calls_revisable() {
    let mut s = state("{}");
    s.record(entry("b2", 900, 0.009, "claude", "t2"), Some("msg_1"));
    s.record(entry("c3", 50, 0.002, "gpt-4o", "t3"), Some("msg_2"));
    let bytes = s.snapshot();
    let mut fresh = state("{}");
    fresh.ledger = plume_sdk::state::load(&bytes).unwrap();
    assert_eq!(
        fresh.ledger.calls.0.generations(),
        s.ledger.calls.0.generations()
    );
    for l in [&mut s, &mut fresh] {
        l.record(entry("a1", 1000, 0.010, "claude", "t1"), Some("msg_1"));
    }
    assert_eq!(fresh.report(), s.report());
    let r = fresh.report()["cost"].clone();
    assert_eq!(r["revised_calls"], 1);
    assert_eq!(
        (r["total_usd"].as_f64().unwrap() * 1e6).round() as i64,
        12_000
    );
}

/// A window of calls longer than one chunk of the snapshot's records (and
/// traces past one chunk) comes back whole.
#[test]
fn a_snapshot_of_many_calls_comes_back_whole() {
    let mut s = state("{}");
    for i in 0..2_500 {
        let (span, trace) = (format!("{i:016x}"), format!("{i:032x}"));
        s.record(
            entry(&span, 100 + i, 0.001, "claude", &trace),
            Some(&format!("msg_{i}")),
        );
    }
    let bytes = s.snapshot();
    let mut fresh = state("{}");
    fresh.ledger = plume_sdk::state::load(&bytes).unwrap();
    assert_eq!(fresh.ledger.calls.0.len(), 2_500);
    assert_eq!(
        fresh.ledger.calls.0.generations(),
        s.ledger.calls.0.generations()
    );
    assert_eq!(fresh.ledger.by_trace, s.ledger.by_trace);
    assert_eq!(fresh.report(), s.report());
}

/// The projection window's memory does not grow with traffic: an hour of
/// calls, one every 36 ms, lands in at most 61 buckets, and the projection
/// still sees all of it.
#[test]
fn the_window_is_bounded_whatever_the_traffic() {
    let mut s = state("{}");
    let n = 100_000u64;
    for i in 0..n {
        s.add(0.01, Some("m"), Some("chat"), None, "t", DAY0 + i * (H / n));
    }
    s.advance(DAY0 + H - 1);
    assert!(s.ledger.recent.len() <= 61, "{}", s.ledger.recent.len());
    let in_window: f64 = s.in_window().map(|b| b.total).sum();
    assert!((in_window - 1000.0).abs() < 1e-6, "{in_window}");
}

/// The per-trace map stays bounded and keeps the most expensive traces:
/// 50,000 traces, each costing its number in micro-dollars; the top ten are
/// the last ten, and the total still counts every one.
#[test]
fn per_trace_spend_is_bounded_and_keeps_the_most_expensive() {
    let mut s = state(r#"{"top_traces": 10}"#);
    for i in 0..50_000u64 {
        s.add(
            i as f64 * 1e-6,
            Some("m"),
            Some("chat"),
            None,
            &format!("t{i:05}"),
            DAY0 + i,
        );
    }
    assert!(
        s.ledger.by_trace.len() <= MAX_TRACES,
        "{}",
        s.ledger.by_trace.len()
    );
    let r = s.report()["cost"].clone();
    let top: Vec<&str> = r["top_traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        top,
        (49_990..50_000u64)
            .rev()
            .map(|i| format!("t{i:05}"))
            .collect::<Vec<_>>()
    );
    let expected: f64 = (0..50_000u64).map(|i| i as f64 * 1e-6).sum();
    assert!((r["total_usd"].as_f64().unwrap() - expected).abs() < 1e-6);
}
