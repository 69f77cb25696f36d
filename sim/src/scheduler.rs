//! Leader schedulers: `evict-leader-scheduler` (`pkg/schedule/schedulers/evict_leader.go`) keeps
//! leaders off its stores, and `balance-leader-scheduler` (`pkg/schedule/schedulers/balance_leader.go`)
//! moves leaders from the store with the highest leader score (count / weight) to the lowest, both as
//! transfer-leader operators within `leader-schedule-limit`. Paused schedulers and `halt-scheduling`
//! stop them.

use std::collections::HashMap;

use crate::model::{PeerRole, StoreState};
use crate::operator::OpStep;
use crate::sim::{STORE_DISCONNECT_MS, Simulation};

/// Name of the evict-leader scheduler.
pub const EVICT_LEADER: &str = "evict-leader-scheduler";
/// Name of the balance-leader scheduler.
pub const BALANCE_LEADER: &str = "balance-leader-scheduler";

impl Simulation {
    /// Whether a scheduler is present and not paused.
    pub(crate) fn scheduler_active(&self, name: &str) -> bool {
        self.schedulers.iter().any(|s| s.name == name && s.paused_until_ms.is_none_or(|t| t <= self.now_ms))
    }

    /// Stores PD would hand leadership to: Up, heartbeating, and not evicted.
    fn leader_targets(&self, evicted: &[u64]) -> Vec<u64> {
        self.stores
            .iter()
            .filter(|s| s.state == StoreState::Up && !evicted.contains(&s.id))
            .filter(|s| self.now_ms.saturating_sub(s.last_heartbeat_ms.unwrap_or(0)) <= STORE_DISCONNECT_MS)
            .map(|s| s.id)
            .collect()
    }

    /// One scheduling round of the leader schedulers.
    pub(crate) fn run_leader_schedulers(&mut self) {
        if self.schedule.halt_scheduling == "true" {
            return;
        }
        let evict = self.scheduler_active(EVICT_LEADER);
        let balance = self.scheduler_active(BALANCE_LEADER);
        if !evict && !balance {
            return;
        }
        let limit = self.schedule.leader_schedule_limit as usize;
        let running = self.operators.iter().filter(|o| o.has_kind("leader")).count();
        if running >= limit {
            return;
        }
        let mut budget = limit - running;
        let evicted: Vec<u64> = self
            .schedulers
            .iter()
            .filter(|s| s.name == EVICT_LEADER)
            .flat_map(|s| s.store_ids.iter().copied())
            .collect();
        let targets = self.leader_targets(&evicted);
        if !self.leaders_may_move(evict, balance, &evicted, &targets) {
            return;
        }
        let weights: HashMap<u64, f64> = self.stores.iter().map(|s| (s.id, s.leader_weight.max(1e-6))).collect();
        let mut counts: HashMap<u64, f64> =
            self.store_stats().into_iter().map(|(id, s)| (id, s.leader_count as f64)).collect();
        let score = |counts: &HashMap<u64, f64>, id: u64| counts.get(&id).copied().unwrap_or(0.0) / weights[&id];
        let busy: std::collections::HashSet<u64> = self.operators.iter().map(|o| o.region_id).collect();
        let mut moves: Vec<(u64, u64, u64, &'static str)> = Vec::new();

        if evict && !evicted.is_empty() {
            // The facts skip the regions led elsewhere without reading them.
            let led_from_evicted: Box<dyn Iterator<Item = &crate::model::Region>> = match self.regions.with_facts() {
                Some(all) => Box::new(
                    all.filter(|(f, _)| f.leader_store().is_none_or(|l| l.is_some_and(|s| evicted.contains(&s))))
                        .map(|(_, r)| r),
                ),
                None => Box::new(self.regions.iter()),
            };
            for region in led_from_evicted {
                if budget == 0 {
                    break;
                }
                let Some(from) = region.leader_store() else { continue };
                if !evicted.contains(&from) || busy.contains(&region.id) {
                    continue;
                }
                let to = region
                    .peers
                    .iter()
                    .filter(|p| p.role == PeerRole::Voter && targets.contains(&p.store_id))
                    .filter(|p| !region.pending_peers.iter().any(|q| q.id == p.id))
                    .map(|p| p.store_id)
                    .min_by(|a, b| score(&counts, *a).total_cmp(&score(&counts, *b)).then(a.cmp(b)));
                if let Some(to) = to {
                    *counts.entry(from).or_default() -= 1.0;
                    *counts.entry(to).or_default() += 1.0;
                    moves.push((region.id, from, to, EVICT_LEADER));
                    budget -= 1;
                }
            }
        }

        if balance && budget > 0 && targets.len() > 1 {
            let mut taken: std::collections::HashSet<u64> = moves.iter().map(|m| m.0).collect();
            while budget > 0 {
                let by_score = |a: &u64, b: &u64| score(&counts, *a).total_cmp(&score(&counts, *b)).then(a.cmp(b));
                let (Some(source), Some(target)) =
                    (targets.iter().copied().max_by(by_score), targets.iter().copied().min_by(by_score))
                else {
                    break;
                };
                // Move only if the two stores do not swap places afterwards.
                let after_source = (counts.get(&source).copied().unwrap_or(0.0) - 1.0) / weights[&source];
                let after_target = (counts.get(&target).copied().unwrap_or(0.0) + 1.0) / weights[&target];
                if source == target || after_source < after_target {
                    break;
                }
                let fits = |r: &crate::model::Region| {
                    r.leader_store() == Some(source)
                        && !busy.contains(&r.id)
                        && !taken.contains(&r.id)
                        && r.pending_peers.is_empty()
                        && r.peers.iter().any(|p| p.store_id == target && p.role == PeerRole::Voter)
                };
                // The facts rule out almost every region without reading it.
                let region = match self.regions.with_facts() {
                    Some(mut all) => all
                        .find(|(f, r)| {
                            f.leader_store().is_none_or(|l| l == Some(source))
                                && !f.has_pending()
                                && f.stores().is_none_or(|mut s| s.any(|x| x == target))
                                && fits(r)
                        })
                        .map(|(_, r)| r),
                    None => self.regions.iter().find(|r| fits(r)),
                };
                let Some(region) = region else { break };
                taken.insert(region.id);
                *counts.entry(source).or_default() -= 1.0;
                *counts.entry(target).or_default() += 1.0;
                moves.push((region.id, source, target, BALANCE_LEADER));
                budget -= 1;
            }
        }

        for (region_id, from, to, desc) in moves {
            let op = self.new_operator(
                region_id,
                desc,
                format!("transfer leader: store {from} to {to}"),
                "leader",
                vec![OpStep::TransferLeader { from, to }],
            );
            self.start_operator(op);
        }
    }

    /// Whether the last load pass (at most 10 s old) leaves any work to the leader schedulers: an
    /// evicted store still leads regions, or balance-leader would move a leader between its most and
    /// least loaded targets. A balanced cluster is left without counting every region's leader; a
    /// change shows in the next pass.
    fn leaders_may_move(&self, evict: bool, balance: bool, evicted: &[u64], targets: &[u64]) -> bool {
        let loads = self.telemetry.loads();
        if loads.is_empty() {
            return true;
        }
        let leaders = |id: u64| self.telemetry.load(id).map_or(0.0, |l| l.leader_count as f64);
        if evict && evicted.iter().any(|&id| leaders(id) > 0.0) {
            return true;
        }
        if !balance || targets.len() < 2 {
            return false;
        }
        let weight = |id: u64| self.store(id).map_or(1.0, |s| s.leader_weight.max(1e-6));
        let score = |id: u64| leaders(id) / weight(id);
        let by_score = |a: &u64, b: &u64| score(*a).total_cmp(&score(*b)).then(a.cmp(b));
        let (Some(source), Some(target)) =
            (targets.iter().copied().max_by(by_score), targets.iter().copied().min_by(by_score))
        else {
            return false;
        };
        source != target && (leaders(source) - 1.0) / weight(source) >= (leaders(target) + 1.0) / weight(target)
    }

    /// Pauses a scheduler for `delay_secs` seconds of simulated time; `0` resumes it.
    pub fn pause_scheduler(&mut self, name: &str, delay_secs: u64) -> bool {
        let until = (delay_secs > 0).then_some(self.now_ms + delay_secs * 1000);
        match self.schedulers.iter_mut().find(|s| s.name == name) {
            Some(s) => {
                s.paused_until_ms = until;
                self.wake_patrol();
                true
            }
            None => false,
        }
    }
}
