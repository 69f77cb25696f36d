//! The diagnosis engine against a local server that speaks the Anthropic Messages API and the
//! OpenAI chat-completions API, replaying recorded replies (`tests/fixtures/llm/`). Each test
//! checks what the client sent (headers, schema, tools, tool results, cache control) as well as
//! the outcome. The subject's queries and rules are test doubles behind the engine's traits.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use operator_host::audit::{AuditLog, AuditSink};
use operator_host::config::Config;
use operator_host::diagnose::model::{diagnosis_schema, param_value_to_json};
use operator_host::diagnose::{
    DiagnoseConfig, DiagnoseError, DiagnoserChoice, DiagnoserKind, DiagnosisEngine, DiagnosisRecord, DiagnosisRequest,
    PluginSubject, QueryRunner, RuleDiagnoser,
};
use operator_host::runtime::bindings::types;
use operator_host::runtime::{CallContext, Runtime};
use operator_host::store::Store;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// The fake API server.

/// One request the server received.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: Value,
}

#[derive(Default)]
struct ServerState {
    replies: VecDeque<Value>,
    received: Vec<Received>,
}

/// A local API server replaying fixtures in order.
#[derive(Clone)]
struct FakeApi {
    url: String,
    state: Arc<Mutex<ServerState>>,
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llm").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn serve(State(state): State<Arc<Mutex<ServerState>>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut state = state.lock().unwrap();
    state.received.push(Received {
        path: uri.path().to_owned(),
        headers: headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let Some(reply) = state.replies.pop_front() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no reply scripted for this request").into_response();
    };
    let mut response = (
        StatusCode::from_u16(reply["status"].as_u64().unwrap() as u16).unwrap(),
        [("content-type", "application/json")],
        reply["body"].to_string(),
    )
        .into_response();
    for (name, value) in reply["headers"].as_object().unwrap() {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.as_str().unwrap().parse().unwrap(),
        );
    }
    response
}

impl FakeApi {
    async fn start(replies: &[&str]) -> FakeApi {
        let state = Arc::new(Mutex::new(ServerState {
            replies: replies.iter().map(|name| fixture(name)).collect(),
            received: Vec::new(),
        }));
        let app = Router::new().fallback(serve).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeApi { url, state }
    }

    fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    fn script(&self, replies: &[&str]) {
        self.state.lock().unwrap().replies.extend(replies.iter().map(|name| fixture(name)));
    }

    fn unused_replies(&self) -> usize {
        self.state.lock().unwrap().replies.len()
    }
}

// ---------------------------------------------------------------------------------------------
// The subject: a catalogue, queries and rules.

/// Canned answers of the `node` query.
const NODE_ANSWER: &str = r#"{"id":4,"state":"down","disk_used_ratio":1.0,"leaders":0}"#;

/// The subject's queries and rules, recording what was asked.
#[derive(Default)]
struct FakeSubject {
    queries: Mutex<Vec<(String, Vec<types::Param>)>>,
    rules_calls: AtomicUsize,
    rules_fail: bool,
}

impl QueryRunner for FakeSubject {
    async fn query(&self, name: &str, params: Vec<types::Param>) -> Result<String, String> {
        self.queries.lock().unwrap().push((name.to_owned(), params));
        match name {
            "node" => Ok(NODE_ANSWER.to_owned()),
            other => Err(format!("no canned answer for `{other}`")),
        }
    }
}

impl RuleDiagnoser for FakeSubject {
    async fn rules(
        &self,
        ticket: &types::Ticket,
        _observation: &types::Observation,
    ) -> Result<types::Diagnosis, String> {
        self.rules_calls.fetch_add(1, Ordering::SeqCst);
        if self.rules_fail {
            return Err("no rule matches".to_owned());
        }
        Ok(types::Diagnosis {
            summary: format!("rules: {} is down", ticket.entity),
            timeline: vec![],
            affected: vec![ticket.entity.clone()],
            root_cause: "the node stopped heartbeating".to_owned(),
            confidence: 0.6,
            evidence: vec![ticket.message.clone()],
            alternatives: vec![],
            recommendations: vec![],
            wait_reason: Some("it may come back by itself".to_owned()),
        })
    }
}

impl FakeSubject {
    fn queried(&self) -> Vec<String> {
        self.queries
            .lock()
            .unwrap()
            .iter()
            .map(|(name, params)| {
                let params: Vec<String> =
                    params.iter().map(|p| format!("{}={}", p.name, param_value_to_json(&p.value))).collect();
                format!("{name}({})", params.join(","))
            })
            .collect()
    }
}

fn int_param(name: &str, description: &str, min: Option<i64>, max: Option<i64>, required: bool) -> types::ParamSpec {
    types::ParamSpec {
        name: name.into(),
        description: description.into(),
        kind: types::ParamType::Integer(types::IntegerRange { min, max }),
        required,
        default: (!required).then_some(types::ParamValue::Integer(10)),
    }
}

/// Opened at 2026-01-01T00:00:00Z.
const OPENED_MS: u64 = 1_767_225_600_000;

fn request() -> DiagnosisRequest {
    let info = types::SubjectInfo {
        name: "kv".into(),
        version: "1.0.0".into(),
        description: "A replicated key-value store of numbered nodes.".into(),
        invariants: vec![],
        actions: vec![
            types::ActionSpec {
                name: "drain".into(),
                description: "Move leaders and data off a node.".into(),
                risk: types::Risk::Medium,
                params: vec![int_param("node", "Node id", Some(1), None, true)],
                entity_param: Some("node".into()),
                undo: Some("undrain".into()),
                verify_window_secs: 300,
            },
            types::ActionSpec {
                name: "set-rate".into(),
                description: "Limit the write rate.".into(),
                risk: types::Risk::Low,
                params: vec![
                    types::ParamSpec {
                        name: "rate".into(),
                        description: "Share of the normal rate".into(),
                        kind: types::ParamType::Number(types::NumberRange { min: Some(0.0), max: Some(1.0) }),
                        required: true,
                        default: None,
                    },
                    types::ParamSpec {
                        name: "mode".into(),
                        description: "How".into(),
                        kind: types::ParamType::Choice(vec!["fast".into(), "slow".into()]),
                        required: false,
                        default: None,
                    },
                ],
                entity_param: None,
                undo: None,
                verify_window_secs: 60,
            },
        ],
        queries: vec![
            types::QuerySpec {
                name: "node".into(),
                description: "One node's state".into(),
                params: vec![int_param("id", "Node id", Some(1), None, true)],
            },
            types::QuerySpec {
                name: "hot keys".into(),
                description: "The hottest keys".into(),
                params: vec![int_param("limit", "Keys listed at most", Some(1), Some(100), false)],
            },
        ],
        conditions: vec![],
    };
    let ticket = types::Ticket {
        id: "T-42".into(),
        invariant: "node-up".into(),
        entity: "node/4".into(),
        severity: types::Severity::Critical,
        message: "node 4 has been down for 34 s".into(),
        evidence: vec![types::Evidence { label: "state".into(), value: "down".into() }],
        opened_at_ms: OPENED_MS,
        last_seen_ms: OPENED_MS + 20_000,
        occurrences: 3,
    };
    let observation = types::Observation {
        taken_at_ms: OPENED_MS + 20_000,
        complete: true,
        errors: vec![],
        payload: json!({ "nodes": [{ "id": 4, "state": "down" }] }).to_string(),
    };
    let mut request = DiagnosisRequest::new(&info, ticket, observation);
    request.observation_at_open = Some(types::Observation {
        taken_at_ms: OPENED_MS,
        complete: false,
        errors: vec!["node 4: connection refused".into()],
        payload: "{}".into(),
    });
    request
}

// ---------------------------------------------------------------------------------------------
// Engines.

fn config(choice: DiagnoserChoice, api: &FakeApi) -> DiagnoseConfig {
    let mut config = DiagnoseConfig { diagnoser: choice, ..DiagnoseConfig::default() };
    config.retry.max_attempts = 3;
    config.retry.base_delay_ms = 1;
    config.retry.max_delay_ms = 5;
    config.retry.max_retry_after_secs = 5;
    config.request_timeout_ms = 10_000;
    config.claude.base_url = Some(api.url.clone());
    config.claude.api_key = Some("test-key".into());
    config.openai.base_url = Some(api.url.clone());
    config.openai.api_key = Some("test-key".into());
    config.openai.model = Some("qwen2.5:7b".into());
    config
}

fn engine(config: DiagnoseConfig) -> DiagnosisEngine {
    // No environment: everything comes from the configuration.
    DiagnosisEngine::with_env(config, |_| None).unwrap()
}

async fn diagnose_with(
    choice: DiagnoserChoice,
    replies: &[&str],
) -> (FakeApi, FakeSubject, Result<DiagnosisRecord, DiagnoseError>) {
    let api = FakeApi::start(replies).await;
    let subject = FakeSubject::default();
    let outcome = engine(config(choice, &api)).diagnose(&request(), &subject, &subject).await;
    (api, subject, outcome)
}

/// Asserts the rules answered because the LLM failed, and returns why it failed.
fn fell_back(record: &DiagnosisRecord, subject: &FakeSubject) -> String {
    assert_eq!(record.diagnoser, DiagnoserKind::Rules);
    assert_eq!(record.diagnosis.summary, "rules: node/4 is down");
    assert_eq!(subject.rules_calls.load(Ordering::SeqCst), 1);
    record.fallback.clone().expect("the record says why the LLM did not answer")
}

fn text_blocks(message: &Value) -> String {
    message["content"].as_array().unwrap().iter().filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join("\n")
}

/// Whether text holds something shaped like a date (`dddd-dd-dd`) or a clock (`dd:dd:dd`).
fn has_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    (0..b.len()).any(|i| {
        (digit(i) && digit(i + 1) && digit(i + 2) && digit(i + 3) && b.get(i + 4) == Some(&b'-') && digit(i + 5))
            || (digit(i)
                && digit(i + 1)
                && b.get(i + 2) == Some(&b':')
                && digit(i + 3)
                && digit(i + 4)
                && b.get(i + 5) == Some(&b':'))
    })
}

// ---------------------------------------------------------------------------------------------
// Claude.

#[tokio::test]
async fn claude_investigates_with_tools_and_answers_in_the_schema() {
    let (api, subject, outcome) = diagnose_with(DiagnoserChoice::Claude, &["claude_tool_use", "claude_final"]).await;
    let record = outcome.unwrap();
    let received = api.received();
    assert_eq!(received.len(), 2);

    for request in &received {
        assert_eq!(request.path, "/v1/messages");
        assert_eq!(request.headers["x-api-key"], "test-key");
        assert_eq!(request.headers["anthropic-version"], "2023-06-01");
        assert_eq!(request.headers["content-type"], "application/json");
        assert!(!request.headers.contains_key("authorization"));
        let body = &request.body;
        assert_eq!(body["model"], "claude-sonnet-4-6");
        assert_eq!(body["max_tokens"], 8192);
        assert_eq!(body["output_config"], json!({ "format": { "type": "json_schema", "schema": diagnosis_schema() } }));
        assert_eq!(body["tool_choice"], json!({ "type": "auto" }));
        let tools = body["tools"].as_array().unwrap();
        let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["node", "hot_keys"], "query names are sanitised");
        assert_eq!(
            tools[0]["input_schema"],
            json!({
                "type": "object",
                "properties": { "id": { "type": "integer", "minimum": 1, "description": "Node id" } },
                "required": ["id"],
                "additionalProperties": false,
            })
        );
        assert_eq!(tools[1]["input_schema"]["properties"]["limit"]["maximum"], 100);
        assert_eq!(tools[1]["description"], "The hottest keys");

        // The stable prefix: two system blocks, the cache breakpoint on the last; no clock in it.
        let system = body["system"].as_array().unwrap();
        assert_eq!(system.len(), 2);
        assert!(system[0].get("cache_control").is_none());
        assert_eq!(system[1]["cache_control"], json!({ "type": "ephemeral" }));
        let system_text: String = system.iter().map(|b| b["text"].as_str().unwrap()).collect();
        assert!(!has_timestamp(&system_text), "a timestamp in the system prompt: {system_text}");
        assert!(!system_text.contains("T-42") && !system_text.contains("node 4 has been down"));
        assert!(system_text.contains("## `drain` (risk: medium)"), "{system_text}");
    }
    assert_eq!(received[0].body["system"], received[1].body["system"], "the prefix is byte-identical across turns");
    assert_eq!(received[0].body["tools"], received[1].body["tools"]);

    // The volatile part: the ticket, both observations, with times.
    let first = received[0].body["messages"].as_array().unwrap();
    assert_eq!(first.len(), 1);
    let ticket_text = text_blocks(&first[0]);
    assert!(ticket_text.contains("# Ticket T-42"), "{ticket_text}");
    assert!(ticket_text.contains("Opened 2026-01-01T00:00:00Z"), "{ticket_text}");
    assert!(ticket_text.contains("# Observation when the ticket opened (taken 2026-01-01T00:00:00Z, PARTIAL"));
    assert!(ticket_text.contains("- not observed: node 4: connection refused"));
    assert!(ticket_text.contains("# Latest observation (taken 2026-01-01T00:00:20Z, complete)"));

    // The second turn carries the assistant's tool calls and the results.
    let second = received[1].body["messages"].as_array().unwrap();
    assert_eq!(second.len(), 3);
    assert_eq!(second[1]["role"], "assistant");
    assert_eq!(second[1]["content"], fixture("claude_tool_use")["body"]["content"]);
    assert_eq!(second[2]["role"], "user");
    let results = second[2]["content"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0], json!({ "type": "tool_result", "tool_use_id": "toolu_01", "content": NODE_ANSWER }));
    assert_eq!(results[1]["tool_use_id"], "toolu_02");
    assert_eq!(results[1]["is_error"], true);
    let refusal = results[1]["content"].as_str().unwrap();
    assert!(refusal.contains("`limit` must be at most 100, not 500"), "{refusal}");

    assert_eq!(subject.queried(), ["node(id=4)"], "a query with bad arguments never runs");
    assert_eq!(subject.rules_calls.load(Ordering::SeqCst), 0);

    assert_eq!(record.diagnoser, DiagnoserKind::Claude);
    assert_eq!(record.model.as_deref(), Some("claude-sonnet-4-6"));
    assert_eq!(record.request_ids, ["req_tool_1", "req_final_1"]);
    assert_eq!(record.turns, 2);
    assert_eq!(
        (
            record.usage.input_tokens,
            record.usage.output_tokens,
            record.usage.cache_creation_input_tokens,
            record.usage.cache_read_input_tokens
        ),
        (1500, 480, 2000, 2000)
    );
    let cost = record.cost_usd.unwrap();
    assert!((cost - (0.0045 + 0.0072 + 0.0075 + 0.0006)).abs() < 1e-9, "{cost}");
    assert_eq!(record.queries.len(), 2);
    assert!(record.queries[0].ok && !record.queries[1].ok);
    assert_eq!(record.fallback, None);
    assert!(record.dropped_recommendations.is_empty());
    let diagnosis = &record.diagnosis;
    assert!(diagnosis.summary.starts_with("Node 4 stopped serving"));
    assert_eq!(diagnosis.confidence, 0.82);
    assert_eq!(diagnosis.alternatives[0].conclusion, "rejected");
    assert_eq!(diagnosis.recommendations[0].params, BTreeMap::from([("node".to_owned(), json!(4))]));
    let wit = diagnosis.to_wit(&request().actions).unwrap();
    assert!(matches!(wit.recommendations[0].params[0].value, types::ParamValue::Integer(4)));
}

#[tokio::test]
async fn claude_waits_as_told_by_retry_after_then_succeeds() {
    let started = Instant::now();
    let (api, _subject, outcome) =
        diagnose_with(DiagnoserChoice::Claude, &["claude_rate_limited", "claude_final"]).await;
    let record = outcome.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "retry-after: 1 was not honoured");
    assert_eq!(api.received().len(), 2);
    assert_eq!(api.received()[0].body, api.received()[1].body, "the retry is the same request");
    assert_eq!(record.diagnoser, DiagnoserKind::Claude);
    assert_eq!(record.request_ids, ["req_429", "req_final_1"]);
    assert_eq!(record.turns, 1);
}

#[tokio::test]
async fn claude_overloaded_until_attempts_run_out_falls_back_to_the_rules() {
    let (api, subject, outcome) =
        diagnose_with(DiagnoserChoice::Claude, &["claude_overloaded", "claude_overloaded", "claude_overloaded"]).await;
    let record = outcome.unwrap();
    assert_eq!(api.received().len(), 3, "max_attempts = 3");
    let why = fell_back(&record, &subject);
    assert!(why.contains("gave up after 3 attempt(s)"), "{why}");
    assert!(why.contains("HTTP 529 overloaded_error: Overloaded (request id req_529)"), "{why}");
    assert_eq!(record.request_ids, ["req_529", "req_529", "req_529"]);
    assert_eq!(record.model, None);
    assert_eq!(record.turns, 0);
    assert_eq!(record.diagnosis.wait_reason.as_deref(), Some("it may come back by itself"));
}

#[tokio::test]
async fn claude_bad_request_is_not_retried() {
    let (api, subject, outcome) =
        diagnose_with(DiagnoserChoice::Claude, &["claude_invalid_request", "claude_final"]).await;
    let record = outcome.unwrap();
    assert_eq!(api.received().len(), 1);
    let why = fell_back(&record, &subject);
    assert_eq!(
        why,
        "claude API answered HTTP 400 invalid_request_error: max_tokens: 8192 > 4096, which is the maximum allowed \
         number of output tokens for this model (request id req_400)"
    );
}

#[tokio::test]
async fn claude_spend_limit_is_not_retried_even_on_429() {
    let (api, subject, outcome) = diagnose_with(DiagnoserChoice::Claude, &["claude_spend_limit", "claude_final"]).await;
    let record = outcome.unwrap();
    assert_eq!(api.received().len(), 1);
    let why = fell_back(&record, &subject);
    assert!(why.contains("HTTP 429 rate_limit_error (enforced_spend_limit_reached)"), "{why}");
    assert!(why.contains("(request id req_spend)"), "{why}");
}

#[tokio::test]
async fn claude_malformed_answer_is_asked_again_once() {
    let (api, subject, outcome) =
        diagnose_with(DiagnoserChoice::Claude, &["claude_malformed", "claude_malformed"]).await;
    let record = outcome.unwrap();
    let received = api.received();
    assert_eq!(received.len(), 2);
    let messages = received[1].body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[1]["role"], "assistant");
    let note = text_blocks(&messages[2]);
    assert!(note.contains("That answer is not a valid diagnosis: the answer is not valid JSON"), "{note}");
    let why = fell_back(&record, &subject);
    assert!(why.contains("claude answer is not a valid diagnosis, even when asked again"), "{why}");
    assert!(why.contains("(request id req_bad_json)"), "{why}");
    assert_eq!(record.turns, 2);
    assert_eq!(record.usage.output_tokens, 60, "tokens of a failed attempt are still accounted");

    // Asked again, a valid answer is taken.
    let (api, _subject, outcome) = diagnose_with(DiagnoserChoice::Claude, &["claude_malformed", "claude_final"]).await;
    let record = outcome.unwrap();
    assert_eq!(api.received().len(), 2);
    assert_eq!(record.diagnoser, DiagnoserKind::Claude);
    assert_eq!(record.turns, 2);
}

#[tokio::test]
async fn claude_refusal_falls_back() {
    let (api, subject, outcome) = diagnose_with(DiagnoserChoice::Claude, &["claude_refusal"]).await;
    let record = outcome.unwrap();
    assert_eq!(api.received().len(), 1);
    let why = fell_back(&record, &subject);
    assert_eq!(why, "claude model refused to diagnose: I can't help with that. (request id req_refusal)");
}

#[tokio::test]
async fn claude_truncated_answer_falls_back() {
    let (api, subject, outcome) = diagnose_with(DiagnoserChoice::Claude, &["claude_max_tokens"]).await;
    let record = outcome.unwrap();
    assert_eq!(api.received().len(), 1);
    let why = fell_back(&record, &subject);
    assert!(why.contains("claude answer was truncated (stop reason `max_tokens`)"), "{why}");
}

#[tokio::test]
async fn claude_invented_action_and_bad_parameters_are_dropped_with_reasons() {
    let (_api, _subject, outcome) = diagnose_with(DiagnoserChoice::Claude, &["claude_invented_action"]).await;
    let record = outcome.unwrap();
    assert_eq!(record.diagnoser, DiagnoserKind::Claude);
    let kept: Vec<&str> = record.diagnosis.recommendations.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(kept, ["set-rate"]);
    let dropped = &record.dropped_recommendations;
    assert_eq!(dropped.len(), 2);
    assert_eq!(dropped[0].recommendation["action"], "reboot-cluster");
    assert_eq!(dropped[0].reason, "unknown action `reboot-cluster` (the catalogue has: drain, set-rate)");
    assert_eq!(dropped[1].recommendation["action"], "drain");
    assert_eq!(
        dropped[1].reason,
        "action `drain`: unknown parameter `force` (it takes: node); action `drain`: `node` must be at least 1, not 0"
    );
}

#[tokio::test]
async fn claude_without_output_config_uses_the_submit_tool() {
    let api = FakeApi::start(&["claude_output_config_rejected", "claude_submit_tool"]).await;
    let subject = FakeSubject::default();
    let engine = engine(config(DiagnoserChoice::Claude, &api));
    let record = engine.diagnose(&request(), &subject, &subject).await.unwrap();
    assert_eq!(record.diagnoser, DiagnoserKind::Claude);
    assert_eq!(record.request_ids, ["req_oc", "req_submit"]);
    assert_eq!(record.diagnosis.recommendations[0].action, "drain");

    let received = api.received();
    assert_eq!(received.len(), 2);
    assert!(received[0].body.get("output_config").is_some());
    let body = &received[1].body;
    assert!(body.get("output_config").is_none());
    assert_eq!(body["tool_choice"], json!({ "type": "auto" }), "a forced tool is refused by the newest models");
    let submit = body["tools"].as_array().unwrap().last().unwrap();
    assert_eq!(submit["name"], "submit_diagnosis");
    assert_eq!(submit["strict"], true);
    assert_eq!(submit["input_schema"], diagnosis_schema());
    assert!(body["system"][0]["text"].as_str().unwrap().contains("calling the `submit_diagnosis` tool"));

    // The client remembers: the next diagnosis goes straight to the tool.
    api.script(&["claude_submit_tool"]);
    engine.diagnose(&request(), &subject, &subject).await.unwrap();
    let received = api.received();
    assert_eq!(received.len(), 3);
    assert!(received[2].body.get("output_config").is_none());
}

#[tokio::test]
async fn claude_pause_turn_is_continued() {
    let (api, _subject, outcome) = diagnose_with(DiagnoserChoice::Claude, &["claude_pause_turn", "claude_final"]).await;
    let record = outcome.unwrap();
    assert_eq!(record.diagnoser, DiagnoserKind::Claude);
    let messages = api.received()[1].body["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1], json!({ "role": "assistant", "content": fixture("claude_pause_turn")["body"]["content"] }));
}

#[tokio::test]
async fn claude_investigation_is_bounded_by_turns() {
    let api = FakeApi::start(&["claude_tool_use", "claude_tool_use"]).await;
    let subject = FakeSubject::default();
    let mut config = config(DiagnoserChoice::Claude, &api);
    config.max_turns = 2;
    let record = engine(config).diagnose(&request(), &subject, &subject).await.unwrap();
    let received = api.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].body["tool_choice"], json!({ "type": "auto" }));
    assert_eq!(received[1].body["tool_choice"], json!({ "type": "none" }), "the last turn must conclude");
    let last = received[1].body["messages"].as_array().unwrap().last().unwrap().clone();
    assert!(text_blocks(&last).contains("The investigation budget is spent"), "{last}");
    let why = fell_back(&record, &subject);
    assert_eq!(why, "claude: no diagnosis after 2 turn(s) (diagnosis.max_turns)");
}

#[tokio::test]
async fn claude_token_budget_ends_the_investigation() {
    let api = FakeApi::start(&["claude_tool_use", "claude_final"]).await;
    let subject = FakeSubject::default();
    let mut config = config(DiagnoserChoice::Claude, &api);
    config.max_total_tokens = 1_000; // the first turn alone spends 3280
    let record = engine(config).diagnose(&request(), &subject, &subject).await.unwrap();
    assert_eq!(record.diagnoser, DiagnoserKind::Claude);
    assert_eq!(api.received()[1].body["tool_choice"], json!({ "type": "none" }));
}

#[tokio::test]
async fn rules_failing_after_the_llm_names_both_causes() {
    let api = FakeApi::start(&["claude_refusal"]).await;
    let subject = FakeSubject { rules_fail: true, ..FakeSubject::default() };
    let error =
        engine(config(DiagnoserChoice::Claude, &api)).diagnose(&request(), &subject, &subject).await.unwrap_err();
    let message = error.to_string();
    assert!(
        message
            .starts_with("no diagnosis: the rules failed (no rule matches) after the LLM failed: claude model refused"),
        "{message}"
    );
}

#[tokio::test]
async fn rules_alone_make_no_request() {
    let (api, subject, outcome) = diagnose_with(DiagnoserChoice::Rules, &[]).await;
    let record = outcome.unwrap();
    assert!(api.received().is_empty());
    assert_eq!(record.diagnoser, DiagnoserKind::Rules);
    assert_eq!(record.fallback, None);
    assert_eq!(record.cost_usd, Some(0.0));
    assert_eq!(subject.rules_calls.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible.

#[tokio::test]
async fn openai_tool_calls_with_string_arguments_are_validated() {
    let (api, subject, outcome) = diagnose_with(DiagnoserChoice::OpenAi, &["openai_tool_calls", "openai_final"]).await;
    let record = outcome.unwrap();
    let received = api.received();
    assert_eq!(received.len(), 2);
    for request in &received {
        assert_eq!(request.path, "/v1/chat/completions");
        assert_eq!(request.headers["authorization"], "Bearer test-key");
        assert!(!request.headers.contains_key("x-api-key"));
        let body = &request.body;
        assert_eq!(body["model"], "qwen2.5:7b");
        assert_eq!(
            body["response_format"],
            json!({ "type": "json_schema", "json_schema": { "name": "diagnosis", "schema": diagnosis_schema(), "strict": true } })
        );
        assert_eq!(body["tool_choice"], "auto");
        let tools = body["tools"].as_array().unwrap();
        assert_eq!(tools[0]["type"], "function");
        assert_eq!(tools[0]["function"]["name"], "node");
        assert_eq!(tools[0]["function"]["parameters"]["required"], json!(["id"]));
        assert_eq!(tools[1]["function"]["name"], "hot_keys");
        let system = body["messages"][0]["content"].as_str().unwrap();
        assert_eq!(body["messages"][0]["role"], "system");
        assert!(!has_timestamp(system), "a timestamp in the system prompt");
        assert!(body["messages"][1]["content"].as_str().unwrap().contains("# Ticket T-42"));
    }
    let messages = received[1].body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 6);
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(messages[2]["tool_calls"], fixture("openai_tool_calls")["body"]["choices"][0]["message"]["tool_calls"]);
    assert_eq!(messages[3], json!({ "role": "tool", "tool_call_id": "call_1", "content": NODE_ANSWER }));
    assert_eq!(messages[4]["tool_call_id"], "call_2");
    let invented = messages[4]["content"].as_str().unwrap();
    assert!(
        invented.starts_with("error: invalid arguments, the query did not run: unknown parameter `verbose`"),
        "{invented}"
    );
    assert_eq!(messages[5]["tool_call_id"], "call_3");
    let broken = messages[5]["content"].as_str().unwrap();
    assert!(broken.starts_with("error: the arguments are not valid JSON"), "{broken}");

    assert_eq!(subject.queried(), ["node(id=4)"]);
    assert_eq!(record.diagnoser, DiagnoserKind::OpenAi);
    assert_eq!(record.model.as_deref(), Some("qwen2.5:7b"));
    assert_eq!(record.request_ids, ["oai_req_1", "oai_req_2"]);
    assert_eq!(
        (record.usage.input_tokens, record.usage.output_tokens, record.usage.cache_read_input_tokens),
        (1600, 410, 800)
    );
    assert_eq!(record.cost_usd, None, "no price for a local model");
    assert_eq!(record.turns, 2);
    assert_eq!(record.diagnosis.recommendations[0].action, "drain");
}

#[tokio::test]
async fn openai_invalid_json_is_asked_again_then_taken() {
    let (api, _subject, outcome) =
        diagnose_with(DiagnoserChoice::OpenAi, &["openai_invalid_json", "openai_final"]).await;
    let record = outcome.unwrap();
    assert_eq!(record.diagnoser, DiagnoserKind::OpenAi);
    assert_eq!(record.turns, 2);
    let messages = api.received()[1].body["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(messages[3]["role"], "user");
    assert!(messages[3]["content"].as_str().unwrap().contains("the answer is not valid JSON"));
}

#[tokio::test]
async fn openai_invalid_json_twice_falls_back() {
    let (api, subject, outcome) =
        diagnose_with(DiagnoserChoice::OpenAi, &["openai_invalid_json", "openai_invalid_json"]).await;
    let record = outcome.unwrap();
    assert_eq!(api.received().len(), 2);
    assert_eq!(api.unused_replies(), 0);
    let why = fell_back(&record, &subject);
    assert!(why.starts_with("openai answer is not a valid diagnosis, even when asked again"), "{why}");
    assert!(why.contains("(request id oai_req_bad)"), "{why}");
}

// ---------------------------------------------------------------------------------------------
// The plugin adapter, over the built-in subject plugin run by the real runtime.

#[tokio::test]
async fn a_built_in_subject_plugin_serves_queries_and_rules_through_the_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let resolved = Config::default().resolve().unwrap();
    let sink = AuditSink::spawn(AuditLog::new(Store::open(dir.path()).unwrap()).unwrap());
    let runtime = Runtime::new(dir.path(), &resolved, sink).unwrap();
    let plugins = runtime.discover(dir.path(), &resolved);
    let plugin = plugins.loaded.values().find(|p| p.as_subject().is_some()).expect("a built-in subject plugin");
    let subject = PluginSubject::new(plugin.as_subject().unwrap(), CallContext { ticket: Some("T-42".into()) });
    let info = subject.plugin().info(subject.context()).await.unwrap();
    let observation =
        types::Observation { taken_at_ms: OPENED_MS, complete: true, errors: vec![], payload: "{}".into() };
    let request = DiagnosisRequest::new(&info, request().ticket, observation);

    // Every query of a real catalogue becomes a well-formed tool.
    let api = FakeApi::start(&[]).await;
    let engine = engine(config(DiagnoserChoice::Claude, &api));
    let prompt = engine.prompt(&request);
    assert_eq!(prompt.tools.len(), info.queries.len());
    for tool in &prompt.tools {
        assert!(tool.name.len() <= 64 && tool.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        assert_eq!(tool.input_schema["type"], "object");
    }
    for action in &info.actions {
        assert!(prompt.catalogue.contains(&format!("## `{}`", action.name)), "{} missing", action.name);
    }

    // The model runs a query that needs no arguments; the plugin has no grants, so it fails,
    // and the failure goes back to the model as an error result. The fixture's `drain` is not
    // in this catalogue, so the recommendation is dropped.
    let query =
        prompt.tools.iter().find(|t| t.params.iter().all(|p| !p.required)).expect("a query without required arguments");
    let mut tool_use = fixture("claude_tool_use");
    tool_use["body"]["content"] = json!([{ "type": "tool_use", "id": "toolu_real", "name": query.name, "input": {} }]);
    api.state.lock().unwrap().replies.extend([tool_use, fixture("claude_final")]);
    let record = engine.diagnose(&request, &subject, &subject).await.unwrap();
    assert_eq!(record.diagnoser, DiagnoserKind::Claude);
    assert_eq!(record.queries.len(), 1);
    assert_eq!(record.queries[0].query, query.query);
    let results = &api.received()[1].body["messages"][2]["content"];
    assert_eq!(results[0]["tool_use_id"], "toolu_real");
    assert_eq!(results[0]["is_error"], json!(!record.queries[0].ok));
    assert!(record.diagnosis.recommendations.is_empty());
    assert!(record.dropped_recommendations[0].reason.starts_with("unknown action `drain`"));

    // The rules run in the plugin; an observation it cannot read is its error, named.
    let rules_only = DiagnoseConfig { diagnoser: DiagnoserChoice::Rules, ..DiagnoseConfig::default() };
    let error = DiagnosisEngine::with_env(rules_only, |_| None)
        .unwrap()
        .diagnose(&request, &subject, &subject)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(&format!("no diagnosis: the rules failed (plugin `{}` could not diagnose:", plugin.name())),
        "{error}"
    );
}

// Diagnosing with a real plugin must be possible from any tokio task.

#[allow(dead_code)]
fn a_plugin_diagnosis_is_send(engine: &DiagnosisEngine, request: &DiagnosisRequest, subject: &PluginSubject<'_>) {
    fn send<T: Send>(_: T) {}
    send(engine.diagnose(request, subject, subject));
}
