//! Constructed streams with known percentiles.

use super::*;

fn state(json: &str) -> State {
    State::new(plume_sdk::parse_config(json).unwrap()).unwrap()
}

fn g(model: &str) -> Vec<Option<String>> {
    vec![Some(model.into()), Some("chat".into())]
}

const MS: u64 = 1_000_000;
const MIN: u64 = 60_000_000_000;

/// 1..=10000 ms: p50 = 5000, p95 = 9500, p99 = 9900; DDSketch is within 1%.
#[test]
fn percentiles_within_one_percent() {
    let mut s = state("{}");
    for i in 1..=10_000u64 {
        s.observe(&g("gpt-4o"), i * 1000, i * MS);
    }
    let r = s.report();
    let row = &r["latency"][0];
    assert_eq!(row["group"]["model"], "gpt-4o");
    assert_eq!(row["count"], 10_000);
    for (k, want) in [("p50_ms", 5000.0), ("p95_ms", 9500.0), ("p99_ms", 9900.0)] {
        let got = row[k].as_f64().unwrap();
        assert!((got - want).abs() / want <= 0.01, "{k}: {got} vs {want}");
    }
}

#[test]
fn time_window_rolls_in_event_time() {
    let mut s = state(r#"{"window": "1h"}"#);
    // An hour of slow calls, then an hour of fast ones.
    for i in 0..600u64 {
        s.observe(&g("m"), i * 6_000_000_000, 10_000 * MS);
    }
    for i in 600..1200u64 {
        s.observe(&g("m"), i * 6_000_000_000, 100 * MS);
    }
    s.advance(1200 * 6_000_000_000);
    let p99 = s.report()["latency"][0]["p99_ms"].as_f64().unwrap();
    assert!(
        (p99 - 100.0).abs() <= 1.0,
        "the slow hour has left the window: {p99}"
    );
    // A span older than the window is late and not counted.
    s.observe(&g("m"), 0, 50_000 * MS);
    assert_eq!(s.late, 1);
    assert!(s.report()["latency"][0]["p99_ms"].as_f64().unwrap() < 101.0);
}

#[test]
fn count_window_keeps_the_last_spans() {
    let mut s = state(r#"{"window_spans": 1000}"#);
    for i in 0..5000u64 {
        s.observe(&g("m"), i * MIN, if i < 4000 { 5000 * MS } else { 10 * MS });
    }
    let row = &s.report()["latency"][0];
    assert_eq!(row["count"], 1000);
    assert!((row["p99_ms"].as_f64().unwrap() - 10.0).abs() < 0.2);
}

#[test]
fn groups_are_bounded() {
    let mut s = state(r#"{"max_groups": 2, "group_by": ["model"]}"#);
    for m in ["a", "b", "c", "d"] {
        s.observe(&[Some(m.into())], 1, MS);
    }
    let rows = s.report()["latency"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2]["group"]["model"], "overflow");
    assert_eq!(rows[2]["count"], 2);
}

#[test]
fn config_errors_are_clear() {
    let e = State::new(plume_sdk::parse_config(r#"{"window": "5 parsecs"}"#).unwrap())
        .err()
        .unwrap();
    assert!(e.contains("config.window"), "{e}");
    assert!(
        State::new(plume_sdk::parse_config(r#"{"window": "1h", "window_spans": 5}"#).unwrap())
            .is_err()
    );
}

/// Memory per group is bounded: after 10 million spans spread over six orders
/// of magnitude of latency and a day of event time, the group's window holds
/// at most 12 sketches of at most 2048 bins. Prints the serialised size (a
/// proxy for its memory) for BENCHMARKS.md:
/// `cargo test --release -p plume-plugin-latency -- --nocapture ten_million`.
#[test]
fn memory_is_bounded_at_ten_million_spans() {
    let mut s = state("{}");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut sizes = Vec::new();
    for i in 0..10_000_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // 0.01 ms .. 10 s, log-uniform-ish.
        let ns = 10_000 + (x % 1_000_000) * (1 + (x >> 40) % 10_000);
        s.observe(&g("m"), i * 8_640_000, ns); // 10M spans over one day
        if i % 2_500_000 == 2_499_999 {
            let r = s.groups.values().next().unwrap();
            sizes.push(plume_sdk::state::save(r).len());
        }
    }
    println!("serialised window size after 2.5M, 5M, 7.5M, 10M spans: {sizes:?} bytes");
    let last = *sizes.last().unwrap();
    assert!(last < 12 * 2048 * 24, "{last} bytes");
    assert!(
        sizes.windows(2).all(|w| w[1] < w[0] * 2),
        "no growth with traffic: {sizes:?}"
    );
}

/// A group key's values are filled in place, span after span, with what the
/// report shows: strings as they are, numbers as text, nothing for the rest.
#[test]
fn group_values_fill_in_place() {
    let mut slot = None;
    for (value, expected) in [
        (ValueRef::Str("gpt-4o"), Some("gpt-4o")),
        (ValueRef::Int(7), Some("7")),
        (ValueRef::Float(0.5), Some("0.5")),
        (ValueRef::Str("7"), Some("7")),
        (ValueRef::Boolean(true), None),
        (ValueRef::Absent, None),
        (ValueRef::Str("chat"), Some("chat")),
    ] {
        fill_group_value(&mut slot, value);
        assert_eq!(slot.as_deref(), expected, "{value:?}");
    }
}
