//! `query()`: read-only questions an investigator may ask while diagnosing. Every answer is JSON
//! text, cut to a bounded size (the host cuts again before handing it to a model).

use serde_json::{Value, json};

use crate::operator::plugin::http::{Method, Target};
use crate::operator::plugin::types::{Param, QuerySpec};
use crate::params::{choice, get_id, get_int, get_text, id, integer};
use crate::pd;
use crate::snapshot::{
    Flow, HotView, REGION_CHECKS, RegionBrief, hot_regions_from_wire, operator_from_text, store_rates_from_wire,
};
use crate::wire;

/// Regions listed in one answer at most.
const MAX_REGIONS: i64 = 200;

/// The queries offered.
pub fn specs() -> Vec<QuerySpec> {
    let q = |name: &str, description: &str, params| QuerySpec {
        name: name.into(),
        description: description.into(),
        params,
    };
    vec![
        q("region", "One region: peers, leader, down and pending peers, size, flow", vec![id("id", "Region id")]),
        q(
            "regions-of-store",
            "Regions with a peer on a store (or only those it leads, follows, or where its peer is pending)",
            vec![
                id("store", "Store id"),
                choice("type", "Which peers", &["all", "leader", "follower", "learner", "pending"], Some("all")),
                integer("limit", "Regions listed at most", 1, MAX_REGIONS, Some(50)),
            ],
        ),
        q(
            "region-check",
            "Abnormal regions of one class",
            vec![
                choice("kind", "The class", &REGION_CHECKS, None),
                integer("limit", "Regions listed at most", 1, MAX_REGIONS, Some(50)),
            ],
        ),
        q(
            "hotspots",
            "The hottest regions of a flow (bytes/s, leader and peer stores) and every store's rate of it",
            vec![choice("flow", "Which flow", &["write", "read"], None)],
        ),
        q("operators", "The operators PD runs", vec![]),
        q("schedulers", "PD's schedulers and the stores under evict-leader-scheduler", vec![]),
        q("store", "One store as PD reports it", vec![id("id", "Store id")]),
        q("config", "PD's schedule and replication configuration", vec![]),
        q(
            "store-metrics",
            "A store's recent gRPC p99 latency, request rate and busy errors from Prometheus",
            vec![id("store", "Store id"), integer("minutes", "How far back", 1, 60, Some(10))],
        ),
    ]
}

fn brief_list(reply: wire::RegionsReply, limit: usize) -> Value {
    let regions = reply.regions.unwrap_or_default();
    let count = reply.count.max(regions.len() as u64);
    let listed: Vec<RegionBrief> = regions.iter().take(limit).map(RegionBrief::from_wire).collect();
    json!({"count": count, "listed": listed.len(), "regions": listed})
}

fn pd_get<T: serde::de::DeserializeOwned>(path: &str) -> Result<T, String> {
    pd::get(path).map_err(|e| e.to_string())
}

/// Answers a query.
pub fn query(name: &str, params: &[Param]) -> Result<String, String> {
    let p = |e: crate::operator::plugin::types::ActionError| format!("{e:?}");
    let value = match name {
        "region" => {
            let id = get_id(params, "id").map_err(p)?;
            match crate::actions::fetch_region(id).map_err(|e| e.to_string())? {
                Some(r) => json!({
                    "region": RegionBrief::from_wire(&r),
                    "start_key": r.start_key, "end_key": r.end_key,
                    "epoch": {"conf_ver": r.epoch.conf_ver, "version": r.epoch.version},
                    "written_bytes": r.written_bytes, "read_bytes": r.read_bytes, "approximate_keys": r.approximate_keys,
                }),
                None => json!({"error": format!("region {id} not found")}),
            }
        }
        "regions-of-store" => {
            let store = get_id(params, "store").map_err(p)?;
            let kind = get_text(params, "type", Some("all")).map_err(p)?;
            let limit = get_int(params, "limit", Some(50)).map_err(p)?.clamp(1, MAX_REGIONS) as usize;
            let path = if kind == "all" {
                format!("/pd/api/v1/regions/store/{store}")
            } else {
                format!("/pd/api/v1/regions/store/{store}?type={kind}")
            };
            brief_list(pd_get(&path)?, limit)
        }
        "region-check" => {
            let kind = get_text(params, "kind", None).map_err(p)?;
            if !REGION_CHECKS.contains(&kind.as_str()) {
                return Err(format!("`kind` must be one of {REGION_CHECKS:?}"));
            }
            let limit = get_int(params, "limit", Some(50)).map_err(p)?.clamp(1, MAX_REGIONS) as usize;
            brief_list(pd_get(&format!("/pd/api/v1/regions/check/{kind}"))?, limit)
        }
        "hotspots" => {
            let flow = get_text(params, "flow", None).map_err(p)?;
            if flow != "write" && flow != "read" {
                return Err("`flow` must be write or read".into());
            }
            let flow = if flow == "write" { Flow::Write } else { Flow::Read };
            let heartbeat_secs = crate::settings()?.region_heartbeat_secs;
            let keep = crate::observe::HOT_KEPT;
            let top: wire::RegionsReply = pd_get(&format!("/pd/api/v1/regions/{}?limit={keep}", flow.top_path()))?;
            let rates: wire::HotStoresReply = pd_get("/pd/api/v1/hotspot/stores")?;
            let view = HotView {
                top: hot_regions_from_wire(&top, flow, heartbeat_secs, keep),
                store_bytes: store_rates_from_wire(&rates, flow)?,
            };
            serde_json::to_value(view).map_err(|e| e.to_string())?
        }
        "operators" => {
            let list: Option<Vec<String>> = pd_get("/pd/api/v1/operators")?;
            let ops: Vec<_> = list.unwrap_or_default().iter().filter_map(|t| operator_from_text(t)).collect();
            serde_json::to_value(ops).map_err(|e| e.to_string())?
        }
        "schedulers" => {
            let names: Option<Vec<String>> = pd_get("/pd/api/v1/schedulers")?;
            let names = names.unwrap_or_default();
            let evicted: Vec<String> = if names.iter().any(|n| n == "evict-leader-scheduler") {
                let config: wire::EvictLeaderConfig =
                    pd_get("/pd/api/v1/scheduler-config/evict-leader-scheduler/list")?;
                config.store_id_ranges.keys().cloned().collect()
            } else {
                vec![]
            };
            json!({"schedulers": names, "evict_leader_stores": evicted})
        }
        "store" => {
            let id = get_id(params, "id").map_err(p)?;
            pd_get::<Value>(&format!("/pd/api/v1/store/{id}"))?
        }
        "config" => {
            let config: Value = pd_get("/pd/api/v1/config")?;
            json!({"schedule": config.get("schedule"), "replication": config.get("replication")})
        }
        "store-metrics" => store_metrics(params)?,
        other => return Err(format!("unknown query `{other}`")),
    };
    Ok(value.to_string())
}

fn store_metrics(params: &[Param]) -> Result<Value, String> {
    let p = |e: crate::operator::plugin::types::ActionError| format!("{e:?}");
    let store = get_id(params, "store").map_err(p)?;
    let minutes = get_int(params, "minutes", Some(10)).map_err(p)?.clamp(1, 60);
    let info: wire::StoreInfo = pd_get(&format!("/pd/api/v1/store/{store}"))?;
    let instance = info.store.status_address;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let start = now.saturating_sub(minutes as u64 * 60);
    let mut out = serde_json::Map::new();
    for (figure, query) in [
        (
            "grpc_p99_seconds",
            format!(
                "histogram_quantile(0.99, sum by (le) (rate(tikv_grpc_msg_duration_seconds_bucket{{instance=\"{instance}\"}}[1m])))"
            ),
        ),
        (
            "grpc_requests_per_second",
            format!("sum(rate(tikv_grpc_msg_duration_seconds_count{{instance=\"{instance}\"}}[1m]))"),
        ),
        (
            "scheduler_too_busy_per_second",
            format!("sum(rate(tikv_scheduler_too_busy_total{{instance=\"{instance}\"}}[1m]))"),
        ),
    ] {
        let path = format!("/api/v1/query_range?query={}&start={start}&end={now}&step=60", encode(&query));
        let reply =
            pd::send(Target::Endpoint("prometheus".into()), Method::Get, &path, None).map_err(|e| e.to_string())?;
        let value: Value = pd::decode("prometheus", &reply.body).map_err(|e| e.to_string())?;
        out.insert(figure.into(), value.pointer("/data/result/0/values").cloned().unwrap_or(Value::Null));
    }
    Ok(json!({"store": store, "instance": instance, "minutes": minutes, "series": out}))
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
