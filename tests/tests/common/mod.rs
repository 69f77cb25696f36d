//! Shared harness: a local HTTP service the plugins talk to, a data directory with drop-in test
//! plugins, and a runtime over them.

#![allow(dead_code)]

pub mod tikv;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use operator_host::audit::{AuditFilter, AuditLog, AuditRecord, AuditSink};
use operator_host::config::{Config, PluginConfig, ResolvedConfig};
use operator_host::runtime::gate::EndpointConfig;
use operator_host::runtime::grants::GrantSpec;
use operator_host::runtime::manifest::Manifest;
use operator_host::runtime::{Plugin, PluginSource, Runtime};
use operator_host::store::Store;

/// Where tests/build.rs put the test components.
pub fn component(name: &str) -> Vec<u8> {
    let path = Path::new(env!("TEST_PLUGIN_DIR")).join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// One request the test service received.
pub struct Hit {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

/// Requests the test service received.
#[derive(Clone, Default)]
pub struct Hits(Arc<Mutex<Vec<Hit>>>);

impl Hits {
    /// How many requests reached `path` (any method).
    pub fn count(&self, path: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|hit| hit.path == path).count()
    }

    /// Every request seen, as `METHOD /path`.
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|hit| format!("{} {}", hit.method, hit.path)).collect()
    }

    /// The headers of the last request to `path`.
    pub fn last_headers(&self, path: &str) -> Vec<(String, String)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|hit| hit.path == path)
            .map(|hit| hit.headers.clone())
            .unwrap_or_default()
    }
}

/// The local service: `/ok` answers `ok`, `/touch` accepts POSTs, `/huge` streams 1 GiB,
/// `/slow` never answers in time, `/admin/keys` must never be reached.
pub async fn start_service() -> (SocketAddr, Hits) {
    let hits = Hits::default();
    let app = Router::new().fallback(handle).with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, hits)
}

async fn handle(State(hits): State<Hits>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let headers =
        request.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect();
    hits.0.lock().unwrap().push(Hit { method: request.method().to_string(), path: path.clone(), headers });
    match path.as_str() {
        "/ok" => "ok".into_response(),
        "/bad" => "not ok".into_response(),
        "/touch" => (StatusCode::OK, "touched").into_response(),
        "/huge" => {
            // 1 GiB, produced lazily so the test costs only what the host reads.
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream =
                futures_util::stream::iter((0..16 * 1024).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
            Response::new(Body::from_stream(stream))
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "too late".into_response()
        }
        "/admin/keys" => "secret keys".into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A data directory with the audit log open and a runtime over a configuration.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub log: AuditLog,
    pub sink: AuditSink,
    pub runtime: Runtime,
    pub resolved: ResolvedConfig,
}

/// The configuration the sandbox tests use: endpoint `api` at the service, short limits.
pub fn test_config(service: SocketAddr) -> Config {
    let mut config = Config::default();
    config.runtime.call_deadline_ms = 2_000;
    config.runtime.memory_limit_mib = 64;
    config.runtime.output_limit_kib = 16;
    config.runtime.http_timeout_ms = 700;
    config.runtime.http_response_limit_mib = 1;
    config.endpoints.insert(
        "api".to_owned(),
        EndpointConfig { urls: vec![format!("http://{service}")], bearer_token_env: None, headers: BTreeMap::new() },
    );
    let api_grant = GrantSpec {
        endpoint: Some("api".to_owned()),
        url: None,
        methods: vec!["GET".to_owned(), "POST".to_owned()],
        paths: vec!["/ok".to_owned(), "/huge".to_owned(), "/slow".to_owned(), "/touch".to_owned()],
    };
    for name in ["hostile", "good", "socket"] {
        config
            .plugins
            .insert(name.to_owned(), PluginConfig { grants: vec![api_grant.clone()], ..PluginConfig::default() });
    }
    config
}

impl Harness {
    /// A harness over `config`.
    pub fn new(config: Config) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        Harness::in_dir(dir, config)
    }

    /// A harness over an existing data directory.
    pub fn in_dir(dir: tempfile::TempDir, config: Config) -> Harness {
        let resolved = config.resolve().expect("test configuration is valid");
        let store = Store::open(dir.path()).unwrap();
        let log = AuditLog::new(store).unwrap();
        let sink = AuditSink::spawn(log.clone());
        let runtime = Runtime::new(dir.path(), &resolved, sink.clone()).unwrap();
        Harness { dir, log, sink, runtime, resolved }
    }

    /// Installs a test component as a drop-in plugin directory and returns the directory.
    pub fn install(&self, name: &str, world: &str) -> PathBuf {
        install_plugin(self.dir.path(), name, world, &component(name))
    }

    /// Loads a test component with the given settings (e.g. the hostile `behaviour`).
    pub fn load(&self, name: &str, world: &str, settings: &[(&str, &str)]) -> Arc<Plugin> {
        let bytes = component(name);
        let manifest = Manifest::parse(&manifest_text(name, world, None), "test manifest").unwrap();
        let mut config = self.resolved.config.plugins.get(name).cloned().unwrap_or_default();
        for (key, value) in settings {
            config.settings.insert((*key).to_owned(), (*value).to_owned());
        }
        let grants = self.resolved.grants.get(name).cloned().unwrap();
        let sha = operator_host::digest::sha256_hex(&bytes);
        let (plugin, _) = self
            .runtime
            .load(manifest, &bytes, sha, PluginSource::BuiltIn, &config, grants)
            .unwrap_or_else(|f| panic!("loading {name}: {}", f.reason));
        plugin
    }

    /// Every audit record so far (after flushing the sink).
    pub async fn records(&self) -> Vec<AuditRecord> {
        self.sink.flush().await.unwrap();
        self.log.list(&AuditFilter::default()).unwrap()
    }
}

/// A `plugin.toml` for a test component.
pub fn manifest_text(name: &str, world: &str, sha256: Option<&str>) -> String {
    let mut text =
        format!("name = \"{name}\"\nversion = \"0.1.0\"\nworld = \"{world}\"\ncomponent = \"{name}.wasm\"\n");
    if let Some(sha) = sha256 {
        text.push_str(&format!("sha256 = \"{sha}\"\n"));
    }
    text
}

/// Writes a drop-in plugin directory `<data_dir>/plugins/<name>/`.
pub fn install_plugin(data_dir: &Path, name: &str, world: &str, bytes: &[u8]) -> PathBuf {
    let dir = data_dir.join("plugins").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.wasm")), bytes).unwrap();
    let sha = operator_host::digest::sha256_hex(bytes);
    std::fs::write(dir.join("plugin.toml"), manifest_text(name, world, Some(&sha))).unwrap();
    dir
}
