//! State transitions over simulated time, faults, status ports and determinism.

mod common;

use common::{api, client, get_json, start};
use std::time::Duration;

use serde_json::Value;
use tikv_sim::SimCluster;
use tikv_sim::sim::{ClusterSpec, Simulation};

#[tokio::test]
async fn killed_store_goes_disconnected_then_down_and_loses_leaders() {
    let c = start().await;
    c.step(60_000);
    let before = get_json(&api(&c, "/store/1")).await;
    assert_eq!(before["store"]["state_name"], "Up");
    let leaders_before = before["status"]["leader_count"].as_u64().unwrap();
    assert!(leaders_before > 100);
    let hb_before = before["store"]["last_heartbeat"].as_i64().unwrap();

    c.kill_store(1).await.unwrap();
    c.step(5_000);
    let s = get_json(&api(&c, "/store/1")).await;
    assert_eq!(s["store"]["state_name"], "Up", "not yet 20 s silent");
    assert_eq!(s["status"]["leader_count"].as_u64().unwrap(), leaders_before, "election not yet over");

    c.step(6_000);
    let s = get_json(&api(&c, "/store/1")).await;
    assert_eq!(s["status"]["leader_count"], 0, "Raft moved every leader off the dead store");
    let stores = get_json(&api(&c, "/stores")).await;
    let total: u64 =
        stores["stores"].as_array().unwrap().iter().map(|s| s["status"]["leader_count"].as_u64().unwrap()).sum();
    // Regions near 96 MiB may have split meanwhile; every one of them has a leader.
    assert_eq!(total, c.sim().regions.len() as u64);
    // Every region still has a leader, on a live voter.
    for region in c.sim().regions.iter() {
        assert_ne!(region.leader_store(), Some(1));
        assert!(region.leader.is_some());
    }

    c.step(20_000);
    let s = get_json(&api(&c, "/store/1")).await;
    assert_eq!(s["store"]["state_name"], "Disconnected");
    assert!(s["store"]["last_heartbeat"].as_i64().unwrap() >= hb_before, "heartbeats stopped, time kept");
    assert_eq!(get_json(&api(&c, "/stores/check?state=disconnected")).await["count"], 1);
    // The others keep heartbeating.
    assert_eq!(get_json(&api(&c, "/store/2")).await["store"]["state_name"], "Up");

    c.step(30 * 60_000);
    let s = get_json(&api(&c, "/store/1")).await;
    assert_eq!(s["store"]["state_name"], "Down");
    assert_eq!(get_json(&api(&c, "/stores/check?state=down")).await["count"], 1);
    // Down is derived: the persisted state stays Up, so the store is still in the default list.
    assert_eq!(get_json(&api(&c, "/stores")).await["count"], 6);
    c.shutdown().await;
}

#[tokio::test]
async fn down_peers_appear_after_ten_minutes() {
    let c = start().await;
    c.kill_store(2).await.unwrap();
    c.step(9 * 60_000);
    let v = get_json(&api(&c, "/regions/check/down-peer")).await;
    assert_eq!(v["count"], 0);
    // 10 min of silence plus one region heartbeat round.
    c.step(2 * 60_000);
    let v = get_json(&api(&c, "/regions/check/down-peer")).await;
    let on_store_2 = c.sim().regions.iter().filter(|r| r.peers.iter().any(|p| p.store_id == 2)).count();
    assert!(on_store_2 >= 500);
    assert_eq!(v["count"], on_store_2, "every region with a peer on store 2");
    let region = &v["regions"][0];
    let down = &region["down_peers"][0];
    assert_eq!(down["peer"]["store_id"], 2);
    let secs = down["down_seconds"].as_u64().unwrap();
    assert!((600..=660).contains(&secs), "{secs}");
    assert_ne!(region["leader"]["store_id"], 2);

    c.step(60_000);
    let id = region["id"].as_u64().unwrap();
    let again = get_json(&api(&c, &format!("/region/id/{id}"))).await;
    assert!(again["down_peers"][0]["down_seconds"].as_u64().unwrap() > secs, "down_seconds grows");

    c.restart_store(2).await.unwrap();
    c.step(61_000);
    let v = get_json(&api(&c, "/regions/check/down-peer")).await;
    assert_eq!(v["count"], 0, "a restarted store's peers are no longer down");
    assert_eq!(get_json(&api(&c, "/store/2")).await["store"]["state_name"], "Up");
    c.shutdown().await;
}

#[tokio::test]
async fn killed_store_status_port_stops_answering() {
    let c = start().await;
    let addr = c.status_addrs()[&3].clone();
    let url = format!("http://{addr}/status");
    let resp = client().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["store_id"], 3);

    c.kill_store(3).await.unwrap();
    assert!(client().get(&url).send().await.is_err(), "a killed store refuses connections");
    c.restart_store(3).await.unwrap();
    assert_eq!(c.status_addrs()[&3], addr, "same address after restart");
    let resp = client().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    c.shutdown().await;
}

#[tokio::test]
async fn real_time_stepping_follows_speed() {
    let spec = ClusterSpec { regions: 100, ..ClusterSpec::default() };
    let c = SimCluster::start(spec, 600.0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let now = c.sim().now_ms;
    // 300 ms × 600 = 180 s simulated, give or take scheduling.
    assert!((60_000..=400_000).contains(&now), "{now}");
    c.shutdown().await;
}

#[test]
fn same_seed_same_cluster() {
    let spec = |seed| ClusterSpec { seed, start_unix_ms: Some(1_780_000_000_000), ..ClusterSpec::default() };
    let run = |seed| {
        let mut sim = Simulation::new(spec(seed));
        sim.advance(30_000);
        sim.kill_store(4).unwrap();
        sim.advance(15 * 60_000);
        sim.snapshot()
    };
    let a = run(1);
    assert_eq!(a, run(1));
    assert_ne!(a, run(2));
    assert!(a["regions"].as_array().unwrap().len() >= 1000, "only splits add regions");
}

#[test]
fn leaderless_without_quorum_keeps_last_leader() {
    let mut sim = Simulation::new(ClusterSpec { stores: 3, regions: 10, ..ClusterSpec::default() });
    sim.kill_store(1).unwrap();
    sim.kill_store(2).unwrap();
    sim.advance(20_000);
    // Without a majority no election succeeds; PD keeps the last leader it heard of.
    let on_dead = sim.regions.iter().filter(|r| matches!(r.leader_store(), Some(1 | 2))).count();
    assert!(on_dead > 0);
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
        .parse()
        .unwrap()
}

async fn text(url: &str) -> (String, String) {
    let resp = client().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    (ct, resp.text().await.unwrap())
}

#[tokio::test]
async fn metrics_follow_the_simulation() {
    let c = start().await;
    c.step(15_000);
    // Regions near 96 MiB may already have split: expected counts come from the model.
    let (regions, on_1, on_2) = {
        let sim = c.sim();
        let stats = sim.store_stats();
        (sim.regions.len() as f64, stats[&1].region_count as f64, stats[&2].region_count as f64)
    };
    let (ct, pd) = text(&format!("{}/metrics", c.pd_urls()[0])).await;
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    assert!(pd.contains("# TYPE pd_regions_status gauge"));
    assert_eq!(metric(&pd, "pd_cluster_status{type=\"store_up_count\"}"), 6.0);
    assert_eq!(metric(&pd, "pd_cluster_status{type=\"region_count\"}"), 3.0 * regions);
    assert_eq!(metric(&pd, "pd_cluster_status{type=\"leader_count\"}"), regions);
    assert_eq!(metric(&pd, "pd_regions_status{type=\"miss-peer-region-count\"}"), 0.0);
    assert_eq!(
        metric(&pd, "pd_scheduler_store_status{address=\"tikv-1:20160\",store=\"1\",type=\"region_count\"}"),
        on_1
    );
    let (_, follower) = text(&format!("{}/metrics", c.pd_urls()[1])).await;
    assert!(!follower.contains("pd_cluster_status"), "only the leader collects cluster metrics");

    let status = get_json(&api(&c, "/store/2")).await;
    let (ct, tikv) = text(&format!("http://{}/metrics", c.status_addrs()[&2])).await;
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(metric(&tikv, "tikv_raftstore_region_count{type=\"region\"}"), on_2);
    assert_eq!(
        metric(&tikv, "tikv_raftstore_region_count{type=\"leader\"}"),
        status["status"]["leader_count"].as_f64().unwrap()
    );
    assert_eq!(metric(&tikv, "tikv_store_size_bytes{type=\"capacity\"}"), (1u64 << 40) as f64);

    c.kill_store(1).await.unwrap();
    c.step(25_000);
    let (_, pd) = text(&format!("{}/metrics", c.pd_urls()[0])).await;
    assert_eq!(metric(&pd, "pd_cluster_status{type=\"store_up_count\"}"), 5.0);
    assert_eq!(metric(&pd, "pd_cluster_status{type=\"store_disconnected_count\"}"), 1.0);
    c.step(11 * 60_000);
    let (_, pd) = text(&format!("{}/metrics", c.pd_urls()[0])).await;
    let on_1 = c.sim().regions.iter().filter(|r| r.peers.iter().any(|p| p.store_id == 1)).count() as f64;
    assert_eq!(metric(&pd, "pd_cluster_status{type=\"store_unhealthy_count\"}"), 1.0);
    assert_eq!(metric(&pd, "pd_regions_status{type=\"down-peer-region-count\"}"), on_1);
    c.shutdown().await;
}

#[tokio::test]
async fn hot_write_region_shows_in_hotspots() {
    let c = start().await;
    let (region, leader) = {
        let mut sim = c.sim();
        let r = &mut sim.regions[42];
        // A small region, so that four minutes of 32 MiB/s do not grow it past the split size.
        r.approximate_size = 8;
        r.approximate_keys = 80_000;
        (r.id, r.leader_store().unwrap())
    };
    c.sim().set_write_rate(region, 32 << 20).unwrap();
    c.step(4 * 60_000);
    let hot = get_json(&api(&c, "/hotspot/regions/write")).await;
    let as_leader = &hot["as_leader"][leader.to_string()];
    let stat = as_leader["statistics"].as_array().unwrap().iter().find(|s| s["region_id"] == region).unwrap();
    assert_eq!(
        stat.as_object().unwrap().keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "anti_count",
            "flow_bytes",
            "flow_keys",
            "flow_query",
            "hot_degree",
            "is_leader",
            "last_update_time",
            "region_id",
            "store_id"
        ]
    );
    assert_eq!(stat["is_leader"], true);
    assert!(stat["hot_degree"].as_u64().unwrap() >= 3);
    let flow = stat["flow_bytes"].as_f64().unwrap();
    assert!(flow > 25.0 * 1048576.0 && flow < 40.0 * 1048576.0, "{flow}");
    assert_eq!(
        hot["as_peer"]
            .as_object()
            .unwrap()
            .values()
            .filter(|s| s["statistics"].as_array().unwrap().iter().any(|x| x["region_id"] == region))
            .count(),
        3
    );
    for key in [
        "store_bytes",
        "store_keys",
        "store_query",
        "total_flow_bytes",
        "total_flow_keys",
        "total_flow_query",
        "regions_count",
    ] {
        assert!(as_leader.get(key).is_some(), "{key}");
    }
    let stores = get_json(&api(&c, "/hotspot/stores")).await;
    let keys: Vec<&str> = stores.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 6);
    assert!(stores["bytes-write-rate"][leader.to_string()].as_f64().unwrap() > 25.0 * 1048576.0);
    let top: Value = get_json(&api(&c, "/regions/writeflow?limit=1")).await;
    assert_eq!(top["regions"][0]["id"], region);
    assert!(top["regions"][0]["written_bytes"].as_u64().unwrap() > 60 * (25 << 20));
    let read = get_json(&api(&c, "/hotspot/regions/read")).await;
    assert!(read["as_peer"].is_object() && read["as_leader"].is_object());
    c.shutdown().await;
}
