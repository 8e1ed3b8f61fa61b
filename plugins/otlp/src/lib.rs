//! `builtin:otlp`: sends spans to any OTLP backend (an OpenTelemetry
//! Collector, Jaeger, Tempo, ...). The host renders the protobuf request and
//! does the sending, from a bounded queue with retries (`delivery` in
//! pipeline.toml).
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `endpoint` | required | `http://HOST:4318` for OTLP/HTTP (`/v1/traces` is appended when the URL has no path), `http://HOST:4317` for gRPC |
//! | `protocol` | `"http/protobuf"` | `http/protobuf` or `grpc` |
//! | `headers` | `{}` | extra request headers (gRPC metadata), e.g. `authorization` |
//!
//! Alerts are not sent (route them to a webhook or JSONL exporter).

use plume_sdk::exporter::{Guest, export_exporter};
use plume_sdk::types::{
    Batch, ExporterManifest, GrpcSink, HttpSink, Notification, OtlpSpans, Part, Sink,
};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize, Clone, Copy, PartialEq, Debug, Default)]
enum Protocol {
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "grpc")]
    Grpc,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    endpoint: String,
    #[serde(default)]
    protocol: Protocol,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// The OTLP/gRPC trace export method.
const GRPC_METHOD: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// `endpoint` with `/v1/traces` appended when it has no path, as the
/// OpenTelemetry SDKs do with `OTEL_EXPORTER_OTLP_ENDPOINT`.
fn traces_url(endpoint: &str) -> String {
    let after_scheme = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    match after_scheme.find('/') {
        Some(i) if after_scheme[i..].len() > 1 => endpoint.to_string(),
        _ => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
    }
}

fn sink(c: &Config) -> Result<Sink, String> {
    if !(c.endpoint.starts_with("http://") || c.endpoint.starts_with("https://")) {
        return Err(format!(
            "config.endpoint must start with http:// or https://, got {:?}",
            c.endpoint
        ));
    }
    let headers = c
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(match c.protocol {
        Protocol::HttpProtobuf => Sink::Http(HttpSink {
            url: traces_url(&c.endpoint),
            headers,
            content_type: "application/x-protobuf".into(),
        }),
        Protocol::Grpc => Sink::Grpc(GrpcSink {
            endpoint: c.endpoint.clone(),
            method: GRPC_METHOD.into(),
            headers,
        }),
    })
}

struct Otlp;

impl Guest for Otlp {
    fn init(config: String) -> Result<ExporterManifest, String> {
        let c: Config = plume_sdk::parse_config(&config)?;
        Ok(ExporterManifest {
            reads: vec![],
            sink: sink(&c)?,
        })
    }

    fn export_spans(batch: Batch) -> Result<Vec<Part>, String> {
        if batch.rows == 0 {
            return Ok(vec![]);
        }
        Ok(vec![Part::SpansOtlpProto(OtlpSpans {
            rows: (0..batch.rows).collect(),
            edits: vec![],
        })])
    }

    fn export_alerts(_: Vec<Notification>) -> Result<Vec<Part>, String> {
        Ok(vec![])
    }
}

export_exporter!(Otlp);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_the_traces_path_only_when_the_url_has_none() {
        assert_eq!(traces_url("http://h:4318"), "http://h:4318/v1/traces");
        assert_eq!(traces_url("http://h:4318/"), "http://h:4318/v1/traces");
        assert_eq!(
            traces_url("https://h/otlp/v1/traces"),
            "https://h/otlp/v1/traces"
        );
    }

    #[test]
    fn chooses_the_sink_by_protocol() {
        let c: Config = serde_json::from_str(
            r#"{"endpoint":"http://h:4317","protocol":"grpc","headers":{"x":"y"}}"#,
        )
        .unwrap();
        match sink(&c).unwrap() {
            Sink::Grpc(g) => {
                assert_eq!(g.method, GRPC_METHOD);
                assert_eq!(g.headers, vec![("x".to_string(), "y".to_string())]);
            }
            _ => panic!("expected a gRPC sink"),
        }
        let bad: Config = serde_json::from_str(r#"{"endpoint":"h:4318"}"#).unwrap();
        assert!(sink(&bad).is_err());
    }
}
