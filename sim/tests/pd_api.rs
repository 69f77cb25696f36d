//! PD API shapes over real HTTP on loopback, checked against `reference/pd-http-api.md`.

use std::sync::Arc;

use serde_json::{Value, json};
use tikv_sim::model::StoreState;
use tikv_sim::{ClusterSpec, MissingRegionReply, SimCluster};

const JSON_TYPE: &str = "application/json; charset=UTF-8";
const OCTET_TYPE: &str = "application/octet-stream";

struct Reply {
    status: u16,
    content_type: String,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn client() -> reqwest::Client {
    // No pooled connections: a killed listener must show as a refused connection.
    reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap()
}

async fn send(method: reqwest::Method, url: &str, body: Option<Value>) -> Reply {
    let mut req = client().request(method, url);
    if let Some(body) = body {
        req = req.body(body.to_string());
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let content_type =
        headers.get("content-type").map(|v| v.to_str().unwrap_or_default().to_string()).unwrap_or_default();
    let body = resp.text().await.unwrap();
    Reply { status, content_type, headers, body }
}

async fn get(url: &str) -> Reply {
    send(reqwest::Method::GET, url, None).await
}

async fn start() -> Arc<SimCluster> {
    let spec = ClusterSpec { start_unix_ms: Some(1_780_000_000_000), ..ClusterSpec::default() };
    SimCluster::start(spec, 0.0).await.unwrap()
}

fn api(cluster: &SimCluster, member: usize, path: &str) -> String {
    format!("{}/pd/api/v1{path}", cluster.pd_urls()[member])
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

fn sorted(mut v: Vec<&str>) -> Vec<&str> {
    v.sort();
    v
}

/// Indented JSON as PD's render writes it.
fn assert_indented(reply: &Reply) {
    assert_eq!(reply.content_type, JSON_TYPE, "{}", reply.body);
    assert!(reply.body.ends_with('\n'), "no trailing newline: {:?}", reply.body);
    let value = reply.json();
    // Two-space indentation, one member per line, `": "` separators, as json.MarshalIndent writes.
    let nested = value.as_object().is_some_and(|o| !o.is_empty()) || value.as_array().is_some_and(|a| !a.is_empty());
    if nested {
        assert!(reply.body.contains("\n  "), "not indented: {}", reply.body);
    }
    for line in reply.body.lines() {
        let indent = line.len() - line.trim_start().len();
        assert_eq!(indent % 2, 0, "odd indentation in {:?}", reply.body);
        assert!(!line.trim_start().starts_with(' '));
    }
    assert!(!reply.body.contains("\":\"") && !reply.body.contains("\":{"), "compact separators: {}", reply.body);
}

#[tokio::test]
async fn members_health_cluster_version_status() {
    let c = start().await;
    let r = get(&api(&c, 0, "/health")).await;
    assert_eq!(r.status, 200);
    assert_indented(&r);
    let list = r.json();
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert_eq!(sorted(keys(&list[0])), ["client_urls", "health", "member_id", "name"]);
    assert_eq!(list[0]["name"], "pd-0");
    assert_eq!(list[0]["health"], true);
    assert_eq!(list[1]["client_urls"][0], c.pd_urls()[1]);

    let r = get(&api(&c, 0, "/members")).await;
    assert_indented(&r);
    let m = r.json();
    assert_eq!(keys(&m), ["etcd_leader", "header", "leader", "members"]);
    assert!(m["header"]["cluster_id"].as_u64().unwrap() > 0);
    assert_eq!(
        sorted(keys(&m["members"][0])),
        ["binary_version", "client_urls", "deploy_path", "git_hash", "member_id", "name", "peer_urls"]
    );
    assert_eq!(m["leader"]["name"], "pd-0");
    assert_eq!(m["etcd_leader"]["name"], "pd-0");

    let r = get(&api(&c, 1, "/leader")).await;
    assert_indented(&r);
    assert_eq!(r.json()["name"], "pd-0");
    assert_eq!(r.json()["client_urls"][0], c.pd_urls()[0]);

    let r = get(&api(&c, 0, "/cluster")).await;
    assert_indented(&r);
    assert_eq!(sorted(keys(&r.json())), ["id", "max_peer_count"]);
    assert_eq!(r.json()["max_peer_count"], 3);

    let r = get(&api(&c, 0, "/cluster/status")).await;
    assert_indented(&r);
    let s = r.json();
    assert_eq!(s["raft_bootstrap_time"], "2026-05-28T20:26:40Z");
    assert_eq!(s["is_initialized"], true);
    assert_eq!(s["replication_status"], "");

    let r = get(&api(&c, 0, "/version")).await;
    assert_indented(&r);
    assert_eq!(r.json(), json!({"version": "v8.5.0"}));

    let r = get(&api(&c, 0, "/status")).await;
    assert_indented(&r);
    assert_eq!(sorted(keys(&r.json())), ["build_ts", "git_hash", "start_timestamp", "version"]);
    assert_eq!(r.json()["start_timestamp"], 1_780_000_000);

    // etcd's own health check on the same port.
    let r = get(&format!("{}/health", c.pd_urls()[2])).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, r#"{"health":"true","reason":""}"#);

    let r = get(&api(&c, 0, "/no-such-route")).await;
    assert_eq!(r.status, 404);
    c.shutdown().await;
}

#[tokio::test]
async fn stores_shapes_and_filters() {
    let c = start().await;
    c.step(15_000);
    let r = get(&api(&c, 0, "/stores")).await;
    assert_eq!(r.status, 200);
    assert_indented(&r);
    let v = r.json();
    assert_eq!(keys(&v), ["count", "stores"]);
    assert_eq!(v["count"], 6);
    let info = &v["stores"][0];
    assert_eq!(keys(info), ["status", "store"]);
    let store = &info["store"];
    // Up (0) and Preparing states are absent; Serving is 1.
    assert_eq!(
        sorted(keys(store)),
        [
            "address",
            "deploy_path",
            "git_hash",
            "id",
            "labels",
            "last_heartbeat",
            "node_state",
            "start_timestamp",
            "state_name",
            "status_address",
            "version"
        ]
    );
    assert_eq!(store["node_state"], 1);
    assert_eq!(store["state_name"], "Up");
    assert_eq!(store["labels"][0], json!({"key": "zone", "value": "z1"}));
    assert_eq!(store["status_address"], c.status_addrs()[&1].as_str());
    let hb = store["last_heartbeat"].as_i64().unwrap();
    assert!(hb > 1_780_000_000_000_000_000 && hb <= 1_780_000_015_000_000_000, "nanoseconds: {hb}");
    assert_eq!(store["start_timestamp"], 1_780_000_000);
    let status = &info["status"];
    assert_eq!(
        sorted(keys(status)),
        [
            "available",
            "capacity",
            "last_heartbeat_ts",
            "leader_count",
            "leader_score",
            "leader_size",
            "leader_weight",
            "region_count",
            "region_score",
            "region_size",
            "region_weight",
            "slow_score",
            "start_ts",
            "uptime",
            "used_size"
        ]
    );
    assert_eq!(status["capacity"], "1TiB");
    assert!(status["available"].as_str().unwrap().ends_with("GiB"));
    assert!(status["used_size"].as_str().unwrap().ends_with("GiB"));
    // Regions near 96 MiB may already have split; the count follows the model.
    let expected = c.sim().store_stats()[&1].region_count;
    assert!(expected >= 500);
    assert_eq!(status["region_count"], expected);
    assert_eq!(status["leader_weight"], 1);
    assert!(r.body.contains("\"leader_weight\": 1,"), "weights render as Go floats");
    assert_eq!(status["start_ts"], "2026-05-28T20:26:40Z");
    assert!(status["uptime"].as_str().unwrap().ends_with('s'));
    let total_leaders: u64 =
        v["stores"].as_array().unwrap().iter().map(|s| s["status"]["leader_count"].as_u64().unwrap()).sum();
    assert_eq!(total_leaders, c.sim().regions.len() as u64);

    // Offline shows a state; Tombstone is left out of the default list.
    {
        let mut sim = c.sim();
        sim.store_mut(5).unwrap().state = StoreState::Offline;
        sim.store_mut(6).unwrap().state = StoreState::Tombstone;
    }
    let v = get(&api(&c, 0, "/stores")).await.json();
    assert_eq!(v["count"], 5);
    assert_eq!(v["stores"][4]["store"]["state"], 1);
    assert_eq!(v["stores"][4]["store"]["node_state"], 2);
    assert_eq!(v["stores"][4]["store"]["state_name"], "Offline");
    let v = get(&api(&c, 0, "/stores?state=2")).await.json();
    assert_eq!(v["count"], 1);
    assert_eq!(v["stores"][0]["store"]["state_name"], "Tombstone");
    assert_eq!(v["stores"][0]["store"]["state"], 2);
    let v = get(&api(&c, 0, "/stores?state=0&state=2")).await.json();
    assert_eq!(v["count"], 5);

    let r = get(&api(&c, 0, "/stores/check?state=OFFLINE")).await;
    assert_indented(&r);
    assert_eq!(r.json()["count"], 1);
    let v = get(&api(&c, 0, "/stores/check?state=up&state=tombstone")).await.json();
    assert_eq!(v["count"], 5);
    let r = get(&api(&c, 0, "/stores/check?state=x")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body, "\"unknown StoreState: x\"\n");

    let r = get(&api(&c, 0, "/store/2")).await;
    assert_indented(&r);
    assert_eq!(r.json()["store"]["id"], 2);
    let r = get(&api(&c, 0, "/store/9")).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.content_type, JSON_TYPE);
    assert_eq!(r.body, "\"[PD:core:ErrStoreNotFound]store 9 not found\"\n");
    let r = get(&api(&c, 0, "/store/abc")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.headers.get("TiDB-Error-Code").unwrap(), "input");
    assert_indented(&r);
    assert_eq!(keys(&r.json()), ["code", "data", "msg"]);
    assert_eq!(
        r.body,
        "{\n  \"code\": \"input\",\n  \"msg\": \"strconv.ParseUint: parsing \\\"abc\\\": invalid syntax\",\n  \"data\": {}\n}\n"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn region_shapes() {
    let c = start().await;
    let r = get(&api(&c, 0, "/regions/count")).await;
    assert_indented(&r);
    assert_eq!(r.body, "{\n  \"count\": 1000,\n  \"regions\": null\n}\n");

    let first = c.sim().regions[0].id;
    let r = get(&api(&c, 0, &format!("/region/id/{first}"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, OCTET_TYPE);
    assert!(!r.body.contains('\n') && !r.body.contains(": "), "compact: {}", r.body);
    let v = r.json();
    let order: Vec<&str> = {
        // Key order as written on the wire.
        let mut seen = Vec::new();
        for k in [
            "\"id\"",
            "\"start_key\"",
            "\"end_key\"",
            "\"epoch\"",
            "\"peers\"",
            "\"leader\"",
            "\"cpu_usage\"",
            "\"written_bytes\"",
            "\"read_bytes\"",
            "\"written_keys\"",
            "\"read_keys\"",
            "\"approximate_size\"",
            "\"approximate_keys\"",
            "\"approximate_kv_size\"",
        ] {
            seen.push((r.body.find(k).unwrap_or_else(|| panic!("{k} missing")), k));
        }
        let mut sorted_seen = seen.clone();
        sorted_seen.sort();
        assert_eq!(seen, sorted_seen, "keys out of order: {}", r.body);
        seen.into_iter().map(|(_, k)| k).collect()
    };
    assert_eq!(order.len(), 14);
    assert_eq!(v["start_key"], "");
    let end = v["end_key"].as_str().unwrap();
    assert!(end.starts_with("7480000000000000FF") && end == end.to_uppercase());
    assert_eq!(keys(&v["epoch"]), ["conf_ver", "version"]);
    assert_eq!(v["peers"].as_array().unwrap().len(), 3);
    // Voters carry no role and no is_learner.
    assert_eq!(keys(&v["peers"][0]), ["id", "role_name", "store_id"]);
    assert_eq!(v["peers"][0]["role_name"], "Voter");
    assert_eq!(v["leader"]["role_name"], "Voter");
    assert!(v.get("down_peers").is_none() && v.get("pending_peers").is_none());

    // PD v8.5: a missing region is 200 with the empty region.
    let r = get(&api(&c, 0, "/region/id/99999999")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, OCTET_TYPE);
    assert_eq!(
        r.body,
        r#"{"id":0,"start_key":"","end_key":"","leader":{"role_name":""},"cpu_usage":0,"written_bytes":0,"read_bytes":0,"written_keys":0,"read_keys":0,"approximate_size":0,"approximate_keys":0,"approximate_kv_size":0}"#
    );
    c.sim().set_missing_region_reply(MissingRegionReply::NotFound);
    let r = get(&api(&c, 0, "/region/id/99999999")).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body, "\"[PD:region:ErrRegionNotFound]region 99999999 not found\"\n");
    // PD's region handler answers a bad id with the strconv error as a JSON string, no errcode.
    let r = get(&api(&c, 0, "/region/id/x")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.content_type, JSON_TYPE);
    assert!(r.headers.get("TiDB-Error-Code").is_none());
    assert_eq!(r.body, "\"strconv.ParseUint: parsing \\\"x\\\": invalid syntax\"\n");

    for kind in [
        "miss-peer",
        "extra-peer",
        "pending-peer",
        "down-peer",
        "offline-peer",
        "empty-region",
        "learner-peer",
        "oversized-region",
        "undersized-region",
    ] {
        let r = get(&api(&c, 0, &format!("/regions/check/{kind}"))).await;
        assert_eq!(r.status, 200, "{kind}");
        assert_eq!(r.content_type, OCTET_TYPE, "{kind}");
        let v = r.json();
        assert_eq!(keys(&v), ["count", "regions"], "{kind}");
        assert_eq!(v["count"].as_u64().unwrap() as usize, v["regions"].as_array().unwrap().len());
        let expect_some = matches!(kind, "empty-region" | "undersized-region");
        assert_eq!(v["count"].as_u64().unwrap() > 0, expect_some, "{kind}: {}", v["count"]);
    }
    let r = get(&api(&c, 0, "/regions/check/miss-peer")).await;
    assert_eq!(r.body, r#"{"count":0,"regions":[]}"#);
    // An Offline store's peers show as offline-peer.
    c.sim().store_mut(3).unwrap().state = StoreState::Offline;
    let v = get(&api(&c, 0, "/regions/check/offline-peer")).await.json();
    assert_eq!(v["count"], 500);
    assert_eq!(get(&api(&c, 0, "/regions/check/nonsense")).await.status, 404);
    c.shutdown().await;
}

#[tokio::test]
async fn config_schedulers_operators() {
    let c = start().await;
    let r = get(&api(&c, 0, "/config")).await;
    assert_indented(&r);
    let v = r.json();
    for section in ["schedule", "replication", "pd-server"] {
        assert!(v.get(section).is_some(), "{section}");
    }
    let s = &v["schedule"];
    assert_eq!(s["max-store-down-time"], "30m0s");
    assert_eq!(s["leader-schedule-limit"], 4);
    assert_eq!(s["region-schedule-limit"], 2048);
    assert_eq!(s["replica-schedule-limit"], 64);
    assert_eq!(s["max-snapshot-count"], 64);
    assert_eq!(s["max-pending-peer-count"], 64);
    assert_eq!(s["low-space-ratio"], 0.8);
    assert_eq!(s["high-space-ratio"], 0.7);
    assert_eq!(s["halt-scheduling"], "false");
    assert_eq!(s["split-merge-interval"], "1h0m0s");
    // Answered by the member that receives it.
    assert_eq!(get(&api(&c, 2, "/config")).await.json()["name"], "pd-2");

    let r = get(&api(&c, 0, "/config/replicate")).await;
    assert_indented(&r);
    assert_eq!(
        r.json(),
        json!({"max-replicas":3,"location-labels":"","strictly-match-label":"false","enable-placement-rules":"true",
               "enable-placement-rules-cache":"false","isolation-level":""})
    );

    let r = get(&api(&c, 0, "/schedulers")).await;
    assert_indented(&r);
    let mut names: Vec<String> = serde_json::from_value(r.json()).unwrap();
    names.sort();
    assert_eq!(
        names,
        [
            "balance-hot-region-scheduler",
            "balance-leader-scheduler",
            "balance-region-scheduler",
            "evict-slow-store-scheduler"
        ]
    );
    let post = |body: Value| {
        let url = api(&c, 1, "/schedulers");
        async move { send(reqwest::Method::POST, &url, Some(body)).await }
    };
    let r = post(json!({"name":"evict-leader-scheduler","store_id":1})).await;
    assert_eq!((r.status, r.body.as_str()), (200, "\"The scheduler is created.\"\n"));
    let r = post(json!({"name":"evict-leader-scheduler","store_id":2})).await;
    assert_eq!((r.status, r.body.as_str()), (200, "\"The scheduler has been applied to the store.\"\n"));
    let r = post(json!({"name":"balance-leader-scheduler"})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "\"[PD:scheduler:ErrSchedulerExisted]scheduler existed\"\n"));
    let r = post(json!({"name":"no-such-scheduler"})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "\"unknown scheduler\"\n"));
    let r = post(json!({"name":"evict-leader-scheduler"})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "\"missing store id\"\n"));
    let r = send(reqwest::Method::POST, &api(&c, 0, "/schedulers"), None).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.headers.get("TiDB-Error-Code").unwrap(), "input");
    assert!(get(&api(&c, 0, "/schedulers")).await.body.contains("\"evict-leader-scheduler\""));

    let delete = |name: &str| {
        let url = api(&c, 0, &format!("/schedulers/{name}"));
        async move { send(reqwest::Method::DELETE, &url, None).await }
    };
    let r = delete("evict-leader-scheduler-1").await;
    assert_eq!((r.status, r.body.as_str()), (200, "\"The scheduler is removed.\"\n"));
    assert!(get(&api(&c, 0, "/schedulers")).await.body.contains("\"evict-leader-scheduler\""));
    let r = delete("evict-leader-scheduler-2").await;
    assert_eq!(r.status, 200);
    assert!(!get(&api(&c, 0, "/schedulers")).await.body.contains("evict-leader"));
    let r = delete("evict-leader-scheduler-2").await;
    assert_eq!((r.status, r.body.as_str()), (404, "\"[PD:scheduler:ErrSchedulerNotFound]scheduler not found\"\n"));
    let r = delete("balance-region-scheduler").await;
    assert_eq!(r.status, 200);
    assert_eq!(get(&api(&c, 0, "/schedulers")).await.json().as_array().unwrap().len(), 3);

    let r = get(&api(&c, 0, "/operators")).await;
    assert_eq!((r.status, r.body.as_str(), r.content_type.as_str()), (200, "[]\n", JSON_TYPE));
    let r = get(&api(&c, 0, "/operators?kind=admin")).await;
    assert_eq!(r.body, "null\n");
    c.shutdown().await;
}

#[tokio::test]
async fn followers_proxy_and_no_leader_is_503() {
    let c = start().await;
    c.step(10_000);
    let from_leader = get(&api(&c, 0, "/stores")).await;
    let from_follower = get(&api(&c, 2, "/stores")).await;
    assert_eq!(from_follower.status, 200);
    assert_eq!(from_follower.body, from_leader.body);

    // The leader goes: the others elect a new one.
    c.kill_pd_member("pd-0").await.unwrap();
    assert!(client().get(api(&c, 0, "/health")).send().await.is_err(), "a stopped member does not answer");
    let r = get(&api(&c, 1, "/stores")).await;
    assert_eq!(r.status, 503);
    c.step(3_000);
    let r = get(&api(&c, 2, "/leader")).await;
    assert_eq!(r.json()["name"], "pd-1");
    let health = get(&api(&c, 2, "/health")).await.json();
    assert_eq!(health[0]["health"], false);

    // A majority lost: no leader at all.
    c.kill_pd_member("pd-1").await.unwrap();
    c.step(5_000);
    let r = get(&api(&c, 2, "/stores")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.content_type, "text/plain; charset=utf-8");
    assert_eq!(r.body, "[PD:apiutil:ErrRedirectNoLeader]redirect finds no leader\n");
    let r = get(&format!("{}/health", c.pd_urls()[2])).await;
    assert_eq!(r.status, 503, "etcd's own /health is served locally and reports the lost quorum");
    assert_eq!(r.body, r#"{"health":"false","reason":"RAFT NO LEADER"}"#);

    c.restart_pd_member("pd-0").await.unwrap();
    c.step(3_000);
    assert_eq!(get(&api(&c, 0, "/leader")).await.json()["name"], "pd-0");

    c.restart_pd_member("pd-1").await.unwrap();
    let r = send(reqwest::Method::POST, &api(&c, 2, "/leader/transfer/pd-2"), None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "\"The transfer command is submitted.\"\n"));
    assert_eq!(get(&api(&c, 0, "/leader")).await.json()["name"], "pd-2");
    let r = send(reqwest::Method::POST, &api(&c, 0, "/leader/transfer/pd-9"), None).await;
    assert_eq!(r.status, 500);
    let r = send(reqwest::Method::POST, &api(&c, 1, "/leader/resign"), None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "\"The resign command is submitted.\"\n"));
    assert_eq!(get(&api(&c, 1, "/members")).await.json()["leader"]["name"], "pd-0");
    c.shutdown().await;
}

#[tokio::test]
async fn store_state_label_weight_limit() {
    let c = start().await;
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let url = api(&c, 1, path);
        async move { send(method, &url, body).await }
    };
    use reqwest::Method;

    let r = call(Method::DELETE, "/store/6", None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "\"The store is set as Offline.\"\n"));
    assert_eq!(r.content_type, JSON_TYPE);
    let s = get(&api(&c, 0, "/store/6")).await.json();
    assert_eq!((s["store"]["state"].clone(), s["store"]["state_name"].clone()), (json!(1), json!("Offline")));
    // Already Offline: a no-op.
    assert_eq!(call(Method::DELETE, "/store/6", None).await.status, 200);
    assert_eq!(get(&api(&c, 0, "/regions/check/offline-peer")).await.json()["count"], 500);
    let r = call(Method::POST, "/store/6/state?state=Up", None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "\"The store's state is updated.\"\n"));
    assert_eq!(get(&api(&c, 0, "/store/6")).await.json()["store"]["state_name"], "Up");
    let r = call(Method::POST, "/store/6/state?state=Removed", None).await;
    assert_eq!((r.status, r.body.as_str()), (400, "\"invalid state Removed\"\n"));

    // Three Up stores left and max-replicas 3: the fourth removal is refused unless forced.
    for id in [4, 5, 6] {
        assert_eq!(call(Method::DELETE, &format!("/store/{id}"), None).await.status, 200);
    }
    let r = call(Method::DELETE, "/store/3", None).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        "\"[PD:core:ErrStoresNotEnough]can not remove store 3 since the number of up stores would be 2 while need 3\"\n"
    );
    assert_eq!(call(Method::DELETE, "/store/3?force", None).await.status, 200);
    let r = call(Method::DELETE, "/store/9", None).await;
    assert_eq!((r.status, r.body.as_str()), (404, "\"[PD:core:ErrStoreNotFound]store 9 not found\"\n"));
    c.sim().store_mut(5).unwrap().state = StoreState::Tombstone;
    let r = call(Method::DELETE, "/store/5", None).await;
    assert_eq!((r.status, r.body.as_str()), (410, "\"[PD:core:ErrStoreRemoved]store 5 has been removed\"\n"));
    assert_eq!(call(Method::POST, "/store/5/state?state=Up", None).await.status, 410);
    let r = call(Method::DELETE, "/store/x", None).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.headers.get("TiDB-Error-Code").unwrap(), "input");

    let r = call(Method::POST, "/store/1/label", Some(json!({"zone": "z9", "rack": "r1"}))).await;
    assert_eq!((r.status, r.body.as_str()), (200, "\"The store's label is updated.\"\n"));
    let labels = get(&api(&c, 0, "/store/1")).await.json()["store"]["labels"].clone();
    assert_eq!(
        labels,
        json!([{"key":"zone","value":"z9"},{"key":"host","value":"tikv-1"},{"key":"rack","value":"r1"}])
    );
    call(Method::POST, "/store/1/label?force=true", Some(json!({"zone": "z2"}))).await;
    assert_eq!(get(&api(&c, 0, "/store/1")).await.json()["store"]["labels"], json!([{"key":"zone","value":"z2"}]));
    let r = send(Method::POST, &api(&c, 0, "/store/1/label"), None).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.headers.get("TiDB-Error-Code").unwrap(), "input");

    let r = call(Method::POST, "/store/2/weight", Some(json!({"leader": 2.5, "region": 0}))).await;
    assert_eq!((r.status, r.body.as_str()), (200, "\"The store's weight is updated.\"\n"));
    let st = get(&api(&c, 0, "/store/2")).await.json()["status"].clone();
    assert_eq!((st["leader_weight"].clone(), st["region_weight"].clone()), (json!(2.5), json!(0)));
    let r = call(Method::POST, "/store/2/weight", Some(json!({"leader": 1}))).await;
    assert_eq!((r.status, r.body.as_str()), (400, "\"missing region weight\"\n"));
    let r = call(Method::POST, "/store/2/weight", Some(json!({"leader": -1, "region": 1}))).await;
    assert_eq!((r.status, r.body.as_str()), (400, "\"bad format leader weight\"\n"));

    let r = get(&api(&c, 0, "/stores/limit")).await;
    assert_indented(&r);
    assert_eq!(r.json()["1"], json!({"add-peer": 15, "remove-peer": 15}));
    assert!(r.json().get("5").is_none(), "tombstones have no limit");
    let r = call(Method::POST, "/store/1/limit", Some(json!({"rate": 30, "type": "add-peer"}))).await;
    assert_eq!((r.status, r.body.as_str()), (200, "\"The store's limit is updated.\"\n"));
    call(Method::POST, "/store/2/limit", Some(json!({"rate": 5}))).await;
    let limits = get(&api(&c, 0, "/stores/limit")).await.json();
    assert_eq!(limits["1"], json!({"add-peer": 30, "remove-peer": 15}));
    assert_eq!(limits["2"], json!({"add-peer": 5, "remove-peer": 5}));
    let r = call(Method::POST, "/store/1/limit", Some(json!({"type": "add-peer"}))).await;
    assert_eq!((r.status, r.body.as_str()), (400, "\"rate unset\"\n"));
    c.shutdown().await;
}

#[tokio::test]
async fn config_updates() {
    let c = start().await;
    let post = |body: Value| {
        let url = api(&c, 1, "/config");
        async move { send(reqwest::Method::POST, &url, Some(body)).await }
    };
    let r = post(json!({"max-store-down-time": "1h"})).await;
    assert_eq!((r.status, r.body.as_str()), (200, "\"The config is updated.\"\n"));
    let r = post(json!({"schedule.leader-schedule-limit": 8, "halt-scheduling": "true", "max-replicas": 5})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = get(&api(&c, 0, "/config")).await.json();
    assert_eq!(v["schedule"]["max-store-down-time"], "1h0m0s");
    assert_eq!(v["schedule"]["leader-schedule-limit"], 8);
    assert_eq!(v["schedule"]["halt-scheduling"], "true");
    assert_eq!(v["replication"]["max-replicas"], 5);
    assert_eq!(get(&api(&c, 0, "/cluster")).await.json()["max_peer_count"], 5);
    assert_eq!(get(&api(&c, 0, "/regions/check/miss-peer")).await.json()["count"], 1000);

    let r = post(json!({"no-such-item": 1})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "\"config item no-such-item not found\"\n"));
    let r = post(json!({"max-store-down-time": "soon"})).await;
    assert_eq!(r.status, 400);
    // A refused request changes nothing, even for its valid items.
    let r = post(json!({"leader-schedule-limit": 2, "halt-scheduling": "maybe"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(get(&api(&c, 0, "/config")).await.json()["schedule"]["leader-schedule-limit"], 8);
    let r = send(reqwest::Method::POST, &api(&c, 0, "/config"), None).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.headers.get("TiDB-Error-Code").unwrap(), "input");
    c.shutdown().await;
}

#[tokio::test]
async fn region_lists_and_lookups() {
    let c = start().await;
    let r = get(&api(&c, 0, "/regions")).await;
    assert_eq!(r.content_type, OCTET_TYPE);
    let all = r.json();
    assert_eq!(all["count"], 1000);
    let second = &all["regions"][1];
    let start_key = second["start_key"].as_str().unwrap().to_string();

    let r = get(&api(&c, 0, &format!("/region/key/{start_key}?format=hex"))).await;
    assert_eq!(r.content_type, OCTET_TYPE);
    assert_eq!(r.json()["id"], second["id"]);
    // Raw keys: "t" sorts after the first boundary, inside some region.
    let r = get(&api(&c, 0, "/region/key/zzz")).await;
    assert_eq!(r.json()["end_key"], "");
    let r = get(&api(&c, 0, "/region/key/0?format=hex")).await;
    assert_eq!(r.status, 400);

    let v = get(&api(&c, 0, "/regions/key?key=")).await.json();
    assert_eq!(v["count"], 16, "default limit");
    assert_eq!(v["regions"][0]["start_key"], "");
    let url = format!(
        "/regions/key?format=hex&key={start_key}&end_key={}&limit=100",
        all["regions"][5]["start_key"].as_str().unwrap()
    );
    let v = get(&api(&c, 0, &url)).await.json();
    assert_eq!(v["count"], 4);
    assert_eq!(v["regions"][0]["id"], second["id"]);
    assert_eq!(get(&api(&c, 0, "/regions/key?limit=x")).await.status, 400);

    let v = get(&api(&c, 0, "/regions/store/1")).await.json();
    assert_eq!(v["count"], 500);
    let leaders = get(&api(&c, 0, "/regions/store/1?type=leader")).await.json()["count"].as_u64().unwrap();
    let followers = get(&api(&c, 0, "/regions/store/1?type=follower")).await.json()["count"].as_u64().unwrap();
    assert_eq!(leaders + followers, 500);
    assert_eq!(get(&api(&c, 0, "/regions/store/1?type=learner")).await.json()["count"], 0);

    let v = get(&api(&c, 0, "/regions/size?limit=3")).await.json();
    assert_eq!(v["count"], 3);
    let sizes: Vec<u64> =
        v["regions"].as_array().unwrap().iter().map(|r| r["approximate_size"].as_u64().unwrap()).collect();
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]) && sizes[0] == 96, "{sizes:?}");
    for order in ["writeflow", "readflow", "writequery", "readquery", "keys"] {
        let r = get(&api(&c, 0, &format!("/regions/{order}"))).await;
        assert_eq!((r.status, r.content_type.as_str()), (200, OCTET_TYPE), "{order}");
        assert_eq!(r.json()["count"], 16);
    }
    // The top lists rank what the full listing shows: after two region heartbeats every region
    // reports its flow; ties go to the region first in key order.
    c.step(120_000);
    let all = get(&api(&c, 0, "/regions")).await.json();
    for (order, field) in [("writeflow", "written_bytes"), ("readflow", "read_bytes"), ("size", "approximate_size")] {
        let mut expected: Vec<(u64, usize, u64)> = all["regions"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(pos, r)| (r[field].as_u64().unwrap(), pos, r["id"].as_u64().unwrap()))
            .collect();
        expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        assert!(expected[0].0 > expected[40].0, "{order}: the flows differ");
        let expected: Vec<u64> = expected.iter().take(40).map(|e| e.2).collect();
        let top = get(&api(&c, 0, &format!("/regions/{order}?limit=40"))).await.json();
        let ids: Vec<u64> = top["regions"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, expected, "{order}");
    }
    assert_eq!(get(&api(&c, 0, "/regions/writeflow?limit=0")).await.json()["count"], 0);
    c.shutdown().await;
}
