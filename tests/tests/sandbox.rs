//! The hostile-plugin suite: every hostile act is stopped or denied with a clear error, every
//! attempt is in the audit log, and afterwards the host still serves a well-behaved plugin.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, Hits, start_service, test_config};
use operator_host::audit::{AuditEvent, AuditRecord, CallOutcome, Decision, LoadOutcome};
use operator_host::runtime::bindings::types::Observation;
use operator_host::runtime::{CallContext, CallError, ExecutionPermit};

async fn setup() -> (Harness, Hits) {
    let (addr, hits) = start_service().await;
    (Harness::new(test_config(addr)), hits)
}

/// Runs `observe` of the hostile plugin with `behaviour` and returns its result and the audit
/// records it produced.
async fn hostile(h: &Harness, behaviour: &str) -> (Result<Result<Observation, String>, CallError>, Vec<AuditRecord>) {
    let (result, records, _) = timed_hostile(h, behaviour).await;
    (result, records)
}

/// Like [`hostile`], also returning how long the call itself took (loading excluded).
async fn timed_hostile(
    h: &Harness,
    behaviour: &str,
) -> (Result<Result<Observation, String>, CallError>, Vec<AuditRecord>, Duration) {
    let before = h.records().await.len();
    let plugin = h.load("hostile", "subject", &[("behaviour", behaviour)]);
    let started = Instant::now();
    let result = plugin.as_subject().unwrap().observe(&CallContext::default()).await;
    let took = started.elapsed();
    let records = h.records().await;
    (result, records[before..].to_vec(), took)
}

/// A well-behaved plugin still works on the same runtime.
async fn still_serves(h: &Harness) {
    let good = h.load("good", "subject", &[]);
    let observation = good
        .as_subject()
        .unwrap()
        .observe(&CallContext::default())
        .await
        .expect("the good plugin runs")
        .expect("the good plugin observes");
    assert_eq!(observation.payload, "ok");
    assert!(observation.complete);
}

fn call_outcome(records: &[AuditRecord], export: &str) -> CallOutcome {
    records
        .iter()
        .rev()
        .find_map(|r| match &r.event {
            AuditEvent::PluginCall { export: e, outcome, plugin, .. } if e == export && plugin == "hostile" => {
                Some(outcome.clone())
            }
            _ => None,
        })
        .expect("the call is audited")
}

fn denials(records: &[AuditRecord]) -> Vec<(String, String, String, String, Option<String>)> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            AuditEvent::Capability { target, method, path, decision: Decision::Denied { reason, rule }, .. } => {
                Some((target.clone(), method.clone(), path.clone(), reason.clone(), rule.clone()))
            }
            _ => None,
        })
        .collect()
}

fn payload(result: &Result<Result<Observation, String>, CallError>) -> String {
    match result {
        Ok(Ok(observation)) => observation.payload.clone(),
        Ok(Err(error)) => error.clone(),
        Err(error) => panic!("the call itself failed: {error}"),
    }
}

#[tokio::test]
async fn an_endless_loop_is_stopped_at_the_deadline() {
    let (h, _) = setup().await;
    let (result, records, elapsed) = timed_hostile(&h, "loop").await;
    let error = result.expect_err("the loop is stopped");
    assert!(matches!(error, CallError::Deadline { .. }), "{error}");
    assert!(error.to_string().contains("2000-ms deadline"), "{error}");
    // Stopped by the deadline, not left running: generous bound for a loaded machine.
    assert!(elapsed < Duration::from_secs(20), "stopped after {elapsed:?}");
    assert!(matches!(call_outcome(&records, "observe"), CallOutcome::Timeout { after_ms: 2000 }));
    still_serves(&h).await;
}

#[tokio::test]
async fn unbounded_memory_growth_hits_the_cap() {
    let (h, _) = setup().await;
    let (result, records) = hostile(&h, "memory").await;
    let error = result.expect_err("the plugin is stopped");
    assert!(error.to_string().contains("exceeded its memory limit of 64 MiB"), "{error}");
    assert!(matches!(call_outcome(&records, "observe"), CallOutcome::Trap { .. }));
    still_serves(&h).await;
}

#[tokio::test]
async fn a_stack_overflow_is_a_trap() {
    let (h, _) = setup().await;
    let (result, records) = hostile(&h, "stack").await;
    let error = result.expect_err("the plugin is stopped");
    assert!(error.to_string().contains("stack overflow"), "{error}");
    assert!(matches!(call_outcome(&records, "observe"), CallOutcome::Trap { .. }));
    still_serves(&h).await;
}

#[tokio::test]
async fn a_panic_is_reported_with_its_message() {
    let (h, _) = setup().await;
    let (result, records) = hostile(&h, "panic").await;
    let error = result.expect_err("the plugin crashed");
    assert!(error.to_string().contains("hostile plugin panicked on purpose"), "{error}");
    match call_outcome(&records, "observe") {
        CallOutcome::Trap { message } => assert!(message.contains("panicked on purpose"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    still_serves(&h).await;
}

#[tokio::test]
async fn exit_ends_the_call_not_the_host() {
    let (h, _) = setup().await;
    let (result, _) = hostile(&h, "exit").await;
    let error = result.expect_err("exit ends the call");
    // wasi 0.2 carries only success or failure, so exit(3) arrives as a failure status.
    assert!(error.to_string().contains("called exit with status 1"), "{error}");
    still_serves(&h).await;
}

#[tokio::test]
async fn files_are_out_of_reach() {
    let (h, _) = setup().await;
    let marker = std::path::Path::new("/tmp/hostile-was-here");
    let _ = std::fs::remove_file(marker);
    let (result, records) = hostile(&h, "file").await;
    let text = payload(&result);
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    for key in ["read", "list", "write"] {
        let outcome = report[key].as_str().unwrap();
        assert!(outcome.starts_with("Err"), "{key} should fail: {outcome}");
    }
    assert!(!marker.exists(), "the plugin wrote a file on the host");
    assert!(
        records.iter().any(|r| matches!(&r.event, AuditEvent::Sandbox { what, .. } if what == "filesystem")),
        "the attempt is audited"
    );
    still_serves(&h).await;
}

#[tokio::test]
async fn the_environment_is_empty() {
    let (h, _) = setup().await;
    // SAFETY: set before any plugin runs in this test process's runtime; only this test reads it.
    unsafe { std::env::set_var("OPERATOR_TEST_SECRET", "do-not-leak") };
    let (result, records) = hostile(&h, "env").await;
    let report: serde_json::Value = serde_json::from_str(&payload(&result)).unwrap();
    assert_eq!(report["vars"], 0, "{report}");
    assert_eq!(report["args"], 0, "{report}");
    assert!(report["home"].as_str().unwrap().starts_with("Err"), "{report}");
    assert!(
        records.iter().any(|r| matches!(&r.event, AuditEvent::Sandbox { what, .. } if what == "environment")),
        "the attempt is audited"
    );
    still_serves(&h).await;
}

#[tokio::test]
async fn a_component_importing_sockets_is_refused_at_load() {
    let (h, _) = setup().await;
    let dir = h.install("socket", "subject");
    let failure = match h.runtime.load_dir(&dir, &h.resolved) {
        Ok(_) => panic!("a component importing wasi:sockets must be refused"),
        Err(failure) => failure,
    };
    assert!(failure.reason.contains("wasi:sockets"), "{}", failure.reason);
    assert!(failure.reason.contains("operator:plugin/http"), "{}", failure.reason);
    let records = h.records().await;
    assert!(records.iter().any(|r| matches!(
        &r.event,
        AuditEvent::PluginLoad { plugin, outcome: LoadOutcome::Refused { .. }, .. } if plugin == "socket"
    )));
    still_serves(&h).await;
}

#[tokio::test]
async fn an_ungranted_endpoint_is_denied() {
    let (h, _) = setup().await;
    let (result, records) = hostile(&h, "ungranted-endpoint").await;
    assert!(payload(&result).contains("Denied"), "{}", payload(&result));
    let denied = denials(&records);
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0].0, "secret");
    still_serves(&h).await;
}

#[tokio::test]
async fn an_ungranted_path_is_denied_with_the_grant_line_that_would_allow_it() {
    let (h, hits) = setup().await;
    let (result, records) = hostile(&h, "ungranted-path").await;
    assert!(payload(&result).contains("Denied"), "{}", payload(&result));
    let denied = denials(&records);
    assert_eq!(denied.len(), 1, "{denied:?}");
    let rule = denied[0].4.clone().unwrap_or_default();
    assert!(rule.contains(r#"{ endpoint = "api", methods = ["GET"], paths = ["/admin/keys"] }"#), "{rule}");
    assert_eq!(hits.count("/admin/keys"), 0, "the request reached the service");
    still_serves(&h).await;
}

#[tokio::test]
async fn an_ungranted_origin_is_denied() {
    let (h, _) = setup().await;
    let (result, records) = hostile(&h, "ungranted-origin").await;
    assert!(payload(&result).contains("Denied"), "{}", payload(&result));
    let denied = denials(&records);
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert!(denied[0].0.contains("169.254.169.254"), "{denied:?}");
    still_serves(&h).await;
}

#[tokio::test]
async fn path_traversal_is_denied() {
    let (h, hits) = setup().await;
    let (result, records) = hostile(&h, "traversal").await;
    assert!(payload(&result).contains("Denied"), "{}", payload(&result));
    assert_eq!(denials(&records).len(), 1);
    assert_eq!(hits.count("/admin/keys"), 0);
    still_serves(&h).await;
}

#[tokio::test]
async fn a_mutating_request_during_observe_is_denied_even_when_granted() {
    let (h, hits) = setup().await;
    let (result, records) = hostile(&h, "mutate").await;
    assert!(payload(&result).contains("Denied"), "{}", payload(&result));
    let denied = denials(&records);
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert!(denied[0].3.contains("action execution"), "{}", denied[0].3);
    assert!(hits.all().iter().all(|h| !h.starts_with("POST")), "{:?}", hits.all());

    // The same request from an approved execution goes through, recorded before it is sent.
    let plugin = h.load("hostile", "subject", &[("behaviour", "mutate")]);
    let permit = ExecutionPermit::for_approved_action("action-1");
    let outcome = plugin
        .as_subject()
        .unwrap()
        .execute(&CallContext::default(), &permit, "mutate", &[])
        .await
        .unwrap()
        .expect("the execution succeeds");
    assert_eq!(outcome.message, "status 200");
    assert_eq!(hits.all().iter().filter(|h| h.as_str() == "POST /ok").count(), 1);
    let records = h.records().await;
    let posts: Vec<&AuditRecord> = records
        .iter()
        .filter(|r| matches!(&r.event, AuditEvent::Capability { method, decision: Decision::Allowed { .. }, .. } if method == "POST"))
        .collect();
    assert_eq!(posts.len(), 2, "intent and outcome are both recorded");
    assert!(matches!(&posts[0].event, AuditEvent::Capability { status: None, .. }));
    assert!(matches!(&posts[1].event, AuditEvent::Capability { status: Some(200), .. }));
    assert!(posts[0].seq < posts[1].seq);
}

#[tokio::test]
async fn credential_headers_are_denied() {
    let (h, hits) = setup().await;
    let (result, records) = hostile(&h, "credential-header").await;
    assert!(payload(&result).contains("Denied"), "{}", payload(&result));
    let denied = denials(&records);
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert!(denied[0].3.to_lowercase().contains("authorization"), "{}", denied[0].3);
    assert_eq!(hits.count("/ok"), 0);
    still_serves(&h).await;
}

#[tokio::test]
async fn a_gigabyte_response_is_cut_at_the_cap() {
    let (h, _) = setup().await;
    let (result, records) = hostile(&h, "huge-response").await;
    assert!(payload(&result).contains("TooLarge"), "{}", payload(&result));
    let error = records.iter().find_map(|r| match &r.event {
        AuditEvent::Capability { path, error: Some(error), .. } if path == "/huge" => Some(error.clone()),
        _ => None,
    });
    assert!(error.unwrap_or_default().contains("cap"), "the cut is audited");
    still_serves(&h).await;
}

#[tokio::test]
async fn a_stdout_flood_is_bounded() {
    let (h, _) = setup().await;
    let (result, records) = hostile(&h, "stdout-flood").await;
    assert!(result.expect("the flood does not break the call").is_ok());
    let (stdout, truncated) = records
        .iter()
        .find_map(|r| match &r.event {
            AuditEvent::PluginCall { stdout_bytes, output_truncated, .. } => Some((*stdout_bytes, *output_truncated)),
            _ => None,
        })
        .unwrap();
    assert!(stdout >= 8 * 1024 * 1024, "{stdout}");
    assert!(truncated);
    still_serves(&h).await;
}

#[tokio::test]
async fn a_host_call_that_hangs_times_out() {
    let (h, _) = setup().await;
    let (result, records, took) = timed_hostile(&h, "slow-host-call").await;
    assert!(payload(&result).contains("Timeout"), "{}", payload(&result));
    // The service would answer after 30 s; the host's 700-ms request timeout ends it long before.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(records.iter().any(|r| matches!(
        &r.event,
        AuditEvent::Capability { path, error: Some(e), .. } if path == "/slow" && e.contains("timeout")
    )));
    still_serves(&h).await;
}

#[tokio::test]
async fn every_act_leaves_a_verifiable_chain() {
    let (h, _) = setup().await;
    for behaviour in ["none", "ungranted-path", "mutate", "panic", "env"] {
        let _ = hostile(&h, behaviour).await;
    }
    let report = h.log.verify().unwrap();
    assert!(report.first_problem.is_none(), "{:?}", report.first_problem.map(|p| p.to_string()));
    assert!(report.records >= 10, "{}", report.records);
}

#[tokio::test]
async fn the_host_adds_configured_credentials_itself() {
    let (addr, hits) = start_service().await;
    let mut config = test_config(addr);
    let api = config.endpoints.get_mut("api").unwrap();
    api.headers.insert("x-api-key".into(), "host-held-secret".into());
    let h = Harness::new(config);
    still_serves(&h).await;
    let headers = hits.last_headers("/ok");
    assert!(headers.iter().any(|(name, value)| name == "x-api-key" && value == "host-held-secret"), "{headers:?}");
}
