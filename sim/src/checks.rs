//! Region classification of PD's region statistics (`pkg/statistics/region_collection.go`), shared by
//! `GET /regions/check/*` and the `pd_regions_status` metric.
//!
//! A [`Classifier`] resolves a check's name and the cluster settings it depends on once (the Offline
//! stores, max-replicas, the merge limits), so classifying a million regions is one cheap test per
//! region.

use crate::model::{PeerRole, Region, StoreState};
use crate::regions::Facts;
use crate::sim::Simulation;

/// The check names of `GET /regions/check/{name}`, paired with their `pd_regions_status` type.
pub const CHECKS: [(&str, &str); 9] = [
    ("miss-peer", "miss-peer-region-count"),
    ("extra-peer", "extra-peer-region-count"),
    ("down-peer", "down-peer-region-count"),
    ("pending-peer", "pending-peer-region-count"),
    ("offline-peer", "offline-peer-region-count"),
    ("learner-peer", "learner-peer-region-count"),
    ("empty-region", "empty-region-count"),
    ("oversized-region", "oversized-region-count"),
    ("undersized-region", "undersized-region-count"),
];

/// One check of [`CHECKS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    MissPeer,
    ExtraPeer,
    DownPeer,
    PendingPeer,
    OfflinePeer,
    LearnerPeer,
    EmptyRegion,
    OversizedRegion,
    UndersizedRegion,
}

impl Check {
    fn parse(kind: &str) -> Option<Check> {
        Some(match kind {
            "miss-peer" => Check::MissPeer,
            "extra-peer" => Check::ExtraPeer,
            "down-peer" => Check::DownPeer,
            "pending-peer" => Check::PendingPeer,
            "offline-peer" => Check::OfflinePeer,
            "learner-peer" => Check::LearnerPeer,
            "empty-region" => Check::EmptyRegion,
            "oversized-region" => Check::OversizedRegion,
            "undersized-region" => Check::UndersizedRegion,
            _ => return None,
        })
    }
}

/// A check bound to the cluster's current settings.
#[derive(Debug, Clone)]
pub struct Classifier {
    check: Check,
    max_replicas: usize,
    /// Ids of the Offline stores, sorted.
    offline: Vec<u64>,
    max_merge_size: u64,
    max_merge_keys: u64,
}

impl Classifier {
    /// The classifier of check `kind` (a name of [`CHECKS`]); `None` for an unknown check.
    pub fn new(sim: &Simulation, kind: &str) -> Option<Classifier> {
        let check = Check::parse(kind)?;
        let offline = sim.stores.iter().filter(|s| s.state == StoreState::Offline).map(|s| s.id).collect();
        Some(Classifier {
            check,
            max_replicas: sim.replication.max_replicas as usize,
            offline,
            max_merge_size: sim.schedule.max_merge_region_size,
            max_merge_keys: sim.schedule.max_merge_region_keys,
        })
    }

    /// Whether a region with these facts falls under the check; `None` when the facts do not tell
    /// (an offline-peer check of a region with more peers than the facts name).
    pub fn matches_facts(&self, f: &Facts) -> Option<bool> {
        Some(match self.check {
            Check::MissPeer => f.voters() < self.max_replicas,
            Check::ExtraPeer => f.voters() > self.max_replicas,
            Check::PendingPeer => f.has_pending(),
            Check::DownPeer => f.has_down(),
            Check::LearnerPeer => f.has_learner(),
            Check::OfflinePeer => {
                !self.offline.is_empty() && f.stores()?.any(|s| self.offline.binary_search(&s).is_ok())
            }
            Check::EmptyRegion => f.size() <= 1,
            // Saturated figures still compare right against these limits.
            Check::OversizedRegion => f.size() > 144 || f.keys() > 1_440_000,
            Check::UndersizedRegion => f.size() <= self.max_merge_size && f.keys() <= self.max_merge_keys,
        })
    }

    /// The regions that fall under the check, in key order: from the facts when the region list is
    /// fresh, else from the regions themselves.
    pub fn select<'a>(&'a self, sim: &'a Simulation) -> Box<dyn Iterator<Item = &'a Region> + 'a> {
        match sim.regions.with_facts() {
            Some(all) => {
                Box::new(all.filter(|(f, r)| self.matches_facts(f).unwrap_or_else(|| self.matches(r))).map(|(_, r)| r))
            }
            None => Box::new(sim.regions.iter().filter(|r| self.matches(r))),
        }
    }

    /// Whether `region` falls under the check.
    pub fn matches(&self, region: &Region) -> bool {
        match self.check {
            Check::MissPeer => region.voter_count() < self.max_replicas,
            Check::ExtraPeer => region.voter_count() > self.max_replicas,
            Check::PendingPeer => !region.pending_peers.is_empty(),
            Check::DownPeer => !region.down_peers.is_empty(),
            Check::LearnerPeer => region.peers.iter().any(|p| p.role == PeerRole::Learner),
            Check::OfflinePeer => {
                !self.offline.is_empty() && region.peers.iter().any(|p| self.offline.binary_search(&p.store_id).is_ok())
            }
            // PD counts a region of at most 1 MiB as empty.
            Check::EmptyRegion => region.approximate_size <= 1,
            // 144 MiB / 1,440,000 keys: PD's defaults for the largest healthy region.
            Check::OversizedRegion => region.approximate_size > 144 || region.approximate_keys > 1_440_000,
            // Mergeable: within max-merge-region-size and max-merge-region-keys.
            Check::UndersizedRegion => {
                region.approximate_size <= self.max_merge_size && region.approximate_keys <= self.max_merge_keys
            }
        }
    }
}

/// Whether `region` falls under check `kind`; `None` for an unknown check. To classify many regions,
/// build one [`Classifier`] instead.
pub fn region_matches(sim: &Simulation, region: &Region, kind: &str) -> Option<bool> {
    Classifier::new(sim, kind).map(|c| c.matches(region))
}

/// How many regions fall under each of [`CHECKS`], in one pass.
pub fn check_counts(sim: &Simulation) -> [u64; CHECKS.len()] {
    let classifiers: Vec<Classifier> = CHECKS.iter().filter_map(|(name, _)| Classifier::new(sim, name)).collect();
    let mut counts = [0u64; CHECKS.len()];
    match sim.regions.with_facts() {
        Some(all) => {
            for (facts, region) in all {
                for (count, classifier) in counts.iter_mut().zip(&classifiers) {
                    *count += u64::from(classifier.matches_facts(facts).unwrap_or_else(|| classifier.matches(region)));
                }
            }
        }
        None => {
            for region in &sim.regions {
                for (count, classifier) in counts.iter_mut().zip(&classifiers) {
                    *count += u64::from(classifier.matches(region));
                }
            }
        }
    }
    counts
}
