//! `builtin:jsonl`: writes spans, and alerts routed to it, as JSON lines.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `path` | `"-"` | file to append to; `-` is standard output |
//! | `format` | `"flat"` | `flat` (plume's span JSONL) or `otlp-json` (one `ExportTraceServiceRequest` per line) |
//! | `rotate_bytes` | `0` (never) | rotate before the file would pass this size: `path` becomes `path.1`, `path.1` becomes `path.2`, ... |
//! | `keep` | `5` | rotated files kept; older ones are removed |
//!
//! The host renders each span (it owns the data); this plugin only chooses the
//! format and frames the lines, so exporting costs no copy through the guest.

use plume_sdk::exporter::{Guest, export_exporter};
use plume_sdk::types::{
    Batch, ExporterManifest, FileSink, LineFormat, Notification, Part, Severity, Sink, SpanLines,
};
use serde::Deserialize;
use std::cell::Cell;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_path")]
    path: String,
    #[serde(default)]
    format: Format,
    #[serde(default)]
    rotate_bytes: u64,
    #[serde(default = "default_keep")]
    keep: u32,
}

fn default_keep() -> u32 {
    5
}

fn default_path() -> String {
    "-".to_string()
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Debug)]
#[serde(rename_all = "kebab-case")]
enum Format {
    #[default]
    Flat,
    OtlpJson,
}

thread_local! {
    static FORMAT: Cell<Format> = const { Cell::new(Format::Flat) };
}

struct Jsonl;

impl Guest for Jsonl {
    fn init(config: String) -> Result<ExporterManifest, String> {
        let config: Config = plume_sdk::parse_config(&config)?;
        if config.path.is_empty() {
            return Err("config.path must not be empty".into());
        }
        FORMAT.with(|f| f.set(config.format));
        Ok(ExporterManifest {
            reads: vec![],
            sink: Sink::File(FileSink {
                path: config.path,
                rotate_bytes: config.rotate_bytes,
                keep: config.keep,
            }),
        })
    }

    fn export_spans(batch: Batch) -> Result<Vec<Part>, String> {
        let format = FORMAT.with(|f| f.get());
        Ok(span_lines(batch.rows, format))
    }

    fn export_alerts(notifications: Vec<Notification>) -> Result<Vec<Part>, String> {
        let mut out = String::new();
        for n in &notifications {
            out.push_str(&alert_line(n));
            out.push('\n');
        }
        Ok(vec![Part::Text(out)])
    }
}

/// One host-rendered span per line.
/// Every row, one per line: one part for the batch (a part per row, and a
/// `text("\n")` after each, cost two allocations a span on each side of
/// the boundary; BENCHMARKS.md).
fn span_lines(rows: u32, format: Format) -> Vec<Part> {
    vec![Part::SpanLines(SpanLines {
        rows: (0..rows).collect(),
        format: match format {
            Format::Flat => LineFormat::Flat,
            Format::OtlpJson => LineFormat::OtlpJson,
        },
    })]
}

fn alert_line(n: &Notification) -> String {
    let a = &n.alert;
    let labels: serde_json::Map<String, serde_json::Value> = a
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
        .collect();
    serde_json::json!({
        "type": "alert",
        "id": n.fingerprint,
        "rule": a.rule,
        "severity": severity_name(a.severity),
        "status": if a.firing { "firing" } else { "resolved" },
        "labels": labels,
        "summary": a.summary,
        "value": a.value,
        "threshold": a.threshold,
        "count": n.count,
        "first_seen_unix_nano": n.first_seen,
        "at_unix_nano": a.at,
        "runbook": a.runbook,
    })
    .to_string()
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Page => "page",
    }
}

export_exporter!(Jsonl);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_to_stdout_flat() {
        let c: Config = plume_sdk::parse_config("{}").unwrap();
        assert_eq!(c.path, "-");
        assert_eq!(c.format, Format::Flat);
    }

    #[test]
    fn config_rejects_unknown_keys() {
        let e = plume_sdk::parse_config::<Config>(r#"{"paht":"x"}"#)
            .err()
            .unwrap();
        assert!(e.contains("paht"), "{e}");
    }

    #[test]
    fn one_line_per_row() {
        let parts = span_lines(3, Format::OtlpJson);
        assert_eq!(parts.len(), 1);
        assert!(matches!(&parts[0], Part::SpanLines(l)
            if l.rows == [0, 1, 2] && l.format == LineFormat::OtlpJson));
        let parts = span_lines(2, Format::Flat);
        assert!(matches!(&parts[0], Part::SpanLines(l)
            if l.rows == [0, 1] && l.format == LineFormat::Flat));
    }
}
