//! A non-blocking front for recording from hot paths.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::{Arc, RwLock};

use tokio::sync::{Notify, mpsc, oneshot};

use super::log::{AuditLog, Commit};
use super::record::AuditEvent;
use super::{AuditError, Result};

/// The most events committed in one transaction; more queued events go in the next batch.
const MAX_BATCH: usize = 4096;

/// How long the writer gathers events before committing, unless a caller waits for durability
/// (a durable record or a flush commits at once). Group commit keeps the commit rate bounded
/// under load: at most one commit per window instead of one per event.
const GROUP_COMMIT_WINDOW: Duration = Duration::from_millis(20);

/// The longest a recorded event stays off the disk under sustained load. Within it, commits are
/// deferred (visible, not yet fsynced); the first commit after it, or the first window without
/// new events, is durable. An fsync per window cost a loaded gate a sixth of its throughput on a
/// virtual disk; one per second costs nothing measurable. Callers who need an event on disk
/// before they go on use [`AuditSink::record_durable`] or [`AuditSink::flush`], which never wait
/// for this.
const DURABLE_INTERVAL: Duration = Duration::from_secs(1);

/// The current time in milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

enum Message {
    Event { at_ms: u64, event: Box<AuditEvent>, done: Option<oneshot::Sender<std::result::Result<u64, String>>> },
    Flush(oneshot::Sender<std::result::Result<(), String>>),
}

/// A function told of every event an [`AuditSink`] records (see [`AuditSink::observe`]).
type AuditObserver = Arc<dyn Fn(&AuditEvent) + Send + Sync>;

/// The observers of a sink and its clones.
#[derive(Default)]
struct Observers(RwLock<Vec<AuditObserver>>);

impl Observers {
    fn notify(&self, event: &AuditEvent) {
        let observers = self.0.read().unwrap_or_else(|e| e.into_inner());
        for observer in observers.iter() {
            observer(event);
        }
    }
}

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.0.read().map_or(0, |o| o.len());
        write!(f, "Observers({count})")
    }
}

/// Records audit events without blocking the caller.
///
/// Events go over an unbounded channel to a background task, which appends everything queued
/// since its last write in one transaction (up to 4096 events per transaction), in the order the
/// events were recorded. When each is on disk is tabulated in the [module docs](super). Cloning
/// is cheap; all clones feed the same task, which ends once every clone is dropped and the queue
/// is written.
///
/// Before the runtime shuts down, [`AuditSink::flush`] makes sure nothing queued is lost.
///
/// A failed write is logged with `tracing::error!` and reported to the callers waiting in
/// [`AuditSink::record_durable`] and [`AuditSink::flush`]; the events of that batch are not
/// recorded.
#[derive(Debug, Clone)]
pub struct AuditSink {
    tx: mpsc::UnboundedSender<Message>,
    /// Rung by callers who wait for a commit, to cut the group-commit window short.
    urgent: Arc<Notify>,
    /// Told of every event before it is queued (metrics).
    observers: Arc<Observers>,
}

impl AuditSink {
    /// Starts the background task on the current tokio runtime.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn spawn(log: AuditLog) -> AuditSink {
        let (tx, rx) = mpsc::unbounded_channel();
        let urgent = Arc::new(Notify::new());
        tokio::spawn(run(log, rx, urgent.clone()));
        AuditSink { tx, urgent, observers: Arc::new(Observers::default()) }
    }

    /// Registers `observer`, called with every event recorded from now on through this sink or
    /// any of its clones, on the recording thread, before the event is queued (whether or not it
    /// is later committed). Observers must be quick and must not record audit events themselves.
    pub fn observe(&self, observer: Arc<dyn Fn(&AuditEvent) + Send + Sync>) {
        self.observers.0.write().unwrap_or_else(|e| e.into_inner()).push(observer);
    }

    /// Queues `event`, stamped with the current time. Never blocks. If the background task is
    /// gone, the event is lost and an error is logged.
    pub fn record(&self, event: AuditEvent) {
        self.record_at(now_ms(), event);
    }

    /// Queues `event` with the given time (ms since the Unix epoch). Never blocks.
    pub fn record_at(&self, at_ms: u64, event: AuditEvent) {
        self.observers.notify(&event);
        let message = Message::Event { at_ms, event: Box::new(event), done: None };
        if let Err(mpsc::error::SendError(Message::Event { event, .. })) = self.tx.send(message) {
            tracing::error!(kind = event.kind(), "audit writer has stopped; event not recorded: {event:?}");
        }
    }

    /// Records `event`, stamped with the current time, and returns its sequence number once the
    /// transaction holding it has committed durably.
    ///
    /// # Errors
    /// [`AuditError::WriteFailed`] if its batch could not be written, [`AuditError::SinkClosed`] if
    /// the background task is gone.
    pub async fn record_durable(&self, event: AuditEvent) -> Result<u64> {
        self.observers.notify(&event);
        let (done, wait) = oneshot::channel();
        let message = Message::Event { at_ms: now_ms(), event: Box::new(event), done: Some(done) };
        self.tx.send(message).map_err(|_| AuditError::SinkClosed)?;
        self.urgent.notify_one();
        match wait.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(message)) => Err(AuditError::WriteFailed(message)),
            Err(_) => Err(AuditError::SinkClosed),
        }
    }

    /// Returns once every event recorded before this call has been committed.
    ///
    /// # Errors
    /// [`AuditError::WriteFailed`] if a batch written since the previous flush failed (those
    /// events will never be committed; each failure is reported to one flush),
    /// [`AuditError::SinkClosed`] if the background task is gone.
    pub async fn flush(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Message::Flush(done)).map_err(|_| AuditError::SinkClosed)?;
        self.urgent.notify_one();
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(AuditError::WriteFailed(message)),
            Err(_) => Err(AuditError::SinkClosed),
        }
    }
}

/// Waits up to [`GROUP_COMMIT_WINDOW`] for more events unless someone waits for a commit, then
/// takes whatever is queued. Sleeping instead of receiving means senders do not wake the writer
/// once per event.
async fn gather(rx: &mut mpsc::UnboundedReceiver<Message>, queue: &mut Vec<Message>, urgent: &Notify) {
    if !queue.iter().any(Message::wants_commit) {
        tokio::select! {
            () = tokio::time::sleep(GROUP_COMMIT_WINDOW) => {}
            () = urgent.notified() => {}
        }
    }
    while queue.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(message) => queue.push(message),
            Err(_) => break,
        }
    }
}

impl Message {
    /// Whether a caller is waiting for this message's batch to commit.
    fn wants_commit(&self) -> bool {
        matches!(self, Message::Flush(_) | Message::Event { done: Some(_), .. })
    }
}

async fn run(log: AuditLog, mut rx: mpsc::UnboundedReceiver<Message>, urgent: Arc<Notify>) {
    let mut queue = Vec::with_capacity(64);
    // A failed batch since the last flush was answered: the next flush reports it, since the
    // events recorded before that flush will never be committed.
    let mut unreported_failure: Option<String> = None;
    // Deferred commits not yet followed by a durable one, and when the last durable one was.
    let mut deferred = false;
    let mut last_durable = Instant::now();
    loop {
        if deferred {
            // A window without new events ends the load: make what it deferred durable now.
            match tokio::time::timeout(GROUP_COMMIT_WINDOW, rx.recv_many(&mut queue, MAX_BATCH)).await {
                Ok(0) => {
                    // Every sender is gone: nothing more will come to carry the deferred commits.
                    // A failure is logged by make_durable, and there is no one left to tell.
                    let _ = make_durable(&log).await;
                    break;
                }
                Ok(_) => {}
                Err(_) => {
                    deferred = false;
                    match make_durable(&log).await {
                        Ok(()) => last_durable = Instant::now(),
                        // The next batch is committed durably, which tries again.
                        Err(message) => unreported_failure = Some(message),
                    }
                    continue;
                }
            }
        } else if rx.recv_many(&mut queue, MAX_BATCH).await == 0 {
            break;
        }
        gather(&mut rx, &mut queue, &urgent).await;
        let commit = if queue.iter().any(Message::wants_commit) || last_durable.elapsed() >= DURABLE_INTERVAL {
            Commit::Durable
        } else {
            Commit::Deferred
        };
        let mut events = Vec::with_capacity(queue.len());
        let mut waiters = Vec::with_capacity(queue.len());
        let mut flushes = Vec::new();
        for message in queue.drain(..) {
            match message {
                Message::Event { at_ms, event, done } => {
                    events.push((at_ms, *event));
                    waiters.push(done);
                }
                Message::Flush(done) => flushes.push(done),
            }
        }
        let count = events.len();
        // Only flushes leave the batch empty, and they are durable: with deferred commits before
        // them, the empty durable append writes those out.
        let result = if events.is_empty() && !deferred {
            Ok(Vec::new())
        } else {
            on_blocking_thread(&log, move |log| log.append_with(events, commit)).await
        };
        match result {
            Ok(seqs) => {
                match commit {
                    Commit::Durable => {
                        deferred = false;
                        last_durable = Instant::now();
                    }
                    Commit::Deferred => deferred = true,
                }
                for (done, seq) in waiters.into_iter().zip(seqs) {
                    if let Some(done) = done {
                        let _ = done.send(Ok(seq));
                    }
                }
                if !flushes.is_empty() {
                    let answer = unreported_failure.take().map_or(Ok(()), Err);
                    for done in flushes {
                        let _ = done.send(answer.clone());
                    }
                }
            }
            Err(message) => {
                tracing::error!(events = count, "audit write failed, {count} events not recorded: {message}");
                for done in waiters.into_iter().flatten() {
                    let _ = done.send(Err(message.clone()));
                }
                if flushes.is_empty() {
                    unreported_failure = Some(message);
                } else {
                    unreported_failure = None;
                    for done in flushes {
                        let _ = done.send(Err(message.clone()));
                    }
                }
            }
        }
    }
}

/// Commits durably everything deferred so far; on failure, logs it and returns the message.
async fn make_durable(log: &AuditLog) -> std::result::Result<(), String> {
    on_blocking_thread(log, AuditLog::make_durable).await.map_err(|reason| {
        let message = format!("the audit log could not make its deferred commits durable: {reason}");
        tracing::error!("{message}");
        message
    })
}

/// Runs `write` on the blocking pool (redb blocks on disk I/O) and turns its failure, or the
/// task's, into the message the waiters are given.
async fn on_blocking_thread<T: Send + 'static>(
    log: &AuditLog,
    write: impl FnOnce(&AuditLog) -> Result<T> + Send + 'static,
) -> std::result::Result<T, String> {
    let log = log.clone();
    match tokio::task::spawn_blocking(move || write(&log)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("the audit write task failed: {e}")),
    }
}
