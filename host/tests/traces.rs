//! Traces across agents: a planner agent calls a researcher sub-agent that
//! starts a trace of its own but records the planner's W3C `traceparent`, and
//! a summarizer sub-agent that links to it instead. Sent by the OpenTelemetry
//! SDK as three services; plume stitches them into one tree and the trace
//! summaries count its agents and depth. A sub-agent with an invalid
//! `traceparent` stays a trace of its own.

mod common;

use common::{Service, free_port, get};
use opentelemetry::trace::{
    Link, Span as _, SpanContext, TraceContextExt, Tracer, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::Value;

fn provider(service: &str, port: u16) -> SdkTracerProvider {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("http://127.0.0.1:{port}/v1/traces"))
        .build()
        .unwrap();
    SdkTracerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_string())
                .build(),
        )
        .with_simple_exporter(exporter)
        .build()
}

fn traceparent(sc: &SpanContext) -> String {
    format!("00-{}-{}-01", sc.trace_id(), sc.span_id())
}

/// A sub-agent run in a fresh trace: its root and one model call.
fn sub_agent(p: &SdkTracerProvider, name: &str, root_attrs: Vec<KeyValue>, links: Vec<Link>) {
    let tracer = p.tracer("agent");
    let mut builder = tracer.span_builder(format!("invoke_agent {name}"));
    let mut attrs = vec![
        KeyValue::new("gen_ai.operation.name", "invoke_agent"),
        KeyValue::new("gen_ai.agent.name", name.to_string()),
    ];
    attrs.extend(root_attrs);
    builder = builder.with_attributes(attrs).with_links(links);
    let root = builder.start_with_context(&tracer, &Context::new());
    let cx = Context::new().with_span(root);
    let mut chat = tracer.start_with_context("chat gpt-4o", &cx);
    chat.set_attribute(KeyValue::new("gen_ai.operation.name", "chat"));
    chat.set_attribute(KeyValue::new("gen_ai.request.model", "gpt-4o"));
    chat.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", 100));
    chat.set_attribute(KeyValue::new("gen_ai.usage.output_tokens", 10));
    chat.end();
    cx.span().end();
}

#[test]
fn sub_agent_traces_are_stitched_under_their_caller() {
    let (ingest, api) = (free_port(), free_port());
    let pipeline = format!(
        r#"
[ingest]
otlp_http = "127.0.0.1:{ingest}"

[api]
listen = "127.0.0.1:{api}"

[traces]
wait = "2s"
after_root = "1s"
stitch_attributes = ["traceparent"]
stitch_links = true

[[stage]]
name = "normalize"
plugin = "builtin:genai-normalize"

[[stage]]
name = "price"
plugin = "builtin:pricer"

[[evaluator]]
name = "traces"
plugin = "builtin:traces"

[[export]]
plugin = "builtin:jsonl"
config = {{ path = "{{dir}}/out.jsonl" }}
"#
    );
    let plume = Service::start(&pipeline, &[ingest, api], &[]);
    let (planner, researcher, summarizer, rogue) = (
        provider("planner", ingest),
        provider("researcher", ingest),
        provider("summarizer", ingest),
        provider("rogue", ingest),
    );
    let tracer = planner.tracer("agent");
    let root = tracer
        .span_builder("invoke_agent planner")
        .with_attributes(vec![
            KeyValue::new("gen_ai.operation.name", "invoke_agent"),
            KeyValue::new("gen_ai.agent.name", "planner"),
        ])
        .start(&tracer);
    let planner_trace = root.span_context().trace_id().to_string();
    let cx = Context::new().with_span(root);
    let tool = tracer.start_with_context("execute_tool ask_researcher", &cx);
    let caller = tool.span_context().clone();
    sub_agent(
        &researcher,
        "researcher",
        vec![KeyValue::new("traceparent", traceparent(&caller))],
        vec![],
    );
    sub_agent(
        &summarizer,
        "summarizer",
        vec![],
        vec![Link::with_context(cx.span().span_context().clone())],
    );
    sub_agent(
        &rogue,
        "rogue",
        vec![KeyValue::new(
            "traceparent",
            traceparent(&caller).replacen("00-", "ff-", 1),
        )],
        vec![],
    );
    drop(tool);
    cx.span().end();
    for p in [researcher, summarizer, rogue, planner] {
        p.shutdown().unwrap();
    }
    common::wait_until(30, "two traces summarised", || {
        let (_, r) = get(api, "/v1/reports/traces");
        serde_json::from_str::<Value>(&r).unwrap()["traces"]["kept"] == 2
    });
    let (_, report) = get(api, "/v1/reports/traces");
    let (_, metrics) = get(api, "/metrics");
    let (_, dir) = plume.stop();

    let spans: Vec<Value> = std::fs::read_to_string(dir.path().join("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(spans.len(), 8, "{spans:#?}");
    let by_name = |n: &str| {
        spans
            .iter()
            .find(|s| s["name"] == n)
            .unwrap_or_else(|| panic!("no span {n}"))
    };
    let researcher_root = by_name("invoke_agent researcher");
    assert_eq!(researcher_root["trace_id"], planner_trace);
    assert_eq!(
        researcher_root["parent_span_id"],
        caller.span_id().to_string()
    );
    assert_ne!(
        researcher_root["attributes"]["plume.trace.stitched_from"],
        Value::Null
    );
    let summarizer_root = by_name("invoke_agent summarizer");
    assert_eq!(summarizer_root["trace_id"], planner_trace);
    let in_planner_trace = spans
        .iter()
        .filter(|s| s["trace_id"] == planner_trace)
        .count();
    assert_eq!(
        in_planner_trace, 6,
        "planner 2 + researcher 2 + summarizer 2"
    );
    let rogue_root = by_name("invoke_agent rogue");
    assert_ne!(rogue_root["trace_id"], planner_trace);
    assert_eq!(rogue_root["parent_span_id"], Value::Null);

    let r: Value = serde_json::from_str(&report).unwrap();
    let t = &r["traces"];
    assert_eq!(t["multi_agent"], 1, "{t}");
    assert_eq!(t["with_stitched_sub_agents"], 1, "{t}");
    let top = &t["most_expensive"][0];
    assert_eq!(top["trace_id"], planner_trace, "{t}");
    assert_eq!(top["depth"], 4, "planner > tool > researcher > chat: {t}");
    assert_eq!(top["spans"], 6);
    assert_eq!(
        top["agents"],
        serde_json::json!(["planner", "researcher", "summarizer"])
    );
    assert!(top["cost_usd"].as_f64().unwrap() > 0.0);
    assert!(
        metrics.contains("plume_hold_stitched_traces_total 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("plume_hold_invalid_traceparents_total 1\n"),
        "{metrics}"
    );
}
