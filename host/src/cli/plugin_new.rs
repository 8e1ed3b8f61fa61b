//! `plume plugin new NAME --lang rust|python|js [--kind processor|evaluator|router|exporter]`:
//! a working plugin project
//! (the WIT, the code, its build, a pipeline and `plume test` tests) that
//! builds and passes its tests unchanged.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The contract every plugin builds against, as this plume speaks it.
const WIT: &str = include_str!("../../../wit/pipeline.wit");

/// Languages a project can be made in.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Lang {
    /// Rust with wit-bindgen (`cargo build --target wasm32-wasip2`).
    Rust,
    /// Python with componentize-py.
    Python,
    /// JavaScript with componentize-js.
    Js,
}

/// Plugin kinds a project can be made for (the worlds of wit/pipeline.wit).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// Reads and edits spans.
    Processor,
    /// Keeps state over spans, raises alerts, reports.
    Evaluator,
    /// Deduplicates alerts and chooses their exporters.
    Router,
    /// Turns spans and alerts into payloads for a destination.
    Exporter,
}

impl Kind {
    fn world(self) -> &'static str {
        match self {
            Kind::Processor => "processor",
            Kind::Evaluator => "evaluator",
            Kind::Router => "router",
            Kind::Exporter => "exporter",
        }
    }
}

/// The code template of a language and kind.
fn code(lang: Lang, kind: Kind) -> &'static str {
    match (lang, kind) {
        (Lang::Rust, Kind::Processor) => include_str!("templates/rust/processor.rs.tmpl"),
        (Lang::Rust, Kind::Evaluator) => include_str!("templates/rust/evaluator.rs.tmpl"),
        (Lang::Rust, Kind::Router) => include_str!("templates/rust/router.rs.tmpl"),
        (Lang::Rust, Kind::Exporter) => include_str!("templates/rust/exporter.rs.tmpl"),
        (Lang::Python, Kind::Processor) => include_str!("templates/python/processor.py.tmpl"),
        (Lang::Python, Kind::Evaluator) => include_str!("templates/python/evaluator.py.tmpl"),
        (Lang::Python, Kind::Router) => include_str!("templates/python/router.py.tmpl"),
        (Lang::Python, Kind::Exporter) => include_str!("templates/python/exporter.py.tmpl"),
        (Lang::Js, Kind::Processor) => include_str!("templates/js/processor.js.tmpl"),
        (Lang::Js, Kind::Evaluator) => include_str!("templates/js/evaluator.js.tmpl"),
        (Lang::Js, Kind::Router) => include_str!("templates/js/router.js.tmpl"),
        (Lang::Js, Kind::Exporter) => include_str!("templates/js/exporter.js.tmpl"),
    }
}

/// The pipeline and tests of a kind.
fn pipeline_and_tests(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Processor => (
            include_str!("templates/kinds/processor.pipeline.toml.tmpl"),
            include_str!("templates/kinds/processor.tests.toml.tmpl"),
        ),
        Kind::Evaluator => (
            include_str!("templates/kinds/evaluator.pipeline.toml.tmpl"),
            include_str!("templates/kinds/evaluator.tests.toml.tmpl"),
        ),
        Kind::Router => (
            include_str!("templates/kinds/router.pipeline.toml.tmpl"),
            include_str!("templates/kinds/router.tests.toml.tmpl"),
        ),
        Kind::Exporter => (
            include_str!("templates/kinds/exporter.pipeline.toml.tmpl"),
            include_str!("templates/kinds/exporter.tests.toml.tmpl"),
        ),
    }
}

/// Arguments of `plume plugin new`.
#[derive(clap::Args)]
pub struct NewArgs {
    /// The plugin's name: lowercase letters, digits, `-` and `_`.
    name: String,
    /// The language.
    #[arg(long)]
    lang: Lang,
    /// The kind of plugin.
    #[arg(long, default_value = "processor")]
    kind: Kind,
    /// Where to create the project folder (default: the current folder).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

/// `plume plugin ...`.
#[derive(clap::Subcommand)]
pub enum PluginCommand {
    /// Create a plugin project that builds and passes `plume test` unchanged.
    New(NewArgs),
}

pub(super) fn plugin(cmd: &PluginCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PluginCommand::New(args) => new(args),
    }
}

fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn new(args: &NewArgs) -> anyhow::Result<ExitCode> {
    let name = &args.name;
    if !valid_name(name) {
        bail!(
            "plugin name {name:?}: use lowercase letters, digits, '-' and '_', starting with a letter"
        );
    }
    let root = args.dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    let crate_name = name.replace('-', "_");
    let attr = format!("{crate_name}.tagged");
    let (wasm, build, language) = match args.lang {
        Lang::Rust => (
            format!("target/wasm32-wasip2/release/{crate_name}.wasm"),
            "cargo build --target wasm32-wasip2 --release".to_string(),
            "Rust",
        ),
        Lang::Python => (
            format!("{name}.wasm"),
            format!(
                "pip install componentize-py==0.25.1\ncomponentize-py -d wit -w {} componentize app -o {name}.wasm",
                args.kind.world()
            ),
            "Python",
        ),
        Lang::Js => (
            format!("{name}.wasm"),
            "npm install\nnode build.mjs".to_string(),
            "JavaScript",
        ),
    };
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{attr}}", &attr)
            .replace("{{ident}}", &crate_name)
            .replace("{{wasm}}", &wasm)
            .replace("{{build}}", &build)
            .replace("{{language}}", language)
            .replace("{{kind}}", args.kind.world())
    };
    let (pipeline, tests) = pipeline_and_tests(args.kind);
    let mut files: Vec<(&str, String)> = vec![
        ("wit/pipeline.wit", WIT.to_string()),
        ("pipeline.toml", fill(pipeline)),
        ("tests.toml", fill(tests)),
        ("README.md", fill(include_str!("templates/README.md.tmpl"))),
    ];
    let source = fill(code(args.lang, args.kind));
    match args.lang {
        Lang::Rust => {
            files.push((
                "Cargo.toml",
                fill(include_str!("templates/rust/Cargo.toml.tmpl")),
            ));
            files.push(("src/lib.rs", source));
            files.push((".gitignore", "target/\n".into()));
        }
        Lang::Python => {
            files.push(("app.py", source));
            files.push((".gitignore", "*.wasm\n__pycache__/\n".into()));
        }
        Lang::Js => {
            files.push(("plugin.js", source));
            files.push((
                "package.json",
                fill(include_str!("templates/js/package.json.tmpl")),
            ));
            files.push((
                "build.mjs",
                fill(include_str!("templates/js/build.mjs.tmpl")),
            ));
            files.push((".gitignore", "*.wasm\nnode_modules/\n".into()));
        }
    }
    for (path, text) in &files {
        write(&root, path, text)?;
    }
    println!(
        "created {} ({language} {})",
        root.display(),
        args.kind.world()
    );
    println!("  cd {}", root.display());
    for line in build.lines() {
        println!("  {line}");
    }
    println!("  plume test tests.toml");
    Ok(ExitCode::SUCCESS)
}

fn write(root: &Path, path: &str, text: &str) -> anyhow::Result<()> {
    let full = root.join(path);
    if let Some(dir) = full.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&full, text).with_context(|| format!("cannot write {}", full.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(valid_name("team-rules_2"));
        for bad in ["", "Team", "2x", "a b", "a/b", "../x"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
