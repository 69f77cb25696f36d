//! The monitor: every interval it asks the subject plugin to `observe` and `check`, and turns
//! violations into tickets.
//!
//! Per violation key (`invariant@entity`):
//!
//! | situation | what happens |
//! |---|---|
//! | first seen | remembered as pending; a ticket opens once it has persisted for the invariant's grace period |
//! | seen again with a ticket open or held | the ticket is updated: occurrences, last seen, latest message, evidence and observation |
//! | seen again within `reopen_window_secs` of its ticket resolving | that ticket re-opens (no new ticket) |
//! | absent from a **complete** observation | the settling clock starts; after `settle_secs` the ticket resolves |
//! | absent from a partial or failed observation | nothing: absence that was not observed proves nothing |
//! | ticket held | never resolves by itself |
//!
//! Nothing here knows which subject it watches. State changes are audited before they are written.

pub mod tickets;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::audit::{AuditSink, now_ms};
use crate::runtime::bindings::types::{Observation, Severity, Violation};
use crate::runtime::{CallContext, Plugin};
use tickets::{
    EvidenceItem, SnapshotKind, Ticket, TicketStatus, TicketStore, apply_transition, state_change, violation_key,
};

/// The monitor's settings (`[monitor]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Time between cycles, ms.
    pub interval_ms: u64,
    /// How long a violation must be absent from complete observations before its ticket resolves.
    pub settle_secs: u64,
    /// A violation that returns within this time after its ticket resolved re-opens that ticket.
    pub reopen_window_secs: u64,
    /// An observation older than this is stale: actions wait for a fresh one.
    pub stale_after_ms: u64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig { interval_ms: 2_000, settle_secs: 30, reopen_window_secs: 600, stale_after_ms: 30_000 }
    }
}

impl MonitorConfig {
    /// Every problem with the settings, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !(100..=3_600_000).contains(&self.interval_ms) {
            out.push(format!("monitor.interval_ms = {} must be 100–3600000", self.interval_ms));
        }
        if self.settle_secs > 86_400 {
            out.push(format!("monitor.settle_secs = {} must be at most 86400", self.settle_secs));
        }
        if self.reopen_window_secs > 7 * 86_400 {
            out.push(format!("monitor.reopen_window_secs = {} must be at most 604800", self.reopen_window_secs));
        }
        if self.stale_after_ms < self.interval_ms {
            out.push(format!(
                "monitor.stale_after_ms = {} must be at least monitor.interval_ms ({})",
                self.stale_after_ms, self.interval_ms
            ));
        }
        out
    }
}

/// Something the rest of the daemon may want to react to.
#[derive(Debug, Clone, PartialEq)]
pub enum MonitorEvent {
    /// A ticket opened.
    Opened(String),
    /// A resolved ticket re-opened.
    Reopened(String),
    /// A ticket resolved by itself.
    Resolved(String),
}

/// The latest observation, shared with the action engine (which acts only on a fresh, complete one).
#[derive(Debug, Clone)]
pub struct LatestObservation {
    /// The observation.
    pub observation: Observation,
    /// When the monitor received it, unix ms.
    pub at_ms: u64,
    /// The violations it showed.
    pub violations: Vec<Violation>,
}

/// Shared view of the latest observation.
pub type SharedObservation = Arc<RwLock<Option<LatestObservation>>>;

/// What one cycle did.
#[derive(Debug, Default, Clone)]
pub struct CycleReport {
    /// Whether an observation came back.
    pub observed: bool,
    /// Whether it was complete.
    pub complete: bool,
    /// Why observing failed, or what was missing.
    pub errors: Vec<String>,
    /// Violations found.
    pub violations: usize,
    /// Tickets opened.
    pub opened: Vec<String>,
    /// Tickets re-opened.
    pub reopened: Vec<String>,
    /// Tickets updated.
    pub updated: Vec<String>,
    /// Tickets resolved.
    pub resolved: Vec<String>,
}

/// The monitor of one subject plugin.
pub struct Monitor {
    plugin: Arc<Plugin>,
    tickets: TicketStore,
    sink: AuditSink,
    config: MonitorConfig,
    /// Grace period of each invariant, ms.
    grace_ms: BTreeMap<String, u64>,
    pending: HashMap<String, u64>,
    latest: SharedObservation,
    events: broadcast::Sender<MonitorEvent>,
    on_cycle: Option<CycleObserver>,
}

/// Called after every cycle with its report and duration (e.g. to feed metrics).
pub type CycleObserver = Arc<dyn Fn(&CycleReport, Duration) + Send + Sync>;

fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

fn evidence(violation: &Violation) -> Vec<EvidenceItem> {
    violation.evidence.iter().map(|e| EvidenceItem { label: e.label.clone(), value: e.value.clone() }).collect()
}

const ACTOR: &str = "monitor";

impl Monitor {
    /// A monitor for a subject plugin; reads the invariants' grace periods from its `info`.
    pub async fn new(
        plugin: Arc<Plugin>,
        tickets: TicketStore,
        sink: AuditSink,
        config: MonitorConfig,
    ) -> Result<Monitor> {
        let subject = plugin.as_subject().ok_or_else(|| {
            anyhow::anyhow!("plugin {} is not a subject plugin; it cannot be monitored", plugin.name())
        })?;
        let info = subject.info(&CallContext::default()).await?;
        let grace_ms = info.invariants.iter().map(|i| (i.name.clone(), u64::from(i.grace_secs) * 1000)).collect();
        let (events, _) = broadcast::channel(256);
        Ok(Monitor {
            plugin,
            tickets,
            sink,
            config,
            grace_ms,
            pending: HashMap::new(),
            latest: Arc::new(RwLock::new(None)),
            events,
            on_cycle: None,
        })
    }

    /// Events as tickets open, re-open and resolve.
    pub fn subscribe(&self) -> broadcast::Receiver<MonitorEvent> {
        self.events.subscribe()
    }

    /// The latest observation, shared.
    pub fn latest(&self) -> SharedObservation {
        self.latest.clone()
    }

    /// Calls `observer` after every cycle of [`Monitor::run`].
    pub fn on_cycle(&mut self, observer: CycleObserver) {
        self.on_cycle = Some(observer);
    }

    /// Divides every invariant's grace period by `divisor` (values below 1 count as 1): grace
    /// periods are meant in the subject's time, and a simulated subject that runs `divisor` times
    /// faster than the wall clock lives through them that much sooner.
    pub fn divide_grace(&mut self, divisor: f64) {
        let divisor = if divisor.is_finite() { divisor.max(1.0) } else { 1.0 };
        for grace in self.grace_ms.values_mut() {
            *grace = (*grace as f64 / divisor).round() as u64;
        }
    }

    /// The grace period of `invariant`, ms (0 for an invariant the plugin did not declare).
    pub fn grace_ms(&self, invariant: &str) -> u64 {
        self.grace_ms.get(invariant).copied().unwrap_or(0)
    }

    /// The settings.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// Runs cycles every interval until `shutdown` fires.
    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut interval = tokio::time::interval(Duration::from_millis(self.config.interval_ms));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {
                    let started = std::time::Instant::now();
                    let report = self.cycle(now_ms()).await;
                    if let Some(observer) = &self.on_cycle {
                        observer(&report, started.elapsed());
                    }
                    if !report.errors.is_empty() {
                        tracing::warn!(errors = ?report.errors, "observation incomplete");
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
    }

    /// One cycle at time `now_ms` (unix ms; tests pass their own clock).
    pub async fn cycle(&mut self, now_ms: u64) -> CycleReport {
        let mut report = CycleReport::default();
        let Some(subject) = self.plugin.as_subject() else { return report };
        let context = CallContext::default();
        let observation = match subject.observe(&context).await {
            Ok(Ok(observation)) => observation,
            Ok(Err(message)) => {
                report.errors.push(format!("observe failed: {message}"));
                return report;
            }
            Err(call) => {
                report.errors.push(format!("observe failed: {call}"));
                return report;
            }
        };
        report.observed = true;
        report.complete = observation.complete;
        report.errors.extend(observation.errors.iter().cloned());
        let violations = match subject.check(&context, &observation).await {
            Ok(violations) => violations,
            Err(call) => {
                report.errors.push(format!("check failed: {call}"));
                // Without a check nothing is known: treat like a failed observation.
                report.complete = false;
                return report;
            }
        };
        report.violations = violations.len();
        if let Err(e) = self.apply(now_ms, &observation, &violations, &mut report).await {
            report.errors.push(format!("tickets not updated: {e:#}"));
        }
        if let Ok(mut latest) = self.latest.write() {
            *latest = Some(LatestObservation { observation, at_ms: now_ms, violations });
        }
        report
    }

    async fn apply(
        &mut self,
        now_ms: u64,
        observation: &Observation,
        violations: &[Violation],
        report: &mut CycleReport,
    ) -> Result<()> {
        let active: HashMap<String, Ticket> = self.tickets.active()?.into_iter().map(|t| (t.key(), t)).collect();
        let mut changed: BTreeMap<String, Ticket> = BTreeMap::new();
        let mut snapshots: Vec<(String, SnapshotKind)> = Vec::new();
        let mut seen_keys = Vec::new();

        for violation in violations {
            let key = violation_key(&violation.invariant, &violation.entity);
            if seen_keys.contains(&key) {
                continue;
            }
            seen_keys.push(key.clone());
            if let Some(ticket) = active.get(&key) {
                let mut ticket = ticket.clone();
                update_from(&mut ticket, violation, now_ms);
                report.updated.push(ticket.id.clone());
                snapshots.push((ticket.id.clone(), SnapshotKind::Latest));
                changed.insert(ticket.id.clone(), ticket);
                continue;
            }
            let first_seen = *self.pending.entry(key.clone()).or_insert(now_ms);
            let grace_ms = self.grace_ms.get(&violation.invariant).copied().unwrap_or(0);
            if now_ms.saturating_sub(first_seen) < grace_ms {
                continue;
            }
            self.pending.remove(&key);
            let recent = self.tickets.newest_for_key(&key)?.filter(|t| {
                t.status == TicketStatus::Resolved
                    && t.resolved_at_ms
                        .is_some_and(|at| now_ms.saturating_sub(at) <= self.config.reopen_window_secs * 1000)
            });
            if let Some(mut ticket) = recent {
                let reason = format!("the violation returned: {}", violation.message);
                self.sink
                    .record_durable(state_change(&ticket.id, Some(ticket.status), TicketStatus::Open, &reason, ACTOR))
                    .await?;
                apply_transition(&mut ticket, TicketStatus::Open, &reason, ACTOR, now_ms);
                update_from(&mut ticket, violation, now_ms);
                report.reopened.push(ticket.id.clone());
                snapshots.push((ticket.id.clone(), SnapshotKind::Latest));
                changed.insert(ticket.id.clone(), ticket);
                continue;
            }
            let id = self.tickets.next_id()?;
            let ticket = Ticket {
                id: id.clone(),
                plugin: self.plugin.name().to_owned(),
                invariant: violation.invariant.clone(),
                entity: violation.entity.clone(),
                severity: severity_name(violation.severity).into(),
                status: TicketStatus::Open,
                message: violation.message.clone(),
                evidence: evidence(violation),
                first_seen_ms: first_seen,
                opened_at_ms: now_ms,
                last_seen_ms: now_ms,
                occurrences: 1,
                absent_since_ms: None,
                resolved_at_ms: None,
                resolution: None,
                reopened: 0,
                diagnoses: vec![],
                actions: vec![],
                history: vec![tickets::TicketEvent {
                    at_ms: now_ms,
                    from: None,
                    to: TicketStatus::Open,
                    reason: violation.message.clone(),
                    actor: ACTOR.into(),
                }],
            };
            self.sink.record_durable(state_change(&id, None, TicketStatus::Open, &violation.message, ACTOR)).await?;
            report.opened.push(id.clone());
            snapshots.push((id.clone(), SnapshotKind::AtOpen));
            snapshots.push((id.clone(), SnapshotKind::Latest));
            changed.insert(id, ticket);
        }

        if observation.complete {
            // Pending violations that disappeared start over if they come back.
            self.pending.retain(|key, _| seen_keys.contains(key));
            for (key, ticket) in &active {
                if seen_keys.contains(key) {
                    continue;
                }
                let mut ticket = ticket.clone();
                let absent_since = *ticket.absent_since_ms.get_or_insert(now_ms);
                let settled = now_ms.saturating_sub(absent_since) >= self.config.settle_secs * 1000;
                if ticket.status == TicketStatus::Open && settled {
                    let reason = format!(
                        "the violation has been absent from complete observations for {} s",
                        now_ms.saturating_sub(absent_since) / 1000
                    );
                    self.sink
                        .record_durable(state_change(
                            &ticket.id,
                            Some(ticket.status),
                            TicketStatus::Resolved,
                            &reason,
                            ACTOR,
                        ))
                        .await?;
                    apply_transition(&mut ticket, TicketStatus::Resolved, &reason, ACTOR, now_ms);
                    report.resolved.push(ticket.id.clone());
                }
                changed.insert(ticket.id.clone(), ticket);
            }
        } else {
            // Absence in a partial observation proves nothing: every settling clock restarts.
            for (key, ticket) in &active {
                if !seen_keys.contains(key) && ticket.absent_since_ms.is_some() {
                    let mut ticket = ticket.clone();
                    ticket.absent_since_ms = None;
                    changed.insert(ticket.id.clone(), ticket);
                }
            }
        }

        let payload = serde_json::to_string(&tickets::StoredObservation::from(observation))?;
        let snapshot_refs: Vec<(String, SnapshotKind, &str)> =
            snapshots.into_iter().map(|(id, kind)| (id, kind, payload.as_str())).collect();
        let tickets: Vec<&Ticket> = changed.values().collect();
        self.tickets.save_cycle(&tickets, &snapshot_refs)?;
        for id in &report.opened {
            let _ = self.events.send(MonitorEvent::Opened(id.clone()));
        }
        for id in &report.reopened {
            let _ = self.events.send(MonitorEvent::Reopened(id.clone()));
        }
        for id in &report.resolved {
            let _ = self.events.send(MonitorEvent::Resolved(id.clone()));
        }
        Ok(())
    }
}

fn update_from(ticket: &mut Ticket, violation: &Violation, now_ms: u64) {
    ticket.last_seen_ms = now_ms;
    ticket.occurrences = ticket.occurrences.saturating_add(1);
    ticket.message = violation.message.clone();
    ticket.evidence = evidence(violation);
    ticket.severity = severity_name(violation.severity).into();
    ticket.absent_since_ms = None;
}
