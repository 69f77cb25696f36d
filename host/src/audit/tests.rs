use std::path::Path;

use proptest::prelude::*;
use redb::ReadableDatabase;

use super::log::HEAD_KEY;
use super::*;
use crate::store::{META, Store};

fn open(dir: &Path) -> AuditLog {
    AuditLog::new(Store::open(dir).unwrap()).unwrap()
}

fn call(plugin: &str, export: &str, outcome: CallOutcome) -> AuditEvent {
    AuditEvent::PluginCall {
        plugin: plugin.to_owned(),
        version: "1.2.0".to_owned(),
        component_sha256: "ab".repeat(32),
        export: export.to_owned(),
        args_sha256: "cd".repeat(32),
        duration_us: 1234,
        outcome,
        stdout_bytes: 10,
        stderr_bytes: 0,
        output_truncated: false,
        link: Some(Link { ticket: Some("T-1".to_owned()), action: None }),
    }
}

fn capability(plugin: &str, decision: Decision) -> AuditEvent {
    let allowed = matches!(decision, Decision::Allowed { .. });
    AuditEvent::Capability {
        plugin: plugin.to_owned(),
        export: "observe".to_owned(),
        target: "control".to_owned(),
        url: allowed.then(|| "http://127.0.0.1:2379/api/v1/items".to_owned()),
        method: "GET".to_owned(),
        path: "/api/v1/items".to_owned(),
        decision,
        status: allowed.then_some(200),
        bytes: if allowed { 512 } else { 0 },
        latency_us: 800,
        error: None,
        link: None,
    }
}

fn sandbox(plugin: &str) -> AuditEvent {
    AuditEvent::Sandbox {
        plugin: plugin.to_owned(),
        export: "observe".to_owned(),
        what: "environment".to_owned(),
        detail: "get-environment".to_owned(),
    }
}

fn load(plugin: &str, outcome: LoadOutcome) -> AuditEvent {
    AuditEvent::PluginLoad {
        plugin: plugin.to_owned(),
        version: "0.1.0".to_owned(),
        component_sha256: "ef".repeat(32),
        source: "built-in".to_owned(),
        outcome,
    }
}

/// A varied event for position `i`.
fn sample(i: u64) -> AuditEvent {
    match i % 6 {
        0 => load("alpha", LoadOutcome::Loaded),
        1 => call("alpha", "observe", CallOutcome::Ok),
        2 => capability("alpha", Decision::Allowed { rule: "control:read".to_owned() }),
        3 => capability(
            "beta",
            Decision::Denied {
                reason: "method POST needs an action execution".to_owned(),
                rule: Some("control:read".to_owned()),
            },
        ),
        4 => call("beta", "check", CallOutcome::Timeout { after_ms: 5000 }),
        _ => AuditEvent::note(format!("note {i} with \"quotes\", é and \n newline")),
    }
}

fn append_n(log: &AuditLog, n: u64) {
    let events = (1..=n).map(|i| (1_000 + i, sample(i))).collect();
    log.append(events).unwrap();
}

fn raw(log: &AuditLog, seq: u64) -> Vec<u8> {
    let txn = log.store().db().begin_read().unwrap();
    let table = txn.open_table(AUDIT_RECORDS).unwrap();
    table.get(seq).unwrap().unwrap().value().to_vec()
}

fn put_raw(log: &AuditLog, seq: u64, bytes: &[u8]) {
    let txn = log.store().db().begin_write().unwrap();
    txn.open_table(AUDIT_RECORDS).unwrap().insert(seq, bytes).unwrap();
    txn.commit().unwrap();
}

fn remove_raw(log: &AuditLog, seq: u64) {
    let txn = log.store().db().begin_write().unwrap();
    txn.open_table(AUDIT_RECORDS).unwrap().remove(seq).unwrap().unwrap();
    txn.commit().unwrap();
}

fn problem(log: &AuditLog) -> Problem {
    let report = log.verify().unwrap();
    report.first_problem.expect("tampering must be detected")
}

#[test]
fn records_round_trip_and_hash_covers_the_content() {
    let record = AuditRecord::new(1, 42, GENESIS_HASH.to_owned(), sample(3));
    assert_eq!(record.hash.len(), 64);
    assert_eq!(record.recompute_hash(), record.hash);
    let bytes = record.to_bytes();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.starts_with(r#"{"seq":1,"at_ms":42,"prev_hash":"000"#), "{text}");
    assert!(text.contains(r#""event":{"kind":"capability""#), "{text}");
    assert!(text.contains(r#""decision":{"kind":"denied""#), "{text}");
    assert_eq!(AuditRecord::from_bytes(&bytes).unwrap(), record);
    let other = AuditRecord::new(1, 43, GENESIS_HASH.to_owned(), sample(3));
    assert_ne!(other.hash, record.hash);
}

#[test]
fn the_one_pass_encoding_is_the_stored_form() {
    for i in 0..12 {
        let prev = if i == 0 { GENESIS_HASH.to_owned() } else { format!("{i:064x}") };
        let record = AuditRecord::new(i + 1, 1_000 + i, prev.clone(), sample(i));
        let (encoded, bytes) = AuditRecord::new_encoded(i + 1, 1_000 + i, prev, sample(i));
        assert_eq!(encoded, record);
        assert_eq!(bytes, record.to_bytes(), "event {i}");
    }
}

#[test]
fn event_accessors() {
    assert_eq!(sample(0).kind(), "plugin-load");
    assert_eq!(sample(1).kind(), "plugin-call");
    assert_eq!(sample(2).kind(), "capability");
    assert_eq!(sandbox("x").kind(), "sandbox");
    assert_eq!(sample(5).kind(), "note");
    for i in 0..6 {
        assert!(AuditEvent::KINDS.contains(&sample(i).kind()));
    }
    assert_eq!(sample(3).plugin(), Some("beta"));
    assert_eq!(sample(5).plugin(), None);
    assert!(sample(3).is_denied());
    assert!(sandbox("x").is_denied());
    assert!(!sample(2).is_denied());
    assert!(!load("x", LoadOutcome::Refused { reason: "bad sha".into() }).is_denied());
    assert_eq!(sample(1).link().unwrap().ticket.as_deref(), Some("T-1"));
}

#[test]
fn a_long_chain_verifies_and_the_head_names_the_last_record() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    assert!(log.verify().unwrap().is_ok());
    assert_eq!(log.head().unwrap(), None);
    for batch in 0..20 {
        let events = (0..25).map(|i| (batch * 100 + i, sample(i))).collect();
        let seqs = log.append(events).unwrap();
        assert_eq!(seqs, ((batch * 25 + 1)..=(batch * 25 + 25)).collect::<Vec<_>>());
    }
    let report = log.verify().unwrap();
    assert_eq!(report.records, 500);
    assert_eq!(report.first_problem, None, "{report}");
    let head = log.head().unwrap().unwrap();
    assert_eq!(head.seq, 500);
    assert_eq!(head.hash, log.get(500).unwrap().unwrap().hash);
    let first = log.get(1).unwrap().unwrap();
    assert_eq!(first.prev_hash, GENESIS_HASH);
    assert_eq!(log.get(2).unwrap().unwrap().prev_hash, first.hash);
    assert_eq!(log.get(501).unwrap(), None);
    assert!(log.append(Vec::new()).unwrap().is_empty());
}

#[test]
fn the_chain_survives_reopening() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let log = open(tmp.path());
        append_n(&log, 7);
    }
    let log = open(tmp.path());
    assert_eq!(log.append(vec![(5, sample(2))]).unwrap(), vec![8]);
    assert!(log.verify().unwrap().is_ok());
}

#[test]
fn one_altered_byte_is_found_at_that_record() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    append_n(&log, 30);
    let mut bytes = raw(&log, 17);
    let text = String::from_utf8(bytes.clone()).unwrap();
    // Change a digit inside the event (duration, status, bytes or after_ms).
    let at = text.find(r#""event""#).unwrap()
        + text[text.find(r#""event""#).unwrap()..].find(|c: char| c.is_ascii_digit()).unwrap();
    bytes[at] = if bytes[at] == b'9' { b'1' } else { bytes[at] + 1 };
    put_raw(&log, 17, &bytes);
    let p = problem(&log);
    assert_eq!((p.seq, p.kind), (17, ProblemKind::ContentAltered), "{p}");
    let shown = p.to_string();
    assert!(shown.starts_with("record 17: content altered (stored hash "), "{shown}");
    assert!(shown.contains("does not match recomputed"), "{shown}");
}

#[test]
fn whitespace_and_escapes_that_parse_the_same_are_still_found() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    append_n(&log, 8);
    let mut bytes = raw(&log, 5);
    bytes.insert(1, b' ');
    put_raw(&log, 5, &bytes);
    let p = problem(&log);
    assert_eq!((p.seq, p.kind), (5, ProblemKind::ContentAltered), "{p}");
    assert!(p.to_string().contains("canonical"), "{p}");
}

#[test]
fn an_altered_seq_or_garbage_is_found_at_that_key() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    append_n(&log, 8);
    put_raw(&log, 4, b"{\"seq\":4,");
    let p = problem(&log);
    assert_eq!((p.seq, p.kind), (4, ProblemKind::Unreadable), "{p}");
    assert!(p.to_string().starts_with("record 4: stored bytes are not an audit record"));
    // The error of a query names the record too.
    let err = log.list(&AuditFilter::default()).unwrap_err();
    assert!(matches!(err, AuditError::Unreadable { seq: 4, .. }), "{err}");
}

#[test]
fn a_removed_middle_record_is_reported_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    append_n(&log, 20);
    remove_raw(&log, 17);
    let p = problem(&log);
    assert_eq!((p.seq, p.kind), (17, ProblemKind::Missing));
    assert_eq!(p.to_string(), "record 17 is missing (records jump from 16 to 18)");
}

#[test]
fn a_removed_first_record_is_reported_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    append_n(&log, 3);
    remove_raw(&log, 1);
    let p = problem(&log);
    assert_eq!(p.to_string(), "record 1 is missing (the log starts at record 2)");
}

#[test]
fn swapped_records_are_found_at_the_first_of_them() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    append_n(&log, 12);
    let (a, b) = (raw(&log, 5), raw(&log, 9));
    put_raw(&log, 5, &b);
    put_raw(&log, 9, &a);
    let p = problem(&log);
    assert_eq!((p.seq, p.kind), (5, ProblemKind::Misplaced), "{p}");
    assert_eq!(p.to_string(), "record 5: holds record 9 (records were swapped or moved)");
}

#[test]
fn a_renumbered_record_breaks_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    append_n(&log, 6);
    // Record 5 rebuilt with record 3's content: valid hash of its own, wrong prev_hash.
    let three = log.get(3).unwrap().unwrap();
    let forged = AuditRecord::new(5, three.at_ms, three.prev_hash, three.event);
    put_raw(&log, 5, &forged.to_bytes());
    let p = problem(&log);
    assert_eq!((p.seq, p.kind), (5, ProblemKind::ChainBroken), "{p}");
    assert_eq!(p.to_string(), "record 5: chain broken (prev_hash does not match record 4's hash)");
}

#[test]
fn a_removed_tail_is_found_through_the_head() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    append_n(&log, 42);
    remove_raw(&log, 42);
    remove_raw(&log, 41);
    let p = problem(&log);
    assert_eq!((p.seq, p.kind), (41, ProblemKind::TailRemoved));
    assert_eq!(p.to_string(), "log ends at record 40 but its head names record 42: records removed from the end");

    // Appending afterwards keeps the hole visible rather than papering over it.
    assert_eq!(log.append(vec![(1, sample(1))]).unwrap(), vec![43]);
    let p = problem(&log);
    assert_eq!(p.to_string(), "record 41 is missing (records jump from 40 to 43)");
}

#[test]
fn a_log_emptied_entirely_is_found_through_the_head() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    append_n(&log, 2);
    remove_raw(&log, 1);
    remove_raw(&log, 2);
    let p = problem(&log);
    assert_eq!((p.seq, p.kind), (1, ProblemKind::TailRemoved), "{p}");
}

#[test]
fn head_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    append_n(&log, 5);
    let set_head = |value: Option<&str>| {
        let txn = log.store().db().begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            match value {
                Some(v) => {
                    meta.insert(HEAD_KEY, v).unwrap();
                }
                None => {
                    meta.remove(HEAD_KEY).unwrap();
                }
            }
        }
        txn.commit().unwrap();
    };
    let good = log.head().unwrap().unwrap().to_string();

    set_head(None);
    let p = problem(&log);
    assert_eq!((p.seq, p.kind), (5, ProblemKind::HeadMismatch), "{p}");
    assert!(p.to_string().contains("head is missing"), "{p}");
    // Appending on a damaged log is refused and changes nothing.
    let err = log.append(vec![(1, sample(1))]).unwrap_err();
    assert!(matches!(err, AuditError::Damaged(_)), "{err}");
    assert_eq!(log.len().unwrap(), 5);

    set_head(Some(&format!("5 {}", "1".repeat(64))));
    let p = problem(&log);
    assert_eq!((p.seq, p.kind), (5, ProblemKind::HeadMismatch), "{p}");
    assert!(p.to_string().contains("last record was replaced"), "{p}");

    set_head(Some(&format!("3 {}", "1".repeat(64))));
    let p = problem(&log);
    assert_eq!((p.seq, p.kind), (4, ProblemKind::HeadMismatch), "{p}");
    let err = log.append(vec![(1, sample(1))]).unwrap_err();
    assert!(matches!(err, AuditError::Damaged(_)), "{err}");
    assert_eq!(log.len().unwrap(), 5);

    set_head(Some("five"));
    assert_eq!(problem(&log).kind, ProblemKind::HeadMismatch);
    assert!(matches!(log.head(), Err(AuditError::Damaged(_))));

    set_head(Some(&good));
    assert!(log.verify().unwrap().is_ok());
}

#[test]
fn a_rewritten_chain_is_caught_only_by_an_anchor() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    append_n(&log, 10);
    let anchor = log.head().unwrap().unwrap();
    assert!(log.verify_against(&anchor).unwrap().is_ok());
    append_n(&log, 3);
    assert!(log.verify_against(&anchor).unwrap().is_ok());

    // Rewrite from record 6 on with consistent hashes and head.
    let mut prev = log.get(5).unwrap().unwrap().hash;
    for seq in 6..=13 {
        let old = log.get(seq).unwrap().unwrap();
        let forged = AuditRecord::new(seq, old.at_ms, prev, AuditEvent::note("nothing happened"));
        put_raw(&log, seq, &forged.to_bytes());
        prev = forged.hash;
    }
    let txn = log.store().db().begin_write().unwrap();
    txn.open_table(META).unwrap().insert(HEAD_KEY, format!("13 {prev}").as_str()).unwrap();
    txn.commit().unwrap();

    assert!(log.verify().unwrap().is_ok());
    let p = log.verify_against(&anchor).unwrap().first_problem.unwrap();
    assert_eq!((p.seq, p.kind), (10, ProblemKind::AnchorMismatch), "{p}");
}

#[test]
fn filters() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    // 60 events, at_ms = 1000 + i.
    append_n(&log, 60);
    let all = log.list(&AuditFilter::default()).unwrap();
    assert_eq!(all.len(), 60);
    assert!(all.windows(2).all(|w| w[0].seq + 1 == w[1].seq));

    let beta = log.list(&AuditFilter { plugin: Some("beta".into()), ..Default::default() }).unwrap();
    assert_eq!(beta.len(), 20);
    assert!(beta.iter().all(|r| r.event.plugin() == Some("beta")));

    let notes = log.list(&AuditFilter { kind: Some("note".into()), ..Default::default() }).unwrap();
    assert_eq!(notes.len(), 10);
    assert!(notes.iter().all(|r| r.event.kind() == "note"));

    let denied = log.list(&AuditFilter { denied_only: true, ..Default::default() }).unwrap();
    assert_eq!(denied.len(), 10);
    assert!(denied.iter().all(|r| r.event.is_denied()));

    let since = log.list(&AuditFilter { since_ms: Some(1051), ..Default::default() }).unwrap();
    assert_eq!(since.iter().map(|r| r.seq).collect::<Vec<_>>(), (51..=60).collect::<Vec<_>>());

    let last_calls = log
        .list(&AuditFilter {
            kind: Some("plugin-call".into()),
            plugin: Some("alpha".into()),
            limit: Some(3),
            ..Default::default()
        })
        .unwrap();
    // plugin-call by alpha: i % 6 == 1 → seqs 1, 7, ..., 55; the three most recent, ascending.
    assert_eq!(last_calls.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![43, 49, 55]);

    let none = log.list(&AuditFilter { limit: Some(0), ..Default::default() }).unwrap();
    assert!(none.is_empty());

    let err = log.list(&AuditFilter { kind: Some("plugin_call".into()), ..Default::default() }).unwrap_err();
    assert!(matches!(err, AuditError::UnknownKind(_)), "{err}");
}

#[test]
fn export_writes_one_line_per_record() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    let mut out = Vec::new();
    assert_eq!(log.export_jsonl(&mut out).unwrap(), 0);
    assert!(out.is_empty());
    append_n(&log, 25);
    assert_eq!(log.export_jsonl(&mut out).unwrap(), 25);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 25);
    for (i, line) in lines.iter().enumerate() {
        let record = AuditRecord::from_bytes(line.as_bytes()).unwrap();
        assert_eq!(record.seq, i as u64 + 1);
        assert_eq!(record.recompute_hash(), record.hash);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_recording_through_the_sink_lands_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    let sink = AuditSink::spawn(log.clone());
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let sink = sink.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50u64 {
                if i % 10 == 0 {
                    sink.record_durable(sample(t * 100 + i)).await.unwrap();
                } else {
                    sink.record(sample(t * 100 + i));
                }
                if i % 7 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    // Direct appends interleave with the sink's batches.
    let direct = {
        let log = log.clone();
        tokio::task::spawn_blocking(move || {
            for i in 0..20 {
                log.append(vec![(now_ms(), sample(i)), (now_ms(), sample(i + 1))]).unwrap();
            }
        })
    };
    for task in tasks {
        task.await.unwrap();
    }
    direct.await.unwrap();
    sink.flush().await.unwrap();
    let report = log.verify().unwrap();
    assert_eq!(report.records, 8 * 50 + 40);
    assert!(report.is_ok(), "{report}");
    assert_eq!(log.head().unwrap().unwrap().seq, 440);
}

/// What a crash now would leave behind: a copy of the database file taken while it is open,
/// opened as a log of its own.
fn crash_copy(log: &AuditLog, root: &Path, name: &str) -> AuditLog {
    let crash = root.join(name);
    std::fs::create_dir(&crash).unwrap();
    std::fs::copy(log.store().path(), crash.join(crate::store::DB_FILE)).unwrap();
    open(&crash)
}

#[tokio::test]
async fn a_durable_record_is_on_disk_when_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = open(&data);
    let sink = AuditSink::spawn(log.clone());
    for i in 0..5 {
        sink.record(sample(i));
    }
    let seq = sink.record_durable(AuditEvent::note("must survive a crash")).await.unwrap();
    assert_eq!(seq, 6);

    let recovered = crash_copy(&log, tmp.path(), "crash");
    assert_eq!(recovered.get(6).unwrap().unwrap().event, AuditEvent::note("must survive a crash"));
    assert!(recovered.verify().unwrap().is_ok());
    drop(recovered);

    // And the real file reopens with it once the daemon is gone.
    drop(sink);
    drop(log);
    // The sink's task holds a clone of the log until it sees the channel close.
    let mut reopened = None;
    for _ in 0..200 {
        match Store::open(&data) {
            Ok(store) => {
                reopened = Some(AuditLog::new(store).unwrap());
                break;
            }
            Err(crate::store::StoreError::Locked { .. }) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let reopened = reopened.expect("the sink's task releases the database");
    assert_eq!(reopened.len().unwrap(), 6);
    assert_eq!(reopened.get(6).unwrap().unwrap().event, AuditEvent::note("must survive a crash"));
}

#[test]
fn a_deferred_append_is_visible_at_once_and_on_disk_after_the_next_durable_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(&tmp.path().join("data"));
    append_n(&log, 3);
    let seqs = log.append_with(vec![(10, sample(10)), (11, sample(11))], Commit::Deferred).unwrap();
    assert_eq!(seqs, vec![4, 5]);
    assert_eq!(log.len().unwrap(), 5, "deferred records are visible at once");
    assert!(log.verify().unwrap().is_ok());

    let crashed = crash_copy(&log, tmp.path(), "before");
    assert_eq!(crashed.len().unwrap(), 3, "a crash loses the deferred records");
    assert_eq!(crashed.head().unwrap().unwrap().seq, 3);
    assert!(crashed.verify().unwrap().is_ok(), "and leaves the chain as the last durable commit left it");

    log.make_durable().unwrap();
    let crashed = crash_copy(&log, tmp.path(), "after");
    assert_eq!(crashed.len().unwrap(), 5);
    assert_eq!(crashed.get(5).unwrap().unwrap().event, sample(11));
    assert!(crashed.verify().unwrap().is_ok());
}

#[tokio::test]
async fn deferred_commits_reach_the_disk_once_recording_pauses() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(&tmp.path().join("data"));
    let sink = AuditSink::spawn(log.clone());
    for i in 0..50 {
        sink.record_at(i, sample(i));
    }
    // A pause of many group-commit windows: whatever was deferred is made durable in the first.
    for _ in 0..100 {
        if log.len().unwrap() == 50 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let crashed = crash_copy(&log, tmp.path(), "paused");
    assert_eq!(crashed.len().unwrap(), 50);
    assert!(crashed.verify().unwrap().is_ok());
}

#[tokio::test]
async fn flush_waits_for_everything_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    let sink = AuditSink::spawn(log.clone());
    for i in 0..100 {
        sink.record_at(i, sample(i));
    }
    sink.flush().await.unwrap();
    assert_eq!(log.len().unwrap(), 100);
    assert_eq!(log.get(100).unwrap().unwrap().at_ms, 99);
    // What was flushed is on disk, not only committed.
    assert_eq!(crash_copy(&log, tmp.path(), "flushed").len().unwrap(), 100);
    // A flush with nothing queued returns too.
    sink.flush().await.unwrap();
}

#[tokio::test]
async fn write_failures_reach_durable_waiters_and_the_next_flush() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    append_n(&log, 3);
    // Damage the head so that appends are refused.
    let txn = log.store().db().begin_write().unwrap();
    txn.open_table(META).unwrap().remove(HEAD_KEY).unwrap();
    txn.commit().unwrap();

    let sink = AuditSink::spawn(log.clone());
    let err = sink.record_durable(sample(1)).await.unwrap_err();
    assert!(matches!(err, AuditError::WriteFailed(_)), "{err}");
    assert!(err.to_string().contains("head is missing"), "{err}");

    sink.record(sample(2));
    // Make sure the failed batch ran before the flush is queued.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let err = sink.flush().await.unwrap_err();
    assert!(matches!(err, AuditError::WriteFailed(_)), "{err}");
    // Reported once.
    sink.flush().await.unwrap();
}

#[tokio::test]
async fn a_stopped_sink_reports_it() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    let runtime_sink = {
        // A sink whose runtime is gone has no task left.
        let log = log.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async { AuditSink::spawn(log) })
        })
        .join()
        .unwrap()
    };
    let err = runtime_sink.flush().await.unwrap_err();
    assert!(matches!(err, AuditError::SinkClosed), "{err}");
    let err = runtime_sink.record_durable(sample(1)).await.unwrap_err();
    assert!(matches!(err, AuditError::SinkClosed), "{err}");
    runtime_sink.record(sample(1)); // logged, never blocks or panics
    assert_eq!(log.len().unwrap(), 0);
}

#[derive(Debug, Clone)]
enum Tamper {
    /// Change byte `at` (modulo the length) of record `pick` to a different value.
    Alter { pick: usize, at: usize, xor: u8 },
    /// Remove record `pick`.
    Remove { pick: usize },
    /// Swap the values of two different records.
    Swap { a: usize, b: usize },
    /// Remove the last `count` records (at least one).
    Truncate { count: usize },
}

fn arb_event() -> impl Strategy<Value = AuditEvent> {
    let name = "[a-z]{1,8}";
    let text = ".{0,24}";
    prop_oneof![
        (name, text).prop_map(|(p, reason)| load(
            &p,
            if reason.is_empty() { LoadOutcome::Loaded } else { LoadOutcome::Refused { reason } }
        )),
        (name, name, any::<u64>(), any::<bool>()).prop_map(|(p, e, n, trap)| {
            let mut event =
                call(&p, &e, if trap { CallOutcome::Trap { message: format!("trap {n}") } } else { CallOutcome::Ok });
            if let AuditEvent::PluginCall { duration_us, .. } = &mut event {
                *duration_us = n;
            }
            event
        }),
        (name, any::<bool>()).prop_map(|(p, allowed)| capability(
            &p,
            if allowed {
                Decision::Allowed { rule: "r".into() }
            } else {
                Decision::Denied { reason: "no grant".into(), rule: None }
            }
        )),
        name.prop_map(|p| sandbox(&p)),
        text.prop_map(AuditEvent::note),
    ]
}

fn arb_batches() -> impl Strategy<Value = Vec<Vec<(u64, AuditEvent)>>> {
    prop::collection::vec(prop::collection::vec((any::<u64>(), arb_event()), 1..6), 1..8)
}

fn arb_tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (any::<usize>(), any::<usize>(), 1..=255u8).prop_map(|(pick, at, xor)| Tamper::Alter { pick, at, xor }),
        any::<usize>().prop_map(|pick| Tamper::Remove { pick }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Tamper::Swap { a, b }),
        any::<usize>().prop_map(|count| Tamper::Truncate { count }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn tampering_is_always_detected(
        batches in arb_batches(),
        tamper in prop::option::of(arb_tamper()),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let log = open(tmp.path());
        for batch in batches {
            log.append(batch).unwrap();
        }
        let n = log.len().unwrap() as usize;
        prop_assert!(log.verify().unwrap().is_ok());
        let Some(tamper) = tamper else {
            // Untouched: intact, and the head names the last record.
            prop_assert_eq!(log.head().unwrap().unwrap().seq, n as u64);
            return Ok(());
        };
        let seq = |i: usize| (i % n) as u64 + 1;
        match tamper {
            Tamper::Alter { pick, at, xor } => {
                let mut bytes = raw(&log, seq(pick));
                let at = at % bytes.len();
                bytes[at] ^= xor;
                put_raw(&log, seq(pick), &bytes);
                let p = problem(&log);
                prop_assert_eq!(p.seq, seq(pick), "{}", p);
            }
            Tamper::Remove { pick } => {
                remove_raw(&log, seq(pick));
                let p = problem(&log);
                prop_assert_eq!(p.seq, seq(pick), "{}", p);
            }
            Tamper::Swap { a, b } => {
                let a = seq(a);
                // A different record: step forward from `a` by 1..n-1 (none when n == 1).
                let b = if n == 1 { a } else { (a - 1 + 1 + (b % (n - 1)) as u64) % n as u64 + 1 };
                if a == b {
                    // A single record cannot be swapped with another; alter it instead.
                    let mut bytes = raw(&log, a);
                    bytes[0] ^= 1;
                    put_raw(&log, a, &bytes);
                    prop_assert_eq!(problem(&log).seq, a);
                } else {
                    let (va, vb) = (raw(&log, a), raw(&log, b));
                    put_raw(&log, a, &vb);
                    put_raw(&log, b, &va);
                    let p = problem(&log);
                    prop_assert_eq!((p.seq, p.kind), (a.min(b), ProblemKind::Misplaced), "{}", p);
                }
            }
            Tamper::Truncate { count } => {
                let count = count % n + 1;
                for s in (n - count + 1)..=n {
                    remove_raw(&log, s as u64);
                }
                let p = problem(&log);
                prop_assert_eq!(p.seq, (n - count + 1) as u64, "{}", p);
                prop_assert_eq!(p.kind, ProblemKind::TailRemoved);
            }
        }
    }
}
