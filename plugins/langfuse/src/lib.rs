//! `builtin:langfuse`: sends spans to Langfuse through its OTLP endpoint
//! (`/api/public/otel/v1/traces`, OTLP/HTTP protobuf, Basic auth with the
//! project's public and secret keys).
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `host` | `"https://cloud.langfuse.com"` | the Langfuse base URL (self-hosted: yours) |
//! | `public_key` | required | `pk-lf-...`; write `"${LANGFUSE_PUBLIC_KEY}"` to take it from the environment |
//! | `secret_key` | required | `sk-lf-...`; write `"${LANGFUSE_SECRET_KEY}"` |
//! | `headers` | `{}` | extra request headers |
//!
//! Langfuse sums cost over every observation of a trace, so a model call
//! recorded by two spans (a framework span around a provider span, an agent
//! span restating its calls) is billed twice there. This exporter sends what
//! `builtin:call-dedup` decided: on spans with `plume.cost.counted = false`
//! the usage and cost attributes are left out of the payload (the span itself
//! is sent, with `plume.cost.duplicate_of`), and the counted span carries
//! plume's own price as `langfuse.observation.cost_details`, so Langfuse shows
//! the cost from the pricing table the team configured. The spans other
//! exporters send are not changed.

use base64::Engine as _;
use plume_sdk::exporter::{Guest, export_exporter};
use plume_sdk::types::{
    Batch, ExporterManifest, Field, HttpSink, Notification, OtlpSpans, Part, Sink, Value,
};
use plume_sdk::{Rows, ValueRef};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_host")]
    host: String,
    public_key: String,
    secret_key: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

fn default_host() -> String {
    "https://cloud.langfuse.com".into()
}

/// Fields read from each span, in this order.
const READS: [&str; 7] = [
    "plume.cost.counted",
    "gen_ai.usage.cost",
    "plume.cost.input",
    "plume.cost.output",
    "plume.cost.cache_read",
    "plume.cost.cache_write",
    "plume.cost.reasoning",
];

/// Usage and cost spellings Langfuse reads (see the attribute reference):
/// left out of a duplicate record so Langfuse neither sums nor re-prices it.
const USAGE_PREFIXES: [&str; 5] = [
    "gen_ai.usage.*",
    "llm.token_count.*",
    "llm.cost.*",
    "ai.usage.*",
    "langfuse.observation.usage_details",
];

fn sink(c: &Config) -> Result<Sink, String> {
    if c.public_key.is_empty() || c.secret_key.is_empty() {
        return Err(
            "config.public_key and config.secret_key are required (e.g. \"${LANGFUSE_PUBLIC_KEY}\")"
                .into(),
        );
    }
    if !(c.host.starts_with("http://") || c.host.starts_with("https://")) {
        return Err(format!(
            "config.host must start with http:// or https://, got {:?}",
            c.host
        ));
    }
    let credentials = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", c.public_key, c.secret_key));
    let mut headers = vec![("authorization".to_string(), format!("Basic {credentials}"))];
    headers.extend(c.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(Sink::Http(HttpSink {
        url: format!("{}/api/public/otel/v1/traces", c.host.trim_end_matches('/')),
        headers,
        content_type: "application/x-protobuf".into(),
    }))
}

/// The payload-only edits for one span.
fn edits(row: u32, values: &[ValueRef<'_>], out: &mut Vec<(u32, String, Value)>) {
    if values[0].as_bool() == Some(false) {
        for key in USAGE_PREFIXES {
            out.push((row, key.to_string(), Value::Absent));
        }
        return;
    }
    let Some(total) = values[1].as_f64() else {
        return;
    };
    let mut details = serde_json::Map::new();
    for (i, name) in ["input", "output", "cache_read", "cache_write", "reasoning"]
        .iter()
        .enumerate()
    {
        if let Some(v) = values[2 + i].as_f64() {
            details.insert((*name).to_string(), v.into());
        }
    }
    details.insert("total".into(), total.into());
    out.push((
        row,
        "langfuse.observation.cost_details".into(),
        Value::Json(serde_json::Value::Object(details).to_string()),
    ));
}

struct Langfuse;

impl Guest for Langfuse {
    fn init(config: String) -> Result<ExporterManifest, String> {
        let c: Config = plume_sdk::parse_config(&config)?;
        Ok(ExporterManifest {
            reads: READS
                .iter()
                .map(|k| Field::Attribute((*k).to_string()))
                .collect(),
            sink: sink(&c)?,
        })
    }

    fn export_spans(batch: Batch) -> Result<Vec<Part>, String> {
        if batch.rows == 0 {
            return Ok(vec![]);
        }
        let rows = Rows::new(&batch, READS.len())?;
        let mut out = Vec::new();
        for (row, values) in rows.iter() {
            edits(row, values, &mut out);
        }
        Ok(vec![Part::SpansOtlpProto(OtlpSpans {
            rows: (0..batch.rows).collect(),
            edits: out,
        })])
    }

    fn export_alerts(_: Vec<Notification>) -> Result<Vec<Part>, String> {
        Ok(vec![])
    }
}

export_exporter!(Langfuse);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_from_the_two_keys() {
        let c = Config {
            host: "http://127.0.0.1:3000/".into(),
            public_key: "pk-lf-1".into(),
            secret_key: "sk-lf-2".into(),
            headers: BTreeMap::new(),
        };
        let Sink::Http(h) = sink(&c).unwrap() else {
            panic!("expected HTTP")
        };
        assert_eq!(h.url, "http://127.0.0.1:3000/api/public/otel/v1/traces");
        // base64("pk-lf-1:sk-lf-2")
        assert_eq!(h.headers[0].1, "Basic cGstbGYtMTpzay1sZi0y");
        let empty = Config {
            public_key: String::new(),
            ..c
        };
        assert!(sink(&empty).is_err());
    }

    #[test]
    fn duplicates_lose_their_usage_and_counted_calls_carry_plume_cost() {
        let mut out = Vec::new();
        let dup = [
            ValueRef::Boolean(false),
            ValueRef::Float(0.01),
            ValueRef::Absent,
            ValueRef::Absent,
            ValueRef::Absent,
            ValueRef::Absent,
            ValueRef::Absent,
        ];
        edits(3, &dup, &mut out);
        assert_eq!(out.len(), USAGE_PREFIXES.len());
        assert!(out.iter().all(|(r, _, v)| *r == 3 && *v == Value::Absent));
        out.clear();
        let counted = [
            ValueRef::Boolean(true),
            ValueRef::Float(0.5),
            ValueRef::Float(0.2),
            ValueRef::Float(0.3),
            ValueRef::Absent,
            ValueRef::Absent,
            ValueRef::Absent,
        ];
        edits(1, &counted, &mut out);
        assert_eq!(out.len(), 1);
        let Value::Json(j) = &out[0].2 else {
            panic!("expected JSON")
        };
        let v: serde_json::Value = serde_json::from_str(j).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"input": 0.2, "output": 0.3, "total": 0.5})
        );
        out.clear();
        edits(2, &[ValueRef::Absent; 7], &mut out);
        assert!(out.is_empty(), "a span without cost is sent as it is");
    }
}
