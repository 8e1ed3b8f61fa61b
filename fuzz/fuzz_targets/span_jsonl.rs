//! Span JSONL lines (flat or OTLP/JSON): never a panic; a flat line reads
//! the same through the fast scanner as through serde; the trace id read
//! without parsing (by which a sharded pipeline's head routes lines) is the
//! parsed span's; a parsed span written as flat JSON parses back to the
//! same span.
#![no_main]
use libfuzzer_sys::fuzz_target;
use plume::span::{flat, jsonl};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    assert_eq!(flat::parse(line), flat::parse_serde(line), "{line}");
    let mut spans = Vec::new();
    if jsonl::parse_line(line, &mut spans).is_err() {
        assert!(spans.is_empty(), "a failed line appends nothing");
        return;
    }
    if let Some(id) = jsonl::trace_id_of_line(data) {
        assert_eq!(spans.len(), 1, "{line}");
        assert_eq!(spans[0].trace_id, id, "{line}");
    }
    for span in spans {
        let mut out = Vec::new();
        flat::write(&mut out, &span);
        let mut back = Vec::new();
        jsonl::parse_line(std::str::from_utf8(&out).expect("UTF-8"), &mut back)
            .expect("plume's own flat JSON parses");
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].trace_id, span.trace_id);
        assert_eq!(back[0].span_id, span.span_id);
        assert_eq!(back[0].attributes.len(), span.attributes.len());
    }
});
