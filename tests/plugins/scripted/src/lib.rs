//! A subject whose state the test serves at `GET /state` on the `api` endpoint:
//! `{"fail": bool, "complete": bool, "violations": [{"invariant", "entity", "message", "severity"}]}`.
//! Invariants `alpha` (grace 0) and `beta` (grace from the setting `beta-grace`, default 5 s).

wit_bindgen::generate!({ world: "subject", path: "../../../wit" });

use operator::plugin::http::{self, Method, Target};
use operator::plugin::types::{InvariantSpec, Severity};
use serde_json::Value;

struct Scripted;

fn state(observation: &Observation) -> Value {
    serde_json::from_str(&observation.payload).unwrap_or(Value::Null)
}

impl Guest for Scripted {
    fn info() -> SubjectInfo {
        let beta_grace = operator::plugin::config::get("beta-grace").and_then(|v| v.parse().ok()).unwrap_or(5);
        let invariant = |name: &str, grace_secs| InvariantSpec {
            name: name.into(),
            description: format!("scripted invariant {name}"),
            severity: Severity::Warning,
            grace_secs,
        };
        SubjectInfo {
            name: "scripted".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Reports what the test serves".into(),
            invariants: vec![invariant("alpha", 0), invariant("beta", beta_grace)],
            actions: vec![],
            queries: vec![],
            conditions: vec![],
        }
    }

    fn observe() -> Result<Observation, String> {
        let response = http::send(&http::Request {
            target: Target::Endpoint("api".into()),
            method: Method::Get,
            path_and_query: "/state".into(),
            headers: vec![],
            body: None,
            timeout_ms: None,
        })
        .map_err(|e| format!("GET /state: {e:?}"))?;
        let payload = String::from_utf8_lossy(&response.body).into_owned();
        let value: Value = serde_json::from_str(&payload).map_err(|e| format!("GET /state: {e}"))?;
        if value["fail"].as_bool() == Some(true) {
            return Err("the scripted subject failed to observe".into());
        }
        let complete = value["complete"].as_bool().unwrap_or(true);
        let errors = if complete { vec![] } else { vec!["scripted gap".into()] };
        Ok(Observation { taken_at_ms: 0, complete, errors, payload })
    }

    fn check(observation: Observation) -> Vec<Violation> {
        let state = state(&observation);
        state["violations"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|v| Violation {
                        invariant: v["invariant"].as_str().unwrap_or("alpha").into(),
                        entity: v["entity"].as_str().unwrap_or("thing").into(),
                        severity: if v["severity"].as_str() == Some("critical") {
                            Severity::Critical
                        } else {
                            Severity::Warning
                        },
                        message: v["message"].as_str().unwrap_or("scripted violation").into(),
                        evidence: vec![],
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn summarize(_observation: Observation) -> Vec<EntitySummary> {
        vec![]
    }

    fn diagnose(ticket: Ticket, _observation: Observation) -> Result<Diagnosis, String> {
        Ok(Diagnosis {
            summary: format!("scripted diagnosis of {}", ticket.id),
            timeline: vec![],
            affected: vec![ticket.entity],
            root_cause: "the test said so".into(),
            confidence: 0.5,
            evidence: vec![],
            alternatives: vec![],
            recommendations: vec![],
            wait_reason: Some("nothing to do".into()),
        })
    }

    fn precheck(_action: String, _params: Vec<Param>, _observation: Observation) -> Result<(), ActionError> {
        Err(ActionError::InvalidParams("no actions".into()))
    }

    fn execute(_action: String, _params: Vec<Param>) -> Result<ActionOutcome, ActionError> {
        Err(ActionError::InvalidParams("no actions".into()))
    }

    fn verify(_action: String, _params: Vec<Param>, _observation: Observation) -> Verdict {
        Verdict::Violated("no actions".into())
    }

    fn reconcile(_action: String, _params: Vec<Param>, _started_at_ms: u64) -> Reconciliation {
        Reconciliation::Failed("no actions".into())
    }

    fn query(name: String, _params: Vec<Param>) -> Result<String, String> {
        Err(format!("unknown query `{name}`"))
    }

    fn condition(name: String, _params: Vec<Param>, _observation: Observation) -> Result<bool, String> {
        Err(format!("unknown condition `{name}`"))
    }
}

export!(Scripted);
