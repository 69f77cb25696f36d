//! Admin operators that reshape regions (`pkg/schedule/handler/handler.go`): `split-region`,
//! `merge-region`, `transfer-region` and `scatter-region`, plus the region scatterer behind
//! `POST /regions/scatter` (`pkg/schedule/scatter/region_scatterer.go`).
//!
//! The scatterer spreads the peers of the regions it is given evenly over the healthy stores: it
//! counts how many peers (and leaders) of the batch it has placed on each store and picks, for each
//! region, the stores with the fewest, preferring stores the region already uses so that it moves as
//! little as possible.

use std::collections::HashMap;

use crate::model::{PeerRole, Region, StoreState};
use crate::operator::{OpError, OpStep, Operator, SplitPolicy};
use crate::sim::{STORE_DISCONNECT_MS, Simulation};
use crate::units::hex_upper;

/// A store silent this long is unhealthy (`pkg/core/store.go`).
const STORE_UNHEALTHY_MS: u64 = 10 * 60_000;

/// Peers and leaders the scatterer has placed per store within one batch.
#[derive(Debug, Default)]
pub struct ScatterCounts {
    peers: HashMap<u64, u64>,
    leaders: HashMap<u64, u64>,
}

/// Formats store ids as Go's `%v` prints a slice: `[1 4 5]`.
fn go_list(ids: &[u64]) -> String {
    let parts: Vec<String> = ids.iter().map(u64::to_string).collect();
    format!("[{}]", parts.join(" "))
}

/// An operator kind string with PD's flag order (`pkg/schedule/operator/kind.go`).
pub fn kind_string(flags: &[&str]) -> String {
    const ORDER: [&str; 8] = ["admin", "merge", "range", "replica", "split", "hot-region", "region", "leader"];
    let names: Vec<&str> = ORDER.iter().copied().filter(|f| flags.contains(f)).collect();
    if names.is_empty() { "unknown".into() } else { names.join(",") }
}

/// Steps and the builder's brief for moving a region onto a set of stores.
pub(crate) struct MovePlan {
    /// Operator steps.
    pub steps: Vec<OpStep>,
    /// PD's brief, as its operator builder writes it.
    pub brief: String,
    /// Whether peers are added or removed.
    pub moves_peers: bool,
    /// Whether leadership moves.
    pub moves_leader: bool,
}

impl Simulation {
    /// PD's `checkStoreState` for admin operators: the store exists, is not removed, not unhealthy.
    fn check_store_state(&self, store_id: u64) -> Result<(), OpError> {
        let store = self.store(store_id).ok_or(OpError::StoreNotFound(store_id))?;
        if store.state == StoreState::Tombstone {
            return Err(OpError::StoreRemoved(store_id));
        }
        if self.now_ms.saturating_sub(store.last_heartbeat_ms.unwrap_or(0)) > STORE_UNHEALTHY_MS {
            return Err(OpError::StoreUnhealthy(store_id));
        }
        Ok(())
    }

    /// Plans the steps that give `region` voters on `voters`, learners on `learners` and the leader on
    /// `leader` (or keep it where it is when still a voter). New peers take ids from the allocator.
    pub(crate) fn plan_move(
        &mut self,
        region_id: u64,
        voters: &[u64],
        learners: &[u64],
        leader: Option<u64>,
    ) -> MovePlan {
        let Some(region) = self.region(region_id) else {
            return MovePlan { steps: Vec::new(), brief: String::new(), moves_peers: false, moves_leader: false };
        };
        let current: Vec<(u64, u64, PeerRole)> = region.peers.iter().map(|p| (p.store_id, p.id, p.role)).collect();
        let origin_leader = region.leader_store();
        let has = |s: u64| current.iter().find(|c| c.0 == s);
        let mut steps = Vec::new();
        let mut added = Vec::new();
        for &store in voters.iter().chain(learners) {
            if has(store).is_none() {
                let peer_id = self.next_id;
                self.next_id += 1;
                steps.push(OpStep::AddLearner { store, peer_id });
                if voters.contains(&store) {
                    steps.push(OpStep::PromoteLearner { store, peer_id });
                }
                added.push(store);
            } else if let Some(&(_, peer_id, PeerRole::Learner)) = has(store)
                && voters.contains(&store)
            {
                steps.push(OpStep::PromoteLearner { store, peer_id });
            }
        }
        let removed: Vec<u64> =
            current.iter().map(|c| c.0).filter(|s| !voters.contains(s) && !learners.contains(s)).collect();
        let target_leader = match leader {
            Some(l) => Some(l),
            None if origin_leader.is_some_and(|l| voters.contains(&l)) => origin_leader,
            None => voters.first().copied(),
        };
        let mut moves_leader = false;
        if let (Some(to), Some(from)) = (target_leader, origin_leader)
            && to != from
        {
            steps.push(OpStep::TransferLeader { from, to });
            moves_leader = true;
        }
        for &store in &removed {
            steps.push(OpStep::RemovePeer { store });
        }
        let brief = match (added.is_empty(), removed.is_empty()) {
            (false, false) => format!("mv peer: store {} to {}", go_list(&removed), go_list(&added)),
            (false, true) => format!("add peer: store {}", go_list(&added)),
            (true, false) => format!("rm peer: store {}", go_list(&removed)),
            (true, true) if moves_leader => format!(
                "transfer leader: store {} to {}",
                origin_leader.unwrap_or_default(),
                target_leader.unwrap_or_default()
            ),
            (true, true) => String::new(),
        };
        MovePlan { steps, brief, moves_peers: !added.is_empty() || !removed.is_empty(), moves_leader }
    }

    /// `split-region`: an admin operator splitting the region by `policy` (`scan`, `approximate`, or
    /// `usekey` with hex `keys`).
    pub fn admin_split_region(&mut self, region_id: u64, policy: &str, keys: &[String]) -> Result<(), OpError> {
        self.region(region_id).ok_or(OpError::RegionNotFound(region_id))?;
        let parsed = SplitPolicy::parse(policy).ok_or_else(|| OpError::UnknownPolicy(policy.to_string()))?;
        let mut split_keys = Vec::new();
        if parsed == SplitPolicy::UseKey {
            for key in keys {
                split_keys.push(decode_hex(key).map_err(|_| OpError::BadSplitKey(key.clone()))?);
            }
        }
        let mut brief = format!("split: region {region_id} use policy {}", parsed.name());
        if !split_keys.is_empty() {
            let hex: Vec<String> = split_keys.iter().map(|k| hex_upper(k)).collect();
            brief.push_str(&format!(" and keys [{}]", hex.join(" ")));
        }
        let mut op = self.new_operator(
            region_id,
            "admin-split-region",
            brief,
            &kind_string(&["admin", "split"]),
            vec![OpStep::SplitRegion { policy: parsed }],
        );
        op.split_keys = split_keys;
        self.add_operator(op)
    }

    /// `merge-region`: an admin operator moving the source's peers onto the target's stores if needed,
    /// then merging the source into the adjacent target.
    pub fn admin_merge_region(&mut self, source: u64, target: u64) -> Result<(), OpError> {
        let src = self.region(source).ok_or(OpError::RegionNotFound(source))?;
        let tgt = self.region(target).ok_or(OpError::RegionNotFound(target))?;
        if !self.healthy_and_replicated(src) {
            return Err(OpError::AbnormalPeer(source));
        }
        if !self.healthy_and_replicated(tgt) {
            return Err(OpError::AbnormalPeer(target));
        }
        // PD's condition, which also refuses the first and last regions of the key space.
        let below = src.end_key == tgt.start_key && !src.end_key.is_empty();
        let above = src.start_key == tgt.end_key && !src.start_key.is_empty();
        if !below && !above {
            return Err(OpError::NotAdjacent);
        }
        if self.operator_of(target).is_some() {
            return Err(OpError::AlreadyHasOperator);
        }
        let voters: Vec<u64> = tgt.peers.iter().map(|p| p.store_id).collect();
        let plan = self.plan_move(source, &voters, &[], None);
        let mut steps = plan.steps;
        steps.push(OpStep::MergeRegion { source, target });
        let mut flags = vec!["admin", "merge"];
        if plan.moves_peers {
            flags.push("region");
        }
        if plan.moves_leader {
            flags.push("leader");
        }
        let op = self.new_operator(
            source,
            "admin-merge-region",
            format!("merge: region {source} to {target}"),
            &kind_string(&flags),
            steps,
        );
        self.add_operator(op)
    }

    fn healthy_and_replicated(&self, region: &Region) -> bool {
        region.down_peers.is_empty()
            && region.pending_peers.is_empty()
            && region.voter_count() == self.replication.max_replicas as usize
            && region.peers.iter().all(|p| p.role == PeerRole::Voter)
    }

    /// `transfer-region`: an admin operator moving the region onto `stores`, each with its role
    /// (`leader`, `voter`, `follower` or `learner`; an empty role is refused while placement rules are on).
    pub fn admin_transfer_region(&mut self, region_id: u64, stores: &[(u64, String)]) -> Result<(), OpError> {
        self.region(region_id).ok_or(OpError::RegionNotFound(region_id))?;
        if self.replication.enable_placement_rules == "true" && stores.iter().any(|(_, role)| role.is_empty()) {
            return Err(OpError::MissingPeerRole);
        }
        for (store, _) in stores {
            self.check_store_state(*store)?;
        }
        let voters: Vec<u64> = stores.iter().filter(|(_, r)| r != "learner").map(|(s, _)| *s).collect();
        let learners: Vec<u64> = stores.iter().filter(|(_, r)| r == "learner").map(|(s, _)| *s).collect();
        let leader = stores.iter().find(|(_, r)| r == "leader").map(|(s, _)| *s);
        let plan = self.plan_move(region_id, &voters, &learners, leader);
        let mut flags = vec!["admin"];
        if plan.moves_peers {
            flags.push("region");
        }
        if plan.moves_leader {
            flags.push("leader");
        }
        let op = self.new_operator(region_id, "admin-move-region", plan.brief, &kind_string(&flags), plan.steps);
        self.add_operator(op)
    }

    /// `scatter-region`: scatters one region; nothing to do is a success, as in PD.
    pub fn admin_scatter_region(&mut self, region_id: u64) -> Result<(), OpError> {
        let region = self.region(region_id).ok_or(OpError::RegionNotFound(region_id))?;
        let threshold = self.schedule.hot_region_cache_hits_threshold;
        if region.hot_write_degree >= threshold || region.hot_read_degree >= threshold {
            return Err(OpError::HotRegion(region_id));
        }
        let mut counts = ScatterCounts::default();
        match self.scatter_operator(region_id, &mut counts) {
            Some(op) => self.add_operator(op),
            None => Ok(()),
        }
    }

    /// `POST /regions/scatter`: scatters the given regions (or every region overlapping
    /// `[start, end)`); returns (operators created, regions that failed).
    pub fn scatter_regions(&mut self, ids: &[u64]) -> (usize, usize) {
        let mut counts = ScatterCounts::default();
        let (mut created, mut failed) = (0, 0);
        for &id in ids {
            if self.region(id).is_none() || self.operator_of(id).is_some() {
                failed += 1;
                continue;
            }
            if let Some(op) = self.scatter_operator(id, &mut counts) {
                self.start_operator(op);
                created += 1;
            }
        }
        self.wake_patrol();
        (created, failed)
    }

    /// Ids of the regions overlapping `[start, end)` (`end` empty is unbounded), in key order.
    pub fn region_ids_in_range(&self, start: &[u8], end: &[u8]) -> Vec<u64> {
        let first = self.regions.partition_point(|r| !r.end_key.is_empty() && r.end_key.as_slice() <= start);
        self.regions
            .iter_from(first)
            .take_while(|r| end.is_empty() || r.start_key.as_slice() < end)
            .map(|r| r.id)
            .collect()
    }

    /// The scatter operator for one region, or `None` if its peers and leader already sit well.
    fn scatter_operator(&mut self, region_id: u64, counts: &mut ScatterCounts) -> Option<Operator> {
        let region = self.region(region_id)?;
        let in_region: Vec<u64> =
            region.peers.iter().filter(|p| p.role == PeerRole::Voter).map(|p| p.store_id).collect();
        let learners: Vec<u64> =
            region.peers.iter().filter(|p| p.role == PeerRole::Learner).map(|p| p.store_id).collect();
        let leader = region.leader_store();
        let now = self.now_ms;
        let low_space = self.schedule.low_space_ratio.0;
        let mut candidates: Vec<(u64, u64, bool, u64)> = self
            .stores
            .iter()
            .filter(|s| s.state == StoreState::Up && s.alive)
            .filter(|s| now.saturating_sub(s.last_heartbeat_ms.unwrap_or(0)) <= STORE_DISCONNECT_MS)
            .filter(|s| !learners.contains(&s.id))
            .filter(|s| {
                let used = s.base_used + self.telemetry.region_size_mib(s.id) * crate::sim::MIB;
                (used as f64 / s.capacity.max(1) as f64) < low_space || in_region.contains(&s.id)
            })
            .map(|s| (s.id, counts.peers.get(&s.id).copied().unwrap_or(0), !in_region.contains(&s.id), s.id))
            .collect();
        if candidates.len() < in_region.len() {
            return None;
        }
        // Fewest peers of this batch first; among equals keep the region where it is; then rotate by
        // region id so that equal stores take turns.
        let n = self.stores.len().max(1) as u64;
        candidates.sort_by_key(|c| (c.1, c.2, (c.3 + region_id) % n));
        let chosen: Vec<u64> = candidates.iter().take(in_region.len()).map(|c| c.0).collect();
        for s in &chosen {
            *counts.peers.entry(*s).or_default() += 1;
        }
        let new_leader = chosen
            .iter()
            .copied()
            .min_by_key(|s| (counts.leaders.get(s).copied().unwrap_or(0), Some(*s) != leader, (*s + region_id) % n))?;
        *counts.leaders.entry(new_leader).or_default() += 1;
        let plan = self.plan_move(region_id, &chosen, &learners, Some(new_leader));
        if plan.steps.is_empty() {
            return None;
        }
        let mut flags = Vec::new();
        if plan.moves_peers {
            flags.push("region");
        }
        if plan.moves_leader {
            flags.push("leader");
        }
        Some(self.new_operator(region_id, "scatter-region", plan.brief, &kind_string(&flags), plan.steps))
    }
}

/// Go's `hex.DecodeString`: upper or lower case; the error is Go's error text.
pub fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = Vec::with_capacity(bytes.len() / 2);
    // Go reports an invalid byte before an odd length, scanning pairs from the left.
    let mut i = 0;
    while i + 1 < bytes.len() {
        let hi = digit(bytes[i]).ok_or_else(|| invalid_byte(text, i))?;
        let lo = digit(bytes[i + 1]).ok_or_else(|| invalid_byte(text, i + 1))?;
        out.push(hi << 4 | lo);
        i += 2;
    }
    if bytes.len() % 2 == 1 {
        if digit(bytes[bytes.len() - 1]).is_none() {
            return Err(invalid_byte(text, bytes.len() - 1));
        }
        return Err("encoding/hex: odd length hex string".into());
    }
    Ok(out)
}

/// Go's `hex.InvalidByteError` text: `encoding/hex: invalid byte: U+0078 'x'`.
fn invalid_byte(text: &str, at: usize) -> String {
    let b = text.as_bytes()[at];
    let c = char::from(b);
    let shown = if c.is_ascii_graphic() || c == ' ' { format!(" '{c}'") } else { String::new() };
    format!("encoding/hex: invalid byte: U+{:04X}{shown}", u32::from(b))
}
