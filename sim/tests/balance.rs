//! Region growth and splits, balance-region convergence (never onto a low-space store), and the
//! hot-region scheduler, over simulated time.

mod common;

use common::{api, get_json, start};

use serde_json::json;
use tikv_sim::SimCluster;
use tikv_sim::units::hex_upper;

const MIB: u64 = 1 << 20;

#[tokio::test]
async fn region_splits_past_96_mib() {
    let c = start().await;
    let (id, start_key, end_key, version, stores, old_peer_ids) = {
        let mut sim = c.sim();
        let idx = sim.regions.len() / 2;
        let r = &mut sim.regions[idx];
        r.approximate_size = 90;
        r.approximate_keys = 900_000;
        let mut stores: Vec<u64> = r.peers.iter().map(|p| p.store_id).collect();
        stores.sort();
        let peers: Vec<u64> = r.peers.iter().map(|p| p.id).collect();
        let out = (r.id, r.start_key.clone(), r.end_key.clone(), r.version, stores, peers);
        // 64 MiB/s of writes: about 38 MiB of new data per minute.
        sim.set_write_rate(out.0, 64 * MIB).unwrap();
        out
    };
    let count_before = c.sim().regions.len();
    c.step(70_000);
    let url = format!("/regions/key?format=hex&key={}&end_key={}", hex_upper(&start_key), hex_upper(&end_key));
    let v = get_json(&api(&c, &url)).await;
    assert_eq!(v["count"], 2, "one split: {v}");
    let (lower, upper) = (&v["regions"][0], &v["regions"][1]);
    // Right-derived split: the region keeps its id and the upper part.
    assert_eq!(upper["id"], id);
    assert_ne!(lower["id"], id);
    assert_eq!(lower["start_key"], hex_upper(&start_key));
    assert_eq!(lower["end_key"], upper["start_key"]);
    assert_eq!(upper["end_key"], hex_upper(&end_key));
    let split_key = upper["start_key"].as_str().unwrap();
    // Between the bounds, and still a key of the same table.
    assert!(split_key > hex_upper(&start_key).as_str() && split_key < hex_upper(&end_key).as_str(), "{split_key}");
    assert_eq!(split_key[..18], hex_upper(&start_key)[..18], "{split_key}");
    for r in [lower, upper] {
        assert_eq!(r["epoch"]["version"], version + 1);
        let mut s: Vec<u64> = r["peers"].as_array().unwrap().iter().map(|p| p["store_id"].as_u64().unwrap()).collect();
        s.sort();
        assert_eq!(s, stores, "same stores");
        let size = r["approximate_size"].as_u64().unwrap();
        assert!((48..96).contains(&size), "{size}");
    }
    for p in lower["peers"].as_array().unwrap() {
        assert!(!old_peer_ids.contains(&p["id"].as_u64().unwrap()), "new peer ids");
    }
    assert_eq!(lower["leader"]["store_id"], upper["leader"]["store_id"]);
    assert!(c.sim().regions.len() > count_before);
    assert_eq!(get_json(&api(&c, "/regions/count")).await["count"].as_u64().unwrap() as usize, c.sim().regions.len());
    // Keys stay contiguous over the whole key space.
    let sim = c.sim();
    for (a, b) in sim.regions.iter().zip(sim.regions.iter().skip(1)) {
        assert_eq!(a.end_key, b.start_key);
    }
    assert!(sim.regions.iter().all(|r| sim.region(r.id).is_some_and(|x| x.start_key == r.start_key)));
}

/// Moves every peer of store `victim` to another store of the region's choosing, leaving it empty.
fn empty_store(c: &SimCluster, victim: u64) {
    let mut sim = c.sim();
    let store_count = sim.stores.len() as u64;
    for r in sim.regions.iter_mut() {
        let taken: Vec<u64> = r.peers.iter().map(|p| p.store_id).collect();
        if let Some(peer) = r.peers.iter_mut().find(|p| p.store_id == victim) {
            let to = (1..=store_count).find(|s| *s != victim && !taken.contains(s)).unwrap();
            peer.store_id = to;
        }
    }
}

fn scores(c: &SimCluster) -> Vec<(u64, u64, u64)> {
    let sim = c.sim();
    let stats = sim.store_stats();
    sim.stores.iter().map(|s| (s.id, stats[&s.id].region_size, stats[&s.id].region_count)).collect()
}

#[tokio::test]
async fn balance_region_fills_an_empty_store_but_not_a_full_one() {
    let c = start().await;
    empty_store(&c, 6);
    // Store 5 is nearly full: past low-space-ratio (0.8) it takes no new peers.
    {
        let mut sim = c.sim();
        let stats = sim.store_stats();
        let used = sim.used_bytes(sim.store(5).unwrap(), &stats[&5]);
        sim.store_mut(5).unwrap().capacity = used * 100 / 85;
    }
    assert_eq!(scores(&c)[5].2, 0);
    // A faster store limit keeps the test short; PD's default of 15 per minute gets there too.
    let r = common::call(reqwest::Method::POST, &api(&c, "/store/6/limit"), Some(json!({"rate": 600}))).await;
    assert_eq!(r.0, 200);
    c.step(2_000);
    let ops = get_json(&api(&c, "/operators?kind=region")).await;
    let first = ops[0].as_str().unwrap();
    assert!(first.starts_with("balance-region-scheduler {mv peer: store ["), "{first}");
    assert!(first.contains("to [6]}"), "{first}");
    c.step(10 * 60_000);
    let s = scores(&c);
    let mean = s.iter().map(|x| x.1 as f64).sum::<f64>() / s.len() as f64;
    let (min, max) = (s.iter().map(|x| x.1).min().unwrap() as f64, s.iter().map(|x| x.1).max().unwrap() as f64);
    assert!(s[5].2 > 350, "store 6 filled up: {s:?}");
    assert!((max - min) / mean < 0.2, "region scores converged: {s:?}");
    // Nothing was moved onto the low-space store.
    let onto_full = {
        let sim = c.sim();
        sim.operators
            .iter()
            .chain(&sim.finished_operators)
            .filter(|o| o.desc == "balance-region-scheduler")
            .any(|o| o.brief.ends_with("to [5]"))
    };
    assert!(!onto_full);
    // Once balanced, the scheduler leaves the cluster alone.
    c.step(60_000);
    assert_eq!(get_json(&api(&c, "/operators?kind=region")).await, json!(null));
}

#[tokio::test]
async fn hot_read_leaders_are_spread_but_a_single_hot_region_stays() {
    let c = start().await;
    c.sim().pause_scheduler("balance-leader-scheduler", 3600);
    c.sim().pause_scheduler("balance-region-scheduler", 3600);
    // Quiet background: only the chosen regions carry reads.
    let (a, b, lonely, store) = {
        let mut sim = c.sim();
        for r in sim.regions.iter_mut() {
            r.read_rate = 0;
            r.write_rate = 0;
        }
        let store = sim.regions[0].leader_store().unwrap();
        let led: Vec<u64> =
            sim.regions.iter().filter(|r| r.leader_store() == Some(store)).map(|r| r.id).take(2).collect();
        let lonely = sim.regions.iter().find(|r| r.leader_store().is_some_and(|s| s != store)).unwrap().id;
        (led[0], led[1], lonely, store)
    };
    for id in [a, b] {
        c.sim().set_read_rate(id, 20 * MIB).unwrap();
    }
    c.step(5 * 60_000);
    let (la, lb) = {
        let sim = c.sim();
        (sim.region(a).unwrap().leader_store().unwrap(), sim.region(b).unwrap().leader_store().unwrap())
    };
    assert_ne!(la, lb, "one of the two hot leaders left store {store}");
    let moved: Vec<String> = c
        .sim()
        .finished_operators
        .iter()
        .filter(|o| o.desc == "transfer-hot-read-leader")
        .map(|o| format!("{} {}", o.region_id, o.kind))
        .collect();
    assert_eq!(moved.len(), 1, "modest: {moved:?}");
    assert!(moved[0].ends_with("hot-region,leader"));

    // A single hot region only moves the hotspot: it stays where it is.
    for id in [a, b] {
        c.sim().set_read_rate(id, 0).unwrap();
    }
    c.sim().set_read_rate(lonely, 40 * MIB).unwrap();
    let before = c.sim().region(lonely).unwrap().leader_store();
    c.step(6 * 60_000);
    assert_eq!(c.sim().region(lonely).unwrap().leader_store(), before);
    assert!(!c.sim().finished_operators.iter().any(|o| o.region_id == lonely));
}
