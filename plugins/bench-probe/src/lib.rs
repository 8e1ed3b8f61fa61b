//! Benchmark fixture for the plugin boundary (see BENCHMARKS.md): reads three
//! attributes (model, input and output tokens), looks up a price, and writes
//! one (`gen_ai.usage.cost`). `plume bench` runs the same work natively in the
//! host to compare. It is embedded as `builtin:bench-probe` so `plume bench`
//! works from the binary alone; it is not meant for real pipelines (the real
//! pricer is `builtin:pricer`).

use plume_sdk::Rows;
use plume_sdk::processor::{Guest, export_processor};
use plume_sdk::types::{Batch, BatchResult, Edits, Field, Manifest};

/// USD per token (input, output). The host's native twin uses the same table.
const PRICES: &[(&str, f64, f64)] = &[
    ("gpt-4o", 2.5e-6, 1.0e-5),
    ("gpt-4o-mini", 1.5e-7, 6.0e-7),
    ("claude-sonnet-4-5", 3.0e-6, 1.5e-5),
    ("claude-haiku-4-5", 1.0e-6, 5.0e-6),
    ("gemini-2.5-pro", 1.25e-6, 1.0e-5),
];

struct Probe;

impl Guest for Probe {
    fn init(_config: String) -> Result<Manifest, String> {
        Ok(Manifest {
            reads: vec![
                Field::Attribute("gen_ai.request.model".into()),
                Field::Attribute("gen_ai.usage.input_tokens".into()),
                Field::Attribute("gen_ai.usage.output_tokens".into()),
            ],
            writes: vec!["gen_ai.usage.cost".into()],
            require_any: vec![0],
            sparse: false,
        })
    }

    fn process(batch: Batch) -> Result<BatchResult, String> {
        let rows = Rows::new(&batch, 3)?;
        let mut edits = Edits::with_capacity(rows.len());
        for (row, v) in rows.iter() {
            let Some(model) = v[0].as_str() else { continue };
            let Some(&(_, input, output)) = PRICES.iter().find(|p| p.0 == model) else {
                continue;
            };
            let cost = v[1].as_f64().unwrap_or(0.0) * input + v[2].as_f64().unwrap_or(0.0) * output;
            edits.set_float(row, 0, cost);
        }
        Ok(BatchResult {
            edits,
            drops: vec![],
        })
    }

    fn report() -> String {
        "{}".into()
    }
}

export_processor!(Probe);
