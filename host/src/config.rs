//! The host's configuration file (`operator.toml`, by default in the data directory).
//!
//! ```toml
//! [runtime]                      # limits; every one has a safe default (see runtime::limits)
//! call_deadline_ms = 10000
//! memory_limit_mib = 128
//!
//! [endpoints.control]                 # a named endpoint: base URLs the host fails over between
//! urls = ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
//! bearer_token_env = "CONTROL_TOKEN"  # credentials the host adds; plugins never see them
//!
//! [plugins.kv]                 # what the operator grants one plugin
//! grants = [
//!   { endpoint = "control", methods = ["GET"], paths = ["/api/v1/**"] },
//!   { url = "http://*:9100", methods = ["GET"], paths = ["/status", "/metrics"] },
//! ]
//! settings = { imbalance_ratio = "0.2" }
//!
//! [[notifications.webhooks]]          # webhooks told of tickets, approvals, outcomes (see notify)
//! url = "https://hooks.slack.com/services/T000/B000/XXXX"
//! kind = "slack"
//! ```
//!
//! A plugin with no `[plugins.NAME]` table is loaded with no grants at all: it can compute but
//! cannot reach anything. Unknown keys are errors, so a typo cannot silently drop a limit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::actions::policy::ActionsConfig;
use crate::diagnose::DiagnoseConfig;
use crate::monitor::MonitorConfig;
use crate::notify::NotificationsConfig;
use crate::runtime::gate::{Endpoint, EndpointConfig};
use crate::runtime::grants::{GrantSpec, Grants};
use crate::runtime::limits::{MAX_MEMORY_LIMIT_MIB, RuntimeLimits};

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The subject plugin the daemon monitors; empty (the default): the only subject plugin
    /// loaded, or under `--sim` the one the simulator names.
    pub subject: String,
    /// The tools plugin whose tools workflows may use (empty: none).
    pub tools: String,
    /// Runtime limits.
    pub runtime: RuntimeLimits,
    /// The monitor loop.
    pub monitor: MonitorConfig,
    /// The action engine.
    pub actions: ActionsConfig,
    /// The diagnosis engine.
    pub diagnosis: DiagnoseConfig,
    /// The daemon's local API.
    pub api: ApiConfig,
    /// Webhook notifications.
    pub notifications: NotificationsConfig,
    /// Named endpoints.
    pub endpoints: BTreeMap<String, EndpointConfig>,
    /// Per-plugin grants and settings.
    pub plugins: BTreeMap<String, PluginConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            subject: String::new(),
            tools: "tools".into(),
            runtime: RuntimeLimits::default(),
            monitor: MonitorConfig::default(),
            actions: ActionsConfig::default(),
            diagnosis: DiagnoseConfig::default(),
            api: ApiConfig::default(),
            notifications: NotificationsConfig::default(),
            endpoints: BTreeMap::new(),
            plugins: BTreeMap::new(),
        }
    }
}

/// The daemon's local API (`[api]`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// `host:port` to listen on; loopback by default (`127.0.0.1:0` picks a free port).
    pub listen: String,
    /// Also serve on `<data-dir>/api.sock` (mode 0600).
    pub unix_socket: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { listen: "127.0.0.1:7380".into(), unix_socket: false }
    }
}

/// What the operator configures for one plugin.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PluginConfig {
    /// Whether to load the plugin at all.
    pub enabled: bool,
    /// HTTP capabilities granted.
    pub grants: Vec<GrantSpec>,
    /// Settings the plugin can read through `operator:plugin/config`.
    pub settings: BTreeMap<String, String>,
    /// Overrides `runtime.call_deadline_ms` for this plugin.
    pub call_deadline_ms: Option<u64>,
    /// Overrides `runtime.memory_limit_mib` for this plugin.
    pub memory_limit_mib: Option<u64>,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            enabled: true,
            grants: Vec::new(),
            settings: BTreeMap::new(),
            call_deadline_ms: None,
            memory_limit_mib: None,
        }
    }
}

/// The configuration checked and resolved: endpoints parsed, grants parsed per plugin.
#[derive(Debug, Clone)]
pub struct ResolvedConfig {
    /// The file as written.
    pub config: Config,
    /// Endpoints ready to use.
    pub endpoints: BTreeMap<String, Arc<Endpoint>>,
    /// Parsed grants per configured plugin.
    pub grants: BTreeMap<String, Arc<Grants>>,
}

impl Config {
    /// Reads and checks a configuration file. A missing file is the default configuration
    /// only when `must_exist` is false.
    pub fn load(path: &Path, must_exist: bool) -> anyhow::Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => return Ok(Config::default()),
            Err(e) => anyhow::bail!("cannot read the configuration {}: {e}", path.display()),
        };
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Config> {
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{origin}: {e}"))
    }

    /// Checks everything and resolves endpoints and grants; every problem is listed at once.
    pub fn resolve(&self) -> anyhow::Result<ResolvedConfig> {
        let mut problems = Vec::new();
        if let Err(e) = self.runtime.validate() {
            problems.push(e);
        }
        problems.extend(self.monitor.problems());
        problems.extend(self.actions.problems());
        if self.api.listen.parse::<std::net::SocketAddr>().is_err() {
            problems.push(format!("api.listen = `{}` must be an address like 127.0.0.1:7380", self.api.listen));
        }
        if let Err(e) = self.diagnosis.validate() {
            problems.extend(e.lines().map(|l| l.trim_start_matches("- ").to_owned()));
        }
        problems.extend(self.notifications.problems());
        let mut endpoints = BTreeMap::new();
        for (name, endpoint) in &self.endpoints {
            match Endpoint::from_config(name, endpoint) {
                Ok(resolved) => {
                    endpoints.insert(name.clone(), Arc::new(resolved));
                }
                Err(e) => problems.push(e),
            }
        }
        let mut grants = BTreeMap::new();
        for (name, plugin) in &self.plugins {
            if let Err(e) = crate::runtime::manifest::validate_plugin_name(name) {
                problems.push(format!("plugins.{name}: {e}"));
            }
            if let Some(mib) = plugin.memory_limit_mib
                && (mib == 0 || mib > MAX_MEMORY_LIMIT_MIB)
            {
                problems.push(format!("plugins.{name}.memory_limit_mib must be between 1 and {MAX_MEMORY_LIMIT_MIB}"));
            }
            if plugin.call_deadline_ms == Some(0) {
                problems.push(format!("plugins.{name}.call_deadline_ms must be at least 1"));
            }
            match Grants::parse(name, &plugin.grants) {
                Ok(parsed) => {
                    for endpoint in parsed.endpoints() {
                        if !self.endpoints.contains_key(endpoint) {
                            problems.push(format!(
                                "plugins.{name}.grants names endpoint `{endpoint}`, which is not configured: add an [endpoints.{endpoint}] table with its urls"
                            ));
                        }
                    }
                    grants.insert(name.clone(), Arc::new(parsed));
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        if !problems.is_empty() {
            anyhow::bail!("the configuration has {} problem(s):\n  - {}", problems.len(), problems.join("\n  - "));
        }
        Ok(ResolvedConfig { config: self.clone(), endpoints, grants })
    }
}

/// The data directory: `--data-dir`, else `$OPERATOR_DATA_DIR`, else
/// `$XDG_DATA_HOME/operator-host`, else `~/.local/share/operator-host`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("operator-host");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/operator-host"),
        None => PathBuf::from(".operator-host"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_configuration() {
        let config = Config::parse(
            r#"
[runtime]
call_deadline_ms = 2000
[endpoints.control]
urls = ["http://127.0.0.1:2379", "http://127.0.0.1:2382"]
[plugins.kv]
grants = [{ endpoint = "control", methods = ["GET"], paths = ["/api/v1/**"] }]
settings = { threshold = "0.2" }
"#,
            "test",
        )
        .unwrap();
        let resolved = config.resolve().unwrap();
        assert_eq!(resolved.config.runtime.call_deadline_ms, 2000);
        assert_eq!(resolved.endpoints["control"].urls().len(), 2);
        assert!(resolved.grants.contains_key("kv"));
    }

    #[test]
    fn lists_every_problem_with_its_place() {
        let config = Config::parse(
            r#"
[runtime]
memory_limit_mib = 0
[plugins.kv]
grants = [{ endpoint = "control", methods = ["GET"], paths = ["/x"] }]
memory_limit_mib = 999999
"#,
            "test",
        )
        .unwrap();
        let error = config.resolve().unwrap_err().to_string();
        assert!(error.contains("runtime.memory_limit_mib"), "{error}");
        assert!(error.contains("plugins.kv.memory_limit_mib"), "{error}");
        assert!(error.contains("endpoint `control`, which is not configured"), "{error}");
    }

    #[test]
    fn notifications_are_checked_with_the_rest() {
        let config = Config::parse(
            r#"
[monitor]
interval_ms = 1
[[notifications.webhooks]]
url = "hooks.example.com/x"
events = ["approval-needed", "approvals"]
"#,
            "test",
        )
        .unwrap();
        let error = config.resolve().unwrap_err().to_string();
        assert!(error.contains("monitor.interval_ms"), "{error}");
        assert!(error.contains("notifications.webhooks[0].url `hooks.example.com/x`"), "{error}");
        assert!(error.contains("notifications.webhooks[0].events[1]: unknown event `approvals`"), "{error}");
        let config = Config::parse("[[notifications.webhooks]]\nurl = \"https://hooks.example.com/x\"\n", "t").unwrap();
        assert_eq!(config.resolve().unwrap().config.notifications.webhooks.len(), 1);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let error = Config::parse("[runtime]\ncall_deadline = 5\n", "operator.toml").unwrap_err().to_string();
        assert!(error.starts_with("operator.toml:"), "{error}");
        assert!(error.contains("call_deadline"), "{error}");
    }
}
