//! What the metrics endpoints and the progress API report, accumulated per tick.
//!
//! Store loads (request and byte rates, region and leader counts, region sizes) come from a rolling
//! pass over the regions: each tick folds a hundredth of them into a partial sum, so a full pass takes
//! 10 simulated seconds (one store heartbeat) and a tick costs O(regions / 100) with no allocation.
//! From those loads each running store accumulates TiKV's counters every tick: gRPC requests by type
//! with a latency histogram, failures, scheduler-busy rejections, storage commands and CPU seconds.
//! Counters only grow. Latency follows the store's load (a queueing factor), its disk slowdown and
//! its slow score, so a slow disk shows as a higher p99.

use std::collections::{BTreeMap, VecDeque};

use crate::model::StoreState;
use crate::sim::{Simulation, TICK_MS};
use crate::split::REGION_SPLIT_SIZE_MIB;
use crate::workload::AVG_KV_BYTES;

/// Ticks of one rolling pass over the regions.
const PASS_TICKS: usize = 100;
/// Requests per second a healthy store serves before queueing dominates.
pub const STORE_QPS_CAPACITY: f64 = 100_000.0;
/// Spread (sigma of the log) of the log-normal request latency.
const LATENCY_SIGMA: f64 = 0.6;
/// Removal progress keeps this many pass samples (about a minute) to measure its speed.
const PROGRESS_SAMPLES: usize = 7;

/// gRPC message types TiKV reports, with the share of read or written keys each carries, keys per
/// request, median latency (seconds) of a healthy idle store, and whether it waits on the disk.
pub const GRPC_TYPES: [GrpcType; 6] = [
    GrpcType { name: "kv_get", write: false, key_share: 0.3, keys_per_req: 1.0, median: 0.000_4 },
    GrpcType { name: "kv_batch_get", write: false, key_share: 0.2, keys_per_req: 16.0, median: 0.000_8 },
    GrpcType { name: "kv_scan", write: false, key_share: 0.1, keys_per_req: 64.0, median: 0.001_2 },
    GrpcType { name: "coprocessor", write: false, key_share: 0.4, keys_per_req: 256.0, median: 0.003 },
    GrpcType { name: "kv_prewrite", write: true, key_share: 1.0, keys_per_req: 4.0, median: 0.001_5 },
    GrpcType { name: "kv_commit", write: true, key_share: 1.0, keys_per_req: 4.0, median: 0.001_2 },
];

/// Storage command types and the gRPC type (index into [`GRPC_TYPES`]) that issues them.
pub const STORAGE_COMMANDS: [(&str, usize); 5] =
    [("get", 0), ("batch_get", 1), ("scan", 2), ("prewrite", 4), ("commit", 5)];

/// Scheduler commands that can be rejected as too busy, with their gRPC type index.
pub const BUSY_COMMANDS: [(&str, usize); 2] = [("prewrite", 4), ("commit", 5)];

/// Upper bounds (seconds) of TiKV's gRPC duration buckets: `exponential_buckets(0.00005, 2, 22)`.
pub fn duration_buckets() -> [f64; 22] {
    let mut out = [0.0; 22];
    for (i, b) in out.iter_mut().enumerate() {
        *b = 0.000_05 * f64::from(1u32 << i);
    }
    out
}

/// One gRPC message type.
#[derive(Debug, Clone, Copy)]
pub struct GrpcType {
    /// The `type` label.
    pub name: &'static str,
    /// Whether it is a write (driven by written keys and the disk).
    pub write: bool,
    /// Share of the store's read or written keys it carries.
    pub key_share: f64,
    /// Keys per request.
    pub keys_per_req: f64,
    /// Median latency (seconds) on a healthy, idle store.
    pub median: f64,
}

/// A store's load, summed over its regions by the rolling pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreLoad {
    /// Store id.
    pub store_id: u64,
    /// Bytes per second read from regions the store leads.
    pub leader_read_bps: f64,
    /// Bytes per second written to regions the store leads (before replication).
    pub leader_write_bps: f64,
    /// Bytes per second applied by the store's peers.
    pub peer_write_bps: f64,
    /// Sum of the sizes (MiB) of the regions with a peer on the store.
    pub region_size_mib: u64,
    /// Peers on the store.
    pub region_count: u64,
    /// Leaders on the store.
    pub leader_count: u64,
    /// Read bytes per second of the hot-read regions the store leads (as last reported).
    pub hot_read_bps: f64,
    /// Written bytes per second of the hot-write regions with a peer on the store (as last reported).
    pub hot_write_bps: f64,
}

/// A cumulative histogram plus count and sum. Observations are added to `pending` under the current
/// latency distribution and folded into the buckets only when the distribution changes, so a tick
/// costs a few additions per series.
#[derive(Debug, Clone)]
pub struct Histogram {
    count: f64,
    sum: f64,
    buckets: [f64; 22],
    pending: f64,
    median: f64,
    cdf: [f64; 22],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { count: 0.0, sum: 0.0, buckets: [0.0; 22], pending: 0.0, median: 0.0, cdf: [0.0; 22] }
    }
}

impl Histogram {
    fn observe(&mut self, count: f64, median: f64) {
        if count <= 0.0 {
            return;
        }
        if self.median <= 0.0 || (median / self.median - 1.0).abs() > 0.02 {
            self.fold();
            self.median = median;
            let bounds = duration_buckets();
            for (c, le) in self.cdf.iter_mut().zip(bounds) {
                *c = normal_cdf((le.ln() - median.ln()) / LATENCY_SIGMA);
            }
        }
        self.pending += count;
        self.count += count;
        // Mean of a log-normal: the median times exp(sigma^2 / 2).
        self.sum += count * median * (LATENCY_SIGMA * LATENCY_SIGMA / 2.0).exp();
    }

    fn fold(&mut self) {
        for (b, c) in self.buckets.iter_mut().zip(self.cdf) {
            *b += self.pending * c;
        }
        self.pending = 0.0;
    }

    /// Observations so far (whole requests).
    pub fn count(&self) -> u64 {
        self.count as u64
    }

    /// Sum of the observed latencies, seconds.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Cumulative bucket counts (whole requests), never above the count and never decreasing with `le`.
    pub fn cumulative(&self) -> [u64; 22] {
        let mut out = [0u64; 22];
        let mut floor = 0u64;
        for (i, o) in out.iter_mut().enumerate() {
            let v = (self.buckets[i] + self.pending * self.cdf[i]).min(self.count) as u64;
            floor = floor.max(v);
            *o = floor;
        }
        out
    }
}

/// Standard normal CDF via erf (Abramowitz and Stegun 7.1.26, error below 1.5e-7).
fn normal_cdf(x: f64) -> f64 {
    let z = x / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z.abs());
    let poly =
        t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-z * z).exp();
    0.5 * (1.0 + if z >= 0.0 { erf } else { -erf })
}

/// TiKV's counters for one store.
#[derive(Debug, Clone, Default)]
pub struct StoreCounters {
    /// `tikv_grpc_msg_duration_seconds` by [`GRPC_TYPES`].
    pub grpc: [Histogram; 6],
    /// `tikv_grpc_msg_fail_total` by [`GRPC_TYPES`].
    pub grpc_fail: [f64; 6],
    /// `tikv_scheduler_too_busy_total` by [`BUSY_COMMANDS`].
    pub too_busy: [f64; 2],
    /// `tikv_storage_command_total` by [`STORAGE_COMMANDS`].
    pub commands: [f64; 5],
    /// `process_cpu_seconds_total`.
    pub cpu_seconds: f64,
}

/// Progress of a store being removed, as PD's progress manager tracks it.
#[derive(Debug, Clone)]
struct Removal {
    start_size: f64,
    current: f64,
    samples: VecDeque<(u64, f64)>,
}

/// A store's progress as `GET /stores/progress` reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoreProgress {
    /// `removing` or `preparing`.
    pub action: &'static str,
    /// Done share, 0 to 1.
    pub progress: f64,
    /// MiB per second over the last minute.
    pub current_speed: f64,
    /// Seconds left at the current speed (`f64::MAX` while it stands still, as PD reports).
    pub left_seconds: f64,
}

/// Accumulated counters and derived loads; lives in [`Simulation::telemetry`].
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// TiKV's `coprocessor.region-split-size` (MiB): a region past it splits in two.
    pub region_split_size_mib: u64,
    pass_cursor: usize,
    partial: Vec<StoreLoad>,
    loads: Vec<StoreLoad>,
    counters: BTreeMap<u64, StoreCounters>,
    operator_counts: BTreeMap<(String, &'static str), u64>,
    removals: BTreeMap<u64, Removal>,
    /// Where the next balance-region round starts scanning.
    pub(crate) balance_cursor: usize,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            region_split_size_mib: REGION_SPLIT_SIZE_MIB,
            pass_cursor: 0,
            partial: Vec::new(),
            loads: Vec::new(),
            counters: BTreeMap::new(),
            operator_counts: BTreeMap::new(),
            removals: BTreeMap::new(),
            balance_cursor: 0,
        }
    }
}

impl Telemetry {
    /// Counts an operator event (`create`, `finish`, `cancel`, `replace`) for `pd_schedule_operators_count`.
    pub(crate) fn count_operator(&mut self, desc: &str, event: &'static str) {
        *self.operator_counts.entry((desc.to_string(), event)).or_default() += 1;
    }

    /// `pd_schedule_operators_count` by (operator description, event).
    pub fn operator_counts(&self) -> &BTreeMap<(String, &'static str), u64> {
        &self.operator_counts
    }

    /// A store's counters, once it has run for a tick.
    pub fn counters(&self, store_id: u64) -> Option<&StoreCounters> {
        self.counters.get(&store_id)
    }

    /// A store's load from the last complete pass (loads are in store-id order).
    pub fn load(&self, store_id: u64) -> Option<&StoreLoad> {
        self.loads.binary_search_by_key(&store_id, |l| l.store_id).ok().map(|i| &self.loads[i])
    }

    /// Every store's load from the last complete pass, in store-id order.
    pub fn loads(&self) -> &[StoreLoad] {
        &self.loads
    }

    /// Region size (MiB) of a store from the last complete pass; 0 before the first.
    pub fn region_size_mib(&self, store_id: u64) -> u64 {
        self.load(store_id).map(|l| l.region_size_mib).unwrap_or(0)
    }
}

/// Requests per second of each gRPC type for a load.
pub fn request_rates(load: &StoreLoad) -> [f64; 6] {
    let read_keys = load.leader_read_bps / AVG_KV_BYTES as f64;
    let write_keys = load.leader_write_bps / AVG_KV_BYTES as f64;
    let mut out = [0.0; 6];
    for (o, t) in out.iter_mut().zip(GRPC_TYPES) {
        let keys = if t.write { write_keys } else { read_keys };
        *o = keys * t.key_share / t.keys_per_req;
    }
    out
}

/// Median latency (seconds) of gRPC type `t` on a store with `qps` requests per second, a disk
/// `disk_slowdown` times slower than normal, and TiKV's `slow_score`.
pub fn latency_median(t: &GrpcType, qps: f64, disk_slowdown: f64, slow_score: u64) -> f64 {
    let slowdown = disk_slowdown.max(1.0);
    let utilisation = (qps / STORE_QPS_CAPACITY) * (1.0 + (slowdown - 1.0) * 0.5);
    // M/M/1-style queueing: latency grows as 1 / (1 - utilisation), capped short of saturation.
    let queueing = 1.0 / (1.0 - utilisation.min(0.95));
    let slow = 1.0 + slow_score.saturating_sub(1) as f64 / 33.0;
    // Writes wait on the disk; reads mostly hit the block cache.
    let disk = if t.write { slowdown } else { 1.0 + (slowdown - 1.0) * 0.3 };
    t.median * queueing * slow * disk
}

/// One tick of the stores' side: splits, the rolling load pass, and the counters.
pub(crate) fn tick(sim: &mut Simulation) {
    sim.split_oversized();
    if sim.telemetry.loads.is_empty() {
        // First tick: a full pass at once, so that counters start from real loads.
        while !load_pass_step(sim) {}
    } else if load_pass_step(sim) {
        sim.update_removals();
    }
    accumulate(sim);
}

/// Folds the next slice of regions into the partial loads; true when a pass completed.
fn load_pass_step(sim: &mut Simulation) -> bool {
    let Simulation { regions, stores, telemetry: t, schedule, .. } = sim;
    let hot_threshold = schedule.hot_region_cache_hits_threshold;
    let secs = (crate::sim::REGION_HEARTBEAT_MS / 1000) as f64;
    if t.partial.len() != stores.len() || t.partial.iter().zip(stores.iter()).any(|(l, s)| l.store_id != s.id) {
        t.partial = stores.iter().map(|s| StoreLoad { store_id: s.id, ..Default::default() }).collect();
        t.pass_cursor = 0;
    }
    let n = regions.len();
    let end = (t.pass_cursor + n.div_ceil(PASS_TICKS).max(1)).min(n);
    // Store ids are usually 1..=n in order: try the direct slot before searching.
    let slot = |id: u64| {
        let guess = id.wrapping_sub(1) as usize;
        if stores.get(guess).is_some_and(|s| s.id == id) {
            return Some(guess);
        }
        stores.binary_search_by_key(&id, |s| s.id).ok()
    };
    let begin = t.pass_cursor.min(end);
    for region in regions.iter_from(begin).take(end - begin) {
        let leader = region.leader_store();
        for peer in &region.peers {
            let Some(i) = slot(peer.store_id) else { continue };
            let l = &mut t.partial[i];
            l.region_count += 1;
            l.region_size_mib += region.approximate_size;
            l.peer_write_bps += region.write_rate as f64;
            if region.hot_write_degree >= hot_threshold {
                l.hot_write_bps += region.written_bytes as f64 / secs;
            }
            if leader == Some(peer.store_id) {
                l.leader_count += 1;
                l.leader_read_bps += region.read_rate as f64;
                l.leader_write_bps += region.write_rate as f64;
                if region.hot_read_degree >= hot_threshold {
                    l.hot_read_bps += region.read_bytes as f64 / secs;
                }
            }
        }
    }
    t.pass_cursor = end;
    if end < n {
        return false;
    }
    let fresh = stores.iter().map(|s| StoreLoad { store_id: s.id, ..Default::default() }).collect();
    t.loads = std::mem::replace(&mut t.partial, fresh);
    t.pass_cursor = 0;
    true
}

/// Adds one tick of requests, latency, failures and CPU to every running store's counters.
fn accumulate(sim: &mut Simulation) {
    let dt = TICK_MS as f64 / 1000.0;
    let Simulation { stores, telemetry: t, .. } = sim;
    for (i, store) in stores.iter().enumerate() {
        if !store.alive || store.state == StoreState::Tombstone {
            continue;
        }
        let load = match t.loads.get(i) {
            Some(l) if l.store_id == store.id => *l,
            _ => t.load(store.id).copied().unwrap_or_default(),
        };
        let rates = request_rates(&load);
        let qps: f64 = rates.iter().sum();
        let slowdown = store.disk_slowdown.max(1.0);
        let utilisation = (qps / STORE_QPS_CAPACITY) * (1.0 + (slowdown - 1.0) * 0.5);
        let c = t.counters.entry(store.id).or_default();
        for (k, gt) in GRPC_TYPES.iter().enumerate() {
            let n = rates[k] * dt;
            c.grpc[k].observe(n, latency_median(gt, qps, slowdown, store.slow_score));
            // Failures appear only past saturation or on a very slow disk.
            let fail = (utilisation - 0.95).max(0.0) * 0.2 + (slowdown - 4.0).max(0.0) * 0.000_5;
            c.grpc_fail[k] += n * fail.min(0.05);
        }
        // TiKV's scheduler rejects writes once its pending bytes pile up: under load or on a slow disk.
        let busy = ((utilisation - 0.85) * 2.0).clamp(0.0, 0.5) + ((slowdown - 2.0) * 0.02).clamp(0.0, 0.2);
        for (j, (_, k)) in BUSY_COMMANDS.iter().enumerate() {
            c.too_busy[j] += rates[*k] * dt * busy;
        }
        for (j, (_, k)) in STORAGE_COMMANDS.iter().enumerate() {
            c.commands[j] += rates[*k] * dt;
        }
        let cores = 0.1 + qps * 15e-6 + load.peer_write_bps / (1 << 20) as f64 * 0.02;
        c.cpu_seconds += cores * dt;
    }
}

impl Simulation {
    /// Records removal progress of Offline stores after each load pass.
    fn update_removals(&mut self) {
        let now = self.now_ms;
        let Simulation { stores, telemetry: t, .. } = self;
        for store in stores.iter() {
            let size = t.region_size_mib(store.id) as f64;
            match store.state {
                StoreState::Up => {
                    t.removals.remove(&store.id);
                }
                StoreState::Offline | StoreState::Tombstone => {
                    let size = if store.state == StoreState::Tombstone { 0.0 } else { size };
                    let r = t.removals.entry(store.id).or_insert_with(|| Removal {
                        start_size: size,
                        current: size,
                        samples: VecDeque::new(),
                    });
                    r.current = size;
                    r.samples.push_back((now, size));
                    while r.samples.len() > PROGRESS_SAMPLES {
                        r.samples.pop_front();
                    }
                }
            }
        }
    }

    /// `GET /stores/progress?id=N`: progress of a store being removed; `None` if there is none.
    pub fn store_progress(&mut self, id: u64) -> Option<StoreProgress> {
        let store = self.store(id)?;
        if store.state == StoreState::Up {
            return None;
        }
        if !self.telemetry.removals.contains_key(&id) {
            // Asked before the next pass: start from the exact size now.
            let size = self.store_stats().get(&id).map(|s| s.region_size).unwrap_or(0) as f64;
            let removal = Removal { start_size: size, current: size, samples: VecDeque::from([(self.now_ms, size)]) };
            self.telemetry.removals.insert(id, removal);
        }
        let r = self.telemetry.removals.get(&id)?;
        let progress =
            if r.start_size > 0.0 { ((r.start_size - r.current) / r.start_size).clamp(0.0, 1.0) } else { 1.0 };
        let speed = match (r.samples.front(), r.samples.back()) {
            (Some(a), Some(b)) if b.0 > a.0 => ((a.1 - b.1) / ((b.0 - a.0) as f64 / 1000.0)).max(0.0),
            _ => 0.0,
        };
        let left = if progress >= 1.0 {
            0.0
        } else if speed > 0.0 {
            r.current / speed
        } else {
            f64::MAX
        };
        Some(StoreProgress { action: "removing", progress, current_speed: speed, left_seconds: left })
    }

    /// `GET /stores/progress?action=…`: the average over the stores with that action.
    pub fn action_progress(&mut self, action: &str) -> Option<StoreProgress> {
        if action != "removing" {
            return None;
        }
        let ids: Vec<u64> = self.stores.iter().filter(|s| s.state == StoreState::Offline).map(|s| s.id).collect();
        let all: Vec<StoreProgress> = ids.into_iter().filter_map(|id| self.store_progress(id)).collect();
        if all.is_empty() {
            return None;
        }
        let n = all.len() as f64;
        let progress = all.iter().map(|p| p.progress).sum::<f64>() / n;
        let speed = all.iter().map(|p| p.current_speed).sum::<f64>() / n;
        let left = all.iter().map(|p| p.left_seconds).fold(0.0, f64::max);
        Some(StoreProgress { action: "removing", progress, current_speed: speed, left_seconds: left })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_cdf_is_close() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-6);
        assert!((normal_cdf(2.326) - 0.99).abs() < 1e-3);
        assert!(normal_cdf(-8.0) < 1e-6);
    }

    #[test]
    fn histogram_buckets_stay_consistent() {
        let mut h = Histogram::default();
        h.observe(1000.0, 0.001);
        h.observe(500.0, 0.01);
        let c = h.cumulative();
        assert!(c.windows(2).all(|w| w[0] <= w[1]));
        assert!(c[21] <= h.count());
        assert_eq!(h.count(), 1500);
    }
}
