//! The execution policy, as pure code: safety mode and kill switch, approval by risk, blast-radius
//! limits and the retry schedule. No I/O, no clock: callers pass the time in.
//!
//! | setting (`[actions]`) | default | meaning |
//! |---|---|---|
//! | `approval.low` | `auto` | low-risk actions run without approval (in execute mode) |
//! | `approval.medium` | `required` | |
//! | `approval.high` | `required` | |
//! | `approval.overrides` | `{}` | per action name: `auto` or `required` |
//! | `approval.ttl_secs` | 3600 | an approval request expires after this |
//! | `max_concurrent` | 1 | actions executing at once |
//! | `max_per_hour` | 10 | actions started in any 60 minutes |
//! | `entity_cooldown_secs` | 300 | quiet time after an action on the same entity |
//! | `retry.max_attempts` | 4 | attempts of a retryable failure, the first included |
//! | `retry.base_ms` / `retry.max_ms` | 2000 / 120000 | exponential backoff with full jitter |
//!
//! Fail closed: anything not explicitly allowed waits. The mode defaults to `observe`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Whether actions may run at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Nothing executes; proposals are still made and shown.
    #[default]
    Observe,
    /// Actions execute once their gates pass.
    Execute,
}

impl Mode {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Observe => "observe",
            Mode::Execute => "execute",
        }
    }
}

/// The persisted safety switches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Safety {
    /// Observe or execute.
    pub mode: Mode,
    /// The kill switch: when on, nothing executes and the mode is observe.
    pub kill_switch: bool,
    /// Why the switches are as they are.
    pub reason: String,
    /// Who set them.
    pub by: String,
    /// When, unix ms.
    pub at_ms: u64,
}

impl Safety {
    /// Whether anything may execute.
    pub fn allows_execution(&self) -> bool {
        self.mode == Mode::Execute && !self.kill_switch
    }
}

/// How a risk level or action is approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalRule {
    /// Runs without a human (in execute mode).
    Auto,
    /// Waits for a human.
    Required,
}

/// Risk of an action (mirrors the plugin's `risk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Risk {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
}

impl Risk {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }
}

/// The approval policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApprovalPolicy {
    /// Low-risk actions.
    pub low: ApprovalRule,
    /// Medium-risk actions.
    pub medium: ApprovalRule,
    /// High-risk actions.
    pub high: ApprovalRule,
    /// Per action name.
    pub overrides: BTreeMap<String, ApprovalRule>,
    /// Seconds an approval request stays open.
    pub ttl_secs: u64,
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        ApprovalPolicy {
            low: ApprovalRule::Auto,
            medium: ApprovalRule::Required,
            high: ApprovalRule::Required,
            overrides: BTreeMap::new(),
            ttl_secs: 3600,
        }
    }
}

impl ApprovalPolicy {
    /// Whether an action needs a human's approval.
    pub fn needs_approval(&self, action: &str, risk: Risk) -> bool {
        let rule = self.overrides.get(action).copied().unwrap_or(match risk {
            Risk::Low => self.low,
            Risk::Medium => self.medium,
            Risk::High => self.high,
        });
        rule == ApprovalRule::Required
    }
}

/// The retry schedule for retryable failures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The first backoff's ceiling, ms.
    pub base_ms: u64,
    /// The largest backoff ceiling, ms.
    pub max_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 4, base_ms: 2_000, max_ms: 120_000 }
    }
}

impl RetryPolicy {
    /// The ceiling of the backoff after attempt `attempt` (1-based): `min(max, base·2^(attempt-1))`.
    pub fn ceiling_ms(&self, attempt: u32) -> u64 {
        let exp = attempt.saturating_sub(1).min(40);
        self.base_ms.saturating_mul(1u64 << exp).min(self.max_ms)
    }

    /// The delay before the next attempt with full jitter: `unit` in [0, 1) picks a point in
    /// [0, ceiling]. `None` when the attempts are used up.
    pub fn next_delay_ms(&self, attempts_made: u32, unit: f64) -> Option<u64> {
        if attempts_made >= self.max_attempts {
            return None;
        }
        let unit = if unit.is_finite() { unit.clamp(0.0, 1.0) } else { 0.0 };
        Some((self.ceiling_ms(attempts_made) as f64 * unit).round() as u64)
    }
}

/// The blast-radius limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlastRadius {
    /// Actions executing at once.
    pub max_concurrent: usize,
    /// Actions started in any 60 minutes.
    pub max_per_hour: usize,
    /// Seconds between two actions on the same entity.
    pub entity_cooldown_secs: u64,
}

impl Default for BlastRadius {
    fn default() -> Self {
        BlastRadius { max_concurrent: 1, max_per_hour: 10, entity_cooldown_secs: 300 }
    }
}

/// The whole `[actions]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionsConfig {
    /// Approval policy.
    pub approval: ApprovalPolicy,
    /// Retry schedule.
    pub retry: RetryPolicy,
    /// Blast-radius limits.
    #[serde(flatten)]
    pub blast_radius: BlastRadius,
    /// How often the executor looks for work, ms.
    pub tick_ms: u64,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        ActionsConfig {
            approval: ApprovalPolicy::default(),
            retry: RetryPolicy::default(),
            blast_radius: BlastRadius::default(),
            tick_ms: 1_000,
        }
    }
}

impl ActionsConfig {
    /// Every problem with the settings.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.retry.max_attempts == 0 || self.retry.max_attempts > 20 {
            out.push(format!("actions.retry.max_attempts = {} must be 1–20", self.retry.max_attempts));
        }
        if self.retry.base_ms == 0 || self.retry.base_ms > self.retry.max_ms {
            out.push(format!(
                "actions.retry.base_ms = {} must be at least 1 and at most actions.retry.max_ms ({})",
                self.retry.base_ms, self.retry.max_ms
            ));
        }
        if self.blast_radius.max_concurrent == 0 {
            out.push("actions.max_concurrent must be at least 1".into());
        }
        if self.approval.ttl_secs == 0 {
            out.push("actions.approval.ttl_secs must be at least 1".into());
        }
        if !(50..=60_000).contains(&self.tick_ms) {
            out.push(format!("actions.tick_ms = {} must be 50–60000", self.tick_ms));
        }
        out
    }
}

/// Why an action may not start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// Observe mode.
    ObserveMode,
    /// The kill switch is on.
    KillSwitch,
    /// Waiting for a human.
    AwaitingApproval,
    /// Too many actions running.
    Concurrency(usize),
    /// Too many actions this hour.
    HourlyLimit(usize),
    /// The entity was acted on recently; until when (unix ms).
    Cooldown(u64),
    /// The latest observation is missing, partial or stale.
    Observation(String),
    /// Scheduled for later (unix ms).
    NotYet(u64),
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hold::ObserveMode => {
                write!(f, "observe mode: nothing executes (`operator-host safety mode execute` to allow)")
            }
            Hold::KillSwitch => write!(f, "the kill switch is on (`operator-host safety release` to lift it)"),
            Hold::AwaitingApproval => write!(f, "awaiting approval"),
            Hold::Concurrency(n) => write!(f, "{n} action(s) already executing (max_concurrent)"),
            Hold::HourlyLimit(n) => write!(f, "{n} actions started in the last hour (max_per_hour)"),
            Hold::Cooldown(until) => write!(f, "the entity is cooling down until {until} (entity_cooldown_secs)"),
            Hold::Observation(why) => write!(f, "{why}"),
            Hold::NotYet(at) => write!(f, "scheduled for {at}"),
        }
    }
}

/// What the gates know about the actions already started.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    /// Actions executing now.
    pub executing: usize,
    /// Start times (unix ms) of recent actions.
    pub started: Vec<u64>,
    /// Last start (unix ms) per entity.
    pub last_by_entity: BTreeMap<String, u64>,
}

/// The state of the latest observation, for the "no action on a partial or stale view" rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObservationState {
    /// Fresh and complete.
    Good,
    /// None yet.
    Missing,
    /// Partial.
    Partial,
    /// Older than allowed.
    Stale,
}

/// Everything an action must pass to start now. The order matters only for the reason reported:
/// the safety switches first, then approval, the schedule, the observation and the limits.
#[allow(clippy::too_many_arguments)]
pub fn may_start(
    safety: &Safety,
    approved: bool,
    not_before_ms: u64,
    entity: Option<&str>,
    activity: &Activity,
    limits: &BlastRadius,
    observation: ObservationState,
    now_ms: u64,
) -> Result<(), Hold> {
    if safety.kill_switch {
        return Err(Hold::KillSwitch);
    }
    if safety.mode != Mode::Execute {
        return Err(Hold::ObserveMode);
    }
    if !approved {
        return Err(Hold::AwaitingApproval);
    }
    if now_ms < not_before_ms {
        return Err(Hold::NotYet(not_before_ms));
    }
    match observation {
        ObservationState::Good => {}
        ObservationState::Missing => return Err(Hold::Observation("no observation of the subject yet".into())),
        ObservationState::Partial => {
            return Err(Hold::Observation(
                "the latest observation is partial: acting on a partial view is unsafe".into(),
            ));
        }
        ObservationState::Stale => return Err(Hold::Observation("the latest observation is stale".into())),
    }
    if activity.executing >= limits.max_concurrent {
        return Err(Hold::Concurrency(activity.executing));
    }
    let hour_ago = now_ms.saturating_sub(3_600_000);
    let last_hour = activity.started.iter().filter(|&&t| t > hour_ago).count();
    if last_hour >= limits.max_per_hour {
        return Err(Hold::HourlyLimit(last_hour));
    }
    if let Some(entity) = entity
        && let Some(&last) = activity.last_by_entity.get(entity)
    {
        let until = last + limits.entity_cooldown_secs * 1000;
        if now_ms < until {
            return Err(Hold::Cooldown(until));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn open() -> Safety {
        Safety { mode: Mode::Execute, ..Safety::default() }
    }

    #[test]
    fn approval_follows_risk_and_overrides() {
        let mut policy = ApprovalPolicy::default();
        assert!(!policy.needs_approval("transfer-leader", Risk::Low));
        assert!(policy.needs_approval("evict-leaders", Risk::Medium));
        assert!(policy.needs_approval("offline-store", Risk::High));
        policy.overrides.insert("transfer-leader".into(), ApprovalRule::Required);
        policy.overrides.insert("evict-leaders".into(), ApprovalRule::Auto);
        assert!(policy.needs_approval("transfer-leader", Risk::Low));
        assert!(!policy.needs_approval("evict-leaders", Risk::Medium));
    }

    #[test]
    fn the_gates_in_order() {
        let limits = BlastRadius::default();
        let idle = Activity::default();
        let good = ObservationState::Good;
        let killed = Safety { kill_switch: true, ..open() };
        assert_eq!(may_start(&killed, true, 0, None, &idle, &limits, good, 10), Err(Hold::KillSwitch));
        assert_eq!(may_start(&Safety::default(), true, 0, None, &idle, &limits, good, 10), Err(Hold::ObserveMode));
        assert_eq!(may_start(&open(), false, 0, None, &idle, &limits, good, 10), Err(Hold::AwaitingApproval));
        assert_eq!(may_start(&open(), true, 20, None, &idle, &limits, good, 10), Err(Hold::NotYet(20)));
        assert!(matches!(
            may_start(&open(), true, 0, None, &idle, &limits, ObservationState::Partial, 10),
            Err(Hold::Observation(_))
        ));
        let busy = Activity { executing: 1, ..Activity::default() };
        assert_eq!(may_start(&open(), true, 0, None, &busy, &limits, good, 10), Err(Hold::Concurrency(1)));
        let hot = Activity { started: vec![1_000; 10], ..Activity::default() };
        assert_eq!(may_start(&open(), true, 0, None, &hot, &limits, good, 2_000), Err(Hold::HourlyLimit(10)));
        assert_eq!(may_start(&open(), true, 0, None, &hot, &limits, good, 3_700_000), Ok(()));
        let cooling = Activity { last_by_entity: [("store-1".to_owned(), 1_000)].into(), ..Activity::default() };
        assert_eq!(
            may_start(&open(), true, 0, Some("store-1"), &cooling, &limits, good, 2_000),
            Err(Hold::Cooldown(301_000))
        );
        assert_eq!(may_start(&open(), true, 0, Some("store-2"), &cooling, &limits, good, 2_000), Ok(()));
    }

    proptest! {
        #[test]
        fn backoff_stays_within_its_ceiling(attempt in 1u32..30, unit in 0.0f64..1.0, base in 1u64..10_000, extra in 0u64..1_000_000) {
            let policy = RetryPolicy { max_attempts: 30, base_ms: base, max_ms: base + extra };
            let delay = policy.next_delay_ms(attempt, unit).unwrap();
            prop_assert!(delay <= policy.ceiling_ms(attempt));
            prop_assert!(policy.ceiling_ms(attempt) <= policy.max_ms);
            prop_assert!(policy.ceiling_ms(attempt) >= policy.ceiling_ms(attempt.saturating_sub(1).max(1)));
        }

        #[test]
        fn attempts_are_bounded(max in 1u32..10, made in 0u32..20) {
            let policy = RetryPolicy { max_attempts: max, ..RetryPolicy::default() };
            prop_assert_eq!(policy.next_delay_ms(made, 0.5).is_some(), made < max);
        }
    }
}
