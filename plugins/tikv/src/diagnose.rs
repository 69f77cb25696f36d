//! `diagnose()`: the built-in expert rules for the scenarios S1–S12 of TiKV operations. For a
//! ticket and the current observation each rule gives the root cause, its confidence, the evidence,
//! the alternatives it weighed (with what supports and contradicts each), and recommended actions
//! from the catalogue with concrete parameters, or why waiting is wiser.
//!
//! Rules may read PD (regions of a store, a region) to pick concrete parameters; they never change
//! anything.

use crate::operator::plugin::types::{Alternative, Diagnosis, Param, Recommendation, Ticket, Urgency};
use crate::params::{int_value, text_value};
use crate::pd;
use crate::settings::Settings;
use crate::snapshot::{Snapshot, StoreView};
use crate::units::{human_bytes, human_secs};
use crate::wire;

/// Builds one diagnosis.
struct Report {
    d: Diagnosis,
}

impl Report {
    fn new(ticket: &Ticket, snap: &Snapshot) -> Report {
        let mut timeline = vec![format!(
            "ticket {} opened for {} on {}: {} (seen {} times)",
            ticket.id, ticket.invariant, ticket.entity, ticket.message, ticket.occurrences
        )];
        if let Some(now) = snap.cluster_now_ms {
            timeline.push(format!("latest observation at PD time {now} ms"));
        }
        Report {
            d: Diagnosis {
                summary: String::new(),
                timeline,
                affected: vec![ticket.entity.clone()],
                root_cause: String::new(),
                confidence: 0.5,
                evidence: ticket.evidence.iter().map(|e| format!("{}: {}", e.label, e.value)).collect(),
                alternatives: vec![],
                recommendations: vec![],
                wait_reason: None,
            },
        }
    }

    fn cause(mut self, summary: impl Into<String>, root_cause: impl Into<String>, confidence: f64) -> Self {
        self.d.summary = summary.into();
        self.d.root_cause = root_cause.into();
        self.d.confidence = confidence;
        self
    }

    fn evidence(mut self, line: impl Into<String>) -> Self {
        self.d.evidence.push(line.into());
        self
    }

    fn event(mut self, line: impl Into<String>) -> Self {
        self.d.timeline.push(line.into());
        self
    }

    fn affected(mut self, entity: impl Into<String>) -> Self {
        let entity = entity.into();
        if !self.d.affected.contains(&entity) {
            self.d.affected.push(entity);
        }
        self
    }

    fn alternative(
        mut self,
        hypothesis: &str,
        supporting: &[String],
        contradicting: &[String],
        conclusion: &str,
    ) -> Self {
        self.d.alternatives.push(Alternative {
            hypothesis: hypothesis.into(),
            supporting: supporting.to_vec(),
            contradicting: contradicting.to_vec(),
            conclusion: conclusion.into(),
        });
        self
    }

    fn recommend(
        mut self,
        action: &str,
        params: Vec<Param>,
        reason: &str,
        urgency: Urgency,
        expected: &str,
        risks: &str,
    ) -> Self {
        self.d.recommendations.push(Recommendation {
            action: action.into(),
            params,
            reason: reason.into(),
            urgency,
            expected_outcome: expected.into(),
            risks: risks.into(),
        });
        self
    }

    fn wait(mut self, why: impl Into<String>) -> Self {
        self.d.wait_reason = Some(why.into());
        self
    }
}

/// The id in an entity key such as `store-4` or `region-12`.
fn entity_id(entity: &str, prefix: &str) -> Option<u64> {
    entity.strip_prefix(prefix)?.strip_prefix('-')?.parse().ok()
}

/// Diagnoses a ticket.
pub fn diagnose(ticket: &Ticket, snap: &Snapshot, settings: &Settings) -> Result<Diagnosis, String> {
    let r = Report::new(ticket, snap);
    let report = match ticket.invariant.as_str() {
        "store-down" => store_down(r, ticket, snap)?,
        "store-stuck-offline" => stuck_offline(r, ticket, snap)?,
        "leader-imbalance" => leader_imbalance(r, snap, settings),
        "stale-evict-leader" => stale_evict(r, ticket, snap)?,
        "hot-write-region" | "hot-read-region" => hot_region(r, ticket, snap)?,
        "hot-store" => hot_store(r, ticket, snap)?,
        "under-replicated" => under_replicated(r, snap),
        "down-peers" => down_peers(r, snap),
        "pending-peers" => pending_peers(r, snap, settings),
        "low-disk-space" => low_space(r, ticket, snap)?,
        "slow-store" => slow_store(r, ticket, snap, settings)?,
        "high-p99-latency" => high_latency(r, ticket, snap, settings)?,
        "pd-member-unhealthy" | "pd-no-leader" => pd_trouble(r, ticket, snap),
        "operator-stuck" => operator_stuck(r, ticket, snap)?,
        other => return Err(format!("no rule for invariant `{other}`")),
    };
    let mut diagnosis = report.d;
    if diagnosis.recommendations.is_empty() && diagnosis.wait_reason.is_none() {
        diagnosis.wait_reason =
            Some("no catalogue action addresses this cause; observe and escalate to a human".into());
    }
    Ok(diagnosis)
}

fn store_of<'a>(ticket: &Ticket, snap: &'a Snapshot) -> Result<(u64, Option<&'a StoreView>), String> {
    let id = entity_id(&ticket.entity, "store").ok_or_else(|| format!("`{}` names no store", ticket.entity))?;
    Ok((id, snap.store(id)))
}

fn store_line(s: &StoreView) -> String {
    format!(
        "store {}: {}, {} leaders, {} regions, slow score {}, {:.0} % free",
        s.id,
        s.state_name,
        s.leader_count,
        s.region_count,
        s.slow_score,
        s.available_ratio() * 100.0
    )
}

/// S1 (short outage), S2 (permanent loss), S9 (partition).
fn store_down(r: Report, ticket: &Ticket, snap: &Snapshot) -> Result<Report, String> {
    let (id, store) = store_of(ticket, snap)?;
    let Some(store) = store else {
        return Ok(r
            .cause(
                format!("store {id} is no longer listed"),
                format!("store {id} became Tombstone or was removed"),
                0.6,
            )
            .wait("the store is gone from PD's list; the ticket resolves once the violation is absent"));
    };
    let silent = snap.silent_secs(store).unwrap_or(0);
    let down_time = snap.config.max_store_down_time_secs;
    let probe = snap.probes.get(&id);
    let up_others = snap.up_stores().filter(|s| s.id != id).count() as u64;
    let down_peers = snap.region_checks.get("down-peer").and_then(|c| c.by_store.get(&id)).copied().unwrap_or(0);
    let r = r
        .affected(format!("store-{id}"))
        .evidence(store_line(store))
        .evidence(format!("no heartbeat for {}; max-store-down-time {}", human_secs(silent), human_secs(down_time)))
        .evidence(format!("{down_peers} regions report a down peer on store {id}"))
        .event(format!("store {id} stopped heartbeating about {} ago", human_secs(silent)));

    if let Some(probe) = probe.filter(|p| p.reachable) {
        let _ = probe;
        return Ok(r
            .cause(
                format!("store {id} is cut off from PD but its process is alive (S9: network partition)"),
                format!(
                    "store {id}'s status port answers the operator, yet PD has received no heartbeat for {}: \
                     the network between the store and PD (and likely its Raft peers) is partitioned",
                    human_secs(silent)
                ),
                0.75,
            )
            .evidence(format!("status port {} answers GET /status", store.status_address))
            .alternative(
                "the TiKV process crashed (S1)",
                &[format!("PD sees no heartbeat for {}", human_secs(silent))],
                &[format!("its status port {} still answers", store.status_address)],
                "rejected: a crashed process does not answer its status port",
            )
            .alternative(
                "the store is overloaded or its disk is slow (S8)",
                &[],
                &[format!("slow score {} before it went silent", store.slow_score)],
                "unlikely: a slow store still heartbeats",
            )
            .recommend(
                "evict-leaders",
                vec![int_value("store", id)],
                "leaders left on an isolated store cannot serve; keep them on the connected side until the network is mapped and fixed",
                Urgency::Soon,
                "the store holds no leaders; clients are served by the majority side",
                "if the partition is on the PD side only, the eviction moves leaders needlessly; undo with restore-leaders",
            )
            .wait("map the partition (which side is cut) before anything else; do not offline a live store"));
    }

    if store.is_up() {
        return Ok(r
            .cause(
                format!("store {id}'s status port stopped answering; PD has not noticed yet (S1 or S9)"),
                format!(
                    "the status port {} of store {id} refuses connections while PD still counts it Up (heartbeat {} ago): \
                     the TiKV process has most likely stopped, or the operator lost its network path to the store",
                    store.status_address,
                    human_secs(silent)
                ),
                0.55,
            )
            .alternative(
                "only the operator's path to the store is cut",
                &[format!("PD received a heartbeat {} ago", human_secs(silent))],
                &[],
                "possible: PD will show Disconnected within 20 s if the process is really gone",
            )
            .wait("confirm within the next 20 s (PD marks the store Disconnected); then restart the TiKV process"));
    }
    let probe_note = match probe {
        Some(_) => format!("its status port {} does not answer either", store.status_address),
        None => "status probes are not granted, so a partition cannot be ruled out".to_owned(),
    };
    if store.state_name == "Down" || silent >= down_time {
        let r = r
            .cause(
                format!("store {id} is lost (S2): Down for over max-store-down-time"),
                format!(
                    "store {id} has been silent for {} (more than max-store-down-time {}): the process or host is gone; \
                     PD rebuilds its replicas elsewhere",
                    human_secs(silent),
                    human_secs(down_time)
                ),
                0.8,
            )
            .evidence(probe_note.clone())
            .alternative(
                "a short outage that will recover by itself (S1)",
                &[],
                &[format!("silent for {} already", human_secs(silent))],
                "unlikely after this long; a human should confirm the host is gone",
            )
            .alternative(
                "a network partition (S9)",
                &[],
                &[probe_note],
                if probe.is_some() { "rejected: the status port does not answer" } else { "cannot be excluded without status probes" },
            );
        if up_others >= snap.config.max_replicas {
            return Ok(r.recommend(
                "offline-store",
                vec![int_value("store", id)],
                "tells PD to move the lost store's replicas at once and then retire it",
                Urgency::Soon,
                "miss-peer and down-peer regions drain to zero; the store becomes Tombstone",
                "if the store comes back, cancel with cancel-offline; never remove failed stores unsafely without a human",
            ));
        }
        return Ok(r.wait(format!(
            "only {up_others} other Up stores remain for max-replicas {}: removing the store would lose replicas; this needs a human",
            snap.config.max_replicas
        )));
    }
    Ok(r.cause(
        format!("store {id} is Disconnected: a short outage so far (S1)"),
        format!(
            "store {id} stopped heartbeating {} ago ({probe_note}); Raft re-elects its leaders elsewhere within about 10 s \
             and PD waits max-store-down-time ({}) before rebuilding replicas",
            human_secs(silent),
            human_secs(down_time)
        ),
        0.7,
    )
    .alternative(
        "the store is permanently lost (S2)",
        std::slice::from_ref(&probe_note),
        &[format!("silent for only {} of {}", human_secs(silent), human_secs(down_time))],
        "too early to tell; treat as S2 if it does not return",
    )
    .alternative(
        "a network partition (S9)",
        &[],
        &[probe_note],
        if probe.is_some() { "rejected: the status port does not answer" } else { "cannot be excluded without status probes" },
    )
    .wait(format!(
        "restart the TiKV process on store {id} ({}); do not drain or offline it in the first minutes — PD repairs by itself after {}",
        store.address,
        human_secs(down_time)
    )))
}

/// S12.
fn stuck_offline(r: Report, ticket: &Ticket, snap: &Snapshot) -> Result<Report, String> {
    let (id, store) = store_of(ticket, snap)?;
    let Some(store) = store else {
        return Ok(r.cause("the store finished draining", "no longer listed", 0.6).wait("nothing to do"));
    };
    let candidates: Vec<&StoreView> = snap.up_stores().filter(|s| s.id != id && !snap.is_low_space(s)).collect();
    let full: Vec<String> =
        snap.up_stores().filter(|s| snap.is_low_space(s)).map(|s| format!("store {}", s.id)).collect();
    let r = r.affected(format!("store-{id}")).evidence(store_line(store));
    if (candidates.len() as u64) < snap.config.max_replicas {
        let cause = if full.is_empty() {
            format!(
                "too few Up stores ({}) to hold max-replicas {} replicas elsewhere",
                candidates.len(),
                snap.config.max_replicas
            )
        } else {
            format!("the other stores are full ({}), so PD cannot move data onto them (S7)", full.join(", "))
        };
        return Ok(r
            .cause(format!("store {id} is stuck Offline: its regions have nowhere to go (S12)"), cause, 0.8)
            .alternative(
                "draining is merely slow (store limits)",
                &[],
                &[format!("only {} stores can accept replicas", candidates.len())],
                "rejected: the replicas cannot be placed at all",
            )
            .recommend(
                "cancel-offline",
                vec![int_value("store", id)],
                "if the removal was not meant to happen now, bring the store back Up until capacity is added",
                Urgency::WhenConvenient,
                "the store returns to Up and keeps serving its regions",
                "the store stays in service; scale out first if it must go",
            )
            .wait("add capacity (scale out) or free space on the other stores before the store can drain"));
    }
    Ok(r.cause(
        format!("store {id} drains slowly: {} regions left (S12)", store.region_count),
        "replicas are moved at the pace the store limits and replica-schedule-limit allow",
        0.5,
    )
    .evidence(format!("replica-schedule-limit {}", snap.config.replica_schedule_limit))
    .recommend(
        "set-store-limit",
        vec![int_value("store", id), crate::params::text_value("type", "remove-peer"), number_value("rate", 30.0)],
        "lets PD remove replicas from the draining store faster",
        Urgency::WhenConvenient,
        "the region count of the store falls faster",
        "more snapshot traffic on the receiving stores",
    ))
}

fn number_value(name: &str, value: f64) -> Param {
    Param { name: name.into(), value: crate::operator::plugin::types::ParamValue::Number(value) }
}

/// A region led by `from` with a healthy voter on `to`, from PD.
fn movable_leader(from: u64, to: u64) -> Option<u64> {
    let reply: wire::RegionsReply = pd::get(&format!("/pd/api/v1/regions/store/{from}?type=leader")).ok()?;
    reply.regions.unwrap_or_default().into_iter().find_map(|region| {
        let pending = region.pending_peers.iter().flatten().any(|p| p.store_id == to);
        let voter = region.peers().iter().any(|p| p.store_id == to && p.is_voter());
        (region.leader_store() == Some(from) && voter && !pending).then_some(region.id)
    })
}

/// S3.
fn leader_imbalance(r: Report, snap: &Snapshot, settings: &Settings) -> Report {
    let up: Vec<&StoreView> = snap.up_stores().collect();
    let mut r = r;
    for s in &up {
        r = r.evidence(store_line(s));
    }
    let weighted: Vec<String> = up
        .iter()
        .filter(|s| (s.leader_weight - 1.0).abs() > 1e-6)
        .map(|s| format!("store {} leader weight {}", s.id, s.leader_weight))
        .collect();
    let evicted: Vec<String> = snap.evict_leader_stores.iter().map(|s| format!("store {s}")).collect();
    let balance = snap.schedulers.iter().any(|s| s == "balance-leader-scheduler");
    let busiest = up.iter().filter(|s| !snap.evict_leader_stores.contains(&s.id)).max_by_key(|s| s.leader_count);
    let emptiest = up
        .iter()
        .filter(|s| {
            !snap.evict_leader_stores.contains(&s.id)
                && s.leader_weight > 0.0
                && s.slow_score < settings.slow_score_threshold
        })
        .min_by_key(|s| s.leader_count);
    r = r.alternative(
        "a stale evict-leader-scheduler keeps leaders away (S4)",
        &evicted,
        &(if evicted.is_empty() { vec!["no evict-leader-scheduler is present".to_owned()] } else { vec![] }),
        if evicted.is_empty() { "rejected" } else { "possible: see the stale-evict-leader ticket" },
    );
    r = r.alternative(
        "leader weights differ on purpose",
        &weighted,
        &(if weighted.is_empty() { vec!["every Up store has leader weight 1".to_owned()] } else { vec![] }),
        if weighted.is_empty() {
            "rejected"
        } else {
            "possible: weights are an operator's choice; check before moving leaders"
        },
    );
    if !balance {
        return r
            .cause(
                "leaders are unbalanced and PD's balance-leader-scheduler is not running",
                "balance-leader-scheduler was removed, so nothing spreads leaders",
                0.7,
            )
            .wait("re-add balance-leader-scheduler (pd-ctl scheduler add balance-leader-scheduler); transfers alone would not stick");
    }
    let (Some(from), Some(to)) = (busiest, emptiest) else {
        return r
            .cause("leaders are unbalanced", "no store can take more leaders", 0.4)
            .wait("no Up store can take leaders");
    };
    let r = r.affected(format!("store-{}", from.id)).affected(format!("store-{}", to.id)).cause(
        format!(
            "store {} leads {} regions while store {} leads {} (S3)",
            from.id, from.leader_count, to.id, to.leader_count
        ),
        "leaders piled up on one store and balance-leader has not evened them out yet",
        0.6,
    );
    match movable_leader(from.id, to.id) {
        Some(region) => r.recommend(
            "transfer-leader",
            vec![int_value("region", region), int_value("to-store", to.id)],
            &format!("moves one leader from the busiest store {} to the emptiest {}", from.id, to.id),
            Urgency::WhenConvenient,
            "the leader spread narrows; balance-leader continues the rest",
            "balance-leader may undo one-off moves; at most leader-schedule-limit moves at once",
        ),
        None => r.wait(format!(
            "no region led by store {} has a healthy voter on store {}; let balance-leader work",
            from.id, to.id
        )),
    }
}

/// S4.
fn stale_evict(r: Report, ticket: &Ticket, snap: &Snapshot) -> Result<Report, String> {
    let (id, store) = store_of(ticket, snap)?;
    let line = store.map(store_line).unwrap_or_default();
    Ok(r.affected(format!("store-{id}"))
        .evidence(line.clone())
        .cause(
            format!("a leftover evict-leader-scheduler keeps leaders off healthy store {id} (S4)"),
            format!("evict-leader-scheduler-{id} is still configured although store {id} is Up and healthy; it was left behind after maintenance (see tidb-operator#4483)"),
            0.8,
        )
        .alternative(
            "maintenance on the store is still in progress",
            &[format!("evict-leader-scheduler-{id} is present")],
            &[line],
            "possible only if someone is working on the store: the approver must confirm no drain is in progress",
        )
        .recommend(
            "remove-stale-scheduler",
            vec![int_value("store", id)],
            "removing the leftover scheduler lets balance-leader move leaders back",
            Urgency::Soon,
            "store regains leaders over the next minutes",
            "if a maintenance is still running, leaders return to a store about to be stopped",
        ))
}

/// S5.
fn hot_region(r: Report, ticket: &Ticket, snap: &Snapshot) -> Result<Report, String> {
    let region = entity_id(&ticket.entity, "region").ok_or_else(|| format!("`{}` names no region", ticket.entity))?;
    let view = if ticket.invariant == "hot-write-region" { &snap.hot_write } else { &snap.hot_read };
    let flow = if ticket.invariant == "hot-write-region" { "write" } else { "read" };
    let hot = view.top.iter().find(|h| h.region_id == region);
    let next: Vec<String> = view
        .top
        .iter()
        .filter(|h| h.region_id != region)
        .take(3)
        .map(|h| format!("region {}: {}/s", h.region_id, human_bytes(h.flow_bytes)))
        .collect();
    let store = hot.map(|h| h.store_id);
    let mut r = r.cause(
        format!("region {region} is a {flow} hotspot (S5)"),
        format!(
            "one region takes {}/s of {flow}s{}; a single hot region cannot be moved away, only split",
            hot.map_or("a large share".into(), |h| human_bytes(h.flow_bytes)),
            store.map_or(String::new(), |s| format!(" on store {s}"))
        ),
        0.8,
    );
    if let Some(s) = store {
        r = r.affected(format!("store-{s}"));
    }
    Ok(r.alternative(
        "the whole store is overloaded by many warm regions",
        &[],
        &[format!(
            "the next hottest regions are far cooler: {}",
            if next.is_empty() { "none listed".into() } else { next.join(", ") }
        )],
        "rejected: the load is concentrated in one region",
    )
    .recommend(
        "split-region",
        vec![int_value("region", region), text_value("policy", "approximate")],
        "splitting lets PD spread the halves (and their leaders) over different stores",
        Urgency::Soon,
        "the region splits in two and balance-hot-region moves one half away",
        "more regions; if the hot keys are a single key the split does not help",
    ))
}

fn hot_store(r: Report, ticket: &Ticket, snap: &Snapshot) -> Result<Report, String> {
    let (id, _) = store_of(ticket, snap)?;
    let hottest = snap
        .hot_write
        .top
        .iter()
        .chain(snap.hot_read.top.iter())
        .filter(|h| h.store_id == id)
        .max_by(|a, b| a.flow_bytes.total_cmp(&b.flow_bytes));
    let r = r.cause(
        format!("store {id} leads a disproportionate share of the hot flow (S5)"),
        "several hot regions have their leaders on the same store and balance-hot-region has not spread them",
        0.55,
    );
    let Some(h) = hottest else { return Ok(r.wait("let balance-hot-region-scheduler spread the leaders")) };
    let target = fetch_region_peer_target(h.region_id, id, snap);
    Ok(match target {
        Some(to) => r.recommend(
            "transfer-leader",
            vec![int_value("region", h.region_id), int_value("to-store", to)],
            &format!("moves the hottest leader on store {id} to the coolest store holding a voter"),
            Urgency::WhenConvenient,
            "the store's hot flow falls",
            "balance-hot-region may move it again",
        ),
        None => r.wait("no better store holds a voter of the hottest region"),
    })
}

/// The least loaded Up store holding a healthy voter of `region`, other than `from`.
fn fetch_region_peer_target(region: u64, from: u64, snap: &Snapshot) -> Option<u64> {
    let region = crate::actions::fetch_region(region).ok()??;
    region
        .peers()
        .iter()
        .filter(|p| p.store_id != from && p.is_voter())
        .filter_map(|p| snap.store(p.store_id))
        .filter(|s| s.is_up() && !snap.evict_leader_stores.contains(&s.id))
        .min_by_key(|s| s.leader_count)
        .map(|s| s.id)
}

/// S6.
fn under_replicated(r: Report, snap: &Snapshot) -> Report {
    let miss = snap.check_count("miss-peer");
    let gone: Vec<&StoreView> =
        snap.stores.iter().filter(|s| s.state_name == "Down" || s.state_name == "Disconnected").collect();
    let offline: Vec<&StoreView> = snap.stores.iter().filter(|s| s.state_name == "Offline").collect();
    let full: Vec<&StoreView> = snap.up_stores().filter(|s| snap.is_low_space(s)).collect();
    let mut r =
        r.evidence(format!("{miss} miss-peer regions; replica-schedule-limit {}", snap.config.replica_schedule_limit));
    for s in gone.iter().chain(offline.iter()).chain(full.iter()) {
        r = r.evidence(store_line(s)).affected(format!("store-{}", s.id));
    }
    if snap.config.replica_schedule_limit == 0 {
        return r
            .cause(
                format!("{miss} regions lack replicas and PD's repair is switched off (S6)"),
                "replica-schedule-limit is 0, so the replica checker adds no peers",
                0.85,
            )
            .recommend(
                "set-schedule-limit",
                vec![text_value("limit", "replica-schedule-limit"), int_value("value", 64)],
                "restores PD's default repair rate",
                Urgency::Soon,
                "miss-peer regions fall to zero",
                "repair traffic competes with the workload",
            );
    }
    if let Some(s) = gone.first() {
        let silent = snap.silent_secs(s).unwrap_or(0);
        let r = r.cause(
            format!("{miss} regions lack a replica because store {} is {} (S6 from S1/S2)", s.id, s.state_name),
            format!(
                "the replicas on store {} are unavailable; PD rebuilds them only after max-store-down-time ({}; silent for {})",
                s.id,
                human_secs(snap.config.max_store_down_time_secs),
                human_secs(silent)
            ),
            0.75,
        );
        if s.state_name == "Down" {
            return r.wait(
                "PD is rebuilding the replicas now; raise replica-schedule-limit only if the repair is too slow",
            );
        }
        return r.wait("PD repairs on its own after max-store-down-time; if the store is known to be lost, offline it to repair now");
    }
    if let Some(s) = offline.first() {
        return r
            .cause(
                format!("{miss} regions lack a replica while store {} drains", s.id),
                "replicas are being moved off the Offline store",
                0.6,
            )
            .wait("PD is moving the replicas; this resolves as the store drains");
    }
    if let Some(s) = full.first() {
        return r
            .cause(
                format!("{miss} regions lack a replica because stores are full (S7)"),
                format!("store {} and others are past low-space-ratio, so PD cannot place new replicas", s.id),
                0.6,
            )
            .wait("free space or add stores");
    }
    r.cause(
        format!("{miss} regions lack a replica"),
        "no unavailable or full store explains it: placement rules or labels may not be satisfiable",
        0.4,
    )
    .wait("check placement rules and store labels against max-replicas")
}

fn down_peers(r: Report, snap: &Snapshot) -> Report {
    let check = snap.region_checks.get("down-peer");
    let worst = check.and_then(|c| c.by_store.iter().max_by_key(|(_, n)| **n)).map(|(s, n)| (*s, *n));
    match worst {
        Some((store, n)) => {
            let state = snap.store(store).map_or("not listed".into(), |s| s.state_name.clone());
            r.affected(format!("store-{store}"))
                .cause(
                    format!(
                        "{} regions report down peers, {n} of them on store {store} ({state})",
                        snap.check_count("down-peer")
                    ),
                    format!("store {store} has not answered its Raft leaders for over 10 minutes"),
                    0.7,
                )
                .wait(format!(
                    "see the store-down ticket for store {store}: PD replaces the peers after max-store-down-time"
                ))
        }
        None => r.cause("regions report down peers", "no store concentration observed", 0.3).wait("observe"),
    }
}

/// S11 (and S8 behind it).
fn pending_peers(r: Report, snap: &Snapshot, settings: &Settings) -> Report {
    let check = snap.region_checks.get("pending-peer");
    let total = snap.check_count("pending-peer");
    let worst = check.and_then(|c| c.by_store.iter().max_by_key(|(_, n)| **n)).map(|(s, n)| (*s, *n));
    let Some((store_id, n)) = worst else { return r.cause("pending peers", "no concentration", 0.3).wait("observe") };
    let store = snap.store(store_id);
    let slow = store.is_some_and(|s| s.slow_score >= settings.slow_score_threshold);
    let r = r
        .affected(format!("store-{store_id}"))
        .evidence(format!("{n} of {total} pending peers are on store {store_id}"));
    let r = match store {
        Some(s) => r.evidence(store_line(s)),
        None => r,
    };
    if slow {
        let already = snap.evict_leader_stores.contains(&store_id);
        let r = r
            .cause(
                format!("store {store_id}'s slow disk leaves its peers behind (S11 caused by S8)"),
                format!("store {store_id} reports a high slow score and holds most pending peers: its disk cannot keep up with the Raft log and snapshots"),
                0.8,
            )
            .alternative("snapshot throughput limits", &[], &["the pending peers concentrate on one slow store".into()], "rejected");
        if already || !snap.evict_leader_stores.is_empty() {
            return r.wait("leaders are already being evicted; replace the disk");
        }
        return r.recommend(
            "evict-leaders",
            vec![int_value("store", store_id)],
            "a slow store should not lead; followers tolerate lag better",
            Urgency::Soon,
            "latency recovers; pending peers stop growing",
            "undo with restore-leaders when the disk is replaced",
        );
    }
    r.cause(
        format!("{total} regions have pending peers, mostly on store {store_id} (S11)"),
        format!("store {store_id} receives more snapshots than it applies (snapshot throughput)"),
        0.55,
    )
    .alternative("a slow disk (S8)", &[], &[format!("store {store_id}'s slow score is normal")], "unlikely")
    .recommend(
        "set-store-limit",
        vec![int_value("store", store_id), text_value("type", "add-peer"), number_value("rate", 5.0)],
        "lowers how fast PD adds peers to the store so it can catch up",
        Urgency::WhenConvenient,
        "pending peers on the store drain",
        "slower rebalancing and repair towards the store",
    )
}

/// S7.
fn low_space(r: Report, ticket: &Ticket, snap: &Snapshot) -> Result<Report, String> {
    let (id, store) = store_of(ticket, snap)?;
    let Some(store) = store else { return Ok(r.cause("store gone", "not listed", 0.3).wait("observe")) };
    let emptiest = snap
        .up_stores()
        .filter(|s| s.id != id && !snap.is_low_space(s))
        .max_by(|a, b| a.available_ratio().total_cmp(&b.available_ratio()));
    let mut r = r
        .affected(format!("store-{id}"))
        .evidence(store_line(store))
        .cause(
            format!("store {id} is almost full: {:.1} % free (S7)", store.available_ratio() * 100.0),
            format!(
                "store {id} uses more than low-space-ratio {} of its {}; PD stops moving data onto it",
                snap.config.low_space_ratio,
                human_bytes(store.capacity as f64)
            ),
            0.85,
        )
        .recommend(
            "set-store-weight",
            vec![
                int_value("store", id),
                number_value("leader-weight", store.leader_weight),
                number_value("region-weight", (store.region_weight / 2.0).max(0.1)),
            ],
            "halving the region weight makes PD prefer other stores for regions",
            Urgency::Soon,
            "PD moves regions off the store over time",
            "other stores fill faster; scale out if all are close to full",
        );
    if let Some(to) = emptiest {
        let region: Option<u64> =
            pd::get::<wire::RegionsReply>(&format!("/pd/api/v1/regions/store/{id}")).ok().and_then(|reply| {
                reply
                    .regions
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|r| !r.peers().iter().any(|p| p.store_id == to.id))
                    .max_by_key(|r| r.approximate_size)
                    .map(|r| r.id)
            });
        if let Some(region) = region {
            r = r.recommend(
                "transfer-peer",
                vec![int_value("region", region), int_value("from-store", id), int_value("to-store", to.id)],
                &format!(
                    "moves a large region off the full store to store {} ({:.0} % free)",
                    to.id,
                    to.available_ratio() * 100.0
                ),
                Urgency::Soon,
                "space is freed on the full store",
                "snapshot traffic to the target store",
            );
        }
    }
    Ok(r.wait("the lasting fix is more capacity: scale out or clean up data"))
}

/// S8.
fn slow_store(r: Report, ticket: &Ticket, snap: &Snapshot, _settings: &Settings) -> Result<Report, String> {
    let (id, store) = store_of(ticket, snap)?;
    let Some(store) = store else { return Ok(r.cause("store gone", "not listed", 0.3).wait("observe")) };
    let pending = snap.region_checks.get("pending-peer").and_then(|c| c.by_store.get(&id)).copied().unwrap_or(0);
    let p99 = snap.metrics.get(&id).and_then(|m| m.p99_ms);
    let mut supporting =
        vec![format!("slow score {}", store.slow_score), format!("{pending} pending peers on the store")];
    if let Some(p99) = p99 {
        supporting.push(format!("gRPC p99 {p99:.0} ms"));
    }
    let r = r
        .affected(format!("store-{id}"))
        .evidence(store_line(store))
        .cause(
            format!("store {id} has a slow disk (S8)"),
            format!(
                "store {id} reports slow score {} and lags its peers: its disk (or node) is degraded",
                store.slow_score
            ),
            if pending > 0 { 0.8 } else { 0.65 },
        )
        .alternative(
            "the store is overloaded by a hotspot (S5)",
            &[],
            &[if snap.hot_write.top.first().is_some_and(|h| h.store_id == id) {
                "a hot region is led here".into()
            } else {
                "no hot region is led by this store".into()
            }],
            "unlikely unless a hot region lives here",
        )
        .alternative("the disk is slow", &supporting, &[], "accepted");
    if snap.evict_leader_stores.contains(&id) {
        return Ok(r.wait("leaders are already evicted from the store; replace its disk or node"));
    }
    if !snap.evict_leader_stores.is_empty() {
        return Ok(r.wait(format!(
            "leaders are already evicted from store(s) {:?}; evicting from several stores at once starves the cluster",
            snap.evict_leader_stores
        )));
    }
    Ok(r.recommend(
        "evict-leaders",
        vec![int_value("store", id)],
        "keeps leaders, and so client latency, off the slow store",
        Urgency::Soon,
        "the store holds no leaders; p99 latency recovers",
        "more load on the other stores; undo with restore-leaders after the disk is replaced",
    ))
}

fn high_latency(r: Report, ticket: &Ticket, snap: &Snapshot, settings: &Settings) -> Result<Report, String> {
    let (id, store) = store_of(ticket, snap)?;
    let slow = store.is_some_and(|s| s.slow_score >= settings.slow_score_threshold);
    let hot = snap.hot_write.top.first().filter(|h| h.store_id == id).or(snap
        .hot_read
        .top
        .first()
        .filter(|h| h.store_id == id));
    if slow {
        return slow_store(r, ticket, snap, settings);
    }
    if let Some(h) = hot {
        let region = h.region_id;
        return Ok(r
            .cause(
                format!("store {id} is slow because region {region} is hot (S5)"),
                format!("region {region} concentrates {}/s on store {id}", human_bytes(h.flow_bytes)),
                0.7,
            )
            .recommend(
                "split-region",
                vec![int_value("region", region), text_value("policy", "approximate")],
                "spreads the hot region's load",
                Urgency::Soon,
                "latency on the store recovers",
                "more regions",
            ));
    }
    Ok(r.cause(format!("store {id} answers slowly"), "no slow disk or hotspot explains it: load or network", 0.4)
        .wait("observe the store's metrics"))
}

/// S10.
fn pd_trouble(r: Report, ticket: &Ticket, snap: &Snapshot) -> Report {
    let healthy = snap.pd.members.iter().filter(|m| m.healthy).count();
    let total = snap.pd.members.len();
    let r = r.evidence(format!(
        "{healthy} of {total} PD members healthy; leader {}",
        snap.pd.leader.as_deref().unwrap_or("none")
    ));
    if ticket.invariant == "pd-no-leader" {
        return r
            .cause(
                "PD has no leader (S10)",
                if total > 0 && healthy * 2 <= total {
                    format!("only {healthy} of {total} PD members are healthy: etcd has no quorum to elect a leader")
                } else {
                    "the PD leader was lost; etcd is electing a new one".to_owned()
                },
                0.8,
            )
            .wait("hold every action until PD has a leader again; restart the failed PD members");
    }
    r.cause(
        format!("PD member {} is down (S10)", ticket.entity.trim_start_matches("pd-")),
        format!("{healthy} of {total} members are healthy; the cluster keeps a leader while a majority lives"),
        0.75,
    )
    .wait("restart the failed PD member; no cluster action is needed while a leader exists")
}

fn operator_stuck(r: Report, ticket: &Ticket, snap: &Snapshot) -> Result<Report, String> {
    let region = entity_id(&ticket.entity, "region").ok_or_else(|| format!("`{}` names no region", ticket.entity))?;
    let op = snap.operator_on(region).map(|o| o.text.clone()).unwrap_or_default();
    Ok(r.cause(
        format!("an admin operator on region {region} runs past its timeout"),
        "the operator waits for a step that cannot finish (a target store down, slow or full)",
        0.6,
    )
    .evidence(op)
    .recommend(
        "cancel-operator",
        vec![int_value("region", region)],
        "frees the region for PD's own scheduling",
        Urgency::WhenConvenient,
        "no operator on the region",
        "the intended move does not happen; propose it again once the cause is fixed",
    ))
}
