//! Host-side bindings of the plugin contract in `wit/` (package `operator:plugin@0.1.0`).
//!
//! One module per world. Both worlds import the same interfaces (`http`, `log`, `config`), so
//! the `tools` bindings reuse the types generated for `subject`.

/// Bindings of the `subject` world (subject adapters: one kind of system each).
pub mod subject {
    wasmtime::component::bindgen!({
        world: "subject",
        path: "../wit",
        imports: {
            "operator:plugin/http.send": async | trappable,
            default: trappable,
        },
        exports: { default: async },
    });
}

/// Bindings of the `tools` world (general tools such as wait, log, notify).
pub mod tools {
    wasmtime::component::bindgen!({
        world: "tools",
        path: "../wit",
        exports: { default: async },
        with: {
            "operator:plugin/types": super::subject::operator::plugin::types,
            "operator:plugin/http": super::subject::operator::plugin::http,
            "operator:plugin/log": super::subject::operator::plugin::log,
            "operator:plugin/config": super::subject::operator::plugin::config,
        },
    });
}

pub use subject::operator::plugin::{config as wit_config, http as wit_http, log as wit_log, types};
