//! The one place that generates host bindings from `wit/`. Nothing else in
//! the host names generated items except through the re-exports below.

#![allow(missing_docs, unsafe_code, clippy::all)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "processor",
});

/// Evaluator world, sharing the `types` and `host` interfaces above.
pub mod evaluator {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "evaluator",
        with: {
            "plume:pipeline/types": super::plume::pipeline::types,
            "plume:pipeline/host": super::plume::pipeline::host,
        },
    });
}

/// Router world.
pub mod router {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "router",
        with: {
            "plume:pipeline/types": super::plume::pipeline::types,
            "plume:pipeline/host": super::plume::pipeline::host,
        },
    });
}

/// Exporter world.
pub mod exporter {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "exporter",
        with: {
            "plume:pipeline/types": super::plume::pipeline::types,
            "plume:pipeline/host": super::plume::pipeline::host,
        },
    });
}

pub use self::plume::pipeline::host as host_api;
pub use self::plume::pipeline::types;

/// The version of the `plume:pipeline` package in `wit/pipeline.wit`: a
/// plugin built against another one is refused by name, before its types
/// fail to match in ways that do not say why.
pub const WIT_VERSION: &str = "0.3.0";

/// The version a component was built against, when it names plume's
/// package (`plume:pipeline/types@0.1.0` among its imports or exports) and
/// that version is not [`WIT_VERSION`].
pub fn other_wit_version<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    names
        .into_iter()
        .filter_map(|n| n.strip_prefix("plume:pipeline/")?.split_once('@'))
        .map(|(_, version)| version)
        .find(|&version| version != WIT_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_wit_files() {
        let wit = include_str!("../../../wit/pipeline.wit");
        assert!(wit.contains(&format!("package plume:pipeline@{WIT_VERSION};")));
    }

    #[test]
    fn other_versions_are_found_by_name() {
        let current = format!("plume:pipeline/host@{WIT_VERSION}");
        assert_eq!(
            other_wit_version([current.as_str(), "wasi:io/streams@0.2.6"]),
            None
        );
        assert_eq!(other_wit_version(["init", "process"]), None);
        assert_eq!(
            other_wit_version(["wasi:cli/environment@0.2.0", "plume:pipeline/types@0.1.0"]),
            Some("0.1.0")
        );
    }
}
