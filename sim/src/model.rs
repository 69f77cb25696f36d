//! The cluster model: PD members, TiKV stores, regions with their peers, and schedulers.
//! Field meanings follow PD's `metapb`/`pdpb` messages and `pkg/core` (`store.go`, `region.go`);
//! everything derived (a store's `state_name`, leader and region counts) is computed from these facts
//! rather than stored, so the model cannot contradict itself.

use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::{Serialize, Serializer};

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

/// Bytes a [`Key`] holds without a heap allocation; TiDB's table prefixes take 18.
const INLINE_KEY: usize = 22;

/// A region boundary: raw bytes, compared as byte strings. Keys up to 22 bytes (TiDB's table
/// prefixes and the keys splits derive from them) live inline, so a region costs no allocation for
/// its boundaries; longer keys go to the heap. Derefs to `[u8]` and serialises as `Vec<u8>` does.
#[derive(Clone)]
pub struct Key(KeyRepr);

#[derive(Clone)]
enum KeyRepr {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

impl Key {
    /// The empty key: an unbounded start or end.
    pub const EMPTY: Key = Key(KeyRepr::Inline { len: 0, bytes: [0; INLINE_KEY] });

    /// The key's bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            KeyRepr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            KeyRepr::Heap(bytes) => bytes,
        }
    }
}

impl Default for Key {
    fn default() -> Self {
        Key::EMPTY
    }
}

impl From<&[u8]> for Key {
    fn from(raw: &[u8]) -> Self {
        if raw.len() <= INLINE_KEY {
            let mut bytes = [0; INLINE_KEY];
            bytes[..raw.len()].copy_from_slice(raw);
            Key(KeyRepr::Inline { len: raw.len() as u8, bytes })
        } else {
            Key(KeyRepr::Heap(raw.into()))
        }
    }
}

impl From<Vec<u8>> for Key {
    fn from(raw: Vec<u8>) -> Self {
        Key::from(raw.as_slice())
    }
}

impl From<&Vec<u8>> for Key {
    fn from(raw: &Vec<u8>) -> Self {
        Key::from(raw.as_slice())
    }
}

impl Deref for Key {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> std::cmp::Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl PartialEq<[u8]> for Key {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<&[u8]> for Key {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_slice() == *other
    }
}

impl PartialEq<Vec<u8>> for Key {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl PartialEq<Key> for Vec<u8> {
    fn eq(&self, other: &Key) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_slice().fmt(f)
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.as_slice())
    }
}

/// Peers a region holds without a heap allocation: a region has three replicas unless an operator
/// is adding one or max-replicas was raised.
const INLINE_PEERS: usize = 3;

/// A region's peers: up to three inline, more on the heap. Derefs to `[Peer]` and serialises as a
/// `Vec<Peer>` does.
#[derive(Clone)]
pub struct Peers(PeersRepr);

#[derive(Clone)]
enum PeersRepr {
    Inline { len: u8, peers: [Peer; INLINE_PEERS] },
    Heap(Vec<Peer>),
}

/// Filler for unused inline slots.
const NO_PEER: Peer = Peer { id: 0, store_id: 0, role: PeerRole::Voter };

impl Peers {
    /// No peers.
    pub const fn new() -> Self {
        Peers(PeersRepr::Inline { len: 0, peers: [NO_PEER; INLINE_PEERS] })
    }

    /// Appends a peer.
    pub fn push(&mut self, peer: Peer) {
        match &mut self.0 {
            PeersRepr::Inline { len, peers } if usize::from(*len) < INLINE_PEERS => {
                peers[usize::from(*len)] = peer;
                *len += 1;
            }
            PeersRepr::Inline { len, peers } => {
                let mut all = Vec::with_capacity(INLINE_PEERS * 2);
                all.extend_from_slice(&peers[..usize::from(*len)]);
                all.push(peer);
                self.0 = PeersRepr::Heap(all);
            }
            PeersRepr::Heap(all) => all.push(peer),
        }
    }

    /// Keeps the peers `keep` accepts, in order; back inline once they fit.
    pub fn retain(&mut self, mut keep: impl FnMut(&Peer) -> bool) {
        let kept: Peers = self.iter().copied().filter(|p| keep(p)).collect();
        *self = kept;
    }
}

impl Default for Peers {
    fn default() -> Self {
        Peers::new()
    }
}

impl Deref for Peers {
    type Target = [Peer];

    fn deref(&self) -> &[Peer] {
        match &self.0 {
            PeersRepr::Inline { len, peers } => &peers[..usize::from(*len)],
            PeersRepr::Heap(all) => all,
        }
    }
}

impl DerefMut for Peers {
    fn deref_mut(&mut self) -> &mut [Peer] {
        match &mut self.0 {
            PeersRepr::Inline { len, peers } => &mut peers[..usize::from(*len)],
            PeersRepr::Heap(all) => all,
        }
    }
}

impl FromIterator<Peer> for Peers {
    fn from_iter<I: IntoIterator<Item = Peer>>(iter: I) -> Self {
        let mut out = Peers::new();
        for p in iter {
            out.push(p);
        }
        out
    }
}

impl From<Vec<Peer>> for Peers {
    fn from(all: Vec<Peer>) -> Self {
        all.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a Peers {
    type Item = &'a Peer;
    type IntoIter = std::slice::Iter<'a, Peer>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a> IntoIterator for &'a mut Peers {
    type Item = &'a mut Peer;
    type IntoIter = std::slice::IterMut<'a, Peer>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl PartialEq for Peers {
    fn eq(&self, other: &Peers) -> bool {
        **self == **other
    }
}

impl Eq for Peers {}

impl fmt::Debug for Peers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Peers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// A region (`metapb.Region` plus the statistics of its last heartbeat). Its boundaries and peers
/// are stored inline, so a region with three peers and TiDB-sized keys is one fixed-size value.
#[derive(Debug, Clone, Serialize)]
pub struct Region {
    /// Region id.
    pub id: u64,
    /// Replicas.
    pub peers: Peers,
    /// Id of the leader peer, if PD knows one.
    pub leader: Option<u64>,
    /// Approximate size in MiB.
    pub approximate_size: u64,
    /// Peers the leader reported down in its last heartbeat.
    pub down_peers: Vec<DownPeer>,
    /// Peers the leader reported as lagging (pending) in its last heartbeat.
    pub pending_peers: Vec<Peer>,
    /// Start key (raw bytes; rendered as upper-case hex). Empty is unbounded.
    pub start_key: Key,
    /// End key (raw bytes). Empty is unbounded.
    pub end_key: Key,
    /// Epoch: bumped on membership changes.
    pub conf_ver: u64,
    /// Epoch: bumped on splits and merges.
    pub version: u64,
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

    /// Whether `key` falls in the region's range.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.start_key.as_slice() <= key && (self.end_key.is_empty() || key < self.end_key.as_slice())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_peers_stay_inline_and_compact() {
        assert_eq!(std::mem::size_of::<Key>(), 24);
        assert_eq!(std::mem::size_of::<Peers>(), 80);
        let short = Key::from(vec![1u8; 18]);
        let long = Key::from(vec![2u8; 40]);
        assert!(matches!(short.0, KeyRepr::Inline { .. }));
        assert!(matches!(long.0, KeyRepr::Heap(_)));
        assert!(short < long && Key::EMPTY < short);
        assert_eq!(long.len(), 40);
        assert_eq!(serde_json::to_string(&Key::from(&[1u8, 255][..])).unwrap(), "[1,255]");

        let peer = |id| Peer { id, store_id: id * 10, role: PeerRole::Voter };
        let mut peers: Peers = (1..=3).map(peer).collect();
        assert!(matches!(peers.0, PeersRepr::Inline { len: 3, .. }));
        peers.push(peer(4));
        assert!(matches!(peers.0, PeersRepr::Heap(_)));
        assert_eq!(peers.iter().map(|p| p.id).collect::<Vec<_>>(), [1, 2, 3, 4]);
        peers.retain(|p| p.id != 2);
        assert!(matches!(peers.0, PeersRepr::Inline { len: 3, .. }));
        assert_eq!(peers.iter().map(|p| p.id).collect::<Vec<_>>(), [1, 3, 4]);
        peers[0].role = PeerRole::Learner;
        assert_eq!(serde_json::to_value(&peers).unwrap()[0]["role"], "Learner");
    }
}
