//! The workload: each region carries a write and a read rate; every region heartbeat reports the
//! bytes and keys of its interval (with deterministic noise), and PD's hot-region statistics
//! (`pkg/statistics/hot_peer_cache.go`) mark a region hot after consecutive reports above the minimum
//! hot thresholds. The hotspot endpoints and store rates are derived from these figures.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::Region;
use crate::sim::{REGION_HEARTBEAT_MS, SimError, Simulation};
use crate::units::{GoFloat, format_rfc3339_ns};

/// Average key-value size, turning byte rates into key rates.
pub const AVG_KV_BYTES: u64 = 256;
/// PD's minimum hot write byte rate (`minHotThresholds`), bytes per second.
pub const HOT_WRITE_BYTES: u64 = 1 << 10;
/// PD's minimum hot read byte rate, bytes per second.
pub const HOT_READ_BYTES: u64 = 8 << 10;
/// A region counts as hot in the hotspot API once it has been hot this many heartbeats in a row
/// (`hot-region-cache-hits-threshold`).
pub const HOT_DEGREE_SHOWN: u64 = 3;
/// PD's hot peer cache ranks each store's peers and keeps as hot only those above the minimum hot
/// thresholds and `HotThresholdRatio` (0.8) times the `TopNN`-th (60th) largest flow of the store
/// (`pkg/statistics/hot_peer_cache.go`, `calcHotThresholds`): every store lists its own hottest
/// peers, about 60 however many it holds, whatever the other stores carry.
const TOP_N: usize = 60;
/// See [`TOP_N`].
const HOT_THRESHOLD_RATIO: f64 = 0.8;

/// SplitMix64: cheap deterministic noise that needs no shared random generator.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A factor in [0.8, 1.2) for a region at a time.
fn noise(region_id: u64, now_ms: u64, salt: u64) -> f64 {
    0.8 + (mix(region_id ^ now_ms.rotate_left(17) ^ salt) % 4000) as f64 / 10_000.0
}

/// Fills the flow figures of one region heartbeat.
pub(crate) fn report_flow(region: &mut Region, now_ms: u64) {
    let secs = REGION_HEARTBEAT_MS / 1000;
    region.written_bytes = (region.write_rate as f64 * secs as f64 * noise(region.id, now_ms, 1)) as u64;
    region.read_bytes = (region.read_rate as f64 * secs as f64 * noise(region.id, now_ms, 2)) as u64;
    region.written_keys = region.written_bytes / AVG_KV_BYTES;
    region.read_keys = region.read_bytes / AVG_KV_BYTES;
    region.last_heartbeat_ms = now_ms;
    crate::split::grow(region, now_ms);
    let hot = |bytes: u64, threshold: u64| bytes / secs >= threshold;
    region.hot_write_degree = if hot(region.written_bytes, HOT_WRITE_BYTES) { region.hot_write_degree + 1 } else { 0 };
    region.hot_read_degree = if hot(region.read_bytes, HOT_READ_BYTES) { region.hot_read_degree + 1 } else { 0 };
}

/// Which flow a hotspot query is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Writes, replicated to every peer.
    Write,
    /// Reads, served by the leader.
    Read,
}

/// One hot peer (`HotPeerStatShow`).
#[derive(Debug, Serialize)]
pub struct HotPeerView {
    store_id: u64,
    region_id: u64,
    hot_degree: u64,
    flow_bytes: GoFloat,
    flow_keys: GoFloat,
    flow_query: GoFloat,
    anti_count: u64,
    is_leader: bool,
    last_update_time: String,
}

/// Hot peers of one store (`StoreHotPeersStat`).
#[derive(Debug, Serialize, Default)]
pub struct StoreHotView {
    store_bytes: GoFloat,
    store_keys: GoFloat,
    store_query: GoFloat,
    total_flow_bytes: GoFloat,
    total_flow_keys: GoFloat,
    total_flow_query: GoFloat,
    regions_count: usize,
    statistics: Vec<HotPeerView>,
}

/// `GET /hotspot/regions/{write|read}`.
#[derive(Debug, Serialize)]
pub struct HotRegionsView {
    as_peer: BTreeMap<String, StoreHotView>,
    as_leader: BTreeMap<String, StoreHotView>,
}

/// `GET /hotspot/stores`.
#[derive(Debug, Serialize)]
pub struct HotStoresView {
    #[serde(rename = "bytes-write-rate")]
    bytes_write_rate: BTreeMap<String, GoFloat>,
    #[serde(rename = "bytes-read-rate")]
    bytes_read_rate: BTreeMap<String, GoFloat>,
    #[serde(rename = "keys-write-rate")]
    keys_write_rate: BTreeMap<String, GoFloat>,
    #[serde(rename = "keys-read-rate")]
    keys_read_rate: BTreeMap<String, GoFloat>,
    #[serde(rename = "query-write-rate")]
    query_write_rate: BTreeMap<String, GoFloat>,
    #[serde(rename = "query-read-rate")]
    query_read_rate: BTreeMap<String, GoFloat>,
}

/// Per-store rates (bytes per second) from the last region heartbeats: (write as peer, read as leader).
pub fn store_rates(sim: &Simulation) -> BTreeMap<u64, (f64, f64)> {
    let secs = (REGION_HEARTBEAT_MS / 1000) as f64;
    let stats = sim.store_stats_by_slot();
    sim.stores
        .iter()
        .zip(stats)
        .map(|(s, t)| (s.id, (t.written_bytes as f64 / secs, t.read_bytes as f64 / secs)))
        .collect()
}

impl Simulation {
    /// Sets a region's write rate (bytes per second), e.g. to make it a hot write region.
    pub fn set_write_rate(&mut self, region_id: u64, bytes_per_sec: u64) -> Result<(), SimError> {
        let region = self.region_mut(region_id).ok_or(SimError::RegionNotFound(region_id))?;
        region.write_rate = bytes_per_sec;
        Ok(())
    }

    /// Sets a region's read rate (bytes per second).
    pub fn set_read_rate(&mut self, region_id: u64, bytes_per_sec: u64) -> Result<(), SimError> {
        let region = self.region_mut(region_id).ok_or(SimError::RegionNotFound(region_id))?;
        region.read_rate = bytes_per_sec;
        Ok(())
    }

    /// The hot regions PD would show for a flow: hot for at least three reports in a row and among
    /// the hottest peers of their store (see [`TOP_N`]).
    pub fn hot_regions(&self, flow: Flow) -> HotRegionsView {
        let secs = (REGION_HEARTBEAT_MS / 1000) as f64;
        let rate = |r: &Region| match flow {
            Flow::Write => r.written_bytes as f64 / secs,
            Flow::Read => r.read_bytes as f64 / secs,
        };
        let degree = |r: &Region| match flow {
            Flow::Write => r.hot_write_degree,
            Flow::Read => r.hot_read_degree,
        };
        let hot: Vec<&Region> = self.regions.iter().filter(|r| degree(r) >= HOT_DEGREE_SHOWN).collect();
        // Each store's threshold: reads count on the leader, writes on every peer.
        let mut per_store: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for region in &hot {
            let leader = region.leader_store();
            for peer in region.peers.iter().filter(|p| flow == Flow::Write || leader == Some(p.store_id)) {
                per_store.entry(peer.store_id).or_default().push(rate(region));
            }
        }
        let thresholds: BTreeMap<u64, f64> = per_store
            .into_iter()
            .map(|(store, mut rates)| {
                if rates.len() <= TOP_N {
                    return (store, 0.0);
                }
                let (_, nth, _) = rates.select_nth_unstable_by(TOP_N - 1, |a, b| b.total_cmp(a));
                (store, *nth * HOT_THRESHOLD_RATIO)
            })
            .collect();
        let listed = |store: u64, bytes: f64| bytes >= thresholds.get(&store).copied().unwrap_or(0.0);
        let store_rates = store_rates(self);
        let store_load = |id: u64| {
            let (w, r) = store_rates.get(&id).copied().unwrap_or_default();
            if flow == Flow::Write { w } else { r }
        };
        let mut view = HotRegionsView { as_peer: BTreeMap::new(), as_leader: BTreeMap::new() };
        for region in hot {
            let bytes = rate(region);
            let keys = bytes / AVG_KV_BYTES as f64;
            let leader = region.leader_store();
            for peer in &region.peers {
                let is_leader = leader == Some(peer.store_id);
                // Reads are served by the leader only; writes reach every peer.
                if (flow == Flow::Read && !is_leader) || !listed(peer.store_id, bytes) {
                    continue;
                }
                let mut maps = vec![&mut view.as_peer];
                if is_leader {
                    maps.push(&mut view.as_leader);
                }
                for map in maps {
                    let stat = map.entry(peer.store_id.to_string()).or_default();
                    let load = store_load(peer.store_id);
                    stat.store_bytes = GoFloat(load);
                    stat.store_keys = GoFloat(load / AVG_KV_BYTES as f64);
                    stat.store_query = GoFloat(load / AVG_KV_BYTES as f64);
                    stat.total_flow_bytes.0 += bytes;
                    stat.total_flow_keys.0 += keys;
                    stat.total_flow_query.0 += keys;
                    stat.regions_count += 1;
                    stat.statistics.push(HotPeerView {
                        store_id: peer.store_id,
                        region_id: region.id,
                        hot_degree: degree(region),
                        flow_bytes: GoFloat(bytes),
                        flow_keys: GoFloat(keys),
                        flow_query: GoFloat(keys),
                        anti_count: 2,
                        is_leader,
                        last_update_time: format_rfc3339_ns(self.unix_ns(region.last_heartbeat_ms)),
                    });
                }
            }
        }
        view
    }

    /// Per-store flow rates, as `GET /hotspot/stores` shows them.
    pub fn hot_stores(&self) -> HotStoresView {
        let rates = store_rates(self);
        let map = |f: &dyn Fn(&(f64, f64)) -> f64| -> BTreeMap<String, GoFloat> {
            rates.iter().map(|(id, r)| (id.to_string(), GoFloat(f(r)))).collect()
        };
        let kv = AVG_KV_BYTES as f64;
        HotStoresView {
            bytes_write_rate: map(&|r| r.0),
            bytes_read_rate: map(&|r| r.1),
            keys_write_rate: map(&|r| r.0 / kv),
            keys_read_rate: map(&|r| r.1 / kv),
            query_write_rate: map(&|r| r.0 / kv),
            query_read_rate: map(&|r| r.1 / kv),
        }
    }
}
