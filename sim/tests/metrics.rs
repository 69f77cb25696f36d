//! Prometheus metrics of the stores' status ports and of PD, parsed strictly: families, types,
//! histogram consistency, counters that only grow with simulated time, and latency that follows a
//! slow disk.

mod common;

use common::prom::{self, Exposition, quantile};
use common::{api, call, client, start};

use serde_json::json;
use tikv_sim::SimCluster;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn scrape_url(url: &str) -> Exposition {
    let resp = client().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    assert_eq!(resp.headers()["content-type"], CONTENT_TYPE);
    prom::parse(&resp.text().await.unwrap())
}

async fn scrape_store(c: &SimCluster, id: u64) -> Exposition {
    scrape_url(&format!("http://{}/metrics", c.status_addrs()[&id])).await
}

const TIKV_FAMILIES: [(&str, &str); 8] = [
    ("tikv_store_size_bytes", "gauge"),
    ("tikv_raftstore_region_count", "gauge"),
    ("tikv_grpc_msg_duration_seconds", "histogram"),
    ("tikv_grpc_msg_fail_total", "counter"),
    ("tikv_scheduler_too_busy_total", "counter"),
    ("tikv_storage_command_total", "counter"),
    ("tikv_engine_size_bytes", "gauge"),
    ("process_cpu_seconds_total", "counter"),
];

#[tokio::test]
async fn tikv_metrics_parse_and_counters_only_grow() {
    let c = start().await;
    c.step(10_000);
    let before = scrape_store(&c, 1).await;
    for (name, kind) in TIKV_FAMILIES {
        assert_eq!(before.types.get(name).map(String::as_str), Some(kind), "{name}");
    }
    for t in ["kv_get", "kv_prewrite", "kv_commit", "coprocessor"] {
        let count = before.value("tikv_grpc_msg_duration_seconds_count", &[("type", t)]).unwrap();
        assert!(count > 0.0, "{t}");
    }
    for t in ["capacity", "available", "used"] {
        assert!(before.value("tikv_store_size_bytes", &[("type", t)]).unwrap() > 0.0, "{t}");
    }
    for cmd in ["get", "prewrite", "commit"] {
        assert!(before.find("tikv_storage_command_total", &[("type", cmd)]).is_some(), "{cmd}");
    }
    assert!(before.find("tikv_engine_size_bytes", &[("db", "kv"), ("type", "write")]).is_some());

    c.step(60_000);
    let after = scrape_store(&c, 1).await;
    for s in &before.samples {
        let fam = s.name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
        let kind = before.types.get(fam).or_else(|| before.types.get(&s.name)).unwrap();
        if kind == "gauge" {
            continue;
        }
        let labels: Vec<(&str, &str)> = s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let now = after.value(&s.name, &labels).unwrap_or_else(|| panic!("{} vanished", s.name));
        assert!(now >= s.value, "{} {:?} went down: {} -> {now}", s.name, s.labels, s.value);
    }
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.value(name, labels).unwrap() - before.value(name, labels).unwrap();
    let gets = delta("tikv_grpc_msg_duration_seconds_count", &[("type", "kv_get")]);
    assert!(gets > 1000.0, "{gets}");
    // Storage commands follow the same requests.
    let cmds = delta("tikv_storage_command_total", &[("type", "get")]);
    assert!((cmds - gets).abs() <= 2.0, "{cmds} vs {gets}");
    assert!(delta("tikv_grpc_msg_duration_seconds_sum", &[("type", "kv_get")]) > 0.0);
    assert!(delta("process_cpu_seconds_total", &[]) > 0.0);
    // A healthy store rejects nothing.
    assert_eq!(after.value("tikv_scheduler_too_busy_total", &[("type", "prewrite")]), Some(0.0));
    c.shutdown().await;
}

#[tokio::test]
async fn slow_disk_raises_p99_and_scheduler_busy() {
    let c = start().await;
    c.step(10_000);
    let (slow_before, ok_before) = (scrape_store(&c, 2).await, scrape_store(&c, 3).await);
    c.sim().store_mut(2).unwrap().disk_slowdown = 10.0;
    c.step(120_000);
    let (slow_after, ok_after) = (scrape_store(&c, 2).await, scrape_store(&c, 3).await);
    let p99 = |before: &Exposition, after: &Exposition, t: &str| {
        let name = "tikv_grpc_msg_duration_seconds";
        quantile(&before.buckets(name, &[("type", t)]), &after.buckets(name, &[("type", t)]), 0.99)
    };
    let (slow, ok) = (p99(&slow_before, &slow_after, "kv_prewrite"), p99(&ok_before, &ok_after, "kv_prewrite"));
    assert!(slow >= 4.0 * ok, "prewrite p99: slow disk {slow} vs healthy {ok}");
    let (slow, ok) = (p99(&slow_before, &slow_after, "kv_get"), p99(&ok_before, &ok_after, "kv_get"));
    assert!(slow >= 2.0 * ok, "get p99: slow disk {slow} vs healthy {ok}");
    let busy = |e: &Exposition| e.value("tikv_scheduler_too_busy_total", &[("type", "prewrite")]).unwrap();
    assert!(busy(&slow_after) > busy(&slow_before), "a slow store turns writes away");
    assert_eq!(busy(&ok_after), 0.0);

    // The slow score counts as well.
    let before = scrape_store(&c, 4).await;
    c.sim().store_mut(4).unwrap().slow_score = 100;
    c.step(60_000);
    let after = scrape_store(&c, 4).await;
    let healthy = p99(&ok_after, &scrape_store(&c, 3).await, "kv_commit");
    assert!(p99(&before, &after, "kv_commit") > 2.0 * healthy);
    c.shutdown().await;
}

#[tokio::test]
async fn pd_metrics_parse_and_count_operators() {
    let c = start().await;
    c.sim().pause_scheduler("balance-leader-scheduler", 3600);
    let (region, to) = {
        let sim = c.sim();
        let r = &sim.regions[7];
        (r.id, r.peers.iter().find(|p| Some(p.id) != r.leader).unwrap().store_id)
    };
    let body = json!({"name":"transfer-leader","region_id":region,"to_store_id":to});
    assert_eq!(call(reqwest::Method::POST, &api(&c, "/operators"), Some(body)).await.0, 200);
    c.step(15_000);
    let pd = scrape_url(&format!("{}/metrics", c.pd_urls()[0])).await;
    for (name, kind) in [
        ("pd_regions_status", "gauge"),
        ("pd_cluster_status", "gauge"),
        ("pd_scheduler_store_status", "gauge"),
        ("pd_schedule_operators_count", "counter"),
    ] {
        assert_eq!(pd.types.get(name).map(String::as_str), Some(kind), "{name}");
    }
    for t in [
        "miss-peer-region-count",
        "extra-peer-region-count",
        "down-peer-region-count",
        "pending-peer-region-count",
        "offline-peer-region-count",
        "empty-region-count",
    ] {
        assert!(pd.find("pd_regions_status", &[("type", t)]).is_some(), "{t}");
    }
    for t in [
        "store_up_count",
        "store_disconnected_count",
        "store_down_count",
        "store_offline_count",
        "store_tombstone_count",
        "store_low_space_count",
        "region_count",
        "leader_count",
        "storage_size",
        "storage_capacity",
    ] {
        assert!(pd.find("pd_cluster_status", &[("type", t)]).is_some(), "{t}");
    }
    assert_eq!(pd.value("pd_cluster_status", &[("type", "leader_count")]), Some(c.sim().regions.len() as f64));
    for store in 1..=6 {
        for t in ["leader_count", "region_count", "store_available", "store_used", "store_capacity"] {
            let s = store.to_string();
            assert!(
                pd.find("pd_scheduler_store_status", &[("store", s.as_str()), ("type", t)]).is_some(),
                "{store} {t}"
            );
        }
    }
    let ops =
        |event: &str| pd.value("pd_schedule_operators_count", &[("type", "admin-transfer-leader"), ("event", event)]);
    assert_eq!((ops("create"), ops("finish")), (Some(1.0), Some(1.0)));
    // Followers export no cluster collectors, and what they serve still parses.
    let follower = scrape_url(&format!("{}/metrics", c.pd_urls()[1])).await;
    assert!(follower.find("pd_cluster_status", &[]).is_none());
    c.shutdown().await;
}
