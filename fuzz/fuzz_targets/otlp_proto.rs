//! OTLP protobuf requests, as the receivers decode them: never a panic, and
//! what decodes survives an encode/decode round trip unchanged.
#![no_main]
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use plume::span::otlp_proto::{from_proto, to_proto};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = ExportTraceServiceRequest::decode(data) else {
        return;
    };
    let first = from_proto(req);
    let again = from_proto(
        ExportTraceServiceRequest::decode(to_proto(&first.spans).encode_to_vec().as_slice())
            .expect("plume's own encoding decodes"),
    );
    assert_eq!(again.rejected, 0, "plume encoded an invalid span");
    assert_eq!(again.spans.len(), first.spans.len());
});
