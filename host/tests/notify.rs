//! Webhook notifications end to end: audit events recorded into a real sink over a temporary
//! store, the notifier attached to it, and a local webhook server receiving the deliveries.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use operator_host::audit::{AuditEvent, AuditLog, AuditSink, now_ms};
use operator_host::config::Config;
use operator_host::monitor::tickets::{TicketStatus, state_change};
use operator_host::notify::{NotificationsConfig, Notifier, RetryConfig, WebhookConfig};
use operator_host::store::Store;
use serde_json::Value;

/// A delivery the server accepted.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    content_type: Option<String>,
    authorization: Option<String>,
    body: Value,
}

/// The webhook server's memory.
#[derive(Debug, Default)]
struct Hook {
    /// Every request, answered or not.
    hits: AtomicUsize,
    /// Bodies already refused once by `/flaky/…`.
    refused: Mutex<HashSet<String>>,
    /// Deliveries answered 200.
    received: Mutex<Vec<Received>>,
}

impl Hook {
    fn received(&self, path: &str) -> Vec<Received> {
        self.received.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }
}

/// `/flaky/{name}`: 500 the first time a body arrives, 200 when it comes again.
/// `/ok/{name}`: 200. `/bad`: 400. `/stuck`: never answers.
async fn handle(State(hook): State<Arc<Hook>>, uri: Uri, headers: HeaderMap, body: String) -> StatusCode {
    hook.hits.fetch_add(1, Ordering::SeqCst);
    let path = uri.path().to_owned();
    if path == "/stuck" {
        std::future::pending::<()>().await;
    }
    if path == "/bad" {
        return StatusCode::BAD_REQUEST;
    }
    if path.starts_with("/flaky/") && hook.refused.lock().unwrap().insert(body.clone()) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    hook.received.lock().unwrap().push(Received {
        path,
        content_type: header("content-type"),
        authorization: header("authorization"),
        body: serde_json::from_str(&body).expect("the body is JSON"),
    });
    StatusCode::OK
}

async fn serve() -> (String, Arc<Hook>) {
    let hook = Arc::new(Hook::default());
    let app = Router::new().fallback(post(handle)).with_state(hook.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, hook)
}

/// A sink over a temporary store (kept alive by the returned directory).
fn sink() -> (tempfile::TempDir, AuditSink) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = AuditLog::new(store).unwrap();
    (dir, AuditSink::spawn(log))
}

fn webhook(url: String, kind: &str) -> WebhookConfig {
    WebhookConfig { url, kind: kind.into(), events: None, bearer_token_env: None }
}

/// Fast retries, for tests.
fn quick(webhooks: Vec<WebhookConfig>) -> NotificationsConfig {
    NotificationsConfig {
        webhooks,
        retry: RetryConfig { max_attempts: 4, base_ms: 10, max_ms: 50 },
        ..NotificationsConfig::default()
    }
}

fn ticket_opened(id: &str) -> AuditEvent {
    state_change(id, None, TicketStatus::Open, "leaders crowd store 1: 62% of the leaders", "monitor")
}

fn approval_needed(id: &str) -> AuditEvent {
    AuditEvent::StateChange {
        subject: "action".into(),
        id: id.into(),
        from: None,
        to: "awaiting-approval".into(),
        reason: "transfer-leader region=12 to=4: diagnosis of T-000001".into(),
        actor: "diagnoser:rules".into(),
    }
}

#[tokio::test]
async fn ticket_opened_and_approval_needed_arrive_as_json_and_slack_after_a_retry() {
    let (base, hook) = serve().await;
    // The token comes from the environment; cargo sets CARGO_PKG_NAME for the test process, so
    // the test needs no variable of its own.
    let text = format!(
        r#"
[notifications]
retry = {{ max_attempts = 3, base_ms = 10, max_ms = 50 }}

[[notifications.webhooks]]
url = "{base}/flaky/json"
bearer_token_env = "CARGO_PKG_NAME"

[[notifications.webhooks]]
url = "{base}/flaky/slack"
kind = "slack"
events = ["ticket-opened", "approval-needed"]
"#
    );
    let config = Config::parse(&text, "operator.toml").unwrap();
    let resolved = config.resolve().unwrap();
    let notifier = Notifier::new(&resolved.config.notifications).unwrap();
    let (_dir, sink) = sink();
    notifier.attach(&sink);

    let before = now_ms();
    sink.record(ticket_opened("T-000001"));
    sink.record(AuditEvent::note("operator-host started")); // not news
    sink.record_durable(approval_needed("A-000003")).await.unwrap();
    assert_eq!(notifier.flush(Duration::from_secs(30)).await, 0);
    sink.flush().await.unwrap();

    let stats = notifier.stats();
    assert_eq!((stats.queued, stats.sent, stats.retries, stats.failed), (4, 4, 4, 0), "{stats:?}");
    assert_eq!(hook.hits.load(Ordering::SeqCst), 8, "each delivery: a 500, then a 200");

    let json = hook.received("/flaky/json");
    assert_eq!(json.len(), 2);
    for delivery in &json {
        assert_eq!(delivery.content_type.as_deref(), Some("application/json"));
        assert_eq!(delivery.authorization.as_deref(), Some(concat!("Bearer ", env!("CARGO_PKG_NAME"))));
    }
    let opened = &json[0].body;
    assert_eq!(opened["event"], "ticket-opened");
    assert_eq!(opened["title"], "Ticket T-000001 opened");
    assert_eq!(opened["text"], "leaders crowd store 1: 62% of the leaders");
    assert_eq!(opened["fields"]["ticket"], "T-000001");
    let at_ms = opened["at_ms"].as_u64().unwrap();
    assert!(at_ms >= before && at_ms <= now_ms(), "{at_ms}");
    let approval = &json[1].body;
    assert_eq!(approval["event"], "approval-needed");
    assert_eq!(approval["title"], "Action A-000003 needs approval");
    assert_eq!(approval["fields"]["approve"], "operator-host actions approve A-000003 --reason \"…\"");
    assert_eq!(approval["fields"]["reject"], "operator-host actions reject A-000003 --reason \"…\"");
    let text = approval["text"].as_str().unwrap();
    assert!(text.contains("transfer-leader region=12 to=4"), "{text}");
    assert!(text.contains("operator-host actions approve A-000003 --reason \"…\""), "{text}");
    for key in ["event", "title", "text", "fields", "at_ms"] {
        assert!(approval.get(key).is_some(), "{key} missing from {approval}");
    }

    let slack = hook.received("/flaky/slack");
    assert_eq!(slack.len(), 2);
    assert_eq!(slack[0].authorization, None, "the token belongs to the other webhook");
    let message = &slack[1].body;
    assert!(message["text"].as_str().unwrap().starts_with("Action A-000003 needs approval: "), "{message}");
    let blocks = message["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert_eq!(blocks[0]["text"]["text"], "Action A-000003 needs approval");
    assert_eq!(blocks[1]["type"], "section");
    assert_eq!(blocks[1]["text"]["type"], "mrkdwn");
    let fields: Vec<&str> =
        blocks[2]["fields"].as_array().unwrap().iter().map(|f| f["text"].as_str().unwrap()).collect();
    assert!(fields.contains(&"*approve*\n`operator-host actions approve A-000003 --reason \"…\"`"), "{fields:?}");
    assert!(fields.contains(&"*reject*\n`operator-host actions reject A-000003 --reason \"…\"`"), "{fields:?}");
    assert_eq!(blocks.last().unwrap()["type"], "context");
    assert_eq!(slack[0].body["blocks"][0]["text"]["text"], "Ticket T-000001 opened");
}

#[tokio::test]
async fn a_4xx_is_not_retried() {
    let (base, hook) = serve().await;
    let notifier = Notifier::new(&quick(vec![webhook(format!("{base}/bad"), "json")])).unwrap();
    let (_dir, sink) = sink();
    notifier.attach(&sink);
    sink.record(ticket_opened("T-000002"));
    assert_eq!(notifier.flush(Duration::from_secs(30)).await, 0);
    assert_eq!(hook.hits.load(Ordering::SeqCst), 1);
    let stats = notifier.stats();
    assert_eq!((stats.sent, stats.failed, stats.retries), (0, 1, 0), "{stats:?}");
}

#[tokio::test]
async fn duplicates_within_the_window_are_sent_once() {
    let (base, hook) = serve().await;
    let notifier = Notifier::new(&quick(vec![webhook(format!("{base}/ok/json"), "json")])).unwrap();
    let (_dir, sink) = sink();
    notifier.attach(&sink);
    let diagnosed = || {
        AuditEvent::note("ticket T-000005 diagnosed by rules: leaders crowd store 1 (1 recommendation(s), 0 dropped)")
    };
    for _ in 0..3 {
        sink.record(ticket_opened("T-000005"));
        sink.record(diagnosed());
        // The ticket resolving and coming back within the window is the same problem.
        sink.record(state_change("T-000005", Some(TicketStatus::Resolved), TicketStatus::Open, "back", "monitor"));
    }
    sink.record(ticket_opened("T-000006"));
    assert_eq!(notifier.flush(Duration::from_secs(30)).await, 0);
    let received = hook.received("/ok/json");
    let titles: Vec<&str> = received.iter().map(|r| r.body["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["Ticket T-000005 opened", "Ticket T-000005 diagnosed by rules", "Ticket T-000006 opened"]);
    assert_eq!(notifier.stats().suppressed, 7);
    sink.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_webhook_does_not_block_recording() {
    let (base, hook) = serve().await;
    let healthy =
        WebhookConfig { events: Some(vec!["approval-needed".into()]), ..webhook(format!("{base}/ok/json"), "json") };
    let mut config = quick(vec![webhook(format!("{base}/stuck"), "json"), healthy]);
    config.queue_capacity = 2;
    config.timeout_ms = 300_000;
    let notifier = Notifier::new(&config).unwrap();
    let (_dir, sink) = sink();
    notifier.attach(&sink);

    let mut slowest = Duration::ZERO;
    for i in 0..50 {
        let event = ticket_opened(&format!("T-{i:06}"));
        let started = Instant::now();
        sink.record(event);
        slowest = slowest.max(started.elapsed());
        if i == 0 {
            // Let the stuck webhook's worker take the first delivery and hang on it.
            let deadline = Instant::now() + Duration::from_secs(10);
            while hook.hits.load(Ordering::SeqCst) < 1 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    let started = Instant::now();
    sink.record_durable(approval_needed("A-000009")).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "a durable record waited {:?}", started.elapsed());
    assert!(slowest < Duration::from_millis(250), "recording took {slowest:?}");

    // The healthy webhook is not held up by the stuck one.
    let deadline = Instant::now() + Duration::from_secs(30);
    while hook.received("/ok/json").is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hook.received("/ok/json")[0].body["event"], "approval-needed");
    // The stuck webhook holds one delivery in flight and two queued; the other 48 were dropped.
    let stats = notifier.stats();
    assert_eq!(stats.dropped, 51 - 3, "{stats:?}");
    assert_eq!(stats.queued, 3 + 1, "{stats:?}");
    assert_eq!(stats.sent, 1, "{stats:?}");
    let started = Instant::now();
    assert_eq!(notifier.flush(Duration::from_millis(200)).await, 3, "the stuck deliveries are still pending");
    assert!(started.elapsed() < Duration::from_secs(5));
    sink.flush().await.unwrap();
}
