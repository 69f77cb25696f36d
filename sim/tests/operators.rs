//! Operators over time: admin operators through the API, PD's replica checker, Offline → Tombstone.

mod common;

use common::{api, call, get_json, start};

use serde_json::{Value, json};
use tikv_sim::SimCluster;
use tikv_sim::model::{PeerRole, StoreState};

/// A region, its leader's store and a store without a peer of it.
fn pick_region(c: &SimCluster) -> (u64, u64, u64, u64) {
    let sim = c.sim();
    let r = &sim.regions[10];
    let leader = r.leader_store().unwrap();
    let follower = r.peers.iter().map(|p| p.store_id).find(|s| *s != leader).unwrap();
    let outsider = (1..=6).find(|s| !r.peers.iter().any(|p| p.store_id == *s)).unwrap();
    (r.id, leader, follower, outsider)
}

#[tokio::test]
async fn admin_transfer_leader_runs_and_stays_visible() {
    let c = start().await;
    // balance-leader would undo the one-off move; keep it out of this test.
    c.sim().pause_scheduler("balance-leader-scheduler", 3600);
    let (region, leader, follower, outsider) = pick_region(&c);
    let post = |body: Value| {
        let url = api(&c, "/operators");
        async move { call(reqwest::Method::POST, &url, Some(body)).await }
    };
    let created = post(json!({"name":"transfer-leader","region_id":region,"to_store_id":follower})).await;
    assert_eq!(created, (200, "\"The operator is created.\"\n".into()));
    let list = get_json(&api(&c, "/operators")).await;
    let text = list[0].as_str().unwrap();
    assert!(
        text.starts_with(&format!("admin-transfer-leader {{transfer leader: store {leader} to {follower}}} (kind:admin,leader, region:{region}(")),
        "{text}"
    );
    assert!(text.contains(&format!("steps:[0:{{transfer leader from store {leader} to store {follower}}}]")));
    let again = post(json!({"name":"transfer-leader","region_id":region,"to_store_id":leader})).await;
    assert_eq!(again, (500, "\"[PD:operator:ErrAddOperator]failed to add operator, maybe already have one\"\n".into()));
    let (status, body) = call(reqwest::Method::GET, &api(&c, &format!("/operators/{region}")), None).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("\"status: RUNNING, operator: admin-transfer-leader"), "{body}");

    c.step(100);
    let r = get_json(&api(&c, &format!("/region/id/{region}"))).await;
    assert_eq!(r["leader"]["store_id"], follower);
    assert_eq!(get_json(&api(&c, "/operators")).await, json!([]));
    let (_, body) = call(reqwest::Method::GET, &api(&c, &format!("/operators/{region}")), None).await;
    assert!(body.starts_with("\"status: SUCCESS, operator: admin-transfer-leader"), "{body}");
    c.step(10 * 60_000);
    let (status, body) = call(reqwest::Method::GET, &api(&c, &format!("/operators/{region}")), None).await;
    assert_eq!((status, body.as_str()), (500, "\"[PD:operator:ErrOperatorNotFound]operator not found\"\n"));

    let errors = [
        (json!({"region_id": region}), 400, "\"missing operator name\"\n".to_string()),
        (json!({"name": "teleport", "region_id": region}), 400, "\"unknown operator\"\n".to_string()),
        (json!({"name": "transfer-leader", "to_store_id": 1}), 400, "\"missing region id\"\n".to_string()),
        (
            json!({"name": "transfer-leader", "region_id": 99_999_999, "to_store_id": 1}),
            500,
            "\"[PD:region:ErrRegionNotFound]region 99999999 not found\"\n".to_string(),
        ),
        (
            json!({"name": "transfer-leader", "region_id": region, "to_store_id": outsider}),
            500,
            format!("\"region has no voter in store {outsider}\"\n"),
        ),
        (
            json!({"name": "add-peer", "region_id": region, "store_id": leader}),
            500,
            format!("\"region already has peer in store {leader}\"\n"),
        ),
    ];
    for (body, status, text) in errors {
        assert_eq!(post(body.clone()).await, (status, text), "{body}");
    }
    c.shutdown().await;
}

#[tokio::test]
async fn admin_add_peer_goes_pending_then_voter_and_checker_trims_extra() {
    let c = start().await;
    let (region, _, _, outsider) = pick_region(&c);
    let body = json!({"name":"add-peer","region_id":region,"store_id":outsider});
    assert_eq!(call(reqwest::Method::POST, &api(&c, "/operators"), Some(body)).await.0, 200);
    c.step(100);
    let r = get_json(&api(&c, &format!("/region/id/{region}"))).await;
    let learner = r["peers"].as_array().unwrap().iter().find(|p| p["store_id"] == outsider).unwrap().clone();
    assert_eq!(learner["role_name"], "Learner");
    assert_eq!(learner["is_learner"], true);
    assert_eq!(learner["role"], 1);
    assert_eq!(r["pending_peers"][0]["store_id"], outsider);
    assert_eq!(get_json(&api(&c, "/regions/check/pending-peer")).await["count"], 1);
    assert_eq!(get_json(&api(&c, "/regions/check/learner-peer")).await["count"], 1);

    // The snapshot (at most 96 MiB at 40 MB/s) completes, then the learner is promoted.
    c.step(3_000);
    let r = get_json(&api(&c, &format!("/region/id/{region}"))).await;
    assert!(r.get("pending_peers").is_none());
    assert!(r["epoch"]["conf_ver"].as_u64().unwrap() >= 5);
    // Four voters with max-replicas 3: PD's replica checker removes one.
    c.step(5_000);
    let r = get_json(&api(&c, &format!("/region/id/{region}"))).await;
    assert_eq!(r["peers"].as_array().unwrap().len(), 3);
    let finished: Vec<String> = c
        .sim()
        .finished_operators
        .iter()
        .filter(|o| o.region_id == region)
        .map(|o| format!("{} {:?}", o.desc, o.status))
        .collect();
    assert_eq!(finished, ["admin-add-peer Success", "remove-extra-replica Success"]);
    assert_eq!(get_json(&api(&c, "/regions/check/extra-peer")).await["count"], 0);
    c.shutdown().await;
}

#[tokio::test]
async fn canceling_operators() {
    let c = start().await;
    let (region, _, _, outsider) = pick_region(&c);
    let body = json!({"name":"transfer-peer","region_id":region,"from_store_id":9,"to_store_id":outsider});
    assert_eq!(
        call(reqwest::Method::POST, &api(&c, "/operators"), Some(body)).await,
        (500, "\"region has no peer in store 9\"\n".into())
    );
    let from = c.sim().region(region).unwrap().peers[0].store_id;
    let body = json!({"name":"transfer-peer","region_id":region,"from_store_id":from,"to_store_id":outsider});
    assert_eq!(call(reqwest::Method::POST, &api(&c, "/operators"), Some(body)).await.0, 200);
    c.step(100);
    let url = api(&c, &format!("/operators/{region}"));
    assert_eq!(
        call(reqwest::Method::DELETE, &url, None).await,
        (200, "\"The pending operator is canceled.\"\n".into())
    );
    assert_eq!(call(reqwest::Method::DELETE, &url, None).await.0, 500);
    // The half-added learner is dropped with its operator.
    assert_eq!(c.sim().region(region).unwrap().peers.len(), 3);
    assert!(call(reqwest::Method::GET, &url, None).await.1.starts_with("\"status: CANCELED"));
    let (status, body) = call(reqwest::Method::DELETE, &api(&c, "/operators"), None).await;
    assert_eq!((status, body.as_str()), (200, "\"All pending operators are canceled.\"\n"));
    c.shutdown().await;
}

#[tokio::test]
async fn offline_store_drains_to_tombstone() {
    let c = start().await;
    assert_eq!(call(reqwest::Method::DELETE, &api(&c, "/store/6"), None).await.0, 200);
    c.step(2_000);
    let ops = get_json(&api(&c, "/operators")).await;
    let ops = ops.as_array().unwrap();
    assert!(!ops.is_empty() && ops.len() <= 64, "within replica-schedule-limit: {}", ops.len());
    assert!(ops[0].as_str().unwrap().starts_with("replace-offline-replica {mv peer: store [6] to ["));
    // 500 peers at 15 add-peer operations per minute on each of five stores: about seven minutes.
    c.step(5 * 60_000);
    let s = get_json(&api(&c, "/store/6")).await;
    assert_eq!(s["store"]["state_name"], "Offline");
    assert!(s["status"]["region_count"].as_u64().unwrap() > 0);
    c.step(10 * 60_000);
    let s = get_json(&api(&c, "/store/6")).await;
    assert_eq!(s["store"]["state_name"], "Tombstone");
    assert_eq!(s["store"]["node_state"], 3);
    assert_eq!(s["status"]["region_count"], 0);
    assert_eq!(get_json(&api(&c, "/stores")).await["count"], 5);
    assert_eq!(get_json(&api(&c, "/regions/check/offline-peer")).await["count"], 0);
    assert_eq!(get_json(&api(&c, "/regions/check/miss-peer")).await["count"], 0);
    let sim = c.sim();
    assert_eq!(sim.store(6).unwrap().state, StoreState::Tombstone);
    for r in &sim.regions {
        assert_eq!(r.peers.iter().filter(|p| p.role == PeerRole::Voter).count(), 3);
        assert!(r.leader_store().is_some_and(|s| s != 6));
    }
}

#[tokio::test]
async fn down_store_replicas_are_rebuilt_after_max_store_down_time() {
    let c = start().await;
    c.kill_store(1).await.unwrap();
    c.step(29 * 60_000);
    assert_eq!(get_json(&api(&c, "/operators")).await, json!([]), "no repair before max-store-down-time");
    c.step(2 * 60_000);
    // Repairs run as fast as the store limits refill, so look at running and finished ones alike.
    let repairs: Vec<String> = {
        let sim = c.sim();
        sim.operators.iter().chain(&sim.finished_operators).map(|o| o.describe(&sim)).collect()
    };
    assert!(repairs.iter().any(|d| d.starts_with("replace-down-replica {mv peer: store [1] to [")), "{repairs:?}");
    c.step(15 * 60_000);
    assert_eq!(get_json(&api(&c, "/regions/check/down-peer")).await["count"], 0);
    assert_eq!(get_json(&api(&c, "/regions/check/miss-peer")).await["count"], 0);
    let s = get_json(&api(&c, "/store/1")).await;
    assert_eq!(s["status"]["region_count"], 0);
    // A Down store is not buried by PD; it stays until removed.
    assert_eq!(s["store"]["state_name"], "Down");
}
