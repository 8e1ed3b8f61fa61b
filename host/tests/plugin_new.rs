//! `plume plugin new` makes, for each language and each kind of plugin, a
//! project that builds with the commands its README gives and passes its own
//! `plume test` unchanged.
//! Needs the toolchains of `host/tests/polyglot.rs` (componentize-py, Node.js).

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start ({e})"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

const KINDS: [&str; 4] = ["processor", "evaluator", "router", "exporter"];

fn scaffold_builds_and_passes(lang: &str, kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("team-{lang}-{kind}");
    let ident = name.replace('-', "_");
    let plume = env!("CARGO_BIN_EXE_plume");
    run(
        Command::new(plume)
            .args([
                "plugin", "new", &name, "--lang", lang, "--kind", kind, "--dir",
            ])
            .arg(dir.path()),
        "plume plugin new",
    );
    let project = dir.path().join(&name);
    for f in [
        "wit/pipeline.wit",
        "pipeline.toml",
        "tests.toml",
        "README.md",
    ] {
        assert!(project.join(f).is_file(), "{lang}: no {f}");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    match lang {
        "rust" => {
            run(
                Command::new(env!("CARGO"))
                    .current_dir(&project)
                    .args(["build", "--target", "wasm32-wasip2", "--release"])
                    // Shared with other runs, so the dependencies build once.
                    .env("CARGO_TARGET_DIR", root.join("target/scaffold"))
                    .env_remove("RUSTFLAGS")
                    .env_remove("CARGO_ENCODED_RUSTFLAGS"),
                "cargo build",
            );
            let file = format!("{ident}.wasm");
            let built = root
                .join("target/scaffold/wasm32-wasip2/release")
                .join(&file);
            let at = project.join("target/wasm32-wasip2/release");
            std::fs::create_dir_all(&at).unwrap();
            std::fs::copy(built, at.join(file)).unwrap();
        }
        "python" => {
            run(
                Command::new("componentize-py")
                    .current_dir(&project)
                    .args(["-d", "wit", "-w", kind, "componentize", "app", "-o"])
                    .arg(format!("{name}.wasm")),
                "componentize-py",
            );
        }
        "js" => {
            run(
                Command::new("npm").current_dir(&project).args([
                    "install",
                    "--prefer-offline",
                    "--no-audit",
                    "--no-fund",
                ]),
                "npm install",
            );
            run(
                Command::new("node").current_dir(&project).arg("build.mjs"),
                "node build.mjs",
            );
        }
        _ => unreachable!(),
    }
    let out = run(
        Command::new(plume)
            .current_dir(&project)
            .args(["test", "tests.toml"])
            .env("PLUME_CACHE_DIR", root.join("target/plume-cache")),
        "plume test",
    );
    assert!(out.contains("1 passed, 0 failed"), "{lang} {kind}: {out}");
}

#[test]
fn new_rust_plugins_of_every_kind_build_and_pass_their_tests() {
    for kind in KINDS {
        scaffold_builds_and_passes("rust", kind);
    }
}

#[test]
fn new_python_plugins_of_every_kind_build_and_pass_their_tests() {
    for kind in KINDS {
        scaffold_builds_and_passes("python", kind);
    }
}

#[test]
fn new_js_plugins_of_every_kind_build_and_pass_their_tests() {
    for kind in KINDS {
        scaffold_builds_and_passes("js", kind);
    }
}

#[test]
fn an_existing_folder_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_plume"))
        .args(["plugin", "new", "taken", "--lang", "rust", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}
