//! Operators and PD's replica checker (`pkg/schedule/operator`, `pkg/schedule/checker/replica_checker.go`).
//!
//! An operator is a list of steps run over simulated time, one operator per region: adding a peer
//! creates a learner that is pending while its snapshot streams at the store's IO rate (40 MB/s, as in
//! PD's simulator, slowed by the receiving store's disk slowdown), then is promoted; removing a peer
//! first moves leadership away if needed. The replica checker replaces peers on Offline stores at once
//! and on Down stores after `max-store-down-time`, within `replica-schedule-limit` and the target
//! stores' add-peer limits, onto reachable stores that are neither low on space nor past
//! `max-pending-peer-count`; an Offline store that holds no peer becomes Tombstone.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::model::{Peer, PeerRole, Region, StoreState};
use crate::sim::{MIB, Simulation, TICK_MS};
use crate::units::format_rfc3339_ns;

/// Snapshot throughput of a store, bytes per second.
pub const SNAPSHOT_BYTES_PER_SEC: u64 = 40_000_000;
/// How long PD keeps a finished operator visible to `GET /operators/{region_id}`.
pub const FINISHED_OPERATOR_TTL_MS: u64 = 10 * 60_000;
/// The replica checker and the schedulers run once per simulated second while they find work.
const CHECK_INTERVAL_MS: u64 = 1_000;
/// Longest pause between two rounds when they find nothing to do.
const MAX_PATROL_INTERVAL_MS: u64 = 5_000;
/// A store silent this long is unhealthy: PD places no new peer on it.
const STORE_UNHEALTHY_MS: u64 = 10 * 60_000;

/// One step of an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OpStep {
    /// Move leadership between two voters.
    TransferLeader {
        /// Store of the current leader.
        from: u64,
        /// Store of the new leader.
        to: u64,
    },
    /// Add a learner and wait for its snapshot.
    AddLearner {
        /// Target store.
        store: u64,
        /// Id of the new peer.
        peer_id: u64,
    },
    /// Turn a learner into a voter.
    PromoteLearner {
        /// Store of the learner.
        store: u64,
        /// Id of the learner.
        peer_id: u64,
    },
    /// Remove the region's peer on a store.
    RemovePeer {
        /// Store of the removed peer.
        store: u64,
    },
    /// Split the region: at the middle for `scan` and `approximate`, at the operator's keys for `usekey`.
    SplitRegion {
        /// PD's check policy.
        policy: SplitPolicy,
    },
    /// Merge the region into an adjacent one, which takes over its key range.
    MergeRegion {
        /// The region merged away.
        source: u64,
        /// The region that remains.
        target: u64,
    },
}

/// `pdpb.CheckPolicy` of a split operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SplitPolicy {
    /// TiKV scans the region for its middle key.
    Scan,
    /// TiKV estimates the middle key from SST properties.
    Approximate,
    /// Split at the keys given with the operator.
    UseKey,
}

impl SplitPolicy {
    /// Parses PD's policy name, case-insensitively as PD does (`pdpb.CheckPolicy_value[strings.ToUpper(p)]`).
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_uppercase().as_str() {
            "SCAN" => Some(SplitPolicy::Scan),
            "APPROXIMATE" => Some(SplitPolicy::Approximate),
            "USEKEY" => Some(SplitPolicy::UseKey),
            _ => None,
        }
    }

    /// The protobuf enum name.
    pub fn name(self) -> &'static str {
        match self {
            SplitPolicy::Scan => "SCAN",
            SplitPolicy::Approximate => "APPROXIMATE",
            SplitPolicy::UseKey => "USEKEY",
        }
    }
}

impl OpStep {
    /// PD's step description.
    pub fn describe(&self) -> String {
        match self {
            OpStep::TransferLeader { from, to } => format!("transfer leader from store {from} to store {to}"),
            OpStep::AddLearner { store, peer_id } => format!("add learner peer {peer_id} on store {store}"),
            OpStep::PromoteLearner { store, peer_id } => {
                format!("promote learner peer {peer_id} on store {store} to voter")
            }
            OpStep::RemovePeer { store } => format!("remove peer on store {store}"),
            OpStep::SplitRegion { policy } => format!("split region with policy {}", policy.name()),
            OpStep::MergeRegion { source, target } => format!("merge region {source} into region {target}"),
        }
    }
}

/// Where an operator stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OpStatus {
    /// Steps remain.
    Running,
    /// All steps done.
    Success,
    /// Canceled by a request, or a step became impossible.
    Canceled,
    /// Replaced by an admin operator.
    Replaced,
}

impl OpStatus {
    /// PD's status name.
    pub fn name(self) -> &'static str {
        match self {
            OpStatus::Running => "RUNNING",
            OpStatus::Success => "SUCCESS",
            OpStatus::Canceled => "CANCELED",
            OpStatus::Replaced => "REPLACED",
        }
    }
}

/// An operator on one region.
#[derive(Debug, Clone, Serialize)]
pub struct Operator {
    /// Description, e.g. `admin-transfer-leader`, `replace-down-replica`.
    pub desc: String,
    /// Brief, e.g. `transfer leader: store 1 to 4`.
    pub brief: String,
    /// Kind flags, e.g. `admin,leader`.
    pub kind: String,
    /// Region id.
    pub region_id: u64,
    /// Region epoch at creation: (conf_ver, version).
    pub epoch: (u64, u64),
    /// Simulated creation time (ms).
    pub created_at_ms: u64,
    /// Region size (MiB) at creation.
    pub size: u64,
    /// The steps.
    pub steps: Vec<OpStep>,
    /// Index of the running step.
    pub current_step: usize,
    /// Simulated time (ms) the running step started.
    pub step_started_ms: Option<u64>,
    /// Status.
    pub status: OpStatus,
    /// Simulated time (ms) the operator finished.
    pub finished_at_ms: Option<u64>,
    /// Split keys of a `usekey` split operator.
    pub split_keys: Vec<Vec<u8>>,
}

impl Operator {
    /// Whether the operator was created through the API (`admin` kind).
    pub fn is_admin(&self) -> bool {
        self.has_kind("admin")
    }

    /// Whether `kind` is one of the operator's kind flags.
    pub fn has_kind(&self, kind: &str) -> bool {
        self.kind.split(',').any(|k| k == kind)
    }

    /// PD's `Operator.String()`.
    pub fn describe(&self, sim: &Simulation) -> String {
        let steps: Vec<String> =
            self.steps.iter().enumerate().map(|(i, s)| format!("{i}:{{{}}}", s.describe())).collect();
        format!(
            "{} {{{}}} (kind:{}, region:{}({}, {}), createAt:{}, currentStep:{}, size:{}, steps:[{}], timeout:[{}])",
            self.desc,
            self.brief,
            self.kind,
            self.region_id,
            self.epoch.1,
            self.epoch.0,
            format_rfc3339_ns(sim.unix_ns(self.created_at_ms)),
            self.current_step,
            self.size,
            steps.join(", "),
            if self.has_kind("leader") && !self.has_kind("region") { "3s" } else { "10m0s" }
        )
    }
}

/// Why an operator could not be created, with PD's error text (`500` unless noted).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpError {
    /// No such region.
    #[error("[PD:region:ErrRegionNotFound]region {0} not found")]
    RegionNotFound(u64),
    /// No such store.
    #[error("[PD:core:ErrStoreNotFound]store {0} not found")]
    StoreNotFound(u64),
    /// The target store cannot take a peer or leadership.
    #[error("[PD:core:ErrStoreUnhealthy]store {0} is unhealthy")]
    StoreUnhealthy(u64),
    /// transfer-leader to a store without a voter of the region.
    #[error("region has no voter in store {0}")]
    NoVoter(u64),
    /// add-peer to a store that already has a peer.
    #[error("region already has peer in store {0}")]
    AlreadyHasPeer(u64),
    /// remove-peer or transfer-peer from a store without a peer.
    #[error("region has no peer in store {0}")]
    NoPeer(u64),
    /// The region already runs an operator that this one may not replace.
    #[error("[PD:operator:ErrAddOperator]failed to add operator, maybe already have one")]
    AlreadyHasOperator,
    /// A target store is a Tombstone.
    #[error("[PD:core:ErrStoreRemoved]store {0} has been removed")]
    StoreRemoved(u64),
    /// split-region with a policy PD does not know.
    #[error("check policy {0} is not supported")]
    UnknownPolicy(String),
    /// split-region with a key that is not hex.
    #[error("split key {0} is not in hex format")]
    BadSplitKey(String),
    /// merge-region of a region with down or pending peers, or without its full set of voters.
    #[error("[PD:region:ErrRegionAbnormalPeer]region {0} has abnormal peer")]
    AbnormalPeer(u64),
    /// merge-region of two regions that do not touch.
    #[error("[PD:region:ErrRegionNotAdjacent]two regions are not adjacent")]
    NotAdjacent,
    /// scatter-region of a hot region.
    #[error("region {0} is a hot region")]
    HotRegion(u64),
    /// transfer-region without a role for every store while placement rules are on.
    #[error("transfer region without peer role is not supported when placement rules enabled")]
    MissingPeerRole,
}

impl Simulation {
    /// The running operator of a region.
    pub fn operator_of(&self, region_id: u64) -> Option<&Operator> {
        self.operators.iter().find(|o| o.region_id == region_id)
    }

    /// The running operator of a region, or one that finished within the last 10 minutes.
    pub fn operator_status(&self, region_id: u64) -> Option<&Operator> {
        self.operator_of(region_id).or_else(|| self.finished_operators.iter().rev().find(|o| o.region_id == region_id))
    }

    /// Cancels the running operator of a region; false if there is none.
    pub fn cancel_operator(&mut self, region_id: u64) -> bool {
        match self.operators.iter().position(|o| o.region_id == region_id) {
            Some(i) => {
                let op = self.operators.remove(i);
                self.finish(op, OpStatus::Canceled);
                true
            }
            None => false,
        }
    }

    /// Cancels every running operator.
    pub fn cancel_all_operators(&mut self) {
        for op in std::mem::take(&mut self.operators) {
            self.finish(op, OpStatus::Canceled);
        }
    }

    fn finish(&mut self, mut op: Operator, status: OpStatus) {
        if status != OpStatus::Success {
            self.undo_unfinished_learner(&op);
        }
        let event = match status {
            OpStatus::Success => "finish",
            OpStatus::Canceled => "cancel",
            OpStatus::Replaced => "replace",
            OpStatus::Running => "unexpected",
        };
        self.telemetry.count_operator(&op.desc, event);
        op.status = status;
        op.finished_at_ms = Some(self.now_ms);
        self.finished_operators.push(op);
        self.wake_patrol();
    }

    /// A learner whose snapshot never completed is dropped with its operator, so that a canceled
    /// move leaves the region as it was.
    fn undo_unfinished_learner(&mut self, op: &Operator) {
        if let Some(OpStep::AddLearner { peer_id, .. }) = op.steps.get(op.current_step)
            && let Some(region) = self.region_mut(op.region_id)
            && region.peers.iter().any(|p| p.id == *peer_id)
        {
            region.peers.retain(|p| p.id != *peer_id);
            region.pending_peers.retain(|p| p.id != *peer_id);
            region.conf_ver += 1;
        }
    }

    /// Adds an operator: admin operators replace PD's own but not another admin operator.
    pub fn add_operator(&mut self, op: Operator) -> Result<(), OpError> {
        if let Some(existing) = self.operator_of(op.region_id) {
            if existing.is_admin() || !op.is_admin() {
                return Err(OpError::AlreadyHasOperator);
            }
            let i = self.operators.iter().position(|o| o.region_id == op.region_id).unwrap_or_default();
            let old = self.operators.remove(i);
            self.finish(old, OpStatus::Replaced);
        }
        self.start_operator(op);
        self.wake_patrol();
        Ok(())
    }

    /// Puts a new operator in the running list and counts its creation for PD's metrics.
    pub(crate) fn start_operator(&mut self, op: Operator) {
        self.telemetry.count_operator(&op.desc, "create");
        self.operators.push(op);
    }

    pub(crate) fn new_operator(
        &self,
        region_id: u64,
        desc: &str,
        brief: String,
        kind: &str,
        steps: Vec<OpStep>,
    ) -> Operator {
        let (epoch, size) =
            self.region(region_id).map(|r| ((r.conf_ver, r.version), r.approximate_size)).unwrap_or_default();
        Operator {
            desc: desc.into(),
            brief,
            kind: kind.into(),
            region_id,
            epoch,
            created_at_ms: self.now_ms,
            size,
            steps,
            current_step: 0,
            step_started_ms: None,
            status: OpStatus::Running,
            finished_at_ms: None,
            split_keys: Vec::new(),
        }
    }

    /// Checks that `store_id` can receive a peer or leadership.
    pub(crate) fn check_target(&self, store_id: u64) -> Result<(), OpError> {
        let store = self.store(store_id).ok_or(OpError::StoreNotFound(store_id))?;
        let silent = self.now_ms.saturating_sub(store.last_heartbeat_ms.unwrap_or(0));
        if store.state != StoreState::Up || silent > STORE_UNHEALTHY_MS {
            return Err(OpError::StoreUnhealthy(store_id));
        }
        Ok(())
    }

    /// `transfer-leader`: an admin operator moving the leader to the voter on `to_store`.
    pub fn admin_transfer_leader(&mut self, region_id: u64, to_store: u64) -> Result<(), OpError> {
        let region = self.region(region_id).ok_or(OpError::RegionNotFound(region_id))?;
        if !region.peers.iter().any(|p| p.store_id == to_store && p.role == PeerRole::Voter) {
            return Err(OpError::NoVoter(to_store));
        }
        self.check_target(to_store)?;
        let from = region.leader_store().unwrap_or_default();
        let op = self.new_operator(
            region_id,
            "admin-transfer-leader",
            format!("transfer leader: store {from} to {to_store}"),
            "admin,leader",
            vec![OpStep::TransferLeader { from, to: to_store }],
        );
        self.add_operator(op)
    }

    /// `add-peer` (a voter) or `add-learner`: an admin operator adding a peer on `store`.
    pub fn admin_add_peer(&mut self, region_id: u64, store: u64, learner: bool) -> Result<(), OpError> {
        let region = self.region(region_id).ok_or(OpError::RegionNotFound(region_id))?;
        if region.peers.iter().any(|p| p.store_id == store) {
            return Err(OpError::AlreadyHasPeer(store));
        }
        self.check_target(store)?;
        let peer_id = self.next_id;
        let mut steps = vec![OpStep::AddLearner { store, peer_id }];
        if !learner {
            steps.push(OpStep::PromoteLearner { store, peer_id });
        }
        let (desc, brief) = if learner {
            ("admin-add-learner", format!("add learner peer: store [{store}]"))
        } else {
            ("admin-add-peer", format!("add peer: store [{store}]"))
        };
        let op = self.new_operator(region_id, desc, brief, "admin,region", steps);
        self.add_operator(op)?;
        self.next_id += 1;
        Ok(())
    }

    /// `remove-peer`: an admin operator removing the peer on `store` (moving leadership first if needed).
    pub fn admin_remove_peer(&mut self, region_id: u64, store: u64) -> Result<(), OpError> {
        let region = self.region(region_id).ok_or(OpError::RegionNotFound(region_id))?;
        if !region.peers.iter().any(|p| p.store_id == store) {
            return Err(OpError::NoPeer(store));
        }
        let mut steps = Vec::new();
        if region.leader_store() == Some(store) {
            let to = self.best_leader_target(region_id, &[store]).ok_or(OpError::NoVoter(store))?;
            steps.push(OpStep::TransferLeader { from: store, to });
        }
        steps.push(OpStep::RemovePeer { store });
        let op = self.new_operator(
            region_id,
            "admin-remove-peer",
            format!("rm peer: store [{store}]"),
            "admin,region",
            steps,
        );
        self.add_operator(op)
    }

    /// `transfer-peer`: an admin operator moving the peer on `from` to `to`.
    pub fn admin_transfer_peer(&mut self, region_id: u64, from: u64, to: u64) -> Result<(), OpError> {
        let region = self.region(region_id).ok_or(OpError::RegionNotFound(region_id))?;
        if !region.peers.iter().any(|p| p.store_id == from) {
            return Err(OpError::NoPeer(from));
        }
        if region.peers.iter().any(|p| p.store_id == to) {
            return Err(OpError::AlreadyHasPeer(to));
        }
        self.check_target(to)?;
        let steps = self.move_peer_steps(region_id, from, to);
        let op = self.new_operator(
            region_id,
            "admin-move-peer",
            format!("mv peer: store [{from}] to [{to}]"),
            "admin,region",
            steps,
        );
        self.add_operator(op)?;
        self.next_id += 1;
        Ok(())
    }

    /// Steps that move a region's peer from one store to another; uses the next id for the new peer.
    pub(crate) fn move_peer_steps(&self, region_id: u64, from: u64, to: u64) -> Vec<OpStep> {
        let peer_id = self.next_id;
        let mut steps = vec![OpStep::AddLearner { store: to, peer_id }, OpStep::PromoteLearner { store: to, peer_id }];
        if self.region(region_id).and_then(|r| r.leader_store()) == Some(from) {
            steps.push(OpStep::TransferLeader { from, to });
        }
        steps.push(OpStep::RemovePeer { store: from });
        steps
    }

    /// A live voter's store to take over leadership, avoiding `exclude`.
    fn best_leader_target(&self, region_id: u64, exclude: &[u64]) -> Option<u64> {
        let region = self.region(region_id)?;
        region
            .peers
            .iter()
            .filter(|p| p.role == PeerRole::Voter && !exclude.contains(&p.store_id))
            .filter(|p| self.check_target(p.store_id).is_ok())
            .map(|p| p.store_id)
            .next()
    }

    /// Runs the operators' steps and, once per simulated second, the replica checker.
    pub(crate) fn operator_tick(&mut self) {
        self.refill_store_limits();
        let mut i = 0;
        while i < self.operators.len() {
            match self.advance_operator(i) {
                Some(status) => {
                    let op = self.operators.remove(i);
                    self.finish(op, status);
                }
                None => i += 1,
            }
        }
        let now = self.now_ms;
        self.finished_operators.retain(|o| o.finished_at_ms.is_some_and(|t| now - t < FINISHED_OPERATOR_TTL_MS));
        if now >= self.next_patrol_ms {
            // The checker and schedulers read the region facts and store totals.
            self.regions.refresh();
            let before = self.operators.len();
            self.replica_check();
            self.run_leader_schedulers();
            self.run_region_schedulers();
            self.bury_empty_offline_stores();
            // Like PD's schedulers, back off while there is nothing to do.
            self.patrol_interval_ms = if self.operators.len() > before {
                CHECK_INTERVAL_MS
            } else {
                (self.patrol_interval_ms * 2).clamp(CHECK_INTERVAL_MS, MAX_PATROL_INTERVAL_MS)
            };
            self.next_patrol_ms = now + self.patrol_interval_ms;
        }
    }

    /// Brings the next checker and scheduler round forward after a change they should react to.
    pub(crate) fn wake_patrol(&mut self) {
        self.patrol_interval_ms = CHECK_INTERVAL_MS;
        self.next_patrol_ms = self.next_patrol_ms.min(self.now_ms + CHECK_INTERVAL_MS);
    }

    /// Runs as many steps of operator `i` as complete now; `Some` once it finishes.
    fn advance_operator(&mut self, i: usize) -> Option<OpStatus> {
        let now = self.now_ms;
        loop {
            let op = &self.operators[i];
            let Some(step) = op.steps.get(op.current_step).copied() else { return Some(OpStatus::Success) };
            let region_id = op.region_id;
            let started = op.step_started_ms;
            let alive = |sim: &Simulation, store: u64| sim.store(store).is_some_and(|s| s.reachable());
            let done = match step {
                OpStep::TransferLeader { to, .. } => {
                    if !alive(self, to) {
                        return Some(OpStatus::Canceled);
                    }
                    let region = self.region_mut(region_id)?;
                    let peer = region.peers.iter().find(|p| p.store_id == to && p.role == PeerRole::Voter)?;
                    region.leader = Some(peer.id);
                    true
                }
                OpStep::AddLearner { store, peer_id } => {
                    if !alive(self, store) {
                        return Some(OpStatus::Canceled);
                    }
                    match started {
                        None => {
                            let region = self.region_mut(region_id)?;
                            let peer = Peer { id: peer_id, store_id: store, role: PeerRole::Learner };
                            region.peers.push(peer);
                            region.pending_peers.push(peer);
                            region.conf_ver += 1;
                            self.operators[i].step_started_ms = Some(now);
                            false
                        }
                        Some(t) => {
                            let size = self.region(region_id)?.approximate_size.max(1);
                            // A slow disk on the receiving store stretches the snapshot's apply.
                            let slowdown = self.store(store).map_or(1.0, |s| s.disk_slowdown.max(1.0));
                            let snapshot_ms = ((size * MIB * 1000 / SNAPSHOT_BYTES_PER_SEC) as f64 * slowdown) as u64;
                            if now - t < snapshot_ms.max(TICK_MS) {
                                false
                            } else {
                                let region = self.region_mut(region_id)?;
                                region.pending_peers.retain(|p| p.id != peer_id);
                                true
                            }
                        }
                    }
                }
                OpStep::PromoteLearner { peer_id, .. } => {
                    let region = self.region_mut(region_id)?;
                    let peer = region.peers.iter_mut().find(|p| p.id == peer_id)?;
                    peer.role = PeerRole::Voter;
                    region.conf_ver += 1;
                    true
                }
                OpStep::RemovePeer { store } => {
                    let region = self.region_mut(region_id)?;
                    if region.leader_store() == Some(store) {
                        // Raft cannot remove its own leader; the operator is stale.
                        return Some(OpStatus::Canceled);
                    }
                    region.peers.retain(|p| p.store_id != store);
                    region.down_peers.retain(|d| d.peer.store_id != store);
                    region.pending_peers.retain(|p| p.store_id != store);
                    region.conf_ver += 1;
                    true
                }
                OpStep::SplitRegion { policy } => {
                    let keys = std::mem::take(&mut self.operators[i].split_keys);
                    self.run_split_step(region_id, policy, keys);
                    true
                }
                OpStep::MergeRegion { source, target } => {
                    if !self.merge_regions(source, target) {
                        return Some(OpStatus::Canceled);
                    }
                    true
                }
            };
            if !done {
                return None;
            }
            let op = &mut self.operators[i];
            op.current_step += 1;
            op.step_started_ms = None;
        }
    }

    /// Token buckets of the store limits: `rate` operations per minute, bursting up to `rate`.
    fn refill_store_limits(&mut self) {
        for store in &self.stores {
            let tokens = self.add_peer_tokens.entry(store.id).or_insert(store.add_peer_limit);
            *tokens = (*tokens + store.add_peer_limit * TICK_MS as f64 / 60_000.0).min(store.add_peer_limit);
        }
    }

    /// PD's replica checker for regions without an operator: replace peers on Offline stores and on
    /// stores Down past max-store-down-time, add missing voters, drop extra ones.
    fn replica_check(&mut self) {
        let limit = self.schedule.replica_schedule_limit as usize;
        let mut running = self.operators.iter().filter(|o| o.has_kind("replica")).count();
        if running >= limit || self.schedule.halt_scheduling == "true" {
            return;
        }
        let max_down = self.schedule.max_store_down_time_ms();
        let max_replicas = self.replication.max_replicas as usize;
        let now = self.now_ms;
        let bad: HashMap<u64, &'static str> = self
            .stores
            .iter()
            .filter_map(|s| match s.state {
                StoreState::Offline | StoreState::Tombstone => Some((s.id, "replace-offline-replica")),
                StoreState::Up if now.saturating_sub(s.last_heartbeat_ms.unwrap_or(0)) > max_down => {
                    Some((s.id, "replace-down-replica"))
                }
                StoreState::Up => None,
            })
            .collect();
        // Most patrols find nothing to do; find the candidates before computing store figures. The
        // scan looks at each region's peers only, and at the running operators for the few
        // candidates.
        let mut bad_ids: Vec<u64> = bad.keys().copied().collect();
        bad_ids.sort_unstable();
        let is_bad = |store: u64| bad_ids.binary_search(&store).is_ok();
        let on_bad = |r: &Region| !bad_ids.is_empty() && r.peers.iter().any(|p| is_bad(p.store_id));
        let busy: HashSet<u64> = self.operators.iter().map(|o| o.region_id).collect();
        let candidates: Vec<usize> = match self.regions.with_facts() {
            // The facts answer for almost every region without reading it.
            Some(all) => all
                .enumerate()
                .filter(|(_, (f, r))| {
                    let odd = f.voters() != max_replicas
                        || (!bad_ids.is_empty() && f.stores().map_or_else(|| on_bad(r), |mut s| s.any(is_bad)));
                    odd && !busy.contains(&r.id)
                })
                .map(|(i, _)| i)
                .collect(),
            None => self
                .regions
                .iter()
                .enumerate()
                .filter(|(_, r)| (r.voter_count() != max_replicas || on_bad(r)) && !busy.contains(&r.id))
                .map(|(i, _)| i)
                .collect(),
        };
        if candidates.is_empty() {
            return;
        }
        let stats = self.store_stats();
        let mut counts: HashMap<u64, u64> = stats.iter().map(|(id, s)| (*id, s.region_count)).collect();
        // PD moves no data onto a store past low-space-ratio, nor onto one with more pending peers
        // than max-pending-peer-count (`pkg/schedule/filter`).
        let max_pending = self.schedule.max_pending_peer_count;
        let targets: Vec<u64> = self
            .stores
            .iter()
            .filter(|s| self.check_target(s.id).is_ok() && s.reachable())
            .filter(|s| {
                let stat = stats.get(&s.id).copied().unwrap_or_default();
                let used = self.used_bytes(s, &stat);
                (used as f64 / s.capacity.max(1) as f64) < self.schedule.low_space_ratio.0
                    && (max_pending == 0 || stat.pending_peer_count <= max_pending)
            })
            .map(|s| s.id)
            .collect();
        let mut new_ops = Vec::new();
        for region in candidates.into_iter().map(|i| &self.regions[i]) {
            if running >= limit {
                break;
            }
            let voters = region.voter_count();
            let bad_peer = region.peers.iter().find(|p| bad.contains_key(&p.store_id));
            let pick = |counts: &HashMap<u64, u64>, tokens: &BTreeMap<u64, f64>| {
                targets
                    .iter()
                    .filter(|t| !region.peers.iter().any(|p| p.store_id == **t))
                    .filter(|t| tokens.get(t).copied().unwrap_or(0.0) >= 1.0)
                    .min_by_key(|t| (counts.get(t).copied().unwrap_or(0), **t))
                    .copied()
            };
            if let Some(peer) = bad_peer {
                let Some(to) = pick(&counts, &self.add_peer_tokens) else { continue };
                let desc = bad[&peer.store_id];
                new_ops.push((region.id, desc, peer.store_id, Some(to)));
                *counts.entry(to).or_default() += 1;
                *self.add_peer_tokens.entry(to).or_default() -= 1.0;
                running += 1;
            } else if voters < max_replicas {
                let Some(to) = pick(&counts, &self.add_peer_tokens) else { continue };
                new_ops.push((region.id, "make-up-replica", 0, Some(to)));
                *counts.entry(to).or_default() += 1;
                *self.add_peer_tokens.entry(to).or_default() -= 1.0;
                running += 1;
            } else if voters > max_replicas {
                let leader = region.leader_store();
                let victim = region
                    .peers
                    .iter()
                    .filter(|p| p.role == PeerRole::Voter && Some(p.store_id) != leader)
                    .max_by_key(|p| (counts.get(&p.store_id).copied().unwrap_or(0), p.store_id));
                if let Some(victim) = victim {
                    new_ops.push((region.id, "remove-extra-replica", victim.store_id, None));
                    running += 1;
                }
            }
        }
        for (region_id, desc, from, to) in new_ops {
            let (brief, steps) = match (desc, to) {
                ("make-up-replica", Some(to)) => {
                    let peer_id = self.next_id;
                    (
                        format!("add peer: store [{to}]"),
                        vec![OpStep::AddLearner { store: to, peer_id }, OpStep::PromoteLearner { store: to, peer_id }],
                    )
                }
                (_, Some(to)) => {
                    (format!("mv peer: store [{from}] to [{to}]"), self.move_peer_steps(region_id, from, to))
                }
                (_, None) => (format!("rm peer: store [{from}]"), vec![OpStep::RemovePeer { store: from }]),
            };
            if to.is_some() {
                self.next_id += 1;
            }
            let op = self.new_operator(region_id, desc, brief, "replica,region", steps);
            self.start_operator(op);
        }
    }

    /// PD buries an Offline store once it holds no peer (`server/cluster/cluster.go` `checkStores`).
    fn bury_empty_offline_stores(&mut self) {
        if !self.stores.iter().any(|s| s.state == StoreState::Offline) {
            return;
        }
        let stats = self.store_stats();
        for store in &mut self.stores {
            if store.state == StoreState::Offline && stats.get(&store.id).is_none_or(|s| s.region_count == 0) {
                store.state = StoreState::Tombstone;
            }
        }
    }
}
