//! `observe()`: one snapshot of the cluster from PD (and the stores' status ports and Prometheus
//! when granted). Every request that fails is named in `errors` and makes the observation
//! partial; a partial observation never reads as healthy.

use std::collections::BTreeMap;

use crate::operator::plugin::http::{Method, Target};
use crate::pd::{self, PdError};
use crate::settings::Settings;
use crate::snapshot::{
    Flow, HotView, Probe, REGION_CHECKS, Snapshot, config_from_wire, hot_regions_from_wire, operator_from_text,
    region_check_from_wire, store_rates_from_wire, stores_from_wire,
};
use crate::wire;

/// Regions read from each top-flow list: the hottest and enough cooler ones to tell the
/// background flow.
pub const HOT_KEPT: usize = 20;

/// The result of one observation: the snapshot and what could not be observed.
pub struct Observed {
    /// What was seen.
    pub snapshot: Snapshot,
    /// One line per failed request.
    pub errors: Vec<String>,
    /// Requests that succeeded.
    pub succeeded: usize,
}

/// Collects failures while observing.
struct Collector {
    errors: Vec<String>,
    succeeded: usize,
    denied: Vec<String>,
    no_leader: bool,
}

impl Collector {
    fn take<T>(&mut self, result: Result<T, PdError>) -> Option<T> {
        match result {
            Ok(value) => {
                self.succeeded += 1;
                Some(value)
            }
            Err(error) => {
                if error.is_denied() {
                    self.denied.push(error.to_string());
                }
                if error.is_no_leader() {
                    self.no_leader = true;
                }
                self.errors.push(error.to_string());
                None
            }
        }
    }
}

/// Observes the cluster.
pub fn observe(settings: &Settings) -> Result<Observed, String> {
    let mut c = Collector { errors: Vec::new(), succeeded: 0, denied: Vec::new(), no_leader: false };
    let mut snap = Snapshot::default();

    if let Some(members) = c.take(pd::get::<wire::MembersReply>("/pd/api/v1/members")) {
        snap.pd.leader = members.leader.map(|l| l.name).filter(|n| !n.is_empty());
        if snap.pd.leader.is_none() {
            snap.pd.no_leader = true;
        }
    }
    if let Some(health) = c.take(pd::get::<Vec<wire::MemberHealth>>("/pd/api/v1/health")) {
        snap.pd.members = health
            .into_iter()
            .map(|m| crate::snapshot::PdMember {
                name: m.name,
                client_urls: m.client_urls.unwrap_or_default(),
                healthy: m.health,
            })
            .collect();
    }
    let stores = c.take(pd::get::<wire::StoresReply>("/pd/api/v1/stores"));
    if let Some(reply) = stores {
        match stores_from_wire(reply) {
            Ok(stores) => snap.stores = stores,
            Err(e) => c.errors.push(format!("GET /pd/api/v1/stores: {e}")),
        }
    }
    snap.cluster_now_ms = snap.stores.iter().map(|s| s.last_heartbeat_ms).filter(|&t| t > 0).max();

    for kind in REGION_CHECKS {
        let path = format!("/pd/api/v1/regions/check/{kind}");
        if let Some(reply) = c.take(pd::get::<wire::RegionsReply>(&path)) {
            snap.region_checks.insert(kind.to_owned(), region_check_from_wire(kind, reply, settings.regions_kept));
        }
    }
    let store_rates = c.take(pd::get::<wire::HotStoresReply>("/pd/api/v1/hotspot/stores"));
    for flow in [Flow::Write, Flow::Read] {
        let path = format!("/pd/api/v1/regions/{}?limit={HOT_KEPT}", flow.top_path());
        let Some(reply) = c.take(pd::get::<wire::RegionsReply>(&path)) else { continue };
        let mut view = HotView {
            top: hot_regions_from_wire(&reply, flow, settings.region_heartbeat_secs, HOT_KEPT),
            ..HotView::default()
        };
        if let Some(rates) = &store_rates {
            match store_rates_from_wire(rates, flow) {
                Ok(rates) => view.store_bytes = rates,
                Err(e) => c.errors.push(format!("GET /pd/api/v1/hotspot/stores: {e}")),
            }
        }
        match flow {
            Flow::Write => snap.hot_write = view,
            Flow::Read => snap.hot_read = view,
        }
    }
    if let Some(list) = c.take(pd::get::<Option<Vec<String>>>("/pd/api/v1/operators")) {
        let list = list.unwrap_or_default();
        snap.operators = list.iter().filter_map(|text| operator_from_text(text)).collect();
        if snap.operators.len() < list.len() {
            c.errors.push(format!(
                "GET /pd/api/v1/operators: {} of {} operators name no region",
                list.len() - snap.operators.len(),
                list.len()
            ));
        }
    }
    if let Some(names) = c.take(pd::get::<Option<Vec<String>>>("/pd/api/v1/schedulers")) {
        snap.schedulers = names.unwrap_or_default();
        snap.schedulers.sort();
    }
    if snap.schedulers.iter().any(|s| s == "evict-leader-scheduler") {
        let path = "/pd/api/v1/scheduler-config/evict-leader-scheduler/list";
        if let Some(config) = c.take(pd::get::<wire::EvictLeaderConfig>(path)) {
            snap.evict_leader_stores = config.store_id_ranges.keys().filter_map(|k| k.parse().ok()).collect();
            snap.evict_leader_stores.sort_unstable();
        }
    }
    if let Some(config) = c.take(pd::get::<wire::ConfigReply>("/pd/api/v1/config")) {
        match config_from_wire(config) {
            Ok(config) => snap.config = config,
            Err(e) => c.errors.push(format!("GET /pd/api/v1/config: {e}")),
        }
    }

    if settings.status_probes {
        probe_stores(&mut snap);
    }
    // Prometheus is optional: only asked when the operator granted the endpoint.
    if crate::operator::plugin::config::granted_endpoints().iter().any(|e| e == "prometheus") {
        observe_metrics(&mut snap, &mut c);
    }

    snap.pd.no_leader |= c.no_leader;
    if c.succeeded == 0 && !c.denied.is_empty() {
        return Err(format!("every request to PD was refused by the capability gate: {}", c.denied.join("; ")));
    }
    Ok(Observed { snapshot: snap, errors: c.errors, succeeded: c.succeeded })
}

/// Probes each store's status port (`GET /status`). A refused grant turns probing off for this
/// observation: without the grant there is nothing to report. A probe that fails is a finding
/// about the store, not a gap in the observation.
fn probe_stores(snap: &mut Snapshot) {
    let targets: Vec<(u64, String)> = snap
        .stores
        .iter()
        .filter(|s| !s.status_address.is_empty() && s.state_name != "Tombstone")
        .map(|s| (s.id, s.status_address.clone()))
        .collect();
    snap.probes_granted = true;
    for (id, address) in targets {
        let origin = format!("http://{address}");
        match pd::send(Target::Origin(origin), Method::Get, "/status", None) {
            Ok(_) => {
                snap.probes.insert(id, Probe { reachable: true, error: None });
            }
            Err(e) if e.is_denied() => {
                snap.probes_granted = false;
                snap.probes.clear();
                return;
            }
            Err(e) => {
                snap.probes.insert(id, Probe { reachable: false, error: Some(e.to_string()) });
            }
        }
    }
}

/// The PromQL queries for store metrics, by figure.
const QUERIES: [(&str, &str); 3] = [
    ("p99", "histogram_quantile(0.99, sum by (instance, le) (rate(tikv_grpc_msg_duration_seconds_bucket[1m])))"),
    ("rate", "sum by (instance) (rate(tikv_grpc_msg_duration_seconds_count[1m]))"),
    ("busy", "sum by (instance) (rate(tikv_scheduler_too_busy_total[1m]))"),
];

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads per-store metrics from the `prometheus` endpoint, matching `instance` to status addresses.
fn observe_metrics(snap: &mut Snapshot, c: &mut Collector) {
    let by_address: BTreeMap<String, u64> = snap.stores.iter().map(|s| (s.status_address.clone(), s.id)).collect();
    snap.metrics_granted = true;
    for (figure, query) in QUERIES {
        let path = format!("/api/v1/query?query={}", encode(query));
        let result = pd::send(Target::Endpoint("prometheus".into()), Method::Get, &path, None)
            .and_then(|reply| pd::decode::<wire::PromReply>(&format!("prometheus {figure} query"), &reply.body));
        let reply = match result {
            Ok(reply) => reply,
            Err(e) if e.is_denied() => {
                snap.metrics_granted = false;
                snap.metrics.clear();
                return;
            }
            Err(e) => {
                c.errors.push(e.to_string());
                continue;
            }
        };
        if reply.status != "success" {
            c.errors.push(format!("prometheus {figure} query failed: {}", reply.error.unwrap_or_default()));
            continue;
        }
        for sample in reply.data.map(|d| d.result).unwrap_or_default() {
            let Some(instance) = sample.metric.get("instance") else { continue };
            let Some(&store) = by_address.get(instance) else { continue };
            let Ok(value) = sample.value.1.parse::<f64>() else { continue };
            if !value.is_finite() {
                continue;
            }
            let metrics = snap.metrics.entry(store).or_default();
            match figure {
                "p99" => metrics.p99_ms = Some(value * 1000.0),
                "rate" => metrics.requests_per_sec = Some(value),
                _ => metrics.busy_per_sec = Some(value),
            }
        }
    }
}
