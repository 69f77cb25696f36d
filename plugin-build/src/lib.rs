//! Compiles a Cargo workspace of plugin crates to `wasm32-wasip2` components from a build script.
//!
//! Plugins live in workspaces of their own (`plugins/`, `tests/plugins/`) so that their
//! dependencies and profile never mix with the host's. A build script calls [`build_workspace`],
//! which runs a nested `cargo build` with its own target directory, and gets back the path of
//! every component it produced.
//!
//! The `wasm32-wasip2` target is installed with rustup when it is missing; without rustup the
//! build fails with a message that says what to install.

use std::collections::BTreeMap;
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every plugin is compiled for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Environment variables a build script inherits from the outer cargo that must not leak into
/// the nested build: they describe the host's compilation, not the plugins'.
const OUTER_BUILD_VARIABLES: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_PKG_NAME",
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "OUT_DIR",
    "CARGO_INCREMENTAL",
    "CARGO_LLVM_COV",
    "LLVM_PROFILE_FILE",
];

/// Builds every `cdylib` member of the workspace at `workspace_dir` for [`WASM_TARGET`] in the
/// release profile and returns the components by crate name (dashes replaced by underscores,
/// as Cargo names the artifacts).
///
/// Emits `cargo:rerun-if-changed` for the workspace and `extra_watch` paths. Panics with a
/// readable message on failure, which is what a build script should do.
pub fn build_workspace(workspace_dir: &Path, extra_watch: &[&Path]) -> BTreeMap<String, PathBuf> {
    println!("cargo:rerun-if-changed={}", workspace_dir.display());
    for path in extra_watch {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    ensure_wasm_target();

    let target_dir = nested_target_dir(workspace_dir);
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(&cargo);
    command
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(WASM_TARGET)
        .arg("--manifest-path")
        .arg(workspace_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    for variable in OUTER_BUILD_VARIABLES {
        command.env_remove(variable);
    }
    let status =
        command.status().unwrap_or_else(|error| panic!("could not run `{cargo}` to build the plugins: {error}"));
    if !status.success() {
        panic!(
            "building the plugins in {} for {WASM_TARGET} failed ({status}); the compiler's messages are above",
            workspace_dir.display()
        );
    }

    let artifact_dir = target_dir.join(WASM_TARGET).join("release");
    let mut components = BTreeMap::new();
    for crate_name in cdylib_members(workspace_dir) {
        let file_stem = crate_name.replace('-', "_");
        let path = artifact_dir.join(format!("{file_stem}.wasm"));
        if !path.is_file() {
            panic!("the plugin build finished but {} is missing", path.display());
        }
        components.insert(file_stem, path);
    }
    components
}

/// A target directory of its own for the nested build, next to the outer one so that
/// `cargo clean` removes it and repeated builds are incremental.
fn nested_target_dir(workspace_dir: &Path) -> PathBuf {
    let name =
        workspace_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "plugins".to_owned());
    let parent_name = workspace_dir
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set for build scripts"));
    // OUT_DIR is <target>[/<triple>]/<profile>/build/<package>-<hash>/out.
    let profile_dir = out_dir.ancestors().nth(3).map(Path::to_path_buf).unwrap_or(out_dir);
    profile_dir.join("wasm-plugins").join(format!("{parent_name}-{name}"))
}

/// The workspace members whose manifest declares a `cdylib` library.
fn cdylib_members(workspace_dir: &Path) -> Vec<String> {
    let manifest = read_manifest(&workspace_dir.join("Cargo.toml"));
    let members = manifest
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(toml::Value::as_array)
        .unwrap_or_else(|| panic!("{}/Cargo.toml has no workspace.members list", workspace_dir.display()));
    let mut names = Vec::new();
    for member in members.iter().filter_map(toml::Value::as_str) {
        let member_manifest = read_manifest(&workspace_dir.join(member).join("Cargo.toml"));
        let is_cdylib = member_manifest
            .get("lib")
            .and_then(|lib| lib.get("crate-type"))
            .and_then(toml::Value::as_array)
            .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("cdylib")));
        if !is_cdylib {
            continue;
        }
        let name = member_manifest
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(toml::Value::as_str)
            .unwrap_or_else(|| panic!("{member}/Cargo.toml has no package name"));
        names.push(name.to_owned());
    }
    names
}

fn read_manifest(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    text.parse().unwrap_or_else(|error| panic!("{} is not valid TOML: {error}", path.display()))
}

/// Makes sure the active toolchain has the `wasm32-wasip2` standard library, installing it with
/// rustup when it is missing.
fn ensure_wasm_target() {
    if wasm_target_installed() {
        return;
    }
    let rustup = env::var("RUSTUP").unwrap_or_else(|_| "rustup".to_owned());
    let mut command = Command::new(&rustup);
    command.args(["target", "add", WASM_TARGET]);
    if let Ok(toolchain) = env::var("RUSTUP_TOOLCHAIN") {
        command.args(["--toolchain", &toolchain]);
    }
    match command.status() {
        Ok(status) if status.success() && wasm_target_installed() => {}
        Ok(status) => panic!(
            "the {WASM_TARGET} target is missing and `{rustup} target add {WASM_TARGET}` failed ({status}); \
             install it by hand and build again"
        ),
        Err(error) => panic!(
            "the {WASM_TARGET} target is missing and rustup could not be run ({error}). The plugins are \
             WebAssembly components: install the target for your Rust toolchain (with rustup: \
             `rustup target add {WASM_TARGET}`; otherwise your distribution's rust-std package for \
             {WASM_TARGET}) and build again"
        ),
    }
}

/// Whether the sysroot of the compiler cargo uses has the target's standard library.
fn wasm_target_installed() -> bool {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let Ok(output) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    Path::new(&sysroot).join("lib/rustlib").join(WASM_TARGET).join("lib").is_dir()
}
