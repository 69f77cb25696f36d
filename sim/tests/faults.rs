//! Faults injected through the control API, each checked by the signature PD's HTTP API shows for its
//! scenario, cleared again, and replayed deterministically from a script.

mod common;

use common::{api, call, client, get_json, start};

use reqwest::Method;
use serde_json::{Value, json};
use tikv_sim::control::{
    DISCOVERY_FILE, DiscoveryError, DiscoveryInfo, read_discovery, remove_discovery, write_discovery,
};
use tikv_sim::faults::HotFlow;
use tikv_sim::operator::OpStep;
use tikv_sim::sim::{ClusterSpec, Simulation};
use tikv_sim::{Fault, SimCluster};

fn control(c: &SimCluster, path: &str) -> String {
    format!("{}{path}", c.control_url())
}

/// POSTs a fault; returns the status and the JSON reply.
async fn post_fault(c: &SimCluster, fault: Value) -> (u16, Value) {
    let (status, body) = call(Method::POST, &control(c, "/faults"), Some(fault)).await;
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")))
}

/// Injects a fault that must be accepted; returns its id.
async fn inject(c: &SimCluster, fault: Value) -> u64 {
    let (status, reply) = post_fault(c, fault).await;
    assert_eq!(status, 201, "{reply}");
    reply["id"].as_u64().unwrap()
}

async fn clear(c: &SimCluster, id: u64) {
    let (status, body) = call(Method::DELETE, &control(c, &format!("/faults/{id}")), None).await;
    assert_eq!(status, 200, "{body}");
}

async fn store(c: &SimCluster, id: u64) -> Value {
    get_json(&api(c, &format!("/store/{id}"))).await
}

/// Leader counts of the listed stores, by store id order.
async fn leader_counts(c: &SimCluster) -> Vec<u64> {
    let v = get_json(&api(c, "/stores")).await;
    v["stores"].as_array().unwrap().iter().map(|s| s["status"]["leader_count"].as_u64().unwrap()).collect()
}

async fn check_count(c: &SimCluster, kind: &str) -> u64 {
    get_json(&api(c, &format!("/regions/check/{kind}"))).await["count"].as_u64().unwrap()
}

/// PD's `%.4g` binary sizes (`"1TiB"`, `"102.4GiB"`) in bytes.
fn bytes(text: &str) -> f64 {
    let units = [("PiB", 50), ("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10), ("B", 0)];
    let (number, shift) = units.iter().find_map(|(u, s)| text.strip_suffix(u).map(|n| (n, *s))).unwrap();
    number.parse::<f64>().unwrap() * (1u64 << shift) as f64
}

fn available_share(store: &Value) -> f64 {
    bytes(store["status"]["available"].as_str().unwrap()) / bytes(store["status"]["capacity"].as_str().unwrap())
}

#[tokio::test]
async fn kill_and_restart_store_close_and_reopen_its_status_port() {
    let c = start().await;
    let status_url = format!("http://{}/status", c.status_addrs()[&3]);
    assert_eq!(client().get(&status_url).send().await.unwrap().status(), 200);

    let id = inject(&c, json!({"kind":"kill-store","store":3})).await;
    assert!(client().get(&status_url).send().await.is_err(), "a killed store refuses connections");
    let faults = get_json(&control(&c, "/faults")).await;
    assert_eq!(
        faults["active"],
        json!([{"id":id,"kind":"kill-store","params":{"store":3},"since_sim_ms":0,"since_unix_ms":1_780_000_000_000u64}])
    );
    c.step(25_000);
    assert_eq!(store(&c, 3).await["store"]["state_name"], "Disconnected");

    let restart = inject(&c, json!({"kind":"restart-store","store":3})).await;
    assert_eq!(client().get(&status_url).send().await.unwrap().status(), 200, "same port answers again");
    let faults = get_json(&control(&c, "/faults")).await;
    assert_eq!(faults["active"], json!([]), "the restart ended the kill");
    let history: Vec<(u64, &str)> = faults["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_u64().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(history, [(id, "injected"), (restart, "injected"), (id, "cleared")]);
    c.step(1_000);
    assert_eq!(store(&c, 3).await["store"]["state_name"], "Up");

    let (status, reply) = post_fault(&c, json!({"kind":"restart-store","store":3})).await;
    assert_eq!(status, 409, "{reply}");
    c.shutdown().await;
}

#[tokio::test]
async fn store_left_dead_goes_down_and_its_replicas_are_rebuilt() {
    let c = start().await;
    inject(&c, json!({"kind":"kill-store","store":1})).await;
    c.step(31 * 60_000);
    assert_eq!(store(&c, 1).await["store"]["state_name"], "Down");
    c.step(5 * 60_000);
    let left = store(&c, 1).await["status"]["region_count"].as_u64().unwrap();
    assert!(left < 300, "the replica checker moves the dead store's replicas away: {left} left");
    c.shutdown().await;
}

#[tokio::test]
async fn partitioned_store_answers_on_its_status_port_but_pd_loses_it() {
    let c = start().await;
    c.step(30_000);
    let leaders_before = store(&c, 2).await["status"]["leader_count"].as_u64().unwrap();
    assert!(leaders_before > 100);
    let id = inject(&c, json!({"kind":"partition-store","store":2})).await;

    c.step(11_000);
    assert_eq!(store(&c, 2).await["status"]["leader_count"], 0, "its Raft groups elected leaders elsewhere");
    // Regions split as they grow: the model has the current count.
    let regions = c.sim().regions.len() as u64;
    assert!(regions >= 1000, "{regions}");
    assert_eq!(leader_counts(&c).await.iter().sum::<u64>(), regions, "every region still has a leader");
    c.step(10_000);
    assert_eq!(store(&c, 2).await["store"]["state_name"], "Disconnected");
    let addr = c.status_addrs()[&2].clone();
    let status = get_json(&format!("http://{addr}/status")).await;
    assert_eq!(status["store_id"], 2, "the process runs and answers");
    let metrics = client().get(format!("http://{addr}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);

    c.step(11 * 60_000);
    let down = get_json(&api(&c, "/regions/check/down-peer")).await;
    let on_store_2 = c.sim().regions.iter().filter(|r| r.peers.iter().any(|p| p.store_id == 2)).count();
    assert!(on_store_2 >= 500, "{on_store_2}");
    assert_eq!(down["count"], on_store_2, "every region with a peer on the partitioned store");
    assert_eq!(down["regions"][0]["down_peers"][0]["peer"]["store_id"], 2);

    clear(&c, id).await;
    c.step(61_000);
    assert_eq!(store(&c, 2).await["store"]["state_name"], "Up");
    assert_eq!(check_count(&c, "down-peer").await, 0);
    c.shutdown().await;
}

#[tokio::test]
async fn slow_disk_raises_slow_score_over_minutes_and_piles_pending_peers_on_the_store() {
    let c = start().await;
    let id = inject(&c, json!({"kind":"slow-disk","store":2})).await;
    c.step(60_000);
    let score = store(&c, 2).await["status"]["slow_score"].as_u64().unwrap();
    assert!((2..80).contains(&score), "climbs, but not at once: {score}");
    c.step(5 * 60_000);
    let score = store(&c, 2).await["status"]["slow_score"].as_u64().unwrap();
    assert!((80..100).contains(&score), "{score}");
    assert_eq!(c.sim().store(2).unwrap().disk_slowdown, 10.0);

    let pending = check_count(&c, "pending-peer").await;
    assert!(pending > 30, "{pending}");
    let stores = get_json(&api(&c, "/stores")).await;
    let per_store: Vec<u64> = stores["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"]["pending_peer_count"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(per_store.iter().sum::<u64>(), per_store[1], "pending peers only on the slow store: {per_store:?}");

    // A snapshot to the slow store takes ten times as long.
    let (region, size) = {
        let sim = c.sim();
        let r =
            sim.regions.iter().find(|r| r.approximate_size >= 60 && !r.peers.iter().any(|p| p.store_id == 2)).unwrap();
        (r.id, r.approximate_size)
    };
    let healthy_ms = size * (1 << 20) * 1000 / 40_000_000;
    let add = json!({"name":"add-peer","region_id":region,"store_id":2});
    assert_eq!(call(Method::POST, &api(&c, "/operators"), Some(add)).await.0, 200);
    c.step(3 * healthy_ms);
    let (_, op) = call(Method::GET, &api(&c, &format!("/operators/{region}")), None).await;
    assert!(op.contains("RUNNING"), "{op}");
    c.step(8 * healthy_ms + 1_000);
    let (_, op) = call(Method::GET, &api(&c, &format!("/operators/{region}")), None).await;
    assert!(op.contains("SUCCESS"), "{op}");

    clear(&c, id).await;
    c.step(6 * 60_000);
    assert_eq!(store(&c, 2).await["status"]["slow_score"], 1, "recovers over minutes");
    assert_eq!(check_count(&c, "pending-peer").await, 0);
    c.shutdown().await;
}

#[tokio::test]
async fn filled_disk_is_low_on_space_and_receives_no_data() {
    let c = start().await;
    let id = inject(&c, json!({"kind":"fill-disk","store":2})).await;
    let share = available_share(&store(&c, 2).await);
    assert!((0.05..0.2).contains(&share), "{share}");
    let regions_before = store(&c, 2).await["status"]["region_count"].as_u64().unwrap();
    let total_before = c.sim().regions.len() as u64;

    // Repairs after a store loss go around the full store.
    inject(&c, json!({"kind":"kill-store","store":1})).await;
    let (status, _) = call(Method::POST, &api(&c, "/config"), Some(json!({"max-store-down-time":"1m"}))).await;
    assert_eq!(status, 200);
    c.step(5 * 60_000);
    assert!(store(&c, 1).await["status"]["region_count"].as_u64().unwrap() < 400, "repairs are under way");
    // No operator placed a peer on the full store (finished operators stay listed for 10 minutes);
    // its region count grows only where its own regions split in two.
    {
        let sim = c.sim();
        let onto_full: Vec<String> = sim
            .operators
            .iter()
            .chain(&sim.finished_operators)
            .filter(|op| op.steps.iter().any(|s| matches!(s, OpStep::AddLearner { store: 2, .. })))
            .map(|op| op.describe(&sim))
            .collect();
        assert!(onto_full.is_empty(), "{onto_full:?}");
        assert!(sim.finished_operators.iter().any(|op| op.desc == "replace-down-replica"), "repairs ran");
    }
    let regions_after = store(&c, 2).await["status"]["region_count"].as_u64().unwrap();
    let splits = c.sim().regions.len() as u64 - total_before;
    assert!(
        (regions_before..=regions_before + splits).contains(&regions_after),
        "{regions_before} regions before, {regions_after} after, {splits} splits in the cluster"
    );

    clear(&c, id).await;
    assert!(available_share(&store(&c, 2).await) > 0.9);
    c.shutdown().await;
}

#[tokio::test]
async fn hot_region_tops_the_hotspot_lists() {
    let c = start().await;
    let original_write = {
        let sim = c.sim();
        sim.regions[sim.regions.len() / 2].write_rate
    };
    inject(&c, json!({"kind":"hot-region","flow":"write"})).await;
    let faults = get_json(&control(&c, "/faults")).await;
    let params = &faults["active"][0]["params"];
    assert_eq!(params["bytes_per_sec"], 32 << 20);
    let region = params["region"].as_u64().unwrap();
    assert_eq!(region, c.sim().regions[500].id, "the middle region by default");
    let read_region = c.sim().regions[10].id;
    inject(&c, json!({"kind":"hot-region","region":read_region,"flow":"read"})).await;

    let bounds = |id: u64| {
        let sim = c.sim();
        let r = sim.region(id).unwrap();
        (r.start_key.to_vec(), r.end_key.to_vec())
    };
    let hot_ranges = [("write", region, bounds(region)), ("read", read_region, bounds(read_region))];

    c.step(4 * 60_000);
    // 32 MiB/s of writes grow the region past the split size within minutes, as in TiKV: the hot
    // region may now be several regions of its original key range, sharing its flow.
    let split_writes = family(&c.sim(), &hot_ranges[0].2);
    assert!(split_writes.contains(&region), "the hot region keeps its id and the upper part");
    for (flow, hot, range) in &hot_ranges {
        let members = family(&c.sim(), range);
        let view = get_json(&api(&c, &format!("/hotspot/regions/{flow}"))).await;
        let mut flows: Vec<(f64, u64)> = view["as_leader"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|s| s["statistics"].as_array().unwrap().iter())
            .map(|s| (s["flow_bytes"].as_f64().unwrap(), s["region_id"].as_u64().unwrap()))
            .collect();
        flows.sort_by(|a, b| b.0.total_cmp(&a.0));
        assert!(members.contains(&flows[0].1), "{flow}: the top is region {hot} or one of its parts: {flows:?}");
        let hot_flow: f64 = flows.iter().filter(|f| members.contains(&f.1)).map(|f| f.0).sum();
        let injected = f64::from(32u32 << 20);
        assert!((0.75 * injected..1.25 * injected).contains(&hot_flow), "{flow}: {hot_flow} of {injected}");
        if let Some(rest) = flows.iter().find(|f| !members.contains(&f.1)) {
            assert!(flows[0].0 > 10.0 * rest.0, "{flow}: {flows:?}");
        }
    }

    assert_eq!(call(Method::DELETE, &control(&c, "/faults"), None).await.0, 200);
    // Clearing ends the flow on every part: together they carry the original rate again.
    {
        let sim = c.sim();
        let parts = family(&sim, &hot_ranges[0].2);
        let restored: u64 = parts.iter().map(|id| sim.region(*id).unwrap().write_rate).sum();
        let slack = parts.len() as u64;
        assert!(restored.abs_diff(original_write) <= slack, "{restored} vs {original_write} over {parts:?}");
        if parts.len() == 1 {
            assert_eq!(sim.region(region).unwrap().write_rate, original_write);
        }
    }
    c.shutdown().await;
}

/// Ids of the regions lying within a key range (`end` empty is unbounded).
fn family(sim: &Simulation, (start, end): &(Vec<u8>, Vec<u8>)) -> Vec<u64> {
    sim.regions
        .iter()
        .filter(|r| {
            r.start_key.as_slice() >= start.as_slice()
                && (end.is_empty() || (!r.end_key.is_empty() && r.end_key.as_slice() <= end.as_slice()))
        })
        .map(|r| r.id)
        .collect()
}

#[tokio::test]
async fn leader_skew_stays_without_an_evict_scheduler_until_cleared() {
    let c = start().await;
    let id = inject(&c, json!({"kind":"leader-skew","store":3})).await;
    let counts = leader_counts(&c).await;
    assert!(counts[2] >= 450, "{counts:?}");
    assert!(counts.iter().enumerate().all(|(i, &n)| i == 2 || n <= 150), "{counts:?}");
    for name in ["balance-leader-scheduler", "balance-hot-region-scheduler"] {
        let sim = c.sim();
        let paused = sim.schedulers.iter().find(|s| s.name == name).and_then(|s| s.paused_until_ms);
        assert_eq!(paused, Some(3_600_000), "{name} is paused for the hold time");
    }

    // The S3 signature stays for the whole hold time: one store far above the others.
    for _ in 0..6 {
        c.step(10 * 60_000);
        let counts = leader_counts(&c).await;
        let others = counts.iter().enumerate().filter(|(i, _)| *i != 2).map(|(_, n)| *n).max().unwrap();
        assert!(counts[2] >= 450 && counts[2] > 2 * others, "the skew holds: {counts:?}");
        let schedulers = get_json(&api(&c, "/schedulers")).await;
        assert!(!schedulers.as_array().unwrap().iter().any(|s| s == "evict-leader-scheduler"), "{schedulers}");
    }

    clear(&c, id).await;
    c.step(5 * 60_000);
    let counts = leader_counts(&c).await;
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(max - min <= 5, "balance-leader evens it out again: {counts:?}");
    c.shutdown().await;
}

#[tokio::test]
async fn stale_evict_leader_keeps_a_healthy_store_empty() {
    let c = start().await;
    let id = inject(&c, json!({"kind":"stale-evict-leader","store":4})).await;
    let schedulers = get_json(&api(&c, "/schedulers")).await;
    assert!(schedulers.as_array().unwrap().iter().any(|s| s == "evict-leader-scheduler"));
    let config = get_json(&api(&c, "/scheduler-config/evict-leader-scheduler/list")).await;
    assert!(config["store-id-ranges"]["4"].is_array(), "{config}");

    c.step(3 * 60_000);
    let s = store(&c, 4).await;
    assert_eq!(s["status"]["leader_count"], 0);
    assert_eq!(s["store"]["state_name"], "Up");
    c.step(10 * 60_000);
    assert_eq!(store(&c, 4).await["status"]["leader_count"], 0, "and stays empty");

    clear(&c, id).await;
    let schedulers = get_json(&api(&c, "/schedulers")).await;
    assert!(!schedulers.as_array().unwrap().iter().any(|s| s == "evict-leader-scheduler"));
    c.step(5 * 60_000);
    assert!(store(&c, 4).await["status"]["leader_count"].as_u64().unwrap() > 100);
    c.shutdown().await;
}

#[tokio::test]
async fn killed_pd_leader_is_replaced_by_another_member() {
    let c = start().await;
    let urls = c.pd_urls();
    let leader = get_json(&api(&c, "/leader")).await["name"].as_str().unwrap().to_string();
    assert_eq!(leader, "pd-0");
    let id = inject(&c, json!({"kind":"kill-pd-leader"})).await;
    let faults = get_json(&control(&c, "/faults")).await;
    assert_eq!(faults["active"][0]["params"], json!({"name":"pd-0"}));
    assert!(client().get(format!("{}/pd/api/v1/leader", urls[0])).send().await.is_err(), "its port is closed");
    let (status, _) = call(Method::GET, &format!("{}/pd/api/v1/stores", urls[1]), None).await;
    assert_eq!(status, 503, "no leader during the election");

    c.step(4_000);
    let new_leader = get_json(&format!("{}/pd/api/v1/leader", urls[1])).await;
    assert_ne!(new_leader["name"], "pd-0");
    let (status, _) = call(Method::GET, &format!("{}/pd/api/v1/stores", urls[2]), None).await;
    assert_eq!(status, 200);

    clear(&c, id).await;
    let back = get_json(&format!("{}/pd/api/v1/leader", urls[0])).await;
    assert_eq!(back["name"], new_leader["name"], "the restarted member follows");
    c.shutdown().await;
}

#[tokio::test]
async fn pd_without_a_majority_has_no_leader() {
    let c = start().await;
    let urls = c.pd_urls();
    inject(&c, json!({"kind":"kill-pd-member","name":"pd-1"})).await;
    inject(&c, json!({"kind":"kill-pd-member","name":"pd-2"})).await;
    c.step(10_000);
    let (status, body) = call(Method::GET, &format!("{}/pd/api/v1/stores", urls[0]), None).await;
    assert_eq!(status, 503);
    assert!(body.contains("ErrRedirectNoLeader"), "{body}");

    inject(&c, json!({"kind":"restart-pd-member","name":"pd-1"})).await;
    c.step(4_000);
    assert_eq!(call(Method::GET, &format!("{}/pd/api/v1/stores", urls[1]), None).await.0, 200);
    let faults = get_json(&control(&c, "/faults")).await;
    assert_eq!(faults["active"].as_array().unwrap().len(), 1, "pd-2 is still down: {faults}");
    c.shutdown().await;
}

#[tokio::test]
async fn under_replicated_regions_wait_for_the_replica_limit() {
    let c = start().await;
    let id = inject(&c, json!({"kind":"under-replicate"})).await;
    assert_eq!(check_count(&c, "miss-peer").await, 64);
    let config = get_json(&api(&c, "/config")).await;
    assert_eq!(config["schedule"]["replica-schedule-limit"], 0);
    c.step(10 * 60_000);
    assert_eq!(check_count(&c, "miss-peer").await, 64, "the replica checker is held back");

    clear(&c, id).await;
    assert_eq!(get_json(&api(&c, "/config")).await["schedule"]["replica-schedule-limit"], 64);
    c.step(3 * 60_000);
    assert_eq!(check_count(&c, "miss-peer").await, 0);
    c.shutdown().await;
}

#[tokio::test]
async fn stuck_offline_store_keeps_regions_for_an_hour() {
    let c = start().await;
    let id = inject(&c, json!({"kind":"stuck-offline","store":5})).await;
    assert_eq!(store(&c, 5).await["store"]["state_name"], "Offline");
    c.step(60 * 60_000);
    let s = store(&c, 5).await;
    assert_eq!(s["store"]["state_name"], "Offline");
    let left = s["status"]["region_count"].as_u64().unwrap();
    assert!(left > 0 && left < 500, "drained only partly: {left}");
    let stores = get_json(&api(&c, "/stores")).await;
    let full = stores["stores"].as_array().unwrap().iter().filter(|s| available_share(s) < 0.2).count();
    assert!(full >= 1, "the cause is visible: stores low on space");

    clear(&c, id).await;
    assert_eq!(store(&c, 5).await["store"]["state_name"], "Up");
    let stores = get_json(&api(&c, "/stores")).await;
    assert!(stores["stores"].as_array().unwrap().iter().all(|s| available_share(s) > 0.2));
    c.shutdown().await;
}

#[tokio::test]
async fn control_api_refuses_bad_faults_without_changing_anything() {
    let c = start().await;
    let cases = [
        (json!("not an object"), "invalid fault"),
        (json!({"kind":"melt-store","store":1}), "melt-store"),
        (json!({"kind":"kill-store"}), "store"),
        (json!({"kind":"kill-store","store":99}), "store 99 not found"),
        (json!({"kind":"kill-store","store":1,"delay":5}), "delay"),
        (json!({"kind":"fill-disk","store":1,"ratio":1.5}), "ratio"),
        (json!({"kind":"slow-disk","store":1,"factor":0.5}), "factor"),
        (json!({"kind":"hot-region","region":999_999,"flow":"write"}), "region 999999 not found"),
        (json!({"kind":"hot-region","flow":"sideways"}), "sideways"),
        (json!({"kind":"kill-pd-member","name":"pd-9"}), "pd member pd-9 not found"),
        (json!({"kind":"under-replicate","regions":5000}), "regions"),
    ];
    for (fault, needle) in cases {
        let (status, reply) = post_fault(&c, fault.clone()).await;
        assert_eq!(status, 400, "{fault}: {reply}");
        let message = reply["error"].as_str().unwrap();
        assert!(message.contains(needle), "{fault}: {message}");
    }
    let (status, body) = call(Method::POST, &control(&c, "/faults"), None).await;
    assert_eq!(status, 400, "{body}");
    let faults = get_json(&control(&c, "/faults")).await;
    assert_eq!(faults["active"], json!([]));
    assert_eq!(faults["history"], json!([]));
    assert!(c.sim().stores.iter().all(|s| s.alive));

    inject(&c, json!({"kind":"kill-store","store":1})).await;
    let (status, reply) = post_fault(&c, json!({"kind":"kill-store","store":1})).await;
    assert_eq!(status, 409);
    assert_eq!(reply["error"], "store 1 is already killed");

    let (status, body) = call(Method::DELETE, &control(&c, "/faults/999"), None).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("fault 999"), "{body}");
    assert_eq!(call(Method::DELETE, &control(&c, "/faults/abc"), None).await.0, 400);
    let (status, body) = call(Method::GET, &control(&c, "/nowhere"), None).await;
    assert_eq!(status, 404);
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());
    c.shutdown().await;
}

#[tokio::test]
async fn control_api_describes_the_catalogue_and_the_cluster_and_steps_time() {
    let c = start().await;
    let catalogue = get_json(&control(&c, "/faults/catalogue")).await;
    let entries = catalogue.as_array().unwrap();
    assert_eq!(entries.len(), 13);
    let scenarios: std::collections::BTreeSet<&str> = entries.iter().map(|e| e["scenario"].as_str().unwrap()).collect();
    for s in ["S1", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S12"] {
        assert!(scenarios.contains(s), "{s}");
    }
    let kill = entries.iter().find(|e| e["kind"] == "kill-store").unwrap();
    assert_eq!(kill["params"][0]["name"], "store");
    assert_eq!(kill["params"][0]["required"], true);
    assert!(!kill["description"].as_str().unwrap().is_empty());

    let info = get_json(&control(&c, "/cluster")).await;
    assert_eq!(info["speed"], 0.0);
    assert_eq!(info["control_url"], c.control_url());
    assert_eq!(info["pd_urls"], json!(c.pd_urls()));
    assert_eq!(info["pd_leader"], "pd-0");
    assert_eq!(info["status_addrs"]["3"], c.status_addrs()[&3]);

    let (status, body) = call(Method::POST, &control(&c, "/step?ms=5000"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["now_sim_ms"], 5000);
    assert_eq!(c.sim().now_ms, 5000);
    assert_eq!(call(Method::POST, &control(&c, "/step"), None).await.0, 400);
    assert_eq!(call(Method::POST, &control(&c, "/step?ms=soon"), None).await.0, 400);
    c.shutdown().await;

    let spec = ClusterSpec { regions: 50, ..ClusterSpec::default() };
    let live = SimCluster::start(spec, 1.0).await.unwrap();
    let (status, body) = call(Method::POST, &control(&live, "/step?ms=1000"), None).await;
    assert_eq!(status, 409, "{body}");
    live.shutdown().await;
}

#[tokio::test]
async fn clearing_all_faults_restores_the_cluster() {
    let c = start().await;
    let hot = c.sim().regions[500].id;
    let (write_rate, base_used) = {
        let sim = c.sim();
        (sim.region(hot).unwrap().write_rate, sim.store(4).unwrap().base_used)
    };
    let faults = [
        json!({"kind":"kill-store","store":1}),
        json!({"kind":"partition-store","store":2}),
        json!({"kind":"slow-disk","store":3,"factor":4}),
        json!({"kind":"fill-disk","store":4}),
        json!({"kind":"hot-region","region":hot,"flow":"write"}),
        json!({"kind":"leader-skew","store":5}),
        json!({"kind":"stale-evict-leader","store":6}),
        json!({"kind":"kill-pd-member","name":"pd-2"}),
        json!({"kind":"under-replicate","regions":10}),
    ];
    for fault in faults.iter() {
        inject(&c, fault.clone()).await;
    }
    c.step(60_000);
    let (status, body) = call(Method::DELETE, &control(&c, "/faults"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["cleared"].as_array().unwrap().len(), faults.len());

    assert_eq!(client().get(format!("http://{}/status", c.status_addrs()[&1])).send().await.unwrap().status(), 200);
    assert_eq!(client().get(format!("{}/pd/api/v1/leader", c.pd_urls()[2])).send().await.unwrap().status(), 200);
    {
        let sim = c.sim();
        assert!(sim.stores.iter().all(|s| s.alive && !s.partitioned && s.disk_slowdown == 1.0));
        assert_eq!(sim.store(4).unwrap().base_used, base_used);
        assert_eq!(sim.region(hot).unwrap().write_rate, write_rate);
        assert!(sim.schedulers.iter().all(|s| s.paused_until_ms.is_none()));
        assert_eq!(sim.schedule.replica_schedule_limit, 64);
        assert!(sim.members.iter().all(|m| m.alive));
    }
    let schedulers = get_json(&api(&c, "/schedulers")).await;
    assert_eq!(schedulers.as_array().unwrap().len(), 4, "the defaults only: {schedulers}");

    c.step(15 * 60_000);
    let stores = get_json(&api(&c, "/stores")).await;
    assert!(stores["stores"].as_array().unwrap().iter().all(|s| s["store"]["state_name"] == "Up"));
    for check in ["miss-peer", "down-peer", "pending-peer"] {
        assert_eq!(check_count(&c, check).await, 0, "{check}");
    }
    let counts = leader_counts(&c).await;
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(max - min <= 5, "{counts:?}");
    c.shutdown().await;
}

fn script() -> Vec<(u64, Fault)> {
    vec![
        (30_000, Fault::KillStore { store: 2 }),
        (60_000, Fault::SlowDisk { store: 3, factor: None }),
        (90_000, Fault::HotRegion { region: None, flow: HotFlow::Write, bytes_per_sec: None }),
        (120_000, Fault::PartitionStore { store: 4 }),
        (180_000, Fault::UnderReplicate { regions: Some(20), replica_schedule_limit: Some(1) }),
        (240_000, Fault::RestartStore { store: 2 }),
        (300_000, Fault::LeaderSkew { store: 1, hold_secs: Some(120) }),
        (360_000, Fault::KillPdLeader),
    ]
}

fn scripted_run(seed: u64) -> Value {
    let spec = ClusterSpec { seed, start_unix_ms: Some(1_780_000_000_000), ..ClusterSpec::default() };
    let mut sim = Simulation::new(spec);
    let ids = sim.run_script(&script(), 20 * 60_000).unwrap();
    assert_eq!(ids.len(), 8);
    assert_eq!(sim.now_ms, 20 * 60_000);
    sim.snapshot()
}

#[test]
fn same_seed_and_script_give_the_same_history() {
    let a = scripted_run(7);
    assert_eq!(a, scripted_run(7));
    assert_ne!(a, scripted_run(8));
    assert_eq!(a["faults"]["history"].as_array().unwrap().len(), 9, "eight injections and the ended kill");
}

#[tokio::test]
async fn cluster_script_drives_listeners_too() {
    let c = start().await;
    let script = [(10_000, Fault::KillStore { store: 6 }), (20_000, Fault::KillPdMember { name: "pd-1".into() })];
    c.run_script(&script, 30_000).await.unwrap();
    assert_eq!(c.sim().now_ms, 30_000);
    assert!(client().get(format!("http://{}/status", c.status_addrs()[&6])).send().await.is_err());
    assert!(client().get(format!("{}/pd/api/v1/leader", c.pd_urls()[1])).send().await.is_err());
    c.shutdown().await;
}

#[test]
fn discovery_file_round_trips_and_explains_failures() {
    let dir = std::env::temp_dir().join(format!("tikv-sim-discovery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let err = read_discovery(&dir).unwrap_err();
    assert!(matches!(err, DiscoveryError::Missing { .. }));
    assert!(err.to_string().contains(DISCOVERY_FILE), "{err}");

    let info = DiscoveryInfo {
        control_url: "http://127.0.0.1:4000".into(),
        pd_urls: vec!["http://127.0.0.1:4001".into()],
        pid: 42,
    };
    let path = write_discovery(&dir, &info).unwrap();
    assert_eq!(path, dir.join(DISCOVERY_FILE));
    assert_eq!(read_discovery(&dir).unwrap(), info);
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, [DISCOVERY_FILE], "no temporary file left behind");

    std::fs::write(&path, "{\"control_url\":").unwrap();
    let err = read_discovery(&dir).unwrap_err();
    assert!(matches!(err, DiscoveryError::Malformed { .. }));
    assert!(err.to_string().contains("malformed"), "{err}");

    assert!(remove_discovery(&dir).unwrap());
    assert!(!remove_discovery(&dir).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}
