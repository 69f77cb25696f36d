//! Tickets: one per problem (a violation key, `invariant@entity`), persisted in redb with their
//! history, the observation at open time and the latest one.
//!
//! | table | key | value |
//! |---|---|---|
//! | `tickets` | ticket id (`T-000012`) | the ticket as JSON |
//! | `ticket_keys` | violation key | id of the newest ticket for that key |
//! | `ticket_snapshots` | `<id>/open`, `<id>/latest` | observation JSON |
//! | `meta` | `ticket_seq` | the last ticket number handed out |
//!
//! Every state change is recorded in the audit log before it is written here (the monitor and the
//! CLI do both through [`TicketStore::transition`]).

use std::fmt;

use anyhow::{Context, Result, bail};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, AuditSink};
use crate::runtime::bindings::types::Observation;
use crate::store::{META, Store};

/// Tickets by id.
pub const TICKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("tickets");
/// The newest ticket id for each violation key.
pub const TICKET_KEYS: TableDefinition<&str, &str> = TableDefinition::new("ticket_keys");
/// Observation payloads kept with tickets.
pub const TICKET_SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("ticket_snapshots");
/// The key in `meta` holding the last ticket number.
const TICKET_SEQ: &str = "ticket_seq";

/// Where a ticket stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TicketStatus {
    /// The problem is present (or has not been absent long enough).
    Open,
    /// A human put it on hold: it neither resolves by itself nor drives automatic actions.
    Held,
    /// Over.
    Resolved,
}

impl TicketStatus {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Open => "open",
            TicketStatus::Held => "held",
            TicketStatus::Resolved => "resolved",
        }
    }

    /// Parses `open`, `held` or `resolved`.
    pub fn parse(text: &str) -> Result<TicketStatus, String> {
        match text {
            "open" => Ok(TicketStatus::Open),
            "held" => Ok(TicketStatus::Held),
            "resolved" => Ok(TicketStatus::Resolved),
            other => Err(format!("unknown ticket status `{other}` (open, held or resolved)")),
        }
    }
}

impl fmt::Display for TicketStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A piece of evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceItem {
    /// What it is.
    pub label: String,
    /// Its value.
    pub value: String,
}

/// One entry of a ticket's history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TicketEvent {
    /// Unix ms.
    pub at_ms: u64,
    /// The status before (none when opened).
    pub from: Option<TicketStatus>,
    /// The status after.
    pub to: TicketStatus,
    /// Why.
    pub reason: String,
    /// Who.
    pub actor: String,
}

/// A ticket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ticket {
    /// `T-000012`.
    pub id: String,
    /// The subject plugin that raised it.
    pub plugin: String,
    /// The invariant.
    pub invariant: String,
    /// The entity.
    pub entity: String,
    /// `info`, `warning` or `critical` (the latest violation's).
    pub severity: String,
    /// Where it stands.
    pub status: TicketStatus,
    /// The latest violation message.
    pub message: String,
    /// The latest violation evidence.
    pub evidence: Vec<EvidenceItem>,
    /// When the violation was first seen (before the grace period), unix ms.
    pub first_seen_ms: u64,
    /// When the ticket opened.
    pub opened_at_ms: u64,
    /// When the violation was last seen.
    pub last_seen_ms: u64,
    /// Observations that showed the violation.
    pub occurrences: u32,
    /// Since when the violation has been absent from complete observations.
    pub absent_since_ms: Option<u64>,
    /// When it was resolved.
    pub resolved_at_ms: Option<u64>,
    /// Why it was resolved.
    pub resolution: Option<String>,
    /// How often it re-opened.
    pub reopened: u32,
    /// Diagnoses, oldest first (the diagnosis engine's records as JSON).
    pub diagnoses: Vec<serde_json::Value>,
    /// Actions proposed for it, by id.
    pub actions: Vec<String>,
    /// Status history.
    pub history: Vec<TicketEvent>,
}

impl Ticket {
    /// The deduplication key, `invariant@entity`.
    pub fn key(&self) -> String {
        violation_key(&self.invariant, &self.entity)
    }

    /// Whether it is still to be dealt with.
    pub fn is_active(&self) -> bool {
        self.status != TicketStatus::Resolved
    }
}

/// The deduplication key of a violation.
pub fn violation_key(invariant: &str, entity: &str) -> String {
    format!("{invariant}@{entity}")
}

/// An observation as stored with a ticket (the WIT record in serde form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredObservation {
    /// Unix ms when it was taken.
    pub taken_at_ms: u64,
    /// Whether it was complete.
    pub complete: bool,
    /// What could not be observed.
    pub errors: Vec<String>,
    /// The plugin's payload.
    pub payload: String,
}

impl From<&Observation> for StoredObservation {
    fn from(o: &Observation) -> Self {
        StoredObservation {
            taken_at_ms: o.taken_at_ms,
            complete: o.complete,
            errors: o.errors.clone(),
            payload: o.payload.clone(),
        }
    }
}

impl From<StoredObservation> for Observation {
    fn from(o: StoredObservation) -> Self {
        Observation { taken_at_ms: o.taken_at_ms, complete: o.complete, errors: o.errors, payload: o.payload }
    }
}

/// Which observation snapshot of a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    /// The observation when the ticket opened.
    AtOpen,
    /// The latest observation that showed the violation.
    Latest,
}

impl SnapshotKind {
    fn key(self, id: &str) -> String {
        match self {
            SnapshotKind::AtOpen => format!("{id}/open"),
            SnapshotKind::Latest => format!("{id}/latest"),
        }
    }
}

/// The ticket tables.
#[derive(Clone)]
pub struct TicketStore {
    store: Store,
}

/// Creates the ticket tables (a schema step).
pub fn create_tables(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(TICKETS)?;
    txn.open_table(TICKET_KEYS)?;
    txn.open_table(TICKET_SNAPSHOTS)?;
    Ok(())
}

impl TicketStore {
    /// The tickets of a store.
    pub fn new(store: Store) -> TicketStore {
        TicketStore { store }
    }

    /// One ticket.
    pub fn get(&self, id: &str) -> Result<Option<Ticket>> {
        let txn = self.store.db().begin_read()?;
        let table = txn.open_table(TICKETS)?;
        match table.get(id)? {
            Some(value) => Ok(Some(serde_json::from_slice(value.value()).context("reading a ticket")?)),
            None => Ok(None),
        }
    }

    /// A ticket or an error that says how to find one.
    pub fn require(&self, id: &str) -> Result<Ticket> {
        match self.get(id)? {
            Some(ticket) => Ok(ticket),
            None => bail!("no ticket {id} (see `operator-host tickets list --status all`)"),
        }
    }

    /// Tickets, newest first, optionally only those with `status`.
    pub fn list(&self, status: Option<TicketStatus>) -> Result<Vec<Ticket>> {
        let txn = self.store.db().begin_read()?;
        let table = txn.open_table(TICKETS)?;
        let mut out = Vec::new();
        for entry in table.iter()?.rev() {
            let (_, value) = entry?;
            let ticket: Ticket = serde_json::from_slice(value.value()).context("reading a ticket")?;
            if status.is_none_or(|s| s == ticket.status) {
                out.push(ticket);
            }
        }
        Ok(out)
    }

    /// Tickets not resolved.
    pub fn active(&self) -> Result<Vec<Ticket>> {
        Ok(self.list(None)?.into_iter().filter(Ticket::is_active).collect())
    }

    /// The newest ticket for a violation key, whatever its status.
    pub fn newest_for_key(&self, key: &str) -> Result<Option<Ticket>> {
        let id = {
            let txn = self.store.db().begin_read()?;
            let table = txn.open_table(TICKET_KEYS)?;
            table.get(key)?.map(|v| v.value().to_string())
        };
        match id {
            Some(id) => self.get(&id),
            None => Ok(None),
        }
    }

    /// Writes a ticket (and its key index) in one transaction.
    pub fn save(&self, ticket: &Ticket) -> Result<()> {
        let txn = self.store.db().begin_write()?;
        {
            let mut table = txn.open_table(TICKETS)?;
            table.insert(ticket.id.as_str(), serde_json::to_vec(ticket)?.as_slice())?;
            let mut keys = txn.open_table(TICKET_KEYS)?;
            keys.insert(ticket.key().as_str(), ticket.id.as_str())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Writes several tickets and snapshots in one transaction (one monitor cycle).
    pub fn save_cycle(&self, tickets: &[&Ticket], snapshots: &[(String, SnapshotKind, &str)]) -> Result<()> {
        if tickets.is_empty() && snapshots.is_empty() {
            return Ok(());
        }
        let txn = self.store.db().begin_write()?;
        {
            let mut table = txn.open_table(TICKETS)?;
            let mut keys = txn.open_table(TICKET_KEYS)?;
            for ticket in tickets {
                table.insert(ticket.id.as_str(), serde_json::to_vec(ticket)?.as_slice())?;
                keys.insert(ticket.key().as_str(), ticket.id.as_str())?;
            }
            let mut snaps = txn.open_table(TICKET_SNAPSHOTS)?;
            for (id, kind, payload) in snapshots {
                snaps.insert(kind.key(id).as_str(), payload.as_bytes())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Hands out the next ticket id.
    pub fn next_id(&self) -> Result<String> {
        let txn = self.store.db().begin_write()?;
        let next = {
            let mut meta = txn.open_table(META)?;
            let last: u64 = match meta.get(TICKET_SEQ)? {
                Some(v) => v.value().parse().context("ticket_seq is not a number")?,
                None => 0,
            };
            let next = last + 1;
            meta.insert(TICKET_SEQ, next.to_string().as_str())?;
            next
        };
        txn.commit()?;
        Ok(format!("T-{next:06}"))
    }

    /// A ticket's observation snapshot.
    pub fn snapshot(&self, id: &str, kind: SnapshotKind) -> Result<Option<StoredObservation>> {
        let txn = self.store.db().begin_read()?;
        let table = txn.open_table(TICKET_SNAPSHOTS)?;
        match table.get(kind.key(id).as_str())? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value()).context("reading a ticket's observation")?)),
            None => Ok(None),
        }
    }

    /// Changes a ticket's status: audited first, then written. Refuses changes that make no sense
    /// (resolving a resolved ticket, holding a held one) with a message saying so.
    pub async fn transition(
        &self,
        sink: &AuditSink,
        id: &str,
        to: TicketStatus,
        reason: &str,
        actor: &str,
        now_ms: u64,
    ) -> Result<Ticket> {
        let mut ticket = self.require(id)?;
        let from = ticket.status;
        let allowed = matches!(
            (from, to),
            (TicketStatus::Open, TicketStatus::Held)
                | (TicketStatus::Held, TicketStatus::Open)
                | (TicketStatus::Open | TicketStatus::Held, TicketStatus::Resolved)
                | (TicketStatus::Resolved, TicketStatus::Open)
        );
        if !allowed {
            bail!("ticket {id} is {from}; it cannot become {to}");
        }
        sink.record_durable(state_change(&ticket.id, Some(from), to, reason, actor)).await?;
        apply_transition(&mut ticket, to, reason, actor, now_ms);
        self.save(&ticket)?;
        Ok(ticket)
    }
}

/// The audit event of a ticket's state change.
pub fn state_change(id: &str, from: Option<TicketStatus>, to: TicketStatus, reason: &str, actor: &str) -> AuditEvent {
    AuditEvent::StateChange {
        subject: "ticket".into(),
        id: id.into(),
        from: from.map(|s| s.as_str().to_owned()),
        to: to.as_str().into(),
        reason: reason.into(),
        actor: actor.into(),
    }
}

/// Applies a status change to a ticket in memory (history, resolution fields).
pub fn apply_transition(ticket: &mut Ticket, to: TicketStatus, reason: &str, actor: &str, now_ms: u64) {
    let from = ticket.status;
    ticket.history.push(TicketEvent {
        at_ms: now_ms,
        from: Some(from),
        to,
        reason: reason.into(),
        actor: actor.into(),
    });
    ticket.status = to;
    match to {
        TicketStatus::Resolved => {
            ticket.resolved_at_ms = Some(now_ms);
            ticket.resolution = Some(reason.into());
        }
        TicketStatus::Open if from == TicketStatus::Resolved => {
            ticket.resolved_at_ms = None;
            ticket.resolution = None;
            ticket.reopened += 1;
            ticket.absent_since_ms = None;
        }
        _ => {}
    }
}
