//! The cluster model: PD members, TiKV stores, regions with their peers, and schedulers.
//! Field meanings follow PD's `metapb`/`pdpb` messages and `pkg/core` (`store.go`, `region.go`);
//! everything derived (a store's `state_name`, leader and region counts) is computed from these facts
//! rather than stored, so the model cannot contradict itself.

use serde::Serialize;

/// A store's persisted state (`metapb.StoreState`): `Up` = 0, `Offline` = 1, `Tombstone` = 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StoreState {
    /// Serving (also while Disconnected or Down: those are derived, not persisted).
    Up,
    /// Being removed; PD moves its peers away.
    Offline,
    /// Removed and empty.
    Tombstone,
}

impl StoreState {
    /// The protobuf enum number.
    pub fn as_i32(self) -> i32 {
        match self {
            StoreState::Up => 0,
            StoreState::Offline => 1,
            StoreState::Tombstone => 2,
        }
    }

    /// `metapb.NodeState` that PD pairs with this state: Serving = 1, Removing = 2, Removed = 3.
    pub fn node_state(self) -> i32 {
        match self {
            StoreState::Up => 1,
            StoreState::Offline => 2,
            StoreState::Tombstone => 3,
        }
    }
}

/// A store label (`metapb.StoreLabel`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Label {
    /// Label key, e.g. `zone`.
    pub key: String,
    /// Label value, e.g. `z1`.
    pub value: String,
}

/// A TiKV store as PD knows it, plus the simulator's ground truth (`alive`).
#[derive(Debug, Clone, Serialize)]
pub struct Store {
    /// Store id.
    pub id: u64,
    /// gRPC address TiKV advertises.
    pub address: String,
    /// Status address (host:port) serving `/status`; filled in once the port is bound.
    pub status_address: String,
    /// Topology labels.
    pub labels: Vec<Label>,
    /// TiKV version without the leading `v`.
    pub version: String,
    /// TiKV git hash.
    pub git_hash: String,
    /// Deploy path.
    pub deploy_path: String,
    /// Persisted state.
    pub state: StoreState,
    /// Disk capacity in bytes.
    pub capacity: u64,
    /// Bytes used by things other than region data (logs, WAL, engine overhead).
    pub base_used: u64,
    /// Simulated time (ms) the process last started.
    pub started_at_ms: u64,
    /// Simulated time (ms) of the last store heartbeat PD received, if any.
    pub last_heartbeat_ms: Option<u64>,
    /// Simulated time (ms) of the next store heartbeat.
    pub next_heartbeat_ms: u64,
    /// Whether the TiKV process runs (ground truth; PD only sees heartbeats).
    pub alive: bool,
    /// Simulated time (ms) the process was killed.
    pub killed_at_ms: Option<u64>,
    /// Simulated time (ms) at which the Raft groups led from this dead store elect new leaders.
    pub election_due_ms: Option<u64>,
    /// Leader weight used by leader scoring.
    pub leader_weight: f64,
    /// Region weight used by region scoring.
    pub region_weight: f64,
    /// TiKV's slow score (1 is healthy, 100 is the maximum).
    pub slow_score: u64,
    /// Add-peer operations per minute PD allows on the store (`store limit`).
    pub add_peer_limit: f64,
    /// Remove-peer operations per minute PD allows on the store.
    pub remove_peer_limit: f64,
    /// Ground truth: the process runs but its messages do not reach PD (a network partition), so
    /// PD sees no heartbeats while the status port still answers.
    pub partitioned: bool,
    /// Ground truth: how many times slower than normal the disk is (1.0 is healthy). Stretches
    /// snapshot transfers, request latency and the slow score.
    pub disk_slowdown: f64,
}

/// A peer's Raft role (`metapb.PeerRole`): Voter = 0, Learner = 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PeerRole {
    /// A voting member.
    Voter,
    /// A non-voting learner.
    Learner,
}

/// One replica of a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Peer {
    /// Peer id (from PD's id allocator, shared with region ids).
    pub id: u64,
    /// Store holding the peer.
    pub store_id: u64,
    /// Raft role.
    pub role: PeerRole,
}

/// A peer the leader reports as unreachable, with how long it has been so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DownPeer {
    /// The peer.
    pub peer: Peer,
    /// Seconds since the peer last answered the leader.
    pub down_seconds: u64,
}

/// A region (`metapb.Region` plus the statistics of its last heartbeat).
#[derive(Debug, Clone, Serialize)]
pub struct Region {
    /// Region id.
    pub id: u64,
    /// Start key (raw bytes; rendered as upper-case hex). Empty is unbounded.
    pub start_key: Vec<u8>,
    /// End key (raw bytes). Empty is unbounded.
    pub end_key: Vec<u8>,
    /// Epoch: bumped on membership changes.
    pub conf_ver: u64,
    /// Epoch: bumped on splits and merges.
    pub version: u64,
    /// Replicas.
    pub peers: Vec<Peer>,
    /// Id of the leader peer, if PD knows one.
    pub leader: Option<u64>,
    /// Peers the leader reported down in its last heartbeat.
    pub down_peers: Vec<DownPeer>,
    /// Peers the leader reported as lagging (pending) in its last heartbeat.
    pub pending_peers: Vec<Peer>,
    /// Approximate size in MiB.
    pub approximate_size: u64,
    /// Approximate number of keys.
    pub approximate_keys: u64,
    /// Bytes written in the last heartbeat interval.
    pub written_bytes: u64,
    /// Bytes read in the last heartbeat interval.
    pub read_bytes: u64,
    /// Keys written in the last heartbeat interval.
    pub written_keys: u64,
    /// Keys read in the last heartbeat interval.
    pub read_keys: u64,
    /// Workload: bytes written per second (before replication).
    pub write_rate: u64,
    /// Workload: bytes read per second (served by the leader).
    pub read_rate: u64,
    /// Consecutive heartbeats in which the region was hot for writes.
    pub hot_write_degree: u64,
    /// Consecutive heartbeats in which the region was hot for reads.
    pub hot_read_degree: u64,
    /// Simulated time (ms) of the last region heartbeat PD received.
    pub last_heartbeat_ms: u64,
}

impl Region {
    /// The leader peer, if any.
    pub fn leader_peer(&self) -> Option<&Peer> {
        self.leader.and_then(|id| self.peers.iter().find(|p| p.id == id))
    }

    /// Store id of the leader, if any.
    pub fn leader_store(&self) -> Option<u64> {
        self.leader_peer().map(|p| p.store_id)
    }

    /// Number of voters.
    pub fn voter_count(&self) -> usize {
        self.peers.iter().filter(|p| p.role == PeerRole::Voter).count()
    }
}

/// A PD member (`pdpb.Member`) with its simulated liveness.
#[derive(Debug, Clone, Serialize)]
pub struct PdMember {
    /// Member name, `pd-0`, `pd-1`, ...
    pub name: String,
    /// etcd member id.
    pub member_id: u64,
    /// Client URL (`http://127.0.0.1:port`), filled in once the port is bound.
    pub client_url: String,
    /// Peer URL.
    pub peer_url: String,
    /// Whether the member process runs.
    pub alive: bool,
}

/// A scheduler PD runs (`server/api/scheduler.go`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scheduler {
    /// Name as listed by `GET /schedulers`.
    pub name: String,
    /// Stores the scheduler applies to (evict-leader and grant-leader only).
    pub store_ids: Vec<u64>,
    /// Simulated time (ms) until which the scheduler is paused.
    pub paused_until_ms: Option<u64>,
}
