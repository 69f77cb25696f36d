//! Region classification of PD's region statistics (`pkg/statistics/region_collection.go`), shared by
//! `GET /regions/check/*` and the `pd_regions_status` metric.

use crate::model::{PeerRole, Region, StoreState};
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

/// Whether `region` falls under check `kind`; `None` for an unknown check.
pub fn region_matches(sim: &Simulation, region: &Region, kind: &str) -> Option<bool> {
    let max_replicas = sim.replication.max_replicas as usize;
    let offline = |store_id: u64| sim.store(store_id).is_some_and(|s| s.state == StoreState::Offline);
    Some(match kind {
        "miss-peer" => region.voter_count() < max_replicas,
        "extra-peer" => region.voter_count() > max_replicas,
        "pending-peer" => !region.pending_peers.is_empty(),
        "down-peer" => !region.down_peers.is_empty(),
        "learner-peer" => region.peers.iter().any(|p| p.role == PeerRole::Learner),
        "offline-peer" => region.peers.iter().any(|p| offline(p.store_id)),
        // PD counts a region of at most 1 MiB as empty.
        "empty-region" => region.approximate_size <= 1,
        // 144 MiB / 1,440,000 keys: PD's defaults for the largest healthy region.
        "oversized-region" => region.approximate_size > 144 || region.approximate_keys > 1_440_000,
        // Mergeable: within max-merge-region-size and max-merge-region-keys.
        "undersized-region" => {
            region.approximate_size <= sim.schedule.max_merge_region_size
                && region.approximate_keys <= sim.schedule.max_merge_region_keys
        }
        _ => return None,
    })
}
