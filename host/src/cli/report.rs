//! `plume report`: the report's sections as tables (or JSON), read from a
//! report file written by `plume replay --report`.

use anyhow::{Context, bail};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Which section.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Section {
    /// p50/p95/p99 per group.
    Latency,
    /// Totals, budget and projection.
    Cost,
    /// Burn rates and states.
    Slo,
    /// Alerts seen.
    Alerts,
    /// Per-trace summaries: the most expensive, slowest and failing traces.
    Traces,
}

/// Arguments of `plume report`.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// The section to show.
    section: Section,
    /// A report written by `plume replay --report`.
    #[arg(long)]
    file: Option<PathBuf>,
    /// A running service's API, e.g. http://127.0.0.1:9464.
    #[arg(long)]
    api: Option<String>,
    /// Print the section as JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn report(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let report: Value = match (&args.file, &args.api) {
        (Some(f), _) => serde_json::from_slice(
            &std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?,
        )
        .with_context(|| format!("{} is not a plume report", f.display()))?,
        (None, Some(api)) => {
            let url = format!("{}/v1/reports", api.trim_end_matches('/'));
            let body = ureq::get(&url)
                .call()
                .with_context(|| format!("cannot read {url}"))?
                .body_mut()
                .read_to_string()
                .with_context(|| format!("cannot read {url}"))?;
            serde_json::from_str(&body)
                .with_context(|| format!("{url} did not answer a plume report"))?
        }
        (None, None) => bail!(
            "give --api URL (a running `plume run` with [api] listen) or --file REPORT.json (from `plume replay --report`)"
        ),
    };
    let key = match args.section {
        Section::Latency => "latency",
        Section::Cost => "cost",
        Section::Slo => "slo",
        Section::Alerts => "alerts",
        Section::Traces => "traces",
    };
    let section = report.get(key).cloned().unwrap_or(Value::Null);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&section)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render(args.section, &section));
    Ok(ExitCode::SUCCESS)
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map(|f| format!("{f:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Aligned columns.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect(), &mut out);
    for r in rows {
        line(r, &mut out);
    }
    out
}

/// A section as text.
pub fn render(section: Section, v: &Value) -> String {
    let empty = Vec::new();
    match section {
        Section::Traces => {
            let mut out = String::new();
            let _ = writeln!(
                out,
                "{} traces kept ({} seen)   with errors {}   multi-agent {}   with stitched sub-agents {}   max depth {}   duration p50 {} ms  p95 {} ms  p99 {} ms",
                text(&v["kept"]),
                text(&v["seen"]),
                text(&v["with_errors"]),
                text(&v["multi_agent"]),
                text(&v["with_stitched_sub_agents"]),
                text(&v["max_depth"]),
                num(&v["duration_ms"]["p50"], 1),
                num(&v["duration_ms"]["p95"], 1),
                num(&v["duration_ms"]["p99"], 1),
            );
            for (title, key) in [
                ("MOST EXPENSIVE", "most_expensive"),
                ("SLOWEST", "slowest"),
                ("LATEST WITH ERRORS", "latest_with_errors"),
            ] {
                let rows = v[key].as_array().unwrap_or(&empty).iter().map(|t| {
                    let agents = t["agents"]
                        .as_array()
                        .map(|a| a.iter().map(text).collect::<Vec<_>>().join(","))
                        .unwrap_or_default();
                    vec![
                        text(&t["trace_id"]),
                        text(&t["spans"]),
                        agents,
                        text(&t["depth"]),
                        num(&t["cost_usd"], 4),
                        num(&t["duration_ms"], 1),
                        text(&t["errors"]),
                    ]
                });
                let _ = writeln!(out, "\n{title}");
                out.push_str(&table(
                    &["TRACE", "SPANS", "AGENTS", "DEPTH", "USD", "MS", "ERRORS"],
                    rows.collect(),
                ));
            }
            out
        }
        Section::Latency => {
            let rows = v.as_array().unwrap_or(&empty).iter().map(|r| {
                let group = r["group"]
                    .as_object()
                    .map(|g| {
                        g.iter()
                            .map(|(k, v)| format!("{k}={}", text(v)))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                vec![
                    group,
                    text(&r["count"]),
                    num(&r["p50_ms"], 1),
                    num(&r["p95_ms"], 1),
                    num(&r["p99_ms"], 1),
                ]
            });
            table(
                &["GROUP", "COUNT", "P50 MS", "P95 MS", "P99 MS"],
                rows.collect(),
            )
        }
        Section::Cost => {
            let mut out = String::new();
            let _ = writeln!(
                out,
                "total ${}   today ${}   projected ${}   budget {}   over budget: {}",
                num(&v["total_usd"], 4),
                num(&v["spent_today_usd"], 4),
                num(&v["projected_daily_usd"], 4),
                v["daily_budget_usd"]
                    .as_f64()
                    .map(|b| format!("${b:.2}"))
                    .unwrap_or_else(|| "-".into()),
                text(&v["over_budget"])
            );
            for (title, key) in [
                ("MODEL", "by_model"),
                ("FEATURE", "by_feature"),
                ("USER", "by_user"),
            ] {
                let mut rows: Vec<(String, f64)> = v[key]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, c)| (k.clone(), c.as_f64().unwrap_or(0.0)))
                            .collect()
                    })
                    .unwrap_or_default();
                rows.sort_by(|a, b| b.1.total_cmp(&a.1));
                out.push('\n');
                out.push_str(&table(
                    &[title, "USD"],
                    rows.into_iter()
                        .map(|(k, c)| vec![k, format!("{c:.4}")])
                        .collect(),
                ));
            }
            if let Some(d) = v["disabled_features"].as_array().filter(|d| !d.is_empty()) {
                let _ = writeln!(
                    out,
                    "\ndisabled (hard limit): {}",
                    d.iter().map(text).collect::<Vec<_>>().join(", ")
                );
            }
            out
        }
        Section::Slo => {
            let rows = v.as_array().unwrap_or(&empty).iter().map(|r| {
                let burns = r["burn_rates"]
                    .as_object()
                    .map(|b| {
                        b.iter()
                            .map(|(w, x)| format!("{w}={}", num(x, 2)))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                vec![
                    text(&r["name"]),
                    text(&r["objective"]),
                    burns,
                    text(&r["state"]),
                ]
            });
            table(&["SLO", "OBJECTIVE", "BURN RATES", "STATE"], rows.collect())
        }
        Section::Alerts => {
            let rows = v.as_array().unwrap_or(&empty).iter().map(|r| {
                vec![
                    text(&r["id"]),
                    text(&r["rule"]),
                    text(&r["severity"]),
                    text(&r["status"]),
                    text(&r["first_seen"]),
                    text(&r["count"]),
                    text(&r["runbook"]),
                ]
            });
            table(
                &[
                    "ID",
                    "RULE",
                    "SEVERITY",
                    "STATUS",
                    "FIRST SEEN",
                    "COUNT",
                    "RUNBOOK",
                ],
                rows.collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_show_every_row() {
        let latency = serde_json::json!([{"group":{"model":"gpt-4o","operation":"chat"},"count":1000,"p50_ms":812.0,"p95_ms":2300.0,"p99_ms":9100.0}]);
        let t = render(Section::Latency, &latency);
        assert!(t.starts_with("GROUP"));
        assert!(
            t.contains("model=gpt-4o operation=chat  1000   812.0   2300.0  9100.0"),
            "{t}"
        );
        let slo = serde_json::json!([{"name":"slo-chat","objective":0.995,"burn_rates":{"1h":3.1,"5m":12.0},"state":"page"}]);
        assert!(render(Section::Slo, &slo).contains("slo-chat  0.995      1h=3.10 5m=12.00  page"));
        let cost = serde_json::json!({"total_usd":12.5,"by_model":{"a":10.0,"b":2.5},"by_feature":{},"by_user":{},"daily_budget_usd":50.0,"projected_daily_usd":61.2,"over_budget":true});
        let c = render(Section::Cost, &cost);
        assert!(
            c.contains("projected $61.2000") && c.contains("over budget: true"),
            "{c}"
        );
        assert!(
            c.find("a      10.0000").unwrap() < c.find("b      2.5000").unwrap(),
            "{c}"
        );
    }
}
