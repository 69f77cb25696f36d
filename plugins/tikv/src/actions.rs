//! The action catalogue: what the operator may do to a TiKV cluster through PD, each with typed
//! parameters, a risk level, preconditions checked before anything is sent (`precheck`), the
//! request itself (`execute`), its expected post-condition (`verify`) and, after a crash, whether it
//! took effect (`reconcile`).
//!
//! Rules from PD's practice that the preconditions enforce: one operator per region; never act
//! while PD has no leader; evicting or offlining must leave at least max-replicas Up stores;
//! never move peers onto a low-space store; evict leaders from at most `max-evicted-stores` stores
//! at once.

use serde_json::json;

use crate::operator::plugin::http::Method;
use crate::operator::plugin::types::{
    ActionError, ActionOutcome, ActionSpec, Evidence, Param, Reconciliation, Risk, Verdict,
};
use crate::params::{choice, duration, get_id, get_int, get_number, get_text, id, number, text};
use crate::pd::{self, PdError};
use crate::settings::Settings;
use crate::snapshot::{Snapshot, StoreView};
use crate::units::format_go_duration;
use crate::wire;

/// Shortest `max-store-down-time` the plugin will set, seconds (below it PD would rebuild
/// replicas for every short restart).
pub const MIN_STORE_DOWN_TIME_SECS: i64 = 600;
/// Longest `max-store-down-time` the plugin will set, seconds.
pub const MAX_STORE_DOWN_TIME_SECS: i64 = 86_400;

/// The schedule limits `set-schedule-limit` may change.
pub const SCHEDULE_LIMITS: [&str; 3] = ["leader-schedule-limit", "region-schedule-limit", "replica-schedule-limit"];

#[allow(clippy::too_many_arguments)]
fn spec(
    name: &str,
    description: &str,
    risk: Risk,
    params: Vec<crate::operator::plugin::types::ParamSpec>,
    entity: Option<&str>,
    undo: Option<&str>,
    verify_window_secs: u32,
) -> ActionSpec {
    ActionSpec {
        name: name.into(),
        description: description.into(),
        risk,
        params,
        entity_param: entity.map(Into::into),
        undo: undo.map(Into::into),
        verify_window_secs,
    }
}

/// The catalogue.
pub fn catalogue() -> Vec<ActionSpec> {
    let region = || id("region", "Region id");
    let store = || id("store", "Store id");
    vec![
        spec(
            "transfer-leader",
            "Moves a region's leader to another store holding one of its voters (PD admin operator)",
            Risk::Low,
            vec![region(), id("to-store", "Store that should lead the region")],
            Some("region"),
            None,
            120,
        ),
        spec(
            "transfer-peer",
            "Moves one replica of a region from one store to another (add peer, snapshot, remove peer)",
            Risk::Medium,
            vec![region(), id("from-store", "Store losing the replica"), id("to-store", "Store receiving it")],
            Some("region"),
            None,
            900,
        ),
        spec(
            "evict-leaders",
            "Keeps leaders off a store with evict-leader-scheduler (e.g. before maintenance or for a slow disk)",
            Risk::Medium,
            vec![store()],
            Some("store"),
            Some("restore-leaders"),
            600,
        ),
        spec(
            "restore-leaders",
            "Removes the store from evict-leader-scheduler so leaders may return",
            Risk::Low,
            vec![store()],
            Some("store"),
            None,
            60,
        ),
        spec(
            "remove-stale-scheduler",
            "Removes a leftover evict-leader-scheduler from a healthy Up store",
            Risk::Low,
            vec![store()],
            Some("store"),
            None,
            60,
        ),
        spec(
            "offline-store",
            "Starts removing a store: PD moves its replicas away, then marks it Tombstone (pd-ctl store delete)",
            Risk::High,
            vec![store()],
            Some("store"),
            Some("cancel-offline"),
            120,
        ),
        spec(
            "cancel-offline",
            "Cancels removing an Offline store (pd-ctl store cancel-delete)",
            Risk::Medium,
            vec![store()],
            Some("store"),
            None,
            60,
        ),
        spec(
            "split-region",
            "Splits a region in two (for a hot or oversized region)",
            Risk::Medium,
            vec![
                region(),
                choice("policy", "How PD finds the split key", &["approximate", "scan"], Some("approximate")),
            ],
            Some("region"),
            None,
            180,
        ),
        spec(
            "scatter-region",
            "Spreads a region's replicas and leader across stores",
            Risk::Low,
            vec![region()],
            Some("region"),
            None,
            600,
        ),
        spec(
            "set-store-weight",
            "Sets a store's leader and region weights (scheduling favours heavier stores)",
            Risk::Medium,
            vec![
                store(),
                number("leader-weight", "Leader weight (1 is normal, 0 keeps leaders away)", 0.0, 100.0),
                number("region-weight", "Region weight (1 is normal)", 0.0, 100.0),
            ],
            Some("store"),
            None,
            60,
        ),
        spec(
            "set-store-limit",
            "Sets how many peers per minute PD may add to or remove from a store",
            Risk::Medium,
            vec![
                store(),
                number("rate", "Operations per minute", 0.0, 1000.0),
                choice("type", "Which limit", &["add-peer", "remove-peer", "both"], Some("both")),
            ],
            Some("store"),
            None,
            60,
        ),
        spec(
            "pause-scheduler",
            "Pauses one of PD's schedulers for a while",
            Risk::Medium,
            vec![
                text("scheduler", "Scheduler name, e.g. balance-leader-scheduler"),
                duration("seconds", "How long", 1, 86_400),
            ],
            Some("scheduler"),
            Some("resume-scheduler"),
            30,
        ),
        spec(
            "resume-scheduler",
            "Resumes a paused scheduler",
            Risk::Low,
            vec![text("scheduler", "Scheduler name")],
            Some("scheduler"),
            None,
            30,
        ),
        spec(
            "set-max-store-down-time",
            "Sets how long PD waits before rebuilding the replicas of a Down store (bounded 10 min – 24 h)",
            Risk::High,
            vec![duration(
                "seconds",
                "The new max-store-down-time",
                MIN_STORE_DOWN_TIME_SECS,
                MAX_STORE_DOWN_TIME_SECS,
            )],
            None,
            None,
            30,
        ),
        spec(
            "set-schedule-limit",
            "Sets one of PD's schedule limits (bounded 0–1024); raise temporarily, then set it back",
            Risk::Medium,
            vec![
                choice("limit", "Which limit", &SCHEDULE_LIMITS, None),
                crate::params::integer("value", "The new limit", 0, 1024, None),
            ],
            Some("limit"),
            None,
            30,
        ),
        spec(
            "cancel-operator",
            "Cancels the operator PD runs on a region",
            Risk::Medium,
            vec![region()],
            Some("region"),
            None,
            60,
        ),
    ]
}

fn refuse(text: impl Into<String>) -> ActionError {
    ActionError::Precondition(text.into())
}

/// Reads a region; `None` when PD says it does not exist (404 on master, an empty region with id
/// 0 on v8.5 and older).
pub fn fetch_region(region: u64) -> Result<Option<wire::Region>, PdError> {
    let path = format!("/pd/api/v1/region/id/{region}");
    match pd::get::<wire::Region>(&path) {
        Ok(r) if r.id == 0 => Ok(None),
        Ok(r) => Ok(Some(r)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

fn region_or_refuse(region: u64) -> Result<wire::Region, ActionError> {
    match fetch_region(region) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(refuse(format!("region {region} does not exist"))),
        Err(e) => Err(e.into_action_error()),
    }
}

fn store_or_refuse(snap: &Snapshot, id: u64) -> Result<&StoreView, ActionError> {
    snap.store(id).ok_or_else(|| refuse(format!("store {id} is not in the cluster (or is Tombstone)")))
}

fn require_up(store: &StoreView) -> Result<(), ActionError> {
    if store.is_up() { Ok(()) } else { Err(refuse(format!("store {} is {}, not Up", store.id, store.state_name))) }
}

fn no_operator(snap: &Snapshot, region: u64) -> Result<(), ActionError> {
    match snap.operator_on(region) {
        Some(op) if op.is_admin() => Err(refuse(format!(
            "region {region} already runs the admin operator {}; PD runs one operator per region",
            op.desc
        ))),
        _ => Ok(()),
    }
}

/// Up stores that still take leaders, i.e. not evicted.
fn leader_capable_up(snap: &Snapshot) -> usize {
    snap.up_stores().filter(|s| !snap.evict_leader_stores.contains(&s.id)).count()
}

/// Checks an action's preconditions against the observation (and the region from PD where one is
/// named). Nothing is changed.
pub fn precheck(action: &str, params: &[Param], snap: &Snapshot, settings: &Settings) -> Result<(), ActionError> {
    if snap.pd.no_leader || snap.pd.unreachable {
        return Err(refuse("PD has no leader: every action is held until a leader is back"));
    }
    let max_replicas = snap.config.max_replicas as usize;
    match action {
        "transfer-leader" => {
            let (region_id, to) = (get_id(params, "region")?, get_id(params, "to-store")?);
            let target = store_or_refuse(snap, to)?;
            require_up(target)?;
            if snap.evict_leader_stores.contains(&to) {
                return Err(refuse(format!(
                    "store {to} is under evict-leader-scheduler: PD would move the leader straight back"
                )));
            }
            if target.slow_score >= settings.slow_score_threshold {
                return Err(refuse(format!("store {to} is slow (slow score {})", target.slow_score)));
            }
            no_operator(snap, region_id)?;
            let region = region_or_refuse(region_id)?;
            if region.leader_store() == Some(to) {
                return Err(refuse(format!("store {to} already leads region {region_id}")));
            }
            if !region.peers().iter().any(|p| p.store_id == to && p.is_voter()) {
                return Err(refuse(format!("region {region_id} has no voter on store {to}")));
            }
            if region.pending_peers.iter().flatten().any(|p| p.store_id == to) {
                return Err(refuse(format!("region {region_id}'s peer on store {to} is pending (behind the log)")));
            }
            Ok(())
        }
        "transfer-peer" => {
            let (region_id, from, to) =
                (get_id(params, "region")?, get_id(params, "from-store")?, get_id(params, "to-store")?);
            if from == to {
                return Err(ActionError::InvalidParams("`from-store` and `to-store` are the same store".into()));
            }
            let target = store_or_refuse(snap, to)?;
            require_up(target)?;
            if snap.is_low_space(target) {
                return Err(refuse(format!(
                    "store {to} is low on space ({:.1} % free): never move peers onto it",
                    target.available_ratio() * 100.0
                )));
            }
            no_operator(snap, region_id)?;
            let region = region_or_refuse(region_id)?;
            if !region.peers().iter().any(|p| p.store_id == from) {
                return Err(refuse(format!("region {region_id} has no peer on store {from}")));
            }
            if region.peers().iter().any(|p| p.store_id == to) {
                return Err(refuse(format!("region {region_id} already has a peer on store {to}")));
            }
            Ok(())
        }
        "evict-leaders" => {
            let id = get_id(params, "store")?;
            let store = store_or_refuse(snap, id)?;
            require_up(store)?;
            if snap.evict_leader_stores.contains(&id) {
                return Err(refuse(format!("leaders are already evicted from store {id}")));
            }
            if snap.evict_leader_stores.len() >= settings.max_evicted_stores {
                return Err(refuse(format!(
                    "leaders are already evicted from store(s) {:?}; evicting from more at once starves the cluster",
                    snap.evict_leader_stores
                )));
            }
            let left = leader_capable_up(snap).saturating_sub(1);
            if left < max_replicas {
                return Err(refuse(format!(
                    "only {left} Up stores would be left to take leaders while max-replicas is {max_replicas}"
                )));
            }
            Ok(())
        }
        "restore-leaders" => {
            let id = get_id(params, "store")?;
            if !snap.evict_leader_stores.contains(&id) {
                return Err(refuse(format!("store {id} is not under evict-leader-scheduler")));
            }
            Ok(())
        }
        "remove-stale-scheduler" => {
            let id = get_id(params, "store")?;
            if !snap.evict_leader_stores.contains(&id) {
                return Err(refuse(format!("store {id} is not under evict-leader-scheduler")));
            }
            let store = store_or_refuse(snap, id)?;
            require_up(store)?;
            if store.slow_score >= settings.slow_score_threshold {
                return Err(refuse(format!(
                    "store {id} is slow (slow score {}): the scheduler may still be needed",
                    store.slow_score
                )));
            }
            Ok(())
        }
        "offline-store" => {
            let id = get_id(params, "store")?;
            let store = store_or_refuse(snap, id)?;
            if store.state_name == "Offline" {
                return Err(refuse(format!("store {id} is already Offline")));
            }
            let up_after = snap.up_stores().filter(|s| s.id != id).count();
            if up_after < max_replicas {
                return Err(refuse(format!(
                    "offlining store {id} would leave {up_after} Up stores while max-replicas is {max_replicas}"
                )));
            }
            let roomy = snap.up_stores().filter(|s| s.id != id && !snap.is_low_space(s)).count();
            if roomy < max_replicas {
                return Err(refuse(format!(
                    "only {roomy} other Up stores have free space for store {id}'s replicas (max-replicas {max_replicas})"
                )));
            }
            Ok(())
        }
        "cancel-offline" => {
            let id = get_id(params, "store")?;
            let store = store_or_refuse(snap, id)?;
            if store.state_name != "Offline" {
                return Err(refuse(format!("store {id} is {}, not Offline", store.state_name)));
            }
            Ok(())
        }
        "split-region" | "scatter-region" => {
            let region_id = get_id(params, "region")?;
            if action == "split-region" {
                let policy = get_text(params, "policy", Some("approximate"))?;
                if policy != "approximate" && policy != "scan" {
                    return Err(ActionError::InvalidParams(format!(
                        "`policy` must be approximate or scan, not {policy}"
                    )));
                }
            }
            no_operator(snap, region_id)?;
            region_or_refuse(region_id)?;
            Ok(())
        }
        "set-store-weight" => {
            let id = get_id(params, "store")?;
            get_number(params, "leader-weight")?;
            get_number(params, "region-weight")?;
            store_or_refuse(snap, id)?;
            Ok(())
        }
        "set-store-limit" => {
            let id = get_id(params, "store")?;
            get_number(params, "rate")?;
            get_text(params, "type", Some("both"))?;
            store_or_refuse(snap, id)?;
            Ok(())
        }
        "pause-scheduler" | "resume-scheduler" => {
            let name = get_text(params, "scheduler", None)?;
            if action == "pause-scheduler" {
                get_int(params, "seconds", None)?;
            }
            if !snap.schedulers.contains(&name) {
                return Err(refuse(format!(
                    "PD runs no scheduler named {name} (it runs {})",
                    snap.schedulers.join(", ")
                )));
            }
            Ok(())
        }
        "set-max-store-down-time" => {
            let secs = get_int(params, "seconds", None)?;
            if !(MIN_STORE_DOWN_TIME_SECS..=MAX_STORE_DOWN_TIME_SECS).contains(&secs) {
                return Err(ActionError::InvalidParams(format!(
                    "`seconds` must be between {MIN_STORE_DOWN_TIME_SECS} and {MAX_STORE_DOWN_TIME_SECS}, not {secs}"
                )));
            }
            Ok(())
        }
        "set-schedule-limit" => {
            let limit = get_text(params, "limit", None)?;
            if !SCHEDULE_LIMITS.contains(&limit.as_str()) {
                return Err(ActionError::InvalidParams(format!(
                    "`limit` must be one of {SCHEDULE_LIMITS:?}, not {limit}"
                )));
            }
            let value = get_int(params, "value", None)?;
            if !(0..=1024).contains(&value) {
                return Err(ActionError::InvalidParams(format!("`value` must be 0–1024, not {value}")));
            }
            Ok(())
        }
        "cancel-operator" => {
            let region_id = get_id(params, "region")?;
            if snap.operator_on(region_id).is_none() {
                return Err(refuse(format!("PD runs no operator on region {region_id}")));
            }
            Ok(())
        }
        other => Err(ActionError::InvalidParams(format!("unknown action `{other}`"))),
    }
}

fn outcome(message: String, details: Vec<(&str, String)>) -> ActionOutcome {
    ActionOutcome {
        message,
        details: details.into_iter().map(|(l, v)| Evidence { label: l.into(), value: v }).collect(),
    }
}

fn post(path: &str, body: serde_json::Value) -> Result<String, ActionError> {
    pd::mutate(Method::Post, path, Some(body)).map_err(PdError::into_action_error)
}

/// Sends the action's request to PD.
pub fn execute(action: &str, params: &[Param]) -> Result<ActionOutcome, ActionError> {
    let reply = match action {
        "transfer-leader" => {
            let (region, to) = (get_id(params, "region")?, get_id(params, "to-store")?);
            post("/pd/api/v1/operators", json!({"name": "transfer-leader", "region_id": region, "to_store_id": to}))?
        }
        "transfer-peer" => {
            let (region, from, to) =
                (get_id(params, "region")?, get_id(params, "from-store")?, get_id(params, "to-store")?);
            post(
                "/pd/api/v1/operators",
                json!({"name": "transfer-peer", "region_id": region, "from_store_id": from, "to_store_id": to}),
            )?
        }
        "evict-leaders" => {
            let store = get_id(params, "store")?;
            post("/pd/api/v1/schedulers", json!({"name": "evict-leader-scheduler", "store_id": store}))?
        }
        "restore-leaders" | "remove-stale-scheduler" => {
            let store = get_id(params, "store")?;
            let path = format!("/pd/api/v1/schedulers/evict-leader-scheduler-{store}");
            match pd::mutate(Method::Delete, &path, None) {
                Ok(text) => text,
                // Already gone (a retry after the first attempt went through): the goal holds.
                Err(e) if e.is_not_found() => format!("store {store} was no longer under evict-leader-scheduler"),
                Err(e) => return Err(e.into_action_error()),
            }
        }
        "offline-store" => {
            let store = get_id(params, "store")?;
            pd::mutate(Method::Delete, &format!("/pd/api/v1/store/{store}"), None)
                .map_err(PdError::into_action_error)?
        }
        "cancel-offline" => {
            let store = get_id(params, "store")?;
            pd::mutate(Method::Post, &format!("/pd/api/v1/store/{store}/state?state=Up"), None)
                .map_err(PdError::into_action_error)?
        }
        "split-region" => {
            let region = get_id(params, "region")?;
            let policy = get_text(params, "policy", Some("approximate"))?;
            post("/pd/api/v1/operators", json!({"name": "split-region", "region_id": region, "policy": policy}))?
        }
        "scatter-region" => {
            let region = get_id(params, "region")?;
            post("/pd/api/v1/operators", json!({"name": "scatter-region", "region_id": region}))?
        }
        "set-store-weight" => {
            let store = get_id(params, "store")?;
            let (leader, region) = (get_number(params, "leader-weight")?, get_number(params, "region-weight")?);
            post(&format!("/pd/api/v1/store/{store}/weight"), json!({"leader": leader, "region": region}))?
        }
        "set-store-limit" => {
            let store = get_id(params, "store")?;
            let rate = get_number(params, "rate")?;
            let kind = get_text(params, "type", Some("both"))?;
            let body = if kind == "both" { json!({"rate": rate}) } else { json!({"rate": rate, "type": kind}) };
            post(&format!("/pd/api/v1/store/{store}/limit"), body)?
        }
        "pause-scheduler" => {
            let name = get_text(params, "scheduler", None)?;
            let secs = get_int(params, "seconds", None)?;
            post(&format!("/pd/api/v1/schedulers/{name}"), json!({"delay": secs}))?
        }
        "resume-scheduler" => {
            let name = get_text(params, "scheduler", None)?;
            post(&format!("/pd/api/v1/schedulers/{name}"), json!({"delay": 0}))?
        }
        "set-max-store-down-time" => {
            let secs = get_int(params, "seconds", None)?;
            if !(MIN_STORE_DOWN_TIME_SECS..=MAX_STORE_DOWN_TIME_SECS).contains(&secs) {
                return Err(ActionError::InvalidParams(format!("`seconds` out of bounds: {secs}")));
            }
            post("/pd/api/v1/config", json!({"max-store-down-time": format_go_duration(secs as u64)}))?
        }
        "set-schedule-limit" => {
            let limit = get_text(params, "limit", None)?;
            let value = get_int(params, "value", None)?;
            if !SCHEDULE_LIMITS.contains(&limit.as_str()) || !(0..=1024).contains(&value) {
                return Err(ActionError::InvalidParams(format!("{limit} = {value} is not allowed")));
            }
            post("/pd/api/v1/config", json!({ format!("schedule.{limit}"): value }))?
        }
        "cancel-operator" => {
            let region = get_id(params, "region")?;
            pd::mutate(Method::Delete, &format!("/pd/api/v1/operators/{region}"), None)
                .map_err(PdError::into_action_error)?
        }
        other => return Err(ActionError::InvalidParams(format!("unknown action `{other}`"))),
    };
    Ok(outcome(format!("{action}: PD answered: {reply}"), vec![("pd reply", reply)]))
}

/// What `GET /operators/{region}` says about the latest operator on a region.
enum OperatorStatus {
    Running(String),
    Succeeded,
    /// Finished successfully and created by an admin (a human or this operator), not PD.
    SucceededAdmin(String),
    Ended(String),
    None,
}

fn operator_status(region: u64) -> Result<OperatorStatus, PdError> {
    match pd::get::<String>(&format!("/pd/api/v1/operators/{region}")) {
        Ok(text) => {
            let status =
                text.strip_prefix("status: ").and_then(|t| t.split(',').next()).unwrap_or("").trim().to_owned();
            Ok(match status.as_str() {
                "SUCCESS" if text.contains("admin-") => OperatorStatus::SucceededAdmin(text),
                "SUCCESS" => OperatorStatus::Succeeded,
                "CREATED" | "STARTED" | "RUNNING" => OperatorStatus::Running(text),
                _ => OperatorStatus::Ended(text),
            })
        }
        Err(e) if e.is_not_found() => Ok(OperatorStatus::None),
        Err(e) => Err(e),
    }
}

fn not_yet(text: impl Into<String>) -> Verdict {
    Verdict::NotYet(text.into())
}

/// Whether the action's expected post-condition holds.
pub fn verify(action: &str, params: &[Param], snap: &Snapshot) -> Verdict {
    match verify_inner(action, params, snap) {
        Ok(verdict) => verdict,
        Err(e) => not_yet(format!("cannot tell yet: {e}")),
    }
}

fn verify_inner(action: &str, params: &[Param], snap: &Snapshot) -> Result<Verdict, String> {
    let err = |e: ActionError| format!("{e:?}");
    Ok(match action {
        "transfer-leader" => {
            let (region_id, to) = (get_id(params, "region").map_err(err)?, get_id(params, "to-store").map_err(err)?);
            match fetch_region(region_id).map_err(|e| e.to_string())? {
                None => Verdict::Violated(format!("region {region_id} no longer exists")),
                Some(r) if r.leader_store() == Some(to) => {
                    Verdict::Holds(format!("store {to} leads region {region_id}"))
                }
                Some(r) if !r.peers().iter().any(|p| p.store_id == to) => {
                    Verdict::Violated(format!("region {region_id} no longer has a peer on store {to}"))
                }
                Some(r) => not_yet(format!("region {region_id} is led by store {:?}", r.leader_store())),
            }
        }
        "transfer-peer" => {
            let region_id = get_id(params, "region").map_err(err)?;
            let (from, to) = (get_id(params, "from-store").map_err(err)?, get_id(params, "to-store").map_err(err)?);
            match fetch_region(region_id).map_err(|e| e.to_string())? {
                None => Verdict::Violated(format!("region {region_id} no longer exists")),
                Some(r) => {
                    let on = |s: u64| r.peers().iter().any(|p| p.store_id == s);
                    if on(to) && !on(from) {
                        Verdict::Holds(format!("region {region_id}'s replica moved from store {from} to {to}"))
                    } else {
                        not_yet(format!(
                            "region {region_id} has peers on {:?}",
                            r.peers().iter().map(|p| p.store_id).collect::<Vec<_>>()
                        ))
                    }
                }
            }
        }
        "evict-leaders" => {
            let id = get_id(params, "store").map_err(err)?;
            let Some(store) = snap.store(id) else { return Ok(Verdict::Violated(format!("store {id} is gone"))) };
            if !snap.evict_leader_stores.contains(&id) {
                Verdict::Violated(format!("store {id} is no longer under evict-leader-scheduler"))
            } else if store.leader_count == 0 {
                Verdict::Holds(format!("store {id} holds no leaders"))
            } else {
                not_yet(format!("store {id} still holds {} leaders", store.leader_count))
            }
        }
        "restore-leaders" | "remove-stale-scheduler" => {
            let id = get_id(params, "store").map_err(err)?;
            if snap.evict_leader_stores.contains(&id) {
                not_yet(format!("store {id} is still under evict-leader-scheduler"))
            } else {
                Verdict::Holds(format!("store {id} is no longer under evict-leader-scheduler"))
            }
        }
        "offline-store" => {
            let id = get_id(params, "store").map_err(err)?;
            match snap.store(id) {
                None => Verdict::Holds(format!("store {id} is Tombstone")),
                Some(s) if s.state_name == "Offline" => {
                    Verdict::Holds(format!("store {id} is Offline, {} regions left", s.region_count))
                }
                Some(s) => not_yet(format!("store {id} is {}", s.state_name)),
            }
        }
        "cancel-offline" => {
            let id = get_id(params, "store").map_err(err)?;
            match snap.store(id) {
                Some(s) if s.state_name != "Offline" => Verdict::Holds(format!("store {id} is {}", s.state_name)),
                Some(_) => not_yet(format!("store {id} is still Offline")),
                None => Verdict::Violated(format!("store {id} became Tombstone before the cancel took effect")),
            }
        }
        "split-region" | "scatter-region" => {
            let region_id = get_id(params, "region").map_err(err)?;
            match operator_status(region_id).map_err(|e| e.to_string())? {
                OperatorStatus::Succeeded | OperatorStatus::SucceededAdmin(_) => {
                    Verdict::Holds(format!("PD finished the {action} operator on region {region_id}"))
                }
                OperatorStatus::Running(text) => not_yet(text),
                OperatorStatus::Ended(text) => Verdict::Violated(text),
                OperatorStatus::None if action == "scatter-region" => {
                    Verdict::Holds(format!("region {region_id} needed no move to be scattered"))
                }
                OperatorStatus::None => not_yet(format!("PD shows no operator on region {region_id}")),
            }
        }
        "cancel-operator" => {
            let region_id = get_id(params, "region").map_err(err)?;
            match snap.operator_on(region_id) {
                None => Verdict::Holds(format!("no operator runs on region {region_id}")),
                Some(op) => not_yet(format!("region {region_id} runs {}", op.desc)),
            }
        }
        "set-store-weight" => {
            let id = get_id(params, "store").map_err(err)?;
            let (leader, region) =
                (get_number(params, "leader-weight").map_err(err)?, get_number(params, "region-weight").map_err(err)?);
            match snap.store(id) {
                Some(s) if (s.leader_weight - leader).abs() < 1e-6 && (s.region_weight - region).abs() < 1e-6 => {
                    Verdict::Holds(format!("store {id} has leader weight {leader} and region weight {region}"))
                }
                Some(s) => not_yet(format!("store {id} has weights {} / {}", s.leader_weight, s.region_weight)),
                None => Verdict::Violated(format!("store {id} is gone")),
            }
        }
        "set-store-limit" => {
            let id = get_id(params, "store").map_err(err)?;
            let rate = get_number(params, "rate").map_err(err)?;
            let kind = get_text(params, "type", Some("both")).map_err(err)?;
            let limits: std::collections::BTreeMap<String, std::collections::BTreeMap<String, f64>> =
                pd::get("/pd/api/v1/stores/limit").map_err(|e| e.to_string())?;
            let Some(store) = limits.get(&id.to_string()) else {
                return Ok(not_yet(format!("PD lists no limits for store {id}")));
            };
            let kinds: Vec<&str> = if kind == "both" { vec!["add-peer", "remove-peer"] } else { vec![kind.as_str()] };
            if kinds.iter().all(|k| store.get(*k).is_some_and(|v| (v - rate).abs() < 1e-6)) {
                Verdict::Holds(format!("store {id}'s {kind} limit is {rate}"))
            } else {
                not_yet(format!("store {id}'s limits are {store:?}"))
            }
        }
        "pause-scheduler" | "resume-scheduler" => {
            let name = get_text(params, "scheduler", None).map_err(err)?;
            if snap.schedulers.contains(&name) {
                // PD shows no pause state in `GET /schedulers`; its acceptance of the request is the evidence.
                Verdict::Holds(format!("PD accepted the request for {name}"))
            } else {
                Verdict::Violated(format!("PD no longer runs {name}"))
            }
        }
        "set-schedule-limit" => {
            let limit = get_text(params, "limit", None).map_err(err)?;
            let value = get_int(params, "value", None).map_err(err)? as u64;
            let current = match limit.as_str() {
                "leader-schedule-limit" => snap.config.leader_schedule_limit,
                "replica-schedule-limit" => snap.config.replica_schedule_limit,
                _ => snap.config.region_schedule_limit,
            };
            if current == value {
                Verdict::Holds(format!("{limit} is {value}"))
            } else {
                not_yet(format!("{limit} is {current}"))
            }
        }
        "set-max-store-down-time" => {
            let secs = get_int(params, "seconds", None).map_err(err)? as u64;
            if snap.config.max_store_down_time_secs == secs {
                Verdict::Holds(format!("max-store-down-time is {}", format_go_duration(secs)))
            } else {
                not_yet(format!("max-store-down-time is {}", format_go_duration(snap.config.max_store_down_time_secs)))
            }
        }
        other => Verdict::Violated(format!("unknown action `{other}`")),
    })
}

/// After a crash: did an action that was executing (since `started_at_ms`) take effect? Reads
/// PD afresh.
pub fn reconcile(action: &str, params: &[Param], started_at_ms: u64) -> Reconciliation {
    match reconcile_inner(action, params, started_at_ms) {
        Ok(r) => r,
        Err(e) => Reconciliation::Unknown(format!("PD could not be read to reconcile {action}: {e}")),
    }
}

/// Admin operators PD finished on `region` since `since_ms` (from `GET /operators/records`); they
/// may have been undone since (balance-leader moves leaders back), so the current state alone
/// cannot tell whether ours ran.
fn admin_records(region: u64, since_ms: u64, kind: &str) -> Result<Vec<String>, String> {
    // A little slack for clock differences between the host and PD.
    let from = since_ms.saturating_sub(5_000) / 1000;
    let records: Option<Vec<String>> =
        pd::get(&format!("/pd/api/v1/operators/records?from={from}")).map_err(|e| e.to_string())?;
    let needle = format!("region:{region}(");
    Ok(records.unwrap_or_default().into_iter().filter(|r| r.contains(&needle) && r.contains(kind)).collect())
}

fn reconcile_inner(action: &str, params: &[Param], started_at_ms: u64) -> Result<Reconciliation, String> {
    let err = |e: ActionError| format!("{e:?}");
    let took = |t: String| Ok(Reconciliation::TookEffect(t));
    let not = |t: String| Ok(Reconciliation::NotApplied(t));
    match action {
        "transfer-leader" | "transfer-peer" | "split-region" | "scatter-region" => {
            let region_id = get_id(params, "region").map_err(err)?;
            let region = fetch_region(region_id).map_err(|e| e.to_string())?;
            if action == "transfer-leader" {
                let to = get_id(params, "to-store").map_err(err)?;
                if region.as_ref().and_then(|r| r.leader_store()) == Some(to) {
                    return took(format!("store {to} leads region {region_id}"));
                }
            }
            if action == "transfer-peer" {
                let to = get_id(params, "to-store").map_err(err)?;
                if region.as_ref().is_some_and(|r| r.peers().iter().any(|p| p.store_id == to)) {
                    return took(format!("region {region_id} has a peer on store {to}"));
                }
            }
            let kind = format!("admin-{action}");
            if let Some(record) = admin_records(region_id, started_at_ms, &kind)?.into_iter().next() {
                return took(format!("PD finished it: {record}"));
            }
            match operator_status(region_id).map_err(|e| e.to_string())? {
                OperatorStatus::Running(text) => took(format!("PD runs it: {text}")),
                // An admin operator that finished recently on this region is ours (PD's own
                // schedulers' operators are not `admin`): running it again would move twice.
                OperatorStatus::SucceededAdmin(text) => took(format!("PD finished it: {text}")),
                _ => not(format!("PD shows no sign of {action} on region {region_id}")),
            }
        }
        "evict-leaders" | "restore-leaders" | "remove-stale-scheduler" => {
            let id = get_id(params, "store").map_err(err)?;
            let names: Vec<String> =
                pd::get::<Option<Vec<String>>>("/pd/api/v1/schedulers").map_err(|e| e.to_string())?.unwrap_or_default();
            let evicted = if names.iter().any(|n| n == "evict-leader-scheduler") {
                let config: wire::EvictLeaderConfig =
                    pd::get("/pd/api/v1/scheduler-config/evict-leader-scheduler/list").map_err(|e| e.to_string())?;
                config.store_id_ranges.contains_key(&id.to_string())
            } else {
                false
            };
            match (action == "evict-leaders", evicted) {
                (true, true) => took(format!("store {id} is under evict-leader-scheduler")),
                (true, false) => not(format!("store {id} is not under evict-leader-scheduler")),
                (false, false) => took(format!("store {id} is no longer under evict-leader-scheduler")),
                (false, true) => not(format!("store {id} is still under evict-leader-scheduler")),
            }
        }
        "offline-store" | "cancel-offline" => {
            let id = get_id(params, "store").map_err(err)?;
            let state = match pd::get::<wire::StoreInfo>(&format!("/pd/api/v1/store/{id}")) {
                Ok(info) => info.store.state_name,
                Err(PdError::Status { status: 410, .. }) => "Tombstone".into(),
                Err(e) => return Err(e.to_string()),
            };
            let removing = state == "Offline" || state == "Tombstone";
            match (action == "offline-store", removing) {
                (true, true) | (false, false) => took(format!("store {id} is {state}")),
                _ => not(format!("store {id} is {state}")),
            }
        }
        "set-store-weight" => {
            let id = get_id(params, "store").map_err(err)?;
            let info: wire::StoreInfo = pd::get(&format!("/pd/api/v1/store/{id}")).map_err(|e| e.to_string())?;
            let leader = get_number(params, "leader-weight").map_err(err)?;
            let region = get_number(params, "region-weight").map_err(err)?;
            let same = |a: Option<f64>, b: f64| (a.unwrap_or(1.0) - b).abs() < 1e-6;
            if same(info.status.leader_weight, leader) && same(info.status.region_weight, region) {
                took(format!("store {id} has the requested weights"))
            } else {
                not(format!("store {id} has other weights"))
            }
        }
        "set-max-store-down-time" => {
            let secs = get_int(params, "seconds", None).map_err(err)? as u64;
            let config: wire::ConfigReply = pd::get("/pd/api/v1/config").map_err(|e| e.to_string())?;
            let current = crate::snapshot::config_from_wire(config)?.max_store_down_time_secs;
            if current == secs {
                took(format!("max-store-down-time is {secs} s"))
            } else {
                not(format!("max-store-down-time is {current} s"))
            }
        }
        "cancel-operator" => {
            let region_id = get_id(params, "region").map_err(err)?;
            match operator_status(region_id).map_err(|e| e.to_string())? {
                OperatorStatus::Running(text) => not(format!("still running: {text}")),
                OperatorStatus::SucceededAdmin(_)
                | OperatorStatus::Succeeded
                | OperatorStatus::Ended(_)
                | OperatorStatus::None => took(format!("no operator runs on region {region_id}")),
            }
        }
        // Setting a limit or pausing/resuming is idempotent: running it again is always safe.
        "set-store-limit" | "set-schedule-limit" | "pause-scheduler" | "resume-scheduler" => {
            not(format!("{action} is idempotent; running it again is safe"))
        }
        other => Ok(Reconciliation::Failed(format!("unknown action `{other}`"))),
    }
}
