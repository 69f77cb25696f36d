//! The executor: the I/O around the pure `ledger` state machine. It validates proposals against
//! the catalogue and the plugin's preconditions, runs due actions through every gate, verifies
//! their effect, and reconciles actions found executing after a restart.
//!
//! Order of every change: audit (durably) → persist → commit to the ledger → act. A crash between
//! any two steps leaves either the old state or a recorded new state whose effect has not happened
//! yet; an action recorded `executing` whose outcome is unknown is reconciled through the plugin's
//! `reconcile` before anything else runs, so nothing is executed twice without that check.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow};
use serde_json::Value;

use super::ledger::{
    self, Action, ActionStatus, AttemptResult, Change, Decision, Ledger, Recovery, Verification, WorkflowLink,
};
use super::params;
use super::policy::{ActionsConfig, Mode, ObservationState, Risk, Safety};
use super::store::ActionStore;
use crate::audit::{AuditEvent, AuditSink};
use crate::monitor::SharedObservation;
use crate::monitor::tickets::{TicketStatus, TicketStore, violation_key};
use crate::runtime::bindings::types::{self, ActionError, ActionSpec, Param, Reconciliation, Verdict};
use crate::runtime::{CallContext, ExecutionPermit, Plugin};

/// How a proposal gives its parameters.
#[derive(Debug, Clone)]
pub enum ProposalParams {
    /// `k=v` text from a command line.
    Text(Vec<String>),
    /// Named JSON values (API, diagnoses, workflows).
    Json(Vec<(String, Value)>),
}

/// A request to add an action.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// The action name (a subject action, or a tool of the tools plugin).
    pub name: String,
    /// Its parameters.
    pub params: ProposalParams,
    /// The ticket it serves.
    pub ticket: Option<String>,
    /// `diagnosis`, `cli`, `api`, `workflow`.
    pub source: String,
    /// Who proposes.
    pub by: String,
    /// Not before (unix ms); 0 for as soon as possible.
    pub not_before_ms: u64,
    /// The workflow step it is.
    pub workflow: Option<WorkflowLink>,
    /// An approval given in advance (a workflow approved as a whole).
    pub approval: Option<Decision>,
}

impl Proposal {
    /// A proposal with defaults for the optional parts.
    pub fn new(name: &str, params: ProposalParams, source: &str, by: &str) -> Proposal {
        Proposal {
            name: name.into(),
            params,
            ticket: None,
            source: source.into(),
            by: by.into(),
            not_before_ms: 0,
            workflow: None,
            approval: None,
        }
    }
}

/// Why a proposal was refused; nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// No plugin offers the action.
    #[error("no action named `{0}` (see `operator-host plugins inspect <plugin>` for the catalogue)")]
    UnknownAction(String),
    /// The parameters do not fit the schema.
    #[error("invalid parameters for {action}:\n  - {}", problems.join("\n  - "))]
    InvalidParams {
        /// The action.
        action: String,
        /// Every problem.
        problems: Vec<String>,
    },
    /// The plugin's preconditions refuse it now.
    #[error("{action} refused: {message}")]
    Precondition {
        /// The action.
        action: String,
        /// The plugin's reason.
        message: String,
    },
    /// Anything else.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

struct Catalogued {
    plugin: Arc<Plugin>,
    spec: ActionSpec,
    is_subject: bool,
}

/// The executor.
pub struct Executor {
    catalogue: BTreeMap<String, Catalogued>,
    subject: Arc<Plugin>,
    store: ActionStore,
    tickets: TicketStore,
    sink: AuditSink,
    config: ActionsConfig,
    stale_after_ms: u64,
    latest: SharedObservation,
    ledger: Mutex<Ledger>,
    in_flight: Mutex<BTreeSet<String>>,
}

fn risk(risk: types::Risk) -> Risk {
    match risk {
        types::Risk::Low => Risk::Low,
        types::Risk::Medium => Risk::Medium,
        types::Risk::High => Risk::High,
    }
}

fn action_event(c: &Change) -> AuditEvent {
    AuditEvent::StateChange {
        subject: "action".into(),
        id: c.action.id.clone(),
        from: c.from.map(|s| s.as_str().to_owned()),
        to: c.action.status.as_str().into(),
        reason: format!("{} {}: {}", c.action.name, c.action.params_text(), c.reason),
        actor: c.actor.clone(),
    }
}

/// Maps a plugin's action error to an attempt result: only transient failures are retried.
pub fn attempt_result(error: &ActionError) -> AttemptResult {
    match error {
        ActionError::Retryable(m) => AttemptResult::Retryable(m.clone()),
        ActionError::InvalidParams(m) => AttemptResult::Definite(format!("invalid parameters: {m}")),
        ActionError::Precondition(m) => AttemptResult::Definite(format!("precondition: {m}")),
        ActionError::Failed(m) => AttemptResult::Definite(m.clone()),
    }
}

impl Executor {
    /// An executor over the subject plugin (and optionally the tools plugin), loading the actions
    /// and safety switches from the store.
    #[allow(clippy::too_many_arguments)]
    pub async fn new(
        subject: Arc<Plugin>,
        tools: Option<Arc<Plugin>>,
        store: ActionStore,
        tickets: TicketStore,
        sink: AuditSink,
        config: ActionsConfig,
        stale_after_ms: u64,
        latest: SharedObservation,
    ) -> Result<Executor> {
        let context = CallContext::default();
        let mut catalogue = BTreeMap::new();
        if let Some(tools) = &tools
            && let Some(t) = tools.as_tools()
        {
            for spec in t.info(&context).await?.tools {
                catalogue.insert(spec.name.clone(), Catalogued { plugin: tools.clone(), spec, is_subject: false });
            }
        }
        let s = subject.as_subject().ok_or_else(|| anyhow!("plugin {} is not a subject plugin", subject.name()))?;
        for spec in s.info(&context).await?.actions {
            catalogue.insert(spec.name.clone(), Catalogued { plugin: subject.clone(), spec, is_subject: true });
        }
        let ledger =
            Ledger { actions: store.all()?.into_iter().map(|a| (a.id.clone(), a)).collect(), safety: store.safety()? };
        Ok(Executor {
            catalogue,
            subject,
            store,
            tickets,
            sink,
            config,
            stale_after_ms,
            latest,
            ledger: Mutex::new(ledger),
            in_flight: Mutex::new(BTreeSet::new()),
        })
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The safety switches.
    pub fn safety(&self) -> Safety {
        self.ledger().safety.clone()
    }

    /// One action.
    pub fn action(&self, id: &str) -> Option<Action> {
        self.ledger().actions.get(id).cloned()
    }

    /// Every action, newest first.
    pub fn actions(&self) -> Vec<Action> {
        self.ledger().actions.values().rev().cloned().collect()
    }

    /// The catalogue entry of an action.
    pub fn spec(&self, name: &str) -> Option<&ActionSpec> {
        self.catalogue.get(name).map(|c| &c.spec)
    }

    /// Audits, persists and commits a change.
    async fn record(&self, change: Change) -> Result<Action> {
        self.sink.record_durable(action_event(&change)).await?;
        self.store.save(&[&change.action])?;
        self.ledger().commit(change.action.clone());
        Ok(change.action)
    }

    /// The latest observation if it is fresh and complete, else why not.
    fn observation(&self, now_ms: u64) -> (ObservationState, Option<types::Observation>) {
        let latest = self.latest.read().ok().and_then(|l| l.clone());
        match latest {
            None => (ObservationState::Missing, None),
            Some(l) if !l.observation.complete => (ObservationState::Partial, Some(l.observation)),
            Some(l) if now_ms.saturating_sub(l.at_ms) > self.stale_after_ms => {
                (ObservationState::Stale, Some(l.observation))
            }
            Some(l) => (ObservationState::Good, Some(l.observation)),
        }
    }

    /// Observes now if no fresh, complete observation is at hand (e.g. from the command line).
    async fn fresh_observation(&self, now_ms: u64) -> Result<types::Observation> {
        if let (ObservationState::Good, Some(o)) = self.observation(now_ms) {
            return Ok(o);
        }
        let s = self.subject.as_subject().ok_or_else(|| anyhow!("no subject plugin"))?;
        let observation = s.observe(&CallContext::default()).await?.map_err(|e| anyhow!("observing failed: {e}"))?;
        if !observation.complete {
            return Err(anyhow!(
                "the observation is partial ({}): acting on a partial view is unsafe",
                observation.errors.join("; ")
            ));
        }
        Ok(observation)
    }

    async fn precheck(
        &self,
        entry: &Catalogued,
        params: &[Param],
        now_ms: u64,
        ticket: Option<String>,
    ) -> Result<(), ProposeError> {
        if !entry.is_subject {
            return Ok(());
        }
        let observation = self.fresh_observation(now_ms).await?;
        let s = entry.plugin.as_subject().ok_or_else(|| anyhow!("not a subject plugin"))?;
        let context = CallContext { ticket };
        match s.precheck(&context, &entry.spec.name, params, &observation).await.map_err(anyhow::Error::from)? {
            Ok(()) => Ok(()),
            Err(ActionError::InvalidParams(m)) => {
                Err(ProposeError::InvalidParams { action: entry.spec.name.clone(), problems: vec![m] })
            }
            Err(ActionError::Precondition(m) | ActionError::Failed(m) | ActionError::Retryable(m)) => {
                Err(ProposeError::Precondition { action: entry.spec.name.clone(), message: m })
            }
        }
    }

    /// Validates a proposal (schema, then the plugin's preconditions) and stores it as an action
    /// awaiting approval or ready. Nothing is stored when it is refused.
    pub async fn propose(&self, proposal: Proposal, now_ms: u64) -> Result<Action, ProposeError> {
        let entry =
            self.catalogue.get(&proposal.name).ok_or_else(|| ProposeError::UnknownAction(proposal.name.clone()))?;
        let parsed = match &proposal.params {
            ProposalParams::Text(pairs) => params::parse_cli(&entry.spec, pairs),
            ProposalParams::Json(given) => params::validate(&entry.spec, given),
        };
        let typed =
            parsed.map_err(|problems| ProposeError::InvalidParams { action: entry.spec.name.clone(), problems })?;
        self.precheck(entry, &typed, now_ms, proposal.ticket.clone()).await?;
        let entity = entry.spec.entity_param.as_ref().and_then(|name| {
            typed.iter().find(|p| &p.name == name).map(|p| {
                format!(
                    "{name}={}",
                    match params::to_json(&p.value) {
                        Value::String(s) => s,
                        v => v.to_string(),
                    }
                )
            })
        });
        let id = self.store.next_id()?;
        let action = Action {
            id,
            plugin: entry.plugin.name().to_owned(),
            name: entry.spec.name.clone(),
            params: params::to_stored(&typed),
            risk: risk(entry.spec.risk),
            entity,
            ticket: proposal.ticket.clone(),
            workflow: proposal.workflow.clone(),
            source: proposal.source.clone(),
            proposed_by: proposal.by.clone(),
            status: ActionStatus::Ready,
            needs_approval: false,
            decision: proposal.approval.clone(),
            created_ms: now_ms,
            approval_expires_ms: None,
            not_before_ms: proposal.not_before_ms,
            attempts: 0,
            next_attempt_ms: None,
            started_ms: vec![],
            last_error: None,
            outcome: None,
            verify_window_secs: entry.spec.verify_window_secs,
            verification: None,
            history: vec![],
        };
        let change = ledger::admit(action, &self.config, now_ms);
        let action = self.record(change).await?;
        if let Some(ticket_id) = &action.ticket
            && let Ok(Some(mut ticket)) = self.tickets.get(ticket_id)
        {
            ticket.actions.push(action.id.clone());
            self.tickets.save(&ticket)?;
        }
        Ok(action)
    }

    /// A human approves an action.
    pub async fn approve(&self, id: &str, by: &str, reason: &str, now_ms: u64) -> Result<Action> {
        let action = self.action(id).ok_or_else(|| anyhow!("no action {id}"))?;
        let change = ledger::approve(&action, by, reason, now_ms).map_err(anyhow::Error::msg)?;
        self.record(change).await
    }

    /// A human rejects an action.
    pub async fn reject(&self, id: &str, by: &str, reason: &str, now_ms: u64) -> Result<Action> {
        let action = self.action(id).ok_or_else(|| anyhow!("no action {id}"))?;
        let change = ledger::reject(&action, by, reason, now_ms).map_err(anyhow::Error::msg)?;
        self.record(change).await
    }

    /// Cancels an action that has not started.
    pub async fn cancel(&self, id: &str, by: &str, reason: &str, now_ms: u64) -> Result<Action> {
        let action = self.action(id).ok_or_else(|| anyhow!("no action {id}"))?;
        let change = ledger::cancel(&action, by, reason, now_ms).map_err(anyhow::Error::msg)?;
        self.record(change).await
    }

    async fn save_safety(&self, safety: Safety, cancelled: Vec<Change>) -> Result<Safety> {
        let before = self.safety();
        self.sink
            .record_durable(AuditEvent::StateChange {
                subject: "safety".into(),
                id: "switches".into(),
                from: Some(describe(&before)),
                to: describe(&safety),
                reason: safety.reason.clone(),
                actor: safety.by.clone(),
            })
            .await?;
        for c in &cancelled {
            self.sink.record_durable(action_event(c)).await?;
        }
        let actions: Vec<&Action> = cancelled.iter().map(|c| &c.action).collect();
        self.store.save_safety(&safety, &actions)?;
        let mut ledger = self.ledger();
        ledger.safety = safety.clone();
        for c in cancelled {
            ledger.commit(c.action);
        }
        Ok(safety)
    }

    /// Switches between observe and execute. Execute is refused while the kill switch is on.
    pub async fn set_mode(&self, mode: Mode, by: &str, reason: &str, now_ms: u64) -> Result<Safety> {
        let current = self.safety();
        if mode == Mode::Execute && current.kill_switch {
            anyhow::bail!("the kill switch is on: release it first (`operator-host safety release`)");
        }
        self.save_safety(Safety { mode, reason: reason.into(), by: by.into(), at_ms: now_ms, ..current }, vec![]).await
    }

    /// The kill switch: observe mode, every pending action cancelled, running workflows stop.
    pub async fn kill(&self, by: &str, reason: &str, now_ms: u64) -> Result<Safety> {
        let (safety, cancelled) = self.ledger().kill(by, reason, now_ms);
        self.save_safety(safety, cancelled).await
    }

    /// Lifts the kill switch; the mode stays observe until someone sets execute.
    pub async fn release(&self, by: &str, reason: &str, now_ms: u64) -> Result<Safety> {
        let current = self.safety();
        if !current.kill_switch {
            anyhow::bail!("the kill switch is not on");
        }
        let safety =
            Safety { mode: Mode::Observe, kill_switch: false, reason: reason.into(), by: by.into(), at_ms: now_ms };
        self.save_safety(safety, vec![]).await
    }

    /// Reconciles actions recorded `executing` that no call of this process is running (after a
    /// crash or restart). An unknown outcome leaves the action executing, to be asked again.
    pub async fn recover(&self, now_ms: u64) -> Result<Vec<Action>> {
        let orphans: Vec<Action> = {
            let in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            self.ledger()
                .actions
                .values()
                .filter(|a| a.status == ActionStatus::Executing && !in_flight.contains(&a.id))
                .cloned()
                .collect()
        };
        let mut out = Vec::new();
        for action in orphans {
            let Some(entry) = self.catalogue.get(&action.name) else { continue };
            let recovery = if entry.is_subject {
                let params = params::from_stored(&entry.spec, &action.params).map_err(|p| anyhow!(p.join("; ")))?;
                let s = entry.plugin.as_subject().context("subject")?;
                let context = CallContext { ticket: action.ticket.clone() };
                let started = action.started_ms.last().copied().unwrap_or(action.created_ms);
                match s.reconcile(&context, &action.name, &params, started).await? {
                    Reconciliation::TookEffect(m) => Recovery::TookEffect(m),
                    Reconciliation::NotApplied(m) => Recovery::NotApplied(m),
                    Reconciliation::Failed(m) => Recovery::Failed(m),
                    Reconciliation::Unknown(m) => {
                        tracing::warn!(action = %action.id, "cannot tell yet whether it took effect: {m}");
                        continue;
                    }
                }
            } else {
                // Tools are idempotent notifications and waits: running one again is safe.
                Recovery::NotApplied("a tool; running it again is safe".into())
            };
            out.push(self.record(ledger::recover(&action, recovery, now_ms)).await?);
        }
        Ok(out)
    }

    /// One round: expire approvals, reconcile orphans, start what may start (one at a time,
    /// each through every gate), verify completed actions.
    pub async fn tick(&self, now_ms: u64) -> Result<()> {
        let expired: Vec<Change> = self.ledger().actions.values().filter_map(|a| ledger::expire(a, now_ms)).collect();
        for change in expired {
            self.record(change).await?;
        }
        self.recover(now_ms).await?;
        loop {
            let (state, observation) = self.observation(now_ms);
            let (next, _holds) = self.ledger().next_to_start(&self.config, state, now_ms);
            let Some(start) = next else { break };
            let Some(observation) = observation else { break };
            self.run(start, &observation, now_ms).await?;
        }
        self.verify_completed(now_ms).await
    }

    /// Why each waiting action waits.
    pub fn holds(&self, now_ms: u64) -> Vec<(String, String)> {
        let (state, _) = self.observation(now_ms);
        let (_, holds) = self.ledger().next_to_start(&self.config, state, now_ms);
        holds.into_iter().map(|(id, hold)| (id, hold.to_string())).collect()
    }

    async fn run(&self, start: Change, observation: &types::Observation, now_ms: u64) -> Result<()> {
        let entry = self
            .catalogue
            .get(&start.action.name)
            .ok_or_else(|| anyhow!("{} left the catalogue", start.action.name))?;
        let params = match params::from_stored(&entry.spec, &start.action.params) {
            Ok(p) => p,
            Err(problems) => {
                let prior = self.action(&start.action.id).unwrap_or(start.action.clone());
                let failed = ledger::cancel(
                    &prior,
                    "executor",
                    &format!("parameters no longer valid: {}", problems.join("; ")),
                    now_ms,
                )
                .map_err(anyhow::Error::msg)?;
                self.record(failed).await?;
                return Ok(());
            }
        };
        let context = CallContext { ticket: start.action.ticket.clone() };
        // The world may have moved since the proposal: check the preconditions again, before
        // anything is recorded as executing.
        if entry.is_subject {
            let s = entry.plugin.as_subject().context("subject")?;
            if let Err(error) = s.precheck(&context, &entry.spec.name, &params, observation).await? {
                // The check counts as the attempt (so a flapping precondition cannot retry forever),
                // but nothing was sent, so it does not count towards the rate limits.
                let prior = self.action(&start.action.id).unwrap_or(start.action.clone());
                let mut checked = start.action.clone();
                checked.started_ms.pop();
                let result = match &error {
                    ActionError::Retryable(m) => AttemptResult::Retryable(format!("precondition check: {m}")),
                    ActionError::Precondition(m) => {
                        AttemptResult::Definite(format!("precondition no longer holds: {m}"))
                    }
                    other => attempt_result(other),
                };
                let mut failed = ledger::finish(&checked, result, &self.config, rand::random::<f64>(), now_ms);
                failed.from = Some(prior.status);
                if let Some(last) = failed.action.history.last_mut() {
                    last.from = Some(prior.status);
                }
                self.record(failed).await?;
                return Ok(());
            }
        }
        let id = start.action.id.clone();
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone());
        let executing = self.record(start).await?;
        let permit = ExecutionPermit::for_approved_action(id.clone());
        let result = if entry.is_subject {
            let s = entry.plugin.as_subject().context("subject")?;
            s.execute(&context, &permit, &executing.name, &params).await
        } else {
            let t = entry.plugin.as_tools().context("tools")?;
            t.invoke(&context, &permit, &executing.name, &params).await
        };
        let attempt = match result {
            Ok(Ok(outcome)) => AttemptResult::Succeeded(outcome.message),
            Ok(Err(error)) => attempt_result(&error),
            // A deadline or a trap: the request may or may not have gone out, so it is retried
            // only as a retryable failure, which re-runs the precondition check first.
            Err(call) => AttemptResult::Retryable(format!("the plugin call failed: {call}")),
        };
        let finished = ledger::finish(
            &executing,
            attempt,
            &self.config,
            rand::random::<f64>(),
            crate::audit::now_ms().max(now_ms),
        );
        let result = self.record(finished).await;
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        result.map(|_| ())
    }

    async fn verify_completed(&self, now_ms: u64) -> Result<()> {
        let pending: Vec<Action> = self
            .ledger()
            .actions
            .values()
            .filter(|a| matches!(a.verification, Some(Verification::Pending(_))))
            .cloned()
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let (state, observation) = self.observation(now_ms);
        let observed_at = self.latest.read().ok().and_then(|l| l.as_ref().map(|l| l.at_ms)).unwrap_or(0);
        let latest_violations: Option<Vec<String>> = self.latest.read().ok().and_then(|l| {
            l.as_ref().map(|l| l.violations.iter().map(|v| violation_key(&v.invariant, &v.entity)).collect())
        });
        for action in pending {
            let Some(Verification::Pending(deadline)) = action.verification.clone() else { continue };
            let Some(entry) = self.catalogue.get(&action.name) else { continue };
            // Only an observation taken after the action completed can show its effect.
            let completed_at = action.history.last().map_or(0, |h| h.at_ms);
            let verdict = if !entry.is_subject {
                Verdict::Holds("a tool has no effect to verify".into())
            } else if observed_at <= completed_at {
                Verdict::NotYet("waiting for an observation taken after the action".into())
            } else if let (ObservationState::Good, Some(observation)) = (state, observation.as_ref()) {
                let params = params::from_stored(&entry.spec, &action.params).map_err(|p| anyhow!(p.join("; ")))?;
                let s = entry.plugin.as_subject().context("subject")?;
                s.verify(&CallContext { ticket: action.ticket.clone() }, &action.name, &params, observation).await?
            } else {
                Verdict::NotYet("waiting for a fresh, complete observation".into())
            };
            let verification = match verdict {
                Verdict::Holds(m) => Verification::Verified(m),
                Verdict::Violated(m) => Verification::NotEffective(m),
                Verdict::NotYet(m) if now_ms >= deadline => {
                    Verification::NotEffective(format!("not within the verification window: {m}"))
                }
                Verdict::NotYet(_) => continue,
            };
            let verified = matches!(verification, Verification::Verified(_));
            let text = match &verification {
                Verification::Verified(m) => format!("verified: {m}"),
                Verification::NotEffective(m) => format!("not effective: {m}"),
                Verification::Pending(_) => String::new(),
            };
            self.sink
                .record_durable(AuditEvent::StateChange {
                    subject: "action".into(),
                    id: action.id.clone(),
                    from: Some("completed".into()),
                    to: if verified { "verified".into() } else { "not-effective".into() },
                    reason: text.clone(),
                    actor: "verifier".into(),
                })
                .await?;
            let updated = ledger::verified(&action, verification);
            self.store.save(&[&updated])?;
            self.ledger().commit(updated.clone());
            if verified && let Some(ticket_id) = &action.ticket {
                self.resolve_ticket_if_gone(ticket_id, &action, latest_violations.as_deref(), now_ms).await?;
            }
        }
        Ok(())
    }

    async fn resolve_ticket_if_gone(
        &self,
        ticket_id: &str,
        action: &Action,
        violations: Option<&[String]>,
        now_ms: u64,
    ) -> Result<()> {
        let Some(ticket) = self.tickets.get(ticket_id)? else { return Ok(()) };
        if ticket.status != TicketStatus::Open {
            return Ok(());
        }
        let Some(violations) = violations else { return Ok(()) };
        if violations.contains(&ticket.key()) {
            return Ok(());
        }
        let reason = format!("action {} ({}) verified and the violation is gone", action.id, action.name);
        self.tickets.transition(&self.sink, ticket_id, TicketStatus::Resolved, &reason, "verifier", now_ms).await?;
        Ok(())
    }
}

fn describe(safety: &Safety) -> String {
    if safety.kill_switch { "kill-switch".into() } else { safety.mode.as_str().into() }
}
