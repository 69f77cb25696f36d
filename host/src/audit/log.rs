//! The log itself: appends, the head, and queries.

use std::fmt;
use std::str::FromStr;

use redb::{Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::record::{AuditEvent, AuditRecord, GENESIS_HASH};
use super::{AuditError, Result};
use crate::store::{META, Store};

/// The records: sequence number → canonical JSON bytes of the [`AuditRecord`].
pub(crate) const AUDIT_RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_records");

/// The key in the `meta` table naming the last record: `"<seq> <hash>"`.
pub(crate) const HEAD_KEY: &str = "audit_head";

/// The last record of the log as the `meta` table names it: its sequence number and hash.
///
/// Its text form, `"<seq> <hash>"`, is what is stored, and what is worth keeping outside the
/// database as an anchor (see [`AuditLog::verify_against`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    /// The last record's sequence number.
    pub seq: u64,
    /// The last record's hash, lowercase hex.
    pub hash: String,
}

impl fmt::Display for AuditHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.hash)
    }
}

impl FromStr for AuditHead {
    type Err = String;

    /// Parses `"<seq> <hash>"`, the hash being 64 lowercase hex digits.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let (seq, hash) = s.trim().split_once(' ').ok_or_else(|| format!("{s:?} is not \"<seq> <hash>\""))?;
        let seq = seq.parse().map_err(|_| format!("{s:?}: {seq:?} is not a record number"))?;
        let valid_hash = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid_hash {
            return Err(format!("{s:?}: {hash:?} is not a sha256 in lowercase hex"));
        }
        Ok(AuditHead { seq, hash: hash.to_owned() })
    }
}

/// Which records [`AuditLog::list`] returns. The default selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only events about this plugin.
    pub plugin: Option<String>,
    /// Only events of this kind (one of [`AuditEvent::KINDS`]).
    pub kind: Option<String>,
    /// Only events at or after this time (ms since the Unix epoch).
    pub since_ms: Option<u64>,
    /// Only refusals (see [`AuditEvent::is_denied`]).
    pub denied_only: bool,
    /// Only the most recent N matching records (still returned in ascending order).
    pub limit: Option<usize>,
}

impl AuditFilter {
    /// Whether `record` passes every condition except `limit`.
    pub fn matches(&self, record: &AuditRecord) -> bool {
        if let Some(plugin) = &self.plugin
            && record.event.plugin() != Some(plugin.as_str())
        {
            return false;
        }
        if let Some(kind) = &self.kind
            && record.event.kind() != kind
        {
            return false;
        }
        if let Some(since) = self.since_ms
            && record.at_ms < since
        {
            return false;
        }
        !self.denied_only || record.event.is_denied()
    }
}

/// How an append is committed (see [`AuditLog::append_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// On disk when the append returns (an fsync).
    Durable,
    /// Visible at once, on disk with the next durable commit.
    Deferred,
}

impl Commit {
    fn durability(self) -> Durability {
        match self {
            Commit::Durable => Durability::Immediate,
            Commit::Deferred => Durability::None,
        }
    }
}

/// The hash-chained audit log, stored in the operator's database. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct AuditLog {
    store: Store,
}

impl AuditLog {
    /// The log in `store` (whose migrations created its table).
    ///
    /// # Errors
    /// The table is missing or has the wrong type, or the database cannot be read.
    pub fn new(store: Store) -> Result<AuditLog> {
        {
            let txn = store.db().begin_read()?;
            txn.open_table(AUDIT_RECORDS)?;
        }
        Ok(AuditLog { store })
    }

    /// The store the log lives in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Appends `events` (each with its time in ms since the Unix epoch), in order, in one write
    /// transaction committed durably, and returns their sequence numbers.
    ///
    /// The chain continues from the head read inside the transaction, so concurrent appends from
    /// several threads are serialised by redb and never fork the chain. This blocks on disk I/O;
    /// async code should use an [`AuditSink`](super::AuditSink) or a blocking task.
    ///
    /// # Errors
    /// A storage failure (nothing is written), or [`AuditError::Damaged`] when the head is missing
    /// or unreadable while records exist, or records exist beyond the head.
    pub fn append(&self, events: Vec<(u64, AuditEvent)>) -> Result<Vec<u64>> {
        self.append_with(events, Commit::Durable)
    }

    /// [`append`](Self::append) with the given commit kind. A [`Commit::Deferred`] append is
    /// visible to readers of this database at once but reaches the disk only with the next
    /// durable commit; a crash before that loses it (and everything deferred with it), leaving
    /// the chain as it was at the last durable commit.
    ///
    /// # Errors
    /// As for [`append`](Self::append).
    pub fn append_with(&self, events: Vec<(u64, AuditEvent)>, commit: Commit) -> Result<Vec<u64>> {
        if events.is_empty() {
            if commit == Commit::Durable {
                self.make_durable()?;
            }
            return Ok(Vec::new());
        }
        let mut txn = self.store.db().begin_write()?;
        txn.set_durability(commit.durability())?;
        let mut seqs = Vec::with_capacity(events.len());
        {
            let mut meta = txn.open_table(META)?;
            let mut records = txn.open_table(AUDIT_RECORDS)?;
            let stored_head = meta.get(HEAD_KEY)?.map(|v| v.value().to_owned());
            let last_key = records.last()?.map(|(k, _)| k.value());
            let (mut seq, mut prev_hash) = match (stored_head, last_key) {
                (Some(text), last) => {
                    let head: AuditHead =
                        text.parse().map_err(|e| AuditError::Damaged(format!("the audit head is unreadable: {e}")))?;
                    if let Some(last) = last
                        && last > head.seq
                    {
                        return Err(AuditError::Damaged(format!(
                            "record {last} exists beyond the head, which names record {}",
                            head.seq
                        )));
                    }
                    (head.seq, head.hash)
                }
                (None, None) => (0, GENESIS_HASH.to_owned()),
                (None, Some(last)) => {
                    return Err(AuditError::Damaged(format!(
                        "the audit head is missing while the log holds records up to {last}"
                    )));
                }
            };
            for (at_ms, event) in events {
                seq += 1;
                let (record, bytes) = AuditRecord::new_encoded(seq, at_ms, prev_hash, event);
                if records.insert(seq, bytes.as_slice())?.is_some() {
                    // Unreachable given the check above; never overwrite a record regardless.
                    return Err(AuditError::Damaged(format!("record {seq} already exists beyond the head")));
                }
                prev_hash = record.hash;
                seqs.push(seq);
            }
            let head = AuditHead { seq, hash: prev_hash };
            meta.insert(HEAD_KEY, head.to_string().as_str())?;
        }
        txn.commit()?;
        Ok(seqs)
    }

    /// Makes every deferred append durable: an empty write transaction committed durably, which
    /// redb writes out with everything committed before it.
    ///
    /// # Errors
    /// A storage failure.
    pub fn make_durable(&self) -> Result<()> {
        let mut txn = self.store.db().begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.commit()?;
        Ok(())
    }

    /// The head as stored in the `meta` table (`None` for a log nothing was appended to).
    ///
    /// # Errors
    /// A storage failure, or [`AuditError::Damaged`] if the stored head is unreadable.
    pub fn head(&self) -> Result<Option<AuditHead>> {
        let txn = self.store.db().begin_read()?;
        let meta = txn.open_table(META)?;
        let Some(text) = meta.get(HEAD_KEY)?.map(|v| v.value().to_owned()) else {
            return Ok(None);
        };
        text.parse().map(Some).map_err(|e| AuditError::Damaged(format!("the audit head is unreadable: {e}")))
    }

    /// Record `seq`, if present.
    ///
    /// # Errors
    /// A storage failure, or [`AuditError::Unreadable`] if the stored bytes do not parse.
    pub fn get(&self, seq: u64) -> Result<Option<AuditRecord>> {
        let txn = self.store.db().begin_read()?;
        let records = txn.open_table(AUDIT_RECORDS)?;
        let Some(value) = records.get(seq)? else {
            return Ok(None);
        };
        parse(seq, value.value()).map(Some)
    }

    /// The number of stored records.
    ///
    /// # Errors
    /// A storage failure.
    pub fn len(&self) -> Result<u64> {
        let txn = self.store.db().begin_read()?;
        Ok(txn.open_table(AUDIT_RECORDS)?.len()?)
    }

    /// Whether the log holds no records.
    ///
    /// # Errors
    /// A storage failure.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The records matching `filter`, in ascending sequence order. With a `limit`, the most
    /// recent matching records.
    ///
    /// # Errors
    /// [`AuditError::UnknownKind`] for a kind that does not exist, a storage failure, or
    /// [`AuditError::Unreadable`] for a record that does not parse.
    pub fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        if let Some(kind) = &filter.kind
            && !AuditEvent::KINDS.contains(&kind.as_str())
        {
            return Err(AuditError::UnknownKind(kind.clone()));
        }
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let txn = self.store.db().begin_read()?;
        let records = txn.open_table(AUDIT_RECORDS)?;
        // Newest first, so a limit stops the walk early.
        for entry in records.iter()?.rev() {
            let (key, value) = entry?;
            let record = parse(key.value(), value.value())?;
            if filter.matches(&record) {
                out.push(record);
                if out.len() >= limit {
                    break;
                }
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Writes every record to `out` as JSON Lines (the stored canonical bytes, one record per
    /// line, in sequence order) and returns how many were written.
    ///
    /// # Errors
    /// A storage or write failure, or [`AuditError::Unreadable`] for a record that does not
    /// parse.
    pub fn export_jsonl(&self, out: &mut dyn std::io::Write) -> Result<u64> {
        let txn = self.store.db().begin_read()?;
        let records = txn.open_table(AUDIT_RECORDS)?;
        let mut count = 0;
        for entry in records.iter()? {
            let (key, value) = entry?;
            let bytes = value.value();
            parse(key.value(), bytes)?;
            out.write_all(bytes)?;
            out.write_all(b"\n")?;
            count += 1;
        }
        out.flush()?;
        Ok(count)
    }
}

fn parse(seq: u64, bytes: &[u8]) -> Result<AuditRecord> {
    AuditRecord::from_bytes(bytes).map_err(|e| AuditError::Unreadable { seq, reason: e.to_string() })
}
