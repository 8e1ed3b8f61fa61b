//! OTLP/JSON requests, as the HTTP receiver decodes them: never a panic; valid
//! spans written back as OTLP/JSON parse again.
#![no_main]
use libfuzzer_sys::fuzz_target;
use plume::span::otlp_json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(decoded) = otlp_json::parse_request(text) else {
        return;
    };
    for span in &decoded.spans {
        let mut out = Vec::new();
        otlp_json::write_request(&mut out, span);
        let again = otlp_json::parse(std::str::from_utf8(&out).expect("UTF-8"))
            .expect("plume's own OTLP/JSON parses");
        assert_eq!(again.len(), 1);
    }
});
