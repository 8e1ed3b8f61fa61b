//! The registry of builtin plugins: `builtin:NAME` -> embedded component.
//! Built by `build.rs` from the crates under `plugins/`.

use super::PluginKind;

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// One embedded plugin.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// The name after `builtin:`.
    pub name: &'static str,
    /// Its world.
    pub kind: PluginKind,
    /// The component.
    pub bytes: &'static [u8],
}

fn kind_of(s: &str) -> PluginKind {
    match s {
        "evaluator" => PluginKind::Evaluator,
        "router" => PluginKind::Router,
        "exporter" => PluginKind::Exporter,
        _ => PluginKind::Processor,
    }
}

/// The builtin called `name`.
pub fn lookup(name: &str) -> Option<Builtin> {
    EMBEDDED
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(name, kind, bytes)| Builtin {
            name,
            kind: kind_of(kind),
            bytes,
        })
}

/// Every builtin's name, sorted.
pub fn names() -> Vec<&'static str> {
    EMBEDDED.iter().map(|(n, _, _)| *n).collect()
}
