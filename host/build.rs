//! Builds the built-in plugins (`plugins/`) for wasm32-wasip2 and places them in OUT_DIR, where
//! `runtime::builtin` embeds them with `include_bytes!`.

use std::path::Path;

fn main() {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("host/ sits in the workspace root");
    let components = operator_plugin_build::build_workspace(&root.join("plugins"), &[&root.join("wit")]);
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    for (crate_name, path) in components {
        let short = crate_name.trim_start_matches("operator_plugin_");
        std::fs::copy(&path, out_dir.join(format!("{short}.wasm")))
            .unwrap_or_else(|e| panic!("copying {} into OUT_DIR: {e}", path.display()));
    }
}
