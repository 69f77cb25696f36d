//! A well-behaved subject plugin: a test plugin for the host's sandbox and end-to-end suites.
//!
//! The subject is a single HTTP endpoint, `api`, whose `/ok` answers `ok` when all is well.
//! The plugin observes it, checks the invariant `answer-is-ok`, summarises it as one entity,
//! offers one low-risk action (`touch`, a POST to `/touch?n=<n>`), one query (`echo`) and a
//! small diagnosis, and otherwise keeps to the contract so that the host's tests have a
//! plugin whose every call is expected to succeed.

wit_bindgen::generate!({ world: "subject", path: "../../../wit" });

use operator::plugin::http::{self, Method, Target};
use operator::plugin::log::{self as host_log, Level};
use operator::plugin::types::{
    ActionSpec, Alternative, Evidence, Figure, Health, IntegerRange, InvariantSpec, ParamSpec, ParamType, ParamValue,
    QuerySpec, Risk, Severity, TextRule,
};

/// The exported component.
struct Good;

/// The endpoint the subject lives behind.
const API: &str = "api";

/// The invariant: `/ok` answers exactly `ok`.
const ANSWER_IS_OK: &str = "answer-is-ok";

/// The only action.
const TOUCH: &str = "touch";

/// The only query.
const ECHO: &str = "echo";

/// The query that calls into the host `n` times.
const HOST_CALLS: &str = "host-calls";

/// The answer of a healthy subject.
const HEALTHY_ANSWER: &str = "ok";

/// The bounds of `touch`'s parameter `n`.
const N_RANGE: std::ops::RangeInclusive<i64> = 1..=10;

/// Unix milliseconds now, or 0 when the clock is unavailable.
fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Whether an observation shows a healthy subject.
fn is_healthy(observation: &Observation) -> bool {
    observation.payload == HEALTHY_ANSWER
}

/// `touch`'s parameter `n`, checked against its declared bounds.
fn touch_n(params: &[Param]) -> Result<i64, ActionError> {
    match params.iter().find(|p| p.name == "n").map(|p| &p.value) {
        Some(ParamValue::Integer(n)) if N_RANGE.contains(n) => Ok(*n),
        Some(_) => Err(ActionError::InvalidParams("`n` must be an integer from 1 to 10".into())),
        None => Err(ActionError::InvalidParams("`n` is required".into())),
    }
}

/// A parameter value as JSON.
fn param_json(value: &ParamValue) -> serde_json::Value {
    match value {
        ParamValue::Boolean(b) => (*b).into(),
        ParamValue::Integer(i) => (*i).into(),
        ParamValue::Number(x) => {
            serde_json::Number::from_f64(*x).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null)
        }
        ParamValue::Text(text) => text.as_str().into(),
        ParamValue::IntegerList(list) => list.clone().into(),
    }
}

/// Maps a transport error to an action error: timeouts and unreachable endpoints may be
/// retried, everything else is definite.
fn action_error(error: http::Error) -> ActionError {
    match error {
        http::Error::Timeout(m) | http::Error::Unreachable(m) => ActionError::Retryable(m),
        other => ActionError::Failed(format!("{other:?}")),
    }
}

impl Guest for Good {
    fn info() -> SubjectInfo {
        SubjectInfo {
            name: "good".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "A single HTTP endpoint whose /ok answers `ok`".into(),
            invariants: vec![InvariantSpec {
                name: ANSWER_IS_OK.into(),
                description: "GET /ok on the `api` endpoint answers exactly `ok`".into(),
                severity: Severity::Warning,
                grace_secs: 0,
            }],
            actions: vec![ActionSpec {
                name: TOUCH.into(),
                description: "POSTs to /touch?n=<n> on the `api` endpoint".into(),
                risk: Risk::Low,
                params: vec![ParamSpec {
                    name: "n".into(),
                    description: "How hard to touch, 1 to 10".into(),
                    kind: ParamType::Integer(IntegerRange { min: Some(*N_RANGE.start()), max: Some(*N_RANGE.end()) }),
                    required: true,
                    default: None,
                }],
                entity_param: None,
                undo: None,
                verify_window_secs: 5,
            }],
            queries: vec![
                QuerySpec {
                    name: HOST_CALLS.into(),
                    description: "Calls into the host `n` times (for benchmarks)".into(),
                    params: vec![ParamSpec {
                        name: "n".into(),
                        description: "How many host calls".into(),
                        kind: ParamType::Integer(IntegerRange { min: Some(0), max: Some(10_000_000) }),
                        required: true,
                        default: None,
                    }],
                },
                QuerySpec {
                    name: ECHO.into(),
                    description: "Returns its parameters as a JSON object".into(),
                    params: vec![ParamSpec {
                        name: "message".into(),
                        description: "Any text to echo".into(),
                        kind: ParamType::Text(TextRule { max_len: Some(1024) }),
                        required: false,
                        default: None,
                    }],
                },
            ],
            conditions: vec![],
        }
    }

    /// GETs `/ok`; the payload is the response body. A status other than 200 gives an
    /// incomplete observation with one error line.
    fn observe() -> Result<Observation, String> {
        host_log::emit(Level::Info, "observing the `api` endpoint");
        let taken_at_ms = now_ms();
        let response = http::send(&http::Request {
            target: Target::Endpoint(API.into()),
            method: Method::Get,
            path_and_query: "/ok".into(),
            headers: vec![],
            body: None,
            timeout_ms: None,
        })
        .map_err(|e| format!("GET /ok: {e:?}"))?;
        let payload = String::from_utf8_lossy(&response.body).into_owned();
        let errors = if response.status == 200 { vec![] } else { vec![format!("GET /ok: status {}", response.status)] };
        Ok(Observation { taken_at_ms, complete: errors.is_empty(), errors, payload })
    }

    /// Reports `answer-is-ok` on entity `api` when the payload is not exactly `ok`.
    fn check(observation: Observation) -> Vec<Violation> {
        if is_healthy(&observation) {
            return vec![];
        }
        vec![Violation {
            invariant: ANSWER_IS_OK.into(),
            entity: API.into(),
            severity: Severity::Warning,
            message: format!("/ok answered {:?} instead of \"ok\"", observation.payload),
            evidence: vec![Evidence { label: "payload".into(), value: observation.payload }],
        }]
    }

    /// One entity, the endpoint, with the length of its answer.
    fn summarize(observation: Observation) -> Vec<EntitySummary> {
        vec![EntitySummary {
            kind: "endpoint".into(),
            id: API.into(),
            health: if is_healthy(&observation) { Health::Healthy } else { Health::Degraded },
            figures: vec![Figure {
                name: "length".into(),
                value: observation.payload.len() as f64,
                unit: "bytes".into(),
            }],
            note: String::new(),
        }]
    }

    /// A small but complete diagnosis that recommends waiting.
    fn diagnose(ticket: Ticket, observation: Observation) -> Result<Diagnosis, String> {
        Ok(Diagnosis {
            summary: format!("`{}` is broken on `{}`", ticket.invariant, ticket.entity),
            timeline: vec![format!("{} ms: first seen ({} occurrences)", ticket.opened_at_ms, ticket.occurrences)],
            affected: vec![ticket.entity.clone()],
            root_cause: format!("the endpoint answered {:?}", observation.payload),
            confidence: 0.5,
            evidence: vec![ticket.message],
            alternatives: vec![Alternative {
                hypothesis: "the endpoint is restarting".into(),
                supporting: vec![],
                contradicting: vec![],
                conclusion: "cannot be told apart from a lasting fault yet".into(),
            }],
            recommendations: vec![],
            wait_reason: Some("the fault may clear by itself; observe again".into()),
        })
    }

    /// Only `touch` exists, and its `n` must be in range.
    fn precheck(action: String, params: Vec<Param>, _observation: Observation) -> Result<(), ActionError> {
        if action != TOUCH {
            return Err(ActionError::InvalidParams(format!("unknown action `{action}`")));
        }
        touch_n(&params).map(|_| ())
    }

    /// `touch`: POSTs to `/touch?n=<n>` and reports the status.
    fn execute(action: String, params: Vec<Param>) -> Result<ActionOutcome, ActionError> {
        if action != TOUCH {
            return Err(ActionError::InvalidParams(format!("unknown action `{action}`")));
        }
        let n = touch_n(&params)?;
        let response = http::send(&http::Request {
            target: Target::Endpoint(API.into()),
            method: Method::Post,
            path_and_query: format!("/touch?n={n}"),
            headers: vec![],
            body: Some(vec![]),
            timeout_ms: None,
        })
        .map_err(action_error)?;
        Ok(ActionOutcome {
            message: format!("status {}", response.status),
            details: vec![Evidence { label: "status".into(), value: response.status.to_string() }],
        })
    }

    /// `touch` holds once the endpoint answers `ok`.
    fn verify(action: String, _params: Vec<Param>, observation: Observation) -> Verdict {
        if action != TOUCH {
            Verdict::Violated(format!("unknown action `{action}`"))
        } else if is_healthy(&observation) {
            Verdict::Holds("/ok answers ok".into())
        } else {
            Verdict::NotYet(format!("/ok answers {:?}", observation.payload))
        }
    }

    /// `touch` leaves no trace to look for, so running it again is always safe.
    fn reconcile(action: String, _params: Vec<Param>, _started_at_ms: u64) -> Reconciliation {
        if action == TOUCH {
            Reconciliation::NotApplied("touch is safe to repeat".into())
        } else {
            Reconciliation::Failed(format!("unknown action `{action}`"))
        }
    }

    /// `echo`: the parameters as a JSON object, by name.
    fn query(name: String, params: Vec<Param>) -> Result<String, String> {
        if name == HOST_CALLS {
            // Makes `n` calls into the host (a cheap one), so a benchmark can time the crossing.
            let n = params.iter().find_map(|p| match (&p.name[..], &p.value) {
                ("n", ParamValue::Integer(n)) => Some(*n),
                _ => None,
            });
            let n = n.ok_or("`n` is required")?;
            let mut found = 0;
            for _ in 0..n {
                found += usize::from(operator::plugin::config::get("bench").is_some());
            }
            return Ok(found.to_string());
        }
        if name != ECHO {
            return Err(format!("unknown query `{name}`"));
        }
        let object: serde_json::Map<String, serde_json::Value> =
            params.iter().map(|p| (p.name.clone(), param_json(&p.value))).collect();
        Ok(serde_json::Value::Object(object).to_string())
    }

    fn condition(name: String, _params: Vec<Param>, _observation: Observation) -> Result<bool, String> {
        Err(format!("unknown condition `{name}`"))
    }
}

export!(Good);
