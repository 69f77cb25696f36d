//! The TiKV subject: everything the operator knows about TiKV, reached through PD's HTTP API.
//!
//! This first version observes PD's health and the stores and checks that every store is Up;
//! the full invariant set, action catalogue and expert rules build on it.

wit_bindgen::generate!({ world: "subject", path: "../../wit" });

use operator::plugin::http::{self, Method, Target};
use operator::plugin::types::{Evidence, Figure, Health, InvariantSpec, Severity};
use serde::{Deserialize, Serialize};

struct Tikv;

/// What one observation holds (the payload the host stores and hands back).
#[derive(Serialize, Deserialize, Default)]
struct Snapshot {
    pd_members: Vec<PdMember>,
    stores: Vec<Store>,
}

#[derive(Serialize, Deserialize, Clone)]
struct PdMember {
    name: String,
    health: bool,
}

#[derive(Serialize, Deserialize, Clone)]
struct Store {
    id: u64,
    address: String,
    state_name: String,
    leader_count: u64,
    region_count: u64,
}

fn get(path: &str) -> Result<serde_json::Value, String> {
    let response = http::send(&http::Request {
        target: Target::Endpoint("pd".into()),
        method: Method::Get,
        path_and_query: path.into(),
        headers: vec![],
        body: None,
        timeout_ms: None,
    })
    .map_err(|e| format!("GET {path}: {e:?}"))?;
    if response.status != 200 {
        return Err(format!(
            "GET {path}: PD answered {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body).trim()
        ));
    }
    serde_json::from_slice(&response.body).map_err(|e| format!("GET {path}: unreadable reply: {e}"))
}

fn parse_members(value: &serde_json::Value) -> Result<Vec<PdMember>, String> {
    let list = value.as_array().ok_or("PD health is not a list")?;
    list.iter()
        .map(|m| {
            Ok(PdMember {
                name: m["name"].as_str().ok_or("PD member without a name")?.to_owned(),
                health: m["health"].as_bool().unwrap_or(false),
            })
        })
        .collect()
}

fn parse_stores(value: &serde_json::Value) -> Result<Vec<Store>, String> {
    let list = value["stores"].as_array().ok_or("`stores` is not a list")?;
    list.iter()
        .map(|s| {
            let store = &s["store"];
            let status = &s["status"];
            Ok(Store {
                id: store["id"].as_u64().ok_or("store without a numeric id")?,
                address: store["address"].as_str().unwrap_or_default().to_owned(),
                state_name: store["state_name"].as_str().ok_or("store without state_name")?.to_owned(),
                leader_count: status["leader_count"].as_u64().unwrap_or(0),
                region_count: status["region_count"].as_u64().unwrap_or(0),
            })
        })
        .collect()
}

fn snapshot(observation: &Observation) -> Snapshot {
    serde_json::from_str(&observation.payload).unwrap_or_default()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

const UNSUPPORTED: &str = "this version of the TiKV plugin has no actions yet";

impl Guest for Tikv {
    fn info() -> SubjectInfo {
        SubjectInfo {
            name: "tikv".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "TiKV clusters, through PD's HTTP API".into(),
            invariants: vec![
                InvariantSpec {
                    name: "store-not-up".into(),
                    description: "Every store that is not being removed is Up".into(),
                    severity: Severity::Critical,
                    grace_secs: 0,
                },
                InvariantSpec {
                    name: "pd-member-unhealthy".into(),
                    description: "Every PD member reports itself healthy".into(),
                    severity: Severity::Warning,
                    grace_secs: 10,
                },
            ],
            actions: vec![],
            queries: vec![],
            conditions: vec![],
        }
    }

    fn observe() -> Result<Observation, String> {
        let taken_at_ms = now_ms();
        let mut errors = Vec::new();
        let mut snap = Snapshot::default();
        match get("/pd/api/v1/health").and_then(|v| parse_members(&v)) {
            Ok(members) => snap.pd_members = members,
            Err(e) => errors.push(e),
        }
        match get("/pd/api/v1/stores").and_then(|v| parse_stores(&v)) {
            Ok(stores) => snap.stores = stores,
            Err(e) => errors.push(e),
        }
        if errors.len() == 2 {
            return Err(format!("PD could not be observed: {}", errors.join("; ")));
        }
        Ok(Observation {
            taken_at_ms,
            complete: errors.is_empty(),
            errors,
            payload: serde_json::to_string(&snap).map_err(|e| e.to_string())?,
        })
    }

    fn check(observation: Observation) -> Vec<Violation> {
        let snap = snapshot(&observation);
        let mut violations = Vec::new();
        for store in &snap.stores {
            if store.state_name != "Up" && store.state_name != "Offline" {
                violations.push(Violation {
                    invariant: "store-not-up".into(),
                    entity: format!("store-{}", store.id),
                    severity: Severity::Critical,
                    message: format!("store {} ({}) is {}", store.id, store.address, store.state_name),
                    evidence: vec![Evidence { label: "state_name".into(), value: store.state_name.clone() }],
                });
            }
        }
        for member in snap.pd_members.iter().filter(|m| !m.health) {
            violations.push(Violation {
                invariant: "pd-member-unhealthy".into(),
                entity: format!("pd-{}", member.name),
                severity: Severity::Warning,
                message: format!("PD member {} reports itself unhealthy", member.name),
                evidence: vec![],
            });
        }
        violations
    }

    fn summarize(observation: Observation) -> Vec<EntitySummary> {
        let snap = snapshot(&observation);
        let stores = snap.stores.iter().map(|s| EntitySummary {
            kind: "store".into(),
            id: s.id.to_string(),
            health: match s.state_name.as_str() {
                "Up" => Health::Healthy,
                "Offline" | "Disconnected" => Health::Degraded,
                "Down" => Health::Down,
                _ => Health::Unknown,
            },
            figures: vec![
                Figure { name: "leaders".into(), value: s.leader_count as f64, unit: String::new() },
                Figure { name: "regions".into(), value: s.region_count as f64, unit: String::new() },
            ],
            note: s.address.clone(),
        });
        let members = snap.pd_members.iter().map(|m| EntitySummary {
            kind: "pd-member".into(),
            id: m.name.clone(),
            health: if m.health { Health::Healthy } else { Health::Down },
            figures: vec![],
            note: String::new(),
        });
        stores.chain(members).collect()
    }

    fn diagnose(_ticket: Ticket, _observation: Observation) -> Result<Diagnosis, String> {
        Err("this version of the TiKV plugin has no diagnosis rules yet".into())
    }

    fn precheck(_action: String, _params: Vec<Param>, _observation: Observation) -> Result<(), ActionError> {
        Err(ActionError::InvalidParams(UNSUPPORTED.into()))
    }

    fn execute(_action: String, _params: Vec<Param>) -> Result<ActionOutcome, ActionError> {
        Err(ActionError::InvalidParams(UNSUPPORTED.into()))
    }

    fn verify(_action: String, _params: Vec<Param>, _observation: Observation) -> Verdict {
        Verdict::Violated(UNSUPPORTED.into())
    }

    fn reconcile(_action: String, _params: Vec<Param>) -> Reconciliation {
        Reconciliation::Failed(UNSUPPORTED.into())
    }

    fn query(name: String, _params: Vec<Param>) -> Result<String, String> {
        Err(format!("unknown query `{name}`"))
    }

    fn condition(name: String, _params: Vec<Param>, _observation: Observation) -> Result<bool, String> {
        Err(format!("unknown condition `{name}`"))
    }
}

export!(Tikv);
