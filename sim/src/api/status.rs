//! A TiKV store's status server (TiKV `components/server/src/status_server`): `GET /status` and
//! `GET /metrics` on the store's own status address. While the store is killed its listener is closed;
//! the handlers also refuse, so that a request racing the kill never sees a dead store answer.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use super::render::{http_error, json};
use crate::sim::Simulation;

#[derive(Clone)]
struct StoreCtx {
    sim: Arc<Mutex<Simulation>>,
    store_id: u64,
}

/// The status router of store `store_id`.
pub fn router(sim: Arc<Mutex<Simulation>>, store_id: u64) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .fallback(|| async { http_error(StatusCode::NOT_FOUND, "404 page not found") })
        .with_state(StoreCtx { sim, store_id })
}

#[derive(Serialize)]
struct StatusView {
    store_id: u64,
    address: String,
    status_address: String,
    version: String,
    git_hash: String,
    start_timestamp: i64,
}

async fn status(State(ctx): State<StoreCtx>) -> Response {
    let sim = ctx.sim.lock().unwrap_or_else(|e| e.into_inner());
    match sim.store(ctx.store_id) {
        Some(store) if store.alive => json(
            StatusCode::OK,
            &StatusView {
                store_id: store.id,
                address: store.address.clone(),
                status_address: store.status_address.clone(),
                version: store.version.clone(),
                git_hash: store.git_hash.clone(),
                start_timestamp: (sim.unix_ns(store.started_at_ms) / 1_000_000_000) as i64,
            },
        ),
        _ => http_error(StatusCode::SERVICE_UNAVAILABLE, "store is not running"),
    }
}

async fn metrics(State(ctx): State<StoreCtx>) -> Response {
    let mut sim = ctx.sim.lock().unwrap_or_else(|e| e.into_inner());
    sim.regions.refresh();
    match sim.store(ctx.store_id).filter(|s| s.alive).and_then(|_| super::metrics::tikv_metrics(&sim, ctx.store_id)) {
        Some(text) => ([(axum::http::header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], text).into_response(),
        None => http_error(StatusCode::SERVICE_UNAVAILABLE, "store is not running"),
    }
}
