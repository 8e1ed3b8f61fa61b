//! The span model to and from OTLP protobuf (`opentelemetry-proto` types):
//! decoding for the receivers, encoding for the OTLP exporters. Arrays and maps
//! travel as JSON text inside plume and as `AnyValue` arrays/kvlists on the wire.

use super::{
    AttrValue, Attributes, Event, Link, Scope, Span, SpanId, SpanKind, Status, StatusCode, TraceId,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as pb;
use std::sync::Arc;

/// Spans of one request, and what was rejected from it.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Valid spans.
    pub spans: Vec<Span>,
    /// Spans rejected.
    pub rejected: u64,
    /// Why (the first reason), for the partial-success message.
    pub message: String,
}

impl Decoded {
    /// Keeps a span, or counts it rejected (the first reason is kept).
    pub fn push(&mut self, span: Result<Span, String>) {
        match span {
            Ok(s) => self.spans.push(s),
            Err(e) => {
                self.rejected += 1;
                if self.message.is_empty() {
                    self.message = e;
                }
            }
        }
    }
}

/// Converts a protobuf request; spans with invalid ids are rejected, the rest kept.
pub fn from_proto(req: ExportTraceServiceRequest) -> Decoded {
    let mut out = Decoded::default();
    for rs in req.resource_spans {
        let resource = Arc::new(attributes(
            rs.resource.map(|r| r.attributes).unwrap_or_default(),
        ));
        for ss in rs.scope_spans {
            let scope = ss.scope.map(|s| {
                Arc::new(Scope {
                    name: s.name,
                    version: s.version,
                })
            });
            for s in ss.spans {
                out.push(span(s, &resource, &scope));
            }
        }
    }
    out
}

fn span(
    s: pb::Span,
    resource: &Arc<Attributes>,
    scope: &Option<Arc<Scope>>,
) -> Result<Span, String> {
    let trace_id = parse_trace_id(&s.trace_id)?;
    let span_id = parse_span_id(&s.span_id, "span_id")?.ok_or("span_id is empty")?;
    let parent_span_id = span_id_or_none(&s.parent_span_id)?;
    let status = s.status.unwrap_or_default();
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id,
        trace_state: super::trace_context::cleaned(s.trace_state),
        name: s.name.into(),
        kind: SpanKind::from_otlp_number(s.kind as i64).unwrap_or_default(),
        start_time_unix_nano: s.start_time_unix_nano,
        end_time_unix_nano: s.end_time_unix_nano,
        status: Status {
            code: StatusCode::from_otlp_number(status.code as i64).unwrap_or_default(),
            message: status.message,
        },
        attributes: attributes(s.attributes),
        events: s
            .events
            .into_iter()
            .map(|e| Event {
                name: e.name,
                time_unix_nano: e.time_unix_nano,
                attributes: attributes(e.attributes),
            })
            .collect(),
        links: s
            .links
            .into_iter()
            .filter_map(|l| {
                Some(Link {
                    trace_id: parse_trace_id(&l.trace_id).ok()?,
                    span_id: parse_span_id(&l.span_id, "link span_id").ok()??,
                    trace_state: l.trace_state,
                    attributes: attributes(l.attributes),
                })
            })
            .collect(),
        resource: resource.clone(),
        scope: scope.clone(),
        seq: 0,
    })
}

/// A trace id: 16 bytes, not all zero (W3C Trace Context).
fn parse_trace_id(b: &[u8]) -> Result<TraceId, String> {
    let id: [u8; 16] = b
        .try_into()
        .map_err(|_| format!("trace_id must be 16 bytes, got {}", b.len()))?;
    if id == [0; 16] {
        return Err("trace_id is all zeros".into());
    }
    Ok(TraceId(id))
}

/// A span id: 8 bytes, not all zero; empty is `None`.
fn parse_span_id(b: &[u8], what: &str) -> Result<Option<SpanId>, String> {
    if b.is_empty() {
        return Ok(None);
    }
    let id: [u8; 8] = b
        .try_into()
        .map_err(|_| format!("{what} must be 8 bytes, got {}", b.len()))?;
    if id == [0; 8] {
        return Err(format!("{what} is all zeros"));
    }
    Ok(Some(SpanId(id)))
}

/// A parent span id: empty or all zeros both mean a root.
fn span_id_or_none(b: &[u8]) -> Result<Option<SpanId>, String> {
    if b.iter().all(|&x| x == 0) && (b.is_empty() || b.len() == 8) {
        return Ok(None);
    }
    parse_span_id(b, "parent_span_id")
}

fn attributes(kvs: Vec<KeyValue>) -> Attributes {
    // Sized to fit: a span may wait in the trace hold for seconds, and
    // `collect` here would keep the decoder's larger allocation.
    let mut out = Vec::with_capacity(kvs.len());
    for kv in kvs {
        if let Some(v) = kv.value.and_then(value) {
            out.push((super::Key::new(&kv.key), v));
        }
    }
    Attributes(out)
}

fn value(v: AnyValue) -> Option<AttrValue> {
    Some(match v.value? {
        any_value::Value::StringValue(s) => AttrValue::Str(s.into()),
        any_value::Value::BoolValue(b) => AttrValue::Bool(b),
        any_value::Value::IntValue(i) => AttrValue::Int(i),
        any_value::Value::DoubleValue(f) => AttrValue::Float(f),
        any_value::Value::BytesValue(b) => AttrValue::Str(const_hex::encode(b).into()),
        other => {
            let json = plain_json(AnyValue { value: Some(other) });
            AttrValue::Json(serde_json::value::to_raw_value(&json).ok()?)
        }
    })
}

/// Arrays and maps as plain JSON, as the JSONL forms keep them.
fn plain_json(v: AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match v.value {
        None => J::Null,
        Some(any_value::Value::StringValue(s)) => J::String(s),
        Some(any_value::Value::BoolValue(b)) => J::Bool(b),
        Some(any_value::Value::IntValue(i)) => J::from(i),
        Some(any_value::Value::DoubleValue(f)) => J::from(f),
        Some(any_value::Value::BytesValue(b)) => J::String(const_hex::encode(b)),
        Some(any_value::Value::ArrayValue(a)) => {
            J::Array(a.values.into_iter().map(plain_json).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => J::Object(
            kv.values
                .into_iter()
                .map(|kv| (kv.key, kv.value.map(plain_json).unwrap_or(J::Null)))
                .collect(),
        ),
    }
}

/// Encodes spans as one request, grouped by resource and scope. Spans of one
/// request share their resource and scope (`Arc`s), so runs of equal pointers
/// group in one pass; equal values behind different pointers are compared too.
pub fn to_proto<'a>(spans: impl IntoIterator<Item = &'a Span>) -> ExportTraceServiceRequest {
    let mut out: Vec<pb::ResourceSpans> = Vec::new();
    let mut last: Option<(&Arc<Attributes>, Option<&Arc<Scope>>)> = None;
    for s in spans {
        let same_resource =
            last.is_some_and(|(r, _)| Arc::ptr_eq(r, &s.resource) || **r == *s.resource);
        if !same_resource {
            out.push(pb::ResourceSpans {
                resource: Some(Resource {
                    attributes: key_values(&s.resource),
                    ..Default::default()
                }),
                scope_spans: Vec::new(),
                schema_url: String::new(),
            });
        }
        let same_scope = same_resource
            && last.is_some_and(|(_, sc)| match (sc, &s.scope) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b) || **a == **b,
                _ => false,
            });
        let resource_spans = out.last_mut().expect("pushed above");
        if !same_scope {
            resource_spans.scope_spans.push(pb::ScopeSpans {
                scope: s.scope.as_ref().map(|sc| InstrumentationScope {
                    name: sc.name.clone(),
                    version: sc.version.clone(),
                    ..Default::default()
                }),
                spans: Vec::new(),
                schema_url: String::new(),
            });
        }
        let scope_spans = resource_spans.scope_spans.last_mut().expect("pushed above");
        scope_spans.spans.push(encode_span(s));
        last = Some((&s.resource, s.scope.as_ref()));
    }
    ExportTraceServiceRequest {
        resource_spans: out,
    }
}

fn encode_span(s: &Span) -> pb::Span {
    pb::Span {
        trace_id: s.trace_id.0.to_vec(),
        span_id: s.span_id.0.to_vec(),
        trace_state: s.trace_state.clone(),
        parent_span_id: s.parent_span_id.map(|p| p.0.to_vec()).unwrap_or_default(),
        flags: 0,
        name: s.name.to_string(),
        kind: s.kind.otlp_number(),
        start_time_unix_nano: s.start_time_unix_nano,
        end_time_unix_nano: s.end_time_unix_nano,
        attributes: key_values(&s.attributes),
        dropped_attributes_count: 0,
        events: s
            .events
            .iter()
            .map(|e| pb::span::Event {
                time_unix_nano: e.time_unix_nano,
                name: e.name.clone(),
                attributes: key_values(&e.attributes),
                dropped_attributes_count: 0,
            })
            .collect(),
        dropped_events_count: 0,
        links: s
            .links
            .iter()
            .map(|l| pb::span::Link {
                trace_id: l.trace_id.0.to_vec(),
                span_id: l.span_id.0.to_vec(),
                trace_state: l.trace_state.clone(),
                attributes: key_values(&l.attributes),
                dropped_attributes_count: 0,
                flags: 0,
            })
            .collect(),
        dropped_links_count: 0,
        status: (s.status.code != StatusCode::Unset || !s.status.message.is_empty()).then(|| {
            pb::Status {
                message: s.status.message.clone(),
                code: match s.status.code {
                    StatusCode::Unset => 0,
                    StatusCode::Ok => 1,
                    StatusCode::Error => 2,
                },
            }
        }),
    }
}

fn key_values(attrs: &Attributes) -> Vec<KeyValue> {
    attrs
        .0
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.to_string(),
            value: Some(encode_value(v)),
        })
        .collect()
}

fn encode_value(v: &AttrValue) -> AnyValue {
    let value = match v {
        AttrValue::Str(s) => any_value::Value::StringValue(s.to_string()),
        AttrValue::Int(i) => any_value::Value::IntValue(*i),
        AttrValue::Float(f) => any_value::Value::DoubleValue(*f),
        AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
        AttrValue::Json(raw) => match serde_json::from_str::<serde_json::Value>(raw.get()) {
            Ok(json) => return json_to_any(json),
            Err(_) => any_value::Value::StringValue(raw.get().to_string()),
        },
    };
    AnyValue { value: Some(value) }
}

/// JSON kept as text back to an `AnyValue` (the inverse of `plain_json`).
fn json_to_any(v: serde_json::Value) -> AnyValue {
    use serde_json::Value as J;
    let value = match v {
        J::Null => None,
        J::Bool(b) => Some(any_value::Value::BoolValue(b)),
        J::Number(n) => Some(match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        }),
        J::String(s) => Some(any_value::Value::StringValue(s)),
        J::Array(a) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: a.into_iter().map(json_to_any).collect(),
        })),
        J::Object(o) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: o
                .into_iter()
                .map(|(key, v)| KeyValue {
                    key,
                    value: Some(json_to_any(v)),
                })
                .collect(),
        })),
    };
    AnyValue { value }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::Key;

    fn sample() -> Vec<Span> {
        let resource = Arc::new(Attributes(vec![(
            Key::from("service.name"),
            AttrValue::Str("agent".into()),
        )]));
        let scope = Some(Arc::new(Scope {
            name: "lib".into(),
            version: "1".into(),
        }));
        let other_resource = Arc::new(Attributes(vec![(
            Key::from("service.name"),
            AttrValue::Str("tools".into()),
        )]));
        let span = |n: u8, resource: &Arc<Attributes>| Span {
            trace_id: TraceId([7; 16]),
            span_id: SpanId([n; 8]),
            parent_span_id: (n > 1).then_some(SpanId([1; 8])),
            trace_state: "k=v".into(),
            name: format!("s{n}").into(),
            kind: SpanKind::Client,
            start_time_unix_nano: 10,
            end_time_unix_nano: 20 + n as u64,
            status: Status {
                code: StatusCode::Error,
                message: "boom".into(),
            },
            attributes: Attributes(vec![
                (Key::from("i"), AttrValue::Int(n as i64)),
                (Key::from("f"), AttrValue::Float(0.5)),
                (Key::from("b"), AttrValue::Bool(true)),
                (
                    Key::from("j"),
                    AttrValue::Json(
                        serde_json::value::RawValue::from_string(r#"["a",{"k":1}]"#.into())
                            .unwrap(),
                    ),
                ),
            ]),
            events: vec![Event {
                name: "exception".into(),
                time_unix_nano: 15,
                attributes: Attributes::default(),
            }],
            links: vec![Link {
                trace_id: TraceId([9; 16]),
                span_id: SpanId([9; 8]),
                trace_state: String::new(),
                attributes: Attributes::default(),
            }],
            resource: resource.clone(),
            scope: scope.clone(),
            seq: 0,
        };
        vec![
            span(1, &resource),
            span(2, &resource),
            span(3, &other_resource),
        ]
    }

    #[test]
    fn encoding_then_decoding_gives_the_spans_back() {
        let spans = sample();
        let req = to_proto(&spans);
        assert_eq!(req.resource_spans.len(), 2, "two resources");
        assert_eq!(req.resource_spans[0].scope_spans.len(), 1);
        assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), 2);
        let back = from_proto(req);
        assert_eq!(back.rejected, 0);
        assert_eq!(back.spans, spans);
    }
}
