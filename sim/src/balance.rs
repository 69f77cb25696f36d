//! Region schedulers: `balance-region-scheduler` (`pkg/schedule/schedulers/balance_region.go`) moves
//! peers from the stores with the highest region score (region size / region weight) to the lowest,
//! and `balance-hot-region-scheduler` (`pkg/schedule/schedulers/hot_region.go`) moves hot leaders and
//! peers off the hottest store.
//!
//! Balance-region runs within `region-schedule-limit` and the target stores' add-peer limits, never
//! onto a store past `low-space-ratio`, and only when the two stores differ by more than the
//! tolerance PD uses (several region sizes), so that a balanced cluster is left alone. One round is a
//! single pass over the regions, starting where the previous round stopped. The hot-region scheduler
//! is modest: at most one operator per flow per round, and only a move that leaves the target cooler
//! than the source was, so a single hot region is never bounced between stores.

use crate::model::{PeerRole, Region, StoreState};
use crate::operator::OpStep;
use crate::region_ops::kind_string;
use crate::sim::{MIB, REGION_HEARTBEAT_MS, STORE_DISCONNECT_MS, Simulation};

/// Name of the balance-region scheduler.
pub const BALANCE_REGION: &str = "balance-region-scheduler";
/// Name of the balance-hot-region scheduler.
pub const BALANCE_HOT_REGION: &str = "balance-hot-region-scheduler";
/// PD's default tolerant size ratio when `tolerant-size-ratio` is 0: stores within this many region
/// sizes of each other (on each side) count as balanced.
const TOLERANT_SIZE_RATIO: f64 = 5.0;
/// Spread of region scores, as a share of the mean, below which the stores count as balanced.
const BALANCED_SHARE: f64 = 0.1;
/// Most targets a balance round considers, so a round stays O(regions) with many stores.
const MAX_TARGETS: usize = 8;
/// A store this much hotter than the mean is worth relieving.
const HOT_STORE_RATIO: f64 = 1.2;

/// One store's figures in a balance round.
#[derive(Debug, Clone, Copy)]
struct Slot {
    id: u64,
    weight: f64,
    size: f64,
    used: f64,
    capacity: f64,
    target: bool,
}

impl Slot {
    fn score(&self) -> f64 {
        self.size / self.weight
    }
}

impl Simulation {
    /// One round of the region schedulers.
    pub(crate) fn run_region_schedulers(&mut self) {
        if self.schedule.halt_scheduling == "true" {
            return;
        }
        if self.scheduler_active(BALANCE_REGION) {
            self.balance_regions();
        }
        if self.scheduler_active(BALANCE_HOT_REGION) {
            self.balance_hot_regions();
        }
    }

    /// Whether leaders may not move onto a store: evict-leader pauses leader transfer into its
    /// stores for every scheduler (PD's `PauseLeaderTransfer`), paused or not.
    fn leader_blocked(&self, id: u64) -> bool {
        self.schedulers.iter().any(|s| s.name == crate::scheduler::EVICT_LEADER && s.store_ids.contains(&id))
    }

    /// Whether a store is Up, heartbeating and running: a place for new peers and leaders.
    fn schedulable(&self, id: u64) -> bool {
        self.store(id).is_some_and(|s| {
            s.state == StoreState::Up
                && s.alive
                && self.now_ms.saturating_sub(s.last_heartbeat_ms.unwrap_or(0)) <= STORE_DISCONNECT_MS
        })
    }

    fn balance_regions(&mut self) {
        let limit = self.schedule.region_schedule_limit as usize;
        let running = self.operators.iter().filter(|o| o.has_kind("region")).count();
        if running >= limit {
            return;
        }
        let mut budget = limit - running;
        // The last load pass (at most 10 s old) tells cheaply whether the stores are far enough
        // apart to be worth the exact O(regions) count; a balanced cluster stops here.
        let candidates: Vec<(f64, u64, u64)> = self
            .telemetry
            .loads()
            .iter()
            .filter_map(|l| {
                let s = self.store(l.store_id)?;
                let usable = s.state == StoreState::Up && self.schedulable(s.id);
                usable
                    .then(|| (l.region_size_mib as f64 / s.region_weight.max(1e-6), l.region_size_mib, l.region_count))
            })
            .collect();
        let (sizes, counts) = candidates.iter().fold((0u64, 0u64), |acc, c| (acc.0 + c.1, acc.1 + c.2));
        if candidates.len() < 2 || counts == 0 {
            return;
        }
        let avg_region = (sizes as f64 / counts as f64).max(1.0);
        let rough_mean = candidates.iter().map(|c| c.0).sum::<f64>() / candidates.len() as f64;
        let rough_tolerance = (TOLERANT_SIZE_RATIO * avg_region).max(rough_mean * BALANCED_SHARE / 2.0);
        let (hi, lo) = candidates.iter().fold((f64::MIN, f64::MAX), |acc, c| (acc.0.max(c.0), acc.1.min(c.0)));
        if hi - lo <= 1.5 * rough_tolerance {
            return;
        }
        let stats = self.store_stats();
        let low_space = self.schedule.low_space_ratio.0;
        let mut slots: Vec<Slot> = self
            .stores
            .iter()
            .filter(|s| s.state == StoreState::Up && self.schedulable(s.id))
            .map(|s| {
                let st = stats.get(&s.id).copied().unwrap_or_default();
                Slot {
                    id: s.id,
                    weight: s.region_weight.max(1e-6),
                    size: st.region_size as f64,
                    used: self.used_bytes(s, &st) as f64,
                    capacity: s.capacity.max(1) as f64,
                    target: self.add_peer_tokens.get(&s.id).copied().unwrap_or(s.add_peer_limit) >= 1.0,
                }
            })
            .collect();
        if slots.len() < 2 || self.regions.is_empty() {
            return;
        }
        let mean_score = slots.iter().map(Slot::score).sum::<f64>() / slots.len() as f64;
        // Stores within a tenth of the mean count as balanced too: a healthy cluster whose region
        // sizes merely vary is left alone, as PD leaves a cluster it has balanced.
        let tolerance = (TOLERANT_SIZE_RATIO * avg_region).max(mean_score * BALANCED_SHARE / 2.0);
        let max_score = slots.iter().map(Slot::score).fold(f64::MIN, f64::max);
        let min_score = slots.iter().filter(|s| s.target).map(Slot::score).fold(f64::MAX, f64::min);
        if max_score - min_score <= 2.0 * tolerance {
            return;
        }
        let busy: std::collections::HashSet<u64> = self.operators.iter().map(|o| o.region_id).collect();
        // Slots are in store-id order, so a peer finds its slot by binary search; the targets are the
        // few lowest-scored stores, re-sorted after each planned move. A region then costs
        // O(peers x (log stores + MAX_TARGETS)), never O(stores).
        let blocked: Vec<bool> = slots.iter().map(|s| self.leader_blocked(s.id)).collect();
        let pick_targets = |slots: &[Slot]| {
            let mut t: Vec<usize> = (0..slots.len()).filter(|&i| slots[i].target).collect();
            t.sort_by(|a, b| slots[*a].score().total_cmp(&slots[*b].score()));
            t.truncate(MAX_TARGETS);
            t
        };
        let mut targets = pick_targets(&slots);
        let n = self.regions.len();
        let start = self.telemetry.balance_cursor % n;
        let mut moves: Vec<(u64, u64, u64)> = Vec::new();
        // One pass from the cursor round to it, in key order.
        let regions = &self.regions;
        let order = regions.iter_from(start).zip(start..).chain(regions.iter().zip(0..start));
        for (region, i) in order {
            if budget == 0 || targets.is_empty() {
                break;
            }
            if busy.contains(&region.id)
                || !region.pending_peers.is_empty()
                || !region.down_peers.is_empty()
                || region.leader.is_none()
            {
                continue;
            }
            let size = region.approximate_size as f64;
            let slot_of = |store: u64| slots.binary_search_by_key(&store, |s| s.id).ok();
            // The most loaded store holding a voter of the region, and the least loaded one without.
            let source = region
                .peers
                .iter()
                .filter(|p| p.role == PeerRole::Voter)
                .filter_map(|p| slot_of(p.store_id))
                .max_by(|a, b| slots[*a].score().total_cmp(&slots[*b].score()));
            let Some(si) = source else { continue };
            // Moving the leader's peer moves leadership too, which an evicted store may not take.
            let moves_leader = region.leader_store() == Some(slots[si].id);
            let target = targets.iter().copied().find(|&t| {
                let s = &slots[t];
                let taken = region.peers.iter().any(|p| p.store_id == s.id);
                !taken && (!moves_leader || !blocked[t]) && (s.used + size * MIB as f64) / s.capacity < low_space
            });
            let Some(ti) = target else { continue };
            let (src, tgt) = (slots[si], slots[ti]);
            let (src_after, tgt_after) = (src.score() - size / src.weight, tgt.score() + size / tgt.weight);
            if src.score() - tgt.score() <= 2.0 * tolerance || src_after < tgt_after {
                continue;
            }
            moves.push((region.id, src.id, tgt.id));
            budget -= 1;
            slots[si].size -= size;
            slots[ti].size += size;
            slots[ti].used += size * MIB as f64;
            let tokens = self.add_peer_tokens.entry(tgt.id).or_insert(0.0);
            *tokens -= 1.0;
            slots[ti].target = *tokens >= 1.0;
            targets = pick_targets(&slots);
            self.telemetry.balance_cursor = i + 1;
        }
        for (region_id, from, to) in moves {
            let steps = self.move_peer_steps(region_id, from, to);
            let moves_leader = steps.iter().any(|s| matches!(s, OpStep::TransferLeader { .. }));
            self.next_id += 1;
            let kind = kind_string(if moves_leader { &["region", "leader"] } else { &["region"] });
            let op = self.new_operator(
                region_id,
                BALANCE_REGION,
                format!("mv peer: store [{from}] to [{to}]"),
                &kind,
                steps,
            );
            self.start_operator(op);
        }
    }

    fn balance_hot_regions(&mut self) {
        let limit = self.schedule.hot_region_schedule_limit as usize;
        let running = self.operators.iter().filter(|o| o.has_kind("hot-region")).count();
        if running >= limit {
            return;
        }
        // The last load pass says whether any store is hot enough to relieve; only then scan.
        let rough = |f: fn(&crate::stats::StoreLoad) -> f64| -> Vec<(u64, f64)> {
            self.telemetry.loads().iter().map(|l| (l.store_id, f(l))).collect()
        };
        if self.hottest(&rough(|l| l.hot_read_bps)).is_none() && self.hottest(&rough(|l| l.hot_write_bps)).is_none() {
            return;
        }
        let threshold = self.schedule.hot_region_cache_hits_threshold;
        let secs = (REGION_HEARTBEAT_MS / 1000) as f64;
        // Hot flow per store: reads land on the leader, writes on every peer.
        let mut read: Vec<(u64, f64)> = self.stores.iter().map(|s| (s.id, 0.0)).collect();
        let mut write = read.clone();
        let mut hot_read: Vec<(u64, u64, f64)> = Vec::new();
        let mut hot_write: Vec<(u64, f64)> = Vec::new();
        // Stores are in id order: a binary search keeps the pass O(regions x peers x log stores).
        let add = |v: &mut Vec<(u64, f64)>, id: u64, f: f64| {
            if let Ok(i) = v.binary_search_by_key(&id, |e| e.0) {
                v[i].1 += f;
            }
        };
        for region in &self.regions {
            if region.hot_read_degree >= threshold
                && let Some(leader) = region.leader_store()
            {
                let f = region.read_bytes as f64 / secs;
                add(&mut read, leader, f);
                hot_read.push((region.id, leader, f));
            }
            if region.hot_write_degree >= threshold {
                let f = region.written_bytes as f64 / secs;
                for p in &region.peers {
                    add(&mut write, p.store_id, f);
                }
                hot_write.push((region.id, f));
            }
        }
        let mut budget = limit - running;
        if budget > 0
            && let Some((region_id, from, to)) = self.pick_hot_leader(&read, &hot_read)
        {
            let op = self.new_operator(
                region_id,
                "transfer-hot-read-leader",
                format!("transfer leader: store {from} to {to}"),
                &kind_string(&["hot-region", "leader"]),
                vec![OpStep::TransferLeader { from, to }],
            );
            self.start_operator(op);
            budget -= 1;
        }
        if budget > 0
            && let Some((region_id, from, to)) = self.pick_hot_peer(&write, &hot_write)
        {
            let steps = self.move_peer_steps(region_id, from, to);
            self.next_id += 1;
            let moves_leader = steps.iter().any(|s| matches!(s, OpStep::TransferLeader { .. }));
            let kind =
                kind_string(if moves_leader { &["hot-region", "region", "leader"] } else { &["hot-region", "region"] });
            let op = self.new_operator(
                region_id,
                "move-hot-write-peer",
                format!("mv peer: store [{from}] to [{to}]"),
                &kind,
                steps,
            );
            if let Some(tokens) = self.add_peer_tokens.get_mut(&to) {
                *tokens -= 1.0;
            }
            self.start_operator(op);
        }
    }

    /// The hottest store for `loads`, if it is clearly above the mean of the schedulable stores.
    fn hottest(&self, loads: &[(u64, f64)]) -> Option<(u64, f64)> {
        let live: Vec<(u64, f64)> = loads.iter().copied().filter(|(id, _)| self.schedulable(*id)).collect();
        if live.len() < 2 {
            return None;
        }
        let mean = live.iter().map(|l| l.1).sum::<f64>() / live.len() as f64;
        let top = live.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1))?;
        (top.1 > 0.0 && top.1 > mean * HOT_STORE_RATIO).then_some(top)
    }

    /// A hot read region led from the hottest store whose leadership can go to a cooler follower
    /// without making that follower the new hottest store.
    fn pick_hot_leader(&self, loads: &[(u64, f64)], hot: &[(u64, u64, f64)]) -> Option<(u64, u64, u64)> {
        let (src, src_load) = self.hottest(loads)?;
        let load = |id: u64| loads.binary_search_by_key(&id, |l| l.0).map(|i| loads[i].1).unwrap_or(0.0);
        let mut candidates: Vec<&(u64, u64, f64)> = hot.iter().filter(|h| h.1 == src).collect();
        candidates.sort_by(|a, b| b.2.total_cmp(&a.2));
        for &&(region_id, _, flow) in &candidates {
            let region = self.region(region_id)?;
            if self.operator_of(region_id).is_some() || !region.pending_peers.is_empty() {
                continue;
            }
            let to = region
                .peers
                .iter()
                .filter(|p| p.role == PeerRole::Voter && p.store_id != src && self.schedulable(p.store_id))
                .filter(|p| !self.leader_blocked(p.store_id))
                .map(|p| p.store_id)
                .min_by(|a, b| load(*a).total_cmp(&load(*b)));
            if let Some(to) = to
                && load(to) + flow <= src_load - flow
            {
                return Some((region_id, src, to));
            }
        }
        None
    }

    /// A hot write region with a peer on the hottest store that can move to a cooler store.
    fn pick_hot_peer(&self, loads: &[(u64, f64)], hot: &[(u64, f64)]) -> Option<(u64, u64, u64)> {
        let (src, src_load) = self.hottest(loads)?;
        let load = |id: u64| loads.binary_search_by_key(&id, |l| l.0).map(|i| loads[i].1).unwrap_or(0.0);
        let low_space = self.schedule.low_space_ratio.0;
        // The possible targets, coolest first, filtered once for the whole round.
        let mut targets: Vec<u64> = self
            .stores
            .iter()
            .filter(|s| self.schedulable(s.id))
            .filter(|s| self.add_peer_tokens.get(&s.id).copied().unwrap_or(s.add_peer_limit) >= 1.0)
            .filter(|s| {
                let used = s.base_used + self.telemetry.region_size_mib(s.id) * MIB;
                (used as f64 / s.capacity.max(1) as f64) < low_space
            })
            .map(|s| s.id)
            .collect();
        targets.sort_by(|a, b| load(*a).total_cmp(&load(*b)));
        let mut candidates: Vec<(u64, f64)> = hot
            .iter()
            .copied()
            .filter(|(id, _)| self.region(*id).is_some_and(|r| r.peers.iter().any(|p| p.store_id == src)))
            .collect();
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (region_id, flow) in candidates {
            let region: &Region = self.region(region_id)?;
            if self.operator_of(region_id).is_some()
                || !region.pending_peers.is_empty()
                || !region.down_peers.is_empty()
                || region.approximate_size > self.schedule.max_movable_hot_peer_size
            {
                continue;
            }
            let moves_leader = region.leader_store() == Some(src);
            let to = targets.iter().copied().find(|t| {
                !region.peers.iter().any(|p| p.store_id == *t) && (!moves_leader || !self.leader_blocked(*t))
            });
            if let Some(to) = to
                && load(to) + flow <= src_load - flow
            {
                return Some((region_id, src, to));
            }
        }
        None
    }
}
