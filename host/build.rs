//! Builds the built-in plugins (every crate in `plugins/`) for wasm32-wasip2, places the
//! components in OUT_DIR and writes `builtins.rs`, the list `runtime::builtin` embeds. The host's
//! source names no plugin: adding a directory to `plugins/` adds a built-in.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("host/ sits in the workspace root");
    let plugins_dir = root.join("plugins");
    let components = operator_plugin_build::build_workspace(&plugins_dir, &[&root.join("wit")]);
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let mut list = String::from("&[\n");
    for (crate_name, path) in components {
        let short = crate_name.trim_start_matches("operator_plugin_");
        let component = out_dir.join(format!("{short}.wasm"));
        std::fs::copy(&path, &component).unwrap_or_else(|e| panic!("copying {} into OUT_DIR: {e}", path.display()));
        let manifest = plugins_dir.join(short).join("plugin.toml");
        if !manifest.is_file() {
            panic!("the built-in plugin `{short}` has no {}", manifest.display());
        }
        writeln!(
            list,
            "    BuiltIn {{ name: {short:?}, manifest_text: include_str!({:?}), component: include_bytes!({:?}) }},",
            manifest.display().to_string(),
            component.display().to_string()
        )
        .expect("writing to a string");
    }
    list.push(']');
    std::fs::write(out_dir.join("builtins.rs"), list).expect("writing builtins.rs");
}
