//! OTLP/JSON: an `ExportTraceServiceRequest` encoded as the OTLP specification
//! says (lowerCamelCase keys, hex ids, 64-bit integers as decimal strings),
//! which is what the OpenTelemetry Collector's file exporter writes per line.

use super::flat::{self, NameOrNumber, de_time, write_str, write_value};
use super::otlp_proto::Decoded;
use super::{
    AttrValue, Attributes, Event, Link, Scope, Span, SpanId, SpanKind, Status, StatusCode, TraceId,
    parse_hex_id,
};
use serde::Deserialize;
use serde_json::Value as Json;
use std::io::Write;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    #[serde(default, alias = "resource_spans")]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans {
    #[serde(default)]
    resource: Option<Resource>,
    #[serde(default, alias = "scope_spans")]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Deserialize, Default)]
struct Resource {
    #[serde(default)]
    attributes: Vec<KeyValue>,
}

#[derive(Deserialize)]
struct ScopeSpans {
    #[serde(default)]
    scope: Option<ScopeIn>,
    #[serde(default)]
    spans: Vec<SpanIn>,
}

#[derive(Deserialize)]
struct ScopeIn {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpanIn {
    #[serde(alias = "trace_id")]
    trace_id: String,
    #[serde(alias = "span_id")]
    span_id: String,
    #[serde(default, alias = "parent_span_id")]
    parent_span_id: String,
    #[serde(default, alias = "trace_state")]
    trace_state: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: Option<NameOrNumber>,
    #[serde(alias = "start_time_unix_nano", deserialize_with = "de_time")]
    start_time_unix_nano: u64,
    #[serde(alias = "end_time_unix_nano", deserialize_with = "de_time")]
    end_time_unix_nano: u64,
    #[serde(default)]
    attributes: Vec<KeyValue>,
    #[serde(default)]
    events: Vec<EventIn>,
    #[serde(default)]
    links: Vec<LinkIn>,
    #[serde(default)]
    status: Option<StatusIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventIn {
    #[serde(default, alias = "time_unix_nano", deserialize_with = "de_time")]
    time_unix_nano: u64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    attributes: Vec<KeyValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LinkIn {
    #[serde(alias = "trace_id")]
    trace_id: String,
    #[serde(alias = "span_id")]
    span_id: String,
    #[serde(default, alias = "trace_state")]
    trace_state: String,
    #[serde(default)]
    attributes: Vec<KeyValue>,
}

#[derive(Deserialize)]
struct StatusIn {
    #[serde(default)]
    code: Option<NameOrNumber>,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct KeyValue {
    key: String,
    #[serde(default)]
    value: Option<Json>,
}

/// Converts an OTLP `AnyValue` (as JSON) into an attribute value.
fn any_value(v: &Json) -> Result<Option<AttrValue>, String> {
    let Some(obj) = v.as_object() else {
        return Ok(None);
    };
    let Some((kind, inner)) = obj.iter().next() else {
        return Ok(None);
    };
    Ok(Some(match kind.as_str() {
        "stringValue" | "string_value" => AttrValue::Str(inner.as_str().unwrap_or_default().into()),
        "boolValue" | "bool_value" => AttrValue::Bool(inner.as_bool().unwrap_or(false)),
        "intValue" | "int_value" => AttrValue::Int(match inner {
            Json::String(s) => s
                .parse()
                .map_err(|_| format!("intValue is not an integer: {s:?}"))?,
            Json::Number(n) => n
                .as_i64()
                .ok_or_else(|| format!("intValue out of range: {n}"))?,
            other => return Err(format!("intValue must be a string or number, got {other}")),
        }),
        "doubleValue" | "double_value" => AttrValue::Float(match inner {
            Json::Number(n) => n.as_f64().unwrap_or(f64::NAN),
            Json::String(s) => s
                .parse()
                .map_err(|_| format!("doubleValue is not a number: {s:?}"))?,
            other => return Err(format!("doubleValue must be a number, got {other}")),
        }),
        "bytesValue" | "bytes_value" => AttrValue::Str(inner.as_str().unwrap_or_default().into()),
        "arrayValue" | "array_value" | "kvlistValue" | "kvlist_value" => {
            let json = any_to_plain_json(v)?;
            AttrValue::Json(serde_json::value::to_raw_value(&json).map_err(|e| e.to_string())?)
        }
        other => return Err(format!("unknown AnyValue kind {other:?}")),
    }))
}

/// Converts an `AnyValue` into plain JSON (arrays, objects), for nested values.
fn any_to_plain_json(v: &Json) -> Result<Json, String> {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return Ok(Json::Null);
    };
    Ok(match kind.as_str() {
        "arrayValue" | "array_value" => Json::Array(
            inner
                .get("values")
                .and_then(Json::as_array)
                .map(|vals| {
                    vals.iter()
                        .map(any_to_plain_json)
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?
                .unwrap_or_default(),
        ),
        "kvlistValue" | "kvlist_value" => {
            let mut map = serde_json::Map::new();
            for kv in inner
                .get("values")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                let key = kv
                    .get("key")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string();
                let value = kv
                    .get("value")
                    .map(any_to_plain_json)
                    .transpose()?
                    .unwrap_or(Json::Null);
                map.insert(key, value);
            }
            Json::Object(map)
        }
        _ => match any_value(v)? {
            Some(AttrValue::Str(s)) => Json::String(s.into()),
            Some(AttrValue::Int(i)) => Json::from(i),
            Some(AttrValue::Float(f)) => Json::from(f),
            Some(AttrValue::Bool(b)) => Json::Bool(b),
            Some(AttrValue::Json(raw)) => {
                serde_json::from_str(raw.get()).map_err(|e| e.to_string())?
            }
            None => Json::Null,
        },
    })
}

fn attributes(kvs: Vec<KeyValue>) -> Result<Attributes, String> {
    let mut out = Vec::with_capacity(kvs.len());
    for kv in kvs {
        if let Some(v) = kv.value.as_ref().map(any_value).transpose()?.flatten() {
            out.push((super::Key::new(&kv.key), v));
        }
    }
    Ok(Attributes(out))
}

fn optional_span_id(s: &str, what: &str) -> Result<Option<SpanId>, String> {
    // Empty or all zeros: no parent (some exporters write zeros).
    if s.bytes().all(|b| b == b'0') {
        Ok(None)
    } else {
        Ok(Some(SpanId(parse_hex_id(s, what)?)))
    }
}

/// Parses one `ExportTraceServiceRequest` (JSON) into spans; a span that is
/// invalid (e.g. an all-zero id) fails the whole request. Receivers, which
/// answer with a partial success instead, use [`parse_request`].
pub fn parse(text: &str) -> Result<Vec<Span>, String> {
    let d = parse_request(text)?;
    if d.rejected > 0 {
        return Err(d.message);
    }
    Ok(d.spans)
}

/// Parses one `ExportTraceServiceRequest` (JSON); invalid spans are rejected
/// one by one. Fails only when the request itself is not one.
pub fn parse_request(text: &str) -> Result<Decoded, String> {
    let req: Request = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut out = Decoded::default();
    for rs in req.resource_spans {
        let resource = Arc::new(attributes(rs.resource.unwrap_or_default().attributes)?);
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
    Ok(out)
}

fn span(s: SpanIn, resource: &Arc<Attributes>, scope: &Option<Arc<Scope>>) -> Result<Span, String> {
    let kind = match s.kind {
        None => SpanKind::Unspecified,
        Some(NameOrNumber::Number(n)) => {
            SpanKind::from_otlp_number(n).ok_or_else(|| format!("unknown span kind {n}"))?
        }
        Some(NameOrNumber::Name(n)) => {
            SpanKind::from_name(&n).ok_or_else(|| format!("unknown span kind {n:?}"))?
        }
    };
    let status = match s.status {
        None => Status::default(),
        Some(st) => Status {
            code: match st.code {
                None => StatusCode::Unset,
                Some(NameOrNumber::Number(n)) => StatusCode::from_otlp_number(n)
                    .ok_or_else(|| format!("unknown status code {n}"))?,
                Some(NameOrNumber::Name(n)) => {
                    StatusCode::from_name(&n).ok_or_else(|| format!("unknown status code {n:?}"))?
                }
            },
            message: st.message,
        },
    };
    Ok(Span {
        trace_id: TraceId(parse_hex_id(&s.trace_id, "traceId")?),
        span_id: SpanId(parse_hex_id(&s.span_id, "spanId")?),
        parent_span_id: optional_span_id(&s.parent_span_id, "parentSpanId")?,
        trace_state: super::trace_context::cleaned(s.trace_state),
        name: s.name.into(),
        kind,
        start_time_unix_nano: s.start_time_unix_nano,
        end_time_unix_nano: s.end_time_unix_nano,
        status,
        attributes: attributes(s.attributes)?,
        events: s
            .events
            .into_iter()
            .map(|e| {
                Ok(Event {
                    name: e.name,
                    time_unix_nano: e.time_unix_nano,
                    attributes: attributes(e.attributes)?,
                })
            })
            .collect::<Result<_, String>>()?,
        links: s
            .links
            .into_iter()
            .map(|l| {
                Ok(Link {
                    trace_id: TraceId(parse_hex_id(&l.trace_id, "links[].traceId")?),
                    span_id: SpanId(parse_hex_id(&l.span_id, "links[].spanId")?),
                    trace_state: l.trace_state,
                    attributes: attributes(l.attributes)?,
                })
            })
            .collect::<Result<_, String>>()?,
        resource: resource.clone(),
        scope: scope.clone(),
        seq: 0,
    })
}

fn write_any_from_json(out: &mut Vec<u8>, v: &Json) {
    match v {
        Json::String(s) => {
            out.extend_from_slice(br#"{"stringValue":"#);
            write_str(out, s);
            out.push(b'}');
        }
        Json::Bool(b) => {
            let _ = write!(out, r#"{{"boolValue":{b}}}"#);
        }
        Json::Number(n) => match n.as_i64() {
            Some(i) => {
                let _ = write!(out, r#"{{"intValue":"{i}"}}"#);
            }
            None => {
                let _ = write!(out, r#"{{"doubleValue":{}}}"#, n);
            }
        },
        Json::Array(items) => {
            out.extend_from_slice(br#"{"arrayValue":{"values":["#);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_any_from_json(out, item);
            }
            out.extend_from_slice(b"]}}");
        }
        Json::Object(map) => {
            out.extend_from_slice(br#"{"kvlistValue":{"values":["#);
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(br#"{"key":"#);
                write_str(out, k);
                out.extend_from_slice(br#","value":"#);
                write_any_from_json(out, item);
                out.push(b'}');
            }
            out.extend_from_slice(b"]}}");
        }
        Json::Null => out.extend_from_slice(b"{}"),
    }
}

fn write_any(out: &mut Vec<u8>, v: &AttrValue) {
    match v {
        AttrValue::Str(_) => {
            out.extend_from_slice(br#"{"stringValue":"#);
            write_value(out, v);
            out.push(b'}');
        }
        AttrValue::Int(i) => {
            let _ = write!(out, r#"{{"intValue":"{i}"}}"#);
        }
        AttrValue::Float(_) => {
            out.extend_from_slice(br#"{"doubleValue":"#);
            write_value(out, v);
            out.push(b'}');
        }
        AttrValue::Bool(b) => {
            let _ = write!(out, r#"{{"boolValue":{b}}}"#);
        }
        AttrValue::Json(raw) => match serde_json::from_str::<Json>(raw.get()) {
            Ok(json) => write_any_from_json(out, &json),
            Err(_) => out.extend_from_slice(b"{}"),
        },
    }
}

fn write_kvs(out: &mut Vec<u8>, attrs: &Attributes) {
    out.push(b'[');
    for (i, (k, v)) in attrs.0.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"key":"#);
        flat::write_key(out, k);
        out.extend_from_slice(br#","value":"#);
        write_any(out, v);
        out.push(b'}');
    }
    out.push(b']');
}

/// Appends one span as a whole `ExportTraceServiceRequest` (no newline).
pub fn write_request(out: &mut Vec<u8>, s: &Span) {
    out.extend_from_slice(br#"{"resourceSpans":[{"resource":{"attributes":"#);
    write_kvs(out, &s.resource);
    out.extend_from_slice(br#"},"scopeSpans":[{"#);
    if let Some(scope) = &s.scope {
        out.extend_from_slice(br#""scope":{"name":"#);
        write_str(out, &scope.name);
        out.extend_from_slice(br#","version":"#);
        write_str(out, &scope.version);
        out.extend_from_slice(b"},");
    }
    let _ = write!(
        out,
        r#""spans":[{{"traceId":"{}","spanId":"{}""#,
        s.trace_id, s.span_id
    );
    if let Some(p) = s.parent_span_id {
        let _ = write!(out, r#","parentSpanId":"{p}""#);
    }
    if !s.trace_state.is_empty() {
        out.extend_from_slice(br#","traceState":"#);
        write_str(out, &s.trace_state);
    }
    out.extend_from_slice(br#","name":"#);
    write_str(out, &s.name);
    let _ = write!(
        out,
        r#","kind":{},"startTimeUnixNano":"{}","endTimeUnixNano":"{}","attributes":"#,
        s.kind.otlp_number(),
        s.start_time_unix_nano,
        s.end_time_unix_nano
    );
    write_kvs(out, &s.attributes);
    if !s.events.is_empty() {
        out.extend_from_slice(br#","events":["#);
        for (i, e) in s.events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let _ = write!(out, r#"{{"timeUnixNano":"{}","name":"#, e.time_unix_nano);
            write_str(out, &e.name);
            out.extend_from_slice(br#","attributes":"#);
            write_kvs(out, &e.attributes);
            out.push(b'}');
        }
        out.push(b']');
    }
    if !s.links.is_empty() {
        out.extend_from_slice(br#","links":["#);
        for (i, l) in s.links.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let _ = write!(
                out,
                r#"{{"traceId":"{}","spanId":"{}""#,
                l.trace_id, l.span_id
            );
            if !l.trace_state.is_empty() {
                out.extend_from_slice(br#","traceState":"#);
                write_str(out, &l.trace_state);
            }
            out.extend_from_slice(br#","attributes":"#);
            write_kvs(out, &l.attributes);
            out.push(b'}');
        }
        out.push(b']');
    }
    let _ = write!(out, r#","status":{{"code":{}"#, s.status.code as i32);
    if !s.status.message.is_empty() {
        out.extend_from_slice(br#","message":"#);
        write_str(out, &s.status.message);
    }
    out.extend_from_slice(b"}}]}]}]}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request as the Collector's file exporter writes it, two spans sharing
    /// a resource and scope, with every AnyValue kind.
    const REQUEST: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"support-agent"}}]},
      "scopeSpans":[{"scope":{"name":"openinference.instrumentation.openai","version":"0.1.66"},
      "spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","parentSpanId":"",
        "name":"ChatCompletion","kind":3,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
        "attributes":[{"key":"llm.token_count.prompt","value":{"intValue":"120"}},
                      {"key":"llm.model_name","value":{"stringValue":"gpt-4o"}},
                      {"key":"temp","value":{"doubleValue":0.2}},
                      {"key":"stream","value":{"boolValue":false}},
                      {"key":"tags","value":{"arrayValue":{"values":[{"stringValue":"a"},{"intValue":"2"}]}}},
                      {"key":"meta","value":{"kvlistValue":{"values":[{"key":"k","value":{"stringValue":"v"}}]}}}],
        "events":[{"timeUnixNano":"1544712660500000000","name":"exception","attributes":[{"key":"exception.type","value":{"stringValue":"RateLimitError"}}]}],
        "status":{"code":2,"message":"Error code: 429"}},
       {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175","parentSpanId":"eee19b7ec3c1b174",
        "name":"child","kind":"SPAN_KIND_INTERNAL","startTimeUnixNano":"1544712660100000000","endTimeUnixNano":"1544712660200000000"}]}]}]}"#;

    #[test]
    fn reads_a_collector_request() {
        let spans = parse(REQUEST).unwrap();
        assert_eq!(spans.len(), 2);
        let s = &spans[0];
        assert_eq!(s.trace_id.to_string(), "5b8efff798038103d269b633813fc60c");
        assert_eq!(s.parent_span_id, None);
        assert_eq!(s.kind, SpanKind::Client);
        assert_eq!(s.status.code, StatusCode::Error);
        assert_eq!(
            s.attributes.get("llm.token_count.prompt"),
            Some(&AttrValue::Int(120))
        );
        assert!(
            matches!(s.attributes.get("tags"), Some(AttrValue::Json(j)) if j.get() == r#"["a",2]"#)
        );
        assert!(
            matches!(s.attributes.get("meta"), Some(AttrValue::Json(j)) if j.get() == r#"{"k":"v"}"#)
        );
        assert_eq!(
            s.scope.as_ref().unwrap().name,
            "openinference.instrumentation.openai"
        );
        assert!(
            Arc::ptr_eq(&spans[0].resource, &spans[1].resource),
            "spans share their resource"
        );
        assert_eq!(spans[1].kind, SpanKind::Internal);
        assert_eq!(
            spans[1].parent_span_id.unwrap().to_string(),
            "eee19b7ec3c1b174"
        );
    }

    #[test]
    fn write_then_read_is_identity() {
        for s in parse(REQUEST).unwrap() {
            let mut out = Vec::new();
            write_request(&mut out, &s);
            let back = parse(std::str::from_utf8(&out).unwrap()).unwrap();
            assert_eq!(back, vec![s]);
        }
    }
}
