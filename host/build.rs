//! Compiles the builtin plugins under `plugins/` to WebAssembly components
//! (target `wasm32-wasip2`) and generates `builtins.rs`, which embeds them.
//! This is the pattern of wasmtime's test-programs artifacts: a nested cargo
//! build with its own target directory, so it never waits on the outer lock.
//!
//! Each plugin crate states its kind in `[package.metadata.plume]`:
//! `kind = "processor" | "evaluator" | "router" | "exporter"` and
//! `embed = true | false` (false for test fixtures, whose paths are exported
//! to tests as `PLUME_TEST_PLUGINS`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

struct PluginCrate {
    package: String,
    builtin: String,
    kind: String,
    embed: bool,
}

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .parent()
        .expect("host/ has a parent")
        .to_path_buf();
    let plugins_dir = root.join("plugins");
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-changed={}", plugins_dir.display());

    let mut crates = Vec::new();
    for entry in std::fs::read_dir(&plugins_dir)? {
        let dir = entry?.path();
        let manifest = dir.join("Cargo.toml");
        if !manifest.is_file() {
            continue;
        }
        rerun_for_tree(&dir)?;
        if let Some(c) = read_plugin_manifest(&manifest)? {
            crates.push(c);
        }
    }
    crates.sort_by(|a, b| a.builtin.cmp(&b.builtin));

    let target_dir = root.join("target").join("plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "plugin",
            "--target-dir",
        ])
        .arg(&target_dir);
    for c in &crates {
        cmd.args(["-p", &c.package]);
    }
    // The outer build's flags are for the host target, not for wasm.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status()?;
    if !status.success() {
        anyhow::bail!(
            "building the builtin plugins for wasm32-wasip2 failed; is the target installed? (rustup target add wasm32-wasip2)"
        );
    }

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let artifacts = target_dir.join("wasm32-wasip2").join("plugin");
    let mut code = String::from(
        "/// Builtin plugins embedded at build time: (name, kind, component bytes).\npub static EMBEDDED: &[(&str, &str, &[u8])] = &[\n",
    );
    let mut tests = Vec::new();
    for c in &crates {
        let file = artifacts.join(format!("{}.wasm", c.package.replace('-', "_")));
        let copy = out_dir.join(format!("{}.wasm", c.builtin));
        std::fs::copy(&file, &copy)?;
        if c.embed {
            writeln!(
                code,
                "    ({:?}, {:?}, include_bytes!({:?})),",
                c.builtin,
                c.kind,
                copy.display().to_string()
            )?;
        } else {
            tests.push(copy.display().to_string());
        }
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("builtins.rs"), code)?;
    println!("cargo:rustc-env=PLUME_TEST_PLUGINS={}", out_dir.display());
    Ok(())
}

fn rerun_for_tree(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rerun_for_tree(&path)?;
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Ok(())
}

/// Reads `name` and `[package.metadata.plume]` with a line scan (the build
/// script stays free of a TOML parser to keep host builds fast).
fn read_plugin_manifest(path: &Path) -> anyhow::Result<Option<PluginCrate>> {
    let text = std::fs::read_to_string(path)?;
    let mut package = None;
    let mut kind = None;
    let mut embed = true;
    let mut builtin = None;
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim().trim_matches('"'));
        match (section.as_str(), k) {
            ("[package]", "name") => package = Some(v.to_string()),
            ("[package.metadata.plume]", "kind") => kind = Some(v.to_string()),
            ("[package.metadata.plume]", "builtin") => builtin = Some(v.to_string()),
            ("[package.metadata.plume]", "embed") => embed = v == "true",
            _ => {}
        }
    }
    let (Some(package), Some(kind), Some(builtin)) = (package, kind, builtin) else {
        return Ok(None); // not a plugin (e.g. the SDK)
    };
    Ok(Some(PluginCrate {
        package,
        builtin,
        kind,
        embed,
    }))
}
