//! OTLP exporter come out enriched at a test OTLP/HTTP backend, a test
//! OTLP/gRPC backend and a Langfuse-shaped endpoint (Basic auth from the
//! environment). Each backend refuses its first request with a retryable
//! error, so every span arrives only through a retry.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::{Service, free_port, get, wait_until};
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prost::Message;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A span as a backend received it: name and attributes as JSON values.
#[derive(Debug, Clone)]
struct Received {
    name: String,
    trace_id: String,
    attributes: HashMap<String, Value>,
}

/// A test backend: refuses its first `fail_first` requests, then records.
#[derive(Default)]
struct Backend {
    fail_first: u64,
    /// The `authorization` header required, if any.
    auth: Option<String>,
    requests: AtomicU64,
    unauthorised: AtomicU64,
    spans: Mutex<Vec<Received>>,
}

impl Backend {
    fn new(fail_first: u64, auth: Option<String>) -> Arc<Backend> {
        Arc::new(Backend {
            fail_first,
            auth,
            ..Backend::default()
        })
    }

    /// Counts the request; true when it is one to refuse.
    fn refuse(&self) -> bool {
        self.requests.fetch_add(1, Ordering::SeqCst) < self.fail_first
    }

    fn record(&self, req: ExportTraceServiceRequest) {
        let mut spans = self.spans.lock().unwrap();
        for rs in req.resource_spans {
            for ss in rs.scope_spans {
                for s in ss.spans {
                    let attributes = s
                        .attributes
                        .into_iter()
                        .map(|kv| {
                            let v = match kv.value.and_then(|v| v.value) {
                                Some(any_value::Value::StringValue(s)) => Value::from(s),
                                Some(any_value::Value::IntValue(i)) => Value::from(i),
                                Some(any_value::Value::DoubleValue(f)) => Value::from(f),
                                Some(any_value::Value::BoolValue(b)) => Value::from(b),
                                Some(any_value::Value::KvlistValue(kv)) => Value::Object(
                                    kv.values
                                        .into_iter()
                                        .map(|kv| {
                                            let v = match kv.value.and_then(|v| v.value) {
                                                Some(any_value::Value::DoubleValue(f)) => {
                                                    Value::from(f)
                                                }
                                                Some(any_value::Value::IntValue(i)) => {
                                                    Value::from(i)
                                                }
                                                other => Value::from(format!("{other:?}")),
                                            };
                                            (kv.key, v)
                                        })
                                        .collect(),
                                ),
                                other => Value::from(format!("{other:?}")),
                            };
                            (kv.key, v)
                        })
                        .collect();
                    spans.push(Received {
                        name: s.name,
                        trace_id: const_hex::encode(&s.trace_id),
                        attributes,
                    });
                }
            }
        }
    }

    fn received(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }
}

async fn http_export(State(b): State<Arc<Backend>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(expected) = &b.auth
        && headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected)
    {
        b.unauthorised.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if b.refuse() {
        return (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "0")]).into_response();
    }
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/x-protobuf"
    );
    b.record(ExportTraceServiceRequest::decode(body).unwrap());
    (
        [("content-type", "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

struct GrpcBackend(Arc<Backend>);

#[tonic::async_trait]
impl TraceService for GrpcBackend {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if self.0.refuse() {
            return Err(tonic::Status::unavailable("warming up"));
        }
        self.0.record(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Serves the three backends on loopback; returns their ports.
fn serve_backends(
    rt: &tokio::runtime::Runtime,
    otlp: Arc<Backend>,
    grpc: Arc<Backend>,
    langfuse: Arc<Backend>,
) -> (u16, u16, u16) {
    rt.block_on(async {
        let bind = || async { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap() };
        let (l1, l2, l3) = (bind().await, bind().await, bind().await);
        let ports = (
            l1.local_addr().unwrap().port(),
            l2.local_addr().unwrap().port(),
            l3.local_addr().unwrap().port(),
        );
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(http_export))
            .with_state(otlp);
        tokio::spawn(async move { axum::serve(l1, app).await.unwrap() });
        let app = axum::Router::new()
            .route(
                "/api/public/otel/v1/traces",
                axum::routing::post(http_export),
            )
            .with_state(langfuse);
        tokio::spawn(async move { axum::serve(l3, app).await.unwrap() });
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(GrpcBackend(grpc)))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l2))
                .await
                .unwrap()
        });
        ports
    })
}

/// Agent runs `runs`, each one model call recorded twice: a framework span
/// around the provider's span, with the same response id and usage.
fn send_agent_runs(exporter: opentelemetry_otlp::SpanExporter, runs: std::ops::Range<u32>) {
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .build();
    let tracer = provider.tracer("plume-export-test");
    for run in runs {
        tracer.in_span(format!("invoke_agent run-{run}"), |cx| {
            cx.span()
                .set_attribute(KeyValue::new("gen_ai.operation.name", "invoke_agent"));
            let call = |name: &str| {
                let mut s = tracer.start(name.to_string());
                s.set_attribute(KeyValue::new("gen_ai.operation.name", "chat"));
                s.set_attribute(KeyValue::new("gen_ai.request.model", "gpt-4o"));
                s.set_attribute(KeyValue::new("gen_ai.response.id", format!("resp-{run}")));
                s.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", 1000));
                s.set_attribute(KeyValue::new("gen_ai.usage.output_tokens", 200));
                s
            };
            let outer = call("chat gpt-4o (framework)");
            let cx = opentelemetry::Context::current_with_span(outer);
            let _guard = cx.clone().attach();
            call("chat gpt-4o").end();
            drop(_guard);
            cx.span().end();
        });
    }
    provider.shutdown().unwrap();
}

#[test]
fn spans_reach_otlp_http_grpc_and_langfuse_backends_through_retries() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let basic = "Basic cGstbGYtdGVzdDpzay1sZi10ZXN0"; // base64("pk-lf-test:sk-lf-test")
    let (otlp, grpc, langfuse) = (
        Backend::new(1, None),
        Backend::new(1, None),
        Backend::new(1, Some(basic.to_string())),
    );
    let (otlp_port, grpc_port, lf_port) =
        serve_backends(&rt, otlp.clone(), grpc.clone(), langfuse.clone());
    let (ingest, ingest_grpc, api) = (free_port(), free_port(), free_port());
    let pipeline = format!(
        r#"
[ingest]
otlp_http = "127.0.0.1:{ingest}"
otlp_grpc = "127.0.0.1:{ingest_grpc}"

[api]
listen = "127.0.0.1:{api}"

[traces]
after_root = "50ms"

[[stage]]
name = "normalize"
plugin = "builtin:genai-normalize"

[[stage]]
name = "price"
plugin = "builtin:pricer"

[[stage]]
name = "dedup"
plugin = "builtin:call-dedup"

[[evaluator]]
name = "cost"
plugin = "builtin:cost-ledger"

[[export]]
name = "tempo"
plugin = "builtin:otlp"
config = {{ endpoint = "http://127.0.0.1:{otlp_port}" }}
delivery = {{ initial_backoff = "50ms" }}

[[export]]
name = "collector"
plugin = "builtin:otlp"
config = {{ endpoint = "http://127.0.0.1:{grpc_port}", protocol = "grpc" }}
delivery = {{ initial_backoff = "50ms" }}

[[export]]
name = "langfuse"
plugin = "builtin:langfuse"
config = {{ host = "http://127.0.0.1:{lf_port}", public_key = "${{LF_PUBLIC}}", secret_key = "${{LF_SECRET}}" }}
delivery = {{ initial_backoff = "50ms" }}
"#
    );
    let plume = Service::start(
        &pipeline,
        &[ingest, ingest_grpc, api],
        &[("LF_PUBLIC", "pk-lf-test"), ("LF_SECRET", "sk-lf-test")],
    );
    // Three runs over OTLP/HTTP, two over OTLP/gRPC.
    let http = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("http://127.0.0.1:{ingest}/v1/traces"))
        .build()
        .unwrap();
    send_agent_runs(http, 0..3);
    let grpc_exporter = {
        let _entered = rt.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://127.0.0.1:{ingest_grpc}"))
            .build()
            .unwrap()
    };
    {
        let _entered = rt.enter();
        send_agent_runs(grpc_exporter, 3..5);
    }
    for (name, b) in [
        ("OTLP/HTTP", &otlp),
        ("gRPC", &grpc),
        ("Langfuse", &langfuse),
    ] {
        wait_until(30, name, || b.received().len() >= 15);
    }
    let (_, metrics) = get(api, "/metrics");
    for export in ["tempo", "collector", "langfuse"] {
        assert!(
            metrics.contains(&format!(
                "plume_export_spans_total{{export=\"{export}\",result=\"sent\"}} 15\n"
            )),
            "{metrics}"
        );
        assert!(
            metrics.contains(&format!(
                "plume_export_retries_total{{export=\"{export}\"}} 1\n"
            )),
            "{metrics}"
        );
    }
    let (_, cost) = get(api, "/v1/reports/cost");
    let ledger_total = serde_json::from_str::<Value>(&cost).unwrap()["cost"]["total_usd"]
        .as_f64()
        .unwrap();
    let (output, _) = plume.stop();
    let summary = String::from_utf8_lossy(&output.stderr);
    assert!(
        summary.contains(
            "langfuse: 15 spans sent (0 rejected by the backend), 0 failed, 0 dropped; 1 retries"
        ),
        "{summary}"
    );

    // Both OTLP backends got every span, enriched, with the usage as sent.
    for (name, b) in [("OTLP/HTTP", &otlp), ("gRPC", &grpc)] {
        let spans = b.received();
        assert_eq!(spans.len(), 15, "{name}: {spans:#?}");
        let chats: Vec<&Received> = spans
            .iter()
            .filter(|s| s.name.starts_with("chat"))
            .collect();
        assert_eq!(chats.len(), 10, "{name}");
        for c in &chats {
            assert!(
                c.attributes["gen_ai.usage.cost"].as_f64().unwrap() > 0.0,
                "{name}: {c:?}"
            );
            assert_eq!(c.attributes["gen_ai.usage.input_tokens"], 1000, "{name}");
        }
        let counted = chats
            .iter()
            .filter(|c| c.attributes["plume.cost.counted"] == true)
            .count();
        assert_eq!(counted, 5, "{name}: one counted span per call");
        let traces: std::collections::HashSet<&str> =
            spans.iter().map(|s| s.trace_id.as_str()).collect();
        assert_eq!(traces.len(), 5, "{name}");
    }

    // Langfuse: Basic auth from the environment; each call's usage and cost
    // once, carrying plume's price.
    assert_eq!(langfuse.unauthorised.load(Ordering::SeqCst), 0);
    let spans = langfuse.received();
    assert_eq!(spans.len(), 15);
    let with_usage: Vec<&Received> = spans
        .iter()
        .filter(|s| s.attributes.keys().any(|k| k.starts_with("gen_ai.usage.")))
        .collect();
    assert_eq!(with_usage.len(), 5, "{with_usage:#?}");
    let mut total = 0.0;
    for s in &with_usage {
        assert_eq!(s.attributes["plume.cost.counted"], true);
        let details = &s.attributes["langfuse.observation.cost_details"];
        let t = details["total"].as_f64().unwrap();
        assert_eq!(t, s.attributes["gen_ai.usage.cost"].as_f64().unwrap());
        assert!(details["input"].as_f64().unwrap() > 0.0, "{details}");
        total += t;
    }
    assert!(
        (total - ledger_total).abs() < 1e-12,
        "Langfuse sums {total}, the ledger {ledger_total}"
    );
    let duplicates = spans
        .iter()
        .filter(|s| s.attributes.get("plume.cost.counted") == Some(&Value::from(false)))
        .count();
    assert_eq!(duplicates, 5, "the duplicate records are still sent");
}

/// Backpressure end to end: the backend is down, the delivery queue and then
/// the engine's and the receivers' queues fill, and clients are told to retry
/// (503 with `Retry-After`) instead of plume's memory growing. When the backend
/// comes up, every span plume accepted arrives, once.
#[test]
fn a_down_backend_pushes_back_to_clients_and_loses_nothing_accepted() {
    let (ingest, api, backend_port) = (free_port(), free_port(), free_port());
    let pipeline = format!(
        r#"
[ingest]
otlp_http = "127.0.0.1:{ingest}"

[api]
listen = "127.0.0.1:{api}"

[batch]
max_spans = 1

[traces]
wait = "0s"

[[export]]
name = "tempo"
plugin = "builtin:otlp"
config = {{ endpoint = "http://127.0.0.1:{backend_port}" }}
delivery = {{ queue = 1, initial_backoff = "20ms", max_backoff = "100ms", max_elapsed = "10m" }}
"#
    );
    let plume = Service::start(&pipeline, &[ingest, api], &[]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut accepted = 0u64;
    let mut throttled = None;
    for i in 1..=5000u64 {
        let body = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"{i:032x}","spanId":"{i:016x}","name":"s","startTimeUnixNano":"1","endTimeUnixNano":"2"}}]}}]}}]}}"#
        );
        let resp = agent
            .post(format!("http://127.0.0.1:{ingest}/v1/traces"))
            .header("content-type", "application/json")
            .send(body.as_bytes())
            .unwrap();
        match resp.status().as_u16() {
            200 => accepted += 1,
            503 => {
                throttled = Some(
                    resp.headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_string()),
                );
                break;
            }
            s => panic!("unexpected {s}"),
        }
    }
    let retry_after = throttled.expect("plume must push back before 5000 requests");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(
        accepted > 1000,
        "the receiver queue holds ~1024 requests: {accepted}"
    );

    // The backend comes up: everything accepted is delivered.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = Backend::new(0, None);
    {
        let backend = backend.clone();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", backend_port))
                .await
                .unwrap();
            let app = axum::Router::new()
                .route("/v1/traces", axum::routing::post(http_export))
                .with_state(backend);
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        });
    }
    wait_until(60, "every accepted span delivered", || {
        backend.received().len() as u64 >= accepted
    });
    let (_, metrics) = get(api, "/metrics");
    assert!(
        metrics.contains("plume_receiver_requests_throttled_total 1\n"),
        "{metrics}"
    );
    plume.stop();
    let spans = backend.received();
    let names: std::collections::HashSet<String> =
        spans.iter().map(|s| s.trace_id.clone()).collect();
    println!(
        "chaos backend-down: sent {} spans, acknowledged {accepted}, exported {}, lost {}",
        accepted + 1,
        names.len(),
        accepted - names.len() as u64
    );
    assert_eq!(spans.len() as u64, accepted, "nothing lost, nothing twice");
    assert_eq!(names.len() as u64, accepted);
}
