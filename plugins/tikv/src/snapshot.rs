//! What one observation of a TiKV cluster holds (the payload the host stores and hands back to
//! `check`, `diagnose`, `precheck` and `verify`), and how it is read from PD's replies.
//!
//! The cost of an observation grows with the number of stores and of abnormal regions only:
//! region lists come from `regions/check/*`, never from `GET /regions`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::units::{parse_go_duration, parse_go_time_ms, parse_size};
use crate::wire;

/// The region check kinds observed, as named in `GET /regions/check/{kind}`.
pub const REGION_CHECKS: [&str; 5] = ["miss-peer", "down-peer", "pending-peer", "offline-peer", "extra-peer"];

/// One observation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// PD's clock as seen from the cluster: the newest store heartbeat (unix ms). Durations are
    /// measured against it rather than the host's clock, so they stay right however the host's
    /// clock or a simulator's speed differs.
    pub cluster_now_ms: Option<u64>,
    /// PD members and leadership.
    pub pd: PdView,
    /// Stores, Tombstone excluded.
    pub stores: Vec<StoreView>,
    /// `regions/check/*` by kind.
    pub region_checks: BTreeMap<String, RegionCheck>,
    /// Hot write regions.
    pub hot_write: HotView,
    /// Hot read regions.
    pub hot_read: HotView,
    /// Operators PD runs.
    pub operators: Vec<OperatorView>,
    /// Scheduler names.
    pub schedulers: Vec<String>,
    /// Stores named by `evict-leader-scheduler`.
    pub evict_leader_stores: Vec<u64>,
    /// PD's schedule and replication config.
    pub config: ConfigView,
    /// Status-port probes by store, when granted.
    pub probes: BTreeMap<u64, Probe>,
    /// Whether the status probes were granted (absent grant: no probes, no violation).
    pub probes_granted: bool,
    /// Store metrics from Prometheus by store, when granted.
    pub metrics: BTreeMap<u64, StoreMetrics>,
    /// Whether the Prometheus endpoint was granted.
    pub metrics_granted: bool,
}

/// PD's members.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PdView {
    /// Members with their health.
    pub members: Vec<PdMember>,
    /// The leader's name.
    pub leader: Option<String>,
    /// PD answered "no leader".
    pub no_leader: bool,
    /// No request to PD succeeded at all.
    pub unreachable: bool,
}

/// One PD member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PdMember {
    /// Name.
    pub name: String,
    /// Client URLs.
    pub client_urls: Vec<String>,
    /// Health reported by `/health`.
    pub healthy: bool,
}

/// One store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreView {
    /// Store id.
    pub id: u64,
    /// gRPC address.
    pub address: String,
    /// Status address.
    pub status_address: String,
    /// PD's derived state name.
    pub state_name: String,
    /// `zone=z1,host=h1`.
    pub labels: String,
    /// Capacity, bytes.
    pub capacity: u64,
    /// Available, bytes.
    pub available: u64,
    /// Leaders.
    pub leader_count: u64,
    /// Leader weight.
    pub leader_weight: f64,
    /// Regions.
    pub region_count: u64,
    /// Region weight.
    pub region_weight: f64,
    /// Region data, MiB.
    pub region_size_mib: u64,
    /// Slow score.
    pub slow_score: u64,
    /// Pending peers.
    pub pending_peer_count: u64,
    /// Busy flag.
    pub is_busy: bool,
    /// Last heartbeat, unix ms.
    pub last_heartbeat_ms: u64,
}

impl StoreView {
    /// Available share of capacity, 0–1 (1 when the capacity is unknown).
    pub fn available_ratio(&self) -> f64 {
        if self.capacity == 0 { 1.0 } else { self.available as f64 / self.capacity as f64 }
    }

    /// Whether PD counts the store as Up (serving and heartbeating).
    pub fn is_up(&self) -> bool {
        self.state_name == "Up"
    }
}

/// One `regions/check/{kind}` reply, cut to `regions-kept` regions; tallies cover all of them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RegionCheck {
    /// Regions in the class (exact).
    pub count: u64,
    /// Per store: regions of the class with a peer (down/pending: the down/pending peer) there.
    pub by_store: BTreeMap<u64, u64>,
    /// The first regions, for evidence and parameters.
    pub regions: Vec<RegionBrief>,
}

/// A region in brief.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegionBrief {
    /// Region id.
    pub id: u64,
    /// Leader store.
    pub leader_store: Option<u64>,
    /// Stores with a voter.
    pub voters: Vec<u64>,
    /// Stores with a learner.
    pub learners: Vec<u64>,
    /// Down peers: (store, seconds).
    pub down: Vec<(u64, u64)>,
    /// Stores with a pending peer.
    pub pending: Vec<u64>,
    /// Size, MiB.
    pub size_mib: u64,
}

impl RegionBrief {
    /// Reads a region from PD's reply.
    pub fn from_wire(region: &wire::Region) -> RegionBrief {
        let peers = region.peers();
        RegionBrief {
            id: region.id,
            leader_store: region.leader_store(),
            voters: peers.iter().filter(|p| p.is_voter()).map(|p| p.store_id).collect(),
            learners: peers.iter().filter(|p| !p.is_voter()).map(|p| p.store_id).collect(),
            down: region.down_peers.iter().flatten().map(|d| (d.peer.store_id, d.down_seconds)).collect(),
            pending: region.pending_peers.iter().flatten().map(|p| p.store_id).collect(),
            size_mib: region.approximate_size,
        }
    }
}

/// The hottest regions of one flow and every store's rate of that flow.
///
/// Read from `GET /regions/{writeflow|readflow}?limit=N` (the hottest regions cluster-wide, as
/// `pd-ctl region topwrite` shows them) and `GET /hotspot/stores`, not from
/// `GET /hotspot/regions/{write|read}`: PD lists there every store's hottest ~60 peers with no
/// limit, tens of megabytes for a few hundred stores, while these two replies stay a few
/// kilobytes at any cluster size.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HotView {
    /// Each store's rate of this flow, bytes/s (writes count on every peer, reads on the leader).
    pub store_bytes: BTreeMap<u64, f64>,
    /// The hottest regions, hottest first.
    pub top: Vec<HotRegion>,
}

/// One region of a top-flow list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HotRegion {
    /// Region id.
    pub region_id: u64,
    /// Store of the leader (0 when the region has none).
    pub store_id: u64,
    /// Stores holding a peer.
    #[serde(default)]
    pub peer_stores: Vec<u64>,
    /// Bytes per second over the last region heartbeat.
    pub flow_bytes: f64,
}

/// One operator PD runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorView {
    /// Region id.
    pub region_id: u64,
    /// Description (`admin-transfer-leader`).
    pub desc: String,
    /// Kind flags (`admin,leader`).
    pub kind: String,
    /// Creation time, unix ms, when readable.
    pub created_ms: Option<u64>,
    /// Timeout, ms, when readable.
    pub timeout_ms: Option<u64>,
    /// PD's text.
    pub text: String,
}

impl OperatorView {
    /// Whether a human or a tool (not PD's own schedulers) created it.
    pub fn is_admin(&self) -> bool {
        self.kind.split(',').any(|k| k.trim() == "admin")
    }
}

/// PD's configuration (the parts used).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigView {
    /// Replicas per region.
    pub max_replicas: u64,
    /// Seconds.
    pub max_store_down_time_secs: u64,
    /// Leader moves at once.
    pub leader_schedule_limit: u64,
    /// Replica repairs at once.
    pub replica_schedule_limit: u64,
    /// Region moves at once.
    pub region_schedule_limit: u64,
    /// Used ratio from which a store is low on space.
    pub low_space_ratio: f64,
    /// Scheduling halted.
    pub halt_scheduling: bool,
}

impl Default for ConfigView {
    fn default() -> Self {
        ConfigView {
            max_replicas: 3,
            max_store_down_time_secs: 1800,
            leader_schedule_limit: 4,
            replica_schedule_limit: 64,
            region_schedule_limit: 2048,
            low_space_ratio: 0.8,
            halt_scheduling: false,
        }
    }
}

/// A status-port probe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    /// Whether `GET /status` answered 200.
    pub reachable: bool,
    /// Why not.
    pub error: Option<String>,
}

/// A store's metrics from Prometheus.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoreMetrics {
    /// gRPC p99 latency, ms.
    pub p99_ms: Option<f64>,
    /// gRPC requests per second.
    pub requests_per_sec: Option<f64>,
    /// Scheduler-too-busy errors per second.
    pub busy_per_sec: Option<f64>,
}

impl Snapshot {
    /// The store with this id.
    pub fn store(&self, id: u64) -> Option<&StoreView> {
        self.stores.iter().find(|s| s.id == id)
    }

    /// Stores PD counts as Up.
    pub fn up_stores(&self) -> impl Iterator<Item = &StoreView> {
        self.stores.iter().filter(|s| s.is_up())
    }

    /// Count of a region check kind (0 when not observed).
    pub fn check_count(&self, kind: &str) -> u64 {
        self.region_checks.get(kind).map_or(0, |c| c.count)
    }

    /// Seconds since a store's last heartbeat, by PD's clock.
    pub fn silent_secs(&self, store: &StoreView) -> Option<u64> {
        let now = self.cluster_now_ms?;
        (store.last_heartbeat_ms > 0).then(|| now.saturating_sub(store.last_heartbeat_ms) / 1000)
    }

    /// Whether the store is low on space by PD's `low-space-ratio`.
    pub fn is_low_space(&self, store: &StoreView) -> bool {
        store.capacity > 0 && 1.0 - store.available_ratio() >= self.config.low_space_ratio
    }

    /// The operator on a region, if any.
    pub fn operator_on(&self, region: u64) -> Option<&OperatorView> {
        self.operators.iter().find(|o| o.region_id == region)
    }
}

/// Reads `GET /stores` into store views.
pub fn stores_from_wire(reply: wire::StoresReply) -> Result<Vec<StoreView>, String> {
    let mut stores = Vec::new();
    for info in reply.stores.unwrap_or_default() {
        let meta = info.store;
        let status = info.status;
        let size = |field: &Option<String>, name: &str| -> Result<u64, String> {
            match field {
                Some(text) => parse_size(text).map_err(|e| format!("store {} `{name}`: {e}", meta.id)),
                None => Ok(0),
            }
        };
        // PD sends no state_name only for very old versions; derive it from the numeric state.
        let state_name = if meta.state_name.is_empty() {
            match meta.state {
                0 => "Up",
                1 => "Offline",
                _ => "Tombstone",
            }
            .to_owned()
        } else {
            meta.state_name.clone()
        };
        stores.push(StoreView {
            id: meta.id,
            address: meta.address.clone(),
            status_address: meta.status_address.clone(),
            state_name,
            labels: meta
                .labels
                .iter()
                .flatten()
                .map(|l| format!("{}={}", l.key, l.value))
                .collect::<Vec<_>>()
                .join(","),
            capacity: size(&status.capacity, "capacity")?,
            available: size(&status.available, "available")?,
            leader_count: status.leader_count,
            leader_weight: status.leader_weight.unwrap_or(1.0),
            region_count: status.region_count,
            region_weight: status.region_weight.unwrap_or(1.0),
            region_size_mib: status.region_size,
            slow_score: status.slow_score,
            pending_peer_count: status.pending_peer_count,
            is_busy: status.is_busy,
            last_heartbeat_ms: u64::try_from(meta.last_heartbeat / 1_000_000).unwrap_or(0),
        });
    }
    stores.sort_by_key(|s| s.id);
    Ok(stores)
}

/// Reads one `regions/check/{kind}` reply, keeping the first `keep` regions.
pub fn region_check_from_wire(kind: &str, reply: wire::RegionsReply, keep: usize) -> RegionCheck {
    let regions = reply.regions.unwrap_or_default();
    let mut by_store: BTreeMap<u64, u64> = BTreeMap::new();
    for region in &regions {
        let stores: Vec<u64> = match kind {
            "down-peer" => region.down_peers.iter().flatten().map(|d| d.peer.store_id).collect(),
            "pending-peer" => region.pending_peers.iter().flatten().map(|p| p.store_id).collect(),
            _ => region.peers().iter().map(|p| p.store_id).collect(),
        };
        for store in stores {
            *by_store.entry(store).or_default() += 1;
        }
    }
    RegionCheck {
        count: reply.count.max(regions.len() as u64),
        by_store,
        regions: regions.iter().take(keep).map(RegionBrief::from_wire).collect(),
    }
}

/// Reads a top-flow region list (`GET /regions/{writeflow|readflow}`): PD reports each region's
/// bytes over its last heartbeat, turned into bytes/s with the heartbeat interval.
pub fn hot_regions_from_wire(
    reply: &wire::RegionsReply,
    flow: Flow,
    heartbeat_secs: f64,
    keep: usize,
) -> Vec<HotRegion> {
    let mut top: Vec<HotRegion> = reply
        .regions
        .iter()
        .flatten()
        .filter(|r| r.id != 0)
        .map(|r| HotRegion {
            region_id: r.id,
            store_id: r.leader_store().unwrap_or(0),
            peer_stores: r.peers().iter().map(|p| p.store_id).collect(),
            flow_bytes: match flow {
                Flow::Write => r.written_bytes,
                Flow::Read => r.read_bytes,
            } as f64
                / heartbeat_secs,
        })
        .collect();
    top.sort_by(|a, b| b.flow_bytes.total_cmp(&a.flow_bytes).then(a.region_id.cmp(&b.region_id)));
    top.truncate(keep);
    top
}

/// Reads one flow's per-store rates from `GET /hotspot/stores`; a store id that is not a number
/// is an error, as is a negative or non-finite rate.
pub fn store_rates_from_wire(reply: &wire::HotStoresReply, flow: Flow) -> Result<BTreeMap<u64, f64>, String> {
    let (name, rates) = match flow {
        Flow::Write => ("bytes-write-rate", &reply.bytes_write_rate),
        Flow::Read => ("bytes-read-rate", &reply.bytes_read_rate),
    };
    let mut out = BTreeMap::new();
    for (store, &rate) in rates.iter().flatten() {
        let id = store.parse::<u64>().map_err(|_| format!("`{name}` names store `{store}`, not a number"))?;
        if !rate.is_finite() || rate < 0.0 {
            return Err(format!("`{name}` gives store {id} the rate {rate}"));
        }
        out.insert(id, rate);
    }
    Ok(out)
}

/// Which flow a hot list is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Bytes written (every peer applies them).
    Write,
    /// Bytes read (served by the leader).
    Read,
}

impl Flow {
    /// The `GET /regions/{..}` ordering of this flow.
    pub fn top_path(self) -> &'static str {
        match self {
            Flow::Write => "writeflow",
            Flow::Read => "readflow",
        }
    }
}

/// Reads PD's operator strings; only the region id is required, the rest is best effort.
pub fn operator_from_text(text: &str) -> Option<OperatorView> {
    let between = |start: &str, end: &str| -> Option<&str> {
        let from = text.find(start)? + start.len();
        let to = text[from..].find(end)? + from;
        Some(&text[from..to])
    };
    let region_text = between("region:", "(").or_else(|| between("region:", ","))?;
    let region_id = region_text.trim().parse().ok()?;
    let timeout_ms = between("timeout:[", "]")
        .and_then(|t| t.split(|c: char| c == ',' || c.is_whitespace()).find(|s| !s.is_empty()).map(str::to_owned))
        .and_then(|t| parse_go_duration(&t).ok());
    Some(OperatorView {
        region_id,
        desc: text.split_whitespace().next().unwrap_or_default().to_owned(),
        kind: between("(kind:", ", region:").unwrap_or_default().to_owned(),
        created_ms: between("createAt:", ", currentStep").and_then(|t| parse_go_time_ms(t).ok()),
        timeout_ms,
        text: text.to_owned(),
    })
}

/// Reads the parts of `GET /config` used.
pub fn config_from_wire(reply: wire::ConfigReply) -> Result<ConfigView, String> {
    let defaults = ConfigView::default();
    let schedule = reply.schedule;
    let max_store_down_time_secs = match &schedule.max_store_down_time {
        Some(text) => parse_go_duration(text).map_err(|e| format!("`max-store-down-time`: {e}"))? / 1000,
        None => defaults.max_store_down_time_secs,
    };
    let halt_scheduling = match schedule.halt_scheduling {
        Some(serde_json::Value::Bool(b)) => b,
        Some(serde_json::Value::String(s)) => s == "true",
        _ => false,
    };
    Ok(ConfigView {
        max_replicas: reply.replication.max_replicas.unwrap_or(defaults.max_replicas),
        max_store_down_time_secs,
        leader_schedule_limit: schedule.leader_schedule_limit.unwrap_or(defaults.leader_schedule_limit),
        replica_schedule_limit: schedule.replica_schedule_limit.unwrap_or(defaults.replica_schedule_limit),
        region_schedule_limit: schedule.region_schedule_limit.unwrap_or(defaults.region_schedule_limit),
        low_space_ratio: schedule.low_space_ratio.unwrap_or(defaults.low_space_ratio),
        halt_scheduling,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_strings_yield_region_kind_time_and_timeout() {
        let text = "admin-transfer-leader {transfer leader: store 1 to 4} (kind:admin,leader, region:2(3, 5), \
                    createAt:2024-05-29 10:26:40.123 +0800 CST, currentStep:0, size:96, \
                    steps:[0:{transfer leader from store 1 to store 4}], timeout:[3s])";
        let op = operator_from_text(text).unwrap();
        assert_eq!(op.region_id, 2);
        assert_eq!(op.desc, "admin-transfer-leader");
        assert!(op.is_admin());
        assert_eq!(op.timeout_ms, Some(3000));
        assert_eq!(op.created_ms, Some(1_716_949_600_123));
        let rfc = text.replace("2024-05-29 10:26:40.123 +0800 CST", "2024-05-29T10:26:40.123+08:00");
        assert_eq!(operator_from_text(&rfc).unwrap().created_ms, Some(1_716_949_600_123));
        assert!(operator_from_text("garbage").is_none());
    }

    #[test]
    fn store_sizes_and_omitted_fields() {
        let reply: wire::StoresReply = serde_json::from_str(
            r#"{"count":1,"stores":[{"store":{"id":1,"address":"a:20160","state_name":"Up","last_heartbeat":1717000123456789000},
                "status":{"capacity":"1TiB","available":"512GiB","leader_count":3,"region_count":9}}]}"#,
        )
        .unwrap();
        let stores = stores_from_wire(reply).unwrap();
        assert_eq!(stores[0].capacity, 1 << 40);
        assert!((stores[0].available_ratio() - 0.5).abs() < 1e-9);
        assert_eq!(stores[0].slow_score, 0);
        assert_eq!(stores[0].last_heartbeat_ms, 1_717_000_123_456);
    }

    #[test]
    fn top_flow_lists_become_rates_with_leader_and_peers() {
        // PD's `/regions/writeflow` shape; the empty region older PDs send is skipped.
        let reply: wire::RegionsReply = serde_json::from_str(
            r#"{"count":3,"regions":[
                {"id":8,"peers":[{"id":81,"store_id":1},{"id":82,"store_id":2}],"leader":{"id":82,"store_id":2},
                 "written_bytes":600,"read_bytes":6000},
                {"id":9,"peers":[{"id":91,"store_id":3}],"leader":{"role_name":""},"written_bytes":6000},
                {"id":0,"leader":{"role_name":""}}]}"#,
        )
        .unwrap();
        let write = hot_regions_from_wire(&reply, Flow::Write, 60.0, 20);
        assert_eq!(write.iter().map(|r| r.region_id).collect::<Vec<_>>(), [9, 8]);
        assert!((write[0].flow_bytes - 100.0).abs() < 1e-9);
        assert_eq!(write[0].store_id, 0, "no leader");
        assert_eq!(write[1].store_id, 2);
        assert_eq!(write[1].peer_stores, [1, 2]);
        let read = hot_regions_from_wire(&reply, Flow::Read, 60.0, 1);
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].region_id, 8);
    }

    #[test]
    fn store_rates_are_read_and_bad_ones_named() {
        let reply: wire::HotStoresReply = serde_json::from_str(
            r#"{"bytes-write-rate":{"1":1024.5,"2":0},"bytes-read-rate":{},"keys-write-rate":{"1":4}}"#,
        )
        .unwrap();
        let write = store_rates_from_wire(&reply, Flow::Write).unwrap();
        assert_eq!(write.len(), 2);
        assert!((write[&1] - 1024.5).abs() < 1e-9);
        assert!(store_rates_from_wire(&reply, Flow::Read).unwrap().is_empty());
        let bad: wire::HotStoresReply = serde_json::from_str(r#"{"bytes-read-rate":{"one":5}}"#).unwrap();
        let err = store_rates_from_wire(&bad, Flow::Read).unwrap_err();
        assert!(err.contains("bytes-read-rate") && err.contains("`one`"), "{err}");
        let negative: wire::HotStoresReply = serde_json::from_str(r#"{"bytes-write-rate":{"4":-1}}"#).unwrap();
        assert!(store_rates_from_wire(&negative, Flow::Write).unwrap_err().contains("store 4"));
    }

    #[test]
    fn a_wrong_size_string_is_an_error() {
        let reply: wire::StoresReply =
            serde_json::from_str(r#"{"stores":[{"store":{"id":7,"state_name":"Up"},"status":{"capacity":"lots"}}]}"#)
                .unwrap();
        let err = stores_from_wire(reply).unwrap_err();
        assert!(err.contains("store 7") && err.contains("capacity"), "{err}");
    }
}
