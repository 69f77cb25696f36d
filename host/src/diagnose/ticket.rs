//! Diagnosing a stored ticket: gathers what a diagnoser is told (the ticket, its observation at
//! open time and the latest one, the entity summary, related tickets, recent actions, the
//! catalogue), runs the engine, and keeps the record on the ticket, audited.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow};

use super::{DiagnosisEngine, DiagnosisRecord, DiagnosisRequest, PluginSubject, RecentAction, RelatedTicket};
use crate::actions::ledger::Action;
use crate::audit::{AuditEvent, AuditSink};
use crate::monitor::tickets::{SnapshotKind, Ticket, TicketStore};
use crate::runtime::bindings::types;
use crate::runtime::{CallContext, Plugin};

/// A stored ticket as the plugin's WIT record.
pub fn wit_ticket(ticket: &Ticket) -> types::Ticket {
    types::Ticket {
        id: ticket.id.clone(),
        invariant: ticket.invariant.clone(),
        entity: ticket.entity.clone(),
        severity: match ticket.severity.as_str() {
            "critical" => types::Severity::Critical,
            "info" => types::Severity::Info,
            _ => types::Severity::Warning,
        },
        message: ticket.message.clone(),
        evidence: ticket
            .evidence
            .iter()
            .map(|e| types::Evidence { label: e.label.clone(), value: e.value.clone() })
            .collect(),
        opened_at_ms: ticket.opened_at_ms,
        last_seen_ms: ticket.last_seen_ms,
        occurrences: ticket.occurrences,
    }
}

/// Diagnoses ticket `id` and appends the record to it. `actions` are the recent actions to
/// mention (newest first).
pub async fn diagnose_ticket(
    engine: &DiagnosisEngine,
    subject: &Plugin,
    tickets: &TicketStore,
    actions: &[Action],
    sink: &AuditSink,
    id: &str,
) -> Result<DiagnosisRecord> {
    let ticket = tickets.require(id)?;
    let latest = tickets
        .snapshot(id, SnapshotKind::Latest)?
        .ok_or_else(|| anyhow!("ticket {id} has no observation to diagnose from"))?;
    let plugin = subject.as_subject().ok_or_else(|| anyhow!("plugin {} is not a subject plugin", subject.name()))?;
    let context = CallContext { ticket: Some(id.to_owned()) };
    let info = plugin.info(&context).await?;
    let observation: types::Observation = latest.into();
    let mut request = DiagnosisRequest::new(&info, wit_ticket(&ticket), observation.clone());
    request.observation_at_open = tickets.snapshot(id, SnapshotKind::AtOpen)?.map(Into::into);
    request.entities = plugin.summarize(&context, &observation).await.unwrap_or_default();
    let limit = engine.config().max_related_tickets;
    request.related_tickets = tickets
        .list(None)?
        .into_iter()
        .filter(|t| t.id != ticket.id && (t.invariant == ticket.invariant || t.entity == ticket.entity))
        .take(limit)
        .map(|t| RelatedTicket {
            diagnosis_summary: t
                .diagnoses
                .last()
                .and_then(|d| d.pointer("/diagnosis/summary").and_then(|s| s.as_str()).map(str::to_owned)),
            state: t.status.as_str().into(),
            ticket: wit_ticket(&t),
        })
        .collect();
    request.recent_actions = actions
        .iter()
        .take(engine.config().max_recent_actions)
        .map(|a| RecentAction {
            action: a.name.clone(),
            params: a.params.iter().map(|p| (p.name.clone(), p.value.clone())).collect::<BTreeMap<_, _>>(),
            state: a.status.as_str().into(),
            outcome: a.outcome.clone().or_else(|| a.last_error.clone()).unwrap_or_default(),
            ticket: a.ticket.clone(),
            at_ms: a.history.last().map_or(a.created_ms, |h| h.at_ms),
        })
        .collect();
    let runner = PluginSubject::new(plugin, context);
    let started = std::time::Instant::now();
    let record = engine.diagnose(&request, &runner, &runner).await?;
    let mut value = serde_json::to_value(&record)?;
    value["latency_ms"] = serde_json::json!(started.elapsed().as_millis() as u64);
    let mut ticket = tickets.require(id)?;
    ticket.diagnoses.push(value);
    sink.record_durable(AuditEvent::note(format!(
        "ticket {id} diagnosed by {}{}: {} ({} recommendation(s), {} dropped{})",
        record.diagnoser.as_str(),
        record.model.as_deref().map(|m| format!(" ({m})")).unwrap_or_default(),
        record.diagnosis.summary,
        record.diagnosis.recommendations.len(),
        record.dropped_recommendations.len(),
        record.fallback.as_deref().map(|f| format!("; the model failed: {f}")).unwrap_or_default()
    )))
    .await?;
    tickets.save(&ticket)?;
    Ok(record)
}
