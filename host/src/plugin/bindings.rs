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
