//! Plugin manifests (`plugin.toml`) and reading a drop-in plugin's directory.
//!
//! A drop-in plugin is a directory `<data-dir>/plugins/<name>/` holding a manifest and a
//! component:
//!
//! ```toml
//! name = "kv"                   # must equal the directory name
//! version = "0.2.0"
//! world = "subject"             # or "tools"
//! component = "kv.wasm"         # a file inside this directory (default "plugin.wasm")
//! sha256 = "9f86d0…"            # of the component; a mismatch refuses the plugin
//! description = "A key-value store, through its control plane"
//!
//! [[capabilities]]              # what the plugin asks for; the operator grants in the host config
//! endpoint = "control"          # or url = "http://*:9100"
//! methods = ["GET"]
//! paths = ["/api/v1/**"]
//! reason = "observe the cluster"
//!
//! [[workflows]]                 # optional: workflows of the plugin's actions (see `actions::workflow`)
//! name = "drain"
//! params = [{ name = "node", description = "The node to drain" }]
//! [[workflows.steps]]
//! name = "cordon"
//! action = "cordon"
//! params = { node = "{node}" }
//! ```
//!
//! The directory is read through a cap-std [`Dir`] handle, so the manifest cannot name a file
//! outside it: `../x.wasm`, absolute paths and symlinks leading out are refused.

use crate::actions::workflow::{WorkflowDef, check_structure};
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};
use std::path::{Component as PathComponent, Path};

/// Which world of the contract a plugin implements.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PluginWorld {
    /// A subject adapter (`world subject`).
    Subject,
    /// General tools (`world tools`).
    Tools,
}

impl PluginWorld {
    /// The world's name in the WIT package.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginWorld::Subject => "subject",
            PluginWorld::Tools => "tools",
        }
    }
}

/// One capability a plugin asks for. Asking grants nothing.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CapabilityRequest {
    /// A named endpoint, e.g. `control`.
    pub endpoint: Option<String>,
    /// A URL pattern, e.g. `http://*:20180`.
    pub url: Option<String>,
    /// Methods asked for.
    pub methods: Vec<String>,
    /// Path patterns asked for.
    pub paths: Vec<String>,
    /// Why the plugin needs it.
    #[serde(default)]
    pub reason: String,
}

impl CapabilityRequest {
    /// The target as written: the endpoint name or the URL pattern.
    pub fn target(&self) -> &str {
        self.endpoint.as_deref().or(self.url.as_deref()).unwrap_or("")
    }
}

/// A parsed `plugin.toml`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The plugin's name (lower case letters, digits and dashes).
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// The world it implements.
    pub world: PluginWorld,
    /// The component file inside the plugin's directory.
    #[serde(default = "default_component_file")]
    pub component: String,
    /// The component's sha256 (hex). Required for drop-in plugins.
    pub sha256: Option<String>,
    /// One line about the plugin.
    #[serde(default)]
    pub description: String,
    /// What it asks for.
    #[serde(default)]
    pub capabilities: Vec<CapabilityRequest>,
    /// Workflows of its actions (`[[workflows]]`); their shape is checked here, their actions and
    /// conditions when the workflow engine loads them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workflows: Vec<WorkflowDef>,
}

fn default_component_file() -> String {
    "plugin.wasm".to_owned()
}

/// Why a plugin directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest is not valid TOML or has wrong fields.
    #[error("{path}: {message}")]
    Invalid {
        /// Where the manifest is.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// A file could not be read.
    #[error("{path}: {message}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The component does not match the manifest's sha256.
    #[error(
        "{path}: the component's sha256 is {actual}, but plugin.toml says {expected}; the component was changed or the manifest is stale, so the plugin is refused"
    )]
    DigestMismatch {
        /// The component file.
        path: String,
        /// What the manifest says.
        expected: String,
        /// What the file hashes to.
        actual: String,
    },
}

/// Checks a plugin name: 1 to 64 of `a-z`, `0-9`, `-`, starting with a letter.
pub fn validate_plugin_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "plugin name `{name}` must be 1 to 64 lower-case letters, digits or dashes, starting with a letter"
        ))
    }
}

impl Manifest {
    /// Parses manifest text; `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
        let invalid = |message: String| ManifestError::Invalid { path: origin.to_owned(), message };
        let manifest: Manifest = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        validate_plugin_name(&manifest.name).map_err(invalid)?;
        if manifest.version.trim().is_empty() {
            return Err(invalid("`version` must not be empty".to_owned()));
        }
        if let Some(sha) = &manifest.sha256
            && (sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(invalid(format!("`sha256` must be 64 hex digits, not `{sha}`")));
        }
        for (index, request) in manifest.capabilities.iter().enumerate() {
            if request.endpoint.is_some() == request.url.is_some() {
                return Err(invalid(format!(
                    "capabilities[{}] must name exactly one of `endpoint` or `url`",
                    index + 1
                )));
            }
        }
        let mut problems = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for workflow in &manifest.workflows {
            if !names.insert(workflow.name.as_str()) {
                problems.push(format!("workflow `{}` is defined more than once", workflow.name));
            }
            problems.extend(check_structure(workflow));
        }
        if !problems.is_empty() {
            return Err(invalid(format!("invalid workflows:\n  - {}", problems.join("\n  - "))));
        }
        Ok(manifest)
    }
}

/// A drop-in plugin read from its directory: the manifest and the verified component bytes.
#[derive(Debug)]
pub struct PluginFiles {
    /// The manifest.
    pub manifest: Manifest,
    /// The component, whose sha256 matched the manifest.
    pub component: Vec<u8>,
    /// Its sha256 (hex).
    pub sha256: String,
}

/// Reads `<dir>/plugin.toml` and the component it names through a capability handle on `dir`,
/// verifying the component's sha256 against the manifest.
pub fn read_plugin_dir(dir: &Path) -> Result<PluginFiles, ManifestError> {
    let shown = dir.display().to_string();
    let handle = Dir::open_ambient_dir(dir, ambient_authority()).map_err(|e| ManifestError::Unreadable {
        path: shown.clone(),
        message: format!("cannot open the plugin directory: {e}"),
    })?;
    let manifest_path = format!("{shown}/plugin.toml");
    let text = handle
        .read_to_string("plugin.toml")
        .map_err(|e| ManifestError::Unreadable { path: manifest_path.clone(), message: e.to_string() })?;
    let manifest = Manifest::parse(&text, &manifest_path)?;
    let invalid = |message: String| ManifestError::Invalid { path: manifest_path.clone(), message };

    let dir_name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if manifest.name != dir_name {
        return Err(invalid(format!(
            "the plugin is named `{}` but its directory is `{dir_name}`; they must be equal",
            manifest.name
        )));
    }
    let Some(expected) = manifest.sha256.clone() else {
        return Err(invalid(
            "`sha256` is required for a drop-in plugin (the sha256 of its component, in hex)".to_owned(),
        ));
    };
    check_inside(&manifest.component).map_err(invalid)?;

    let component_path = format!("{shown}/{}", manifest.component);
    let component = handle.read(&manifest.component).map_err(|e| ManifestError::Unreadable {
        path: component_path.clone(),
        message: format!("cannot read the component inside the plugin directory: {e}"),
    })?;
    let actual = crate::digest::sha256_hex(&component);
    if !actual.eq_ignore_ascii_case(&expected) {
        return Err(ManifestError::DigestMismatch { path: component_path, expected, actual });
    }
    Ok(PluginFiles { manifest, component, sha256: actual })
}

/// Refuses component paths that could leave the plugin directory even before cap-std would,
/// so the error says what is wrong rather than a generic escape error.
fn check_inside(component: &str) -> Result<(), String> {
    let path = Path::new(component);
    if component.is_empty() {
        return Err("`component` must name a file".to_owned());
    }
    for part in path.components() {
        match part {
            PathComponent::Normal(_) => {}
            PathComponent::CurDir => {}
            _ => {
                return Err(format!(
                    "`component = \"{component}\"` leaves the plugin directory; it must name a file inside it"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const GOOD: &str = r#"
name = "demo"
version = "1.0.0"
world = "subject"
component = "demo.wasm"
sha256 = "SHA"
[[capabilities]]
endpoint = "api"
methods = ["GET"]
paths = ["/**"]
reason = "read"
"#;

    fn write_plugin(root: &Path, name: &str, manifest: &str, component: &[u8]) -> std::path::PathBuf {
        let dir = root.join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("demo.wasm"), component).unwrap();
        let sha = crate::digest::sha256_hex(component);
        fs::write(dir.join("plugin.toml"), manifest.replace("SHA", &sha)).unwrap();
        dir
    }

    #[test]
    fn reads_a_good_plugin() {
        let root = tempfile::tempdir().unwrap();
        let dir = write_plugin(root.path(), "demo", GOOD, b"component bytes");
        let files = read_plugin_dir(&dir).unwrap();
        assert_eq!(files.manifest.name, "demo");
        assert_eq!(files.component, b"component bytes");
        assert_eq!(files.manifest.capabilities[0].target(), "api");
    }

    #[test]
    fn refuses_a_wrong_digest() {
        let root = tempfile::tempdir().unwrap();
        let dir = write_plugin(root.path(), "demo", GOOD, b"component bytes");
        fs::write(dir.join("demo.wasm"), b"tampered bytes").unwrap();
        let error = read_plugin_dir(&dir).unwrap_err();
        assert!(matches!(error, ManifestError::DigestMismatch { .. }), "{error}");
        assert!(error.to_string().contains("plugin is refused"), "{error}");
    }

    #[test]
    fn refuses_components_outside_the_directory() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("outside.wasm"), b"x").unwrap();
        for component in ["../outside.wasm", "/etc/passwd", "sub/../../outside.wasm"] {
            let manifest = GOOD.replace("demo.wasm", component);
            let dir = write_plugin(root.path(), "demo", &manifest, b"x");
            let error = read_plugin_dir(&dir).unwrap_err().to_string();
            assert!(error.contains("leaves the plugin directory"), "{component}: {error}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_symlink_leading_out() {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside.wasm");
        fs::write(&outside, b"x").unwrap();
        let manifest = GOOD.replace("demo.wasm", "link.wasm");
        let dir = write_plugin(root.path(), "demo", &manifest, b"x");
        std::os::unix::fs::symlink(&outside, dir.join("link.wasm")).unwrap();
        let error = read_plugin_dir(&dir).unwrap_err().to_string();
        assert!(error.contains("cannot read the component inside the plugin directory"), "{error}");
    }

    #[test]
    fn requires_a_digest_and_a_matching_name() {
        let root = tempfile::tempdir().unwrap();
        let no_sha: String = GOOD.lines().filter(|l| !l.starts_with("sha256")).collect::<Vec<_>>().join("\n");
        let dir = write_plugin(root.path(), "demo", &no_sha, b"x");
        assert!(read_plugin_dir(&dir).unwrap_err().to_string().contains("`sha256` is required"));
        let dir = write_plugin(root.path(), "other", GOOD, b"x");
        assert!(read_plugin_dir(&dir).unwrap_err().to_string().contains("directory is `other`"));
    }

    #[test]
    fn rejects_malformed_manifests_with_the_place() {
        let error = Manifest::parse("name = \"x\"\nversion = 1\nworld = \"subject\"", "p/plugin.toml").unwrap_err();
        assert!(error.to_string().starts_with("p/plugin.toml:"), "{error}");
        let error = Manifest::parse("name = \"Bad Name\"\nversion = \"1\"\nworld = \"subject\"", "m").unwrap_err();
        assert!(error.to_string().contains("lower-case"), "{error}");
        let error = Manifest::parse("name = \"x\"\nversion = \"1\"\nworld = \"gadget\"", "m").unwrap_err();
        assert!(error.to_string().contains("gadget"), "{error}");
        let error = Manifest::parse("name = \"x\"\nversion = \"1\"\nworld = \"tools\"\nsurprise = 1", "m").unwrap_err();
        assert!(error.to_string().contains("surprise"), "{error}");
    }
}
