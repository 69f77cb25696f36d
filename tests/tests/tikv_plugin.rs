//! The built-in TiKV plugin run by the real host runtime against the simulated cluster: the
//! scenarios' violations and diagnoses, the actions and their verification, refusals before any
//! request, and PD replies that are malformed.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use common::Harness;
use common::tikv::{Tikv, config_for, int, num, param_int, text};
use operator_host::runtime::CallContext;
use operator_host::runtime::bindings::types::{ActionError, Observation, Param, Reconciliation, Verdict, Violation};
use tikv_sim::ClusterSpec;

fn small() -> ClusterSpec {
    ClusterSpec { stores: 5, regions: 200, ..ClusterSpec::default() }
}

#[tokio::test]
async fn a_healthy_cluster_under_load_raises_nothing_over_two_simulated_hours() {
    let t = Tikv::start(ClusterSpec { stores: 6, regions: 600, ..ClusterSpec::default() }).await;
    for _ in 0..24 {
        t.sim.step(5 * 60_000);
        let keys = t.violation_keys().await;
        assert!(keys.is_empty(), "a healthy cluster has no violation: {keys:?}");
    }
    let observation = t.observe().await;
    let entities = t.plugin.as_subject().unwrap().summarize(&t.context, &observation).await.unwrap();
    assert_eq!(entities.iter().filter(|e| e.kind == "store").count(), 6);
    assert_eq!(entities.iter().filter(|e| e.kind == "pd-member").count(), 3);
    t.sim.shutdown().await;
}

#[tokio::test]
async fn a_killed_store_is_disconnected_then_down_and_the_rules_follow_s1_then_s2() {
    let t = Tikv::start(small()).await;
    t.sim.kill_store(2).await.unwrap();
    t.sim.step(40_000);
    let (observation, v) = t.violation("store-down", "store-2").await;
    assert!(v.message.contains("Disconnected") && v.message.contains("does not answer"), "{}", v.message);
    let d = t.diagnose(&v, &observation).await;
    assert!(d.root_cause.contains("stopped heartbeating"), "{}", d.root_cause);
    assert!(d.recommendations.is_empty(), "S1: wait, do not drain: {:?}", d.recommendations);
    assert!(d.wait_reason.as_deref().unwrap_or_default().contains("restart"), "{:?}", d.wait_reason);
    assert!(d.alternatives.len() >= 2);

    // Past max-store-down-time (30 min): Down, and the rule recommends offlining it.
    t.sim.step(31 * 60_000);
    let (observation, v) = t.violation("store-down", "store-2").await;
    assert!(v.message.contains("Down"), "{}", v.message);
    let d = t.diagnose(&v, &observation).await;
    assert!(d.summary.contains("S2"), "{}", d.summary);
    let rec = d.recommendations.first().expect("a recommendation");
    assert_eq!(rec.action, "offline-store");
    assert_eq!(param_int(&rec.params, "store"), 2);
    t.execute("offline-store", &rec.params).await;
    assert!(matches!(t.verify("offline-store", &rec.params).await, Verdict::Holds(_)));
    t.sim.shutdown().await;
}

#[tokio::test]
async fn a_stale_evict_leader_scheduler_is_found_and_removed() {
    let t = Tikv::start(small()).await;
    // A leftover from some maintenance: added straight through PD's API.
    let pd = t.sim.pd_urls()[0].clone();
    let reply = reqwest::Client::new()
        .post(format!("{pd}/pd/api/v1/schedulers"))
        .header("content-type", "application/json")
        .body(serde_json::json!({"name": "evict-leader-scheduler", "store_id": 3}).to_string())
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success());
    t.sim.step(5 * 60_000);
    let (observation, v) = t.violation("stale-evict-leader", "store-3").await;
    let d = t.diagnose(&v, &observation).await;
    assert!(d.summary.contains("S4"), "{}", d.summary);
    let rec = &d.recommendations[0];
    assert_eq!(rec.action, "remove-stale-scheduler");
    t.execute(&rec.action, &rec.params).await;
    assert!(matches!(t.verify(&rec.action, &rec.params).await, Verdict::Holds(_)));
    t.sim.step(10 * 60_000);
    assert!(t.sim.sim().store_stats()[&3].leader_count > 0, "leaders return to store 3");
    assert!(t.violation_keys().await.iter().all(|k| !k.starts_with("stale-evict-leader")));
    t.sim.shutdown().await;
}

#[tokio::test]
async fn a_hot_write_region_is_named_and_the_rule_splits_it() {
    let t = Tikv::start(small()).await;
    let (region, start, end) = {
        let sim = t.sim.sim();
        let r = &sim.regions[5];
        (r.id, r.start_key.clone(), r.end_key.clone())
    };
    t.sim.sim().set_write_rate(region, 40 << 20).unwrap();
    t.sim.step(4 * 60_000);
    // 40 MiB/s grows the region past the split size within minutes, as in TiKV; its parts share the
    // flow and stay hot, so the hottest one is the region or one of its parts.
    let parts: Vec<u64> = t
        .sim
        .sim()
        .regions
        .iter()
        .filter(|r| r.start_key >= start && (end.is_empty() || (!r.end_key.is_empty() && r.end_key <= end)))
        .map(|r| r.id)
        .collect();
    assert!(parts.len() > 1 && parts.contains(&region), "the hot region split: {parts:?}");
    let (observation, violations) = t.check().await;
    let v = violations
        .iter()
        .find(|v| v.invariant == "hot-write-region")
        .unwrap_or_else(|| panic!("no hot-write-region among {violations:?}"))
        .clone();
    let named: u64 = v.entity.trim_start_matches("region-").parse().unwrap();
    assert!(parts.contains(&named), "{} is not part of the hot range {parts:?}", v.entity);
    let d = t.diagnose(&v, &observation).await;
    assert!(d.summary.contains("S5"), "{}", d.summary);
    assert_eq!(d.recommendations[0].action, "split-region");
    assert_eq!(param_int(&d.recommendations[0].params, "region"), named);
    t.sim.shutdown().await;
}

#[tokio::test]
async fn a_full_disk_is_low_space_and_its_weight_can_be_lowered() {
    let t = Tikv::start(small()).await;
    {
        let mut sim = t.sim.sim();
        let store = sim.store_mut(4).unwrap();
        store.base_used = store.capacity / 10 * 9;
    }
    t.sim.step(11_000);
    let (observation, v) = t.violation("low-disk-space", "store-4").await;
    let d = t.diagnose(&v, &observation).await;
    assert!(d.summary.contains("S7"), "{}", d.summary);
    let weight = d.recommendations.iter().find(|r| r.action == "set-store-weight").expect("a weight recommendation");
    t.execute("set-store-weight", &weight.params).await;
    assert!(matches!(t.verify("set-store-weight", &weight.params).await, Verdict::Holds(_)));
    // Never move peers onto it.
    let refused = t.precheck("transfer-peer", &[int("region", 2), int("from-store", 1), int("to-store", 4)]).await;
    assert!(matches!(&refused, Err(ActionError::Precondition(m)) if m.contains("low on space")), "{refused:?}");
    t.sim.shutdown().await;
}

#[tokio::test]
async fn a_slow_store_gets_its_leaders_evicted_and_restored() {
    let t = Tikv::start(small()).await;
    t.sim.sim().store_mut(5).unwrap().slow_score = 95;
    t.sim.step(11_000);
    let (observation, v) = t.violation("slow-store", "store-5").await;
    let d = t.diagnose(&v, &observation).await;
    assert!(d.summary.contains("S8"), "{}", d.summary);
    let rec = &d.recommendations[0];
    assert_eq!(rec.action, "evict-leaders");
    t.execute("evict-leaders", &rec.params).await;
    let verdict = t.verify_within("evict-leaders", &rec.params, 10_000, 20 * 60_000).await;
    assert!(matches!(verdict, Verdict::Holds(_)), "{verdict:?}");
    // A second store may not be evicted at the same time.
    let second = t.precheck("evict-leaders", &[int("store", 1)]).await;
    assert!(matches!(&second, Err(ActionError::Precondition(m)) if m.contains("starves")), "{second:?}");
    t.execute("restore-leaders", &[int("store", 5)]).await;
    assert!(matches!(t.verify("restore-leaders", &[int("store", 5)]).await, Verdict::Holds(_)));
    t.sim.shutdown().await;
}

#[tokio::test]
async fn transfer_leader_moves_the_leader_and_verifies() {
    let t = Tikv::start(small()).await;
    let (region, target) = {
        let sim = t.sim.sim();
        let region = sim.regions.iter().find(|r| r.leader_store().is_some()).unwrap();
        let leader = region.leader_store().unwrap();
        let follower = region.peers.iter().find(|p| p.store_id != leader).unwrap().store_id;
        (region.id, follower)
    };
    let params = [int("region", region), int("to-store", target)];
    t.execute("transfer-leader", &params).await;
    // Checked right after the operator runs: balance-leader may undo a one-off move later.
    let verdict = t.verify_within("transfer-leader", &params, 200, 5_000).await;
    assert!(matches!(verdict, Verdict::Holds(_)), "{verdict:?}");
    let reconciled = t.plugin.as_subject().unwrap().reconcile(&t.context, "transfer-leader", &params, 0).await.unwrap();
    assert!(matches!(reconciled, Reconciliation::TookEffect(_)), "{reconciled:?}");
    t.sim.shutdown().await;
}

#[tokio::test]
async fn preconditions_refuse_before_any_request_is_sent() {
    let t = Tikv::start(ClusterSpec { stores: 3, regions: 60, ..ClusterSpec::default() }).await;
    let before = t.mutating_requests().await;
    let region_without_voter_on = {
        let sim = t.sim.sim();
        // With 3 stores every region has a voter everywhere; ask for a store that does not exist.
        sim.regions[0].id
    };
    let cases: Vec<(&str, Vec<Param>, &str)> = vec![
        ("transfer-leader", vec![int("region", region_without_voter_on), int("to-store", 9)], "not in the cluster"),
        ("transfer-leader", vec![int("region", 999_999), int("to-store", 1)], "does not exist"),
        ("offline-store", vec![int("store", 1)], "max-replicas"),
        ("evict-leaders", vec![int("store", 1)], "max-replicas"),
        ("restore-leaders", vec![int("store", 1)], "not under evict-leader-scheduler"),
        ("cancel-offline", vec![int("store", 2)], "not Offline"),
        ("cancel-operator", vec![int("region", region_without_voter_on)], "no operator"),
    ];
    for (action, params, expected) in cases {
        let result = t.precheck(action, &params).await;
        match result {
            Err(ActionError::Precondition(message)) => assert!(message.contains(expected), "{action}: {message}"),
            other => panic!("{action}: expected a precondition refusal, got {other:?}"),
        }
    }
    assert_eq!(t.mutating_requests().await, before, "no mutating request was sent");
    // Bad parameters are named.
    let bad = t.precheck("set-store-weight", &[int("store", 1), num("leader-weight", 1.0)]).await;
    assert!(matches!(&bad, Err(ActionError::InvalidParams(m)) if m.contains("region-weight")), "{bad:?}");
    t.sim.shutdown().await;
}

#[tokio::test]
async fn without_a_pd_leader_every_action_is_held() {
    let t = Tikv::start(small()).await;
    t.sim.kill_pd_member("pd-0").await.unwrap();
    t.sim.kill_pd_member("pd-1").await.unwrap();
    t.sim.step(15_000);
    let (observation, violations) = t.check().await;
    assert!(!observation.complete, "PD without a leader gives a partial observation");
    let no_leader = violations.iter().find(|v| v.invariant == "pd-no-leader").expect("pd-no-leader");
    let d = t.diagnose(no_leader, &observation).await;
    assert!(d.summary.contains("S10"), "{}", d.summary);
    assert!(d.wait_reason.is_some() && d.recommendations.is_empty());
    let held = t
        .plugin
        .as_subject()
        .unwrap()
        .precheck(&t.context, "transfer-leader", &[int("region", 2), int("to-store", 1)], &observation)
        .await
        .unwrap();
    assert!(matches!(&held, Err(ActionError::Precondition(m)) if m.contains("no leader")), "{held:?}");
    t.sim.shutdown().await;
}

/// A fake PD answering each path with a fixed status and body.
async fn fake_pd(routes: Vec<(&'static str, StatusCode, &'static str)>) -> SocketAddr {
    let routes: BTreeMap<&'static str, (StatusCode, &'static str)> =
        routes.into_iter().map(|(p, s, b)| (p, (s, b))).collect();
    let app = Router::new().fallback(move |uri: axum::http::Uri| {
        let reply = routes.get(uri.path()).copied();
        async move {
            match reply {
                Some((status, body)) => (status, body).into_response(),
                None => (StatusCode::OK, "[]").into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn observe_fake(routes: Vec<(&'static str, StatusCode, &'static str)>) -> (Observation, Vec<Violation>) {
    let addr = fake_pd(routes).await;
    let h = Harness::new(config_for(vec![format!("http://{addr}")], &[("status-probes", "false")]));
    let plugins = h.runtime.discover(h.dir.path(), &h.resolved);
    let plugin = plugins.get("tikv").unwrap().clone();
    let subject = plugin.as_subject().unwrap();
    let context = CallContext::default();
    let observation = subject.observe(&context).await.expect("no crash").expect("an observation, partial");
    let violations = subject.check(&context, &observation).await.unwrap();
    (observation, violations)
}

#[tokio::test]
async fn malformed_pd_replies_give_a_partial_observation_not_a_healthy_one() {
    let cases = [
        (
            "/pd/api/v1/stores",
            StatusCode::OK,
            "{\"stores\": [{\"store\": {\"id\": 1}, \"status\": {\"leader_count\": \"many\"}}]}",
            "leader_count",
        ),
        ("/pd/api/v1/stores", StatusCode::OK, "this is not json", "unreadable"),
        ("/pd/api/v1/stores", StatusCode::OK, "{\"count\":3,\"stores\":[{\"store\":{\"id\":1,", "unreadable"),
        (
            "/pd/api/v1/stores",
            StatusCode::INTERNAL_SERVER_ERROR,
            "\"[PD:cluster:ErrNotBootstrapped]TiKV cluster not bootstrapped\"",
            "500",
        ),
        ("/pd/api/v1/regions/check/miss-peer", StatusCode::OK, "{\"count\": -1}", "miss-peer"),
        (
            "/pd/api/v1/config",
            StatusCode::OK,
            "{\"schedule\":{\"max-store-down-time\":\"forever\"},\"replication\":{}}",
            "max-store-down-time",
        ),
        (
            "/pd/api/v1/stores",
            StatusCode::OK,
            "{\"stores\":[{\"store\":{\"id\":1,\"state_name\":\"Up\"},\"status\":{\"capacity\":\"huge\"}}]}",
            "capacity",
        ),
        ("/pd/api/v1/hotspot/stores", StatusCode::OK, "{\"bytes-write-rate\":{\"one\":5}}", "`one`"),
        ("/pd/api/v1/regions/writeflow", StatusCode::OK, "{\"regions\":[{\"id\":\"two\"}]}", "regions[0].id"),
        ("/pd/api/v1/regions/readflow", StatusCode::BAD_GATEWAY, "", "502"),
    ];
    for (path, status, body, expected) in cases {
        let (observation, _) = observe_fake(vec![(path, status, body)]).await;
        assert!(!observation.complete, "{path} {body}: must be partial");
        let errors = observation.errors.join("; ");
        assert!(errors.contains(path) || errors.contains(expected), "{path}: {errors}");
        assert!(errors.contains(expected), "{path}: expected `{expected}` in {errors}");
    }
}

#[tokio::test]
async fn an_unreachable_pd_is_a_violation_not_silence() {
    // Nothing listens on this port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let h = Harness::new(config_for(vec![format!("http://127.0.0.1:{port}")], &[]));
    let plugins = h.runtime.discover(h.dir.path(), &h.resolved);
    let subject_plugin = plugins.get("tikv").unwrap().clone();
    let subject = subject_plugin.as_subject().unwrap();
    let context = CallContext::default();
    let observation = subject.observe(&context).await.unwrap().unwrap();
    assert!(!observation.complete);
    let violations = subject.check(&context, &observation).await.unwrap();
    assert!(
        violations.iter().any(|v| v.invariant == "pd-no-leader" && v.message.contains("does not answer")),
        "{violations:?}"
    );
}

#[tokio::test]
async fn queries_answer_json_for_an_investigator() {
    let t = Tikv::start(small()).await;
    let subject = t.plugin.as_subject().unwrap();
    let id = t.sim.sim().regions[3].id;
    let region = subject.query(&t.context, "region", &[int("id", id)]).await.unwrap().unwrap();
    let region: serde_json::Value = serde_json::from_str(&region).unwrap();
    assert_eq!(region["region"]["id"], id);
    let of_store =
        subject.query(&t.context, "regions-of-store", &[int("store", 1), int("limit", 5)]).await.unwrap().unwrap();
    let of_store: serde_json::Value = serde_json::from_str(&of_store).unwrap();
    assert!(of_store["count"].as_u64().unwrap() > 0);
    assert!(of_store["regions"].as_array().unwrap().len() <= 5);
    // Two heartbeats, so that every region reports its flow.
    t.sim.step(120_000);
    let hot = subject.query(&t.context, "hotspots", &[text("flow", "write")]).await.unwrap().unwrap();
    let hot: serde_json::Value = serde_json::from_str(&hot).unwrap();
    let flows: Vec<f64> = hot["top"].as_array().unwrap().iter().map(|r| r["flow_bytes"].as_f64().unwrap()).collect();
    assert!(!flows.is_empty() && flows.len() <= 20, "{hot}");
    assert!(flows.windows(2).all(|w| w[0] >= w[1]) && flows[0] > 0.0, "hottest first: {flows:?}");
    assert_eq!(hot["top"][0]["peer_stores"].as_array().unwrap().len(), 3, "{hot}");
    let stores = hot["store_bytes"].as_object().unwrap();
    assert_eq!(stores.len(), t.sim.sim().stores.len(), "{hot}");
    assert!(stores.values().all(|v| v.as_f64().unwrap() > 0.0), "{hot}");
    let unknown = subject.query(&t.context, "everything", &[]).await.unwrap();
    assert!(unknown.unwrap_err().contains("unknown query"));
    t.sim.shutdown().await;
}

#[tokio::test]
async fn the_catalogue_is_typed_and_complete() {
    let t = Tikv::start(small()).await;
    let info = t.plugin.as_subject().unwrap().info(&t.context).await.unwrap();
    let actions: Vec<&str> = info.actions.iter().map(|a| a.name.as_str()).collect();
    for name in [
        "transfer-leader",
        "transfer-peer",
        "evict-leaders",
        "restore-leaders",
        "offline-store",
        "cancel-offline",
        "split-region",
        "scatter-region",
        "set-store-weight",
        "set-store-limit",
        "pause-scheduler",
        "resume-scheduler",
        "set-max-store-down-time",
        "remove-stale-scheduler",
        "cancel-operator",
    ] {
        assert!(actions.contains(&name), "{name} missing from {actions:?}");
    }
    let evict = info.actions.iter().find(|a| a.name == "evict-leaders").unwrap();
    assert_eq!(evict.undo.as_deref(), Some("restore-leaders"));
    let invariants: Vec<&str> = info.invariants.iter().map(|i| i.name.as_str()).collect();
    assert!(invariants.len() >= 15, "{invariants:?}");
    t.sim.shutdown().await;
}
