//! The action lifecycle as a pure state machine. Every function takes the current state and the
//! time and returns the next state; nothing here does I/O. The executor audits and persists each
//! new state **before** acting on it, then commits it to the ledger.
//!
//! ```text
//!  proposed ──validate──▶ awaiting-approval ──approve──▶ ready ──start──▶ executing ──ok──▶ completed
//!      │                      │ reject / expire            ▲                 │ retryable
//!      └──(no approval)───────┼───────────────────────────▶┘                 ▼
//!                             ▼                                         retry-wait ──start──▶ executing
//!                    rejected / expired                                      │ attempts used up or definite
//!                                                                            ▼
//!  cancel: from any state before executing             failed ◀──────────────┘
//! ```
//!
//! The kill switch cancels every action that has not started and switches to observe mode; an
//! action already executing finishes its one call (a call cannot be recalled once sent).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::policy::{ActionsConfig, Activity, Hold, Mode, ObservationState, Risk, Safety, may_start};

/// Where an action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionStatus {
    /// Valid; waiting for a human.
    AwaitingApproval,
    /// Valid and approved (or needing no approval); waits for its gates.
    Ready,
    /// Its call to the plugin is in flight (or was, when the host stopped).
    Executing,
    /// Failed in a way that may pass; waits for its next attempt.
    RetryWait,
    /// Done.
    Completed,
    /// Failed for good.
    Failed,
    /// Cancelled before it ran.
    Cancelled,
    /// A human said no.
    Rejected,
    /// Nobody approved it in time.
    Expired,
}

impl ActionStatus {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::AwaitingApproval => "awaiting-approval",
            ActionStatus::Ready => "ready",
            ActionStatus::Executing => "executing",
            ActionStatus::RetryWait => "retry-wait",
            ActionStatus::Completed => "completed",
            ActionStatus::Failed => "failed",
            ActionStatus::Cancelled => "cancelled",
            ActionStatus::Rejected => "rejected",
            ActionStatus::Expired => "expired",
        }
    }

    /// Parses the kebab-case name.
    pub fn parse(text: &str) -> Result<ActionStatus, String> {
        ALL_STATUSES
            .iter()
            .copied()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| format!("unknown action status `{text}`"))
    }

    /// Whether nothing more will happen to the action (verification aside).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ActionStatus::Completed
                | ActionStatus::Failed
                | ActionStatus::Cancelled
                | ActionStatus::Rejected
                | ActionStatus::Expired
        )
    }
}

/// Every status.
pub const ALL_STATUSES: [ActionStatus; 9] = [
    ActionStatus::AwaitingApproval,
    ActionStatus::Ready,
    ActionStatus::Executing,
    ActionStatus::RetryWait,
    ActionStatus::Completed,
    ActionStatus::Failed,
    ActionStatus::Cancelled,
    ActionStatus::Rejected,
    ActionStatus::Expired,
];

impl std::fmt::Display for ActionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A human's decision on an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Approved or rejected.
    pub approved: bool,
    /// Who.
    pub by: String,
    /// Why.
    pub reason: String,
    /// When, unix ms.
    pub at_ms: u64,
}

/// Whether a completed action had the intended effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state", content = "detail")]
pub enum Verification {
    /// Being checked until the window closes (unix ms).
    Pending(u64),
    /// The plugin's `verify` held.
    Verified(String),
    /// The window passed (or the plugin said violated).
    NotEffective(String),
}

/// The workflow step an action belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowLink {
    /// Workflow id.
    pub workflow: String,
    /// Step index.
    pub step: usize,
    /// Whether this action is the step's compensation.
    pub compensation: bool,
}

/// One entry of an action's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionEvent {
    /// Unix ms.
    pub at_ms: u64,
    /// Status before (none when created).
    pub from: Option<ActionStatus>,
    /// Status after.
    pub to: ActionStatus,
    /// Why.
    pub reason: String,
    /// Who.
    pub actor: String,
}

/// A named parameter value as stored (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredParam {
    /// Name.
    pub name: String,
    /// Value: bool, integer, number, text or a list of integers.
    pub value: serde_json::Value,
}

/// An action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// `A-000007`.
    pub id: String,
    /// The plugin whose catalogue it comes from.
    pub plugin: String,
    /// The action (or tool) name.
    pub name: String,
    /// Validated parameters.
    pub params: Vec<StoredParam>,
    /// Risk from the catalogue.
    pub risk: Risk,
    /// The entity it changes, for cooldowns (from the catalogue's `entity-param`).
    pub entity: Option<String>,
    /// The ticket it serves.
    pub ticket: Option<String>,
    /// The workflow step it is.
    pub workflow: Option<WorkflowLink>,
    /// Where it came from: `diagnosis`, `cli`, `api`, `workflow`.
    pub source: String,
    /// Who proposed it.
    pub proposed_by: String,
    /// Where it stands.
    pub status: ActionStatus,
    /// Whether a human must approve it.
    pub needs_approval: bool,
    /// The human decision, if any.
    pub decision: Option<Decision>,
    /// Unix ms.
    pub created_ms: u64,
    /// When an unanswered approval request expires.
    pub approval_expires_ms: Option<u64>,
    /// Not before this time (scheduled actions), unix ms.
    pub not_before_ms: u64,
    /// Attempts started.
    pub attempts: u32,
    /// When the next attempt may start (retry-wait).
    pub next_attempt_ms: Option<u64>,
    /// Start times of each attempt.
    pub started_ms: Vec<u64>,
    /// The last error.
    pub last_error: Option<String>,
    /// What the plugin said on success.
    pub outcome: Option<String>,
    /// The catalogue's verification window, seconds.
    pub verify_window_secs: u32,
    /// The verification, once completed.
    pub verification: Option<Verification>,
    /// Status history.
    pub history: Vec<ActionEvent>,
}

impl Action {
    /// Parameters as `k=v` text.
    pub fn params_text(&self) -> String {
        self.params
            .iter()
            .map(|p| match &p.value {
                serde_json::Value::String(s) => format!("{}={s}", p.name),
                v => format!("{}={v}", p.name),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether it may be approved or rejected now.
    pub fn awaits_approval(&self) -> bool {
        self.status == ActionStatus::AwaitingApproval
    }
}

/// A proposed change of an action: the action as it will be, and the transition to audit.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The action after the change.
    pub action: Action,
    /// Status before.
    pub from: Option<ActionStatus>,
    /// Why.
    pub reason: String,
    /// Who.
    pub actor: String,
}

fn change(action: &Action, to: ActionStatus, reason: &str, actor: &str, now_ms: u64) -> Change {
    let mut next = action.clone();
    next.status = to;
    next.history.push(ActionEvent {
        at_ms: now_ms,
        from: Some(action.status),
        to,
        reason: reason.into(),
        actor: actor.into(),
    });
    Change { action: next, from: Some(action.status), reason: reason.into(), actor: actor.into() }
}

/// The first status of a newly validated action, and its approval deadline.
pub fn admit(mut action: Action, config: &ActionsConfig, now_ms: u64) -> Change {
    action.needs_approval = config.approval.needs_approval(&action.name, action.risk) && action.decision.is_none();
    let to = if action.needs_approval { ActionStatus::AwaitingApproval } else { ActionStatus::Ready };
    action.status = to;
    action.approval_expires_ms = action.needs_approval.then(|| now_ms + config.approval.ttl_secs * 1000);
    let reason = if action.needs_approval {
        format!("{} risk: awaiting approval", action.risk.as_str())
    } else if action.decision.is_some() {
        "approved with its workflow".to_owned()
    } else {
        format!("{} risk: no approval needed", action.risk.as_str())
    };
    action.history.push(ActionEvent {
        at_ms: now_ms,
        from: None,
        to,
        reason: reason.clone(),
        actor: action.proposed_by.clone(),
    });
    let actor = action.proposed_by.clone();
    Change { action, from: None, reason, actor }
}

/// A human approves.
pub fn approve(action: &Action, by: &str, reason: &str, now_ms: u64) -> Result<Change, String> {
    if !action.awaits_approval() {
        return Err(format!(
            "action {} is {}; only an action awaiting approval can be approved",
            action.id, action.status
        ));
    }
    if action.approval_expires_ms.is_some_and(|t| now_ms >= t) {
        return Err(format!("the approval request for action {} has expired", action.id));
    }
    let mut c = change(action, ActionStatus::Ready, &format!("approved: {reason}"), by, now_ms);
    c.action.decision = Some(Decision { approved: true, by: by.into(), reason: reason.into(), at_ms: now_ms });
    Ok(c)
}

/// A human rejects.
pub fn reject(action: &Action, by: &str, reason: &str, now_ms: u64) -> Result<Change, String> {
    if !action.awaits_approval() {
        return Err(format!(
            "action {} is {}; only an action awaiting approval can be rejected",
            action.id, action.status
        ));
    }
    let mut c = change(action, ActionStatus::Rejected, &format!("rejected: {reason}"), by, now_ms);
    c.action.decision = Some(Decision { approved: false, by: by.into(), reason: reason.into(), at_ms: now_ms });
    Ok(c)
}

/// Cancels an action that has not started (or is waiting to retry).
pub fn cancel(action: &Action, by: &str, reason: &str, now_ms: u64) -> Result<Change, String> {
    if action.status.is_final() {
        return Err(format!("action {} is already {}", action.id, action.status));
    }
    if action.status == ActionStatus::Executing {
        return Err(format!("action {} is executing; its call cannot be recalled", action.id));
    }
    Ok(change(action, ActionStatus::Cancelled, reason, by, now_ms))
}

/// Approval requests past their deadline.
pub fn expire(action: &Action, now_ms: u64) -> Option<Change> {
    (action.awaits_approval() && action.approval_expires_ms.is_some_and(|t| now_ms >= t))
        .then(|| change(action, ActionStatus::Expired, "nobody approved it in time", "executor", now_ms))
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    /// It worked; the plugin's message.
    Succeeded(String),
    /// It failed in a way that may pass (timeout, 5xx, no leader).
    Retryable(String),
    /// It failed for good (invalid parameters, a precondition, a definite error).
    Definite(String),
}

/// Records the end of an attempt. `jitter` in [0, 1) spreads the retries.
pub fn finish(action: &Action, result: AttemptResult, config: &ActionsConfig, jitter: f64, now_ms: u64) -> Change {
    match result {
        AttemptResult::Succeeded(message) => {
            let mut c = change(action, ActionStatus::Completed, &message, "executor", now_ms);
            c.action.outcome = Some(message);
            c.action.last_error = None;
            c.action.verification = Some(Verification::Pending(now_ms + u64::from(action.verify_window_secs) * 1000));
            c
        }
        AttemptResult::Retryable(error) => match config.retry.next_delay_ms(action.attempts, jitter) {
            Some(delay) => {
                let at = now_ms + delay;
                let reason = format!("attempt {} failed, retrying in {} ms: {error}", action.attempts, delay);
                let mut c = change(action, ActionStatus::RetryWait, &reason, "executor", now_ms);
                c.action.next_attempt_ms = Some(at);
                c.action.last_error = Some(error);
                c
            }
            None => {
                let reason = format!("attempt {} of {} failed: {error}", action.attempts, config.retry.max_attempts);
                let mut c = change(action, ActionStatus::Failed, &reason, "executor", now_ms);
                c.action.last_error = Some(error);
                c
            }
        },
        AttemptResult::Definite(error) => {
            let mut c = change(action, ActionStatus::Failed, &error, "executor", now_ms);
            c.action.last_error = Some(error);
            c
        }
    }
}

/// What became of an action found executing after a restart.
#[derive(Debug, Clone, PartialEq)]
pub enum Recovery {
    /// It took effect.
    TookEffect(String),
    /// It did not; running it again is safe.
    NotApplied(String),
    /// It cannot have succeeded.
    Failed(String),
}

/// Applies a reconciliation to an action found executing.
pub fn recover(action: &Action, recovery: Recovery, now_ms: u64) -> Change {
    match recovery {
        Recovery::TookEffect(message) => {
            let mut c = change(
                action,
                ActionStatus::Completed,
                &format!("reconciled after a restart: {message}"),
                "recovery",
                now_ms,
            );
            c.action.outcome = Some(message);
            c.action.verification = Some(Verification::Pending(now_ms + u64::from(action.verify_window_secs) * 1000));
            c
        }
        // Back to ready: it runs again only through every gate, and the attempt already made counts.
        Recovery::NotApplied(message) => change(
            action,
            ActionStatus::Ready,
            &format!("reconciled after a restart, not applied: {message}"),
            "recovery",
            now_ms,
        ),
        Recovery::Failed(message) => {
            let mut c = change(
                action,
                ActionStatus::Failed,
                &format!("reconciled after a restart: {message}"),
                "recovery",
                now_ms,
            );
            c.action.last_error = Some(message);
            c
        }
    }
}

/// Sets the verification of a completed action.
pub fn verified(action: &Action, verification: Verification) -> Action {
    let mut next = action.clone();
    next.verification = Some(verification);
    next
}

/// The actions the executor knows, with the safety switches.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// Actions by id.
    pub actions: BTreeMap<String, Action>,
    /// The safety switches.
    pub safety: Safety,
}

impl Ledger {
    /// Commits a change (after it was audited and persisted).
    pub fn commit(&mut self, action: Action) {
        self.actions.insert(action.id.clone(), action);
    }

    /// What the gates need to know about started actions.
    pub fn activity(&self) -> Activity {
        let mut activity = Activity::default();
        for action in self.actions.values() {
            if action.status == ActionStatus::Executing {
                activity.executing += 1;
            }
            activity.started.extend(action.started_ms.iter().copied());
            if let (Some(entity), Some(&last)) = (&action.entity, action.started_ms.last()) {
                let slot = activity.last_by_entity.entry(entity.clone()).or_insert(0);
                *slot = (*slot).max(last);
            }
        }
        activity
    }

    /// The next action that may start now, as its executing state; `None` when nothing may.
    /// Also returns why each waiting action waits.
    pub fn next_to_start(
        &self,
        config: &ActionsConfig,
        observation: ObservationState,
        now_ms: u64,
    ) -> (Option<Change>, Vec<(String, Hold)>) {
        let activity = self.activity();
        let mut holds = Vec::new();
        let mut waiting: Vec<&Action> = self
            .actions
            .values()
            .filter(|a| {
                matches!(a.status, ActionStatus::Ready | ActionStatus::RetryWait | ActionStatus::AwaitingApproval)
            })
            .collect();
        waiting.sort_by_key(|a| (a.created_ms, a.id.clone()));
        for action in waiting {
            let approved = !action.needs_approval || action.decision.as_ref().is_some_and(|d| d.approved);
            let not_before = match action.status {
                ActionStatus::RetryWait => action.next_attempt_ms.unwrap_or(0),
                _ => action.not_before_ms,
            };
            let gate = may_start(
                &self.safety,
                approved && action.status != ActionStatus::AwaitingApproval,
                not_before,
                action.entity.as_deref(),
                &activity,
                &config.blast_radius,
                observation,
                now_ms,
            );
            match gate {
                Ok(()) => {
                    let attempt = action.attempts + 1;
                    let mut c =
                        change(action, ActionStatus::Executing, &format!("attempt {attempt}"), "executor", now_ms);
                    c.action.attempts = attempt;
                    c.action.started_ms.push(now_ms);
                    c.action.next_attempt_ms = None;
                    return (Some(c), holds);
                }
                Err(hold) => holds.push((action.id.clone(), hold)),
            }
        }
        (None, holds)
    }

    /// The kill switch: observe mode, switch on, and every action not yet started cancelled.
    pub fn kill(&self, by: &str, reason: &str, now_ms: u64) -> (Safety, Vec<Change>) {
        let safety =
            Safety { mode: Mode::Observe, kill_switch: true, reason: reason.into(), by: by.into(), at_ms: now_ms };
        let cancelled = self
            .actions
            .values()
            .filter(|a| !a.status.is_final() && a.status != ActionStatus::Executing)
            .filter_map(|a| cancel(a, by, &format!("kill switch: {reason}"), now_ms).ok())
            .collect();
        (safety, cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn action(id: usize, risk: Risk, entity: Option<String>, now_ms: u64) -> Action {
        Action {
            id: format!("A-{id:06}"),
            plugin: "p".into(),
            name: format!("act-{}", risk.as_str()),
            params: vec![],
            risk,
            entity,
            ticket: None,
            workflow: None,
            source: "test".into(),
            proposed_by: "test".into(),
            status: ActionStatus::Ready,
            needs_approval: false,
            decision: None,
            created_ms: now_ms,
            approval_expires_ms: None,
            not_before_ms: 0,
            attempts: 0,
            next_attempt_ms: None,
            started_ms: vec![],
            last_error: None,
            outcome: None,
            verify_window_secs: 60,
            verification: None,
            history: vec![],
        }
    }

    #[derive(Debug, Clone)]
    enum Command {
        Propose(u8, u8),
        Approve(usize),
        Reject(usize),
        Cancel(usize),
        Mode(bool),
        Kill,
        Release,
        Tick(u32),
        Finish(usize, u8),
    }

    fn command() -> impl Strategy<Value = Command> {
        prop_oneof![
            (0u8..3, 0u8..3).prop_map(|(r, e)| Command::Propose(r, e)),
            (0usize..12).prop_map(Command::Approve),
            (0usize..12).prop_map(Command::Reject),
            (0usize..12).prop_map(Command::Cancel),
            any::<bool>().prop_map(Command::Mode),
            Just(Command::Kill),
            Just(Command::Release),
            (0u32..400_000).prop_map(Command::Tick),
            (0usize..12, 0u8..3).prop_map(|(i, o)| Command::Finish(i, o)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// No sequence of commands starts an action in observe mode, with the kill switch on,
        /// without a required approval, while it executes or after it completed, or past a
        /// blast-radius limit.
        #[test]
        fn no_command_sequence_breaks_the_safety_rules(commands in proptest::collection::vec(command(), 1..80)) {
            let config = ActionsConfig::default();
            let mut ledger = Ledger::default();
            let mut now = 1_000_000u64;
            let mut ids: Vec<String> = Vec::new();
            let mut completed: Vec<String> = Vec::new();
            for cmd in commands {
                match cmd {
                    Command::Propose(risk, entity) => {
                        let risk = [Risk::Low, Risk::Medium, Risk::High][risk as usize];
                        let a = action(ids.len(), risk, Some(format!("e{entity}")), now);
                        ids.push(a.id.clone());
                        ledger.commit(admit(a, &config, now).action);
                    }
                    Command::Approve(i) | Command::Reject(i) | Command::Cancel(i) if i < ids.len() => {
                        let a = ledger.actions[&ids[i]].clone();
                        let result = match cmd {
                            Command::Approve(_) => approve(&a, "alice", "ok", now),
                            Command::Reject(_) => reject(&a, "alice", "no", now),
                            _ => cancel(&a, "alice", "stop", now),
                        };
                        if let Ok(c) = result { ledger.commit(c.action); }
                    }
                    Command::Mode(execute) if !ledger.safety.kill_switch => {
                        ledger.safety.mode = if execute { Mode::Execute } else { Mode::Observe };
                    }
                    Command::Kill => {
                        let (safety, cancelled) = ledger.kill("bob", "stop", now);
                        ledger.safety = safety;
                        for c in cancelled { ledger.commit(c.action); }
                    }
                    Command::Release => ledger.safety.kill_switch = false,
                    Command::Tick(ms) => {
                        now += u64::from(ms);
                        for a in ledger.actions.clone().values() {
                            if let Some(c) = expire(a, now) { ledger.commit(c.action); }
                        }
                        let before = ledger.activity();
                        let (started, _) = ledger.next_to_start(&config, ObservationState::Good, now);
                        if let Some(c) = started {
                            let prior = &ledger.actions[&c.action.id];
                            prop_assert!(ledger.safety.allows_execution(), "started outside execute mode or under the kill switch");
                            prop_assert!(!prior.needs_approval || prior.decision.as_ref().is_some_and(|d| d.approved), "started without approval");
                            prop_assert!(matches!(prior.status, ActionStatus::Ready | ActionStatus::RetryWait), "started from {}", prior.status);
                            prop_assert!(!completed.contains(&c.action.id), "started twice");
                            prop_assert!(before.executing < config.blast_radius.max_concurrent);
                            let hour = before.started.iter().filter(|&&t| t > now.saturating_sub(3_600_000)).count();
                            prop_assert!(hour < config.blast_radius.max_per_hour);
                            if let Some(e) = &c.action.entity && let Some(last) = before.last_by_entity.get(e) {
                                prop_assert!(now >= last + config.blast_radius.entity_cooldown_secs * 1000);
                            }
                            ledger.commit(c.action);
                        }
                    }
                    Command::Finish(i, outcome) if i < ids.len() => {
                        let a = ledger.actions[&ids[i]].clone();
                        if a.status == ActionStatus::Executing {
                            let result = match outcome {
                                0 => AttemptResult::Succeeded("ok".into()),
                                1 => AttemptResult::Retryable("timeout".into()),
                                _ => AttemptResult::Definite("no".into()),
                            };
                            let c = finish(&a, result, &config, 0.5, now);
                            if c.action.status == ActionStatus::Completed { completed.push(a.id.clone()); }
                            prop_assert!(c.action.attempts <= config.retry.max_attempts);
                            ledger.commit(c.action);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn the_kill_switch_cancels_everything_not_started() {
        let config = ActionsConfig::default();
        let mut ledger = Ledger { safety: Safety { mode: Mode::Execute, ..Safety::default() }, ..Ledger::default() };
        ledger.commit(admit(action(1, Risk::Low, None, 0), &config, 0).action);
        ledger.commit(admit(action(2, Risk::High, None, 0), &config, 0).action);
        let (safety, cancelled) = ledger.kill("bob", "incident", 5);
        assert!(safety.kill_switch && safety.mode == Mode::Observe);
        assert_eq!(cancelled.len(), 2);
        assert!(cancelled.iter().all(|c| c.action.status == ActionStatus::Cancelled));
    }

    #[test]
    fn retries_follow_the_schedule_and_stop() {
        let config = ActionsConfig::default();
        let mut a = action(1, Risk::Low, None, 0);
        a.status = ActionStatus::Executing;
        a.attempts = 1;
        let c = finish(&a, AttemptResult::Retryable("503".into()), &config, 0.999, 1_000);
        assert_eq!(c.action.status, ActionStatus::RetryWait);
        assert!(c.action.next_attempt_ms.unwrap() <= 1_000 + config.retry.ceiling_ms(1));
        a.attempts = config.retry.max_attempts;
        assert_eq!(
            finish(&a, AttemptResult::Retryable("503".into()), &config, 0.5, 1_000).action.status,
            ActionStatus::Failed
        );
        a.attempts = 1;
        assert_eq!(
            finish(&a, AttemptResult::Definite("400".into()), &config, 0.5, 1_000).action.status,
            ActionStatus::Failed
        );
    }

    #[test]
    fn approval_expires() {
        let config = ActionsConfig::default();
        let a = admit(action(1, Risk::High, None, 0), &config, 0).action;
        assert_eq!(a.status, ActionStatus::AwaitingApproval);
        let late = config.approval.ttl_secs * 1000;
        assert!(approve(&a, "alice", "ok", late).unwrap_err().contains("expired"));
        assert_eq!(expire(&a, late).unwrap().action.status, ActionStatus::Expired);
        assert!(expire(&a, late - 1).is_none());
    }
}
