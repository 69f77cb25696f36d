//! The plugins compiled into the binary (built from `plugins/` by `host/build.rs`).

use super::manifest::Manifest;

/// A plugin embedded in the binary.
pub struct BuiltIn {
    /// Its name.
    pub name: &'static str,
    /// Its `plugin.toml`.
    pub manifest_text: &'static str,
    /// The component.
    pub component: &'static [u8],
}

impl BuiltIn {
    /// Its parsed manifest.
    pub fn manifest(&self) -> Result<Manifest, String> {
        Manifest::parse(self.manifest_text, &format!("built-in plugin {}", self.name)).map_err(|e| e.to_string())
    }
}

/// Every built-in plugin.
pub const BUILTINS: &[BuiltIn] = &[
    BuiltIn {
        name: "tikv",
        manifest_text: include_str!("../../../plugins/tikv/plugin.toml"),
        component: include_bytes!(concat!(env!("OUT_DIR"), "/tikv.wasm")),
    },
    BuiltIn {
        name: "tools",
        manifest_text: include_str!("../../../plugins/tools/plugin.toml"),
        component: include_bytes!(concat!(env!("OUT_DIR"), "/tools.wasm")),
    },
];
