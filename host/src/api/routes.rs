//! The route handlers.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::ApiState;
use super::error::ApiError;
use crate::actions::executor::{Proposal, ProposalParams, ProposeError};
use crate::actions::ledger::{self, ALL_STATUSES, Action, ActionStatus};
use crate::actions::policy::Mode;
use crate::actions::workflow::{self, ALL_WORKFLOW_STATUSES, StartError, WorkflowStatus};
use crate::audit::{AuditEvent, AuditFilter, now_ms};
use crate::monitor::tickets::{SnapshotKind, Ticket, TicketStatus};

type Reply = Result<Response, ApiError>;

/// Audit queries return at most this many records.
const MAX_AUDIT_LIMIT: usize = 10_000;
/// Audit queries without a limit return this many records (the most recent).
const DEFAULT_AUDIT_LIMIT: usize = 100;

fn ok(value: Value) -> Reply {
    Ok(Json(value).into_response())
}

/// Runs blocking store reads off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> anyhow::Result<T> + Send + 'static) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(e) => Err(ApiError::internal(format!("the request's task failed: {e}"))),
    }
}

/// The query's parameters, refusing any not in `known`.
fn query(raw: Option<&str>, known: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !known.contains(&key.as_ref()) {
            return Err(ApiError::bad_request(format!("unknown query parameter `{key}`; known: {}", known.join(", "))));
        }
        if out.insert(key.to_string(), value.into_owned()).is_some() {
            return Err(ApiError::bad_request(format!("query parameter `{key}` is given twice")));
        }
    }
    Ok(out)
}

/// Parses a JSON body (an empty body is `{}`); serde's message names the missing, unknown or
/// mistyped field.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

fn required(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::bad_request(format!("field `{field}` must not be empty")));
    }
    Ok(())
}

/// The actor a change is recorded under.
fn actor(by: Option<&str>) -> Result<String, ApiError> {
    match by.map(str::trim) {
        None => Ok("api".into()),
        Some("") => Err(ApiError::bad_request("field `by` must not be empty when given")),
        Some(by) if by.len() > 64 || by.chars().any(char::is_control) => {
            Err(ApiError::bad_request("field `by` must be at most 64 characters without control characters"))
        }
        Some(by) => Ok(format!("api:{by}")),
    }
}

/// `{"reason", "by"?}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: String,
    by: Option<String>,
}

impl ReasonBody {
    fn parse(bytes: &Bytes) -> Result<(String, String), ApiError> {
        let parsed: ReasonBody = body(bytes)?;
        required("reason", &parsed.reason)?;
        Ok((parsed.reason, actor(parsed.by.as_deref())?))
    }
}

pub(super) async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route {method} {} (the routes are under /api/v1/)", uri.path()))
}

pub(super) async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{} does not accept {method}", uri.path()))
}

pub(super) async fn metrics(State(state): State<Arc<ApiState>>) -> Reply {
    let store = state.tickets.clone();
    let tickets = blocking(move || store.list(None)).await?;
    let text = state.metrics.render(&tickets, &state.executor);
    Ok(([(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], text).into_response())
}

fn count_by<'a>(names: impl Iterator<Item = &'a str>, all: &[&'a str]) -> Map<String, Value> {
    let mut counts: BTreeMap<&str, u64> = all.iter().map(|s| (*s, 0)).collect();
    for name in names {
        *counts.entry(name).or_default() += 1;
    }
    counts.into_iter().map(|(k, v)| (k.to_owned(), Value::from(v))).collect()
}

pub(super) async fn status(State(state): State<Arc<ApiState>>) -> Reply {
    let now = now_ms();
    let safety = state.executor.safety();
    let latest = state.latest.read().ok().and_then(|l| l.clone());
    let observation = latest.as_ref().map(|l| {
        json!({
            "at_ms": l.at_ms,
            "age_ms": now.saturating_sub(l.at_ms),
            "taken_at_ms": l.observation.taken_at_ms,
            "complete": l.observation.complete,
            "errors": l.observation.errors,
            "violations": l.violations.len(),
        })
    });
    let (entities, entities_error) = match &latest {
        Some(l) => match state.summary.get(&state.subject, l).await {
            Ok(entities) => (entities, Value::Null),
            Err(e) => (Value::Null, Value::String(e)),
        },
        None => (json!([]), Value::Null),
    };
    let store = state.tickets.clone();
    let tickets = blocking(move || store.list(None)).await?;
    let ticket_counts = count_by(
        tickets.iter().map(|t| t.status.as_str()),
        &[TicketStatus::Open.as_str(), TicketStatus::Held.as_str(), TicketStatus::Resolved.as_str()],
    );
    let actions = state.executor.actions();
    let all: Vec<&str> = ALL_STATUSES.iter().map(|s| s.as_str()).collect();
    let action_counts = count_by(actions.iter().map(|a| a.status.as_str()), &all);
    let runs = state.workflows.store().clone();
    let runs = blocking(move || runs.list(None)).await?;
    let all_runs: Vec<&str> = ALL_WORKFLOW_STATUSES.iter().map(|s| s.as_str()).collect();
    let workflow_counts = count_by(runs.iter().map(|r| r.status.as_str()), &all_runs);
    ok(json!({
        "mode": safety.mode.as_str(),
        "kill_switch": safety.kill_switch,
        "safety": safety,
        "subject": {"name": state.subject.name(), "version": state.subject.version()},
        "observation": observation,
        "entities": entities,
        "entities_error": entities_error,
        "tickets": ticket_counts,
        "actions": action_counts,
        "workflows": workflow_counts,
        "started_at_ms": state.started_at_ms,
        "uptime_secs": now.saturating_sub(state.started_at_ms) / 1000,
        "now_ms": now,
    }))
}

pub(super) async fn tickets(State(state): State<Arc<ApiState>>, RawQuery(raw): RawQuery) -> Reply {
    let params = query(raw.as_deref(), &["status"])?;
    let status = params.get("status").map_or("active", String::as_str).to_owned();
    let filter = match status.as_str() {
        "active" | "all" => None,
        other => Some(TicketStatus::parse(other).map_err(|_| {
            ApiError::bad_request(format!(
                "query parameter `status`: unknown ticket status `{other}` (active, open, held, resolved or all)"
            ))
        })?),
    };
    let store = state.tickets.clone();
    let mut list = blocking(move || store.list(filter)).await?;
    if status == "active" {
        list.retain(Ticket::is_active);
    }
    ok(json!({ "tickets": list }))
}

fn ticket_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no ticket {id}"))
}

pub(super) async fn ticket(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Reply {
    let store = state.tickets.clone();
    let found = blocking(move || {
        let Some(ticket) = store.get(&id)? else { return Ok(Err(id)) };
        let at_open = store.snapshot(&id, SnapshotKind::AtOpen)?;
        let latest = store.snapshot(&id, SnapshotKind::Latest)?;
        Ok(Ok(json!({"ticket": ticket, "observation_at_open": at_open, "latest_observation": latest})))
    })
    .await?;
    match found {
        Ok(value) => ok(value),
        Err(id) => Err(ticket_not_found(&id)),
    }
}

async fn change_ticket(state: &ApiState, id: &str, to: TicketStatus, bytes: &Bytes) -> Reply {
    let (reason, actor) = ReasonBody::parse(bytes)?;
    let store = state.tickets.clone();
    let lookup = id.to_owned();
    let ticket = blocking(move || store.get(&lookup)).await?.ok_or_else(|| ticket_not_found(id))?;
    let allowed = match to {
        TicketStatus::Resolved => ticket.status != TicketStatus::Resolved,
        TicketStatus::Held => ticket.status == TicketStatus::Open,
        TicketStatus::Open => ticket.status == TicketStatus::Held,
    };
    if !allowed {
        let verb = match to {
            TicketStatus::Resolved => "resolved",
            TicketStatus::Held => "held",
            TicketStatus::Open => "unheld",
        };
        return Err(ApiError::conflict(format!("ticket {id} is {}; it cannot be {verb}", ticket.status))
            .with("status", json!(ticket.status)));
    }
    let ticket = state.tickets.transition(&state.sink, id, to, &reason, &actor, now_ms()).await?;
    ok(json!({ "ticket": ticket }))
}

pub(super) async fn resolve_ticket(State(state): State<Arc<ApiState>>, Path(id): Path<String>, bytes: Bytes) -> Reply {
    change_ticket(&state, &id, TicketStatus::Resolved, &bytes).await
}

pub(super) async fn hold_ticket(State(state): State<Arc<ApiState>>, Path(id): Path<String>, bytes: Bytes) -> Reply {
    change_ticket(&state, &id, TicketStatus::Held, &bytes).await
}

pub(super) async fn unhold_ticket(State(state): State<Arc<ApiState>>, Path(id): Path<String>, bytes: Bytes) -> Reply {
    change_ticket(&state, &id, TicketStatus::Open, &bytes).await
}

/// An action as JSON with `hold`: why it waits, when it does.
fn action_json(action: &Action, holds: &BTreeMap<String, String>) -> Value {
    let mut value = serde_json::to_value(action).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("hold".into(), holds.get(&action.id).map_or(Value::Null, |h| Value::String(h.clone())));
    }
    value
}

pub(super) async fn actions(State(state): State<Arc<ApiState>>, RawQuery(raw): RawQuery) -> Reply {
    let params = query(raw.as_deref(), &["status"])?;
    let status = params.get("status").map_or("all", String::as_str);
    let keep: Box<dyn Fn(&Action) -> bool> = match status {
        "all" => Box::new(|_| true),
        "active" => Box::new(|a| !a.status.is_final()),
        other => {
            let wanted = ActionStatus::parse(other).map_err(|e| {
                let names: Vec<&str> = ALL_STATUSES.iter().map(|s| s.as_str()).collect();
                ApiError::bad_request(format!("query parameter `status`: {e} ({}, active or all)", names.join(", ")))
            })?;
            Box::new(move |a| a.status == wanted)
        }
    };
    let holds: BTreeMap<String, String> = state.executor.holds(now_ms()).into_iter().collect();
    let list: Vec<Value> =
        state.executor.actions().iter().filter(|a| keep(a)).map(|a| action_json(a, &holds)).collect();
    ok(json!({ "actions": list }))
}

fn action_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no action {id}"))
}

pub(super) async fn action(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Reply {
    let action = state.executor.action(&id).ok_or_else(|| action_not_found(&id))?;
    let holds: BTreeMap<String, String> = state.executor.holds(now_ms()).into_iter().collect();
    ok(json!({ "action": action_json(&action, &holds) }))
}

/// `POST actions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposeBody {
    name: String,
    #[serde(default)]
    params: Map<String, Value>,
    /// Parameters as command-line text (`k=v`), typed by the catalogue (what the CLI sends).
    #[serde(default)]
    params_text: Vec<String>,
    ticket: Option<String>,
    at_ms: Option<u64>,
    by: Option<String>,
}

pub(super) async fn propose(State(state): State<Arc<ApiState>>, bytes: Bytes) -> Reply {
    let parsed: ProposeBody = body(&bytes)?;
    required("name", &parsed.name)?;
    let by = actor(parsed.by.as_deref())?;
    if let Some(ticket) = &parsed.ticket {
        let store = state.tickets.clone();
        let lookup = ticket.clone();
        if blocking(move || store.get(&lookup)).await?.is_none() {
            return Err(ApiError::not_found(format!("field `ticket`: no ticket {ticket}")));
        }
    }
    if !parsed.params.is_empty() && !parsed.params_text.is_empty() {
        return Err(ApiError::bad_request("give `params` or `params_text`, not both"));
    }
    let params = if parsed.params_text.is_empty() {
        ProposalParams::Json(parsed.params.into_iter().collect())
    } else {
        ProposalParams::Text(parsed.params_text)
    };
    let mut proposal = Proposal::new(&parsed.name, params, "api", &by);
    proposal.ticket = parsed.ticket;
    proposal.not_before_ms = parsed.at_ms.unwrap_or(0);
    match state.executor.propose(proposal, now_ms()).await {
        Ok(action) => {
            let holds: BTreeMap<String, String> = state.executor.holds(now_ms()).into_iter().collect();
            Ok((StatusCode::CREATED, Json(json!({ "action": action_json(&action, &holds) }))).into_response())
        }
        Err(error) => Err(propose_error(error)),
    }
}

fn propose_error(error: ProposeError) -> ApiError {
    let message = error.to_string();
    match error {
        ProposeError::UnknownAction(_) => ApiError::not_found(message),
        ProposeError::InvalidParams { problems, .. } => {
            ApiError::bad_request(message).with("problems", json!(problems))
        }
        ProposeError::Precondition { .. } => ApiError::conflict(message),
        // Mostly: no fresh, complete observation to check the preconditions against.
        ProposeError::Other(e) => ApiError::unavailable(format!("{e:#}")),
    }
}

/// What a human does to an action.
#[derive(Clone, Copy)]
enum Decide {
    Approve,
    Reject,
    Cancel,
}

async fn decide(state: &ApiState, id: &str, what: Decide, bytes: &Bytes) -> Reply {
    let (reason, by) = ReasonBody::parse(bytes)?;
    let action = state.executor.action(id).ok_or_else(|| action_not_found(id))?;
    let now = now_ms();
    // The pure lifecycle says whether the action's state allows it; the executor checks again.
    let check = match what {
        Decide::Approve => ledger::approve(&action, &by, &reason, now),
        Decide::Reject => ledger::reject(&action, &by, &reason, now),
        Decide::Cancel => ledger::cancel(&action, &by, &reason, now),
    };
    if let Err(message) = check {
        return Err(ApiError::conflict(message).with("status", json!(action.status)));
    }
    let executor = &state.executor;
    let action = match what {
        Decide::Approve => executor.approve(id, &by, &reason, now).await?,
        Decide::Reject => executor.reject(id, &by, &reason, now).await?,
        Decide::Cancel => executor.cancel(id, &by, &reason, now).await?,
    };
    let holds: BTreeMap<String, String> = executor.holds(now_ms()).into_iter().collect();
    ok(json!({ "action": action_json(&action, &holds) }))
}

pub(super) async fn approve(State(state): State<Arc<ApiState>>, Path(id): Path<String>, bytes: Bytes) -> Reply {
    decide(&state, &id, Decide::Approve, &bytes).await
}

pub(super) async fn reject(State(state): State<Arc<ApiState>>, Path(id): Path<String>, bytes: Bytes) -> Reply {
    decide(&state, &id, Decide::Reject, &bytes).await
}

pub(super) async fn cancel(State(state): State<Arc<ApiState>>, Path(id): Path<String>, bytes: Bytes) -> Reply {
    decide(&state, &id, Decide::Cancel, &bytes).await
}

fn workflow_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no workflow {id}"))
}

pub(super) async fn workflows(State(state): State<Arc<ApiState>>, RawQuery(raw): RawQuery) -> Reply {
    let params = query(raw.as_deref(), &["status"])?;
    let status = params.get("status").map_or("all", String::as_str).to_owned();
    let wanted = match status.as_str() {
        "all" | "active" => None,
        other => Some(
            WorkflowStatus::parse(other)
                .map_err(|e| ApiError::bad_request(format!("query parameter `status`: {e}, active or all")))?,
        ),
    };
    let store = state.workflows.store().clone();
    let mut list = blocking(move || store.list(wanted)).await?;
    if status == "active" {
        list.retain(|r| !r.status.is_settled());
    }
    ok(json!({ "workflows": list }))
}

pub(super) async fn workflow(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Reply {
    let store = state.workflows.store().clone();
    let lookup = id.clone();
    let run = blocking(move || store.get(&lookup)).await?.ok_or_else(|| workflow_not_found(&id))?;
    ok(json!({ "workflow": run }))
}

pub(super) async fn workflow_definitions(State(state): State<Arc<ApiState>>) -> Reply {
    let definitions: Vec<Value> =
        state.workflows.definitions().iter().map(|d| json!({ "plugin": d.plugin, "definition": d.def })).collect();
    ok(json!({ "definitions": definitions, "refused": state.workflows.refused() }))
}

/// `POST workflows`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    name: String,
    /// The workflow's parameters: strings, or numbers and booleans written as text.
    #[serde(default)]
    params: Map<String, Value>,
    ticket: Option<String>,
    by: Option<String>,
}

pub(super) async fn start_workflow(State(state): State<Arc<ApiState>>, bytes: Bytes) -> Reply {
    let parsed: StartBody = body(&bytes)?;
    required("name", &parsed.name)?;
    let by = actor(parsed.by.as_deref())?;
    let mut params = BTreeMap::new();
    for (name, value) in parsed.params {
        let text = match value {
            Value::String(text) => text,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(ApiError::bad_request(format!(
                    "field `params.{name}` must be a string, a number or a boolean, not {other}"
                )));
            }
        };
        params.insert(name, text);
    }
    if let Some(ticket) = &parsed.ticket {
        let store = state.tickets.clone();
        let lookup = ticket.clone();
        if blocking(move || store.get(&lookup)).await?.is_none() {
            return Err(ApiError::not_found(format!("field `ticket`: no ticket {ticket}")));
        }
    }
    match state.workflows.start(&parsed.name, params, parsed.ticket, &by, now_ms()).await {
        Ok(run) => Ok((StatusCode::CREATED, Json(json!({ "workflow": run }))).into_response()),
        Err(error) => Err(start_error(error)),
    }
}

fn start_error(error: StartError) -> ApiError {
    let message = error.to_string();
    match error {
        StartError::Unknown { .. } => ApiError::not_found(message),
        StartError::InvalidParams { problems, .. } => ApiError::bad_request(message).with("problems", json!(problems)),
        StartError::Refused { problems, .. } => ApiError::conflict(message).with("problems", json!(problems)),
        StartError::KillSwitch => ApiError::conflict(message),
        StartError::Other(e) => ApiError::internal(format!("{e:#}")),
    }
}

/// What a human does to a workflow run.
#[derive(Clone, Copy)]
enum DecideRun {
    Approve,
    Reject,
    Cancel,
    Resume,
}

/// `POST workflows/{id}/resume`: only who resumes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeBody {
    by: Option<String>,
}

async fn decide_run(state: &ApiState, id: &str, what: DecideRun, bytes: &Bytes) -> Reply {
    let (reason, by) = match what {
        DecideRun::Resume => {
            let parsed: ResumeBody = body(bytes)?;
            (String::new(), actor(parsed.by.as_deref())?)
        }
        _ => ReasonBody::parse(bytes)?,
    };
    let store = state.workflows.store().clone();
    let lookup = id.to_owned();
    let run = blocking(move || store.get(&lookup)).await?.ok_or_else(|| workflow_not_found(id))?;
    let now = now_ms();
    let kill = state.executor.safety().kill_switch;
    // The pure state machine says whether the run's state allows it; the engine checks again.
    let check = match what {
        DecideRun::Approve => workflow::approve(&run, &by, &reason, now).map(drop),
        DecideRun::Reject => workflow::reject(&run, &by, &reason, now).map(drop),
        DecideRun::Cancel => workflow::cancel(&run, &by, &reason, now).map(drop),
        DecideRun::Resume => workflow::resume(&run, &by, kill, now).map(drop),
    };
    if let Err(message) = check {
        return Err(ApiError::conflict(message).with("status", json!(run.status)));
    }
    let engine = &state.workflows;
    let run = match what {
        DecideRun::Approve => engine.approve(id, &by, &reason, now).await?,
        DecideRun::Reject => engine.reject(id, &by, &reason, now).await?,
        DecideRun::Cancel => engine.cancel(id, &by, &reason, now).await?,
        DecideRun::Resume => engine.resume(id, &by, now).await?,
    };
    ok(json!({ "workflow": run }))
}

pub(super) async fn approve_workflow(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Reply {
    decide_run(&state, &id, DecideRun::Approve, &bytes).await
}

pub(super) async fn reject_workflow(State(state): State<Arc<ApiState>>, Path(id): Path<String>, bytes: Bytes) -> Reply {
    decide_run(&state, &id, DecideRun::Reject, &bytes).await
}

pub(super) async fn cancel_workflow(State(state): State<Arc<ApiState>>, Path(id): Path<String>, bytes: Bytes) -> Reply {
    decide_run(&state, &id, DecideRun::Cancel, &bytes).await
}

pub(super) async fn resume_workflow(State(state): State<Arc<ApiState>>, Path(id): Path<String>, bytes: Bytes) -> Reply {
    decide_run(&state, &id, DecideRun::Resume, &bytes).await
}

pub(super) async fn safety(State(state): State<Arc<ApiState>>) -> Reply {
    ok(json!({ "safety": state.executor.safety() }))
}

/// `POST safety/mode`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeBody {
    mode: String,
    reason: String,
    by: Option<String>,
}

pub(super) async fn set_mode(State(state): State<Arc<ApiState>>, bytes: Bytes) -> Reply {
    let parsed: ModeBody = body(&bytes)?;
    let mode = match parsed.mode.as_str() {
        "observe" => Mode::Observe,
        "execute" => Mode::Execute,
        other => return Err(ApiError::bad_request(format!("field `mode`: `{other}` is not observe or execute"))),
    };
    required("reason", &parsed.reason)?;
    let by = actor(parsed.by.as_deref())?;
    if mode == Mode::Execute && state.executor.safety().kill_switch {
        return Err(ApiError::conflict("the kill switch is on: release it first (POST /api/v1/safety/release)"));
    }
    let safety = state.executor.set_mode(mode, &by, &parsed.reason, now_ms()).await?;
    ok(json!({ "safety": safety }))
}

pub(super) async fn kill(State(state): State<Arc<ApiState>>, bytes: Bytes) -> Reply {
    let (reason, by) = ReasonBody::parse(&bytes)?;
    let pending: Vec<String> = state
        .executor
        .actions()
        .into_iter()
        .filter(|a| !a.status.is_final() && a.status != ActionStatus::Executing)
        .map(|a| a.id)
        .collect();
    let safety = state.executor.kill(&by, &reason, now_ms()).await?;
    let cancelled: Vec<String> = pending
        .into_iter()
        .filter(|id| state.executor.action(id).is_some_and(|a| a.status == ActionStatus::Cancelled))
        .collect();
    ok(json!({ "safety": safety, "cancelled": cancelled }))
}

pub(super) async fn release(State(state): State<Arc<ApiState>>, bytes: Bytes) -> Reply {
    let (reason, by) = ReasonBody::parse(&bytes)?;
    if !state.executor.safety().kill_switch {
        return Err(ApiError::conflict("the kill switch is not on"));
    }
    let safety = state.executor.release(&by, &reason, now_ms()).await?;
    ok(json!({ "safety": safety }))
}

/// `since`: unix ms, a duration back from now (`90s`, `15m`, `2h`, `1d`), or an RFC 3339 time.
fn parse_since(text: &str) -> Result<u64, ApiError> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let now = std::time::SystemTime::now();
    let at = if let Ok(duration) = humantime::parse_duration(text) {
        now.checked_sub(duration)
            .ok_or_else(|| ApiError::bad_request(format!("query parameter `since`: `{text}` reaches before 1970")))?
    } else if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        time
    } else {
        return Err(ApiError::bad_request(format!(
            "query parameter `since`: `{text}` is neither unix milliseconds, a duration (like 15m, 2h) nor an RFC 3339 time"
        )));
    };
    Ok(at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
}

pub(super) async fn audit(State(state): State<Arc<ApiState>>, RawQuery(raw): RawQuery) -> Reply {
    let params = query(raw.as_deref(), &["kind", "since", "limit", "plugin", "denied"])?;
    let kind = params.get("kind").cloned();
    if let Some(kind) = &kind
        && !AuditEvent::KINDS.contains(&kind.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "query parameter `kind`: unknown kind `{kind}`; the kinds are {}",
            AuditEvent::KINDS.join(", ")
        )));
    }
    let since_ms = params.get("since").map(|s| parse_since(s)).transpose()?;
    let limit = match params.get("limit") {
        None => DEFAULT_AUDIT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_AUDIT_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "query parameter `limit`: `{text}` is not a whole number from 1 to {MAX_AUDIT_LIMIT}"
                )));
            }
        },
    };
    let denied_only = match params.get("denied").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!("query parameter `denied`: `{other}` is not true or false")));
        }
    };
    let filter = AuditFilter { plugin: params.get("plugin").cloned(), kind, since_ms, denied_only, limit: Some(limit) };
    let log = state.audit_log.clone();
    let records = blocking(move || Ok(log.list(&filter)?)).await?;
    ok(json!({ "records": records }))
}

/// `ChainBroken` → `chain-broken`.
fn kebab(debug: &str) -> String {
    let mut out = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

pub(super) async fn audit_verify(State(state): State<Arc<ApiState>>) -> Reply {
    let log = state.audit_log.clone();
    let (report, head) = blocking(move || Ok((log.verify()?, log.head().ok().flatten()))).await?;
    let problem = report.first_problem.as_ref().map(
        |p| json!({"seq": p.seq, "kind": kebab(&format!("{:?}", p.kind)), "what": p.what, "message": p.to_string()}),
    );
    ok(json!({
        "ok": report.is_ok(),
        "records": report.records,
        "head": head.map(|h| h.to_string()),
        "problem": problem,
        "message": report.to_string(),
    }))
}

pub(super) async fn plugins(State(state): State<Arc<ApiState>>) -> Reply {
    ok(json!({ "plugins": state.plugins }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_refuse_unknown_and_repeated_parameters() {
        assert_eq!(query(Some("status=open"), &["status"]).unwrap()["status"], "open");
        assert!(query(None, &["status"]).unwrap().is_empty());
        let e = query(Some("stats=open"), &["status"]).unwrap_err();
        assert!(e.message.contains("`stats`"), "{e}");
        assert!(query(Some("status=a&status=b"), &["status"]).unwrap_err().message.contains("twice"));
    }

    #[test]
    fn bodies_name_the_field_that_is_wrong() {
        let e = ReasonBody::parse(&Bytes::from_static(b"")).unwrap_err();
        assert!(e.message.contains("missing field `reason`"), "{e}");
        let e = ReasonBody::parse(&Bytes::from_static(br#"{"reason": " "}"#)).unwrap_err();
        assert!(e.message.contains("`reason` must not be empty"), "{e}");
        let e = ReasonBody::parse(&Bytes::from_static(br#"{"reason": "x", "who": "me"}"#)).unwrap_err();
        assert!(e.message.contains("unknown field `who`"), "{e}");
        let e = ReasonBody::parse(&Bytes::from_static(br#"{"reason": 3}"#)).unwrap_err();
        assert!(e.message.contains("invalid type"), "{e}");
        assert_eq!(
            ReasonBody::parse(&Bytes::from_static(br#"{"reason": "x", "by": "alice"}"#)).unwrap(),
            ("x".to_owned(), "api:alice".to_owned())
        );
        assert_eq!(ReasonBody::parse(&Bytes::from_static(br#"{"reason": "x"}"#)).unwrap().1, "api");
    }

    #[test]
    fn since_takes_ms_durations_and_times() {
        assert_eq!(parse_since("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_since("2026-01-01T00:00:00Z").unwrap(), 1_767_225_600_000);
        let an_hour_ago = parse_since("1h").unwrap();
        assert!(now_ms() - an_hour_ago >= 3_600_000 && now_ms() - an_hour_ago < 3_660_000);
        assert!(parse_since("yesterday").unwrap_err().message.contains("`since`"));
    }

    #[test]
    fn problem_kinds_are_kebab_case() {
        assert_eq!(kebab("ChainBroken"), "chain-broken");
        assert_eq!(kebab("Missing"), "missing");
    }
}
