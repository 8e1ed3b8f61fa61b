//! pipeline.toml text: parsing, `${VAR}` substitution and validation never
//! panic; every rejection is a list of errors with a message.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = plume::config::parse("fuzz.toml", text, |name| {
        (name.len() % 2 == 0).then(|| "value".to_string())
    }) {
        assert!(!errors.0.is_empty());
        assert!(errors.0.iter().all(|e| !e.message.is_empty()));
    }
});
