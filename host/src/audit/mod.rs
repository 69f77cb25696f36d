//! The tamper-evident audit log.
//!
//! Every plugin load, plugin call, capability decision and sandbox refusal becomes an
//! [`AuditRecord`], appended to the redb table `audit_records` (key: the record's sequence
//! number from 1, value: its canonical JSON bytes).
//!
//! # The chain
//!
//! Each record carries `prev_hash`, the hash of the record before it ([`GENESIS_HASH`], 64 zeros,
//! for record 1), and its own `hash = hex(sha256(json({seq, at_ms, prev_hash, event})))` with the
//! fields in that fixed order and every map a `BTreeMap`, so the encoding is deterministic. The
//! `meta` table holds the head, `audit_head = "<seq> <hash>"`, naming the last record. Records and
//! head are written in the same write transaction ([`AuditLog::append`]), so they never disagree
//! unless someone edits the file.
//!
//! Appends chain from the head, never from whatever the table's last record happens to be: if
//! records were removed from the end, new records keep pointing past the hole and the removal
//! stays visible. An append never overwrites a record; if the head and the table disagree in a
//! way that would require it, the append is refused with [`AuditError::Damaged`].
//!
//! Hot paths record through an [`AuditSink`], which queues events without blocking and commits
//! them in batches from a background task.
//!
//! # When a record is on disk
//!
//! | recorded with | on disk |
//! |---|---|
//! | [`AuditSink::record_durable`] (action intents, approvals, mutating requests) | before the call returns |
//! | [`AuditSink::flush`] | everything recorded before it, before it returns |
//! | [`AuditSink::record`], occasional | within the 20 ms group-commit window |
//! | [`AuditSink::record`], sustained (a commit every window) | within 1 s, and 20 ms after the load stops |
//!
//! A crash loses at most what the last row allows, and always leaves the chain as it was at a
//! commit: never a torn record or a head that disagrees with the records.
//!
//! # What [`AuditLog::verify`] detects
//!
//! Walking the records in key order, it reports the first of:
//! - a record whose bytes are not an audit record, or not in canonical form;
//! - a missing record (a gap in the sequence numbers, or a log that does not start at 1);
//! - a record stored under the wrong key (records swapped or moved);
//! - a broken chain (`prev_hash` is not the previous record's hash: records reordered, or one
//!   replaced by a record from elsewhere);
//! - altered content (the recomputed hash differs from the stored one);
//! - a head that does not name the last record: missing while records exist, beyond the last
//!   record (records removed from the end), before it, or with a different hash (the last record
//!   was rewritten).
//!
//! # What it cannot detect
//!
//! The chain is not signed. Someone who can write the database file can rewrite every record from
//! some point on, recompute all the hashes and the head, and produce a log that verifies. The
//! same holds for deleting the newest records and rewriting the head to match, or replacing the
//! whole file. Such rewrites are caught only by comparing with a head hash exported earlier and
//! kept elsewhere (another machine, a ticket, a printed report): [`AuditLog::head`] gives the
//! value to keep, and a later log that still contains that record with that hash extends the
//! log that was anchored. Verification also cannot tell whether the host recorded everything it
//! should have, nor whether `at_ms` timestamps are true.

mod log;
mod record;
mod sink;
mod verify;

#[cfg(test)]
mod tests;

pub(crate) use log::AUDIT_RECORDS;
pub use log::{AuditFilter, AuditHead, AuditLog, Commit};
pub use record::{AuditEvent, AuditRecord, CallOutcome, Decision, GENESIS_HASH, Link, LoadOutcome};
pub use sink::{AuditSink, now_ms};
pub use verify::{Problem, ProblemKind, VerifyReport};

/// The result type of the audit log's operations.
pub type Result<T, E = AuditError> = std::result::Result<T, E>;

/// Why an audit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading or writing the database failed.
    #[error("audit storage error: {0}")]
    Storage(Box<redb::Error>),
    /// A stored record could not be parsed.
    #[error("audit record {seq} cannot be read ({reason}); `audit verify` locates the damage")]
    Unreadable {
        /// The record's key.
        seq: u64,
        /// The parse error.
        reason: String,
    },
    /// The log's records and head disagree in a way that makes appending unsafe.
    #[error("the audit log is damaged: {0}; nothing was written; `audit verify` locates the damage")]
    Damaged(String),
    /// A filter named a record kind that does not exist.
    #[error("unknown audit record kind {0:?}; known kinds: plugin-load, plugin-call, capability, sandbox, note")]
    UnknownKind(String),
    /// Writing an export failed.
    #[error("writing the audit export failed: {0}")]
    Io(#[from] std::io::Error),
    /// The [`AuditSink`]'s background task is gone; the event was not recorded.
    #[error("the audit writer has stopped; the event was not recorded")]
    SinkClosed,
    /// The [`AuditSink`]'s batch holding the event could not be committed.
    #[error("the audit write failed and the event was not recorded: {0}")]
    WriteFailed(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for AuditError {
            fn from(e: $t) -> Self {
                AuditError::Storage(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);
