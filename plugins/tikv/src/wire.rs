//! PD's replies as PD sends them (`pkg/response`, `server/api`): every protobuf field may be
//! absent (a zero enum is omitted), sizes are strings, and a missing region may come back as an
//! empty region with id 0. Only what the plugin uses is declared; unknown fields are ignored, a
//! field of the wrong type is an error.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `GET /stores`.
#[derive(Debug, Deserialize)]
pub struct StoresReply {
    /// Stores (PD sends `null` when there are none).
    #[serde(default)]
    pub stores: Option<Vec<StoreInfo>>,
}

/// One `StoreInfo`.
#[derive(Debug, Deserialize)]
pub struct StoreInfo {
    /// `metapb.Store` plus PD's derived fields.
    pub store: StoreMeta,
    /// The store's statistics.
    #[serde(default)]
    pub status: StoreStatus,
}

/// A store label.
#[derive(Debug, Deserialize, Clone)]
pub struct Label {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// `StoreInfo.store`.
#[derive(Debug, Deserialize)]
pub struct StoreMeta {
    /// Store id.
    pub id: u64,
    /// gRPC address.
    #[serde(default)]
    pub address: String,
    /// Labels.
    #[serde(default)]
    pub labels: Option<Vec<Label>>,
    /// Status address.
    #[serde(default)]
    pub status_address: String,
    /// TiKV version.
    #[serde(default)]
    pub version: String,
    /// Persisted state: 0 Up (absent), 1 Offline, 2 Tombstone.
    #[serde(default)]
    pub state: i32,
    /// Derived state name: Up, Disconnected, Down, Offline, Tombstone.
    #[serde(default)]
    pub state_name: String,
    /// Last heartbeat, unix nanoseconds.
    #[serde(default)]
    pub last_heartbeat: i64,
}

/// `StoreInfo.status`.
#[derive(Debug, Deserialize, Default)]
pub struct StoreStatus {
    /// Capacity, e.g. `"1.819TiB"`.
    #[serde(default)]
    pub capacity: Option<String>,
    /// Available space.
    #[serde(default)]
    pub available: Option<String>,
    /// Used space.
    #[serde(default)]
    pub used_size: Option<String>,
    /// Leaders held.
    #[serde(default)]
    pub leader_count: u64,
    /// Leader weight.
    #[serde(default)]
    pub leader_weight: Option<f64>,
    /// Leader score.
    #[serde(default)]
    pub leader_score: f64,
    /// Regions held.
    #[serde(default)]
    pub region_count: u64,
    /// Region weight.
    #[serde(default)]
    pub region_weight: Option<f64>,
    /// Region size in MiB.
    #[serde(default)]
    pub region_size: u64,
    /// Slow score (absent when zero).
    #[serde(default)]
    pub slow_score: u64,
    /// Pending peers (absent when zero).
    #[serde(default)]
    pub pending_peer_count: u64,
    /// Busy flag (absent when false).
    #[serde(default)]
    pub is_busy: bool,
    /// Uptime, a Go duration.
    #[serde(default)]
    pub uptime: Option<String>,
}

/// `GET /pd/api/v1/health`: one entry per member.
#[derive(Debug, Deserialize)]
pub struct MemberHealth {
    /// Member name.
    pub name: String,
    /// Client URLs.
    #[serde(default)]
    pub client_urls: Option<Vec<String>>,
    /// Whether the member answers.
    #[serde(default)]
    pub health: bool,
}

/// `GET /pd/api/v1/members`.
#[derive(Debug, Deserialize)]
pub struct MembersReply {
    /// Members.
    #[serde(default)]
    pub members: Option<Vec<Member>>,
    /// The leader, when there is one.
    #[serde(default)]
    pub leader: Option<Member>,
}

/// One PD member.
#[derive(Debug, Deserialize)]
pub struct Member {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Client URLs.
    #[serde(default)]
    pub client_urls: Option<Vec<String>>,
}

/// `{"count":N,"regions":[…]}`.
#[derive(Debug, Deserialize)]
pub struct RegionsReply {
    /// Total count.
    #[serde(default)]
    pub count: u64,
    /// The regions (`null` from `/regions/count`).
    #[serde(default)]
    pub regions: Option<Vec<Region>>,
}

/// A region epoch.
#[derive(Debug, Deserialize, Default, Clone, Copy)]
pub struct Epoch {
    /// Bumped on membership changes.
    #[serde(default)]
    pub conf_ver: u64,
    /// Bumped on splits and merges.
    #[serde(default)]
    pub version: u64,
}

/// A region peer.
#[derive(Debug, Deserialize, Default, Clone)]
pub struct Peer {
    /// Peer id.
    #[serde(default)]
    pub id: u64,
    /// Store id.
    #[serde(default)]
    pub store_id: u64,
    /// `Voter`, `Learner`, `IncomingVoter`, `DemotingVoter`, or empty for no leader.
    #[serde(default)]
    pub role_name: String,
    /// Learner flag.
    #[serde(default)]
    pub is_learner: bool,
}

impl Peer {
    /// Whether the peer votes.
    pub fn is_voter(&self) -> bool {
        !self.is_learner && self.role_name != "Learner"
    }
}

/// A down peer.
#[derive(Debug, Deserialize, Clone)]
pub struct DownPeer {
    /// The peer.
    #[serde(default)]
    pub peer: Peer,
    /// Seconds it has been down.
    #[serde(default)]
    pub down_seconds: u64,
}

/// One region.
#[derive(Debug, Deserialize, Clone)]
pub struct Region {
    /// Region id (0 for the empty region older PDs send for a missing one).
    #[serde(default)]
    pub id: u64,
    /// Start key, upper-case hex.
    #[serde(default)]
    pub start_key: String,
    /// End key.
    #[serde(default)]
    pub end_key: String,
    /// Epoch.
    #[serde(default)]
    pub epoch: Epoch,
    /// Peers.
    #[serde(default)]
    pub peers: Option<Vec<Peer>>,
    /// Leader (`{"role_name":""}` when none).
    #[serde(default)]
    pub leader: Option<Peer>,
    /// Down peers.
    #[serde(default)]
    pub down_peers: Option<Vec<DownPeer>>,
    /// Pending peers.
    #[serde(default)]
    pub pending_peers: Option<Vec<Peer>>,
    /// Bytes written in the last interval.
    #[serde(default)]
    pub written_bytes: u64,
    /// Bytes read in the last interval.
    #[serde(default)]
    pub read_bytes: u64,
    /// Approximate size, MiB.
    #[serde(default)]
    pub approximate_size: u64,
    /// Approximate keys.
    #[serde(default)]
    pub approximate_keys: u64,
}

impl Region {
    /// The peers (empty when absent).
    pub fn peers(&self) -> &[Peer] {
        self.peers.as_deref().unwrap_or_default()
    }

    /// The leader's store, when the region has a leader.
    pub fn leader_store(&self) -> Option<u64> {
        self.leader.as_ref().filter(|l| l.id != 0 && l.store_id != 0).map(|l| l.store_id)
    }
}

/// `GET /hotspot/stores` (the byte rates used; PD sends keys and queries too).
#[derive(Debug, Deserialize, Default)]
pub struct HotStoresReply {
    /// Bytes written per second, by store id.
    #[serde(rename = "bytes-write-rate", default)]
    pub bytes_write_rate: Option<BTreeMap<String, f64>>,
    /// Bytes read per second, by store id.
    #[serde(rename = "bytes-read-rate", default)]
    pub bytes_read_rate: Option<BTreeMap<String, f64>>,
}

/// `GET /config` (the parts used).
#[derive(Debug, Deserialize)]
pub struct ConfigReply {
    /// Schedule config.
    pub schedule: ScheduleConfig,
    /// Replication config.
    pub replication: ReplicationConfig,
}

/// `schedule`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ScheduleConfig {
    /// Go duration.
    #[serde(default)]
    pub max_store_down_time: Option<String>,
    /// Leader moves at once.
    #[serde(default)]
    pub leader_schedule_limit: Option<u64>,
    /// Region moves at once.
    #[serde(default)]
    pub region_schedule_limit: Option<u64>,
    /// Replica repairs at once.
    #[serde(default)]
    pub replica_schedule_limit: Option<u64>,
    /// Above this used ratio a store is low on space.
    #[serde(default)]
    pub low_space_ratio: Option<f64>,
    /// Below this used ratio a store has plenty of space.
    #[serde(default)]
    pub high_space_ratio: Option<f64>,
    /// Global brake.
    #[serde(default)]
    pub halt_scheduling: Option<serde_json::Value>,
}

/// `replication`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ReplicationConfig {
    /// Replicas per region.
    #[serde(default)]
    pub max_replicas: Option<u64>,
}

/// `GET /scheduler-config/evict-leader-scheduler/list`.
#[derive(Debug, Deserialize)]
pub struct EvictLeaderConfig {
    /// Store id → key ranges.
    #[serde(rename = "store-id-ranges", default)]
    pub store_id_ranges: BTreeMap<String, serde_json::Value>,
}

/// Prometheus `GET /api/v1/query`.
#[derive(Debug, Deserialize)]
pub struct PromReply {
    /// `success` or `error`.
    pub status: String,
    /// The result.
    #[serde(default)]
    pub data: Option<PromData>,
    /// Error text.
    #[serde(default)]
    pub error: Option<String>,
}

/// Prometheus result data.
#[derive(Debug, Deserialize)]
pub struct PromData {
    /// Instant vector samples.
    #[serde(default)]
    pub result: Vec<PromSample>,
}

/// One sample: labels and `[timestamp, "value"]`.
#[derive(Debug, Deserialize)]
pub struct PromSample {
    /// Labels.
    #[serde(default)]
    pub metric: BTreeMap<String, String>,
    /// `[unix seconds, "value"]`.
    pub value: (f64, String),
}
