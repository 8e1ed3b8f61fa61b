//! Test fixture, not embedded in the binary: a processor that misbehaves on
//! demand, so the host's limits and `on_error` policies can be tested. Its
//! report gives the host's `instances()` (`chaos_instances`).
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `mode` | `"pass"` | `pass`, `trap` (panic, which aborts), `loop` (never returns), `grow` (allocates until memory runs out), `error` (returns an error), `drop` (drops triggering rows), `tag` (writes `chaos.seen = true`), `bad-edit` (`tag`'s edit, then one naming a row past the batch) |
//! | `trigger` | none | attribute key; when set, only batches holding a span with it misbehave |
//! | `path`, `env`, `port` | none | for `escape`: a directory to read and write in, an environment variable, a loopback port to connect to |
//!
//! Mode `escape` tries what a sandboxed plugin must not do unless granted (read
//! `/etc/passwd`, read and write under `path`, read the variable `env`,
//! connect to `127.0.0.1:port`) and writes what happened, as JSON, to
//! `chaos.escape` on the triggering spans. Mode `giant` returns a 8 MiB value
//! for every span of a triggering batch (a giant output).

use plume_sdk::Rows;
use plume_sdk::processor::{Guest, export_processor};
use plume_sdk::types::{Batch, BatchResult, Edits, Field, Manifest};
use serde::Deserialize;
use std::cell::RefCell;

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_mode")]
    mode: String,
    trigger: Option<String>,
    path: Option<String>,
    env: Option<String>,
    port: Option<u16>,
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
        if ![
            "pass", "trap", "loop", "grow", "error", "drop", "tag", "escape", "giant", "bad-edit",
        ]
        .contains(&c.mode.as_str())
        {
            return Err(format!("config.mode: unknown mode {:?}", c.mode));
        }
        let reads = c.trigger.iter().cloned().map(Field::Attribute).collect();
        CONFIG.with(|cell| *cell.borrow_mut() = c);
        Ok(Manifest {
            reads,
            writes: vec!["chaos.seen".into(), "chaos.escape".into()],
            require_any: vec![],
            sparse: false,
        })
    }

    fn process(batch: Batch) -> Result<BatchResult, String> {
        let c = CONFIG.with(|cell| cell.borrow().clone());
        let width = usize::from(c.trigger.is_some());
        let rows = Rows::new(&batch, width)?;
        let triggered: Vec<u32> = rows
            .iter()
            .filter(|(_, v)| width == 0 || v[0].is_present())
            .map(|(r, _)| r)
            .collect();
        if triggered.is_empty() {
            return Ok(BatchResult {
                edits: Edits::new(),
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
            "escape" => {
                let report = escape(&c).to_string();
                let mut edits = Edits::new();
                for row in triggered {
                    edits.set_str(row, 1, &report);
                }
                Ok(BatchResult {
                    edits,
                    drops: vec![],
                })
            }
            "giant" => {
                let mut edits = Edits::new();
                for row in 0..batch.rows {
                    edits.set_str(row, 1, &"x".repeat(8 << 20));
                }
                Ok(BatchResult {
                    edits,
                    drops: vec![],
                })
            }
            "drop" => Ok(BatchResult {
                edits: Edits::new(),
                drops: triggered,
            }),
            "tag" => {
                let mut edits = Edits::new();
                for row in triggered {
                    edits.set_bool(row, 0, true);
                }
                Ok(BatchResult {
                    edits,
                    drops: vec![],
                })
            }
            "bad-edit" => {
                // A good edit, then one naming a row past the batch: the
                // host refuses the whole answer.
                let mut edits = Edits::new();
                edits.set_bool(triggered[0], 0, true);
                edits.set_bool(batch.rows, 0, true);
                Ok(BatchResult {
                    edits,
                    drops: vec![],
                })
            }
            _ => Ok(BatchResult {
                edits: Edits::new(),
                drops: vec![],
            }),
        }
    }

    /// How many instances share the spans, as the host says: one entry per
    /// instance once the shards' reports are merged.
    fn report() -> String {
        serde_json::json!({ "chaos_instances": [plume_sdk::instances()] }).to_string()
    }
}

/// What happened when trying each thing: "ok ..." or "denied: ...".
fn escape(c: &Config) -> serde_json::Value {
    fn outcome<T>(r: std::io::Result<T>) -> String {
        match r {
            Ok(_) => "ok".into(),
            Err(e) => format!("denied: {e}"),
        }
    }
    let mut out = serde_json::Map::new();
    out.insert(
        "read_etc_passwd".into(),
        outcome(std::fs::read_to_string("/etc/passwd")).into(),
    );
    if let Some(dir) = &c.path {
        out.insert(
            "write".into(),
            outcome(std::fs::write(
                format!("{dir}/escape.txt"),
                "written by a plugin",
            ))
            .into(),
        );
        out.insert(
            "read".into(),
            outcome(std::fs::read_to_string(format!("{dir}/given.txt"))).into(),
        );
    }
    if let Some(name) = &c.env {
        out.insert(
            "env".into(),
            match std::env::var(name) {
                Ok(v) => format!("ok {v}"),
                Err(e) => format!("denied: {e}"),
            }
            .into(),
        );
    }
    if let Some(port) = c.port {
        out.insert(
            "connect".into(),
            outcome(std::net::TcpStream::connect(("127.0.0.1", port))).into(),
        );
    }
    serde_json::Value::Object(out)
}

export_processor!(Chaos);
