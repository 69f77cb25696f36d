//! `check()`: the invariants of a healthy TiKV cluster, each violation keyed by invariant and
//! entity (`store-4`, `region-12`, `pd-pd-1`, `regions`, `cluster`, `pd`), with the figures in its
//! message and the evidence behind it. Thresholds are settings (see [`crate::settings`]).

use crate::operator::plugin::types::{Evidence, InvariantSpec, Severity, Violation};
use crate::settings::Settings;
use crate::snapshot::{HotView, Snapshot, StoreView};
use crate::units::{human_bytes, human_secs};

/// An invariant: name, description, severity, default grace in seconds.
pub struct Invariant {
    /// Stable name.
    pub name: &'static str,
    /// What holds when the cluster is healthy.
    pub description: &'static str,
    /// Usual severity (a violation may be more severe, e.g. Down over Disconnected).
    pub severity: Severity,
    /// Seconds a violation must persist before a ticket opens.
    pub grace_secs: u32,
}

/// Every invariant the plugin checks.
pub const INVARIANTS: &[Invariant] = &[
    inv(
        "store-down",
        "Every store heartbeats to PD (not Disconnected or Down) and, when probes are granted, its status port answers",
        Severity::Critical,
        0,
    ),
    inv("store-stuck-offline", "An Offline store drains its regions and becomes Tombstone", Severity::Warning, 600),
    inv("leader-imbalance", "Leaders are spread across Up stores by their weights", Severity::Warning, 300),
    inv("stale-evict-leader", "No evict-leader-scheduler keeps leaders off a healthy store", Severity::Warning, 300),
    inv("hot-write-region", "No single region takes a disproportionate write flow", Severity::Warning, 60),
    inv("hot-read-region", "No single region takes a disproportionate read flow", Severity::Warning, 60),
    inv("hot-store", "No store carries a disproportionate share of the write or read flow", Severity::Warning, 120),
    inv(
        "under-replicated",
        "Every region has max-replicas voters (regions/check/miss-peer is empty)",
        Severity::Warning,
        120,
    ),
    inv("down-peers", "No region reports a down peer", Severity::Warning, 60),
    inv("pending-peers", "Few regions have pending (lagging) peers", Severity::Warning, 120),
    inv("low-disk-space", "Every store has more free space than PD's low-space-ratio leaves", Severity::Critical, 0),
    inv("slow-store", "No store reports a high slow score", Severity::Warning, 30),
    inv("pd-member-unhealthy", "Every PD member is healthy", Severity::Warning, 10),
    inv("pd-no-leader", "PD has a leader and answers", Severity::Critical, 0),
    inv(
        "high-p99-latency",
        "Every store's gRPC p99 latency is below the threshold (needs Prometheus)",
        Severity::Warning,
        60,
    ),
    inv("operator-stuck", "No admin operator runs past its timeout", Severity::Warning, 0),
];

const fn inv(name: &'static str, description: &'static str, severity: Severity, grace_secs: u32) -> Invariant {
    Invariant { name, description, severity, grace_secs }
}

/// Invariant names, for settings.
pub fn invariant_names() -> Vec<&'static str> {
    INVARIANTS.iter().map(|i| i.name).collect()
}

/// The invariants as the host sees them, with grace overrides applied.
pub fn specs(settings: &Settings) -> Vec<InvariantSpec> {
    INVARIANTS
        .iter()
        .map(|i| InvariantSpec {
            name: i.name.into(),
            description: i.description.into(),
            severity: i.severity,
            grace_secs: settings.grace.get(i.name).copied().unwrap_or(i.grace_secs),
        })
        .collect()
}

fn ev(label: &str, value: impl ToString) -> Evidence {
    Evidence { label: label.into(), value: value.to_string() }
}

fn violation(
    invariant: &str,
    entity: String,
    severity: Severity,
    message: String,
    evidence: Vec<Evidence>,
) -> Violation {
    Violation { invariant: invariant.into(), entity, severity, message, evidence }
}

/// The entity key of a store.
pub fn store_entity(id: u64) -> String {
    format!("store-{id}")
}

/// Checks every invariant against a snapshot.
pub fn check(snap: &Snapshot, settings: &Settings) -> Vec<Violation> {
    let mut out = Vec::new();
    check_pd(snap, &mut out);
    for store in &snap.stores {
        check_store(snap, settings, store, &mut out);
    }
    check_leader_balance(snap, settings, &mut out);
    check_hot(snap, settings, &mut out);
    check_regions(snap, settings, &mut out);
    check_operators(snap, &mut out);
    out
}

fn check_pd(snap: &Snapshot, out: &mut Vec<Violation>) {
    if snap.pd.unreachable {
        out.push(violation(
            "pd-no-leader",
            "pd".into(),
            Severity::Critical,
            "PD does not answer: no request to any PD member succeeded".into(),
            vec![ev("members known", snap.pd.members.len())],
        ));
    } else if snap.pd.no_leader {
        out.push(violation(
            "pd-no-leader",
            "pd".into(),
            Severity::Critical,
            "PD has no leader: requests are refused with ErrRedirectNoLeader".into(),
            vec![
                ev("healthy members", snap.pd.members.iter().filter(|m| m.healthy).count()),
                ev("members", snap.pd.members.len()),
            ],
        ));
    }
    for member in snap.pd.members.iter().filter(|m| !m.healthy) {
        out.push(violation(
            "pd-member-unhealthy",
            format!("pd-{}", member.name),
            Severity::Warning,
            format!("PD member {} is unhealthy ({})", member.name, member.client_urls.join(", ")),
            vec![
                ev("member", &member.name),
                ev("leader", snap.pd.leader.as_deref().unwrap_or("none")),
                ev("healthy members", snap.pd.members.iter().filter(|m| m.healthy).count()),
            ],
        ));
    }
}

fn check_store(snap: &Snapshot, settings: &Settings, store: &StoreView, out: &mut Vec<Violation>) {
    let entity = store_entity(store.id);
    let probe = snap.probes.get(&store.id);
    if store.state_name == "Disconnected" || store.state_name == "Down" {
        let silent = snap.silent_secs(store);
        let mut evidence = vec![
            ev("state_name", &store.state_name),
            ev("seconds since last heartbeat", silent.map_or("unknown".into(), |s| s.to_string())),
            ev("leader_count", store.leader_count),
            ev("region_count", store.region_count),
            ev("max-store-down-time", human_secs(snap.config.max_store_down_time_secs)),
        ];
        let mut message = format!(
            "store {} ({}) is {} (no heartbeat for {})",
            store.id,
            store.address,
            store.state_name,
            silent.map_or("an unknown time".into(), human_secs)
        );
        if let Some(probe) = probe {
            evidence.push(ev("status port", if probe.reachable { "answers" } else { "does not answer" }));
            message.push_str(if probe.reachable {
                "; its status port still answers, so the process is alive (network partition?)"
            } else {
                "; its status port does not answer either"
            });
        }
        let severity = if store.state_name == "Down" { Severity::Critical } else { Severity::Warning };
        out.push(violation("store-down", entity.clone(), severity, message, evidence));
    } else if store.is_up()
        && let Some(probe) = probe.filter(|p| !p.reachable)
    {
        // The earliest sign of a dead store: PD only notices after 20 s without a heartbeat.
        let silent = snap.silent_secs(store);
        out.push(violation(
            "store-down",
            entity.clone(),
            Severity::Warning,
            format!(
                "store {} ({}) does not answer on its status port {}; PD still shows it Up (last heartbeat {} ago)",
                store.id,
                store.address,
                store.status_address,
                silent.map_or("an unknown time".into(), human_secs)
            ),
            vec![
                ev("state_name", &store.state_name),
                ev("status port", "does not answer"),
                ev("probe error", probe.error.clone().unwrap_or_default()),
                ev("seconds since last heartbeat", silent.map_or("unknown".into(), |s| s.to_string())),
                ev("leader_count", store.leader_count),
            ],
        ));
    }
    if store.state_name == "Offline" && store.region_count > 0 {
        let candidates = snap.up_stores().filter(|s| s.id != store.id && !snap.is_low_space(s)).count() as u64;
        let mut message = format!("store {} is Offline and still holds {} regions", store.id, store.region_count);
        if candidates < snap.config.max_replicas {
            message.push_str(&format!(
                "; only {candidates} Up stores with free space can take them while max-replicas is {}",
                snap.config.max_replicas
            ));
        }
        out.push(violation(
            "store-stuck-offline",
            entity.clone(),
            Severity::Warning,
            message,
            vec![
                ev("region_count", store.region_count),
                ev("Up stores with free space", candidates),
                ev("max-replicas", snap.config.max_replicas),
            ],
        ));
    }
    if store.state_name != "Tombstone" && snap.is_low_space(store) {
        let available = store.available_ratio();
        let severity = if available < 0.05 { Severity::Critical } else { Severity::Warning };
        out.push(violation(
            "low-disk-space",
            entity.clone(),
            severity,
            format!(
                "store {} has {:.1} % of its disk free ({} of {}); PD stops moving data in below {:.0} %",
                store.id,
                available * 100.0,
                human_bytes(store.available as f64),
                human_bytes(store.capacity as f64),
                (1.0 - snap.config.low_space_ratio) * 100.0
            ),
            vec![
                ev("available", human_bytes(store.available as f64)),
                ev("capacity", human_bytes(store.capacity as f64)),
                ev("low-space-ratio", snap.config.low_space_ratio),
                ev("region_count", store.region_count),
            ],
        ));
    }
    if store.is_up() && store.slow_score >= settings.slow_score_threshold {
        let mut evidence = vec![
            ev("slow_score", store.slow_score),
            ev(
                "pending-peer regions on the store",
                snap.region_checks.get("pending-peer").and_then(|c| c.by_store.get(&store.id)).copied().unwrap_or(0),
            ),
            ev("leader_count", store.leader_count),
        ];
        if let Some(p99) = snap.metrics.get(&store.id).and_then(|m| m.p99_ms) {
            evidence.push(ev("grpc p99 ms", format!("{p99:.1}")));
        }
        out.push(violation(
            "slow-store",
            entity.clone(),
            Severity::Warning,
            format!(
                "store {} reports slow score {} (threshold {}; PD's evict-slow-store acts at 100)",
                store.id, store.slow_score, settings.slow_score_threshold
            ),
            evidence,
        ));
    }
    if store.is_up()
        && let Some(p99) = snap.metrics.get(&store.id).and_then(|m| m.p99_ms)
        && p99 > settings.p99_latency_ms
    {
        out.push(violation(
            "high-p99-latency",
            entity.clone(),
            Severity::Warning,
            format!(
                "store {} serves gRPC with a p99 of {p99:.0} ms (threshold {} ms)",
                store.id, settings.p99_latency_ms
            ),
            vec![
                ev("p99 ms", format!("{p99:.1}")),
                ev("slow_score", store.slow_score),
                ev(
                    "requests per second",
                    snap.metrics[&store.id].requests_per_sec.map_or("unknown".into(), |r| format!("{r:.0}")),
                ),
            ],
        ));
    }
    if snap.evict_leader_stores.contains(&store.id)
        && store.is_up()
        && store.slow_score < settings.slow_score_threshold
        && !snap.is_low_space(store)
        && probe.is_none_or(|p| p.reachable)
        && store.leader_count <= settings.stale_evict_max_leaders
    {
        out.push(violation(
            "stale-evict-leader",
            entity,
            Severity::Warning,
            format!(
                "evict-leader-scheduler keeps leaders off store {} although it is Up and healthy \
                 (slow score {}, {} leaders)",
                store.id, store.slow_score, store.leader_count
            ),
            vec![
                ev("scheduler", format!("evict-leader-scheduler-{}", store.id)),
                ev("leader_count", store.leader_count),
                ev("region_count", store.region_count),
                ev("slow_score", store.slow_score),
            ],
        ));
    }
}

/// Leader counts per unit of leader weight over the Up stores that may hold leaders.
fn leader_loads(snap: &Snapshot) -> Vec<(u64, f64)> {
    snap.up_stores()
        .filter(|s| s.leader_weight > 0.0 && !snap.evict_leader_stores.contains(&s.id))
        .map(|s| (s.id, s.leader_count as f64 / s.leader_weight))
        .collect()
}

fn check_leader_balance(snap: &Snapshot, settings: &Settings, out: &mut Vec<Violation>) {
    let loads = leader_loads(snap);
    if loads.len() < 2 {
        return;
    }
    let mean = loads.iter().map(|l| l.1).sum::<f64>() / loads.len() as f64;
    let (max_id, max) = loads.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap_or_default();
    let (min_id, min) = loads.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap_or_default();
    if mean <= 0.0
        || (max - min) / mean <= settings.leader_imbalance_ratio
        || max - min < settings.leader_imbalance_min_diff as f64
    {
        return;
    }
    let spread: Vec<String> = loads.iter().map(|(id, l)| format!("store {id}: {l:.0}")).collect();
    out.push(violation(
        "leader-imbalance",
        "cluster".into(),
        Severity::Warning,
        format!(
            "leaders are unbalanced: store {max_id} holds {max:.0}, store {min_id} {min:.0}, mean {mean:.0} \
             (spread {:.0} % of the mean)",
            (max - min) / mean * 100.0
        ),
        vec![
            ev("leaders per store", spread.join(", ")),
            ev("busiest store", max_id),
            ev("emptiest store", min_id),
            ev(
                "balance-leader-scheduler",
                if snap.schedulers.iter().any(|s| s == "balance-leader-scheduler") { "present" } else { "absent" },
            ),
        ],
    ));
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn check_hot(snap: &Snapshot, settings: &Settings, out: &mut Vec<Violation>) {
    for (flow, view, threshold, invariant) in [
        ("write", &snap.hot_write, settings.hot_write_bytes, "hot-write-region"),
        ("read", &snap.hot_read, settings.hot_read_bytes, "hot-read-region"),
    ] {
        // Stores whose flow the hot region explains: every peer applies a write, the leader serves reads.
        let mut explained: Vec<u64> = Vec::new();
        if let Some(hot) = hot_region(view, threshold, settings.hot_region_ratio) {
            explained = if flow == "write" { hot.peer_stores.clone() } else { vec![hot.store_id] };
            let others: Vec<String> = view
                .top
                .iter()
                .skip(1)
                .take(3)
                .map(|r| format!("region {}: {}/s", r.region_id, human_bytes(r.flow_bytes)))
                .collect();
            let peers: Vec<String> = hot.peer_stores.iter().map(u64::to_string).collect();
            out.push(violation(
                invariant,
                format!("region-{}", hot.region_id),
                Severity::Warning,
                format!(
                    "region {} takes {}/s of {flow}s on store {} (threshold {}/s)",
                    hot.region_id,
                    human_bytes(hot.flow_bytes),
                    hot.store_id,
                    human_bytes(threshold)
                ),
                vec![
                    ev("flow bytes/s", format!("{:.0}", hot.flow_bytes)),
                    ev("leader store", hot.store_id),
                    ev("peer stores", if peers.is_empty() { "none listed".into() } else { peers.join(", ") }),
                    ev("next hottest", if others.is_empty() { "none".into() } else { others.join(", ") }),
                ],
            ));
        }
        let stores = &view.store_bytes;
        for (&store, &bytes) in stores {
            if explained.contains(&store) || bytes < threshold || stores.len() < 2 {
                continue;
            }
            let others =
                stores.iter().filter(|(s, _)| **s != store).map(|(_, b)| *b).sum::<f64>() / (stores.len() - 1) as f64;
            if bytes >= settings.hot_store_ratio * others.max(1.0) {
                out.push(violation(
                    "hot-store",
                    store_entity(store),
                    Severity::Warning,
                    format!(
                        "store {store} takes {}/s of {flow}s, {:.1} times the other stores' mean",
                        human_bytes(bytes),
                        bytes / others.max(1.0)
                    ),
                    vec![
                        ev(&format!("{flow} bytes/s"), format!("{bytes:.0}")),
                        ev("others' mean bytes/s", format!("{others:.0}")),
                    ],
                ));
            }
        }
    }
}

/// The hottest region when it is above the threshold and far above the background flow: the median
/// of the listed regions below the threshold. Regions above the threshold are left out of that median
/// because a hot range that split shares its flow between parts that all stay listed, and comparing a
/// part with its siblings would hide the whole range; with no background listed, the threshold decides.
pub fn hot_region(view: &HotView, threshold: f64, ratio: f64) -> Option<&crate::snapshot::HotRegion> {
    let top = view.top.first()?;
    let mut background: Vec<f64> =
        view.top.iter().skip(1).map(|r| r.flow_bytes).filter(|flow| *flow < threshold).collect();
    let typical = median(&mut background);
    (top.flow_bytes >= threshold && top.flow_bytes >= ratio * typical).then_some(top)
}

fn by_store_text(snap: &Snapshot, kind: &str) -> String {
    let Some(check) = snap.region_checks.get(kind) else { return "not observed".into() };
    let mut tallies: Vec<(u64, u64)> = check.by_store.iter().map(|(s, n)| (*s, *n)).collect();
    tallies.sort_by_key(|t| std::cmp::Reverse(t.1));
    tallies.iter().take(6).map(|(s, n)| format!("store {s}: {n}")).collect::<Vec<_>>().join(", ")
}

fn check_regions(snap: &Snapshot, settings: &Settings, out: &mut Vec<Violation>) {
    let miss = snap.check_count("miss-peer");
    if miss > 0 {
        let unavailable: Vec<String> = snap
            .stores
            .iter()
            .filter(|s| s.state_name == "Down" || s.state_name == "Disconnected" || s.state_name == "Offline")
            .map(|s| format!("store {} {}", s.id, s.state_name))
            .collect();
        out.push(violation(
            "under-replicated",
            "regions".into(),
            Severity::Warning,
            format!("{miss} regions have fewer than {} voters", snap.config.max_replicas),
            vec![
                ev("miss-peer regions", miss),
                ev("stores not Up", if unavailable.is_empty() { "none".into() } else { unavailable.join(", ") }),
                ev("replica-schedule-limit", snap.config.replica_schedule_limit),
                ev("example regions", example_regions(snap, "miss-peer")),
            ],
        ));
    }
    let down = snap.check_count("down-peer");
    if down > 0 {
        out.push(violation(
            "down-peers",
            "regions".into(),
            Severity::Warning,
            format!("{down} regions report a down peer ({})", by_store_text(snap, "down-peer")),
            vec![ev("down-peer regions", down), ev("down peers by store", by_store_text(snap, "down-peer"))],
        ));
    }
    let pending = snap.check_count("pending-peer");
    if pending >= settings.pending_peer_threshold.max(1) {
        out.push(violation(
            "pending-peers",
            "regions".into(),
            Severity::Warning,
            format!("{pending} regions have pending peers ({})", by_store_text(snap, "pending-peer")),
            vec![
                ev("pending-peer regions", pending),
                ev("pending peers by store", by_store_text(snap, "pending-peer")),
                ev("threshold", settings.pending_peer_threshold),
            ],
        ));
    }
}

fn example_regions(snap: &Snapshot, kind: &str) -> String {
    snap.region_checks
        .get(kind)
        .map(|c| c.regions.iter().take(5).map(|r| r.id.to_string()).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

fn check_operators(snap: &Snapshot, out: &mut Vec<Violation>) {
    let Some(now) = snap.cluster_now_ms else { return };
    for op in snap.operators.iter().filter(|o| o.is_admin()) {
        let (Some(created), Some(timeout)) = (op.created_ms, op.timeout_ms) else { continue };
        let age = now.saturating_sub(created);
        // Heartbeats come every 10 s, so PD's clock as seen here may lag by that much.
        if age > timeout + 10_000 {
            out.push(violation(
                "operator-stuck",
                format!("region-{}", op.region_id),
                Severity::Warning,
                format!(
                    "operator {} on region {} has run for {} (timeout {})",
                    op.desc,
                    op.region_id,
                    human_secs(age / 1000),
                    human_secs(timeout / 1000)
                ),
                vec![ev("operator", &op.text)],
            ));
        }
    }
}

#[cfg(test)]
mod hot_region_tests {
    use super::*;
    use crate::snapshot::HotRegion;

    fn view(flows: &[f64]) -> HotView {
        let top = flows
            .iter()
            .enumerate()
            .map(|(i, f)| HotRegion {
                region_id: i as u64 + 1,
                store_id: 1,
                peer_stores: vec![1, 2, 3],
                flow_bytes: *f,
            })
            .collect();
        HotView { top, ..HotView::default() }
    }

    const MIB: f64 = 1024.0 * 1024.0;

    #[test]
    fn a_region_far_above_the_background_is_hot() {
        let v = view(&[20.0 * MIB, MIB, MIB, 0.5 * MIB]);
        assert_eq!(hot_region(&v, 8.0 * MIB, 4.0).map(|r| r.region_id), Some(1));
    }

    #[test]
    fn split_parts_of_a_hot_range_do_not_hide_each_other() {
        let v = view(&[18.0 * MIB, 10.0 * MIB, 10.0 * MIB]);
        assert_eq!(hot_region(&v, 8.0 * MIB, 4.0).map(|r| r.region_id), Some(1));
    }

    #[test]
    fn below_the_threshold_nothing_is_hot() {
        assert!(hot_region(&view(&[7.0 * MIB, 0.1 * MIB]), 8.0 * MIB, 4.0).is_none());
        assert!(hot_region(&view(&[]), 8.0 * MIB, 4.0).is_none());
    }

    #[test]
    fn a_busy_background_is_not_a_hotspot() {
        // Every listed region writes 3-7 MiB/s: the top at 9 MiB/s is not four times that.
        let v = view(&[9.0 * MIB, 7.0 * MIB, 5.0 * MIB, 4.0 * MIB, 3.0 * MIB]);
        assert!(hot_region(&v, 8.0 * MIB, 4.0).is_none());
    }
}
