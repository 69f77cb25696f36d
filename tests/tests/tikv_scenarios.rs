//! Each failure scenario S1–S12, injected into the simulator through its fault API, produces the
//! expected violation through the real host runtime and the TiKV plugin, and the built-in rules
//! name the scenario and recommend what its remedy says (or say why to wait).

mod common;

use common::tikv::{Tikv, param_int};
use tikv_sim::faults::{Fault, HotFlow};
use tikv_sim::{ClusterSpec, SimCluster};

fn spec() -> ClusterSpec {
    ClusterSpec { stores: 5, regions: 240, ..ClusterSpec::default() }
}

/// Injects `fault`, steps `ms` of simulated time, and returns the diagnosis of the violation
/// `invariant` on an entity starting with `entity`, checking that it names `scenario`.
async fn scenario(
    t: &Tikv,
    fault: Fault,
    ms: u64,
    invariant: &str,
    entity: &str,
    scenario: &str,
) -> operator_host::runtime::bindings::types::Diagnosis {
    t.sim.inject(fault).await.unwrap();
    // Step in slices: the simulation ticks are the same, but PD's clock is seen moving.
    let mut left = ms;
    while left > 0 {
        let step = left.min(30_000);
        t.sim.step(step);
        left -= step;
    }
    let (observation, violations) = t.check().await;
    let v = violations
        .iter()
        .find(|v| v.invariant == invariant && v.entity.starts_with(entity))
        .unwrap_or_else(|| panic!("{scenario}: no {invariant}@{entity}* among {violations:?}"))
        .clone();
    let d = t.diagnose(&v, &observation).await;
    assert!(d.summary.contains(scenario), "{scenario}: the diagnosis should name it: {}", d.summary);
    assert!(!d.root_cause.is_empty() && (0.0..=1.0).contains(&d.confidence));
    assert!(
        !d.recommendations.is_empty() || d.wait_reason.is_some(),
        "{scenario}: a recommendation or a reason to wait"
    );
    d
}

async fn shutdown(sim: &SimCluster) {
    sim.shutdown().await;
}

#[tokio::test]
async fn s1_short_store_outage_waits() {
    let t = Tikv::start(spec()).await;
    let d = scenario(&t, Fault::KillStore { store: 2 }, 60_000, "store-down", "store-2", "S1").await;
    assert!(d.recommendations.is_empty(), "no drain in the first minutes");
    shutdown(&t.sim).await;
}

#[tokio::test]
async fn s2_lost_store_is_offlined() {
    let t = Tikv::start(spec()).await;
    let d = scenario(&t, Fault::KillStore { store: 2 }, 32 * 60_000, "store-down", "store-2", "S2").await;
    assert_eq!(d.recommendations[0].action, "offline-store");
    shutdown(&t.sim).await;
}

#[tokio::test]
async fn s3_leader_skew_is_balanced_by_transfers() {
    let t = Tikv::start(spec()).await;
    let d = scenario(&t, Fault::LeaderSkew { store: 1, hold_secs: None }, 60_000, "leader-imbalance", "cluster", "S3")
        .await;
    let rec = &d.recommendations[0];
    assert_eq!(rec.action, "transfer-leader");
    assert_ne!(param_int(&rec.params, "to-store"), 1, "leaders move away from the busiest store");
    shutdown(&t.sim).await;
}

#[tokio::test]
async fn s4_stale_evict_leader_is_removed() {
    let t = Tikv::start(spec()).await;
    let d = scenario(&t, Fault::StaleEvictLeader { store: 3 }, 5 * 60_000, "stale-evict-leader", "store-3", "S4").await;
    assert_eq!(d.recommendations[0].action, "remove-stale-scheduler");
    shutdown(&t.sim).await;
}

#[tokio::test]
async fn s5_hot_region_is_split() {
    let t = Tikv::start(spec()).await;
    let fault = Fault::HotRegion { region: None, flow: HotFlow::Write, bytes_per_sec: None };
    let d = scenario(&t, fault, 4 * 60_000, "hot-write-region", "region-", "S5").await;
    assert_eq!(d.recommendations[0].action, "split-region");
    shutdown(&t.sim).await;
}

#[tokio::test]
async fn s6_under_replication_names_the_throttled_repair() {
    let t = Tikv::start(spec()).await;
    let fault = Fault::UnderReplicate { regions: Some(20), replica_schedule_limit: None };
    let d = scenario(&t, fault, 60_000, "under-replicated", "regions", "S6").await;
    assert_eq!(d.recommendations[0].action, "set-schedule-limit");
    shutdown(&t.sim).await;
}

#[tokio::test]
async fn s7_full_disk_gets_its_weight_lowered() {
    let t = Tikv::start(spec()).await;
    let d = scenario(&t, Fault::FillDisk { store: 4, ratio: None }, 20_000, "low-disk-space", "store-4", "S7").await;
    assert!(d.recommendations.iter().any(|r| r.action == "set-store-weight"));
    shutdown(&t.sim).await;
}

#[tokio::test]
async fn s8_slow_disk_gets_its_leaders_evicted() {
    let t = Tikv::start(spec()).await;
    let d = scenario(&t, Fault::SlowDisk { store: 5, factor: None }, 5 * 60_000, "slow-store", "store-5", "S8").await;
    assert_eq!(d.recommendations[0].action, "evict-leaders");
    assert_eq!(param_int(&d.recommendations[0].params, "store"), 5);
    shutdown(&t.sim).await;
}

#[tokio::test]
async fn s9_partition_is_told_apart_from_a_crash() {
    let t = Tikv::start(spec()).await;
    let d = scenario(&t, Fault::PartitionStore { store: 2 }, 60_000, "store-down", "store-2", "S9").await;
    assert!(d.alternatives.iter().any(|a| a.hypothesis.contains("crashed") && a.conclusion.contains("rejected")));
    shutdown(&t.sim).await;
}

#[tokio::test]
async fn s10_pd_member_loss_and_no_leader_hold_actions() {
    let t = Tikv::start(spec()).await;
    let d = scenario(&t, Fault::KillPdLeader, 30_000, "pd-member-unhealthy", "pd-", "S10").await;
    assert!(d.recommendations.is_empty() && d.wait_reason.is_some());
    let others: Vec<String> = {
        let sim = t.sim.sim();
        sim.members.iter().filter(|m| m.alive).map(|m| m.name.clone()).collect()
    };
    t.sim.inject(Fault::KillPdMember { name: others[0].clone() }).await.unwrap();
    t.sim.step(15_000);
    let (observation, violations) = t.check().await;
    assert!(!observation.complete);
    assert!(violations.iter().any(|v| v.invariant == "pd-no-leader"), "{violations:?}");
    shutdown(&t.sim).await;
}

#[tokio::test]
async fn s11_pending_peers_point_at_the_slow_store() {
    let t = Tikv::start(spec()).await;
    let d =
        scenario(&t, Fault::SlowDisk { store: 3, factor: None }, 6 * 60_000, "pending-peers", "regions", "S11").await;
    assert!(d.affected.iter().any(|a| a == "store-3"), "{:?}", d.affected);
    shutdown(&t.sim).await;
}

#[tokio::test]
async fn s12_stuck_offline_names_the_blocked_drain() {
    let t = Tikv::start(spec()).await;
    let d = scenario(&t, Fault::StuckOffline { store: 1 }, 30 * 60_000, "store-stuck-offline", "store-1", "S12").await;
    assert!(d.root_cause.contains("full") || d.root_cause.contains("too few"), "{}", d.root_cause);
    shutdown(&t.sim).await;
}
