//! The capability gate driven directly: origins granted by URL pattern, endpoint failover, and
//! the audit trail of each decision.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{Harness, start_service};
use operator_host::audit::{AuditEvent, Decision};
use operator_host::config::{Config, PluginConfig};
use operator_host::runtime::bindings::wit_http::{Error, Method, Request, Target};
use operator_host::runtime::gate::{EndpointConfig, HttpGate};
use operator_host::runtime::grants::GrantSpec;

fn get(target: Target, path: &str) -> Request {
    Request { target, method: Method::Get, path_and_query: path.into(), headers: vec![], body: None, timeout_ms: None }
}

/// A harness whose plugin `probe` holds one grant, with endpoint `api` at `api_urls` if given.
fn probe_harness(api_urls: Option<Vec<String>>, grant: GrantSpec) -> Harness {
    let mut config = Config::default();
    if let Some(urls) = api_urls {
        config
            .endpoints
            .insert("api".into(), EndpointConfig { urls, bearer_token_env: None, headers: BTreeMap::new() });
    }
    config.plugins.insert("probe".into(), PluginConfig { grants: vec![grant], ..PluginConfig::default() });
    Harness::new(config)
}

/// A grant of GET on `paths` of endpoint `api`.
fn api_get_grant(paths: &[&str]) -> GrantSpec {
    GrantSpec {
        endpoint: Some("api".into()),
        url: None,
        methods: vec!["GET".into()],
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    }
}

fn gate(h: &Harness, plugin: &str) -> HttpGate {
    HttpGate::new(
        Arc::from(plugin),
        "observe",
        h.resolved.grants[plugin].clone(),
        h.runtime.gate_shared(),
        false,
        None,
        h.sink.clone(),
    )
}

#[tokio::test]
async fn an_origin_granted_by_pattern_is_reached_and_others_are_not() {
    let (addr, hits) = start_service().await;
    let grant = GrantSpec {
        endpoint: None,
        url: Some("http://127.0.0.1:*".into()),
        methods: vec!["GET".into()],
        paths: vec!["/ok".into()],
    };
    let h = probe_harness(None, grant);
    let gate = gate(&h, "probe");

    let response = gate.send(get(Target::Origin(format!("http://{addr}")), "/ok")).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"ok");
    assert_eq!(hits.count("/ok"), 1);

    let other_host = gate.send(get(Target::Origin(format!("http://localhost:{}", addr.port())), "/ok")).await;
    assert!(matches!(other_host, Err(Error::Denied(_))), "{other_host:?}");
    let with_path = gate.send(get(Target::Origin(format!("http://{addr}/ok")), "/ok")).await;
    assert!(matches!(with_path, Err(Error::Invalid(_))), "{with_path:?}");
    assert_eq!(hits.count("/ok"), 1, "denied requests never reach the service");

    let records = h.records().await;
    let decisions: Vec<bool> = records
        .iter()
        .filter_map(|r| match &r.event {
            AuditEvent::Capability { decision, .. } => Some(matches!(decision, Decision::Allowed { .. })),
            _ => None,
        })
        .collect();
    assert_eq!(decisions, [true, false, false]);
}

#[tokio::test]
async fn an_endpoint_fails_over_to_the_url_that_answers_and_sticks_to_it() {
    let (addr, hits) = start_service().await;
    // A port nothing listens on: bind, read the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let h = probe_harness(Some(vec![format!("http://{dead}"), format!("http://{addr}")]), api_get_grant(&["/ok"]));
    let gate = gate(&h, "probe");

    for _ in 0..3 {
        let response = gate.send(get(Target::Endpoint("api".into()), "/ok")).await.unwrap();
        assert_eq!(response.body, b"ok");
    }
    assert_eq!(hits.count("/ok"), 3);
    let urls: Vec<String> = h
        .records()
        .await
        .iter()
        .filter_map(|r| match &r.event {
            AuditEvent::Capability { url: Some(url), status: Some(200), .. } => Some(url.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(urls, vec![format!("http://{addr}/ok"); 3]);
}

#[tokio::test]
async fn an_endpoint_with_no_live_url_is_unreachable_and_audited() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let h = probe_harness(Some(vec![format!("http://{dead}")]), api_get_grant(&["/ok"]));
    let result = gate(&h, "probe").send(get(Target::Endpoint("api".into()), "/ok")).await;
    assert!(matches!(&result, Err(Error::Unreachable(m)) if m.contains(&dead.to_string())), "{result:?}");
    let records = h.records().await;
    assert!(records.iter().any(|r| matches!(&r.event, AuditEvent::Capability { error: Some(_), .. })));
}

#[tokio::test]
async fn a_wildcard_grant_does_not_reach_link_local_addresses() {
    let grant = GrantSpec {
        endpoint: None,
        url: Some("http://*:*".into()),
        methods: vec!["GET".into()],
        paths: vec!["/**".into()],
    };
    let h = probe_harness(None, grant);
    let result =
        gate(&h, "probe").send(get(Target::Origin("http://169.254.169.254:80".into()), "/latest/meta-data/")).await;
    assert!(matches!(&result, Err(Error::Denied(m)) if m.contains("link-local")), "{result:?}");
}
