//! PD's HTTP API (`server/api/router.go`) served for one PD member: members and leader
//! (`server/api/member.go`), cluster, stores (`server/api/store.go`), regions (`server/api/region.go`),
//! config (`server/api/config.go`), schedulers (`server/api/scheduler.go`) and operators
//! (`server/api/operator.go`), plus PD's `/metrics` and the embedded etcd's `/health` and `/version`.
//!
//! Requests under `/pd/api/v1` that reach a follower are served as the leader would serve them, as
//! PD's redirector proxies them (`pkg/utils/apiutil/serverapi/middleware.go`); with no leader they get
//! `503`. `GET /config` is answered by whichever member receives it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Serialize;

use super::render::{
    go_json_syntax_error, http_error, input_error, json, message, parse_id, query_pairs, region_bytes, region_json,
};
use super::views::{self, MemberView, RegionView, RegionsView, StoresView, store_info};
use crate::model::{Label, PeerRole, Region, Scheduler, StoreState};
use crate::region_ops::decode_hex;
use crate::regions::Facts;
use crate::sim::{MissingRegionReply, Simulation, StoreOpError};
use crate::units::{GoFloat, format_duration_ms, format_rfc3339_ns};

/// Shared simulation state.
pub type SharedSim = Arc<Mutex<Simulation>>;

/// Per-member request context.
#[derive(Clone)]
pub struct MemberCtx {
    sim: SharedSim,
    member: usize,
}

impl MemberCtx {
    fn lock(&self) -> MutexGuard<'_, Simulation> {
        // A panic while holding the lock leaves the model usable; keep serving.
        self.sim.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The model, with its region facts and store totals brought up to date.
    fn fresh(&self) -> MutexGuard<'_, Simulation> {
        let mut sim = self.lock();
        sim.regions.refresh();
        sim
    }
}

const PREFIX: &str = "/pd/api/v1";

/// The router of PD member `member` (index into the members list).
pub fn router(sim: SharedSim, member: usize) -> Router {
    let ctx = MemberCtx { sim, member };
    let api = Router::new()
        .route("/health", get(health))
        .route("/members", get(members))
        .route("/leader", get(leader))
        .route("/leader/resign", post(leader_resign))
        .route("/leader/transfer/{name}", post(leader_transfer))
        .route("/cluster", get(cluster))
        .route("/cluster/status", get(cluster_status))
        .route("/version", get(version))
        .route("/status", get(status))
        .route("/stores", get(stores))
        .route("/stores/check", get(stores_check))
        .route("/store/{id}", get(store).delete(store_delete))
        .route("/store/{id}/state", post(store_state))
        .route("/store/{id}/label", post(store_label))
        .route("/store/{id}/weight", post(store_weight))
        .route("/store/{id}/limit", post(store_limit))
        .route("/stores/limit", get(stores_limit))
        .route("/stores/progress", get(stores_progress))
        .route("/regions/count", get(regions_count))
        .route("/region/id/{id}", get(region_by_id))
        .route("/region/key/{key}", get(region_by_key))
        .route("/regions", get(regions_all))
        .route("/regions/key", get(regions_scan))
        .route("/regions/store/{id}", get(regions_of_store))
        .route("/regions/{order}", get(regions_top))
        .route("/regions/check/{kind}", get(regions_check))
        .route("/regions/scatter", post(regions_scatter))
        .route("/regions/split", post(regions_split))
        .route("/config", get(config).post(config_update))
        .route("/hotspot/regions/write", get(hot_write))
        .route("/hotspot/regions/read", get(hot_read))
        .route("/hotspot/stores", get(hot_stores))
        .route("/config/replicate", get(config_replicate))
        .route("/schedulers", get(schedulers_list).post(schedulers_add))
        .route("/schedulers/{name}", delete(schedulers_remove).post(schedulers_pause))
        .route("/scheduler-config/evict-leader-scheduler/list", get(evict_leader_config))
        .route("/operators", get(operators).post(operators_add).delete(operators_cancel_all))
        .route("/operators/records", get(operator_records))
        .route("/operators/{id}", get(operator_get).delete(operator_cancel));
    Router::new()
        .nest(PREFIX, api)
        .route("/health", get(etcd_health))
        .route("/version", get(etcd_version))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(ctx.clone(), redirect))
        .with_state(ctx)
}

/// Go's `http.NotFound`, which gorilla/mux answers for unknown routes.
async fn not_found() -> Response {
    http_error(StatusCode::NOT_FOUND, "404 page not found")
}

/// PD's redirector: a follower serves API requests as the leader would; with no leader, `503`.
async fn redirect(State(ctx): State<MemberCtx>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let local = !path.starts_with(PREFIX)
        || (req.method() == Method::GET && path == format!("{PREFIX}/config"))
        || req.headers().contains_key("PD-Allow-follower-handle");
    if !local && ctx.lock().pd_leader.is_none() {
        return http_error(StatusCode::SERVICE_UNAVAILABLE, "[PD:apiutil:ErrRedirectNoLeader]redirect finds no leader");
    }
    next.run(req).await
}

#[derive(Serialize)]
struct HealthView {
    name: String,
    member_id: u64,
    client_urls: Vec<String>,
    health: bool,
}

async fn health(State(ctx): State<MemberCtx>) -> Response {
    let sim = ctx.lock();
    let list: Vec<HealthView> = sim
        .members
        .iter()
        .map(|m| HealthView {
            name: m.name.clone(),
            member_id: m.member_id,
            client_urls: vec![m.client_url.clone()],
            health: m.alive,
        })
        .collect();
    json(StatusCode::OK, &list)
}

#[derive(Serialize)]
struct Header {
    cluster_id: u64,
}

#[derive(Serialize)]
struct MembersView {
    header: Header,
    members: Vec<MemberView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    leader: Option<MemberView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etcd_leader: Option<MemberView>,
}

async fn members(State(ctx): State<MemberCtx>) -> Response {
    let sim = ctx.lock();
    let leader = sim.pd_leader.and_then(|i| sim.members.get(i));
    let view = MembersView {
        header: Header { cluster_id: sim.cluster_id },
        // Stopped members stay in the etcd membership, as they do in a real cluster.
        members: sim.members.iter().map(MemberView::from).collect(),
        leader: leader.map(MemberView::from),
        etcd_leader: leader.map(MemberView::from),
    };
    json(StatusCode::OK, &view)
}

async fn leader(State(ctx): State<MemberCtx>) -> Response {
    let sim = ctx.lock();
    match sim.pd_leader.and_then(|i| sim.members.get(i)) {
        Some(m) => json(StatusCode::OK, &MemberView::from(m)),
        None => http_error(StatusCode::SERVICE_UNAVAILABLE, "[PD:apiutil:ErrRedirectNoLeader]redirect finds no leader"),
    }
}

/// `POST /leader/resign`: the leader hands leadership to another running member.
async fn leader_resign(State(ctx): State<MemberCtx>) -> Response {
    match ctx.lock().transfer_pd_leader(None) {
        Ok(()) => message(StatusCode::OK, "The resign command is submitted."),
        Err(e) => message(StatusCode::INTERNAL_SERVER_ERROR, &format!("failed to resign: {e}")),
    }
}

/// `POST /leader/transfer/{name}`: leadership moves to the named running member.
async fn leader_transfer(State(ctx): State<MemberCtx>, Path(name): Path<String>) -> Response {
    match ctx.lock().transfer_pd_leader(Some(&name)) {
        Ok(()) => message(StatusCode::OK, "The transfer command is submitted."),
        Err(e) => message(StatusCode::INTERNAL_SERVER_ERROR, &format!("failed to transfer leader: {e}")),
    }
}

#[derive(Serialize)]
struct ClusterView {
    id: u64,
    max_peer_count: u64,
}

async fn cluster(State(ctx): State<MemberCtx>) -> Response {
    let sim = ctx.lock();
    json(StatusCode::OK, &ClusterView { id: sim.cluster_id, max_peer_count: sim.replication.max_replicas })
}

#[derive(Serialize)]
struct ClusterStatusView {
    raft_bootstrap_time: String,
    is_initialized: bool,
    replication_status: String,
}

async fn cluster_status(State(ctx): State<MemberCtx>) -> Response {
    let sim = ctx.lock();
    json(
        StatusCode::OK,
        &ClusterStatusView {
            raft_bootstrap_time: format_rfc3339_ns(sim.unix_ns(0)),
            is_initialized: true,
            replication_status: String::new(),
        },
    )
}

#[derive(Serialize)]
struct VersionView {
    version: &'static str,
}

async fn version() -> Response {
    json(StatusCode::OK, &VersionView { version: views::PD_VERSION })
}

#[derive(Serialize)]
struct StatusView {
    build_ts: &'static str,
    version: &'static str,
    git_hash: &'static str,
    start_timestamp: i64,
}

async fn status(State(ctx): State<MemberCtx>) -> Response {
    let sim = ctx.lock();
    json(
        StatusCode::OK,
        &StatusView {
            build_ts: "2024-12-19 05:57:04",
            version: views::PD_VERSION,
            git_hash: views::PD_GIT_HASH,
            start_timestamp: (sim.unix_ns(0) / 1_000_000_000) as i64,
        },
    )
}

/// `GET /stores[?state=N...]`: numeric states filter; by default Up and Offline, Tombstone left out.
async fn stores(State(ctx): State<MemberCtx>, RawQuery(query): RawQuery) -> Response {
    let mut wanted = Vec::new();
    for (k, v) in query_pairs(query.as_deref()) {
        if k == "state" {
            match v.parse::<i32>() {
                Ok(n) => wanted.push(n),
                Err(_) => return message(StatusCode::BAD_REQUEST, &atoi_error(&v)),
            }
        }
    }
    if wanted.is_empty() {
        wanted = vec![StoreState::Up.as_i32(), StoreState::Offline.as_i32()];
    }
    let sim = ctx.fresh();
    let stats = sim.store_stats();
    let list: Vec<_> = sim
        .stores
        .iter()
        .filter(|s| wanted.contains(&s.state.as_i32()))
        .map(|s| store_info(&sim, s, &stats.get(&s.id).copied().unwrap_or_default()))
        .collect();
    json(StatusCode::OK, &StoresView { count: list.len(), stores: list })
}

fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// `GET /stores/check?state=…`: stores whose `state_name` matches, case-insensitively.
async fn stores_check(State(ctx): State<MemberCtx>, RawQuery(query): RawQuery) -> Response {
    const KNOWN: [&str; 5] = ["up", "offline", "tombstone", "down", "disconnected"];
    let mut wanted = Vec::new();
    for (k, v) in query_pairs(query.as_deref()) {
        if k == "state" {
            let lower = v.to_lowercase();
            if !KNOWN.contains(&lower.as_str()) {
                return message(StatusCode::BAD_REQUEST, &format!("unknown StoreState: {v}"));
            }
            wanted.push(lower);
        }
    }
    let sim = ctx.fresh();
    let stats = sim.store_stats();
    let list: Vec<_> = sim
        .stores
        .iter()
        .filter(|s| wanted.iter().any(|w| *w == sim.state_name(s).to_lowercase()))
        .map(|s| store_info(&sim, s, &stats.get(&s.id).copied().unwrap_or_default()))
        .collect();
    json(StatusCode::OK, &StoresView { count: list.len(), stores: list })
}

async fn store(State(ctx): State<MemberCtx>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(msg) => return input_error(&msg),
    };
    let sim = ctx.fresh();
    let Some(store) = sim.store(id) else {
        return message(StatusCode::NOT_FOUND, &format!("[PD:core:ErrStoreNotFound]store {id} not found"));
    };
    let stats = sim.store_stats();
    json(StatusCode::OK, &store_info(&sim, store, &stats.get(&id).copied().unwrap_or_default()))
}

/// PD's `responseStoreErr`: 404 not found, 410 removed, 400 otherwise.
fn store_error(err: &StoreOpError) -> Response {
    let status = match err {
        StoreOpError::NotFound(_) => StatusCode::NOT_FOUND,
        StoreOpError::Removed(_) => StatusCode::GONE,
        StoreOpError::NotEnough { .. } | StoreOpError::Invalid(_) => StatusCode::BAD_REQUEST,
    };
    message(status, &err.to_string())
}

/// `DELETE /store/{id}[?force]`: sets the store Offline.
async fn store_delete(State(ctx): State<MemberCtx>, Path(id): Path<String>, RawQuery(query): RawQuery) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(msg) => return input_error(&msg),
    };
    let force = query_pairs(query.as_deref()).iter().any(|(k, _)| k == "force");
    match ctx.lock().remove_store(id, force) {
        Ok(()) => message(StatusCode::OK, "The store is set as Offline."),
        Err(e) => store_error(&e),
    }
}

/// `POST /store/{id}/state?state=Up|Offline`.
async fn store_state(State(ctx): State<MemberCtx>, Path(id): Path<String>, RawQuery(query): RawQuery) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(msg) => return input_error(&msg),
    };
    let state =
        query_pairs(query.as_deref()).into_iter().find(|(k, _)| k == "state").map(|(_, v)| v).unwrap_or_default();
    let mut sim = ctx.lock();
    let result = if state.eq_ignore_ascii_case("up") {
        sim.up_store(id)
    } else if state.eq_ignore_ascii_case("offline") {
        sim.remove_store(id, false)
    } else {
        Err(StoreOpError::Invalid(format!("invalid state {state}")))
    };
    match result {
        Ok(()) => message(StatusCode::OK, "The store's state is updated."),
        Err(e) => store_error(&e),
    }
}

/// Parses a JSON object body as PD's `json.Unmarshal` into `map[string]interface{}` does: `null` is
/// an empty map; the error is Go's text for PD's `400` errcode reply.
fn object_body(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(serde_json::Value::Null) => Ok(serde_json::Map::new()),
        Ok(other) => {
            Err(format!("json: cannot unmarshal {} into Go value of type map[string]interface {{}}", json_kind(&other)))
        }
        Err(e) => Err(go_json_syntax_error(body).unwrap_or_else(|| e.to_string())),
    }
}

/// `POST /store/{id}/label[?force=true]`: merges the labels, or replaces them all with `force`.
async fn store_label(
    State(ctx): State<MemberCtx>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(msg) => return input_error(&msg),
    };
    let input = match object_body(&body) {
        Ok(v) => v,
        Err(msg) => return input_error(&msg),
    };
    let mut labels = Vec::new();
    for (key, value) in &input {
        let Some(value) = value.as_str() else {
            return input_error(&format!("json: cannot unmarshal {} into Go value of type string", json_kind(value)));
        };
        labels.push(Label { key: key.clone(), value: value.to_string() });
    }
    let force = query_pairs(query.as_deref()).iter().any(|(k, v)| k == "force" && v == "true");
    let mut sim = ctx.lock();
    let Some(store) = sim.store_mut(id) else {
        return store_error(&StoreOpError::NotFound(id));
    };
    if force {
        store.labels = labels;
    } else {
        for label in labels {
            match store.labels.iter_mut().find(|l| l.key == label.key) {
                Some(existing) => existing.value = label.value,
                None => store.labels.push(label),
            }
        }
    }
    message(StatusCode::OK, "The store's label is updated.")
}

/// The JSON type name Go's decoder reports for a value of the wrong type.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// `POST /store/{id}/weight` with `{"leader":f,"region":f}`, both required and non-negative.
async fn store_weight(State(ctx): State<MemberCtx>, Path(id): Path<String>, body: Bytes) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(msg) => return input_error(&msg),
    };
    let input = match object_body(&body) {
        Ok(v) => v,
        Err(msg) => return input_error(&msg),
    };
    let mut weights = [0.0; 2];
    for (slot, name) in weights.iter_mut().zip(["leader", "region"]) {
        let Some(value) = input.get(name) else {
            return message(StatusCode::BAD_REQUEST, &format!("missing {name} weight"));
        };
        match value.as_f64() {
            Some(w) if w >= 0.0 => *slot = w,
            _ => return message(StatusCode::BAD_REQUEST, &format!("bad format {name} weight")),
        }
    }
    let mut sim = ctx.lock();
    let Some(store) = sim.store_mut(id) else {
        return message(StatusCode::INTERNAL_SERVER_ERROR, &StoreOpError::NotFound(id).to_string());
    };
    store.leader_weight = weights[0];
    store.region_weight = weights[1];
    message(StatusCode::OK, "The store's weight is updated.")
}

/// `POST /store/{id}/limit` with `{"rate":r[,"type":"add-peer"|"remove-peer"]}`; no type sets both.
async fn store_limit(State(ctx): State<MemberCtx>, Path(id): Path<String>, body: Bytes) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(msg) => return input_error(&msg),
    };
    let input = match object_body(&body) {
        Ok(v) => v,
        Err(msg) => return input_error(&msg),
    };
    let Some(rate) = input.get("rate") else {
        return message(StatusCode::BAD_REQUEST, "rate unset");
    };
    let Some(rate) = rate.as_f64().filter(|r| *r > 0.0) else {
        return message(StatusCode::BAD_REQUEST, "invalid rate which should be larger than 0");
    };
    let (add, remove) = match input.get("type").map(|t| t.as_str()) {
        None => (true, true),
        Some(Some("add-peer")) => (true, false),
        Some(Some("remove-peer")) => (false, true),
        Some(_) => return message(StatusCode::BAD_REQUEST, "unknown type"),
    };
    let mut sim = ctx.lock();
    let Some(store) = sim.store_mut(id) else {
        return message(StatusCode::INTERNAL_SERVER_ERROR, &StoreOpError::NotFound(id).to_string());
    };
    if add {
        store.add_peer_limit = rate;
    }
    if remove {
        store.remove_peer_limit = rate;
    }
    message(StatusCode::OK, "The store's limit is updated.")
}

#[derive(Serialize)]
struct StoreLimitView {
    #[serde(rename = "add-peer")]
    add_peer: GoFloat,
    #[serde(rename = "remove-peer")]
    remove_peer: GoFloat,
}

/// `GET /stores/limit`: `{"<id>":{"add-peer":r,"remove-peer":r}}` for every store not yet removed.
async fn stores_limit(State(ctx): State<MemberCtx>) -> Response {
    let sim = ctx.lock();
    let limits: std::collections::BTreeMap<String, StoreLimitView> = sim
        .stores
        .iter()
        .filter(|s| s.state != StoreState::Tombstone)
        .map(|s| {
            (
                s.id.to_string(),
                StoreLimitView { add_peer: GoFloat(s.add_peer_limit), remove_peer: GoFloat(s.remove_peer_limit) },
            )
        })
        .collect();
    json(StatusCode::OK, &limits)
}

async fn regions_count(State(ctx): State<MemberCtx>) -> Response {
    let sim = ctx.lock();
    json(StatusCode::OK, &RegionsView { count: sim.regions.len(), regions: None })
}

async fn region_by_id(State(ctx): State<MemberCtx>, Path(id): Path<String>) -> Response {
    // PD's region handler writes the strconv error as a JSON string, not the errcode form.
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(msg) => return message(StatusCode::BAD_REQUEST, &msg),
    };
    let sim = ctx.lock();
    match sim.region(id) {
        Some(region) => region_json(&RegionView::from(region)),
        None => missing_region(&sim, &id.to_string()),
    }
}

/// The missing-region reply for the configured PD version.
fn missing_region(sim: &Simulation, what: &str) -> Response {
    match sim.spec.missing_region_reply {
        MissingRegionReply::EmptyRegion => region_json(&RegionView::empty()),
        MissingRegionReply::NotFound => {
            message(StatusCode::NOT_FOUND, &format!("[PD:region:ErrRegionNotFound]region {what} not found"))
        }
    }
}

/// A key from a path or query: raw bytes, or hex with `format=hex` (Go's `hex.DecodeString` errors).
fn decode_key(text: &str, hex: bool) -> Result<Vec<u8>, String> {
    if hex { decode_hex(text) } else { Ok(text.as_bytes().to_vec()) }
}

fn regions_reply<'a>(regions: impl Iterator<Item = &'a Region>) -> Response {
    let list: Vec<&Region> = regions.collect();
    region_bytes(views::encode_regions(&list))
}

/// `GET /regions`: every region.
async fn regions_all(State(ctx): State<MemberCtx>) -> Response {
    let sim = ctx.lock();
    regions_reply(sim.regions.iter())
}

/// `GET /region/key/{key}[?format=hex]`: the region containing the key.
async fn region_by_key(State(ctx): State<MemberCtx>, Path(key): Path<String>, RawQuery(query): RawQuery) -> Response {
    let hex = query_pairs(query.as_deref()).iter().any(|(k, v)| k == "format" && v == "hex");
    let key = match decode_key(&key, hex) {
        Ok(k) => k,
        Err(msg) => return message(StatusCode::BAD_REQUEST, &msg),
    };
    let sim = ctx.lock();
    match sim.region_by_key(&key) {
        Some(region) => region_json(&RegionView::from(region)),
        None => missing_region(&sim, &crate::units::hex_upper(&key)),
    }
}

/// Default and maximum `limit` of region scans and top-N lists.
const DEFAULT_REGION_LIMIT: i64 = 16;
const MAX_REGION_LIMIT: i64 = 10240;

/// PD's `AdjustLimit`: `strconv.Atoi`, default 16, capped at 10240; zero or negative is kept (a scan
/// then has no limit and a top-N list is empty).
fn parse_limit(pairs: &[(String, String)]) -> Result<i64, Box<Response>> {
    match pairs.iter().find(|(k, _)| k == "limit") {
        None => Ok(DEFAULT_REGION_LIMIT),
        Some((_, v)) if v.is_empty() => Ok(DEFAULT_REGION_LIMIT),
        Some((_, v)) => parse_atoi(v)
            .map(|l| l.min(MAX_REGION_LIMIT))
            .map_err(|msg| Box::new(message(StatusCode::BAD_REQUEST, &msg))),
    }
}

/// Go's `strconv.Atoi` on 64-bit: the value or Go's error text.
fn parse_atoi(text: &str) -> Result<i64, String> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(atoi_error(text));
    }
    text.parse::<i64>().map_err(|_| format!("strconv.Atoi: parsing {}: value out of range", quote(text)))
}

fn atoi_error(text: &str) -> String {
    format!("strconv.Atoi: parsing {}: invalid syntax", quote(text))
}

/// `GET /regions/key?key=&end_key=&limit=[&format=hex]`: regions from `key` on, up to `end_key`.
async fn regions_scan(State(ctx): State<MemberCtx>, RawQuery(query): RawQuery) -> Response {
    let pairs = query_pairs(query.as_deref());
    let hex = pairs.iter().any(|(k, v)| k == "format" && v == "hex");
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("");
    let (start, end) = match (decode_key(get("key"), hex), decode_key(get("end_key"), hex)) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(msg), _) | (_, Err(msg)) => return message(StatusCode::BAD_REQUEST, &msg),
    };
    let limit = match parse_limit(&pairs) {
        Ok(l) => l,
        Err(resp) => return *resp,
    };
    let sim = ctx.lock();
    let first = sim.regions.partition_point(|r| !r.end_key.is_empty() && r.end_key.as_slice() <= start.as_slice());
    let list = sim
        .regions
        .iter_from(first)
        .take_while(|r| end.is_empty() || r.start_key.as_slice() < end.as_slice())
        .take(if limit <= 0 { usize::MAX } else { limit as usize });
    regions_reply(list)
}

/// `GET /regions/store/{id}[?type=leader|follower|learner|pending]`.
async fn regions_of_store(State(ctx): State<MemberCtx>, Path(id): Path<String>, RawQuery(query): RawQuery) -> Response {
    // PD parses this id with strconv.Atoi and answers errors as a JSON string.
    let id = match parse_atoi(&id) {
        Ok(id) => id as u64,
        Err(msg) => return message(StatusCode::BAD_REQUEST, &msg),
    };
    let kind = query_pairs(query.as_deref()).into_iter().find(|(k, _)| k == "type").map(|(_, v)| v);
    let sim = ctx.lock();
    let matches = |r: &&Region| {
        let Some(peer) = r.peers.iter().find(|p| p.store_id == id) else { return false };
        match kind.as_deref() {
            Some("leader") => r.leader == Some(peer.id),
            Some("follower") => r.leader != Some(peer.id) && peer.role == PeerRole::Voter,
            Some("learner") => peer.role == PeerRole::Learner,
            Some("pending") => r.pending_peers.iter().any(|p| p.id == peer.id),
            _ => true,
        }
    };
    regions_reply(sim.regions.iter().filter(matches))
}

/// Top-N lists: `GET /regions/{writeflow|readflow|writequery|readquery|size|keys}?limit=`.
///
/// The ranking reads the regions' facts (40 bytes each, see `regions.rs`) and keeps the best
/// `limit` in a bounded heap, so a million regions cost a pass over 40 MB and no region is read
/// until it is listed; ties go to the region first in key order.
async fn regions_top(State(ctx): State<MemberCtx>, Path(order): Path<String>, RawQuery(query): RawQuery) -> Response {
    let key: fn(&Facts) -> u64 = match order.as_str() {
        "writeflow" => Facts::written_bytes,
        "readflow" => Facts::read_bytes,
        // Query counts are not modelled separately; keys written and read (bytes over the
        // average key-value size, as heartbeats report them) stand in for them.
        "writequery" => |f| f.written_bytes() / crate::workload::AVG_KV_BYTES,
        "readquery" => |f| f.read_bytes() / crate::workload::AVG_KV_BYTES,
        "size" => Facts::size,
        "keys" => Facts::keys,
        _ => return http_error(StatusCode::NOT_FOUND, "404 page not found"),
    };
    let limit = match parse_limit(&query_pairs(query.as_deref())) {
        Ok(l) => l,
        Err(resp) => return *resp,
    };
    let sim = ctx.fresh();
    let limit = limit.max(0) as usize;
    let Some(ranked) = sim.regions.with_facts() else {
        return http_error(StatusCode::INTERNAL_SERVER_ERROR, "region facts are stale after a refresh");
    };
    // A min-heap of the best so far by (key, earlier position): its top is the one to beat.
    let mut best: BinaryHeap<Reverse<(u64, Reverse<usize>)>> = BinaryHeap::with_capacity(limit.min(1 << 16) + 1);
    if limit > 0 {
        for (pos, (facts, _)) in ranked.enumerate() {
            let rank = (key(facts), Reverse(pos));
            if best.len() < limit {
                best.push(Reverse(rank));
            } else if best.peek().is_some_and(|Reverse(worst)| rank > *worst) {
                best.pop();
                best.push(Reverse(rank));
            }
        }
    }
    let mut picked: Vec<(u64, Reverse<usize>)> = best.into_iter().map(|Reverse(rank)| rank).collect();
    picked.sort_by(|a, b| b.cmp(a));
    regions_reply(picked.into_iter().map(|(_, Reverse(pos))| &sim.regions[pos]))
}

async fn regions_check(State(ctx): State<MemberCtx>, Path(kind): Path<String>) -> Response {
    let sim = ctx.fresh();
    let Some(check) = crate::checks::Classifier::new(&sim, &kind) else {
        return http_error(StatusCode::NOT_FOUND, "404 page not found");
    };
    regions_reply(check.select(&sim))
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ConfigView<'a> {
    client_urls: &'a str,
    peer_urls: &'a str,
    advertise_client_urls: &'a str,
    advertise_peer_urls: &'a str,
    name: &'a str,
    data_dir: String,
    lease: u64,
    cluster_version: &'static str,
    schedule: &'a crate::config::ScheduleConfig,
    replication: &'a crate::config::ReplicationConfig,
    pd_server: &'a crate::config::PdServerConfig,
}

async fn config(State(ctx): State<MemberCtx>) -> Response {
    let sim = ctx.lock();
    let Some(member) = sim.members.get(ctx.member) else {
        return http_error(StatusCode::INTERNAL_SERVER_ERROR, "member missing");
    };
    let view = ConfigView {
        client_urls: &member.client_url,
        peer_urls: &member.peer_url,
        advertise_client_urls: &member.client_url,
        advertise_peer_urls: &member.peer_url,
        name: &member.name,
        data_dir: format!("/data/{}", member.name),
        lease: 5,
        cluster_version: "8.5.0",
        schedule: &sim.schedule,
        replication: &sim.replication,
        pd_server: &sim.pd_server,
    };
    json(StatusCode::OK, &view)
}

/// `POST /config`: `{"max-store-down-time":"1h"}` or `{"schedule.leader-schedule-limit":8}`.
async fn config_update(State(ctx): State<MemberCtx>, body: Bytes) -> Response {
    let input = match object_body(&body) {
        Ok(v) => v,
        Err(msg) => return input_error(&msg),
    };
    match ctx.lock().update_config(&input) {
        Ok(()) => message(StatusCode::OK, "The config is updated."),
        Err(e) => message(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

async fn hot_write(State(ctx): State<MemberCtx>) -> Response {
    let sim = ctx.fresh();
    json(StatusCode::OK, &sim.hot_regions(crate::workload::Flow::Write))
}

async fn hot_read(State(ctx): State<MemberCtx>) -> Response {
    let sim = ctx.fresh();
    json(StatusCode::OK, &sim.hot_regions(crate::workload::Flow::Read))
}

async fn hot_stores(State(ctx): State<MemberCtx>) -> Response {
    let sim = ctx.fresh();
    json(StatusCode::OK, &sim.hot_stores())
}

async fn config_replicate(State(ctx): State<MemberCtx>) -> Response {
    let sim = ctx.lock();
    json(StatusCode::OK, &sim.replication)
}

async fn schedulers_list(State(ctx): State<MemberCtx>) -> Response {
    let sim = ctx.lock();
    let names: Vec<&str> = sim.schedulers.iter().map(|s| s.name.as_str()).collect();
    json(StatusCode::OK, &names)
}

/// Schedulers that take no arguments and may be added by name.
const PLAIN_SCHEDULERS: [&str; 9] = [
    "balance-leader-scheduler",
    "balance-region-scheduler",
    "balance-hot-region-scheduler",
    "evict-slow-store-scheduler",
    "evict-slow-trend-scheduler",
    "shuffle-leader-scheduler",
    "shuffle-region-scheduler",
    "random-merge-scheduler",
    "label-scheduler",
];

/// `POST /schedulers`: evict-leader and grant-leader take a store and accumulate stores.
async fn schedulers_add(State(ctx): State<MemberCtx>, body: Bytes) -> Response {
    let input = match object_body(&body) {
        Ok(v) => v,
        Err(msg) => return input_error(&msg),
    };
    let Some(name) = input.get("name").and_then(|v| v.as_str()) else {
        return message(StatusCode::BAD_REQUEST, "missing scheduler name");
    };
    let mut sim = ctx.lock();
    if name == "evict-leader-scheduler" || name == "grant-leader-scheduler" {
        let Some(store_id) = input.get("store_id").and_then(|v| v.as_f64()) else {
            return message(StatusCode::BAD_REQUEST, "missing store id");
        };
        let store_id = store_id as u64;
        if sim.store(store_id).is_none() {
            return message(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("[PD:core:ErrStoreNotFound]store {store_id} not found"),
            );
        }
        if let Some(existing) = sim.schedulers.iter_mut().find(|s| s.name == name) {
            if !existing.store_ids.contains(&store_id) {
                existing.store_ids.push(store_id);
            }
            sim.wake_patrol();
            return message(StatusCode::OK, "The scheduler has been applied to the store.");
        }
        sim.schedulers.push(Scheduler { name: name.into(), store_ids: vec![store_id], paused_until_ms: None });
        sim.wake_patrol();
        return message(StatusCode::OK, "The scheduler is created.");
    }
    if !PLAIN_SCHEDULERS.contains(&name) {
        return message(StatusCode::BAD_REQUEST, "unknown scheduler");
    }
    if sim.schedulers.iter().any(|s| s.name == name) {
        return message(StatusCode::BAD_REQUEST, "[PD:scheduler:ErrSchedulerExisted]scheduler existed");
    }
    sim.schedulers.push(Scheduler { name: name.into(), store_ids: vec![], paused_until_ms: None });
    sim.wake_patrol();
    message(StatusCode::OK, "The scheduler is created.")
}

/// `DELETE /schedulers/{name}`; `evict-leader-scheduler-{id}` removes one store from the scheduler.
async fn schedulers_remove(State(ctx): State<MemberCtx>, Path(name): Path<String>) -> Response {
    let not_found = || message(StatusCode::NOT_FOUND, "[PD:scheduler:ErrSchedulerNotFound]scheduler not found");
    let mut sim = ctx.lock();
    for base in ["evict-leader-scheduler", "grant-leader-scheduler"] {
        let Some(suffix) = name.strip_prefix(base).and_then(|s| s.strip_prefix('-')) else { continue };
        let Ok(store_id) = suffix.parse::<u64>() else { return not_found() };
        let Some(pos) = sim.schedulers.iter().position(|s| s.name == base) else { return not_found() };
        let sched = &mut sim.schedulers[pos];
        let Some(i) = sched.store_ids.iter().position(|&s| s == store_id) else { return not_found() };
        sched.store_ids.remove(i);
        if sched.store_ids.is_empty() {
            sim.schedulers.remove(pos);
        }
        return message(StatusCode::OK, "The scheduler is removed.");
    }
    match sim.schedulers.iter().position(|s| s.name == name) {
        Some(pos) => {
            sim.schedulers.remove(pos);
            message(StatusCode::OK, "The scheduler is removed.")
        }
        None => not_found(),
    }
}

/// `POST /schedulers/{name}` with `{"delay":seconds}`: pauses the scheduler; `0` resumes it.
async fn schedulers_pause(State(ctx): State<MemberCtx>, Path(name): Path<String>, body: Bytes) -> Response {
    let input = match object_body(&body) {
        Ok(v) => v,
        Err(msg) => return input_error(&msg),
    };
    let Some(delay) = input.get("delay") else {
        return message(StatusCode::BAD_REQUEST, "missing pause time");
    };
    let Some(delay) = delay.as_i64() else {
        return input_error(&format!("json: cannot unmarshal {} into Go value of type int64", json_kind(delay)));
    };
    if ctx.lock().pause_scheduler(&name, delay.max(0) as u64) {
        message(StatusCode::OK, "Pause or resume the scheduler successfully.")
    } else {
        message(StatusCode::INTERNAL_SERVER_ERROR, "[PD:scheduler:ErrSchedulerNotFound]scheduler not found")
    }
}

#[derive(Serialize)]
struct KeyRange {
    #[serde(rename = "start-key")]
    start_key: &'static str,
    #[serde(rename = "end-key")]
    end_key: &'static str,
}

#[derive(Serialize)]
struct EvictLeaderConfig {
    #[serde(rename = "store-id-ranges")]
    store_id_ranges: std::collections::BTreeMap<String, Vec<KeyRange>>,
    batch: u64,
}

/// `GET /scheduler-config/evict-leader-scheduler/list`: the evicted stores, each over the whole key space.
async fn evict_leader_config(State(ctx): State<MemberCtx>) -> Response {
    let sim = ctx.lock();
    let Some(sched) = sim.schedulers.iter().find(|s| s.name == crate::scheduler::EVICT_LEADER) else {
        return message(StatusCode::NOT_FOUND, "[PD:scheduler:ErrSchedulerNotFound]scheduler not found");
    };
    let store_id_ranges =
        sched.store_ids.iter().map(|id| (id.to_string(), vec![KeyRange { start_key: "", end_key: "" }])).collect();
    json(StatusCode::OK, &EvictLeaderConfig { store_id_ranges, batch: 3 })
}

/// `GET /operators[?kind=…]`: operator descriptions as strings; `[]` when empty. With `kind`, PD
/// appends the operators of each kind in turn (`admin`, `leader`, `region`, `waiting`; others are
/// ignored), so an operator of two listed kinds appears twice, and an empty result is `null`.
async fn operators(State(ctx): State<MemberCtx>, RawQuery(query): RawQuery) -> Response {
    let kinds: Vec<String> =
        query_pairs(query.as_deref()).into_iter().filter(|(k, _)| k == "kind").map(|(_, v)| v).collect();
    let sim = ctx.lock();
    if kinds.is_empty() {
        let list: Vec<String> = sim.operators.iter().map(|op| op.describe(&sim)).collect();
        return json(StatusCode::OK, &list);
    }
    let mut list: Vec<String> = Vec::new();
    for kind in &kinds {
        // The simulator queues no operator, so `waiting` is always empty.
        if matches!(kind.as_str(), "admin" | "leader" | "region") {
            list.extend(sim.operators.iter().filter(|op| op.has_kind(kind)).map(|op| op.describe(&sim)));
        }
    }
    if list.is_empty() {
        return json(StatusCode::OK, &serde_json::Value::Null);
    }
    json(StatusCode::OK, &list)
}

/// A JSON number field as PD reads it (`input[key].(float64)`).
fn number_field(input: &serde_json::Map<String, serde_json::Value>, key: &str) -> Option<u64> {
    input.get(key).and_then(|v| v.as_f64()).map(|v| v as u64)
}

/// `POST /operators`: admin operators (`server/api/operator.go`, `HandleOperatorCreation`), with PD's
/// error texts: `400` for malformed requests, `500` when the operator cannot be created.
async fn operators_add(State(ctx): State<MemberCtx>, body: Bytes) -> Response {
    let input = match object_body(&body) {
        Ok(v) => v,
        Err(msg) => return input_error(&msg),
    };
    let bad = |text: &str| message(StatusCode::BAD_REQUEST, text);
    let Some(name) = input.get("name").and_then(|v| v.as_str()) else {
        return bad("missing operator name");
    };
    let number = |key: &str| number_field(&input, key);
    let mut sim = ctx.lock();
    let result = match name {
        "transfer-leader" => {
            let Some(region_id) = number("region_id") else { return bad("missing region id") };
            let Some(to) = number("to_store_id") else { return bad("missing store id to transfer leader to") };
            sim.admin_transfer_leader(region_id, to)
        }
        "transfer-region" => {
            let Some(region_id) = number("region_id") else { return bad("missing region id") };
            let Some(ids) = input.get("to_store_ids").and_then(|v| v.as_array()) else {
                return bad("invalid store ids to transfer region to");
            };
            let Some(ids) = ids.iter().map(|v| v.as_f64().map(|f| f as u64)).collect::<Option<Vec<u64>>>() else {
                return bad("invalid store ids to transfer region to");
            };
            if ids.is_empty() {
                return bad("missing store ids to transfer region to");
            }
            // Roles count only when there is one per store, as in PD's parseStoreIDsAndPeerRole.
            let roles: Vec<String> = match input.get("peer_roles").and_then(|v| v.as_array()) {
                Some(r) if r.len() == ids.len() => r.iter().map(|v| v.as_str().unwrap_or("").to_string()).collect(),
                _ => vec![String::new(); ids.len()],
            };
            let mut stores: Vec<(u64, String)> = Vec::new();
            for (id, role) in ids.into_iter().zip(roles) {
                // A repeated store keeps its last role, as PD's map does.
                match stores.iter_mut().find(|(s, _)| *s == id) {
                    Some(entry) => entry.1 = role,
                    None => stores.push((id, role)),
                }
            }
            sim.admin_transfer_region(region_id, &stores)
        }
        "transfer-peer" => {
            let Some(region_id) = number("region_id") else { return bad("missing region id") };
            let Some(from) = number("from_store_id") else { return bad("invalid store id to transfer peer from") };
            let Some(to) = number("to_store_id") else { return bad("invalid store id to transfer peer to") };
            sim.admin_transfer_peer(region_id, from, to)
        }
        "add-peer" | "add-learner" => {
            let Some(region_id) = number("region_id") else { return bad("missing region id") };
            let Some(store) = number("store_id") else { return bad("invalid store id to transfer peer to") };
            sim.admin_add_peer(region_id, store, name == "add-learner")
        }
        "remove-peer" => {
            let Some(region_id) = number("region_id") else { return bad("missing region id") };
            let Some(store) = number("store_id") else { return bad("invalid store id to transfer peer to") };
            sim.admin_remove_peer(region_id, store)
        }
        "merge-region" => {
            let Some(source) = number("source_region_id") else { return bad("missing region id") };
            let Some(target) = number("target_region_id") else { return bad("invalid target region id to merge to") };
            sim.admin_merge_region(source, target)
        }
        "split-region" => {
            let Some(region_id) = number("region_id") else { return bad("missing region id") };
            let Some(policy) = input.get("policy").and_then(|v| v.as_str()) else {
                return bad("missing split policy");
            };
            let mut keys = Vec::new();
            if let Some(list) = input.get("keys") {
                let Some(list) = list.as_array() else { return bad("bad format keys") };
                for key in list {
                    let Some(key) = key.as_str() else { return bad("bad format keys") };
                    keys.push(key.to_string());
                }
            }
            sim.admin_split_region(region_id, policy, &keys)
        }
        "scatter-region" => {
            let Some(region_id) = number("region_id") else { return bad("missing region id") };
            sim.admin_scatter_region(region_id)
        }
        "scatter-regions" => {
            let start = input.get("start_key").and_then(|v| v.as_str()).unwrap_or("");
            let end = input.get("end_key").and_then(|v| v.as_str()).unwrap_or("");
            let Some(ids) = uint64_slice(input.get("region_ids")) else { return bad("region_ids is invalid") };
            let (percentage, error) = if !start.is_empty() && !end.is_empty() {
                match (decode_hex(start), decode_hex(end)) {
                    (Ok(s), Ok(e)) => {
                        let ids = sim.region_ids_in_range(&s, &e);
                        (scatter_percentage(sim.scatter_regions(&ids)), String::new())
                    }
                    (Err(msg), _) | (_, Err(msg)) => (0, msg),
                }
            } else {
                (scatter_percentage(sim.scatter_regions(&ids)), String::new())
            };
            return json(StatusCode::OK, &ScatterOpView { processed_percentage: percentage, error });
        }
        _ => return bad("unknown operator"),
    };
    match result {
        Ok(()) => message(StatusCode::OK, "The operator is created."),
        Err(e) => message(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[derive(Serialize)]
struct ScatterOpView {
    #[serde(rename = "processed-percentage")]
    processed_percentage: u64,
    error: String,
}

/// PD's `typeutil.JSONToUint64Slice`: an array of JSON numbers.
fn uint64_slice(value: Option<&serde_json::Value>) -> Option<Vec<u64>> {
    value?.as_array()?.iter().map(|v| v.as_f64().map(|f| f as u64)).collect()
}

/// PD's processed percentage: `100 - 100*failures/(ops+failures)`.
fn scatter_percentage((ops, failures): (usize, usize)) -> u64 {
    if failures == 0 { 100 } else { (100 - 100 * failures / (ops + failures)) as u64 }
}

#[derive(Serialize)]
struct ScatterView {
    #[serde(rename = "processed-percentage")]
    processed_percentage: u64,
}

/// `POST /regions/scatter`: `{"regions_id":[…]}` or `{"start_key":hex,"end_key":hex}`.
async fn regions_scatter(State(ctx): State<MemberCtx>, body: Bytes) -> Response {
    let input = match object_body(&body) {
        Ok(v) => v,
        Err(msg) => return input_error(&msg),
    };
    let start = input.get("start_key").and_then(|v| v.as_str());
    let end = input.get("end_key").and_then(|v| v.as_str());
    let mut sim = ctx.lock();
    let ids = match (start, end) {
        (Some(start), Some(end)) => {
            let (s, e) = match (decode_hex(start), decode_hex(end)) {
                (Ok(s), Ok(e)) => (s, e),
                (Err(msg), _) | (_, Err(msg)) => return message(StatusCode::INTERNAL_SERVER_ERROR, &msg),
            };
            let ids = sim.region_ids_in_range(&s, &e);
            if ids.is_empty() {
                return message(StatusCode::INTERNAL_SERVER_ERROR, "empty region");
            }
            ids
        }
        _ => match uint64_slice(input.get("regions_id")) {
            Some(ids) => ids,
            None => return message(StatusCode::INTERNAL_SERVER_ERROR, "regions_id is invalid"),
        },
    };
    let outcome = sim.scatter_regions(&ids);
    json(StatusCode::OK, &ScatterView { processed_percentage: scatter_percentage(outcome) })
}

#[derive(Serialize)]
struct SplitView {
    #[serde(rename = "processed-percentage")]
    processed_percentage: u64,
    #[serde(rename = "regions-id")]
    regions_id: Option<Vec<u64>>,
}

/// `POST /regions/split`: `{"split_keys":[hex…],"retry_limit":5}`; splits at once.
async fn regions_split(State(ctx): State<MemberCtx>, body: Bytes) -> Response {
    let input = match object_body(&body) {
        Ok(v) => v,
        Err(msg) => return input_error(&msg),
    };
    let Some(raw) = input.get("split_keys") else {
        return message(StatusCode::BAD_REQUEST, "split_keys should be provided.");
    };
    // PD type-asserts the list and its items; anything else is a request it cannot read.
    let Some(raw) = raw.as_array() else {
        return message(StatusCode::BAD_REQUEST, "split_keys should be provided.");
    };
    if raw.is_empty() {
        return message(StatusCode::BAD_REQUEST, "empty split keys.");
    }
    let mut keys = Vec::with_capacity(raw.len());
    for key in raw {
        let Some(text) = key.as_str() else {
            return message(StatusCode::BAD_REQUEST, "split_keys should be provided.");
        };
        match decode_hex(text) {
            Ok(k) => keys.push(k),
            Err(msg) => return message(StatusCode::INTERNAL_SERVER_ERROR, &msg),
        }
    }
    let (percentage, ids) = ctx.lock().split_at_keys(&keys);
    // Go marshals an empty slice it never appended to as null.
    let regions_id = (!ids.is_empty()).then_some(ids);
    json(StatusCode::OK, &SplitView { processed_percentage: percentage, regions_id })
}

/// Go's `time.Time.String()` for a UTC time: `2026-05-28 20:26:40.5 +0000 UTC`.
fn go_time(unix_ns: u128) -> String {
    let rfc = format_rfc3339_ns(unix_ns);
    let trimmed = rfc.trim_end_matches('Z').replacen('T', " ", 1);
    format!("{trimmed} +0000 UTC")
}

/// `GET /operators/records?from=<unix seconds>`: operators finished since then, PD's `OpRecord`
/// strings; none is `500 operator not found`.
async fn operator_records(State(ctx): State<MemberCtx>, RawQuery(query): RawQuery) -> Response {
    let mut from_secs: i64 = i64::MIN;
    if let Some((_, v)) = query_pairs(query.as_deref()).into_iter().find(|(k, _)| k == "from") {
        match v.parse::<i64>() {
            Ok(n) if !v.starts_with('+') => from_secs = n,
            _ => {
                let digits = v.strip_prefix('-').unwrap_or(&v);
                let reason = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    "value out of range"
                } else {
                    "invalid syntax"
                };
                return message(StatusCode::BAD_REQUEST, &format!("strconv.ParseInt: parsing {}: {reason}", quote(&v)));
            }
        }
    }
    let sim = ctx.lock();
    let mut finished: Vec<&crate::operator::Operator> = sim
        .finished_operators
        .iter()
        .filter(|op| {
            let at = op.finished_at_ms.unwrap_or(0);
            ((sim.start_unix_ms + at) / 1000) as i64 >= from_secs
        })
        .collect();
    if finished.is_empty() {
        return message(StatusCode::INTERNAL_SERVER_ERROR, OPERATOR_NOT_FOUND);
    }
    finished.sort_by_key(|op| op.finished_at_ms);
    let list: Vec<String> = finished
        .iter()
        .map(|op| {
            let at = op.finished_at_ms.unwrap_or(0);
            format!(
                "{} (finishAt:{}, duration:{})",
                op.describe(&sim),
                go_time(sim.unix_ns(at)),
                format_duration_ms(at.saturating_sub(op.created_at_ms))
            )
        })
        .collect();
    json(StatusCode::OK, &list)
}

/// A float as Go's `encoding/json` writes it: exponent form below 1e-6 and from 1e21.
fn go_float(v: f64) -> String {
    let abs = v.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let sci = format!("{v:e}");
        let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        return if exp < 0 { format!("{mantissa}e-{}", -exp) } else { format!("{mantissa}e+{exp:02}") };
    }
    format!("{v}")
}

/// `GET /stores/progress?id=N` (or `?action=removing`): `{"action","store_id","progress",
/// "current_speed","left_seconds"}`, written by hand because a standing-still removal reports
/// `left_seconds` as Go's `math.MaxFloat64`, which only Go's float format spells `1.7976931348623157e+308`.
async fn stores_progress(State(ctx): State<MemberCtx>, RawQuery(query): RawQuery) -> Response {
    let pairs = query_pairs(query.as_deref());
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    let render = |store_id: Option<u64>, p: crate::stats::StoreProgress| {
        let mut body = format!("{{\n  \"action\": {},\n", quote(p.action));
        if let Some(id) = store_id {
            body.push_str(&format!("  \"store_id\": {id},\n"));
        }
        body.push_str(&format!(
            "  \"progress\": {},\n  \"current_speed\": {},\n  \"left_seconds\": {}\n}}\n",
            go_float(p.progress),
            go_float(p.current_speed),
            go_float(p.left_seconds)
        ));
        let mut resp = (StatusCode::OK, body).into_response();
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static(super::render::JSON_CONTENT_TYPE),
        );
        resp
    };
    if let Some(id) = get("id") {
        let id = match parse_id(&id) {
            Ok(id) => id,
            Err(msg) => return input_error(&msg),
        };
        return match ctx.lock().store_progress(id) {
            Some(p) => render(Some(id), p),
            None => message(
                StatusCode::NOT_FOUND,
                &format!("[PD:cluster:ErrProgressNotFound]no progress found for the given store ID: {id}"),
            ),
        };
    }
    if let Some(action) = get("action") {
        return match ctx.lock().action_progress(&action) {
            Some(p) => render(None, p),
            None => message(
                StatusCode::NOT_FOUND,
                &format!("[PD:cluster:ErrProgressNotFound]no progress found for the action: {action}"),
            ),
        };
    }
    message(StatusCode::BAD_REQUEST, "need query parameters")
}

/// `DELETE /operators`: cancels every running operator.
async fn operators_cancel_all(State(ctx): State<MemberCtx>) -> Response {
    ctx.lock().cancel_all_operators();
    message(StatusCode::OK, "All pending operators are canceled.")
}

const OPERATOR_NOT_FOUND: &str = "[PD:operator:ErrOperatorNotFound]operator not found";

/// `GET /operators/{region_id}`: the running operator, or one finished in the last 10 minutes.
async fn operator_get(State(ctx): State<MemberCtx>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        // PD's operator handler writes the strconv error as a JSON string.
        Err(msg) => return message(StatusCode::BAD_REQUEST, &msg),
    };
    let sim = ctx.lock();
    match sim.operator_status(id) {
        Some(op) => message(StatusCode::OK, &format!("status: {}, operator: {}", op.status.name(), op.describe(&sim))),
        None => message(StatusCode::INTERNAL_SERVER_ERROR, OPERATOR_NOT_FOUND),
    }
}

/// `DELETE /operators/{region_id}`: cancels the region's running operator.
async fn operator_cancel(State(ctx): State<MemberCtx>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        // PD's operator handler writes the strconv error as a JSON string.
        Err(msg) => return message(StatusCode::BAD_REQUEST, &msg),
    };
    if ctx.lock().cancel_operator(id) {
        message(StatusCode::OK, "The pending operator is canceled.")
    } else {
        message(StatusCode::INTERNAL_SERVER_ERROR, OPERATOR_NOT_FOUND)
    }
}

#[derive(Serialize)]
struct EtcdHealth {
    health: &'static str,
    reason: &'static str,
}

/// etcd's `/health`: healthy while the cluster has a Raft leader (PD's leader is the etcd leader here).
async fn etcd_health(State(ctx): State<MemberCtx>) -> Response {
    let has_leader = ctx.lock().pd_leader.is_some();
    let (status, view) = if has_leader {
        (StatusCode::OK, EtcdHealth { health: "true", reason: "" })
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, EtcdHealth { health: "false", reason: "RAFT NO LEADER" })
    };
    let body = serde_json::to_vec(&view).unwrap_or_default();
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[derive(Serialize)]
struct EtcdVersion {
    etcdserver: &'static str,
    etcdcluster: &'static str,
}

async fn etcd_version() -> Response {
    let body = serde_json::to_vec(&EtcdVersion { etcdserver: "3.5.15", etcdcluster: "3.5.0" }).unwrap_or_default();
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// PD's Prometheus metrics; the cluster collectors run on the leader only, as in PD.
async fn metrics(State(ctx): State<MemberCtx>) -> Response {
    let sim = ctx.fresh();
    let text = crate::api::metrics::pd_metrics(&sim, sim.pd_leader == Some(ctx.member));
    ([(axum::http::header::CONTENT_TYPE, crate::api::metrics::CONTENT_TYPE)], text).into_response()
}
