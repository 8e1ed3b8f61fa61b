//! Sources of spans. JSONL files and stdin here; OTLP receivers come with the
//! service mode.

pub mod jsonl;
