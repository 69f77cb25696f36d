//! `condition()`: what a workflow may wait for between steps, evaluated on a fresh observation.

use crate::operator::plugin::types::{ActionError, ConditionSpec, Param};
use crate::params::{choice, get_id, get_int, get_text, id, integer};
use crate::snapshot::Snapshot;

/// The conditions offered.
pub fn specs() -> Vec<ConditionSpec> {
    let c = |name: &str, description: &str, params| ConditionSpec {
        name: name.into(),
        description: description.into(),
        params,
    };
    vec![
        c(
            "store-leaders-at-most",
            "The store leads at most `max` regions",
            vec![id("store", "Store id"), integer("max", "Leaders", 0, 1_000_000, Some(0))],
        ),
        c(
            "store-regions-at-most",
            "The store holds at most `max` regions",
            vec![id("store", "Store id"), integer("max", "Regions", 0, 10_000_000, Some(0))],
        ),
        c(
            "store-state-is",
            "PD shows the store in this state (Tombstone: no longer listed)",
            vec![
                id("store", "Store id"),
                choice("state", "State", &["Up", "Offline", "Tombstone", "Disconnected", "Down"], None),
            ],
        ),
        c("pd-has-leader", "PD has a leader", vec![]),
        c("no-operator-on-region", "PD runs no operator on the region", vec![id("region", "Region id")]),
        c("no-miss-peer-regions", "No region lacks a replica", vec![]),
    ]
}

/// Evaluates a condition; an error means it cannot be evaluated (unknown name, bad parameters).
pub fn condition(name: &str, params: &[Param], snap: &Snapshot) -> Result<bool, String> {
    let p = |e: ActionError| format!("{e:?}");
    Ok(match name {
        "store-leaders-at-most" | "store-regions-at-most" => {
            let store = get_id(params, "store").map_err(p)?;
            let max = get_int(params, "max", Some(0)).map_err(p)?.max(0) as u64;
            let Some(s) = snap.store(store) else { return Ok(true) };
            if name == "store-leaders-at-most" { s.leader_count <= max } else { s.region_count <= max }
        }
        "store-state-is" => {
            let store = get_id(params, "store").map_err(p)?;
            let state = get_text(params, "state", None).map_err(p)?;
            match snap.store(store) {
                Some(s) => s.state_name == state,
                None => state == "Tombstone",
            }
        }
        "pd-has-leader" => !snap.pd.no_leader && !snap.pd.unreachable,
        "no-operator-on-region" => {
            let region = get_id(params, "region").map_err(p)?;
            snap.operator_on(region).is_none()
        }
        "no-miss-peer-regions" => snap.region_checks.get("miss-peer").is_some_and(|c| c.count == 0),
        other => return Err(format!("unknown condition `{other}`")),
    })
}
