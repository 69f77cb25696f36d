//! The simulator's control API, served by [`SimCluster`] on a loopback port of its own (never on a PD
//! port, so nothing that talks to PD can stumble on it). JSON everywhere; errors are
//! `{"error":"<message>"}`.
//!
//! | request | reply |
//! |---|---|
//! | `GET /faults/catalogue` | `200` [`CatalogueEntry`] list |
//! | `GET /faults` | `200` [`FaultsReply`]: active faults, history, simulated time |
//! | `POST /faults` with a [`Fault`] | `201` [`InjectReply`]; `400` bad JSON, unknown kind, store, region or member, parameter out of range; `409` clash with the cluster's state |
//! | `DELETE /faults/{id}` | `200` [`ClearReply`]; `404` not active; `400` not a number |
//! | `DELETE /faults` | `200` [`ClearReply`]: every active fault cleared |
//! | `GET /cluster` | `200` [`ClusterReply`] |
//! | `POST /step?ms=N` | `200` [`StepReply`]; `409` when the cluster runs in real time; `400` bad `ms` |
//!
//! The types are public so that a command-line client can decode the replies. The discovery file
//! helpers ([`write_discovery`], [`read_discovery`], [`remove_discovery`]) let a client find a
//! running simulator from a directory both agree on.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Weak;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};

use crate::cluster::SimCluster;
pub use crate::faults::{CatalogueEntry, Fault, FaultAction, FaultEvent, FaultId, HotFlow, ParamSpec};
use crate::sim::SimError;

/// Name of the discovery file inside the agreed directory.
pub const DISCOVERY_FILE: &str = "sim-control.json";
/// Most simulated time one `POST /step` may advance: one day.
pub const MAX_STEP_MS: u64 = 24 * 3_600_000;

/// `201` reply to `POST /faults`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectReply {
    /// Id of the injected fault.
    pub id: FaultId,
}

/// Body of every error reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What was wrong.
    pub error: String,
}

/// An active fault as `GET /faults` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultView {
    /// Fault id.
    pub id: FaultId,
    /// Fault kind, e.g. `kill-store`.
    pub kind: String,
    /// Parameters with defaults filled in.
    pub params: serde_json::Value,
    /// Simulated time (ms) of the injection.
    pub since_sim_ms: u64,
    /// Unix time (ms) of the injection.
    pub since_unix_ms: u64,
}

/// `GET /faults`: the ground truth of what is wrong with the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultsReply {
    /// Current simulated time (ms).
    pub now_sim_ms: u64,
    /// Unix time (ms) of the current simulated time.
    pub now_unix_ms: u64,
    /// Faults in effect, in injection order.
    pub active: Vec<FaultView>,
    /// Every injection and clearing, oldest first.
    pub history: Vec<FaultEvent>,
}

/// Reply to `DELETE /faults` and `DELETE /faults/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClearReply {
    /// The faults cleared.
    pub cleared: Vec<FaultId>,
}

/// `GET /cluster`: where everything is and what time it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterReply {
    /// Current simulated time (ms).
    pub now_sim_ms: u64,
    /// Unix time (ms) of the current simulated time.
    pub now_unix_ms: u64,
    /// Simulated time per real time; `0` means stepped by hand through `POST /step`.
    pub speed: f64,
    /// Seed of the simulation.
    pub seed: u64,
    /// PD client URLs, in member order.
    pub pd_urls: Vec<String>,
    /// Name of the PD leader, if there is one.
    pub pd_leader: Option<String>,
    /// Status addresses (`host:port`) by store id.
    pub status_addrs: BTreeMap<u64, String>,
    /// This API's base URL.
    pub control_url: String,
}

/// Reply to `POST /step`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReply {
    /// Simulated time (ms) after the step.
    pub now_sim_ms: u64,
    /// Unix time (ms) of that simulated time.
    pub now_unix_ms: u64,
}

/// Contents of the discovery file: how to reach a running simulator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryInfo {
    /// Base URL of the control API.
    pub control_url: String,
    /// PD client URLs.
    pub pd_urls: Vec<String>,
    /// Process id of the simulator.
    pub pid: u32,
}

/// Why the discovery file could not be written, read or removed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// There is no discovery file.
    #[error("no simulator discovery file at {path} (is the simulator running?)")]
    Missing {
        /// The path looked at.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("cannot read simulator discovery file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not a discovery file.
    #[error("simulator discovery file {path} is malformed: {source}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The decoding error.
        source: serde_json::Error,
    },
    /// The file could not be written or removed.
    #[error("cannot write simulator discovery file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// Writes `dir/sim-control.json` atomically (a temporary file renamed over it), creating `dir` if
/// needed, so a reader never sees half a file. Returns the file's path.
pub fn write_discovery(dir: &Path, info: &DiscoveryInfo) -> Result<PathBuf, DiscoveryError> {
    let path = dir.join(DISCOVERY_FILE);
    let temp = dir.join(format!(".{DISCOVERY_FILE}.{}.tmp", std::process::id()));
    let write = |source| DiscoveryError::Write { path: path.clone(), source };
    std::fs::create_dir_all(dir).map_err(write)?;
    let mut body = serde_json::to_vec_pretty(info).map_err(|e| write(io::Error::other(e)))?;
    body.push(b'\n');
    let written = (|| {
        use std::io::Write;
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(&body)?;
        file.sync_all()?;
        std::fs::rename(&temp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(write(e));
    }
    Ok(path)
}

/// Reads `dir/sim-control.json`.
pub fn read_discovery(dir: &Path) -> Result<DiscoveryInfo, DiscoveryError> {
    let path = dir.join(DISCOVERY_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(DiscoveryError::Missing { path }),
        Err(source) => return Err(DiscoveryError::Read { path, source }),
    };
    serde_json::from_slice(&bytes).map_err(|source| DiscoveryError::Malformed { path, source })
}

/// Removes `dir/sim-control.json`; `Ok(false)` if there was none.
pub fn remove_discovery(dir: &Path) -> Result<bool, DiscoveryError> {
    let path = dir.join(DISCOVERY_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(DiscoveryError::Write { path, source }),
    }
}

/// The control router. It holds the cluster weakly: the cluster owns the listener serving it.
pub fn router(cluster: Weak<SimCluster>) -> Router {
    Router::new()
        .route("/faults/catalogue", get(catalogue))
        .route("/faults", get(faults).post(inject).delete(clear_all))
        .route("/faults/{id}", delete(clear))
        .route("/cluster", get(cluster_info))
        .route("/step", post(step))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(cluster)
}

/// Pretty JSON with a trailing newline, for people reading replies with curl as much as for programs.
fn reply<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"null".to_vec());
    body.push(b'\n');
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    reply(status, &ErrorReply { error: message.into() })
}

/// The status an error of the simulation maps to.
fn sim_error(err: &anyhow::Error) -> Response {
    let status = match err.downcast_ref::<SimError>() {
        Some(SimError::FaultNotFound(_)) => StatusCode::NOT_FOUND,
        Some(SimError::FaultConflict(_)) => StatusCode::CONFLICT,
        Some(_) => StatusCode::BAD_REQUEST,
        None => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, format!("{err:#}"))
}

fn gone() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "the simulated cluster has shut down")
}

async fn no_route(method: Method, uri: Uri) -> Response {
    error(StatusCode::NOT_FOUND, format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {}", uri.path()))
}

async fn catalogue() -> Response {
    reply(StatusCode::OK, &Fault::catalogue())
}

async fn faults(State(cluster): State<Weak<SimCluster>>) -> Response {
    let Some(cluster) = cluster.upgrade() else { return gone() };
    let sim = cluster.sim();
    let active = sim
        .active_faults()
        .iter()
        .map(|f| FaultView {
            id: f.id,
            kind: f.kind().into(),
            params: f.params.clone(),
            since_sim_ms: f.since_sim_ms,
            since_unix_ms: f.since_unix_ms,
        })
        .collect();
    let body = FaultsReply {
        now_sim_ms: sim.now_ms,
        now_unix_ms: sim.unix_ms(sim.now_ms),
        active,
        history: sim.fault_history().to_vec(),
    };
    drop(sim);
    reply(StatusCode::OK, &body)
}

async fn inject(State(cluster): State<Weak<SimCluster>>, body: Bytes) -> Response {
    let Some(cluster) = cluster.upgrade() else { return gone() };
    let fault: Fault = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid fault: {e}")),
    };
    match cluster.inject(fault).await {
        Ok(id) => reply(StatusCode::CREATED, &InjectReply { id }),
        Err(e) => sim_error(&e),
    }
}

async fn clear(State(cluster): State<Weak<SimCluster>>, UrlPath(id): UrlPath<String>) -> Response {
    let Some(cluster) = cluster.upgrade() else { return gone() };
    let Ok(id) = id.parse::<u64>() else {
        return error(StatusCode::BAD_REQUEST, format!("fault id must be a whole number, got {id:?}"));
    };
    match cluster.clear(FaultId(id)).await {
        Ok(()) => reply(StatusCode::OK, &ClearReply { cleared: vec![FaultId(id)] }),
        Err(e) => sim_error(&e),
    }
}

async fn clear_all(State(cluster): State<Weak<SimCluster>>) -> Response {
    let Some(cluster) = cluster.upgrade() else { return gone() };
    match cluster.clear_all().await {
        Ok(cleared) => reply(StatusCode::OK, &ClearReply { cleared }),
        Err(e) => sim_error(&e),
    }
}

async fn cluster_info(State(cluster): State<Weak<SimCluster>>) -> Response {
    let Some(cluster) = cluster.upgrade() else { return gone() };
    let (now_sim_ms, now_unix_ms, seed, pd_leader) = {
        let sim = cluster.sim();
        let leader = sim.pd_leader.and_then(|i| sim.members.get(i)).map(|m| m.name.clone());
        (sim.now_ms, sim.unix_ms(sim.now_ms), sim.spec.seed, leader)
    };
    let body = ClusterReply {
        now_sim_ms,
        now_unix_ms,
        speed: cluster.speed(),
        seed,
        pd_urls: cluster.pd_urls(),
        pd_leader,
        status_addrs: cluster.status_addrs(),
        control_url: cluster.control_url(),
    };
    reply(StatusCode::OK, &body)
}

async fn step(State(cluster): State<Weak<SimCluster>>, RawQuery(query): RawQuery) -> Response {
    let Some(cluster) = cluster.upgrade() else { return gone() };
    if cluster.speed() > 0.0 {
        return error(
            StatusCode::CONFLICT,
            format!(
                "the cluster runs in real time at speed {}; only a cluster started with speed 0 is stepped by hand",
                cluster.speed()
            ),
        );
    }
    let ms = query.as_deref().unwrap_or("").split('&').find_map(|pair| pair.strip_prefix("ms="));
    let Some(ms) = ms else {
        return error(StatusCode::BAD_REQUEST, "missing query parameter ms (simulated milliseconds to advance)");
    };
    let ms = match ms.parse::<u64>() {
        Ok(ms) if ms <= MAX_STEP_MS => ms,
        Ok(ms) => {
            return error(StatusCode::BAD_REQUEST, format!("ms must be at most {MAX_STEP_MS} (one day), got {ms}"));
        }
        Err(_) => {
            return error(StatusCode::BAD_REQUEST, format!("ms must be a whole number of milliseconds, got {ms:?}"));
        }
    };
    // Many ticks can take a while: keep them off the async workers.
    let stepped = tokio::task::spawn_blocking(move || {
        cluster.step(ms);
        let sim = cluster.sim();
        StepReply { now_sim_ms: sim.now_ms, now_unix_ms: sim.unix_ms(sim.now_ms) }
    })
    .await;
    match stepped {
        Ok(body) => reply(StatusCode::OK, &body),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("stepping failed: {e}")),
    }
}
