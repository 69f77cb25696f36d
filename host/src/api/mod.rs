//! The daemon's local HTTP API (JSON) and its Prometheus metrics.
//!
//! | route | auth | what |
//! |---|---|---|
//! | `GET /healthz` | open | `ok` |
//! | `GET /metrics` | open | Prometheus metrics (see [`metrics`]) |
//! | `GET /api/v1/status` | read | mode, kill switch, subject plugin, latest observation, entity summary, counts, uptime |
//! | `GET /api/v1/tickets?status=active\|open\|held\|resolved\|all` | read | tickets, newest first (default `active`) |
//! | `GET /api/v1/tickets/{id}` | read | a ticket with its observation snapshots |
//! | `POST /api/v1/tickets/{id}/resolve\|hold\|unhold` | token | `{"reason", "by"?}` |
//! | `GET /api/v1/actions?status=<status>\|active\|all` | read | actions, newest first, each with why it waits |
//! | `GET /api/v1/actions/{id}` | read | an action and why it waits |
//! | `POST /api/v1/actions` | token | `{"name", "params"?: {..} \| "params_text"?: ["k=v"], "ticket"?, "at_ms"?, "by"?}`: propose (201) |
//! | `POST /api/v1/actions/{id}/approve\|reject\|cancel` | token | `{"reason", "by"?}` |
//! | `GET /api/v1/workflows?status=<status>\|active\|all` | read | workflow runs, newest first (default `all`) |
//! | `GET /api/v1/workflows/definitions` | read | the workflows the plugins define, and those refused with their problems |
//! | `GET /api/v1/workflows/{id}` | read | a run with its steps and history |
//! | `POST /api/v1/workflows` | token | `{"name", "params"?: {..}, "ticket"?, "by"?}`: start (201) |
//! | `POST /api/v1/workflows/{id}/approve\|reject\|cancel` | token | `{"reason", "by"?}` |
//! | `POST /api/v1/workflows/{id}/resume` | token | `{"by"?}`: a failed run, or one the kill switch stopped once it is released |
//! | `GET /api/v1/safety` | read | the safety switches |
//! | `POST /api/v1/safety/mode` | token | `{"mode": "observe"\|"execute", "reason", "by"?}` |
//! | `POST /api/v1/safety/kill-switch` | token | `{"reason", "by"?}`: observe mode, pending actions cancelled |
//! | `POST /api/v1/safety/release` | token | `{"reason", "by"?}` |
//! | `GET /api/v1/audit?kind=&since=&limit=&plugin=&denied=` | read | audit records, oldest first (default limit 100) |
//! | `GET /api/v1/audit/verify` | read | the chain's verification |
//! | `GET /api/v1/plugins` | read | loaded and refused plugins with their grants |
//!
//! *read*: open to local peers (loopback TCP, the Unix socket), the token from anywhere else.
//! *token*: `Authorization: Bearer <token>` always (see [`auth`]); every request other than
//! `GET`/`HEAD` under `/api/` needs it, so a route added later cannot be left open by mistake.
//! A refused request gets 401, changes nothing, and is recorded in the audit log as a note.
//!
//! Errors are `{"error": "..."}` with 400 (malformed input, naming the field), 401, 404 (unknown
//! id or route), 405, 409 (the thing is in the wrong state), 503 (no usable observation of the
//! cluster to check a proposal against) or 500 (storage or audit failure). Changes are made by
//! actor `api`, or `api:<by>` when the body names one.

pub mod auth;
mod error;
pub mod metrics;
mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Serialize;
use serde_json::{Value, json};

use crate::actions::executor::Executor;
use crate::actions::workflow::WorkflowEngine;
use crate::audit::{AuditEvent, AuditLog, AuditSink, now_ms};
use crate::monitor::tickets::TicketStore;
use crate::monitor::{LatestObservation, SharedObservation};
use crate::runtime::bindings::types;
use crate::runtime::{CallContext, Plugin, PluginSet};
pub use auth::{ApiToken, TokenError};
pub use error::ApiError;
pub use metrics::Metrics;

/// A plugin as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginSummary {
    /// Its name.
    pub name: String,
    /// Its version (empty when refused before its manifest was read).
    pub version: String,
    /// `subject` or `tools` (empty when refused).
    pub world: String,
    /// `built-in` or the drop-in directory.
    pub source: String,
    /// sha256 of the component (empty when refused).
    pub sha256: String,
    /// The manifest's description.
    pub description: String,
    /// The operator's grants, as text.
    pub grants: Vec<String>,
    /// Whether it is loaded.
    pub loaded: bool,
    /// Why it was refused, when it was.
    pub refused: Option<String>,
}

impl PluginSummary {
    /// The summary of a loaded plugin.
    pub fn of(plugin: &Plugin) -> PluginSummary {
        PluginSummary {
            name: plugin.name().to_owned(),
            version: plugin.version().to_owned(),
            world: plugin.world().as_str().to_owned(),
            source: plugin.source().to_string(),
            sha256: plugin.sha256().to_owned(),
            description: plugin.manifest().description.clone(),
            grants: plugin.grants().iter().map(|g| g.to_string()).collect(),
            loaded: true,
            refused: None,
        }
    }

    /// Every plugin of a discovery: the loaded ones by name, then those refused.
    pub fn from_set(set: &PluginSet) -> Vec<PluginSummary> {
        let loaded = set.loaded.values().map(|p| PluginSummary::of(p));
        let refused = set.refused.iter().map(|f| PluginSummary {
            name: f.name.clone(),
            version: String::new(),
            world: String::new(),
            source: f.source.clone(),
            sha256: String::new(),
            description: String::new(),
            grants: vec![],
            loaded: false,
            refused: Some(f.reason.clone()),
        });
        loaded.chain(refused).collect()
    }
}

/// The subject plugin's entity summary of the latest observation, kept until a newer observation
/// arrives so that `GET status` calls `summarize` once per observation, not once per request.
#[derive(Debug, Default)]
pub struct SummaryCache {
    cached: tokio::sync::Mutex<Option<(u64, Result<Value, String>)>>,
}

impl SummaryCache {
    /// The summary of `latest` (by its receipt time), asking `subject` if it is not cached.
    /// A plugin failure is returned as its message (and cached like a summary).
    pub async fn get(&self, subject: &Plugin, latest: &LatestObservation) -> Result<Value, String> {
        let mut cached = self.cached.lock().await;
        if let Some((at_ms, summary)) = cached.as_ref()
            && *at_ms == latest.at_ms
        {
            return summary.clone();
        }
        let summary = match subject.as_subject() {
            Some(s) => match s.summarize(&CallContext::default(), &latest.observation).await {
                Ok(entities) => Ok(Value::Array(entities.iter().map(entity_json).collect())),
                Err(e) => Err(e.to_string()),
            },
            None => Err(format!("plugin {} is not a subject plugin", subject.name())),
        };
        *cached = Some((latest.at_ms, summary.clone()));
        summary
    }
}

/// A subject-neutral entity as JSON.
fn entity_json(entity: &types::EntitySummary) -> Value {
    let health = match entity.health {
        types::Health::Healthy => "healthy",
        types::Health::Degraded => "degraded",
        types::Health::Down => "down",
        types::Health::Unknown => "unknown",
    };
    json!({
        "kind": entity.kind,
        "id": entity.id,
        "health": health,
        "figures": entity.figures.iter().map(|f| json!({"name": f.name, "value": f.value, "unit": f.unit})).collect::<Vec<_>>(),
        "note": entity.note,
    })
}

/// What the API serves from. Build it once the executor runs; share it as an `Arc`.
pub struct ApiState {
    /// The action engine (actions, safety switches).
    pub executor: Arc<Executor>,
    /// The workflow engine (runs, definitions), over the same executor.
    pub workflows: Arc<WorkflowEngine>,
    /// The tickets.
    pub tickets: TicketStore,
    /// The audit log, for queries and verification.
    pub audit_log: AuditLog,
    /// The audit sink, for refused requests.
    pub sink: AuditSink,
    /// The plugins, loaded and refused.
    pub plugins: Vec<PluginSummary>,
    /// The monitor's latest observation.
    pub latest: SharedObservation,
    /// The subject plugin (summarises the latest observation).
    pub subject: Arc<Plugin>,
    /// The metrics served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// When the daemon started, unix ms.
    pub started_at_ms: u64,
    /// The bearer token mutating requests must carry.
    pub token: ApiToken,
    /// The cached entity summary.
    pub summary: SummaryCache,
}

impl ApiState {
    /// A state started now, with an empty summary cache.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        executor: Arc<Executor>,
        workflows: Arc<WorkflowEngine>,
        tickets: TicketStore,
        audit_log: AuditLog,
        sink: AuditSink,
        plugins: Vec<PluginSummary>,
        latest: SharedObservation,
        subject: Arc<Plugin>,
        metrics: Arc<Metrics>,
        token: ApiToken,
    ) -> ApiState {
        ApiState {
            executor,
            workflows,
            tickets,
            audit_log,
            sink,
            plugins,
            latest,
            subject,
            metrics,
            started_at_ms: now_ms(),
            token,
            summary: SummaryCache::default(),
        }
    }
}

/// Marks requests that came through the Unix socket (local by construction).
#[derive(Debug, Clone, Copy)]
struct UnixPeer;

/// The API's routes over `state`.
pub fn router(state: Arc<ApiState>) -> Router {
    let api = Router::new()
        .route("/api/v1/status", get(routes::status))
        .route("/api/v1/tickets", get(routes::tickets))
        .route("/api/v1/tickets/{id}", get(routes::ticket))
        .route("/api/v1/tickets/{id}/resolve", post(routes::resolve_ticket))
        .route("/api/v1/tickets/{id}/hold", post(routes::hold_ticket))
        .route("/api/v1/tickets/{id}/unhold", post(routes::unhold_ticket))
        .route("/api/v1/actions", get(routes::actions).post(routes::propose))
        .route("/api/v1/actions/{id}", get(routes::action))
        .route("/api/v1/actions/{id}/approve", post(routes::approve))
        .route("/api/v1/actions/{id}/reject", post(routes::reject))
        .route("/api/v1/actions/{id}/cancel", post(routes::cancel))
        .route("/api/v1/workflows", get(routes::workflows).post(routes::start_workflow))
        .route("/api/v1/workflows/definitions", get(routes::workflow_definitions))
        .route("/api/v1/workflows/{id}", get(routes::workflow))
        .route("/api/v1/workflows/{id}/approve", post(routes::approve_workflow))
        .route("/api/v1/workflows/{id}/reject", post(routes::reject_workflow))
        .route("/api/v1/workflows/{id}/cancel", post(routes::cancel_workflow))
        .route("/api/v1/workflows/{id}/resume", post(routes::resume_workflow))
        .route("/api/v1/safety", get(routes::safety))
        .route("/api/v1/safety/mode", post(routes::set_mode))
        .route("/api/v1/safety/kill-switch", post(routes::kill))
        .route("/api/v1/safety/release", post(routes::release))
        .route("/api/v1/audit", get(routes::audit))
        .route("/api/v1/audit/verify", get(routes::audit_verify))
        .route("/api/v1/plugins", get(routes::plugins))
        .fallback(routes::no_route)
        .method_not_allowed_fallback(routes::wrong_method)
        .layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(routes::metrics))
        .merge(api)
        .with_state(state)
}

/// Serves `router` on a TCP listener until `shutdown` completes, then finishes the requests in
/// flight. Peers' addresses are passed to the router, so reads are open only to loopback peers.
///
/// # Errors
/// Accepting connections failed for good.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds a Unix socket at `path` with mode 0600, replacing a stale socket left by an earlier run
/// (but never another kind of file).
///
/// # Errors
/// Something other than a socket is at `path`, or binding or securing it failed.
pub fn bind_unix(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket; refusing to replace it", path.display()),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves `router` on a Unix socket until `shutdown` completes. Requests through the socket
/// count as local (reads need no token; writes still do).
///
/// # Errors
/// Accepting connections failed for good.
pub async fn serve_unix(
    listener: tokio::net::UnixListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router.layer(Extension(UnixPeer))).with_graceful_shutdown(shutdown).await
}

/// Who sent a request, for the audit record of a refusal.
fn peer(request: &Request) -> (String, bool) {
    if request.extensions().get::<UnixPeer>().is_some() {
        return ("the unix socket".into(), true);
    }
    match request.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => (addr.to_string(), addr.ip().is_loopback()),
        // Served without peer information: assume nothing.
        None => ("an unknown peer".into(), false),
    }
}

/// The auth rule: reads are open to local peers; everything else needs the token.
async fn authorize(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    let (who, local) = peer(&request);
    if read && local {
        return next.run(request).await;
    }
    let header = request.headers().get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
    match state.token.check_header(header) {
        Ok(()) => next.run(request).await,
        Err(why) => {
            state.metrics.observe_unauthorized();
            let message = format!("api: refused {} {} from {who}: {why}", request.method(), request.uri().path());
            tracing::warn!("{message}");
            state.sink.record(AuditEvent::note(message));
            ApiError::unauthorized(why).into_response()
        }
    }
}
