//! Wire shapes of PD's replies, field order as in PD's Go structs and protobuf messages
//! (`pkg/response/store.go`, `pkg/response/region.go`, `pdpb.Member`). Protobuf fields are
//! `omitempty`, so zero enums and empty lists are skipped rather than written as `0` or `[]`.

use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};

use crate::model::{DownPeer, PdMember, Peer, PeerRole, Region, Store};
use crate::sim::{Simulation, StoreStats};
use crate::units::{GoFloat, format_bytes, format_duration_ns, format_rfc3339_ns, hex_upper};

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

/// `metapb.StoreLabel`.
#[derive(Serialize)]
pub struct LabelView {
    key: String,
    value: String,
}

/// `metapb.Store` plus PD's `state_name`.
#[derive(Serialize)]
pub struct MetaStoreView {
    id: u64,
    address: String,
    #[serde(skip_serializing_if = "is_zero_i32")]
    state: i32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    labels: Vec<LabelView>,
    version: String,
    status_address: String,
    git_hash: String,
    start_timestamp: i64,
    deploy_path: String,
    last_heartbeat: i64,
    #[serde(skip_serializing_if = "is_zero_i32")]
    node_state: i32,
    state_name: String,
}

/// PD's `StoreStatus`.
#[derive(Serialize)]
pub struct StoreStatusView {
    capacity: String,
    available: String,
    used_size: String,
    leader_count: u64,
    leader_weight: GoFloat,
    leader_score: GoFloat,
    leader_size: u64,
    region_count: u64,
    region_weight: GoFloat,
    region_score: GoFloat,
    region_size: u64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    learner_count: u64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pending_peer_count: u64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    slow_score: u64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    sending_snap_count: u64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    receiving_snap_count: u64,
    #[serde(skip_serializing_if = "is_false")]
    is_busy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_ts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_heartbeat_ts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uptime: Option<String>,
}

/// PD's `StoreInfo`: `{"store":…,"status":…}`.
#[derive(Serialize)]
pub struct StoreInfoView {
    store: MetaStoreView,
    status: StoreStatusView,
}

/// `{"count":N,"stores":[…]}`.
#[derive(Serialize)]
pub struct StoresView {
    /// Number of stores listed.
    pub count: usize,
    /// The stores.
    pub stores: Vec<StoreInfoView>,
}

/// Builds the StoreInfo PD renders for `store`.
pub fn store_info(sim: &Simulation, store: &Store, stats: &StoreStats) -> StoreInfoView {
    let used = sim.used_bytes(store, stats);
    let last_hb = store.last_heartbeat_ms.unwrap_or(0);
    let start_ns = sim.unix_ns(store.started_at_ms);
    let hb_ns = sim.unix_ns(last_hb);
    let uptime_ns = hb_ns.saturating_sub(start_ns);
    StoreInfoView {
        store: MetaStoreView {
            id: store.id,
            address: store.address.clone(),
            state: store.state.as_i32(),
            labels: store.labels.iter().map(|l| LabelView { key: l.key.clone(), value: l.value.clone() }).collect(),
            version: store.version.clone(),
            status_address: store.status_address.clone(),
            git_hash: store.git_hash.clone(),
            start_timestamp: (start_ns / 1_000_000_000) as i64,
            deploy_path: store.deploy_path.clone(),
            last_heartbeat: hb_ns as i64,
            node_state: store.state.node_state(),
            state_name: sim.state_name(store).to_string(),
        },
        status: StoreStatusView {
            capacity: format_bytes(store.capacity),
            available: format_bytes(store.capacity - used),
            used_size: format_bytes(used),
            leader_count: stats.leader_count,
            leader_weight: GoFloat(store.leader_weight),
            leader_score: GoFloat(stats.leader_count as f64 / store.leader_weight.max(1e-6)),
            leader_size: stats.leader_size,
            region_count: stats.region_count,
            region_weight: GoFloat(store.region_weight),
            region_score: GoFloat(stats.region_size as f64 / store.region_weight.max(1e-6)),
            region_size: stats.region_size,
            learner_count: stats.learner_count,
            pending_peer_count: stats.pending_peer_count,
            slow_score: store.slow_score,
            sending_snap_count: 0,
            receiving_snap_count: 0,
            is_busy: false,
            start_ts: Some(format_rfc3339_ns(start_ns)),
            last_heartbeat_ts: store.last_heartbeat_ms.map(|_| format_rfc3339_ns(hb_ns)),
            uptime: (uptime_ns > 0).then(|| format_duration_ns(uptime_ns)),
        },
    }
}

/// PD's region `MetaPeer`: role name first, then the `metapb.Peer` fields.
#[derive(Serialize, Default)]
pub struct PeerView {
    role_name: &'static str,
    #[serde(skip_serializing_if = "is_false")]
    is_learner: bool,
    #[serde(skip_serializing_if = "is_zero_u64")]
    id: u64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    store_id: u64,
    #[serde(skip_serializing_if = "is_zero_i32")]
    role: i32,
}

impl From<&Peer> for PeerView {
    fn from(p: &Peer) -> Self {
        let learner = p.role == PeerRole::Learner;
        PeerView {
            role_name: if learner { "Learner" } else { "Voter" },
            is_learner: learner,
            id: p.id,
            store_id: p.store_id,
            role: i32::from(learner),
        }
    }
}

/// `pdpb.PeerStats`.
#[derive(Serialize)]
pub struct DownPeerView {
    peer: PeerView,
    down_seconds: u64,
}

/// `metapb.RegionEpoch`.
#[derive(Serialize)]
pub struct EpochView {
    #[serde(skip_serializing_if = "is_zero_u64")]
    conf_ver: u64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    version: u64,
}

/// PD's `RegionInfo` response.
#[derive(Serialize)]
pub struct RegionView {
    id: u64,
    start_key: String,
    end_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<EpochView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    peers: Vec<PeerView>,
    leader: PeerView,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    down_peers: Vec<DownPeerView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pending_peers: Vec<PeerView>,
    cpu_usage: u64,
    written_bytes: u64,
    read_bytes: u64,
    written_keys: u64,
    read_keys: u64,
    approximate_size: u64,
    approximate_keys: u64,
    approximate_kv_size: u64,
}

impl RegionView {
    /// The empty region PD v8.5 returns for an unknown id.
    pub fn empty() -> Self {
        RegionView {
            id: 0,
            start_key: String::new(),
            end_key: String::new(),
            epoch: None,
            peers: vec![],
            leader: PeerView::default(),
            down_peers: vec![],
            pending_peers: vec![],
            cpu_usage: 0,
            written_bytes: 0,
            read_bytes: 0,
            written_keys: 0,
            read_keys: 0,
            approximate_size: 0,
            approximate_keys: 0,
            approximate_kv_size: 0,
        }
    }
}

impl From<&Region> for RegionView {
    fn from(r: &Region) -> Self {
        RegionView {
            id: r.id,
            start_key: hex_upper(&r.start_key),
            end_key: hex_upper(&r.end_key),
            epoch: Some(EpochView { conf_ver: r.conf_ver, version: r.version }),
            peers: r.peers.iter().map(PeerView::from).collect(),
            leader: r.leader_peer().map(PeerView::from).unwrap_or_default(),
            down_peers: r
                .down_peers
                .iter()
                .map(|d| DownPeerView { peer: PeerView::from(&d.peer), down_seconds: d.down_seconds })
                .collect(),
            pending_peers: r.pending_peers.iter().map(PeerView::from).collect(),
            cpu_usage: 0,
            written_bytes: r.written_bytes,
            read_bytes: r.read_bytes,
            written_keys: r.written_keys,
            read_keys: r.read_keys,
            approximate_size: r.approximate_size,
            approximate_keys: r.approximate_keys,
            // Key-value size without RocksDB overhead: about nine tenths of the on-disk size.
            approximate_kv_size: r.approximate_size * 9 / 10,
        }
    }
}

/// A region key as upper-case hex, encoded without an allocation for keys up to 64 bytes.
struct HexKey<'a>(&'a [u8]);

impl Serialize for HexKey<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        let mut buf = [0u8; 128];
        if self.0.len() * 2 > buf.len() {
            return serializer.serialize_str(&hex_upper(self.0));
        }
        for (i, &b) in self.0.iter().enumerate() {
            buf[2 * i] = DIGITS[usize::from(b >> 4)];
            buf[2 * i + 1] = DIGITS[usize::from(b & 0x0F)];
        }
        let text = std::str::from_utf8(&buf[..self.0.len() * 2]).unwrap_or_default();
        serializer.serialize_str(text)
    }
}

/// A list of peers, each as [`PeerView`].
struct PeersRef<'a>(&'a [Peer]);

impl Serialize for PeersRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for p in self.0 {
            seq.serialize_element(&PeerView::from(p))?;
        }
        seq.end()
    }
}

/// Down peers, each as [`DownPeerView`].
struct DownPeersRef<'a>(&'a [DownPeer]);

impl Serialize for DownPeersRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for d in self.0 {
            seq.serialize_element(&DownPeerView { peer: PeerView::from(&d.peer), down_seconds: d.down_seconds })?;
        }
        seq.end()
    }
}

/// A region encoded as [`RegionView`] is, straight from the model: no copy of its keys or peers,
/// so a reply listing thousands of regions costs no allocation per region.
pub struct RegionRef<'a>(pub &'a Region);

impl Serialize for RegionRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut st = serializer.serialize_struct("RegionView", 17)?;
        st.serialize_field("id", &r.id)?;
        st.serialize_field("start_key", &HexKey(&r.start_key))?;
        st.serialize_field("end_key", &HexKey(&r.end_key))?;
        st.serialize_field("epoch", &EpochView { conf_ver: r.conf_ver, version: r.version })?;
        if !r.peers.is_empty() {
            st.serialize_field("peers", &PeersRef(&r.peers))?;
        }
        st.serialize_field("leader", &r.leader_peer().map(PeerView::from).unwrap_or_default())?;
        if !r.down_peers.is_empty() {
            st.serialize_field("down_peers", &DownPeersRef(&r.down_peers))?;
        }
        if !r.pending_peers.is_empty() {
            st.serialize_field("pending_peers", &PeersRef(&r.pending_peers))?;
        }
        st.serialize_field("cpu_usage", &0u64)?;
        st.serialize_field("written_bytes", &r.written_bytes)?;
        st.serialize_field("read_bytes", &r.read_bytes)?;
        st.serialize_field("written_keys", &r.written_keys)?;
        st.serialize_field("read_keys", &r.read_keys)?;
        st.serialize_field("approximate_size", &r.approximate_size)?;
        st.serialize_field("approximate_keys", &r.approximate_keys)?;
        st.serialize_field("approximate_kv_size", &(r.approximate_size * 9 / 10))?;
        st.end()
    }
}

/// `{"count":N,"regions":[…]}` over borrowed regions.
pub struct RegionsRef<'a> {
    /// The regions, in reply order.
    pub regions: Vec<&'a Region>,
}

impl Serialize for RegionsRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct List<'b>(&'b [&'b Region]);
        impl Serialize for List<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
                for r in self.0 {
                    seq.serialize_element(&RegionRef(r))?;
                }
                seq.end()
            }
        }
        let mut st = serializer.serialize_struct("RegionsView", 2)?;
        st.serialize_field("count", &self.regions.len())?;
        st.serialize_field("regions", &List(&self.regions))?;
        st.end()
    }
}

/// `{"count":N,"regions":[…]}` (or `null` regions for `/regions/count`).
#[derive(Serialize)]
pub struct RegionsView {
    /// Number of regions.
    pub count: usize,
    /// The regions, `None` rendering as `null`.
    pub regions: Option<Vec<RegionView>>,
}

/// `pdpb.Member`.
#[derive(Serialize)]
pub struct MemberView {
    name: String,
    member_id: u64,
    peer_urls: Vec<String>,
    client_urls: Vec<String>,
    deploy_path: String,
    binary_version: String,
    git_hash: String,
}

impl From<&PdMember> for MemberView {
    fn from(m: &PdMember) -> Self {
        MemberView {
            name: m.name.clone(),
            member_id: m.member_id,
            peer_urls: vec![m.peer_url.clone()],
            client_urls: vec![m.client_url.clone()],
            deploy_path: format!("/{}/bin", m.name),
            binary_version: PD_VERSION.into(),
            git_hash: PD_GIT_HASH.into(),
        }
    }
}

/// PD release version reported by `/version`, `/status` and members.
pub const PD_VERSION: &str = "v8.5.0";
/// PD git hash reported by `/status` and members.
pub const PD_GIT_HASH: &str = "8b5f9f8c2e4a1d3b7c6e5f4a3b2c1d0e9f8a7b6c";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{ClusterSpec, Simulation};

    #[test]
    fn borrowed_regions_encode_as_the_views_do() {
        let mut sim = Simulation::new(ClusterSpec { regions: 20, ..ClusterSpec::default() });
        let r = &mut sim.regions[3];
        r.pending_peers.push(r.peers[1]);
        r.down_peers.push(DownPeer { peer: r.peers[2], down_seconds: 601 });
        sim.regions[4].leader = None;
        sim.regions[5].start_key = crate::model::Key::from(vec![0xAB; 90]);
        for r in sim.regions.iter() {
            let borrowed = serde_json::to_string(&RegionRef(r)).unwrap();
            assert_eq!(borrowed, serde_json::to_string(&RegionView::from(r)).unwrap());
        }
        let all: Vec<&Region> = sim.regions.iter().collect();
        let owned = RegionsView { count: all.len(), regions: Some(all.iter().map(|r| RegionView::from(*r)).collect()) };
        assert_eq!(
            serde_json::to_string(&RegionsRef { regions: all }).unwrap(),
            serde_json::to_string(&owned).unwrap()
        );
    }
}
