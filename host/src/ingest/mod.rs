//! Sources of spans: JSONL files and stdin, and the OTLP receivers (HTTP and gRPC).

pub mod jsonl;
pub mod otlp;
