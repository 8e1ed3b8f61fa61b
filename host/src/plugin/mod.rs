//! Plugins: loading components, sandboxing them (memory and time limits, no
//! ambient capabilities), the data plane (projections), and one typed wrapper
//! per plugin kind.

pub mod bindings;
pub mod breaker;
pub mod builtins;
pub mod instance;
pub mod packed;
pub mod projection;
pub mod runtime;

use std::fmt;

/// The four plugin kinds, one WIT world each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginKind {
    /// `world processor`.
    Processor,
    /// `world evaluator`.
    Evaluator,
    /// `world router`.
    Router,
    /// `world exporter`.
    Exporter,
}

impl PluginKind {
    /// The kind with its indefinite article, for messages.
    pub fn with_article(self) -> &'static str {
        match self {
            PluginKind::Processor => "a processor",
            PluginKind::Evaluator => "an evaluator",
            PluginKind::Router => "a router",
            PluginKind::Exporter => "an exporter",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginKind::Processor => "processor",
            PluginKind::Evaluator => "evaluator",
            PluginKind::Router => "router",
            PluginKind::Exporter => "exporter",
        })
    }
}
