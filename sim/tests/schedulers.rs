//! Leader schedulers over time: evict-leader, balance-leader, pausing, leader weights.

mod common;

use common::{api, call, client, start};

use serde_json::{Value, json};
use tikv_sim::SimCluster;

async fn leaders(c: &SimCluster) -> Vec<u64> {
    let v: Value = client().get(api(c, "/stores")).send().await.unwrap().json().await.unwrap();
    v["stores"].as_array().unwrap().iter().map(|s| s["status"]["leader_count"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn evict_leader_empties_a_store_until_removed() {
    let c = start().await;
    let add = json!({"name":"evict-leader-scheduler","store_id":2});
    assert_eq!(call(reqwest::Method::POST, &api(&c, "/schedulers"), Some(add)).await.0, 200);
    let (status, body) =
        call(reqwest::Method::GET, &api(&c, "/scheduler-config/evict-leader-scheduler/list"), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"store-id-ranges":{"2":[{"start-key":"","end-key":""}]},"batch":3})
    );
    c.step(60_000);
    let l = leaders(&c).await;
    assert_eq!(l[1], 0, "{l:?}");
    // Every region has a leader; regions may have split meanwhile.
    assert_eq!(l.iter().sum::<u64>(), c.sim().regions.len() as u64);
    // It stays empty while the scheduler is there.
    c.step(5 * 60_000);
    assert_eq!(leaders(&c).await[1], 0);

    let url = api(&c, "/schedulers/evict-leader-scheduler-2");
    assert_eq!(call(reqwest::Method::DELETE, &url, None).await.0, 200);
    c.step(5 * 60_000);
    let l = leaders(&c).await;
    let (min, max) = (*l.iter().min().unwrap(), *l.iter().max().unwrap());
    assert!(max - min <= 2, "balance-leader evens the leaders out again: {l:?}");
}

#[tokio::test]
async fn balance_leader_returns_leaders_after_restart_unless_paused() {
    let c = start().await;
    c.kill_store(1).await.unwrap();
    c.step(30_000);
    assert_eq!(leaders(&c).await[0], 0);
    c.restart_store(1).await.unwrap();

    // The hot-region scheduler would also hand the idle store some read leaders; keep it out.
    c.sim().pause_scheduler("balance-hot-region-scheduler", 3600);
    let url = api(&c, "/schedulers/balance-leader-scheduler");
    let (status, body) = call(reqwest::Method::POST, &url, Some(json!({"delay": 600}))).await;
    assert_eq!((status, body.as_str()), (200, "\"Pause or resume the scheduler successfully.\"\n"));
    c.step(5 * 60_000);
    assert_eq!(leaders(&c).await[0], 0, "paused: no rebalancing");

    call(reqwest::Method::POST, &url, Some(json!({"delay": 0}))).await;
    c.step(5 * 60_000);
    let l = leaders(&c).await;
    assert!(l[0] >= 160, "{l:?}");

    let (status, body) = call(reqwest::Method::POST, &url, Some(json!({}))).await;
    assert_eq!((status, body.as_str()), (400, "\"missing pause time\"\n"));
    let url = api(&c, "/schedulers/no-such-scheduler");
    assert_eq!(call(reqwest::Method::POST, &url, Some(json!({"delay": 1}))).await.0, 500);
}

#[tokio::test]
async fn leader_weight_skews_balance() {
    let c = start().await;
    let body = json!({"leader": 2, "region": 1});
    assert_eq!(call(reqwest::Method::POST, &api(&c, "/store/3/weight"), Some(body)).await.0, 200);
    c.step(10 * 60_000);
    let l = leaders(&c).await;
    // Equal scores: store 3 holds twice the leaders of each other store (2/7 of 1000).
    assert!((270..=300).contains(&l[2]), "{l:?}");
}
