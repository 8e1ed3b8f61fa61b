//! OTLP receivers: `/v1/traces` over HTTP (protobuf or JSON, optionally
//! gzipped) and the gRPC `TraceService`. Both decode into the span model and
//! hand spans to the service's queue with `try_send`: when the pipeline cannot
//! keep up the client is told to retry (HTTP 503 with `Retry-After`, gRPC
//! `UNAVAILABLE`) instead of plume's heap growing. Spans with invalid ids are
//! rejected one by one and reported as an OTLP partial success.

use crate::ingest::SpanBudget;
use crate::span::otlp_proto::{Decoded, from_proto};
use crate::span::{Span, otlp_json};
use crate::wal::{Refused, Wal};
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as Http, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// What the receivers share: the queue into the pipeline, the token, limits
/// and counters.
pub struct Receiver {
    /// Spans into the pipeline.
    pub queue: mpsc::Sender<Vec<Span>>,
    /// The bound on spans queued (`[ingest] max_queued_spans`).
    pub budget: Arc<SpanBudget>,
    /// With `[wal]`: spans are logged (and passed on by the log's writer)
    /// before the request is answered.
    pub wal: Option<Wal>,
    /// Bearer token required on every request, when set.
    pub token: Option<String>,
    /// Largest request body accepted, compressed or not, in bytes.
    pub max_body_bytes: usize,
    /// Counters for `/metrics`.
    pub stats: Arc<ReceiverStats>,
}

/// Requests and spans seen by the receivers.
#[derive(Default)]
pub struct ReceiverStats {
    /// Spans accepted into the pipeline.
    pub spans_accepted: AtomicU64,
    /// Spans rejected (invalid ids) inside accepted requests.
    pub spans_rejected: AtomicU64,
    /// Requests refused because the pipeline was full (503 / UNAVAILABLE).
    pub requests_throttled: AtomicU64,
    /// Requests refused as malformed, too large or unauthorised.
    pub requests_refused: AtomicU64,
}

/// Why a request was refused.
#[derive(Debug)]
enum Refusal {
    Unauthorized,
    TooLarge,
    Unsupported(String),
    Malformed(String),
    Busy,
    /// The write-ahead log cannot be written: nothing is acknowledged.
    LogFailed(String),
}

impl Receiver {
    fn authorised(&self, header: Option<&str>) -> bool {
        match &self.token {
            None => true,
            Some(token) => header
                .and_then(|h| h.strip_prefix("Bearer "))
                .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes())),
        }
    }

    /// Queues decoded spans (logging them first, with `[wal]`); `Busy` when
    /// the pipeline's queue or the log is full.
    async fn accept(&self, decoded: Decoded) -> Result<Decoded, Refusal> {
        let accepted = decoded.spans.len() as u64;
        if accepted > 0 {
            let spans = decoded.spans;
            let n = spans.len();
            if !self.budget.try_take(n) {
                self.stats
                    .requests_throttled
                    .fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::Busy);
            }
            let queued = match &self.wal {
                Some(wal) => wal.append(spans).await.map_err(|r| match r {
                    Refused::Full | Refused::Busy => Refusal::Busy,
                    Refused::Failed(m) => Refusal::LogFailed(m),
                }),
                None => self.queue.try_send(spans).map_err(|_| Refusal::Busy),
            };
            if let Err(refusal) = queued {
                self.budget.give_back(n);
                if matches!(refusal, Refusal::Busy) {
                    self.stats
                        .requests_throttled
                        .fetch_add(1, Ordering::Relaxed);
                }
                return Err(refusal);
            }
        }
        self.stats
            .spans_accepted
            .fetch_add(accepted, Ordering::Relaxed);
        self.stats
            .spans_rejected
            .fetch_add(decoded.rejected, Ordering::Relaxed);
        Ok(Decoded {
            spans: Vec::new(),
            ..decoded
        })
    }
}

/// Compares secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Decoded {
    /// The OTLP partial success to answer, when spans were rejected.
    fn partial_success(&self) -> Option<ExportTracePartialSuccess> {
        (self.rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: self.rejected as i64,
            error_message: self.message.clone(),
        })
    }
}

/// The HTTP receiver: `POST /v1/traces`.
pub fn http_router(receiver: Arc<Receiver>) -> axum::Router {
    axum::Router::new()
        .route("/v1/traces", axum::routing::post(http_export))
        .with_state(receiver)
}

async fn http_export(State(rx): State<Arc<Receiver>>, headers: HeaderMap, body: Body) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let outcome = async {
        // The token is checked before the body is read.
        if !rx.authorised(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        ) {
            let _ = read_body(&headers, body, None).await;
            return Err(Refusal::Unauthorized);
        }
        let body = read_body(&headers, body, Some(rx.max_body_bytes)).await?;
        rx.accept(decode_http(&headers, &body, json, rx.max_body_bytes)?)
            .await
    }
    .await;
    match outcome {
        Ok(d) => {
            let partial = d.partial_success();
            if json {
                let body = match partial {
                    None => "{}".to_string(),
                    Some(p) => serde_json::json!({"partialSuccess": {
                        "rejectedSpans": p.rejected_spans.to_string(),
                        "errorMessage": p.error_message}})
                    .to_string(),
                };
                ([(header::CONTENT_TYPE, "application/json")], body).into_response()
            } else {
                let body = ExportTraceServiceResponse {
                    partial_success: partial,
                }
                .encode_to_vec();
                ([(header::CONTENT_TYPE, "application/x-protobuf")], body).into_response()
            }
        }
        Err(refusal) => {
            if !matches!(refusal, Refusal::Busy) {
                rx.stats.requests_refused.fetch_add(1, Ordering::Relaxed);
            }
            let (status, message) = match refusal {
                Refusal::Unauthorized => (
                    Http::UNAUTHORIZED,
                    "missing or wrong bearer token".to_string(),
                ),
                Refusal::TooLarge => (
                    Http::PAYLOAD_TOO_LARGE,
                    format!("request body over {} bytes", rx.max_body_bytes),
                ),
                Refusal::Unsupported(m) => (Http::UNSUPPORTED_MEDIA_TYPE, m),
                Refusal::Malformed(m) => (Http::BAD_REQUEST, m),
                Refusal::Busy => {
                    return (
                        Http::SERVICE_UNAVAILABLE,
                        [(header::RETRY_AFTER, "1")],
                        "pipeline is full, retry later",
                    )
                        .into_response();
                }
                Refusal::LogFailed(m) => {
                    return (
                        Http::SERVICE_UNAVAILABLE,
                        [(header::RETRY_AFTER, "5")],
                        format!("spans not accepted: {m}"),
                    )
                        .into_response();
                }
            };
            (status, message).into_response()
        }
    }
}

/// Bytes of a refused body read and thrown away before answering. A client
/// still sending when the server closes gets a reset instead of the answer
/// (Go's net/http reads on in the same way); past this the connection is
/// closed on it.
const DRAIN_BYTES: usize = 1 << 20;

/// The body's length as its header declares it.
fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The request body, at most `limit` bytes (`None`: the request is refused,
/// none is wanted); over that, `TooLarge` once the rest (up to `DRAIN_BYTES`
/// more) has been read and dropped. A body known to be over `limit` is
/// refused unread when the client waits for a go-ahead before sending it
/// (`Expect: 100-continue`, as curl sends for large bodies) or declares more
/// than would be read on.
async fn read_body(
    headers: &HeaderMap,
    mut body: Body,
    limit: Option<usize>,
) -> Result<Bytes, Refusal> {
    let declared = declared_length(headers);
    let waits = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let over = limit.is_none_or(|limit| declared.is_some_and(|n| n > limit));
    let limit = limit.unwrap_or(0);
    if over && (waits || declared.is_some_and(|n| n > limit.saturating_add(DRAIN_BYTES))) {
        return Err(Refusal::TooLarge);
    }
    // The frames as they came: a body in one frame is passed on uncopied.
    let mut kept: Vec<Bytes> = Vec::new();
    let (mut len, mut dropped) = (0usize, 0usize);
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| Refusal::Malformed(format!("request body: {e}")))?;
        // Trailers carry nothing for OTLP.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if dropped == 0 && len + data.len() <= limit {
            len += data.len();
            kept.push(data);
        } else {
            dropped += data.len();
            if dropped > DRAIN_BYTES {
                break;
            }
        }
    }
    if dropped > 0 {
        return Err(Refusal::TooLarge);
    }
    Ok(match kept.len() {
        0 => Bytes::new(),
        1 => kept.swap_remove(0),
        _ => kept.concat().into(),
    })
}

fn decode_http(
    headers: &HeaderMap,
    body: &[u8],
    json: bool,
    max_body_bytes: usize,
) -> Result<Decoded, Refusal> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !json && !content_type.starts_with("application/x-protobuf") {
        return Err(Refusal::Unsupported(format!(
            "content type {content_type:?}: send application/x-protobuf or application/json"
        )));
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    let inflated;
    let body = match encoding {
        "identity" | "" => body,
        "gzip" => {
            inflated = gunzip(body, max_body_bytes)?;
            &inflated[..]
        }
        other => {
            return Err(Refusal::Unsupported(format!(
                "content encoding {other:?}: send gzip or none"
            )));
        }
    };
    if json {
        let text = std::str::from_utf8(body)
            .map_err(|_| Refusal::Malformed("body is not UTF-8".into()))?;
        otlp_json::parse_request(text).map_err(Refusal::Malformed)
    } else {
        let req = ExportTraceServiceRequest::decode(body).map_err(|e| {
            Refusal::Malformed(format!("not an OTLP ExportTraceServiceRequest: {e}"))
        })?;
        Ok(from_proto(req))
    }
}

/// Inflates at most `limit` bytes: a small gzip body can expand enormously.
fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Refusal::Malformed(format!("gzip: {e}")))?;
    if out.len() > limit {
        return Err(Refusal::TooLarge);
    }
    Ok(out)
}

/// The gRPC receiver.
pub fn grpc_service(receiver: Arc<Receiver>) -> TraceServiceServer<GrpcReceiver> {
    let limit = receiver.max_body_bytes;
    TraceServiceServer::new(GrpcReceiver(receiver))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(limit)
}

/// `TraceService` over the shared receiver.
pub struct GrpcReceiver(Arc<Receiver>);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let rx = &self.0;
        let auth = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if !rx.authorised(auth) {
            rx.stats.requests_refused.fetch_add(1, Ordering::Relaxed);
            return Err(tonic::Status::unauthenticated(
                "missing or wrong bearer token",
            ));
        }
        match rx.accept(from_proto(request.into_inner())).await {
            Ok(d) => Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: d.partial_success(),
            })),
            Err(Refusal::LogFailed(m)) => Err(tonic::Status::unavailable(format!(
                "spans not accepted: {m}"
            ))),
            Err(_) => Err(tonic::Status::unavailable("pipeline is full, retry later")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body of `chunks` frames of `size` bytes; `read` counts the frames taken.
    fn body(chunks: usize, size: usize, read: Arc<AtomicU64>) -> Body {
        use tokio_stream::StreamExt;
        Body::from_stream(tokio_stream::iter(0..chunks).map(move |_| {
            read.fetch_add(1, Ordering::Relaxed);
            Ok::<_, std::io::Error>(vec![b'x'; size])
        }))
    }

    #[tokio::test]
    async fn a_refused_body_is_read_on_up_to_a_bound() {
        let read = Arc::new(AtomicU64::new(0));
        let whole = read_body(&HeaderMap::new(), body(3, 4, read.clone()), Some(12))
            .await
            .unwrap();
        assert_eq!(&whole[..], &[b'x'; 12][..]);
        // Over the limit: refused, but only once all of it was read.
        let read = Arc::new(AtomicU64::new(0));
        let over = read_body(&HeaderMap::new(), body(3, 4, read.clone()), Some(5)).await;
        assert!(matches!(over, Err(Refusal::TooLarge)), "{over:?}");
        assert_eq!(read.load(Ordering::Relaxed), 3);
        // Far over it: reading stops past DRAIN_BYTES.
        let read = Arc::new(AtomicU64::new(0));
        let huge = read_body(&HeaderMap::new(), body(64, 64 << 10, read.clone()), None).await;
        assert!(matches!(huge, Err(Refusal::TooLarge)), "{huge:?}");
        assert_eq!(
            read.load(Ordering::Relaxed) as usize,
            DRAIN_BYTES / (64 << 10) + 1
        );
    }

    #[test]
    fn tokens_compare_in_full() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secre"));
    }

    #[test]
    fn invalid_ids_are_rejected_one_by_one() {
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as P};
        let ok = P {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            parent_span_id: vec![0; 8],
            name: "ok".into(),
            ..P::default()
        };
        let zero_trace = P {
            trace_id: vec![0; 16],
            ..ok.clone()
        };
        let short_span = P {
            span_id: vec![2; 4],
            ..ok.clone()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![ok, zero_trace, short_span],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        };
        let d = from_proto(req);
        assert_eq!(d.spans.len(), 1);
        assert_eq!(d.spans[0].parent_span_id, None, "all-zero parent is a root");
        assert_eq!(d.rejected, 2);
        assert_eq!(d.message, "trace_id is all zeros");
    }
}
