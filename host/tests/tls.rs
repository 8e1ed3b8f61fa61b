//! TLS on the receivers and the API (`[ingest] tls`, `[api] tls`): a client
//! that trusts the certificate sends over OTLP/HTTP and OTLP/gRPC and reads the
//! API; plain HTTP to the same port is not served.

mod common;

use common::{Service, free_port};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use std::sync::Arc;

fn agent(ca_pem: &[u8]) -> ureq::Agent {
    let cert = ureq::tls::Certificate::from_pem(ca_pem).unwrap();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![cert])))
                .build(),
        )
        .build()
        .into()
}

#[test]
fn receivers_and_api_serve_tls_when_configured() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &key_pem).unwrap();
    let (http, grpc, api) = (free_port(), free_port(), free_port());
    let pipeline = format!(
        r#"
[ingest]
otlp_http = "127.0.0.1:{http}"
otlp_grpc = "127.0.0.1:{grpc}"
tls = {{ cert = "{{dir}}/cert.pem", key = "{{dir}}/key.pem" }}

[api]
listen = "127.0.0.1:{api}"
tls = {{ cert = "{{dir}}/cert.pem", key = "{{dir}}/key.pem" }}

[traces]
wait = "0s"

[[export]]
plugin = "builtin:jsonl"
config = {{ path = "{{dir}}/out.jsonl" }}
"#
    );
    let plume = Service::start_in(dir, &pipeline, &[http, grpc, api], &[]);
    let client = agent(cert_pem.as_bytes());
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","name":"over https","startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}"#;
    let mut resp = client
        .post(format!("https://localhost:{http}/v1/traces"))
        .header("content-type", "application/json")
        .send(body)
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.body_mut().read_to_string().unwrap()
    );
    let mut health = client
        .get(format!("https://localhost:{api}/healthz"))
        .call()
        .unwrap();
    assert_eq!(health.body_mut().read_to_string().unwrap(), "ok\n");

    // Plain HTTP on a TLS port gets no answer.
    let plain = ureq::get(format!("http://127.0.0.1:{api}/healthz")).call();
    assert!(plain.is_err(), "{plain:?}");

    // OTLP/gRPC over TLS.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&cert_pem))
            .domain_name("localhost");
        let channel = tonic::transport::Channel::from_shared(format!("https://127.0.0.1:{grpc}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![opentelemetry_proto::tonic::trace::v1::ResourceSpans {
                scope_spans: vec![opentelemetry_proto::tonic::trace::v1::ScopeSpans {
                    spans: vec![opentelemetry_proto::tonic::trace::v1::Span {
                        trace_id: vec![7; 16],
                        span_id: vec![7; 8],
                        name: "over grpcs".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        TraceServiceClient::new(channel)
            .export(request)
            .await
            .unwrap();
    });
    let (_, dir) = plume.stop();
    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert!(out.contains("over https"), "{out}");
    assert!(out.contains("over grpcs"), "{out}");
}
