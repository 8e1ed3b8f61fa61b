//! W3C traceparent and tracestate values: never a panic; an accepted version
//! 00 traceparent is exactly the lowercase form of what it parsed to.
#![no_main]
use libfuzzer_sys::fuzz_target;
use plume::span::trace_context::{parse_traceparent, validate_tracestate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(tp) = parse_traceparent(text)
        && tp.version == 0
    {
        let again = format!("00-{}-{}-{:02x}", tp.trace_id, tp.parent_id, tp.flags);
        assert_eq!(again, text.trim_matches([' ', '\t']));
    }
    let _ = validate_tracestate(text);
});
