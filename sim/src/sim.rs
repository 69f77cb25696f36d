//! The simulation: builds a cluster from a [`ClusterSpec`] and advances it in ticks of simulated time.
//!
//! Timings follow TiKV and PD (and PD's own `tools/pd-simulator`): a tick is 100 ms, stores heartbeat
//! every 10 s, regions every 60 s; PD derives `Disconnected` after 20 s and `Down` after
//! `max-store-down-time` without a heartbeat (`pkg/core/store.go`); a Raft election moves leadership off
//! a dead store after about 10 s; the leader reports a silent peer in `down_peers` after 10 min
//! (`raftstore.max-peer-down-duration`).

use std::collections::HashMap;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::config::{ConfigError, PdServerConfig, ReplicationConfig, ScheduleConfig, set_item};
use crate::model::{DownPeer, Key, Label, PdMember, Peer, PeerRole, Peers, Region, Scheduler, Store, StoreState};
use crate::regions::RegionList;

/// Simulated milliseconds per tick.
pub const TICK_MS: u64 = 100;
/// Store heartbeat interval (TiKV `pd-heartbeat-tick-interval`).
pub const STORE_HEARTBEAT_MS: u64 = 10_000;
/// Region heartbeat interval (TiKV `pd-heartbeat-tick-interval` for regions).
pub const REGION_HEARTBEAT_MS: u64 = 60_000;
/// PD's `storeDisconnectDuration`.
pub const STORE_DISCONNECT_MS: u64 = 20_000;
/// Raft election after the leader's store is lost (10 election ticks of 1 s).
pub const ELECTION_TIMEOUT_MS: u64 = 10_000;
/// `raftstore.max-peer-down-duration`.
pub const MAX_PEER_DOWN_MS: u64 = 600_000;
/// etcd leader election among PD members after the leader is lost.
pub const PD_ELECTION_MS: u64 = 3_000;
/// Default disk capacity of a store: 1 TiB, as in PD's simulator.
pub const DEFAULT_CAPACITY: u64 = 1 << 40;
/// PD's default store limit (operations per minute) for adding and for removing peers.
pub const DEFAULT_STORE_LIMIT: f64 = 15.0;
/// Bytes in a MiB.
pub const MIB: u64 = 1 << 20;

/// Which reply `GET /region/id/{id}` gives for a region that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MissingRegionReply {
    /// PD v8.5.0 and older: `200` with the empty region.
    EmptyRegion,
    /// PD master: `404 "[PD:region:ErrRegionNotFound]region N not found"`.
    NotFound,
}

/// What cluster to build.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterSpec {
    /// Number of TiKV stores.
    pub stores: usize,
    /// Number of PD members.
    pub pd_members: usize,
    /// Number of regions.
    pub regions: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Wall-clock unix time (ms) that simulated time 0 maps to; `None` takes the current time.
    pub start_unix_ms: Option<u64>,
    /// Reply for a missing region id.
    pub missing_region_reply: MissingRegionReply,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            stores: 6,
            pd_members: 3,
            regions: 1000,
            seed: 1,
            start_unix_ms: None,
            missing_region_reply: MissingRegionReply::EmptyRegion,
        }
    }
}

/// Counts PD derives for a store from the regions it holds (and the store's flow): the totals
/// the region list keeps per store.
pub type StoreStats = crate::regions::StoreTotals;

/// Error returned by fault and configuration functions.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SimError {
    /// No store with this id.
    #[error("store {0} not found")]
    StoreNotFound(u64),
    /// No region with this id.
    #[error("region {0} not found")]
    RegionNotFound(u64),
    /// No PD member with this name.
    #[error("pd member {0} not found")]
    MemberNotFound(String),
    /// No active fault with this id.
    #[error("fault {0} not found among the active faults")]
    FaultNotFound(u64),
    /// A fault's parameters make no sense (e.g. a ratio above 1).
    #[error("{0}")]
    InvalidFault(String),
    /// The fault clashes with the cluster's state or another active fault (e.g. killing a dead store).
    #[error("{0}")]
    FaultConflict(String),
}

/// Why PD refused a change to a store's state, with PD's error text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreOpError {
    /// No such store (`404`).
    #[error("[PD:core:ErrStoreNotFound]store {0} not found")]
    NotFound(u64),
    /// The store is a Tombstone (`410`).
    #[error("[PD:core:ErrStoreRemoved]store {0} has been removed")]
    Removed(u64),
    /// Removing the store would leave too few Up stores (`400`).
    #[error(
        "[PD:core:ErrStoresNotEnough]can not remove store {id} since the number of up stores would be {up} while need {need}"
    )]
    NotEnough {
        /// The store.
        id: u64,
        /// Up stores left after the removal.
        up: u64,
        /// max-replicas.
        need: u64,
    },
    /// Any other refusal (`400`), e.g. `invalid state X`.
    #[error("{0}")]
    Invalid(String),
}

/// The whole simulated cluster and its clock.
#[derive(Debug, Clone, Serialize)]
pub struct Simulation {
    /// The spec it was built from.
    pub spec: ClusterSpec,
    /// Simulated milliseconds since start.
    pub now_ms: u64,
    /// Unix time (ms) of simulated time 0.
    pub start_unix_ms: u64,
    /// Ticks run so far.
    pub ticks: u64,
    /// PD cluster id.
    pub cluster_id: u64,
    /// PD members.
    pub members: Vec<PdMember>,
    /// Index into `members` of the PD leader.
    pub pd_leader: Option<usize>,
    /// Simulated time (ms) at which the PD members elect a leader.
    pub pd_election_due_ms: Option<u64>,
    /// Stores, ordered by id.
    pub stores: Vec<Store>,
    /// Regions, ordered by start key, indexed by id.
    pub regions: RegionList,
    /// Region ids by the tick of the minute at which their leader sends the region heartbeat; a
    /// region keeps its tick whatever splits around it, and a new region reports on the next tick.
    #[serde(skip)]
    pub(crate) heartbeat_slots: Vec<Vec<u64>>,
    /// Replication config.
    pub replication: ReplicationConfig,
    /// Schedule config.
    pub schedule: ScheduleConfig,
    /// `pd-server` config.
    pub pd_server: PdServerConfig,
    /// Schedulers, in creation order.
    pub schedulers: Vec<Scheduler>,
    /// Running operators, one per region at most.
    pub operators: Vec<crate::operator::Operator>,
    /// Operators finished within the last 10 minutes.
    pub finished_operators: Vec<crate::operator::Operator>,
    /// Simulated time (ms) of the next replica-checker and scheduler round.
    pub next_patrol_ms: u64,
    /// Current interval (ms) between those rounds.
    pub patrol_interval_ms: u64,
    /// Add-peer tokens of each store's limit.
    pub add_peer_tokens: std::collections::BTreeMap<u64, f64>,
    /// Next id of PD's id allocator.
    pub next_id: u64,
    /// Injected faults: the active ones and the history (ground truth, not visible through PD).
    pub faults: crate::faults::FaultBook,
    /// Accumulated TiKV and PD counters, store loads and removal progress (`crate::stats`).
    #[serde(skip)]
    pub telemetry: crate::stats::Telemetry,
    #[serde(skip)]
    rng: ChaCha8Rng,
}

/// Encodes a TiDB table prefix `t{table_id}` as a memcomparable key, as PD shows region boundaries.
fn table_key(table_id: u64) -> Vec<u8> {
    let mut raw = vec![b't'];
    // TiDB flips the sign bit so that signed ids sort as unsigned bytes.
    raw.extend_from_slice(&(table_id ^ (1 << 63)).to_be_bytes());
    let mut out = Vec::with_capacity(18);
    for chunk in raw.chunks(8) {
        let mut group = [0u8; 8];
        group[..chunk.len()].copy_from_slice(chunk);
        out.extend_from_slice(&group);
        // Memcomparable marker: 0xFF for a full group, 0xFF minus the padding otherwise.
        out.push(0xFF - (8 - chunk.len()) as u8);
    }
    out
}

impl Simulation {
    /// Builds the cluster: stores, members, and regions whose three peers are spread over the stores
    /// with balanced region and leader counts. Deterministic for a given spec.
    pub fn new(spec: ClusterSpec) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        let start_unix_ms = spec.start_unix_ms.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
        });
        // PD cluster ids are large and time-derived; a seeded value in the same range looks the same.
        let cluster_id = 7_000_000_000_000_000_000 + rng.random_range(0..1_000_000_000_000_000_000);
        let members = (0..spec.pd_members)
            .map(|i| PdMember {
                name: format!("pd-{i}"),
                member_id: rng.random(),
                client_url: String::new(),
                peer_url: format!("http://pd-{i}:2380"),
                alive: true,
            })
            .collect::<Vec<_>>();
        let stores = (1..=spec.stores as u64)
            .map(|id| Store {
                id,
                address: format!("tikv-{id}:20160"),
                status_address: String::new(),
                labels: vec![
                    Label { key: "zone".into(), value: format!("z{}", (id - 1) % 3 + 1) },
                    Label { key: "host".into(), value: format!("tikv-{id}") },
                ],
                version: "8.5.0".into(),
                git_hash: "ba73b0d92a9f7cb8e8a7b3c4d1e2f0a9b8c7d6e5".into(),
                deploy_path: format!("/tikv-{id}/bin"),
                state: StoreState::Up,
                capacity: DEFAULT_CAPACITY,
                base_used: 2 << 30,
                started_at_ms: 0,
                last_heartbeat_ms: Some(0),
                // Stagger heartbeats over the interval as real stores do.
                next_heartbeat_ms: (id - 1) * STORE_HEARTBEAT_MS / spec.stores.max(1) as u64 + TICK_MS,
                alive: true,
                killed_at_ms: None,
                election_due_ms: None,
                leader_weight: 1.0,
                region_weight: 1.0,
                slow_score: 1,
                add_peer_limit: DEFAULT_STORE_LIMIT,
                remove_peer_limit: DEFAULT_STORE_LIMIT,
                partitioned: false,
                disk_slowdown: 1.0,
            })
            .collect::<Vec<_>>();
        let mut sim = Simulation {
            spec: spec.clone(),
            now_ms: 0,
            start_unix_ms,
            ticks: 0,
            cluster_id,
            members,
            pd_leader: if spec.pd_members > 0 { Some(0) } else { None },
            pd_election_due_ms: None,
            stores,
            regions: RegionList::with_capacity(spec.regions),
            heartbeat_slots: vec![Vec::new(); (REGION_HEARTBEAT_MS / TICK_MS) as usize],
            replication: ReplicationConfig::default(),
            schedule: ScheduleConfig::default(),
            pd_server: PdServerConfig::default(),
            schedulers: [
                "balance-leader-scheduler",
                "balance-region-scheduler",
                "balance-hot-region-scheduler",
                "evict-slow-store-scheduler",
            ]
            .iter()
            .map(|n| Scheduler { name: (*n).into(), store_ids: vec![], paused_until_ms: None })
            .collect(),
            operators: Vec::new(),
            finished_operators: Vec::new(),
            add_peer_tokens: Default::default(),
            next_patrol_ms: 0,
            patrol_interval_ms: 0,
            next_id: spec.stores as u64 + 1,
            faults: Default::default(),
            telemetry: Default::default(),
            rng,
        };
        sim.build_regions();
        sim
    }

    fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn build_regions(&mut self) {
        let n = self.spec.regions;
        let replicas = (self.replication.max_replicas as usize).min(self.stores.len());
        let store_ids: Vec<u64> = self.stores.iter().map(|s| s.id).collect();
        let mut region_counts = vec![0u64; store_ids.len()];
        let mut leader_counts = region_counts.clone();
        let mut candidates: Vec<usize> = Vec::with_capacity(store_ids.len());
        let mut chosen: Vec<(u64, usize, usize)> = Vec::with_capacity(replicas + 1);
        for i in 0..n {
            let start_key = if i == 0 { Key::EMPTY } else { Key::from(table_key(100 + i as u64)) };
            let end_key = if i + 1 == n { Key::EMPTY } else { Key::from(table_key(101 + i as u64)) };
            let region_id = self.alloc_id();
            // Choose the least-loaded stores, breaking ties randomly, so counts stay balanced: the
            // first `replicas` stores of a random order stably sorted by region count, picked
            // without sorting them all.
            candidates.clear();
            candidates.extend(0..store_ids.len());
            candidates.shuffle(&mut self.rng);
            chosen.clear();
            for (rank, &slot) in candidates.iter().enumerate() {
                let key = (region_counts[slot], rank, slot);
                if chosen.len() < replicas || chosen.last().is_some_and(|last| key < *last) {
                    let at = chosen.partition_point(|c| *c < key);
                    chosen.insert(at, key);
                    chosen.truncate(replicas);
                }
            }
            let mut peers = Peers::new();
            for &(_, _, slot) in &chosen {
                region_counts[slot] += 1;
                let id = self.alloc_id();
                peers.push(Peer { id, store_id: store_ids[slot], role: PeerRole::Voter });
            }
            let slot_of = |store_id: u64| store_ids.binary_search(&store_id).unwrap_or_default();
            let leader = peers.iter().min_by_key(|p| (leader_counts[slot_of(p.store_id)], p.id)).copied();
            if let Some(peer) = leader {
                leader_counts[slot_of(peer.store_id)] += 1;
            }
            // One region in fifty is empty (at most 1 MiB, PD's empty-region): TiDB gives every table
            // its own region however small, pre-split regions wait for their first writes, and a
            // dropped or truncated table leaves its regions empty until PD's merge checker, which the
            // simulator does not run, folds them into their neighbours. They grow out of it slowly
            // (see `split::grow`). The rest spread up to the 96 MiB split size.
            let approximate_size = if self.rng.random_ratio(1, 50) { 1 } else { self.rng.random_range(8..=96) };
            let approximate_keys = approximate_size * self.rng.random_range(8_000..12_000);
            // A skewed workload: most regions see little traffic, a few percent are busy.
            let busy = self.rng.random_ratio(1, 30);
            let write_rate = if busy { self.rng.random_range(64..512) } else { self.rng.random_range(0..32) } << 10;
            let read_rate = if busy { self.rng.random_range(256..2048) } else { self.rng.random_range(0..128) } << 10;
            let slots = self.heartbeat_slots.len();
            self.heartbeat_slots[i % slots].push(region_id);
            self.regions.push(Region {
                id: region_id,
                start_key,
                end_key,
                conf_ver: replicas as u64,
                version: 1 + self.rng.random_range(0..8),
                peers,
                leader: leader.map(|p| p.id),
                down_peers: Vec::new(),
                pending_peers: Vec::new(),
                approximate_size,
                approximate_keys,
                written_bytes: 0,
                read_bytes: 0,
                written_keys: 0,
                read_keys: 0,
                write_rate,
                read_rate,
                hot_write_degree: 0,
                hot_read_degree: 0,
                last_heartbeat_ms: 0,
            });
        }
    }

    /// Advances the simulation by one tick.
    pub fn tick(&mut self) {
        self.regions.refresh();
        self.now_ms += TICK_MS;
        self.ticks += 1;
        let now = self.now_ms;
        for store in &mut self.stores {
            let reaches_pd = store.alive && !store.partitioned;
            if reaches_pd && store.state != StoreState::Tombstone && now >= store.next_heartbeat_ms {
                store.last_heartbeat_ms = Some(now);
                store.next_heartbeat_ms = now + STORE_HEARTBEAT_MS;
            }
        }
        self.update_slow_scores();
        let due: Vec<u64> =
            self.stores.iter().filter(|s| s.election_due_ms.is_some_and(|t| now >= t)).map(|s| s.id).collect();
        for store_id in due {
            self.elect_leaders_away_from(store_id);
            if let Some(store) = self.store_mut(store_id) {
                store.election_due_ms = None;
            }
        }
        self.region_heartbeats();
        self.operator_tick();
        crate::stats::tick(self);
        if self.pd_election_due_ms.is_some_and(|t| now >= t) {
            self.pd_election_due_ms = None;
            self.elect_pd_leader();
        }
        self.regions.refresh();
    }

    /// Advances the simulation by `ms` of simulated time (whole ticks).
    pub fn advance(&mut self, ms: u64) {
        for _ in 0..ms.div_ceil(TICK_MS) {
            self.tick();
        }
    }

    /// The heartbeat slot of the current tick.
    pub(crate) fn heartbeat_slot(&self) -> usize {
        (self.ticks % self.heartbeat_slots.len() as u64) as usize
    }

    /// Each tick a slice of the regions heartbeats, so that every region reports once per interval
    /// and a tick costs a fixed fraction of the regions.
    fn region_heartbeats(&mut self) {
        let slot = self.heartbeat_slot();
        let now = self.now_ms;
        // Killed and partitioned stores, with the time their peers went silent.
        let dead = self.cut_off_stores();
        let lag_chances = self.follower_lag_chances();
        let ids = std::mem::take(&mut self.heartbeat_slots[slot]);
        let mut kept = Vec::with_capacity(ids.len());
        for id in ids {
            // Merged regions are gone; their ids leave the slot.
            let Some(leader_store) = self.regions.by_id(id).map(|r| r.leader_store()) else { continue };
            kept.push(id);
            // Only a reachable leader sends heartbeats; otherwise PD keeps the last report.
            let Some(leader_store) = leader_store else { continue };
            if dead.contains_key(&leader_store) {
                continue;
            }
            let Some(region) = self.regions.by_id_mut(id) else { continue };
            crate::workload::report_flow(region, now);
            crate::faults::report_lagging_followers(region, &lag_chances, now);
            if dead.is_empty() && region.down_peers.is_empty() {
                continue;
            }
            region.down_peers = region
                .peers
                .iter()
                .filter_map(|p| {
                    let since = dead.get(&p.store_id)?;
                    let silent = now.saturating_sub(*since);
                    (silent >= MAX_PEER_DOWN_MS).then_some(DownPeer { peer: *p, down_seconds: silent / 1000 })
                })
                .collect();
        }
        self.heartbeat_slots[slot] = kept;
    }

    /// Raft election in every region led from `store_id` whose other voters still form a majority.
    fn elect_leaders_away_from(&mut self, store_id: u64) {
        // A partitioned store is as lost to its Raft groups as a dead one.
        if self.store(store_id).is_none_or(|s| s.reachable()) {
            return;
        }
        let alive: Vec<bool> = self.stores.iter().map(|s| s.reachable()).collect();
        let mut leaders: Vec<u64> = self.store_stats_by_slot().iter().map(|s| s.leader_count).collect();
        let lost = self.store_slot(store_id);
        let slots: Vec<u64> = self.stores.iter().map(|s| s.id).collect();
        let slot_of = |id: u64| slots.binary_search(&id).ok();
        // Only the regions it led hold an election; the facts find them without reading the rest.
        let led: Vec<usize> = match self.regions.with_facts() {
            Some(all) => all
                .enumerate()
                .filter(|(_, (f, r))| f.leader_store().unwrap_or_else(|| r.leader_store()) == Some(store_id))
                .map(|(i, _)| i)
                .collect(),
            None => self
                .regions
                .iter()
                .enumerate()
                .filter(|(_, r)| r.leader_store() == Some(store_id))
                .map(|(i, _)| i)
                .collect(),
        };
        for i in led {
            let region = &mut self.regions[i];
            let voters = region.peers.iter().filter(|p| p.role == PeerRole::Voter);
            let live = voters.clone().filter(|p| slot_of(p.store_id).is_some_and(|i| alive[i]));
            if live.clone().count() * 2 <= voters.count() {
                // No quorum: nobody can win, and PD keeps the last leader it heard of.
                continue;
            }
            // The least-loaded live voter wins, which matches how leaders end up spread in practice.
            let load = |p: &Peer| slot_of(p.store_id).map_or(0, |i| leaders[i]);
            if let Some(winner) = live.min_by_key(|p| (load(p), p.id)).copied() {
                if let Some(i) = slot_of(winner.store_id) {
                    leaders[i] += 1;
                }
                if let Some(i) = lost {
                    leaders[i] = leaders[i].saturating_sub(1);
                }
                region.leader = Some(winner.id);
            }
        }
    }

    fn elect_pd_leader(&mut self) {
        let alive = self.members.iter().filter(|m| m.alive).count();
        if alive * 2 > self.members.len() {
            self.pd_leader = self.members.iter().position(|m| m.alive);
        }
    }

    /// Kills a TiKV store's process: it stops heartbeating and answering, and its leaders are
    /// re-elected elsewhere after the election timeout.
    pub fn kill_store(&mut self, id: u64) -> Result<(), SimError> {
        let now = self.now_ms;
        let store = self.store_mut(id).ok_or(SimError::StoreNotFound(id))?;
        if store.alive {
            store.alive = false;
            store.killed_at_ms = Some(now);
            store.election_due_ms = Some(now + ELECTION_TIMEOUT_MS);
        }
        self.wake_patrol();
        Ok(())
    }

    /// Restarts a killed store: it heartbeats on the next tick; its peers catch up and stop being down
    /// at their regions' next heartbeat. Leadership does not come back by itself.
    pub fn restart_store(&mut self, id: u64) -> Result<(), SimError> {
        let now = self.now_ms;
        let store = self.store_mut(id).ok_or(SimError::StoreNotFound(id))?;
        if !store.alive {
            store.alive = true;
            store.killed_at_ms = None;
            store.election_due_ms = None;
            store.started_at_ms = now;
            store.next_heartbeat_ms = now;
        }
        self.wake_patrol();
        Ok(())
    }

    /// PD's `RemoveStore` (`server/cluster/cluster.go`): an Up store becomes Offline unless that would
    /// leave fewer Up stores than max-replicas (skipped with `force`); Offline stays Offline.
    pub fn remove_store(&mut self, id: u64, force: bool) -> Result<(), StoreOpError> {
        let max_replicas = self.replication.max_replicas;
        let up = self.stores.iter().filter(|s| s.state == StoreState::Up).count() as u64;
        let store = self.store_mut(id).ok_or(StoreOpError::NotFound(id))?;
        match store.state {
            StoreState::Tombstone => Err(StoreOpError::Removed(id)),
            StoreState::Offline => Ok(()),
            StoreState::Up => {
                if !force && up.saturating_sub(1) < max_replicas {
                    return Err(StoreOpError::NotEnough { id, up: up.saturating_sub(1), need: max_replicas });
                }
                store.state = StoreState::Offline;
                self.wake_patrol();
                Ok(())
            }
        }
    }

    /// PD's `UpStore`: cancels an offline; a Tombstone cannot come back.
    pub fn up_store(&mut self, id: u64) -> Result<(), StoreOpError> {
        let store = self.store_mut(id).ok_or(StoreOpError::NotFound(id))?;
        match store.state {
            StoreState::Tombstone => Err(StoreOpError::Removed(id)),
            _ => {
                store.state = StoreState::Up;
                self.wake_patrol();
                Ok(())
            }
        }
    }

    /// Stops a PD member. PD loses its leader if the member led or if fewer than a majority still run;
    /// the running members elect a new one when they form a majority.
    pub fn kill_pd_member(&mut self, name: &str) -> Result<(), SimError> {
        let idx = self.member_index(name)?;
        self.members[idx].alive = false;
        let alive = self.members.iter().filter(|m| m.alive).count();
        // etcd's leader steps down once it no longer hears from a majority.
        if self.pd_leader == Some(idx) || alive * 2 <= self.members.len() {
            self.pd_leader = None;
        }
        if self.pd_leader.is_none() {
            self.pd_election_due_ms = Some(self.now_ms + PD_ELECTION_MS);
        }
        Ok(())
    }

    /// Starts a stopped PD member; a leaderless PD elects a leader once a majority runs.
    pub fn restart_pd_member(&mut self, name: &str) -> Result<(), SimError> {
        let idx = self.member_index(name)?;
        self.members[idx].alive = true;
        if self.pd_leader.is_none() {
            self.pd_election_due_ms = Some(self.now_ms + PD_ELECTION_MS);
        }
        Ok(())
    }

    /// Moves PD leadership at once (an etcd leader transfer) to `next`, or with `None` to the first
    /// other running member. Fails when there is no leader or no such running member.
    pub fn transfer_pd_leader(&mut self, next: Option<&str>) -> Result<(), SimError> {
        let current = self.pd_leader.ok_or_else(|| SimError::MemberNotFound("leader".into()))?;
        let target = match next {
            Some(name) => {
                let idx = self.member_index(name)?;
                if !self.members[idx].alive || idx == current {
                    return Err(SimError::MemberNotFound(name.into()));
                }
                idx
            }
            None => (1..self.members.len())
                .map(|k| (current + k) % self.members.len())
                .find(|&i| self.members[i].alive)
                .ok_or_else(|| SimError::MemberNotFound("follower".into()))?,
        };
        self.pd_leader = Some(target);
        Ok(())
    }

    fn member_index(&self, name: &str) -> Result<usize, SimError> {
        self.members.iter().position(|m| m.name == name).ok_or_else(|| SimError::MemberNotFound(name.into()))
    }

    /// Index in `stores` of the store with id `id` (stores are in id order, ids usually 1..=n).
    pub fn store_slot(&self, id: u64) -> Option<usize> {
        let guess = id.wrapping_sub(1) as usize;
        if self.stores.get(guess).is_some_and(|s| s.id == id) {
            return Some(guess);
        }
        self.stores.binary_search_by_key(&id, |s| s.id).ok()
    }

    /// A store by id.
    pub fn store(&self, id: u64) -> Option<&Store> {
        self.store_slot(id).map(|i| &self.stores[i])
    }

    /// A store by id, mutable.
    pub fn store_mut(&mut self, id: u64) -> Option<&mut Store> {
        self.store_slot(id).map(|i| &mut self.stores[i])
    }

    /// A region by id.
    pub fn region(&self, id: u64) -> Option<&Region> {
        self.regions.by_id(id)
    }

    /// The region containing `key` (regions are contiguous and sorted by start key).
    pub fn region_by_key(&self, key: &[u8]) -> Option<&Region> {
        let i = self.regions.partition_point(|r| r.start_key.as_slice() <= key);
        let region = self.regions.get(i.checked_sub(1)?)?;
        (region.end_key.is_empty() || key < region.end_key.as_slice()).then_some(region)
    }

    /// A region by id, mutable.
    pub fn region_mut(&mut self, id: u64) -> Option<&mut Region> {
        self.regions.by_id_mut(id)
    }

    /// PD's derived state name (`pkg/core/store.go`): Tombstone and Offline as persisted; an Up store
    /// is `Down` past `max-store-down-time`, else `Disconnected` past 20 s without a heartbeat.
    pub fn state_name(&self, store: &Store) -> &'static str {
        match store.state {
            StoreState::Tombstone => "Tombstone",
            StoreState::Offline => "Offline",
            StoreState::Up => {
                let silent = self.now_ms.saturating_sub(store.last_heartbeat_ms.unwrap_or(0));
                if silent > self.schedule.max_store_down_time_ms() {
                    "Down"
                } else if silent > STORE_DISCONNECT_MS {
                    "Disconnected"
                } else {
                    "Up"
                }
            }
        }
    }

    /// Leader and region counts and sizes of every store, derived from the regions.
    pub fn store_stats(&self) -> HashMap<u64, StoreStats> {
        self.stores.iter().map(|s| s.id).zip(self.store_stats_by_slot()).collect()
    }

    /// [`Simulation::store_stats`] as a vector parallel to `stores`: the totals the region list
    /// keeps when it is fresh, else the same totals counted in one pass over the regions.
    pub fn store_stats_by_slot(&self) -> Vec<StoreStats> {
        let recounted;
        let totals = match self.regions.store_totals() {
            Some(totals) => totals,
            None => {
                recounted = crate::regions::count_store_totals(self.regions.iter());
                &recounted
            }
        };
        self.stores.iter().map(|s| totals.get(&s.id).copied().unwrap_or_default()).collect()
    }

    /// Bytes used on a store: its region data plus a fixed overhead, capped at capacity.
    pub fn used_bytes(&self, store: &Store, stats: &StoreStats) -> u64 {
        (store.base_used + stats.region_size * MIB).min(store.capacity)
    }

    /// Unix nanoseconds of a simulated time.
    pub fn unix_ns(&self, sim_ms: u64) -> u128 {
        u128::from(self.start_unix_ms + sim_ms) * 1_000_000
    }

    /// `POST /config`: each key is `section.item` or a bare item looked up in schedule, replication and
    /// pd-server; all items are checked before any is applied.
    pub fn update_config(&mut self, items: &serde_json::Map<String, serde_json::Value>) -> Result<(), ConfigError> {
        let mut schedule = self.schedule.clone();
        let mut replication = self.replication.clone();
        let mut pd_server = self.pd_server.clone();
        for (key, value) in items {
            let (section, item) = match key.split_once('.') {
                Some((section, item)) => (Some(section), item),
                None => (None, key.as_str()),
            };
            let found = match section {
                Some("schedule") => set_item(&mut schedule, item, value)?,
                Some("replication") => set_item(&mut replication, item, value)?,
                Some("pd-server") => set_item(&mut pd_server, item, value)?,
                Some(_) => false,
                None => {
                    set_item(&mut schedule, item, value)?
                        || set_item(&mut replication, item, value)?
                        || set_item(&mut pd_server, item, value)?
                }
            };
            if !found {
                return Err(ConfigError::NotFound(key.clone()));
            }
        }
        self.schedule = schedule;
        self.replication = replication;
        self.pd_server = pd_server;
        self.wake_patrol();
        Ok(())
    }

    /// The setting for replies about missing regions.
    pub fn set_missing_region_reply(&mut self, reply: MissingRegionReply) {
        self.spec.missing_region_reply = reply;
    }

    /// Records the bound status address of a store.
    pub fn set_status_address(&mut self, id: u64, addr: String) {
        if let Some(store) = self.store_mut(id) {
            store.status_address = addr;
        }
    }

    /// Records the bound client URL of a PD member.
    pub fn set_client_url(&mut self, index: usize, url: String) {
        if let Some(member) = self.members.get_mut(index) {
            member.client_url = url;
        }
    }

    /// A JSON snapshot of the cluster state, for comparing runs.
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ClusterSpec {
        ClusterSpec { start_unix_ms: Some(1_700_000_000_000), ..ClusterSpec::default() }
    }

    #[test]
    fn regions_are_balanced_and_keys_contiguous() {
        let sim = Simulation::new(spec());
        assert_eq!(sim.regions.len(), 1000);
        let stats = sim.store_stats();
        for s in stats.values() {
            assert_eq!(s.region_count, 500);
            assert!((166..=167).contains(&s.leader_count), "{s:?}");
        }
        assert!(sim.regions[0].start_key.is_empty());
        assert!(sim.regions[999].end_key.is_empty());
        for (a, b) in sim.regions.iter().zip(sim.regions.iter().skip(1)) {
            assert_eq!(a.end_key, b.start_key);
        }
        for r in &sim.regions {
            let mut stores: Vec<u64> = r.peers.iter().map(|p| p.store_id).collect();
            stores.dedup();
            stores.sort();
            stores.dedup();
            assert_eq!(stores.len(), 3);
        }
    }

    #[test]
    fn table_keys_are_memcomparable() {
        assert_eq!(crate::units::hex_upper(&table_key(5)), "7480000000000000FF0500000000000000F8");
    }
}
