//! Builds the test plugins (`tests/plugins/`: hostile and well-behaved components) for
//! wasm32-wasip2 and tells the test suites where they are through `TEST_PLUGIN_DIR`.

use std::path::Path;

fn main() {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("tests/ sits in the workspace root");
    let components = operator_plugin_build::build_workspace(&manifest_dir.join("plugins"), &[&root.join("wit")]);
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    for (crate_name, path) in components {
        let short = crate_name.trim_start_matches("test_plugin_");
        std::fs::copy(&path, out_dir.join(format!("{short}.wasm")))
            .unwrap_or_else(|e| panic!("copying {} into OUT_DIR: {e}", path.display()));
    }
    println!("cargo:rustc-env=TEST_PLUGIN_DIR={}", out_dir.display());
}
