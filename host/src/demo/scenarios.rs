//! The fault menu: one entry per failure scenario S1–S12, each a fault of the simulator's
//! catalogue aimed at a store or PD member of the running cluster.

use tikv_sim::faults::{CatalogueEntry, Fault, HotFlow};

/// One scenario of the menu.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// `S1` … `S12`.
    pub id: String,
    /// The key that picks it: `1`–`9`, `0`, `-`, `=`.
    pub key: char,
    /// A short name.
    pub title: String,
    /// The fault injected.
    pub fault: Fault,
    /// What the fault does, from the simulator's catalogue, and what to expect.
    pub description: String,
}

/// The keys of S1…S12, in order.
pub const KEYS: [char; 12] = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '0', '-', '='];

/// The menu for a cluster with these store ids. Faults aim at the last store (leader skew piles
/// leaders onto the first), and S10 kills whichever PD member leads.
pub fn menu(stores: &[u64]) -> Vec<Scenario> {
    let target = stores.last().copied().unwrap_or(1);
    let busy = stores.first().copied().unwrap_or(1);
    let catalogue = Fault::catalogue();
    let about = |kind: &str| -> String {
        catalogue.iter().find(|e: &&CatalogueEntry| e.kind == kind).map(|e| e.description.clone()).unwrap_or_default()
    };
    let entries: Vec<(&str, String, Fault, String)> = vec![
        ("S1", format!("kill store {target}"), Fault::KillStore { store: target }, about("kill-store")),
        (
            "S2",
            format!("lose store {target}"),
            Fault::KillStore { store: target },
            format!(
                "{} Leave it dead: past max-store-down-time (30 simulated minutes) PD declares it Down.",
                about("kill-store")
            ),
        ),
        (
            "S3",
            format!("leader skew onto store {busy}"),
            Fault::LeaderSkew { store: busy, hold_secs: None },
            about("leader-skew"),
        ),
        (
            "S4",
            format!("stale evict-leader, store {target}"),
            Fault::StaleEvictLeader { store: target },
            about("stale-evict-leader"),
        ),
        (
            "S5",
            "hot write region".into(),
            Fault::HotRegion { region: None, flow: HotFlow::Write, bytes_per_sec: None },
            about("hot-region"),
        ),
        (
            "S6",
            "under-replicated regions".into(),
            Fault::UnderReplicate { regions: None, replica_schedule_limit: None },
            about("under-replicate"),
        ),
        (
            "S7",
            format!("fill the disk of store {target}"),
            Fault::FillDisk { store: target, ratio: None },
            about("fill-disk"),
        ),
        (
            "S8",
            format!("slow disk on store {target}"),
            Fault::SlowDisk { store: target, factor: None },
            about("slow-disk"),
        ),
        ("S9", format!("partition store {target}"), Fault::PartitionStore { store: target }, about("partition-store")),
        ("S10", "kill the PD leader".into(), Fault::KillPdLeader, about("kill-pd-leader")),
        (
            "S11",
            format!("lagging peers on store {target}"),
            Fault::SlowDisk { store: target, factor: Some(50.0) },
            format!("{} A 50× slower disk leaves many followers pending.", about("slow-disk")),
        ),
        ("S12", format!("store {target} stuck Offline"), Fault::StuckOffline { store: target }, about("stuck-offline")),
    ];
    entries
        .into_iter()
        .zip(KEYS)
        .map(|((id, title, fault, description), key)| Scenario { id: id.into(), key, title, fault, description })
        .collect()
}

/// The index of the scenario a key picks.
pub fn by_key(key: char) -> Option<usize> {
    KEYS.iter().position(|k| *k == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twelve_scenarios_in_order_with_their_keys_and_catalogue_descriptions() {
        let menu = menu(&[1, 2, 3, 4]);
        assert_eq!(menu.len(), 12);
        for (i, s) in menu.iter().enumerate() {
            assert_eq!(s.id, format!("S{}", i + 1));
            assert_eq!(by_key(s.key), Some(i));
            assert!(!s.description.is_empty(), "{} has a description", s.id);
        }
        assert_eq!(menu[3].fault, Fault::StaleEvictLeader { store: 4 });
        assert_eq!(menu[2].fault, Fault::LeaderSkew { store: 1, hold_secs: None });
        assert!(menu[1].description.contains("Down"));
        assert_eq!(by_key('x'), None);
    }
}
