//! Region-reshaping routes and the listing routes around them, over HTTP: `POST /regions/split`,
//! `POST /regions/scatter`, the split/merge/transfer-region/scatter/add-learner operators,
//! `GET /operators?kind=`, `GET /operators/records`, `GET /stores/progress`, limits and filters, and
//! PD's malformed-input replies. Status, content type and exact JSON shapes are checked against
//! `reference/pd-http-api.md` and PD's handlers.

mod common;

use common::{JSON_TYPE, OCTET_TYPE, api, msg, send_raw, start};

use reqwest::Method;
use serde_json::{Value, json};
use tikv_sim::SimCluster;
use tikv_sim::units::hex_upper;

const OP_NOT_FOUND: &str = "[PD:operator:ErrOperatorNotFound]operator not found";

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

async fn post(c: &SimCluster, path: &str, body: Value) -> common::Reply {
    send_raw(Method::POST, &api(c, path), Some(&body.to_string())).await
}

async fn get(c: &SimCluster, path: &str) -> common::Reply {
    send_raw(Method::GET, &api(c, path), None).await
}

/// The raw key bounds of region number `i` in key order.
fn bounds(c: &SimCluster, i: usize) -> (u64, Vec<u8>, Vec<u8>) {
    let sim = c.sim();
    let r = &sim.regions[i];
    (r.id, r.start_key.to_vec(), r.end_key.to_vec())
}

#[tokio::test]
async fn regions_split_route() {
    let c = start().await;
    let (id, start_key, end_key) = bounds(&c, 10);
    let version = c.sim().region(id).unwrap().version;
    let mid = tikv_sim::split::key_between(&start_key, &end_key).unwrap();
    let (_, boundary, _) = bounds(&c, 20);
    let body = json!({"split_keys": [hex_upper(&mid).to_lowercase(), hex_upper(&boundary)], "retry_limit": 5});
    let r = post(&c, "/regions/split", body).await;
    assert_eq!((r.status, r.content_type.as_str()), (200, JSON_TYPE), "{}", r.body);
    let v = r.json();
    assert_eq!(keys(&v), ["processed-percentage", "regions-id"]);
    assert_eq!(v["processed-percentage"], 100);
    let new_ids = v["regions-id"].as_array().unwrap();
    assert_eq!(new_ids.len(), 1, "the boundary key was already split: {v}");
    let new_id = new_ids[0].as_u64().unwrap();
    assert!(r.body.starts_with("{\n  \"processed-percentage\": 100,\n  \"regions-id\": [\n"), "{}", r.body);

    // Right-derived: the region keeps the upper part; the new one takes the lower part.
    let upper = common::get_json(&api(&c, &format!("/region/id/{id}"))).await;
    let lower = common::get_json(&api(&c, &format!("/region/id/{new_id}"))).await;
    assert_eq!(upper["start_key"], hex_upper(&mid));
    assert_eq!(upper["end_key"], hex_upper(&end_key));
    assert_eq!(lower["start_key"], hex_upper(&start_key));
    assert_eq!(lower["end_key"], hex_upper(&mid));
    assert_eq!(upper["epoch"]["version"], version + 1);
    assert_eq!(lower["epoch"]["version"], version + 1);
    assert_eq!(common::get_json(&api(&c, "/regions/count")).await["count"], 1001);

    let r = post(&c, "/regions/split", json!({"split_keys": [hex_upper(&boundary)]})).await;
    assert_eq!(r.body, "{\n  \"processed-percentage\": 100,\n  \"regions-id\": null\n}\n");
    let errors = [
        (json!({"retry_limit": 5}), 400, msg("split_keys should be provided.")),
        (json!({"split_keys": []}), 400, msg("empty split keys.")),
        (json!({"split_keys": ["7G"]}), 500, msg("encoding/hex: invalid byte: U+0047 'G'")),
        (json!({"split_keys": ["748"]}), 500, msg("encoding/hex: odd length hex string")),
    ];
    for (body, status, text) in errors {
        let r = post(&c, "/regions/split", body.clone()).await;
        assert_eq!((r.status, r.content_type.as_str(), r.body.as_str()), (status, JSON_TYPE, text.as_str()), "{body}");
    }
    c.shutdown().await;
}

#[tokio::test]
async fn regions_scatter_route() {
    let c = start().await;
    // Keep balance-region out of the way so every operator here comes from the scatterer.
    c.sim().pause_scheduler("balance-region-scheduler", 3600);
    c.sim().pause_scheduler("balance-leader-scheduler", 3600);
    // Twelve regions piled onto stores 1-3 with every leader on store 1, as after a bulk import.
    let ids: Vec<u64> = {
        let mut sim = c.sim();
        let ids: Vec<u64> = (30..42).map(|i| sim.regions[i].id).collect();
        for id in &ids {
            let region = sim.region_mut(*id).unwrap();
            for (peer, store) in region.peers.iter_mut().zip([1, 2, 3]) {
                peer.store_id = store;
            }
            region.leader = Some(region.peers[0].id);
        }
        ids
    };
    let r = post(&c, "/regions/scatter", json!({"regions_id": ids, "group": "g", "retry_limit": 3})).await;
    assert_eq!((r.status, r.content_type.as_str()), (200, JSON_TYPE));
    assert_eq!(r.body, "{\n  \"processed-percentage\": 100\n}\n");
    let scattered: Vec<String> = {
        let sim = c.sim();
        sim.operators.iter().filter(|o| o.desc == "scatter-region").map(|o| o.describe(&sim)).collect()
    };
    assert!(scattered.len() >= 6, "{scattered:?}");
    assert!(scattered.iter().all(|s| s.starts_with("scatter-region {")), "{scattered:?}");
    c.step(3 * 60_000);
    {
        let sim = c.sim();
        let mut peers = [0u32; 7];
        let mut leaders = [0u32; 7];
        for id in &ids {
            let region = sim.region(*id).unwrap();
            assert_eq!(region.peers.len(), 3);
            for p in &region.peers {
                peers[p.store_id as usize] += 1;
            }
            leaders[region.leader_store().unwrap() as usize] += 1;
        }
        // 36 peers over six stores and 12 leaders: evenly, give or take one.
        assert!(peers[1..].iter().all(|n| (5..=7).contains(n)), "peers per store {peers:?}");
        assert!(leaders[1..].iter().all(|n| (1..=3).contains(n)), "leaders per store {leaders:?}");
    }

    // A missing region counts as a failure; regions under an operator too.
    let r = post(&c, "/regions/scatter", json!({"regions_id": [ids[0], 99_999_999u64]})).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["processed-percentage"].as_u64().unwrap() < 100, "{}", r.body);

    // A key range: every region overlapping [start, end).
    let (_, s, _) = bounds(&c, 50);
    let (_, e, _) = bounds(&c, 53);
    let body = json!({"start_key": hex_upper(&s), "end_key": hex_upper(&e)});
    let r = post(&c, "/regions/scatter", body).await;
    assert_eq!(keys(&r.json()), ["processed-percentage"]);

    let errors = [
        (json!({"regions_id": "x"}), 500, msg("regions_id is invalid")),
        (json!({}), 500, msg("regions_id is invalid")),
        (json!({"start_key": "zz", "end_key": ""}), 500, msg("encoding/hex: invalid byte: U+007A 'z'")),
    ];
    for (body, status, text) in errors {
        let r = post(&c, "/regions/scatter", body.clone()).await;
        assert_eq!((r.status, r.body.as_str()), (status, text.as_str()), "{body}");
    }
    c.shutdown().await;
}

#[tokio::test]
async fn split_merge_and_listing_operators() {
    let c = start().await;
    c.sim().pause_scheduler("balance-leader-scheduler", 3600);
    c.sim().pause_scheduler("balance-region-scheduler", 3600);
    let (id, start_key, end_key) = bounds(&c, 100);
    let r = post(&c, "/operators", json!({"name":"split-region","region_id":id,"policy":"approximate"})).await;
    assert_eq!(
        (r.status, r.content_type.as_str(), r.body.as_str()),
        (200, JSON_TYPE, msg("The operator is created.").as_str())
    );
    let list = get(&c, "/operators?kind=admin").await.json();
    let text = list[0].as_str().unwrap();
    let prefix =
        format!("admin-split-region {{split: region {id} use policy APPROXIMATE}} (kind:admin,split, region:{id}(");
    assert!(text.starts_with(&prefix), "{text}");
    assert!(text.contains("steps:[0:{split region with policy APPROXIMATE}]"), "{text}");
    // PD appends per kind: a kind named twice lists the operator twice; unknown kinds add nothing.
    assert_eq!(get(&c, "/operators?kind=admin&kind=admin").await.json().as_array().unwrap().len(), 2);
    let r = get(&c, "/operators?kind=leader").await;
    assert_eq!((r.status, r.content_type.as_str(), r.body.as_str()), (200, JSON_TYPE, "null\n"));
    assert_eq!(get(&c, "/operators?kind=region").await.body, "null\n");
    assert_eq!(get(&c, "/operators?kind=waiting").await.body, "null\n");
    assert_eq!(get(&c, "/operators?kind=bogus").await.body, "null\n");
    assert_eq!(get(&c, "/operators?kind=bogus&kind=admin").await.json().as_array().unwrap().len(), 1);
    assert_eq!(get(&c, "/operators").await.json().as_array().unwrap().len(), 1);

    c.step(100);
    let r = common::get_json(&api(&c, &format!("/region/id/{id}"))).await;
    assert_ne!(r["start_key"], hex_upper(&start_key), "split at the middle");
    assert_eq!(r["end_key"], hex_upper(&end_key));
    let status = get(&c, &format!("/operators/{id}")).await;
    assert!(status.body.starts_with("\"status: SUCCESS, operator: admin-split-region"), "{}", status.body);

    // usekey splits at the given keys and names them in the brief.
    let (id2, s2, e2) = bounds(&c, 200);
    let key = tikv_sim::split::key_between(&s2, &e2).unwrap();
    let body = json!({"name":"split-region","region_id":id2,"policy":"UseKey","keys":[hex_upper(&key)]});
    assert_eq!(post(&c, "/operators", body).await.status, 200);
    let text = get(&c, "/operators").await.json()[0].as_str().unwrap().to_string();
    assert!(text.contains(&format!("use policy USEKEY and keys [{}]", hex_upper(&key))), "{text}");
    c.step(100);
    assert_eq!(common::get_json(&api(&c, &format!("/region/id/{id2}"))).await["start_key"], hex_upper(&key));

    // Merge two neighbours: the target takes the source's range; the source is gone.
    let (a, a_start, _) = bounds(&c, 300);
    let (b, _, b_end) = bounds(&c, 301);
    let version = {
        let sim = c.sim();
        sim.region(b).unwrap().version.max(sim.region(a).unwrap().version)
    };
    let (regions_before, next_id) = {
        let sim = c.sim();
        (sim.regions.len(), sim.next_id)
    };
    let r = post(&c, "/operators", json!({"name":"merge-region","source_region_id":a,"target_region_id":b})).await;
    assert_eq!((r.status, r.body.as_str()), (200, msg("The operator is created.").as_str()));
    let text = get(&c, "/operators?kind=admin").await.json()[0].as_str().unwrap().to_string();
    assert!(text.starts_with(&format!("admin-merge-region {{merge: region {a} to {b}}} (kind:admin,merge")), "{text}");
    c.step(60_000);
    let merged = common::get_json(&api(&c, &format!("/region/id/{b}"))).await;
    assert_eq!(merged["start_key"], hex_upper(&a_start));
    assert_eq!(merged["end_key"], hex_upper(&b_end));
    assert!(merged["epoch"]["version"].as_u64().unwrap() > version);
    // Regions elsewhere may have split meanwhile: they took new ids.
    let split_off = c.sim().regions.iter().filter(|r| r.id >= next_id).count();
    assert_eq!(c.sim().regions.len(), regions_before - 1 + split_off);
    assert!(c.sim().region(a).is_none());

    let (x, _, _) = bounds(&c, 400);
    let (y, _, _) = bounds(&c, 410);
    let errors = [
        (
            json!({"name":"merge-region","source_region_id":x,"target_region_id":y}),
            500,
            "[PD:region:ErrRegionNotAdjacent]two regions are not adjacent".to_string(),
        ),
        (json!({"name":"merge-region","source_region_id":x}), 400, "invalid target region id to merge to".to_string()),
        (json!({"name":"merge-region","target_region_id":x}), 400, "missing region id".to_string()),
        (
            json!({"name":"merge-region","source_region_id":x,"target_region_id":99_999_999u64}),
            500,
            "[PD:region:ErrRegionNotFound]region 99999999 not found".to_string(),
        ),
        (json!({"name":"split-region","region_id":x}), 400, "missing split policy".to_string()),
        (
            json!({"name":"split-region","region_id":x,"policy":"bogus"}),
            500,
            "check policy bogus is not supported".to_string(),
        ),
        (
            json!({"name":"split-region","region_id":x,"policy":"usekey","keys":["zz"]}),
            500,
            "split key zz is not in hex format".to_string(),
        ),
        (json!({"name":"split-region","region_id":x,"policy":"usekey","keys":[1]}), 400, "bad format keys".to_string()),
        (json!({"name":"split-region","policy":"scan"}), 400, "missing region id".to_string()),
        (json!({"name":"scatter-region"}), 400, "missing region id".to_string()),
        (json!({"name":"transfer-leader","region_id":x}), 400, "missing store id to transfer leader to".to_string()),
        (json!({"name":"add-learner","region_id":x}), 400, "invalid store id to transfer peer to".to_string()),
        (json!({"name":"remove-peer","region_id":x}), 400, "invalid store id to transfer peer to".to_string()),
        (json!({"name":"transfer-region","region_id":x}), 400, "invalid store ids to transfer region to".to_string()),
        (
            json!({"name":"transfer-region","region_id":x,"to_store_ids":[]}),
            400,
            "missing store ids to transfer region to".to_string(),
        ),
        (
            json!({"name":"transfer-region","region_id":x,"to_store_ids":[1,2,3]}),
            500,
            "transfer region without peer role is not supported when placement rules enabled".to_string(),
        ),
        (
            json!({"name":"transfer-region","region_id":x,"to_store_ids":[1,2,9],"peer_roles":["leader","voter","voter"]}),
            500,
            "[PD:core:ErrStoreNotFound]store 9 not found".to_string(),
        ),
    ];
    for (body, status, text) in errors {
        let r = post(&c, "/operators", body.clone()).await;
        assert_eq!(
            (r.status, r.content_type.as_str(), r.body.as_str()),
            (status, JSON_TYPE, msg(&text).as_str()),
            "{body}"
        );
    }

    // A region with a pending peer is not merged.
    {
        let mut sim = c.sim();
        let region = sim.region_mut(x).unwrap();
        let peer = region.peers[1];
        region.pending_peers.push(peer);
    }
    let (x_next, _, _) = bounds(&c, 401);
    let r = post(&c, "/operators", json!({"name":"merge-region","source_region_id":x,"target_region_id":x_next})).await;
    assert_eq!(
        (r.status, r.body),
        (500, msg(&format!("[PD:region:ErrRegionAbnormalPeer]region {x} has abnormal peer")))
    );
    c.shutdown().await;
}

#[tokio::test]
async fn transfer_region_learner_and_scatter_operators() {
    let c = start().await;
    c.sim().pause_scheduler("balance-leader-scheduler", 3600);
    c.sim().pause_scheduler("balance-region-scheduler", 3600);
    let (id, outsiders) = {
        let sim = c.sim();
        let r = &sim.regions[500];
        let outsiders: Vec<u64> = (1..=6).filter(|s| !r.peers.iter().any(|p| p.store_id == *s)).collect();
        (r.id, outsiders)
    };
    let body = json!({"name":"transfer-region","region_id":id,"to_store_ids":outsiders,"peer_roles":["leader","voter","follower"]});
    let r = post(&c, "/operators", body).await;
    assert_eq!((r.status, r.body.as_str()), (200, msg("The operator is created.").as_str()));
    let text = get(&c, "/operators?kind=region").await.json()[0].as_str().unwrap().to_string();
    assert!(text.starts_with("admin-move-region {mv peer: store ["), "{text}");
    assert!(text.contains("(kind:admin,region,leader, region:"), "{text}");
    assert_eq!(get(&c, "/operators?kind=leader").await.json().as_array().unwrap().len(), 1);
    c.step(60_000);
    let region = common::get_json(&api(&c, &format!("/region/id/{id}"))).await;
    let mut stores: Vec<u64> =
        region["peers"].as_array().unwrap().iter().map(|p| p["store_id"].as_u64().unwrap()).collect();
    stores.sort();
    assert_eq!(stores, outsiders);
    assert_eq!(region["leader"]["store_id"], outsiders[0]);

    // add-learner: a learner peer with role 1 and is_learner, counted by the learner-peer check.
    let (lid, target) = {
        let sim = c.sim();
        let r = &sim.regions[600];
        (r.id, (1..=6).find(|s| !r.peers.iter().any(|p| p.store_id == *s)).unwrap())
    };
    let r = post(&c, "/operators", json!({"name":"add-learner","region_id":lid,"store_id":target})).await;
    assert_eq!(r.status, 200);
    c.step(10_000);
    let region = common::get_json(&api(&c, &format!("/region/id/{lid}"))).await;
    let learner = region["peers"].as_array().unwrap().iter().find(|p| p["store_id"] == target).unwrap().clone();
    let wire =
        format!(r#"{{"role_name":"Learner","is_learner":true,"id":{},"store_id":{target},"role":1}}"#, learner["id"]);
    assert!(send_raw(Method::GET, &api(&c, &format!("/region/id/{lid}")), None).await.body.contains(&wire));
    assert_eq!(
        (learner["role_name"].clone(), learner["is_learner"].clone(), learner["role"].clone()),
        (json!("Learner"), json!(true), json!(1))
    );
    let check = get(&c, "/regions/check/learner-peer").await;
    assert_eq!(check.content_type, OCTET_TYPE);
    assert!(check.json()["regions"].as_array().unwrap().iter().any(|r| r["id"] == lid));

    // scatter-region refuses a hot region, and succeeds (possibly with nothing to do) otherwise.
    let (hot, cold) = {
        let sim = c.sim();
        (sim.regions[700].id, sim.regions[701].id)
    };
    c.sim().region_mut(hot).unwrap().hot_read_degree = 5;
    let r = post(&c, "/operators", json!({"name":"scatter-region","region_id":hot})).await;
    assert_eq!((r.status, r.body), (500, msg(&format!("region {hot} is a hot region"))));
    let r = post(&c, "/operators", json!({"name":"scatter-region","region_id":cold})).await;
    assert_eq!((r.status, r.body.as_str()), (200, msg("The operator is created.").as_str()));
    let r = post(&c, "/operators", json!({"name":"scatter-regions","region_ids":[cold]})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "{\n  \"processed-percentage\": 100,\n  \"error\": \"\"\n}\n");
    c.shutdown().await;
}

#[tokio::test]
async fn operator_records() {
    let c = start().await;
    let r = get(&c, "/operators/records").await;
    assert_eq!((r.status, r.content_type.as_str(), r.body), (500, JSON_TYPE, msg(OP_NOT_FOUND)));
    let (id, to) = {
        let sim = c.sim();
        let r = &sim.regions[5];
        (r.id, r.peers.iter().find(|p| Some(p.id) != r.leader).unwrap().store_id)
    };
    c.sim().pause_scheduler("balance-leader-scheduler", 3600);
    assert_eq!(
        post(&c, "/operators", json!({"name":"transfer-leader","region_id":id,"to_store_id":to})).await.status,
        200
    );
    c.step(1_000);
    let r = get(&c, "/operators/records?from=0").await;
    assert_eq!((r.status, r.content_type.as_str()), (200, JSON_TYPE));
    let list = r.json();
    let text = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .find(|s| s.starts_with("admin-transfer-leader"))
        .unwrap()
        .to_string();
    assert!(text.contains(&format!("region:{id}(")), "{text}");
    assert!(text.contains(" (finishAt:2026-05-28 20:26:40.1 +0000 UTC, duration:"), "{text}");
    let r = get(&c, "/operators/records?from=4000000000").await;
    assert_eq!((r.status, r.body), (500, msg(OP_NOT_FOUND)));
    let r = get(&c, "/operators/records?from=x").await;
    assert_eq!((r.status, r.body), (400, msg("strconv.ParseInt: parsing \"x\": invalid syntax")));
    // Bad region ids on the operator routes: PD writes the strconv error as a JSON string.
    for method in [Method::GET, Method::DELETE] {
        let r = send_raw(method, &api(&c, "/operators/abc"), None).await;
        assert_eq!(
            (r.status, r.error_code, r.body),
            (400, None, msg("strconv.ParseUint: parsing \"abc\": invalid syntax"))
        );
    }
    c.shutdown().await;
}

#[tokio::test]
async fn store_progress() {
    let c = start().await;
    let r = get(&c, "/stores/progress?id=1").await;
    assert_eq!(
        (r.status, r.content_type.as_str(), r.body),
        (404, JSON_TYPE, msg("[PD:cluster:ErrProgressNotFound]no progress found for the given store ID: 1"))
    );
    let r = get(&c, "/stores/progress").await;
    assert_eq!((r.status, r.body), (400, msg("need query parameters")));
    let r = get(&c, "/stores/progress?id=x").await;
    assert_eq!((r.status, r.error_code.as_deref()), (400, Some("input")));
    assert_eq!(r.json(), json!({"code":"input","msg":"strconv.ParseUint: parsing \"x\": invalid syntax","data":{}}));
    let r = get(&c, "/stores/progress?action=removing").await;
    assert_eq!(
        (r.status, r.body),
        (404, msg("[PD:cluster:ErrProgressNotFound]no progress found for the action: removing"))
    );

    assert_eq!(send_raw(Method::DELETE, &api(&c, "/store/6"), None).await.status, 200);
    let r = get(&c, "/stores/progress?id=6").await;
    assert_eq!((r.status, r.content_type.as_str()), (200, JSON_TYPE));
    assert_eq!(
        r.body,
        "{\n  \"action\": \"removing\",\n  \"store_id\": 6,\n  \"progress\": 0,\n  \"current_speed\": 0,\n  \"left_seconds\": 1.7976931348623157e+308\n}\n"
    );
    c.step(3 * 60_000);
    let v = get(&c, "/stores/progress?id=6").await.json();
    let progress = v["progress"].as_f64().unwrap();
    assert!(progress > 0.0 && progress < 1.0, "{v}");
    assert!(v["current_speed"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["left_seconds"].as_f64().unwrap() < 1e9, "{v}");
    let r = get(&c, "/stores/progress?action=removing").await;
    assert!(r.body.starts_with("{\n  \"action\": \"removing\",\n  \"progress\": "), "{}", r.body);
    assert_eq!(keys(&r.json()), ["action", "current_speed", "left_seconds", "progress"]);
    c.shutdown().await;
}

#[tokio::test]
async fn limits_filters_and_checks() {
    let c = start().await;
    let count = |v: Value| v["count"].as_u64().unwrap();
    assert_eq!(count(get(&c, "/regions/key?key=").await.json()), 16, "default limit");
    assert_eq!(count(get(&c, "/regions/key?key=&limit=5").await.json()), 5);
    // Zero or negative: no limit for a scan; above 10240 is capped (more than there are here).
    assert_eq!(count(get(&c, "/regions/key?key=&limit=0").await.json()), 1000);
    assert_eq!(count(get(&c, "/regions/key?key=&limit=-1").await.json()), 1000);
    assert_eq!(count(get(&c, "/regions/key?key=&limit=20000").await.json()), 1000);
    // Top-N lists: zero or negative gives none.
    let r = get(&c, "/regions/size?limit=0").await;
    assert_eq!((r.content_type.as_str(), r.body.as_str()), (OCTET_TYPE, r#"{"count":0,"regions":[]}"#));
    assert_eq!(count(get(&c, "/regions/keys?limit=-3").await.json()), 0);
    assert_eq!(count(get(&c, "/regions/writeflow?limit=20000").await.json()), 1000);
    for path in ["/regions/keys?limit=x", "/regions/key?limit=x", "/regions/readquery?limit=1.5"] {
        let r = get(&c, path).await;
        let value = path.split("limit=").nth(1).unwrap();
        assert_eq!(
            (r.status, r.error_code, r.body),
            (400, None, msg(&format!("strconv.Atoi: parsing \"{value}\": invalid syntax"))),
            "{path}"
        );
    }
    let r = get(&c, "/stores?state=x").await;
    assert_eq!(
        (r.status, r.content_type.as_str(), r.error_code, r.body),
        (400, JSON_TYPE, None, msg("strconv.Atoi: parsing \"x\": invalid syntax"))
    );
    let r = get(&c, "/stores?state=1").await;
    assert_eq!(r.json(), json!({"count":0,"stores":[]}));
    let r = get(&c, "/regions/store/x").await;
    assert_eq!((r.status, r.body), (400, msg("strconv.Atoi: parsing \"x\": invalid syntax")));

    // Oversized and empty regions show in their checks.
    let (big, empty) = {
        let sim = c.sim();
        (sim.regions[3].id, sim.regions[4].id)
    };
    c.sim().region_mut(big).unwrap().approximate_size = 200;
    {
        let mut sim = c.sim();
        let region = sim.region_mut(empty).unwrap();
        region.approximate_size = 1;
        region.approximate_keys = 10;
    }
    let r = get(&c, "/regions/check/oversized-region").await;
    assert_eq!(r.content_type, OCTET_TYPE);
    let v = r.json();
    assert_eq!(keys(&v), ["count", "regions"]);
    assert!(v["regions"].as_array().unwrap().iter().any(|r| r["id"] == big));
    let v = get(&c, "/regions/check/empty-region").await.json();
    assert!(v["regions"].as_array().unwrap().iter().any(|r| r["id"] == empty));
    let v = get(&c, "/regions/check/undersized-region").await.json();
    assert!(v["regions"].as_array().unwrap().iter().any(|r| r["id"] == empty));
    assert!(!v["regions"].as_array().unwrap().iter().any(|r| r["id"] == big));
    c.shutdown().await;
}

#[tokio::test]
async fn malformed_bodies_get_errcode_input() {
    let c = start().await;
    let routes = [
        "/operators",
        "/regions/scatter",
        "/regions/split",
        "/config",
        "/schedulers",
        "/schedulers/balance-leader-scheduler",
        "/store/1/label",
        "/store/1/weight",
        "/store/1/limit",
    ];
    let cases = [
        ("", "unexpected end of JSON input"),
        ("{", "unexpected end of JSON input"),
        ("nope", "invalid character 'o' in literal null (expecting 'u')"),
        ("{\"a\" 1}", "invalid character '1' after object key"),
        ("[1]", "json: cannot unmarshal array into Go value of type map[string]interface {}"),
    ];
    for route in routes {
        for (body, text) in cases {
            if route == "/store/1/label" && body == "[1]" {
                // Labels decode into map[string]string.
                continue;
            }
            let r = send_raw(Method::POST, &api(&c, route), Some(body)).await;
            assert_eq!(
                (r.status, r.error_code.as_deref(), r.content_type.as_str()),
                (400, Some("input"), JSON_TYPE),
                "{route} {body:?}"
            );
            assert_eq!(r.json(), json!({"code":"input","msg":text,"data":{}}), "{route} {body:?}");
        }
    }
    // Non-numeric store ids get the errcode form too.
    for (method, path) in
        [(Method::GET, "/store/x"), (Method::DELETE, "/store/x"), (Method::POST, "/store/x/state?state=Up")]
    {
        let r = send_raw(method, &api(&c, path), None).await;
        assert_eq!((r.status, r.error_code.as_deref()), (400, Some("input")), "{path}");
        assert_eq!(r.json()["msg"], "strconv.ParseUint: parsing \"x\": invalid syntax");
    }
    c.shutdown().await;
}
