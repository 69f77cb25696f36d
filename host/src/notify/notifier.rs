//! Delivery: a bounded queue and a worker per webhook, retries with backoff, and a flush for
//! shutdown. Recording never waits for a webhook.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use super::config::{NotificationsConfig, RetryConfig, WebhookTarget};
use super::dedup::Dedup;
use super::event::{Notification, from_audit};
use super::render::render;
use crate::audit::{AuditEvent, AuditSink, now_ms};

/// The most bytes of an error reply quoted in the log.
const MAX_QUOTED_REPLY: usize = 200;

/// Counts since the notifier started. Deliveries count once per webhook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotifierStats {
    /// Deliveries queued.
    pub queued: u64,
    /// Deliveries a webhook accepted (2xx).
    pub sent: u64,
    /// Deliveries given up: a 4xx or other definite refusal, or every attempt failed.
    pub failed: u64,
    /// Attempts repeated after a transient failure.
    pub retries: u64,
    /// Deliveries dropped because the webhook's queue was full.
    pub dropped: u64,
    /// Notifications not sent because the same key was sent within the deduplication window.
    pub suppressed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    queued: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    dropped: AtomicU64,
    suppressed: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What the notifier and its workers share.
#[derive(Debug, Default)]
struct Shared {
    counters: Counters,
    /// Deliveries queued or in progress.
    pending: AtomicUsize,
    /// Rung when `pending` drops to zero.
    idle: Notify,
}

impl Shared {
    fn finished_one(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// One notification waiting for delivery.
#[derive(Debug)]
struct Queued {
    notification: Notification,
    at_ms: u64,
}

#[derive(Debug)]
struct Webhook {
    target: Arc<WebhookTarget>,
    tx: mpsc::Sender<Arc<Queued>>,
}

#[derive(Debug)]
struct Inner {
    webhooks: Vec<Webhook>,
    dedup: Mutex<Dedup>,
    shared: Arc<Shared>,
}

/// Sends notifications to the configured webhooks.
///
/// [`Notifier::observe`] (what [`Notifier::attach`] registers with the audit sink) maps an audit
/// event to a notification ([`super::from_audit`]), drops it if the same key was sent within
/// `dedup_secs`, and offers it to the queue of every webhook that takes that event, without ever
/// waiting: when a queue is full the delivery is dropped, with a warning and a count in
/// [`NotifierStats::dropped`].
///
/// Each webhook has its own worker task, so a slow or dead webhook delays only its own
/// deliveries. A worker POSTs one notification at a time, in order; a timeout, a connection
/// error, a 5xx, a 408 or a 429 is retried with exponential backoff and full jitter (honouring
/// `Retry-After`, up to `retry.max_ms`) until `retry.max_attempts` attempts have been made; any
/// other status, 4xx included, is final. Redirects are not followed and no proxy is used.
///
/// Cloning is cheap; clones share the queues.
#[derive(Debug, Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl Notifier {
    /// Checks the configuration, reads the tokens and starts one worker per webhook on the
    /// current tokio runtime.
    ///
    /// # Errors
    /// Every problem with the configuration, or the HTTP client could not be built.
    ///
    /// # Panics
    /// When called outside a tokio runtime with webhooks configured.
    pub fn new(config: &NotificationsConfig) -> anyhow::Result<Notifier> {
        let targets = config.targets().map_err(|problems| {
            anyhow::anyhow!("the notifications have {} problem(s):\n  - {}", problems.len(), problems.join("\n  - "))
        })?;
        let shared = Arc::new(Shared::default());
        let mut webhooks = Vec::with_capacity(targets.len());
        if !targets.is_empty() {
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(Duration::from_millis(config.timeout_ms))
                .user_agent(concat!("operator-host/", env!("CARGO_PKG_VERSION")))
                .build()?;
            for target in targets {
                let target = Arc::new(target);
                let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
                tokio::spawn(worker(client.clone(), target.clone(), config.retry.clone(), rx, shared.clone()));
                webhooks.push(Webhook { target, tx });
            }
        }
        let dedup = Mutex::new(Dedup::new(config.dedup_secs.saturating_mul(1000)));
        Ok(Notifier { inner: Arc::new(Inner { webhooks, dedup, shared }) })
    }

    /// Whether no webhook is configured (then nothing is ever sent).
    pub fn is_empty(&self) -> bool {
        self.inner.webhooks.is_empty()
    }

    /// Calls [`Notifier::observe`] for every event `sink` (and its clones) records from now on.
    pub fn attach(&self, sink: &AuditSink) {
        let notifier = self.clone();
        sink.observe(Arc::new(move |event| notifier.observe(event)));
    }

    /// Queues the notification `event` calls for, if any. Never blocks.
    pub fn observe(&self, event: &AuditEvent) {
        if self.inner.webhooks.is_empty() {
            return;
        }
        if let Some(notification) = from_audit(event) {
            self.notify(notification, now_ms());
        }
    }

    /// Queues `notification`, raised at `at_ms`, for every webhook that takes its event, unless
    /// its key was sent within the deduplication window. Never blocks. Returns the number of
    /// webhooks it was queued for.
    pub fn notify(&self, notification: Notification, at_ms: u64) -> usize {
        let inner = &*self.inner;
        let wanted: Vec<&Webhook> = inner.webhooks.iter().filter(|w| w.target.wants(notification.kind)).collect();
        if wanted.is_empty() {
            return 0;
        }
        let admitted = inner.dedup.lock().unwrap_or_else(|e| e.into_inner()).admit(&notification.key, at_ms);
        if !admitted {
            bump(&inner.shared.counters.suppressed);
            tracing::debug!(key = %notification.key, "notification suppressed: sent within the deduplication window");
            return 0;
        }
        let key = notification.key.clone();
        let item = Arc::new(Queued { notification, at_ms });
        let mut queued = 0;
        for webhook in wanted {
            inner.shared.pending.fetch_add(1, Ordering::AcqRel);
            match webhook.tx.try_send(item.clone()) {
                Ok(()) => {
                    queued += 1;
                    bump(&inner.shared.counters.queued);
                }
                Err(e) => {
                    inner.shared.finished_one();
                    bump(&inner.shared.counters.dropped);
                    let why = match e {
                        mpsc::error::TrySendError::Full(_) => "its queue is full",
                        mpsc::error::TrySendError::Closed(_) => "its worker has stopped",
                    };
                    tracing::warn!(
                        webhook = %webhook.target.redacted(),
                        key = %key,
                        "notification dropped for {}: {why}",
                        webhook.target.redacted()
                    );
                }
            }
        }
        if queued == 0 {
            // Nothing went out: let the next occurrence try again.
            inner.dedup.lock().unwrap_or_else(|e| e.into_inner()).forget(&key);
        }
        queued
    }

    /// The counts so far.
    pub fn stats(&self) -> NotifierStats {
        let c = &self.inner.shared.counters;
        NotifierStats {
            queued: c.queued.load(Ordering::Relaxed),
            sent: c.sent.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            suppressed: c.suppressed.load(Ordering::Relaxed),
        }
    }

    /// Deliveries queued or in progress.
    pub fn pending(&self) -> usize {
        self.inner.shared.pending.load(Ordering::Acquire)
    }

    /// Waits until every queued delivery has been sent or given up, for at most `timeout` (for
    /// shutdown). Returns the number still queued or in progress when it returned (0: none).
    pub async fn flush(&self, timeout: Duration) -> usize {
        let shared = &self.inner.shared;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let idle = shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            let left = shared.pending.load(Ordering::Acquire);
            if left == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                let left = shared.pending.load(Ordering::Acquire);
                if left > 0 {
                    tracing::warn!("{left} notification(s) not delivered within {} ms", timeout.as_millis());
                }
                return left;
            }
        }
    }
}

/// The wait before retry `attempt` (1 for the first retry), in milliseconds: full jitter, i.e.
/// `unit` (uniform in [0, 1)) times `min(max_ms, base_ms × 2^(attempt-1))`.
pub fn backoff_ms(retry: &RetryConfig, attempt: u32, unit: f64) -> u64 {
    let exponent = attempt.saturating_sub(1).min(63);
    let ceiling = retry.base_ms.saturating_mul(1u64 << exponent).min(retry.max_ms);
    (ceiling as f64 * unit.clamp(0.0, 1.0)) as u64
}

/// How one attempt failed.
enum Failure {
    /// May pass if tried again; the server may say when.
    Transient { error: String, retry_after: Option<Duration> },
    /// Will not pass.
    Final(String),
}

async fn worker(
    client: reqwest::Client,
    target: Arc<WebhookTarget>,
    retry: RetryConfig,
    mut rx: mpsc::Receiver<Arc<Queued>>,
    shared: Arc<Shared>,
) {
    let name = target.redacted();
    while let Some(item) = rx.recv().await {
        let body = render(target.kind, &item.notification, item.at_ms).to_string();
        let mut attempt = 1;
        loop {
            match attempt_once(&client, &target, &body).await {
                Ok(()) => {
                    bump(&shared.counters.sent);
                    tracing::debug!(webhook = %name, key = %item.notification.key, attempt, "notification delivered");
                    break;
                }
                Err(Failure::Final(error)) => {
                    bump(&shared.counters.failed);
                    tracing::warn!(webhook = %name, key = %item.notification.key, "notification refused by {name}: {error}");
                    break;
                }
                Err(Failure::Transient { error, retry_after }) => {
                    if attempt >= retry.max_attempts {
                        bump(&shared.counters.failed);
                        tracing::warn!(
                            webhook = %name,
                            key = %item.notification.key,
                            "notification not delivered to {name} after {attempt} attempt(s): {error}"
                        );
                        break;
                    }
                    let mut wait = Duration::from_millis(backoff_ms(&retry, attempt, rand::random::<f64>()));
                    if let Some(asked) = retry_after {
                        wait = wait.max(asked.min(Duration::from_millis(retry.max_ms)));
                    }
                    tracing::info!(
                        webhook = %name,
                        key = %item.notification.key,
                        "notification attempt {attempt} to {name} failed ({error}); retrying in {} ms",
                        wait.as_millis()
                    );
                    bump(&shared.counters.retries);
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
        shared.finished_one();
    }
}

async fn attempt_once(client: &reqwest::Client, target: &WebhookTarget, body: &str) -> Result<(), Failure> {
    let mut request =
        client.post(target.url.clone()).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_owned());
    if let Some(token) = &target.bearer_token {
        request = request.bearer_auth(token);
    }
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(e) => return Err(Failure::Transient { error: describe(e), retry_after: None }),
    };
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let quoted = match response.chunk().await {
        Ok(Some(bytes)) => {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_QUOTED_REPLY)]).trim().to_owned();
            if text.is_empty() { String::new() } else { format!(": {text}") }
        }
        _ => String::new(),
    };
    let error = format!("HTTP {status}{quoted}");
    if status.is_server_error()
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
    {
        Err(Failure::Transient { error, retry_after })
    } else {
        Err(Failure::Final(error))
    }
}

/// A transport error without its URL (a webhook's URL may be its secret), with its causes.
fn describe(error: reqwest::Error) -> String {
    let timeout = error.is_timeout();
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if timeout { format!("timed out ({text})") } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap_with_full_jitter() {
        let retry = RetryConfig { max_attempts: 5, base_ms: 1_000, max_ms: 60_000 };
        let almost_one = 0.999_999_9;
        assert_eq!(backoff_ms(&retry, 1, almost_one), 999);
        assert_eq!(backoff_ms(&retry, 2, almost_one), 1_999);
        assert_eq!(backoff_ms(&retry, 3, almost_one), 3_999);
        assert_eq!(backoff_ms(&retry, 7, almost_one), 59_999);
        assert_eq!(backoff_ms(&retry, 200, almost_one), 59_999, "no overflow");
        assert_eq!(backoff_ms(&retry, 3, 0.0), 0, "full jitter starts at zero");
        assert_eq!(backoff_ms(&retry, 3, 0.5), 2_000);
    }

    #[tokio::test]
    async fn without_webhooks_nothing_is_queued() {
        let notifier = Notifier::new(&NotificationsConfig::default()).unwrap();
        assert!(notifier.is_empty());
        notifier.observe(&AuditEvent::StateChange {
            subject: "ticket".into(),
            id: "T-1".into(),
            from: None,
            to: "open".into(),
            reason: "r".into(),
            actor: "monitor".into(),
        });
        assert_eq!(notifier.stats(), NotifierStats::default());
        assert_eq!(notifier.flush(Duration::from_millis(10)).await, 0);
    }

    #[tokio::test]
    async fn a_bad_configuration_is_refused_with_its_problems() {
        let config = NotificationsConfig {
            webhooks: vec![super::super::WebhookConfig {
                url: "mailto:ops@example.com".into(),
                kind: "json".into(),
                events: None,
                bearer_token_env: None,
            }],
            ..NotificationsConfig::default()
        };
        let error = Notifier::new(&config).unwrap_err().to_string();
        assert!(error.contains("notifications.webhooks[0].url"), "{error}");
    }

    #[tokio::test]
    async fn duplicates_and_unwanted_events_are_not_queued_and_a_full_queue_drops() {
        // A port nothing listens on: deliveries fail; the point is what gets queued.
        let config = NotificationsConfig {
            webhooks: vec![super::super::WebhookConfig {
                url: "http://127.0.0.1:9/hook".into(),
                kind: "json".into(),
                events: Some(vec!["ticket-opened".into()]),
                bearer_token_env: None,
            }],
            queue_capacity: 1,
            retry: RetryConfig { max_attempts: 1, base_ms: 1, max_ms: 1 },
            ..NotificationsConfig::default()
        };
        let notifier = Notifier::new(&config).unwrap();
        let opened = |id: &str| Notification {
            kind: super::super::EventKind::TicketOpened,
            key: format!("ticket-opened:{id}"),
            title: format!("Ticket {id} opened"),
            text: String::new(),
            fields: Vec::new(),
        };
        let killed = Notification { kind: super::super::EventKind::KillSwitch, ..opened("x") };
        // On a current-thread runtime the worker cannot run before we yield: the queue holds one.
        assert_eq!(notifier.notify(opened("T-1"), 1_000), 1);
        assert_eq!(notifier.notify(opened("T-1"), 2_000), 0, "a duplicate within the window");
        assert_eq!(notifier.notify(killed, 2_000), 0, "an event the webhook does not take");
        assert_eq!(notifier.notify(opened("T-2"), 2_000), 0, "the queue is full");
        let stats = notifier.stats();
        assert_eq!((stats.queued, stats.suppressed, stats.dropped), (1, 1, 1));
        // The dropped one was forgotten by deduplication: it may be sent when it comes again.
        assert_eq!(notifier.flush(Duration::from_secs(10)).await, 0);
        assert_eq!(notifier.notify(opened("T-2"), 3_000), 1);
        assert_eq!(notifier.flush(Duration::from_secs(10)).await, 0);
        assert_eq!(notifier.stats().failed, 2);
    }
}
