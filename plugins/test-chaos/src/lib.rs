//! Test fixture, not embedded in the binary: a processor that misbehaves on
//! demand, so the host's limits and `on_error` policies can be tested.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `mode` | `"pass"` | `pass`, `trap` (panic, which aborts), `loop` (never returns), `grow` (allocates until memory runs out), `error` (returns an error), `drop` (drops triggering rows), `tag` (writes `chaos.seen = true`) |
//! | `trigger` | none | attribute key; when set, only batches holding a span with it misbehave |

use plume_sdk::Rows;
use plume_sdk::processor::{Guest, export_processor};
use plume_sdk::types::{Batch, BatchResult, Edit, Field, Manifest, Value};
use serde::Deserialize;
use std::cell::RefCell;

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_mode")]
    mode: String,
    trigger: Option<String>,
}

fn default_mode() -> String {
    "pass".into()
}

thread_local! {
    static CONFIG: RefCell<Config> = RefCell::new(Config::default());
}

struct Chaos;

impl Guest for Chaos {
    fn init(config: String) -> Result<Manifest, String> {
        let c: Config = plume_sdk::parse_config(&config)?;
        if !["pass", "trap", "loop", "grow", "error", "drop", "tag"].contains(&c.mode.as_str()) {
            return Err(format!("config.mode: unknown mode {:?}", c.mode));
        }
        let reads = c.trigger.iter().cloned().map(Field::Attribute).collect();
        CONFIG.with(|cell| *cell.borrow_mut() = c);
        Ok(Manifest {
            reads,
            writes: vec!["chaos.seen".into()],
            require_any: vec![],
            sparse: false,
        })
    }

    fn process(batch: Batch) -> Result<BatchResult, String> {
        let c = CONFIG.with(|cell| cell.borrow().clone());
        let width = usize::from(c.trigger.is_some());
        let rows = Rows::new(&batch, width);
        let triggered: Vec<u32> = rows
            .iter()
            .filter(|(_, v)| width == 0 || v[0].is_present())
            .map(|(r, _)| r)
            .collect();
        if triggered.is_empty() {
            return Ok(BatchResult {
                edits: vec![],
                drops: vec![],
            });
        }
        match c.mode.as_str() {
            "trap" => panic!("chaos: trap requested"),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "error" => Err(format!("chaos: failing a batch of {} rows", batch.rows)),
            "drop" => Ok(BatchResult {
                edits: vec![],
                drops: triggered,
            }),
            "tag" => Ok(BatchResult {
                edits: triggered
                    .into_iter()
                    .map(|row| Edit {
                        row,
                        slot: 0,
                        value: Value::Boolean(true),
                    })
                    .collect(),
                drops: vec![],
            }),
            _ => Ok(BatchResult {
                edits: vec![],
                drops: vec![],
            }),
        }
    }

    fn report() -> String {
        "{}".into()
    }
}

export_processor!(Chaos);
