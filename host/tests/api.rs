//! The daemon's HTTP API over a real data directory: the built-in plugins, the executor, tickets
//! and the audit log, served on loopback and driven with an HTTP client.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use operator_host::actions::executor::Executor;
use operator_host::actions::policy::{ActionsConfig, ApprovalPolicy, ApprovalRule, Mode};
use operator_host::actions::store::ActionStore;
use operator_host::actions::workflow::{EngineSettings, WorkflowEngine};
use operator_host::actions::workflow_store::WorkflowStore;
use operator_host::api::{self, ApiState, ApiToken, Metrics, PluginSummary};
use operator_host::audit::{AuditFilter, AuditLog, AuditSink, now_ms};
use operator_host::config::{Config, PluginConfig};
use operator_host::monitor::LatestObservation;
use operator_host::monitor::tickets::{Ticket, TicketEvent, TicketStatus, TicketStore};
use operator_host::runtime::gate::EndpointConfig;
use operator_host::runtime::grants::GrantSpec;
use operator_host::runtime::{CallContext, Runtime};
use operator_host::store::Store;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tikv_sim::{ClusterSpec, SimCluster};
use tokio::sync::oneshot;

/// A served API over a temporary data directory.
struct Served {
    dir: tempfile::TempDir,
    base: String,
    token: String,
    client: reqwest::Client,
    state: Arc<ApiState>,
    log: AuditLog,
    sink: AuditSink,
    _stop: oneshot::Sender<()>,
}

/// `log` needs approval (so approve/reject have something to act on); everything else as default.
fn actions_config() -> ActionsConfig {
    ActionsConfig {
        approval: ApprovalPolicy {
            overrides: BTreeMap::from([("log".to_owned(), ApprovalRule::Required)]),
            ..ApprovalPolicy::default()
        },
        ..ActionsConfig::default()
    }
}

async fn state_in(dir: &Path) -> (Arc<ApiState>, AuditLog, AuditSink) {
    state_with(dir, Config { actions: actions_config(), ..Config::default() }).await
}

/// The API's state over `dir` with `config` (its endpoints, grants and actions settings).
async fn state_with(dir: &Path, config: Config) -> (Arc<ApiState>, AuditLog, AuditSink) {
    let resolved = config.resolve().unwrap();
    let store = Store::open(dir).unwrap();
    let log = AuditLog::new(store.clone()).unwrap();
    let sink = AuditSink::spawn(log.clone());
    let metrics = Arc::new(Metrics::new());
    metrics.attach(&sink);
    let runtime = Runtime::new(dir, &resolved, sink.clone()).unwrap();
    let set = runtime.discover(dir, &resolved);
    let subject = set.get("tikv").expect("the built-in tikv plugin loads").clone();
    let tools = set.get("tools").cloned();
    let tickets = TicketStore::new(store.clone());
    let latest = Arc::new(RwLock::new(None));
    let executor = Arc::new(
        Executor::new(
            subject.clone(),
            tools.clone(),
            ActionStore::new(store.clone()),
            tickets.clone(),
            sink.clone(),
            config.actions.clone(),
            30_000,
            latest.clone(),
        )
        .await
        .unwrap(),
    );
    let settings =
        EngineSettings { approval: config.actions.approval.clone(), stale_after_ms: 30_000, latest: latest.clone() };
    let workflows = WorkflowEngine::new(
        executor.clone(),
        subject.clone(),
        tools,
        WorkflowStore::new(store),
        sink.clone(),
        settings,
    )
    .await
    .unwrap();
    let token = ApiToken::load_or_create(dir).unwrap();
    let state = ApiState::new(
        executor,
        Arc::new(workflows),
        tickets,
        log.clone(),
        sink.clone(),
        PluginSummary::from_set(&set),
        latest,
        subject,
        metrics,
        token,
    );
    (Arc::new(state), log, sink)
}

async fn serve() -> Served {
    let config = Config { actions: actions_config(), ..Config::default() };
    serve_with(config).await
}

async fn serve_with(config: Config) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let (state, log, sink) = state_with(dir.path(), config).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let router = api::router(state.clone());
    tokio::spawn(api::serve(listener, router, async {
        let _ = stopped.await;
    }));
    let token = state.token.as_str().to_owned();
    Served { dir, base, token, client: reqwest::Client::new(), state, log, sink, _stop: stop }
}

/// A status and a parsed JSON body (`Value::Null` when it is not JSON).
async fn reply(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

impl Served {
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        reply(self.client.get(format!("{}{path}", self.base)).send().await.unwrap()).await
    }

    async fn text(&self, path: &str) -> (StatusCode, String) {
        let response = self.client.get(format!("{}{path}", self.base)).send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// POSTs `body` with `Authorization: <auth>` when given.
    async fn post_as(&self, auth: Option<&str>, path: &str, body: &Value) -> (StatusCode, Value) {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        reply(request.send().await.unwrap()).await
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let auth = format!("Bearer {}", self.token);
        self.post_as(Some(&auth), path, body).await
    }

    fn seed_ticket(&self, id: &str, status: TicketStatus) {
        let now = now_ms();
        let ticket = Ticket {
            id: id.into(),
            plugin: "tikv".into(),
            invariant: "store-up".into(),
            entity: format!("store-{id}"),
            severity: "critical".into(),
            status,
            message: "store 1 is down".into(),
            evidence: vec![],
            first_seen_ms: now,
            opened_at_ms: now,
            last_seen_ms: now,
            occurrences: 1,
            absent_since_ms: None,
            resolved_at_ms: None,
            resolution: None,
            reopened: 0,
            diagnoses: vec![],
            actions: vec![],
            history: vec![TicketEvent {
                at_ms: now,
                from: None,
                to: status,
                reason: "seeded".into(),
                actor: "test".into(),
            }],
        };
        self.state.tickets.save(&ticket).unwrap();
    }

    /// The audit notes recorded for refused requests.
    async fn refusals(&self) -> Vec<String> {
        self.sink.flush().await.unwrap();
        let filter = AuditFilter { kind: Some("note".into()), ..AuditFilter::default() };
        self.log
            .list(&filter)
            .unwrap()
            .into_iter()
            .filter_map(|r| match r.event {
                operator_host::audit::AuditEvent::Note { message } if message.starts_with("api: refused") => {
                    Some(message)
                }
                _ => None,
            })
            .collect()
    }

    /// Everything a mutating request could change.
    async fn snapshot(&self) -> Value {
        let (_, safety) = self.get("/api/v1/safety").await;
        let (_, tickets) = self.get("/api/v1/tickets?status=all").await;
        let (_, actions) = self.get("/api/v1/actions").await;
        let (_, workflows) = self.get("/api/v1/workflows").await;
        json!({"safety": safety, "tickets": tickets, "actions": actions, "workflows": workflows})
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_routes_refuse_requests_without_the_token_audit_them_and_change_nothing() {
    let api = serve().await;
    api.seed_ticket("T-000001", TicketStatus::Open);
    let (status, created) = api.post("/api/v1/actions", &json!({"name": "log", "params": {"message": "hi"}})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["action"]["id"].as_str().unwrap().to_owned();
    let (status, started) =
        api.post("/api/v1/workflows", &json!({"name": "drain-store", "params": {"store": 1}})).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let run = started["workflow"]["id"].as_str().unwrap().to_owned();
    let before = api.snapshot().await;

    let reason = json!({"reason": "because"});
    let routes: Vec<(String, Value)> = vec![
        ("/api/v1/tickets/T-000001/resolve".into(), reason.clone()),
        ("/api/v1/tickets/T-000001/hold".into(), reason.clone()),
        ("/api/v1/tickets/T-000001/unhold".into(), reason.clone()),
        ("/api/v1/actions".into(), json!({"name": "log", "params": {"message": "again"}})),
        (format!("/api/v1/actions/{id}/approve"), reason.clone()),
        (format!("/api/v1/actions/{id}/reject"), reason.clone()),
        (format!("/api/v1/actions/{id}/cancel"), reason.clone()),
        ("/api/v1/safety/mode".into(), json!({"mode": "execute", "reason": "go"})),
        ("/api/v1/safety/kill-switch".into(), reason.clone()),
        ("/api/v1/safety/release".into(), reason.clone()),
        ("/api/v1/workflows".into(), json!({"name": "drain-store", "params": {"store": 2}})),
        (format!("/api/v1/workflows/{run}/approve"), reason.clone()),
        (format!("/api/v1/workflows/{run}/reject"), reason.clone()),
        (format!("/api/v1/workflows/{run}/cancel"), reason.clone()),
        (format!("/api/v1/workflows/{run}/resume"), json!({})),
    ];
    let wrong = format!("Bearer {}", "0".repeat(64));
    let basic = format!("Basic {}", api.token);
    let mut refused = 0;
    for (path, body) in &routes {
        for auth in [None, Some(wrong.as_str()), Some(basic.as_str()), Some(api.token.as_str())] {
            let (status, reply) = api.post_as(auth, path, body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "POST {path} with {auth:?}: {reply}");
            assert!(reply["error"].as_str().is_some_and(|e| !e.is_empty()), "{reply}");
            refused += 1;
        }
    }
    assert_eq!(api.snapshot().await, before, "a refused request changed something");

    let notes = api.refusals().await;
    assert_eq!(notes.len(), refused, "{notes:#?}");
    for (path, _) in &routes {
        assert!(notes.iter().any(|n| n.contains(&format!("POST {path} from 127.0.0.1"))), "{path}: {notes:#?}");
    }
    assert!(notes.iter().any(|n| n.contains("the bearer token is wrong")));
    assert!(!notes.iter().any(|n| n.contains(&api.token)), "the token must never be recorded");

    let (_, metrics) = api.text("/metrics").await;
    assert!(metrics.contains(&format!("operator_api_unauthorized_total {refused}")), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_switches_round_trip() {
    let api = serve().await;
    let (status, safety) = api.get("/api/v1/safety").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(safety["safety"]["mode"], "observe");
    assert_eq!(safety["safety"]["kill_switch"], false);

    let (status, body) = api.post("/api/v1/safety/mode", &json!({"mode": "execute", "reason": "drill"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["safety"]["mode"], "execute");
    assert_eq!(body["safety"]["by"], "api");
    assert_eq!(api.state.executor.safety().mode, Mode::Execute);

    let (status, body) = api.post("/api/v1/safety/mode", &json!({"mode": "fast", "reason": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("`mode`"), "{body}");
    let (status, body) = api.post("/api/v1/safety/mode", &json!({"mode": "observe"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("`reason`"), "{body}");

    let (status, body) = api.post("/api/v1/safety/release", &json!({"reason": "nothing to release"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // A pending action is cancelled by the kill switch.
    let (status, created) = api.post("/api/v1/actions", &json!({"name": "log", "params": {"message": "x"}})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["action"]["id"].as_str().unwrap().to_owned();
    let (status, body) = api.post("/api/v1/safety/kill-switch", &json!({"reason": "incident", "by": "alice"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["safety"]["kill_switch"], true);
    assert_eq!(body["safety"]["mode"], "observe");
    assert_eq!(body["safety"]["by"], "api:alice");
    assert_eq!(body["cancelled"], json!([id]));
    let (_, action) = api.get(&format!("/api/v1/actions/{id}")).await;
    assert_eq!(action["action"]["status"], "cancelled");

    let (status, body) = api.post("/api/v1/safety/mode", &json!({"mode": "execute", "reason": "too soon"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("kill switch"), "{body}");

    let (status, body) = api.post("/api/v1/safety/release", &json!({"reason": "over"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["safety"]["kill_switch"], false);
    assert_eq!(body["safety"]["mode"], "observe");
    let (status, _) = api.post("/api/v1/safety/mode", &json!({"mode": "execute", "reason": "back"})).await;
    assert_eq!(status, StatusCode::OK);

    // Every switch was audited, in order, with the API as the actor.
    api.sink.flush().await.unwrap();
    let changes: Vec<(String, String)> = api
        .log
        .list(&AuditFilter { kind: Some("state-change".into()), ..AuditFilter::default() })
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.event {
            operator_host::audit::AuditEvent::StateChange { subject, to, actor, .. } if subject == "safety" => {
                Some((to, actor))
            }
            _ => None,
        })
        .collect();
    let expected = [("execute", "api"), ("kill-switch", "api:alice"), ("observe", "api"), ("execute", "api")];
    let expected: Vec<(String, String)> = expected.iter().map(|(a, b)| ((*a).into(), (*b).into())).collect();
    assert_eq!(changes, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_hold_unhold_and_resolve() {
    let api = serve().await;
    api.seed_ticket("T-000001", TicketStatus::Open);
    api.seed_ticket("T-000002", TicketStatus::Resolved);

    let (status, list) = api.get("/api/v1/tickets").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = list["tickets"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["T-000001"], "active tickets by default");
    let (_, all) = api.get("/api/v1/tickets?status=all").await;
    assert_eq!(all["tickets"].as_array().unwrap().len(), 2);
    let (_, resolved) = api.get("/api/v1/tickets?status=resolved").await;
    assert_eq!(resolved["tickets"][0]["id"], "T-000002");
    let (status, body) = api.get("/api/v1/tickets?status=closed").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("`status`"), "{body}");
    let (status, body) = api.get("/api/v1/tickets?state=open").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("`state`"), "{body}");

    let (status, shown) = api.get("/api/v1/tickets/T-000001").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["ticket"]["invariant"], "store-up");
    assert_eq!(shown["ticket"]["status"], "open");
    assert!(shown.as_object().unwrap().contains_key("observation_at_open"));
    assert!(shown.as_object().unwrap().contains_key("latest_observation"));
    let (status, body) = api.get("/api/v1/tickets/T-999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("T-999999"));

    let (status, body) = api.post("/api/v1/tickets/T-000001/unhold", &json!({"reason": "x"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = api.post("/api/v1/tickets/T-000001/hold", &json!({"reason": "disk swap", "by": "bob"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ticket"]["status"], "held");
    assert_eq!(body["ticket"]["history"].as_array().unwrap().last().unwrap()["actor"], "api:bob");
    let (status, _) = api.post("/api/v1/tickets/T-000001/hold", &json!({"reason": "again"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = api.post("/api/v1/tickets/T-000001/unhold", &json!({"reason": "swapped"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ticket"]["status"], "open");
    let (status, body) = api.post("/api/v1/tickets/T-000001/resolve", &json!({"reason": "fixed by hand"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ticket"]["status"], "resolved");
    assert_eq!(body["ticket"]["resolution"], "fixed by hand");
    assert_eq!(api.state.tickets.get("T-000001").unwrap().unwrap().status, TicketStatus::Resolved);
    let (status, _) = api.post("/api/v1/tickets/T-000001/resolve", &json!({"reason": "twice"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = api.post("/api/v1/tickets/T-999999/resolve", &json!({"reason": "x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = api.post("/api/v1/tickets/T-000002/unhold", &json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the body is checked first");
    assert!(body["error"].as_str().unwrap().contains("missing field `reason`"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_are_proposed_decided_and_refused_with_clear_errors() {
    let api = serve().await;
    api.seed_ticket("T-000001", TicketStatus::Open);

    let (status, body) = api.post("/api/v1/actions", &json!({"name": "reboot-everything"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].as_str().unwrap().contains("reboot-everything"), "{body}");

    let (status, body) =
        api.post("/api/v1/actions", &json!({"name": "wait", "params": {"seconds": 0, "colour": "red"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let problems: Vec<&str> = body["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("colour")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("seconds")), "{problems:?}");

    let (status, body) = api.post("/api/v1/actions", &json!({"name": "transfer-leader", "params": {}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let problems = body["problems"].to_string();
    assert!(problems.contains("region") && problems.contains("to-store"), "{body}");

    // Valid, but there is no cluster to check the preconditions against.
    let (status, body) =
        api.post("/api/v1/actions", &json!({"name": "transfer-leader", "params": {"region": 2, "to-store": 1}})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    let (status, body) = api.post("/api/v1/actions", &json!({"name": "log", "ticket": "T-404"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].as_str().unwrap().contains("`ticket`"), "{body}");
    let (status, body) = api.post("/api/v1/actions", &json!({"name": "log", "parameters": {}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("`parameters`"), "{body}");
    let (status, body) = api.post("/api/v1/actions", &json!({"params": {}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("`name`"), "{body}");
    assert!(api.state.executor.actions().is_empty(), "nothing refused was stored");

    let propose = |message: &str| json!({"name": "log", "params": {"message": message}, "ticket": "T-000001", "at_ms": 1_000, "by": "carol"});
    let (status, first) = api.post("/api/v1/actions", &propose("one")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let first = &first["action"];
    assert_eq!(first["status"], "awaiting-approval");
    assert_eq!(first["source"], "api");
    assert_eq!(first["proposed_by"], "api:carol");
    assert_eq!(first["ticket"], "T-000001");
    assert_eq!(first["not_before_ms"], 1_000);
    assert!(first["hold"].as_str().is_some(), "an action awaiting approval says why it waits: {first}");
    let first = first["id"].as_str().unwrap().to_owned();
    let (_, second) = api.post("/api/v1/actions", &propose("two")).await;
    let second = second["action"]["id"].as_str().unwrap().to_owned();
    let (_, third) = api.post("/api/v1/actions", &propose("three")).await;
    let third = third["action"]["id"].as_str().unwrap().to_owned();
    let (_, ticket) = api.get("/api/v1/tickets/T-000001").await;
    assert_eq!(ticket["ticket"]["actions"], json!([first, second, third]));

    let (status, body) = api.post(&format!("/api/v1/actions/{first}/approve"), &json!({"reason": "ok"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["action"]["status"], "ready");
    assert_eq!(body["action"]["decision"]["by"], "api");
    assert!(body["action"]["hold"].as_str().unwrap().contains("observe"), "{body}");
    let (status, body) = api.post(&format!("/api/v1/actions/{first}/approve"), &json!({"reason": "again"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["status"], "ready");

    let (status, body) = api.post(&format!("/api/v1/actions/{second}/reject"), &json!({"reason": "no"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["action"]["status"], "rejected");
    let (status, _) = api.post(&format!("/api/v1/actions/{second}/cancel"), &json!({"reason": "late"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = api.post(&format!("/api/v1/actions/{third}/cancel"), &json!({"reason": "stop"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["action"]["status"], "cancelled");
    let (status, _) = api.post("/api/v1/actions/A-999999/approve", &json!({"reason": "x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, list) = api.get("/api/v1/actions").await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<(&str, &str)> = list["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["id"].as_str().unwrap(), a["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [(third.as_str(), "cancelled"), (second.as_str(), "rejected"), (first.as_str(), "ready")],
        "newest first"
    );
    let (_, ready) = api.get("/api/v1/actions?status=ready").await;
    assert_eq!(ready["actions"].as_array().unwrap().len(), 1);
    let (_, active) = api.get("/api/v1/actions?status=active").await;
    assert_eq!(active["actions"].as_array().unwrap().len(), 1);
    let (status, body) = api.get("/api/v1/actions?status=done").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("awaiting-approval"), "{body}");
    let (status, shown) = api.get(&format!("/api/v1/actions/{first}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["action"]["name"], "log");
    assert_eq!(shown["action"]["params"][0], json!({"name": "message", "value": "one"}));
    let (status, _) = api.get("/api/v1/actions/A-999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_routes_answer_with_their_json_shapes() {
    let api = serve().await;
    api.seed_ticket("T-000001", TicketStatus::Open);
    api.seed_ticket("T-000002", TicketStatus::Held);

    let (status, text) = api.text("/healthz").await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "ok"));

    let (status, body) = api.get("/api/v1/status").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mode"], "observe");
    assert_eq!(body["kill_switch"], false);
    assert_eq!(body["subject"]["name"], "tikv");
    assert_eq!(body["observation"], Value::Null, "nothing observed yet");
    assert_eq!(body["entities"], json!([]));
    assert_eq!(body["tickets"], json!({"open": 1, "held": 1, "resolved": 0}));
    assert_eq!(body["actions"]["awaiting-approval"], 0);
    assert_eq!(body["actions"].as_object().unwrap().len(), 9);
    assert!(body["uptime_secs"].as_u64().is_some());

    let (status, body) = api.get("/api/v1/plugins").await;
    assert_eq!(status, StatusCode::OK);
    let plugins = body["plugins"].as_array().unwrap();
    let tikv = plugins.iter().find(|p| p["name"] == "tikv").unwrap();
    assert_eq!(tikv["world"], "subject");
    assert_eq!(tikv["source"], "built-in");
    assert_eq!(tikv["loaded"], true);
    assert_eq!(tikv["grants"], json!([]));
    assert!(plugins.iter().any(|p| p["name"] == "tools" && p["world"] == "tools"));

    let (status, body) = api.get("/api/v1/audit?kind=plugin-load").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let records = body["records"].as_array().unwrap();
    assert!(records.len() >= 2, "{body}");
    assert!(records.iter().all(|r| r["event"]["kind"] == "plugin-load"));
    assert!(records[0]["hash"].as_str().unwrap().len() == 64);
    let (_, limited) = api.get("/api/v1/audit?limit=1&since=1h").await;
    assert_eq!(limited["records"].as_array().unwrap().len(), 1);
    let (_, none) = api.get(&format!("/api/v1/audit?since={}", now_ms() + 60_000)).await;
    assert_eq!(none["records"], json!([]));
    for (query, field) in [("kind=nope", "`kind`"), ("limit=0", "`limit`"), ("since=later", "`since`"), ("x=1", "`x`")]
    {
        let (status, body) = api.get(&format!("/api/v1/audit?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(body["error"].as_str().unwrap().contains(field), "{query}: {body}");
    }

    let (status, body) = api.get("/api/v1/audit/verify").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["ok"], true, "{body}");
    assert!(body["records"].as_u64().unwrap() >= 2);
    assert_eq!(body["problem"], Value::Null);

    let (status, body) = api.get("/api/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("/api/v1/nothing-here"));
    let (status, body) = api.post("/api/v1/status", &json!({})).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(body["error"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_every_family() {
    let api = serve().await;
    api.seed_ticket("T-000001", TicketStatus::Open);
    api.state.metrics.observe_cycle(0.02);
    api.state.metrics.observe_diagnosis("rules", 0.5, 0, 0);
    // Checking this proposal makes the subject observe, and the gate refuses its requests (the
    // plugin is granted nothing): capability decisions to count.
    let (status, _) =
        api.post("/api/v1/actions", &json!({"name": "transfer-leader", "params": {"region": 2, "to-store": 1}})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let response = api.client.get(format!("{}/metrics", api.base)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let text = response.text().await.unwrap();
    for family in [
        "operator_tickets",
        "operator_actions",
        "operator_safety_execute_mode",
        "operator_safety_kill_switch",
        "operator_diagnosis_duration_seconds",
        "operator_diagnosis_tokens",
        "operator_plugin_call_duration_seconds",
        "operator_plugin_calls",
        "operator_capability_decisions",
        "operator_monitor_cycle_duration_seconds",
        "operator_observation_failures",
        "operator_api_unauthorized",
    ] {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family} missing:\n{text}");
    }
    assert!(text.contains(r#"operator_tickets{status="open"} 1"#), "{text}");
    assert!(text.contains(r#"operator_tickets{status="resolved"} 0"#), "{text}");
    assert!(text.contains(r#"operator_actions{status="ready",outcome="none"} 0"#), "{text}");
    // Executor::new asked both plugins for their catalogue and WorkflowEngine::new the subject
    // for its conditions; the audit observer counted each call.
    assert!(text.contains(r#"operator_plugin_calls_total{plugin="tikv",export="info",outcome="ok"} 2"#), "{text}");
    assert!(text.contains(r#"operator_plugin_call_duration_seconds_count{plugin="tools",export="info"} 1"#));
    assert!(text.contains("operator_monitor_cycle_duration_seconds_count 1"));
    assert!(
        text.contains(r#"operator_capability_decisions_total{plugin="tikv",target="pd",decision="denied"}"#),
        "{text}"
    );
    assert!(text.contains(r#"operator_plugin_calls_total{plugin="tikv",export="observe",outcome="ok"} 1"#), "{text}");
    assert!(text.contains(r#"operator_diagnosis_duration_seconds_count{diagnoser="rules"} 1"#));
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_file_is_private_and_stable() {
    let api = serve().await;
    let path = ApiToken::path(api.dir.path());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), api.token);
    assert_eq!(api.token.len(), 64);
    assert_eq!(ApiToken::load_or_create(api.dir.path()).unwrap().as_str(), api.token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_the_token_when_the_peer_is_unknown_and_the_unix_socket_is_local() {
    let dir = tempfile::tempdir().unwrap();
    let (state, _log, _sink) = state_in(dir.path()).await;
    let token = state.token.as_str().to_owned();

    // Served without peer addresses: nothing shows the peer is local, so reads need the token.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api::router(state.clone())).await });
    let client = reqwest::Client::new();
    let status = |r: reqwest::Response| r.status();
    let anonymous = client.get(format!("{base}/api/v1/safety")).send().await.unwrap();
    assert_eq!(status(anonymous), StatusCode::UNAUTHORIZED);
    let authorised = client.get(format!("{base}/api/v1/safety")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(status(authorised), StatusCode::OK);
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(status(health), StatusCode::OK, "health and metrics stay open");

    // The Unix socket: private, reads open, writes still need the token.
    let dir2 = tempfile::tempdir().unwrap();
    let (state, _log2, _sink2) = state_in(dir2.path()).await;
    let socket = dir2.path().join("api.sock");
    let listener = api::bind_unix(&socket).unwrap();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let token = state.token.as_str().to_owned();
    tokio::spawn(api::serve_unix(listener, api::router(state), std::future::pending()));
    let client = reqwest::Client::builder().unix_socket(socket.clone()).build().unwrap();
    let read = client.get("http://operator/api/v1/safety").send().await.unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let body = json!({"reason": "drill"}).to_string();
    let write = client.post("http://operator/api/v1/safety/kill-switch").body(body.clone()).send().await.unwrap();
    assert_eq!(write.status(), StatusCode::UNAUTHORIZED);
    let write =
        client.post("http://operator/api/v1/safety/kill-switch").bearer_auth(&token).body(body).send().await.unwrap();
    assert_eq!(write.status(), StatusCode::OK);

    // A stale socket is replaced; any other file is not.
    drop(client);
    let plain = dir2.path().join("not-a-socket");
    std::fs::write(&plain, "data").unwrap();
    assert!(api::bind_unix(&plain).is_err());
    assert_eq!(std::fs::read_to_string(&plain).unwrap(), "data");
    assert!(api::bind_unix(&socket).is_ok());
}

/// The workflow state changes in the audit log, as `(id, to, actor)`.
async fn workflow_changes(api: &Served) -> Vec<(String, String, String)> {
    api.sink.flush().await.unwrap();
    api.log
        .list(&AuditFilter { kind: Some("state-change".into()), ..AuditFilter::default() })
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.event {
            operator_host::audit::AuditEvent::StateChange { subject, id, to, actor, .. } if subject == "workflow" => {
                Some((id, to, actor))
            }
            _ => None,
        })
        .collect()
}

fn problems(body: &Value) -> String {
    body["problems"]
        .as_array()
        .map(|p| p.iter().map(|p| p.as_str().unwrap_or("")).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_are_started_shown_decided_and_refused_with_clear_errors() {
    let api = serve().await;
    api.seed_ticket("T-000001", TicketStatus::Open);

    let (status, defs) = api.get("/api/v1/workflows/definitions").await;
    assert_eq!(status, StatusCode::OK, "{defs}");
    let drain = defs["definitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["definition"]["name"] == "drain-store")
        .unwrap_or_else(|| panic!("drain-store is defined: {defs}"));
    assert_eq!(drain["plugin"], "tikv");
    let steps: Vec<&str> =
        drain["definition"]["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(steps, ["evict-leaders", "offline-store"]);
    assert_eq!(defs["refused"], json!({}));

    // Refused starts name what is wrong and store nothing.
    let (status, body) = api.post("/api/v1/workflows", &json!({"name": "drain-everything"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].as_str().unwrap().contains("known: drain-store"), "{body}");
    let (status, body) = api.post("/api/v1/workflows", &json!({"name": "drain-store"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(problems(&body).contains("parameter `store` is required"), "{body}");
    let (status, body) =
        api.post("/api/v1/workflows", &json!({"name": "drain-store", "params": {"store": "four"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(problems(&body).contains("`store` must be a whole number"), "{body}");
    let (status, body) =
        api.post("/api/v1/workflows", &json!({"name": "drain-store", "params": {"store": 1, "colour": "red"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(problems(&body).contains("`colour` is not a parameter of workflow `drain-store`"), "{body}");
    let (status, body) = api.post("/api/v1/workflows", &json!({"name": "drain-store", "params": {"store": [1]}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("`params.store`"), "{body}");
    let (status, body) =
        api.post("/api/v1/workflows", &json!({"name": "drain-store", "params": {"store": 1}, "ticket": "T-404"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].as_str().unwrap().contains("`ticket`"), "{body}");
    let (status, body) = api.post("/api/v1/workflows", &json!({"name": "drain-store", "parameters": {}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("`parameters`"), "{body}");
    let (_, list) = api.get("/api/v1/workflows").await;
    assert_eq!(list["workflows"], json!([]), "nothing refused was stored");

    // Evict-leaders (medium) and offline-store (high) need approval: one covers the run.
    let start =
        |store: u64| json!({"name": "drain-store", "params": {"store": store}, "ticket": "T-000001", "by": "carol"});
    let (status, body) = api.post("/api/v1/workflows", &start(1)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let run = &body["workflow"];
    assert_eq!(run["status"], "awaiting-approval");
    assert_eq!(run["definition"], "drain-store");
    assert_eq!(run["plugin"], "tikv");
    assert_eq!(run["started_by"], "api:carol");
    assert_eq!(run["ticket"], "T-000001");
    assert_eq!(run["params"], json!({"store": "1"}));
    assert_eq!(run["steps"][0]["action"]["action"], "evict-leaders");
    assert_eq!(run["steps"][0]["state"]["state"], "pending");
    assert_eq!(run["steps"][1]["compensation"]["action"], "cancel-offline");
    assert_eq!(run["history"][0]["actor"], "api:carol");
    let first = run["id"].as_str().unwrap().to_owned();
    let (_, body) = api.post("/api/v1/workflows", &start(2)).await;
    let second = body["workflow"]["id"].as_str().unwrap().to_owned();
    let (_, body) = api.post("/api/v1/workflows", &start(3)).await;
    let third = body["workflow"]["id"].as_str().unwrap().to_owned();

    let ids = |list: &Value| -> Vec<String> {
        list["workflows"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
    };
    let (status, list) = api.get("/api/v1/workflows").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&list), [third.clone(), second.clone(), first.clone()], "newest first");
    let (_, waiting) = api.get("/api/v1/workflows?status=awaiting-approval").await;
    assert_eq!(ids(&waiting).len(), 3);
    let (status, body) = api.get("/api/v1/workflows?status=done").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("`status`"), "{body}");
    assert!(body["error"].as_str().unwrap().contains("awaiting-approval"), "{body}");
    let (status, _) = api.get("/api/v1/workflows?state=running").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, shown) = api.get(&format!("/api/v1/workflows/{first}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["workflow"]["id"], first.as_str());
    let (status, body) = api.get("/api/v1/workflows/W-999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("W-999999"), "{body}");

    let (status, body) =
        api.post(&format!("/api/v1/workflows/{first}/approve"), &json!({"reason": "planned", "by": "dave"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["workflow"]["status"], "running");
    assert_eq!(body["workflow"]["approval"]["by"], "api:dave");
    assert_eq!(body["workflow"]["approval"]["approved"], true);
    let (status, body) = api.post(&format!("/api/v1/workflows/{first}/approve"), &json!({"reason": "again"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["status"], "running");
    let (status, body) = api.post(&format!("/api/v1/workflows/{first}/approve"), &json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("missing field `reason`"), "{body}");
    let (status, body) = api.post(&format!("/api/v1/workflows/{first}/resume"), &json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("only a failed or stopped workflow resumes"), "{body}");
    let (status, body) = api.post(&format!("/api/v1/workflows/{first}/resume"), &json!({"reason": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("unknown field `reason`"), "{body}");

    let (status, body) = api.post(&format!("/api/v1/workflows/{second}/reject"), &json!({"reason": "not today"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["workflow"]["status"], "cancelled");
    assert_eq!(body["workflow"]["approval"]["approved"], false);
    let (status, body) =
        api.post(&format!("/api/v1/workflows/{third}/cancel"), &json!({"reason": "wrong store"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["workflow"]["status"], "cancelled");
    let (status, body) = api.post(&format!("/api/v1/workflows/{third}/cancel"), &json!({"reason": "twice"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["status"], "cancelled");
    let (status, _) = api.post("/api/v1/workflows/W-999999/approve", &json!({"reason": "x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Every change was audited, with the API's actors.
    let changes = workflow_changes(&api).await;
    let of = |id: &str| -> Vec<(String, String)> {
        changes.iter().filter(|(i, _, _)| i == id).map(|(_, to, actor)| (to.clone(), actor.clone())).collect()
    };
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(of(&first), [pair("awaiting-approval", "api:carol"), pair("running", "api:dave")]);
    assert_eq!(of(&second), [pair("awaiting-approval", "api:carol"), pair("cancelled", "api")]);
    assert_eq!(of(&third), [pair("awaiting-approval", "api:carol"), pair("cancelled", "api")]);

    let (_, body) = api.get("/api/v1/status").await;
    assert_eq!(body["workflows"]["running"], 1, "{body}");
    assert_eq!(body["workflows"]["cancelled"], 2, "{body}");
    assert_eq!(body["workflows"].as_object().unwrap().len(), 7);

    // Under the kill switch nothing starts.
    let (status, _) = api.post("/api/v1/safety/kill-switch", &json!({"reason": "incident"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api.post("/api/v1/workflows", &start(4)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("kill switch"), "{body}");
    let (_, list) = api.get("/api/v1/workflows").await;
    assert_eq!(ids(&list).len(), 3);
}

/// What the daemon does each round, by hand: the cluster moves `sim_ms`, then observe, the
/// executor's tick, the workflow engine's tick.
async fn round(api: &Served, sim: &SimCluster, sim_ms: u64) {
    if sim_ms > 0 {
        sim.step(sim_ms);
    }
    // A wait holds only on an observation taken after the step's action completed (by the ms).
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let subject = api.state.subject.as_subject().unwrap();
    let observation = subject.observe(&CallContext::default()).await.unwrap().expect("observe succeeds");
    assert!(observation.complete, "{:?}", observation.errors);
    *api.state.latest.write().unwrap() = Some(LatestObservation { observation, at_ms: now_ms(), violations: vec![] });
    api.state.executor.tick(now_ms()).await.unwrap();
    api.state.workflows.tick(now_ms()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_stops_a_running_workflow_at_its_next_step_and_resume_waits_for_its_release() {
    // A simulated cluster stepped by hand, granted to the TiKV plugin.
    let sim = SimCluster::start(ClusterSpec { stores: 5, regions: 120, ..ClusterSpec::default() }, 0.0).await.unwrap();
    sim.step(11_000);
    let mut actions = actions_config();
    actions.blast_radius.entity_cooldown_secs = 0;
    let mut config = Config { actions, ..Config::default() };
    config
        .endpoints
        .insert("pd".into(), EndpointConfig { urls: sim.pd_urls(), bearer_token_env: None, headers: BTreeMap::new() });
    let grant = GrantSpec {
        endpoint: Some("pd".into()),
        url: None,
        methods: vec!["GET".into(), "POST".into(), "DELETE".into()],
        paths: vec!["/pd/api/v1/**".into()],
    };
    let settings = BTreeMap::from([("status-probes".to_owned(), "false".to_owned())]);
    config.plugins.insert("tikv".into(), PluginConfig { grants: vec![grant], settings, ..PluginConfig::default() });
    let api = serve_with(config).await;
    let (status, _) = api.post("/api/v1/safety/mode", &json!({"mode": "execute", "reason": "drill"})).await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = api.post("/api/v1/workflows", &json!({"name": "drain-store", "params": {"store": 1}})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["workflow"]["id"].as_str().unwrap().to_owned();
    let (status, _) = api.post(&format!("/api/v1/workflows/{id}/approve"), &json!({"reason": "maintenance"})).await;
    assert_eq!(status, StatusCode::OK);
    let path = format!("/api/v1/workflows/{id}");
    let step_state = |run: &Value, i: usize| run["workflow"]["steps"][i]["state"]["state"].as_str().unwrap().to_owned();

    // The cluster stands still: leaders are evicted by PD's scheduler only as it moves, so the
    // first step waits for its condition.
    let mut run = Value::Null;
    for _ in 0..20 {
        round(&api, &sim, 0).await;
        run = api.get(&path).await.1;
        if step_state(&run, 0) == "waiting" {
            break;
        }
    }
    assert_eq!(step_state(&run, 0), "waiting", "{run:#}");
    let leaders = |sim: &SimCluster| sim.sim().store_stats()[&1].leader_count;
    assert!(leaders(&sim) > 0);

    let (status, body) = api.post("/api/v1/safety/kill-switch", &json!({"reason": "incident", "by": "erin"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The cluster moves on and the condition comes to hold, but the next step never starts.
    for _ in 0..30 {
        round(&api, &sim, 10_000).await;
    }
    assert_eq!(leaders(&sim), 0, "PD moved the leaders away");
    let (_, mut run) = api.get(&path).await;
    assert_eq!(run["workflow"]["status"], "stopped", "{run:#}");
    assert_eq!(run["workflow"]["stopped_from"], "running");
    assert_eq!(step_state(&run, 0), "waiting", "the first step keeps its effect");
    assert_eq!(step_state(&run, 1), "pending", "the next step did not start");
    assert_eq!(run["workflow"]["steps"][1]["actions"], json!([]));
    let names: Vec<String> = api.state.executor.actions().iter().map(|a| a.name.clone()).collect();
    assert_eq!(names, ["evict-leaders"], "nothing else was proposed");
    assert_eq!(sim.sim().store(1).unwrap().state, tikv_sim::model::StoreState::Up);
    let last = run["workflow"]["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["from"].as_str(), last["to"].as_str()), (Some("running"), Some("stopped")), "{last}");

    // Resume waits for the release, then the run goes on from where it stopped.
    let (status, body) = api.post(&format!("/api/v1/workflows/{id}/resume"), &json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("kill switch"), "{body}");
    let (status, _) = api.post("/api/v1/safety/release", &json!({"reason": "over"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.post("/api/v1/safety/mode", &json!({"mode": "execute", "reason": "back"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api.post(&format!("/api/v1/workflows/{id}/resume"), &json!({"by": "erin"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["workflow"]["status"], "running");
    for _ in 0..10 {
        round(&api, &sim, 0).await;
        run = api.get(&path).await.1;
        if step_state(&run, 1) != "pending" {
            break;
        }
    }
    assert_eq!(step_state(&run, 0), "done", "{run:#}");
    assert_ne!(step_state(&run, 1), "pending", "the next step started once resumed: {run:#}");
    let names: Vec<String> = api.state.executor.actions().iter().rev().map(|a| a.name.clone()).collect();
    assert_eq!(names, ["evict-leaders", "offline-store"]);

    let changes = workflow_changes(&api).await;
    let run_changes: Vec<(&str, &str)> =
        changes.iter().filter(|(i, _, _)| i == &id).map(|(_, to, actor)| (to.as_str(), actor.as_str())).collect();
    assert_eq!(
        run_changes,
        [("awaiting-approval", "api"), ("running", "api"), ("stopped", "workflow-engine"), ("running", "api:erin")]
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_left_waiting_by_a_cancellation_cut_short_by_a_crash_never_runs() {
    let sim = SimCluster::start(ClusterSpec { stores: 5, regions: 120, ..ClusterSpec::default() }, 0.0).await.unwrap();
    sim.step(11_000);
    let mut config = Config { actions: actions_config(), ..Config::default() };
    config
        .endpoints
        .insert("pd".into(), EndpointConfig { urls: sim.pd_urls(), bearer_token_env: None, headers: BTreeMap::new() });
    let grant = GrantSpec {
        endpoint: Some("pd".into()),
        url: None,
        methods: vec!["GET".into(), "POST".into(), "DELETE".into()],
        paths: vec!["/pd/api/v1/**".into()],
    };
    let settings = BTreeMap::from([("status-probes".to_owned(), "false".to_owned())]);
    config.plugins.insert("tikv".into(), PluginConfig { grants: vec![grant], settings, ..PluginConfig::default() });
    let api = serve_with(config).await;
    api.post("/api/v1/safety/mode", &json!({"mode": "execute", "reason": "drill"})).await;
    let (_, body) = api.post("/api/v1/workflows", &json!({"name": "drain-store", "params": {"store": 1}})).await;
    let id = body["workflow"]["id"].as_str().unwrap().to_owned();
    api.post(&format!("/api/v1/workflows/{id}/approve"), &json!({"reason": "maintenance"})).await;
    // The engine proposes the first step's action; the executor has not started it yet.
    round(&api, &sim, 0).await;
    let engine = &api.state.workflows;
    let run = engine.run(&id).unwrap().unwrap();
    let [action] = &run.watched_actions()[..] else { panic!("one action proposed: {run:#?}") };
    assert_eq!(api.state.executor.action(action).unwrap().status, operator_host::actions::ledger::ActionStatus::Ready);

    // The cancellation is written, and the process dies before it cancels the action.
    let cancelled = operator_host::actions::workflow::cancel(&run, "api", "wrong store", now_ms()).unwrap();
    engine.store().save(&cancelled.run).unwrap();

    // The restarted daemon builds its engine before its executor runs anything.
    let settings = EngineSettings {
        approval: actions_config().approval,
        stale_after_ms: 30_000,
        latest: api.state.latest.clone(),
    };
    let restarted = WorkflowEngine::new(
        api.state.executor.clone(),
        api.state.subject.clone(),
        None,
        engine.store().clone(),
        api.sink.clone(),
        settings,
    )
    .await
    .unwrap();
    let left = api.state.executor.action(action).unwrap();
    assert_eq!(left.status, operator_host::actions::ledger::ActionStatus::Cancelled, "{left:#?}");
    assert!(left.history.last().unwrap().reason.contains(&format!("workflow {id} was cancelled")), "{left:#?}");
    api.state.executor.tick(now_ms()).await.unwrap();
    restarted.tick(now_ms()).await.unwrap();
    let pd = sim.pd_urls()[0].clone();
    let schedulers = reqwest::get(format!("{pd}/pd/api/v1/schedulers")).await.unwrap().text().await.unwrap();
    assert!(!schedulers.contains("evict-leader-scheduler"), "nothing reached PD: {schedulers}");
    sim.shutdown().await;
}
