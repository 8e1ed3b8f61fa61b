//! The OTLP receivers end to end: `plume run` on loopback ports, spans sent
//! by the OpenTelemetry Rust SDK's own OTLP exporter over HTTP (protobuf and
//! JSON) and gRPC, then SIGTERM: every span is in the JSONL export. Also the
//! refusals a client can meet: no token, a bad payload, an oversized body.

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, Tracer, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::process::Command;

const TOKEN: &str = "test-ingest-token";

mod common;
use common::{Service, free_port, post};

struct Plume {
    service: Service,
    http: u16,
    grpc: u16,
    api: u16,
}

impl Plume {
    fn start() -> Plume {
        let (http, grpc, api) = (free_port(), free_port(), free_port());
        let pipeline = format!(
            r#"
[ingest]
otlp_http = "127.0.0.1:{http}"
otlp_grpc = "127.0.0.1:{grpc}"
token = "{TOKEN}"
max_body_bytes = 200000

[api]
listen = "127.0.0.1:{api}"

[[stage]]
name = "normalize"
plugin = "builtin:genai-normalize"

[[export]]
plugin = "builtin:jsonl"
config = {{ path = "{{dir}}/spans.jsonl" }}
"#
        );
        Plume {
            service: Service::start(&pipeline, &[http, grpc, api], &[]),
            http,
            grpc,
            api,
        }
    }

    /// SIGTERM, then the exported spans.
    fn stop(self) -> Vec<Value> {
        let (_, dir) = self.service.stop();
        std::fs::read_to_string(dir.path().join("spans.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Two spans (a chat call under an agent span) through `provider`.
fn send(provider: SdkTracerProvider, label: &str) {
    let tracer = provider.tracer("plume-test");
    tracer.in_span(format!("invoke_agent {label}"), |_| {
        let mut span = tracer.start("chat gpt-4o");
        span.set_attribute(KeyValue::new("gen_ai.request.model", "gpt-4o"));
        span.set_attribute(KeyValue::new("gen_ai.usage.prompt_tokens", 120));
        span.set_attribute(KeyValue::new("test.protocol", label.to_string()));
        span.end();
    });
    provider.shutdown().unwrap();
}

fn auth() -> HashMap<String, String> {
    HashMap::from([("authorization".to_string(), format!("Bearer {TOKEN}"))])
}

#[test]
fn spans_from_a_real_otlp_exporter_over_http_and_grpc_are_exported() {
    let plume = Plume::start();
    for (label, protocol) in [
        ("http-protobuf", Protocol::HttpBinary),
        ("http-json", Protocol::HttpJson),
    ] {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(protocol)
            .with_endpoint(format!("http://127.0.0.1:{}/v1/traces", plume.http))
            .with_headers(auth())
            .build()
            .unwrap();
        send(
            SdkTracerProvider::builder()
                .with_simple_exporter(exporter)
                .build(),
            label,
        );
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _entered = rt.enter();
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let exporter = rt
        .block_on(async {
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(format!("http://127.0.0.1:{}", plume.grpc))
                .with_metadata(metadata)
                .build()
        })
        .unwrap();
    send(
        SdkTracerProvider::builder()
            .with_simple_exporter(exporter)
            .build(),
        "grpc",
    );

    // The API of the running service.
    let get = |path: &str| common::get(plume.api, path).1;
    assert_eq!(get("/healthz"), "ok\n");
    assert_eq!(get("/readyz"), "ready\n");
    let metrics = get("/metrics");
    assert!(
        metrics.contains("plume_receiver_spans_accepted_total 6\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE plume_entry_seconds_total counter"),
        "{metrics}"
    );
    let latency: Value = serde_json::from_str(&get("/v1/reports/latency")).unwrap();
    assert!(latency.get("latency").is_some(), "{latency}");
    let api = format!("http://127.0.0.1:{}", plume.api);
    let report = Command::new(env!("CARGO_BIN_EXE_plume"))
        .args(["report", "cost", "--json", "--api", &api])
        .output()
        .unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );

    let spans = plume.stop();
    for label in ["http-protobuf", "http-json", "grpc"] {
        let chat = spans
            .iter()
            .find(|s| s["attributes"]["test.protocol"] == label)
            .unwrap_or_else(|| panic!("no span from {label} in {spans:#?}"));
        // Normalised on the way: the deprecated name gained the current one.
        assert_eq!(
            chat["attributes"]["gen_ai.usage.input_tokens"], 120,
            "{label}"
        );
        let parent = chat["parent_span_id"].as_str().unwrap();
        let agent = spans
            .iter()
            .find(|s| s["span_id"] == parent)
            .unwrap_or_else(|| panic!("{label}: the agent span"));
        assert_eq!(agent["name"], format!("invoke_agent {label}"));
        assert_eq!(agent["trace_id"], chat["trace_id"]);
    }
    assert_eq!(spans.len(), 6);
}

#[test]
fn refusals_are_clear_and_gzip_is_read() {
    let plume = Plume::start();
    let p = plume.http;
    let span = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","name":"gz","startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}"#;
    assert_eq!(
        post(
            p,
            "/v1/traces",
            "application/json",
            None,
            None,
            span.as_bytes()
        )
        .0,
        401
    );
    assert_eq!(
        post(
            p,
            "/v1/traces",
            "application/json",
            Some("wrong"),
            None,
            span.as_bytes()
        )
        .0,
        401
    );
    let (status, message) = post(
        p,
        "/v1/traces",
        "application/x-protobuf",
        Some(TOKEN),
        None,
        b"\xff\xff\xff",
    );
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("ExportTraceServiceRequest"), "{message}");
    assert_eq!(
        post(p, "/v1/traces", "text/plain", Some(TOKEN), None, b"x").0,
        415
    );
    assert_eq!(
        post(
            p,
            "/v1/traces",
            "application/json",
            Some(TOKEN),
            None,
            &vec![b' '; 300_000]
        )
        .0,
        413
    );
    // A client that waits for a go-ahead before sending a body declared too
    // large is answered at once, and never asked for the body.
    for (auth, status) in [
        (format!("Bearer {TOKEN}"), "413"),
        ("Bearer wrong".into(), "401"),
    ] {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", p)).unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        write!(
            conn,
            "POST /v1/traces HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
             authorization: {auth}\r\ncontent-length: 300000\r\nexpect: 100-continue\r\n\r\n"
        )
        .unwrap();
        let mut head = [0u8; 12];
        std::io::Read::read_exact(&mut conn, &mut head).unwrap();
        assert_eq!(
            std::str::from_utf8(&head).unwrap(),
            format!("HTTP/1.1 {status}")
        );
    }
    // A gzip bomb: small on the wire, over the limit inflated.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b' '; 1_000_000]).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 200_000);
    assert_eq!(
        post(
            p,
            "/v1/traces",
            "application/json",
            Some(TOKEN),
            Some("gzip"),
            &bomb
        )
        .0,
        413
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(span.as_bytes()).unwrap();
    let (status, body) = post(
        p,
        "/v1/traces",
        "application/json",
        Some(TOKEN),
        Some("gzip"),
        &gz.finish().unwrap(),
    );
    assert_eq!((status, body.as_str()), (200, "{}"));
    // All-zero ids are rejected span by span: a partial success.
    let zero = span.replace(
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00000000000000000000000000000000",
    );
    let (status, body) = post(
        p,
        "/v1/traces",
        "application/json",
        Some(TOKEN),
        None,
        zero.as_bytes(),
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "1", "{body}");
    let spans = plume.stop();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0]["name"], "gz");
}
