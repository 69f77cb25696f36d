//! Verification of the chain and the head.

use std::fmt;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::Result;
use super::log::{AUDIT_RECORDS, AuditHead, AuditLog, HEAD_KEY};
use super::record::{AuditRecord, GENESIS_HASH};
use crate::store::META;

/// The outcome of [`AuditLog::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// How many records the log holds.
    pub records: u64,
    /// The first thing found wrong, walking from record 1 to the head; `None` when the log is
    /// intact.
    pub first_problem: Option<Problem>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.first_problem.is_none()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.first_problem {
            None => write!(f, "audit log intact: {} records, chain and head agree", self.records),
            Some(problem) => write!(f, "audit log damaged ({} records): {problem}", self.records),
        }
    }
}

/// What kind of damage a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The stored bytes are not an audit record.
    Unreadable,
    /// A record is missing from the sequence.
    Missing,
    /// A record is stored under another record's number (records swapped or moved).
    Misplaced,
    /// `prev_hash` does not match the previous record's hash.
    ChainBroken,
    /// The content does not match its hash, or is not in canonical form.
    ContentAltered,
    /// The head is missing, unreadable, or does not name the last record.
    HeadMismatch,
    /// The head names a record past the end of the log.
    TailRemoved,
    /// The log does not contain an anchored head given to [`AuditLog::verify_against`].
    AnchorMismatch,
}

/// One thing found wrong with the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The record it concerns (for a removed tail, the first removed record).
    pub seq: u64,
    /// What kind of damage it is.
    pub kind: ProblemKind,
    /// What is wrong, in words.
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ProblemKind::Missing => write!(f, "record {} is missing ({})", self.seq, self.what),
            ProblemKind::TailRemoved | ProblemKind::HeadMismatch | ProblemKind::AnchorMismatch => {
                f.write_str(&self.what)
            }
            _ => write!(f, "record {}: {}", self.seq, self.what),
        }
    }
}

fn short(hash: &str) -> String {
    match hash.get(..8) {
        Some(prefix) if hash.len() > 8 => format!("{prefix}…"),
        _ => hash.to_owned(),
    }
}

impl AuditLog {
    /// Checks the whole log, in one consistent snapshot, and reports the first problem.
    ///
    /// Walking the records in key order: the stored bytes must parse and be in canonical form;
    /// the sequence numbers must run from 1 without gaps and match their keys; each `prev_hash`
    /// must be the previous record's hash; each stored hash must equal the recomputed one.
    /// Finally the head in `meta` must name the last record, by number and hash.
    ///
    /// # Errors
    /// Only storage failures; damage is reported in the [`VerifyReport`].
    pub fn verify(&self) -> Result<VerifyReport> {
        let txn = self.store().db().begin_read()?;
        let records = txn.open_table(AUDIT_RECORDS)?;
        let meta = txn.open_table(META)?;
        let count = records.len()?;
        let report = |problem| Ok(VerifyReport { records: count, first_problem: Some(problem) });

        // (seq, hash) of the last record checked.
        let mut last: Option<(u64, String)> = None;
        for entry in records.iter()? {
            let (key, value) = entry?;
            let key = key.value();
            let bytes = value.value();
            let expected = last.as_ref().map_or(1, |(seq, _)| seq + 1);
            if key != expected {
                let what = match &last {
                    None => format!("the log starts at record {key}"),
                    Some((prev, _)) => format!("records jump from {prev} to {key}"),
                };
                return report(Problem { seq: expected, kind: ProblemKind::Missing, what });
            }
            let record = match AuditRecord::from_bytes(bytes) {
                Ok(record) => record,
                Err(e) => {
                    return report(Problem {
                        seq: key,
                        kind: ProblemKind::Unreadable,
                        what: format!("stored bytes are not an audit record ({e})"),
                    });
                }
            };
            if record.seq != key {
                return report(Problem {
                    seq: key,
                    kind: ProblemKind::Misplaced,
                    what: format!("holds record {} (records were swapped or moved)", record.seq),
                });
            }
            let expected_prev = last.as_ref().map_or(GENESIS_HASH, |(_, hash)| hash.as_str());
            if record.prev_hash != expected_prev {
                let what = match &last {
                    None => "chain broken (prev_hash of the first record is not 64 zeros)".to_owned(),
                    Some((prev, _)) => {
                        format!("chain broken (prev_hash does not match record {prev}'s hash)")
                    }
                };
                return report(Problem { seq: key, kind: ProblemKind::ChainBroken, what });
            }
            let recomputed = record.recompute_hash();
            if recomputed != record.hash {
                return report(Problem {
                    seq: key,
                    kind: ProblemKind::ContentAltered,
                    what: format!(
                        "content altered (stored hash {} does not match recomputed {})",
                        short(&record.hash),
                        short(&recomputed)
                    ),
                });
            }
            // Edits that parse back to the same values (whitespace, escapes, unknown fields)
            // leave the hash intact; the canonical form catches them.
            if record.to_bytes() != bytes {
                return report(Problem {
                    seq: key,
                    kind: ProblemKind::ContentAltered,
                    what: "content altered (stored bytes differ from the record's canonical \
                           encoding)"
                        .to_owned(),
                });
            }
            last = Some((key, record.hash));
        }

        let stored_head = meta.get(HEAD_KEY)?.map(|v| v.value().to_owned());
        let problem = match (stored_head, &last) {
            (None, None) => None,
            (None, Some((seq, _))) => Some(Problem {
                seq: *seq,
                kind: ProblemKind::HeadMismatch,
                what: format!(
                    "the audit head is missing from the meta table while the log holds records \
                     1 to {seq}"
                ),
            }),
            (Some(text), last) => match text.parse::<AuditHead>() {
                Err(e) => Some(Problem {
                    seq: last.as_ref().map_or(0, |(seq, _)| *seq),
                    kind: ProblemKind::HeadMismatch,
                    what: format!("the audit head is unreadable: {e}"),
                }),
                Ok(head) => check_head(&head, last.as_ref()),
            },
        };
        Ok(VerifyReport { records: count, first_problem: problem })
    }

    /// [`AuditLog::verify`], and then checks that the log still contains `anchor`, a head taken
    /// earlier (from [`AuditLog::head`]) and kept outside the database.
    ///
    /// This catches what verification alone cannot: a log rewritten from some record on, with
    /// every hash and the head recomputed, no longer contains the anchored record's hash.
    ///
    /// # Errors
    /// Only storage failures; damage is reported in the [`VerifyReport`].
    pub fn verify_against(&self, anchor: &AuditHead) -> Result<VerifyReport> {
        let mut report = self.verify()?;
        if report.first_problem.is_some() || anchor.seq == 0 {
            return Ok(report);
        }
        let problem = match self.get(anchor.seq)? {
            None => Some(Problem {
                seq: anchor.seq,
                kind: ProblemKind::AnchorMismatch,
                what: format!(
                    "the anchored head names record {} but the log ends at record {}: records \
                     removed and the chain rewritten",
                    anchor.seq, report.records
                ),
            }),
            Some(record) if record.hash != anchor.hash => Some(Problem {
                seq: anchor.seq,
                kind: ProblemKind::AnchorMismatch,
                what: format!(
                    "record {}'s hash {} differs from the anchored {}: the log was rewritten up \
                     to or before that record",
                    anchor.seq,
                    short(&record.hash),
                    short(&anchor.hash)
                ),
            }),
            Some(_) => None,
        };
        report.first_problem = problem;
        Ok(report)
    }
}

fn check_head(head: &AuditHead, last: Option<&(u64, String)>) -> Option<Problem> {
    let (last_seq, last_hash) = match last {
        Some((seq, hash)) => (*seq, hash.as_str()),
        None => (0, GENESIS_HASH),
    };
    if head.seq > last_seq {
        let what = if last_seq == 0 {
            format!("the log is empty but its head names record {}: records removed from the end", head.seq)
        } else {
            format!(
                "log ends at record {last_seq} but its head names record {}: records removed \
                 from the end",
                head.seq
            )
        };
        return Some(Problem { seq: last_seq + 1, kind: ProblemKind::TailRemoved, what });
    }
    if head.seq < last_seq {
        return Some(Problem {
            seq: head.seq + 1,
            kind: ProblemKind::HeadMismatch,
            what: format!(
                "log ends at record {last_seq} but its head names record {}: records added \
                 without the head",
                head.seq
            ),
        });
    }
    if head.hash != last_hash {
        return Some(Problem {
            seq: last_seq,
            kind: ProblemKind::HeadMismatch,
            what: format!(
                "record {last_seq}'s hash {} does not match the head's {}: the last record was \
                 replaced",
                short(last_hash),
                short(&head.hash)
            ),
        });
    }
    None
}
