//! Wire shapes of PD's replies, field order as in PD's Go structs and protobuf messages
//! (`pkg/response/store.go`, `pkg/response/region.go`, `pdpb.Member`). Protobuf fields are
//! `omitempty`, so zero enums and empty lists are skipped rather than written as `0` or `[]`.

use serde::Serialize;

use crate::model::{PdMember, Peer, PeerRole, Region, Store};
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
    /// Key-value size without RocksDB overhead: about nine tenths of the on-disk size (MiB).
    fn kv_size(approximate_size: u64) -> u64 {
        approximate_size * 9 / 10
    }

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
            approximate_kv_size: RegionView::kv_size(r.approximate_size),
        }
    }
}

/// A region listing, `{"count":N,"regions":[…]}`, encoded by hand into one buffer: each region
/// exactly as [`RegionView`] serialises (a test holds the bytes equal), straight from the model.
///
/// A check at a million regions can list tens of thousands of them (about 500 bytes each); going
/// through serde builds nothing per region either, but writes field by field through a generic
/// formatter and grows its buffer by doubling, which made such a reply cost more than the scan that
/// selected the regions. The output holds hex keys, numbers and fixed names only, so it has no `<`,
/// `>` or `&` for Go's HTML escaping to change.
pub fn encode_regions(regions: &[&Region]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"{\"count\":");
    push_u64(&mut out, regions.len() as u64);
    out.extend_from_slice(b",\"regions\":[");
    for (i, region) in regions.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let before = out.len();
        encode_region(&mut out, region);
        if i == 0 {
            // Regions of a listing are alike: size the buffer once from the first.
            out.reserve((out.len() - before + 1) * (regions.len() - 1) + 2);
        }
    }
    out.extend_from_slice(b"]}");
    out
}

/// One region as [`RegionView`] serialises it.
fn encode_region(out: &mut Vec<u8>, r: &Region) {
    out.extend_from_slice(b"{\"id\":");
    push_u64(out, r.id);
    out.extend_from_slice(b",\"start_key\":\"");
    push_hex(out, &r.start_key);
    out.extend_from_slice(b"\",\"end_key\":\"");
    push_hex(out, &r.end_key);
    out.extend_from_slice(b"\",\"epoch\":{");
    let mut field = Fields::default();
    field.u64_omitempty(out, "conf_ver", r.conf_ver);
    field.u64_omitempty(out, "version", r.version);
    out.push(b'}');
    if !r.peers.is_empty() {
        out.extend_from_slice(b",\"peers\":");
        push_peers(out, &r.peers);
    }
    out.extend_from_slice(b",\"leader\":");
    match r.leader_peer() {
        Some(leader) => push_peer(out, leader),
        None => out.extend_from_slice(b"{\"role_name\":\"\"}"),
    }
    if !r.down_peers.is_empty() {
        out.extend_from_slice(b",\"down_peers\":[");
        for (i, d) in r.down_peers.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"peer\":");
            push_peer(out, &d.peer);
            out.extend_from_slice(b",\"down_seconds\":");
            push_u64(out, d.down_seconds);
            out.push(b'}');
        }
        out.push(b']');
    }
    if !r.pending_peers.is_empty() {
        out.extend_from_slice(b",\"pending_peers\":");
        push_peers(out, &r.pending_peers);
    }
    out.extend_from_slice(b",\"cpu_usage\":0");
    for (name, value) in [
        ("written_bytes", r.written_bytes),
        ("read_bytes", r.read_bytes),
        ("written_keys", r.written_keys),
        ("read_keys", r.read_keys),
        ("approximate_size", r.approximate_size),
        ("approximate_keys", r.approximate_keys),
        ("approximate_kv_size", RegionView::kv_size(r.approximate_size)),
    ] {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        push_u64(out, value);
    }
    out.push(b'}');
}

/// Commas between the fields of an object whose every field may be omitted.
#[derive(Default)]
struct Fields {
    any: bool,
}

impl Fields {
    /// `"name":value`, unless `value` is zero.
    fn u64_omitempty(&mut self, out: &mut Vec<u8>, name: &str, value: u64) {
        if value == 0 {
            return;
        }
        if std::mem::replace(&mut self.any, true) {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        push_u64(out, value);
    }
}

/// A peer as [`PeerView`] serialises it.
fn push_peer(out: &mut Vec<u8>, p: &Peer) {
    let learner = p.role == PeerRole::Learner;
    out.extend_from_slice(if learner {
        b"{\"role_name\":\"Learner\",\"is_learner\":true"
    } else {
        b"{\"role_name\":\"Voter\""
    });
    // The role name came first, so every later field follows a comma.
    for (name, value) in [("id", p.id), ("store_id", p.store_id), ("role", u64::from(learner))] {
        if value != 0 {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            push_u64(out, value);
        }
    }
    out.push(b'}');
}

fn push_peers(out: &mut Vec<u8>, peers: &[Peer]) {
    out.push(b'[');
    for (i, p) in peers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_peer(out, p);
    }
    out.push(b']');
}

/// Upper-case hex, as PD prints region keys.
fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0F)]);
    }
}

/// A number in decimal, two digits at a time.
fn push_u64(out: &mut Vec<u8>, mut value: u64) {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    while value >= 100 {
        let pair = (value % 100) as usize * 2;
        value /= 100;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if value >= 10 {
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[value as usize * 2..value as usize * 2 + 2]);
    } else {
        at -= 1;
        digits[at] = b'0' + value as u8;
    }
    out.extend_from_slice(&digits[at..]);
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
    use crate::model::DownPeer;
    use crate::sim::{ClusterSpec, Simulation};

    #[test]
    fn hand_encoded_regions_are_the_views_bytes() {
        let mut sim = Simulation::new(ClusterSpec { regions: 20, ..ClusterSpec::default() });
        let r = &mut sim.regions[3];
        r.pending_peers.push(r.peers[1]);
        r.down_peers.push(DownPeer { peer: r.peers[2], down_seconds: 601 });
        r.down_peers.push(DownPeer { peer: r.peers[1], down_seconds: 0 });
        sim.regions[4].leader = None;
        sim.regions[5].start_key = crate::model::Key::from(vec![0xAB; 90]);
        sim.regions[6].peers[1].role = PeerRole::Learner;
        sim.regions[7].conf_ver = 0;
        sim.regions[8].version = 0;
        sim.regions[8].conf_ver = 0;
        sim.regions[9].peers = crate::model::Peers::new();
        sim.regions[10].approximate_size = u64::MAX / 10;
        sim.regions[11].written_bytes = u64::MAX;
        let all: Vec<&Region> = sim.regions.iter().collect();
        for n in [0, 1, all.len()] {
            let owned =
                RegionsView { count: n, regions: Some(all[..n].iter().map(|r| RegionView::from(*r)).collect()) };
            let encoded = encode_regions(&all[..n]);
            assert_eq!(String::from_utf8(encoded).unwrap(), serde_json::to_string(&owned).unwrap());
        }
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 10, 99, 100, 101, 999, 1000, 65_536, 1_234_567_890, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
