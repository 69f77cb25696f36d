//! The sandboxed plugin runtime: one engine, plugins loaded and cached, one fresh store per call.
//!
//! - [`engine`]: the wasmtime engine (pooling allocator, epoch interruption) and its ticker.
//! - [`cache`]: precompiled components on disk, loaded only if this host wrote them.
//! - [`manifest`], [`builtin`]: where plugins come from (drop-in directories, the binary).
//! - [`sandbox`]: the WASI a plugin is given (deny by default).
//! - [`grants`] (pure policy) and [`gate`] (the host side of `operator:plugin/http`).
//! - [`logging`], [`settings`]: the `log` and `config` capabilities.
//! - [`plugin`]: a loaded plugin and its typed, audited calls.
//!
//! Every call runs in a new [`wasmtime::Store`] from an `InstancePre`, under a wall-clock
//! deadline enforced twice: by epoch interruption inside guest code and by a tokio timeout
//! around host calls. A trap, a timeout or an exhausted memory drops the store; the host and
//! other plugins carry on.

pub mod bindings;
pub mod builtin;
pub mod cache;
pub mod engine;
pub mod gate;
pub mod grants;
pub mod limits;
pub mod logging;
pub mod manifest;
pub mod plugin;
pub mod sandbox;
pub mod settings;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use wasmtime::component::Linker;

use crate::audit::{AuditEvent, AuditSink, LoadOutcome};
use crate::config::{PluginConfig, ResolvedConfig};
use cache::{ArtifactCache, CacheOutcome};
use gate::GateShared;
use grants::Grants;
use limits::RuntimeLimits;
use manifest::{Manifest, PluginWorld};
use plugin::CallState;
pub use plugin::{
    CallContext, CallError, ExecutionPermit, Plugin, PluginPre, PluginSource, SubjectPlugin, ToolsPlugin,
};

/// The runtime: engine, linker, cache, gate and audit, shared by every plugin.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: wasmtime::Engine,
    pub(crate) linker: Linker<CallState>,
    pub(crate) cache: ArtifactCache,
    pub(crate) gate: Arc<GateShared>,
    pub(crate) audit: AuditSink,
    pub(crate) limits: RuntimeLimits,
    pub(crate) ticker: engine::EpochTicker,
}

/// A plugin that could not be loaded, and why.
#[derive(Debug, Clone)]
pub struct LoadFailure {
    /// The plugin's name (or its directory's).
    pub name: String,
    /// Where it came from.
    pub source: String,
    /// Why it was refused.
    pub reason: String,
}

/// The plugins known to the host after discovery.
#[derive(Clone, Default)]
pub struct PluginSet {
    /// Loaded plugins by name.
    pub loaded: BTreeMap<String, Arc<Plugin>>,
    /// Plugins refused, with the reason.
    pub refused: Vec<LoadFailure>,
}

impl PluginSet {
    /// The loaded plugin named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.loaded.get(name)
    }

    /// The tools plugin named `configured` (the configuration's `tools`), if it is loaded; none
    /// when the name is empty.
    pub fn tools(&self, configured: &str) -> Option<Arc<Plugin>> {
        (!configured.is_empty()).then(|| self.get(configured).cloned()).flatten()
    }

    /// The subject plugin the daemon operates: the one named `configured` (the configuration's
    /// `subject`), or, when that is empty, the only subject plugin loaded.
    ///
    /// # Errors
    /// The named plugin is not loaded or is not a subject adapter; or none was named and there is
    /// not exactly one subject plugin to choose.
    pub fn subject(&self, configured: &str) -> Result<Arc<Plugin>, String> {
        if !configured.is_empty() {
            let plugin = self.get(configured).ok_or_else(|| {
                format!("the subject plugin `{configured}` is not loaded (see `operator-host plugins list`)")
            })?;
            if plugin.world() != PluginWorld::Subject {
                return Err(format!(
                    "`subject = \"{configured}\"` names a {} plugin, not a subject adapter",
                    plugin.world().as_str()
                ));
            }
            return Ok(plugin.clone());
        }
        let subjects: Vec<&Arc<Plugin>> = self.loaded.values().filter(|p| p.world() == PluginWorld::Subject).collect();
        match subjects.as_slice() {
            [only] => Ok((*only).clone()),
            [] => Err("no subject plugin is loaded (see `operator-host plugins list`)".to_owned()),
            several => Err(format!(
                "several subject plugins are loaded ({}): name the one to operate with `subject = \"NAME\"` in the configuration",
                several.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

impl Runtime {
    /// Builds the runtime: engine, linker (the granted WASI and our three capabilities), the
    /// artifact cache under `<data_dir>/cache`, and the gate's HTTP client.
    pub fn new(data_dir: &Path, resolved: &ResolvedConfig, audit: AuditSink) -> anyhow::Result<Runtime> {
        let limits = resolved.config.runtime.clone();
        let max_memory_mib = resolved
            .config
            .plugins
            .values()
            .filter_map(|p| p.memory_limit_mib)
            .chain([limits.memory_limit_mib])
            .max()
            .unwrap_or(limits.memory_limit_mib);
        let engine = engine::build_engine(&limits, max_memory_mib)?;
        let ticker = engine::EpochTicker::start(&engine);
        let cache = ArtifactCache::open(&data_dir.join("cache"), &engine)?;
        let mut linker = Linker::new(&engine);
        sandbox::add_to_linker(&mut linker)?;
        gate::add_to_linker(&mut linker)?;
        logging::add_to_linker(&mut linker)?;
        settings::add_to_linker(&mut linker)?;
        let gate = Arc::new(GateShared::new(
            resolved.endpoints.clone(),
            limits.http_timeout(),
            limits.http_response_limit_bytes(),
        )?);
        Ok(Runtime { inner: Arc::new(RuntimeInner { engine, linker, cache, gate, audit, limits, ticker }) })
    }

    /// The audit sink every call records into.
    pub fn audit(&self) -> &AuditSink {
        &self.inner.audit
    }

    /// The runtime's limits.
    pub fn limits(&self) -> &RuntimeLimits {
        &self.inner.limits
    }

    /// What every call's capability gate shares (client, endpoints, limits).
    pub fn gate_shared(&self) -> Arc<GateShared> {
        self.inner.gate.clone()
    }

    /// The engine.
    pub fn engine(&self) -> &wasmtime::Engine {
        &self.inner.engine
    }

    /// Loads one plugin from its manifest and component bytes (already verified against the
    /// manifest's digest for drop-ins), with the operator's configuration for it.
    /// Every load, successful or refused, is audited.
    pub fn load(
        &self,
        manifest: Manifest,
        component: &[u8],
        sha256: String,
        source: PluginSource,
        config: &PluginConfig,
        grants: Arc<Grants>,
    ) -> Result<(Arc<Plugin>, CacheOutcome), LoadFailure> {
        let result = self.load_inner(&manifest, component, &sha256, &source, config, grants);
        let outcome = match &result {
            Ok(_) => LoadOutcome::Loaded,
            Err(reason) => LoadOutcome::Refused { reason: reason.clone() },
        };
        self.inner.audit.record(AuditEvent::PluginLoad {
            plugin: manifest.name.clone(),
            version: manifest.version.clone(),
            component_sha256: sha256.clone(),
            source: source.to_string(),
            outcome,
        });
        result.map_err(|reason| LoadFailure { name: manifest.name.clone(), source: source.to_string(), reason })
    }

    fn load_inner(
        &self,
        manifest: &Manifest,
        component: &[u8],
        sha256: &str,
        source: &PluginSource,
        config: &PluginConfig,
        grants: Arc<Grants>,
    ) -> Result<(Arc<Plugin>, CacheOutcome), String> {
        let (compiled, outcome) = self
            .inner
            .cache
            .load_or_compile(&self.inner.engine, sha256, component)
            .map_err(|e| format!("not a valid WebAssembly component: {e:#}"))?;
        check_imports(&self.inner.engine, &compiled)?;
        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&compiled)
            .map_err(|e| format!("its imports cannot be satisfied: {e:#}"))?;
        let pre = match manifest.world {
            PluginWorld::Subject => {
                PluginPre::Subject(bindings::subject::SubjectPre::new(instance_pre).map_err(|e| {
                    format!("it does not implement the `subject` world of operator:plugin@0.1.0: {e:#}")
                })?)
            }
            PluginWorld::Tools => PluginPre::Tools(
                bindings::tools::ToolsPre::new(instance_pre)
                    .map_err(|e| format!("it does not implement the `tools` world of operator:plugin@0.1.0: {e:#}"))?,
            ),
        };
        let plugin =
            Plugin::new(manifest.clone(), sha256.to_owned(), source.clone(), config, grants, pre, self.inner.clone());
        Ok((Arc::new(plugin), outcome))
    }

    /// Loads the built-in plugins and every drop-in under `<data_dir>/plugins/`, applying the
    /// configuration. A drop-in named like a built-in replaces it. Plugins disabled in the
    /// configuration are skipped; refused plugins are listed with their reason.
    pub fn discover(&self, data_dir: &Path, resolved: &ResolvedConfig) -> PluginSet {
        let mut set = PluginSet::default();
        let mut candidates: BTreeMap<String, Candidate> = BTreeMap::new();
        for builtin in builtin::BUILTINS {
            match builtin.manifest() {
                Ok(manifest) => {
                    let sha256 = crate::digest::sha256_hex(builtin.component);
                    candidates.insert(
                        manifest.name.clone(),
                        Candidate {
                            manifest,
                            component: builtin.component.to_vec(),
                            sha256,
                            source: PluginSource::BuiltIn,
                        },
                    );
                }
                Err(reason) => set.refused.push(LoadFailure {
                    name: builtin.name.to_owned(),
                    source: "built-in".to_owned(),
                    reason,
                }),
            }
        }
        let plugins_dir = data_dir.join("plugins");
        if let Ok(entries) = std::fs::read_dir(&plugins_dir) {
            let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
            dirs.sort();
            for dir in dirs {
                match manifest::read_plugin_dir(&dir) {
                    Ok(files) => {
                        if candidates.contains_key(&files.manifest.name) {
                            tracing::warn!(plugin = %files.manifest.name, dir = %dir.display(), "a drop-in plugin replaces the built-in of the same name");
                        }
                        candidates.insert(
                            files.manifest.name.clone(),
                            Candidate {
                                manifest: files.manifest,
                                component: files.component,
                                sha256: files.sha256,
                                source: PluginSource::Directory(dir),
                            },
                        );
                    }
                    Err(error) => set.refused.push(self.refuse_dir(&dir, &error)),
                }
            }
        }
        for (name, candidate) in candidates {
            let (config, grants) = configured(resolved, &name);
            if !config.enabled {
                continue;
            }
            match self.load(
                candidate.manifest,
                &candidate.component,
                candidate.sha256,
                candidate.source,
                &config,
                grants,
            ) {
                Ok((plugin, _)) => {
                    set.loaded.insert(name, plugin);
                }
                Err(failure) => set.refused.push(failure),
            }
        }
        set
    }

    /// Reads, verifies and loads one drop-in plugin directory.
    pub fn load_dir(&self, dir: &Path, resolved: &ResolvedConfig) -> Result<Arc<Plugin>, LoadFailure> {
        let files = manifest::read_plugin_dir(dir).map_err(|e| self.refuse_dir(dir, &e))?;
        let (config, grants) = configured(resolved, &files.manifest.name);
        self.load(
            files.manifest,
            &files.component,
            files.sha256,
            PluginSource::Directory(dir.to_path_buf()),
            &config,
            grants,
        )
        .map(|(plugin, _)| plugin)
    }
}

impl Runtime {
    /// Audits and describes a drop-in directory that could not be read or verified.
    fn refuse_dir(&self, dir: &Path, error: &manifest::ManifestError) -> LoadFailure {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let failure = LoadFailure { name, source: dir.display().to_string(), reason: error.to_string() };
        self.inner.audit.record(AuditEvent::PluginLoad {
            plugin: failure.name.clone(),
            version: String::new(),
            component_sha256: String::new(),
            source: failure.source.clone(),
            outcome: LoadOutcome::Refused { reason: failure.reason.clone() },
        });
        failure
    }
}

/// The operator's configuration and grants for a plugin; none configured means no grants.
fn configured(resolved: &ResolvedConfig, name: &str) -> (PluginConfig, Arc<Grants>) {
    let config = resolved.config.plugins.get(name).cloned().unwrap_or_default();
    let grants = resolved.grants.get(name).cloned().unwrap_or_else(|| Arc::new(Grants::none(name)));
    (config, grants)
}

struct Candidate {
    manifest: Manifest,
    component: Vec<u8>,
    sha256: String,
    source: PluginSource,
}

/// Interfaces no plugin is ever given; a component importing one is refused with a message
/// that says so, rather than the linker's generic "not found".
const NEVER_GRANTED: &[(&str, &str)] = &[
    ("wasi:sockets/", "sockets: plugins reach the network only through operator:plugin/http"),
    ("wasi:http/", "wasi:http: plugins reach the network only through operator:plugin/http"),
];

fn check_imports(engine: &wasmtime::Engine, component: &wasmtime::component::Component) -> Result<(), String> {
    let ty = component.component_type();
    let mut refused = Vec::new();
    for (name, _) in ty.imports(engine) {
        if let Some((_, why)) = NEVER_GRANTED.iter().find(|(prefix, _)| name.starts_with(prefix)) {
            refused.push(format!("`{name}` ({why})"));
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(format!("it imports interfaces the host never grants: {}", refused.join(", ")))
    }
}

/// Loads the configuration file and resolves it, with a readable error naming the file.
pub fn load_config(path: &Path, must_exist: bool) -> anyhow::Result<ResolvedConfig> {
    let config = crate::config::Config::load(path, must_exist)?;
    config.resolve().with_context(|| format!("in {}", path.display()))
}
