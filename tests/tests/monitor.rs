//! The monitor, driven by a scripted subject (the test serves what it observes) and by the TiKV
//! plugin against the simulator: grace, deduplication, auto-resolve, partial-observation safety,
//! hold, re-open.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use common::Harness;
use operator_host::audit::AuditEvent;
use operator_host::config::{Config, PluginConfig};
use operator_host::monitor::tickets::{SnapshotKind, TicketStatus, TicketStore};
use operator_host::monitor::{Monitor, MonitorConfig};
use operator_host::runtime::gate::EndpointConfig;
use operator_host::runtime::grants::GrantSpec;
use serde_json::{Value, json};

type Shared = Arc<Mutex<Value>>;

async fn serve_state(state: Shared) -> String {
    let app = Router::new()
        .route("/state", axum::routing::get(|State(s): State<Shared>| async move { s.lock().unwrap().to_string() }))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

struct Scripted {
    state: Shared,
    h: Harness,
    monitor: Monitor,
    tickets: TicketStore,
}

const T0: u64 = 1_800_000_000_000;

impl Scripted {
    async fn start() -> Scripted {
        let state: Shared = Arc::new(Mutex::new(json!({"violations": []})));
        let url = serve_state(state.clone()).await;
        let mut config = Config::default();
        config
            .endpoints
            .insert("api".into(), EndpointConfig { urls: vec![url], bearer_token_env: None, headers: BTreeMap::new() });
        let grant = GrantSpec {
            endpoint: Some("api".into()),
            url: None,
            methods: vec!["GET".into()],
            paths: vec!["/state".into()],
        };
        config.plugins.insert("scripted".into(), PluginConfig { grants: vec![grant], ..PluginConfig::default() });
        let h = Harness::new(config);
        let plugin = h.load("scripted", "subject", &[("beta-grace", "5")]);
        let tickets = TicketStore::new(h.log.store().clone());
        let monitor = Monitor::new(plugin, tickets.clone(), h.sink.clone(), MonitorConfig::default()).await.unwrap();
        Scripted { state, h, monitor, tickets }
    }

    fn serve(&self, value: Value) {
        *self.state.lock().unwrap() = value;
    }

    fn violation(&self, invariant: &str, entity: &str, message: &str) {
        self.serve(json!({"violations": [{"invariant": invariant, "entity": entity, "message": message}]}));
    }

    fn healthy(&self) {
        self.serve(json!({"violations": []}));
    }

    async fn at(&mut self, secs: u64) -> operator_host::monitor::CycleReport {
        self.monitor.cycle(T0 + secs * 1000).await
    }
}

#[tokio::test]
async fn a_ticket_opens_only_after_the_grace_period() {
    let mut s = Scripted::start().await;
    s.violation("beta", "b1", "beta broke");
    assert!(s.at(0).await.opened.is_empty());
    assert!(s.at(4).await.opened.is_empty(), "grace is 5 s");
    let report = s.at(5).await;
    assert_eq!(report.opened.len(), 1);
    let ticket = s.tickets.require(&report.opened[0]).unwrap();
    assert_eq!(ticket.first_seen_ms, T0, "the first sighting is kept");
    assert_eq!(ticket.opened_at_ms, T0 + 5000);
    // A violation that goes away during its grace period starts over.
    s.violation("beta", "b2", "another");
    s.at(10).await;
    s.healthy();
    s.at(12).await;
    s.violation("beta", "b2", "another");
    assert!(s.at(14).await.opened.is_empty(), "the grace restarted at 14");
    assert_eq!(s.at(19).await.opened.len(), 1);
}

#[tokio::test]
async fn repeated_violations_update_one_ticket() {
    let mut s = Scripted::start().await;
    s.violation("alpha", "x", "first");
    let id = s.at(0).await.opened[0].clone();
    s.violation("alpha", "x", "second");
    let report = s.at(2).await;
    assert!(report.opened.is_empty());
    assert_eq!(report.updated, vec![id.clone()]);
    let ticket = s.tickets.require(&id).unwrap();
    assert_eq!(ticket.occurrences, 2);
    assert_eq!(ticket.message, "second");
    assert_eq!(ticket.last_seen_ms, T0 + 2000);
    assert!(s.tickets.snapshot(&id, SnapshotKind::AtOpen).unwrap().is_some());
    assert!(s.tickets.snapshot(&id, SnapshotKind::Latest).unwrap().unwrap().payload.contains("second"));
    assert_eq!(s.tickets.list(None).unwrap().len(), 1);
}

#[tokio::test]
async fn a_ticket_resolves_after_settling_and_every_transition_is_audited() {
    let mut s = Scripted::start().await;
    s.violation("alpha", "x", "broken");
    let id = s.at(0).await.opened[0].clone();
    s.healthy();
    assert!(s.at(2).await.resolved.is_empty());
    assert!(s.at(31).await.resolved.is_empty(), "settling takes 30 s from 2 s");
    assert_eq!(s.at(32).await.resolved, vec![id.clone()]);
    let ticket = s.tickets.require(&id).unwrap();
    assert_eq!(ticket.status, TicketStatus::Resolved);
    assert!(ticket.resolution.unwrap().contains("absent"));
    let changes: Vec<(Option<String>, String)> =
        s.h.records()
            .await
            .into_iter()
            .filter_map(|r| match r.event {
                AuditEvent::StateChange { subject, id: rid, from, to, .. } if subject == "ticket" && rid == id => {
                    Some((from, to))
                }
                _ => None,
            })
            .collect();
    assert_eq!(changes, vec![(None, "open".to_owned()), (Some("open".to_owned()), "resolved".to_owned())]);
}

#[tokio::test]
async fn partial_or_failed_observations_never_resolve_anything() {
    let mut s = Scripted::start().await;
    s.violation("alpha", "x", "broken");
    let id = s.at(0).await.opened[0].clone();
    s.serve(json!({"complete": false, "violations": []}));
    for t in [10, 40, 100] {
        assert!(s.at(t).await.resolved.is_empty());
    }
    s.serve(json!({"fail": true}));
    let report = s.at(130).await;
    assert!(!report.observed && report.resolved.is_empty());
    // Complete again: settling starts now, not at the first absence.
    s.healthy();
    assert!(s.at(140).await.resolved.is_empty());
    assert!(s.at(169).await.resolved.is_empty());
    assert_eq!(s.at(170).await.resolved, vec![id]);
}

#[tokio::test]
async fn a_held_ticket_does_not_resolve_until_unheld() {
    let mut s = Scripted::start().await;
    s.violation("alpha", "x", "broken");
    let id = s.at(0).await.opened[0].clone();
    s.tickets.transition(&s.h.sink, &id, TicketStatus::Held, "looking into it", "cli", T0 + 1000).await.unwrap();
    let again = s.tickets.transition(&s.h.sink, &id, TicketStatus::Held, "again", "cli", T0 + 1000).await;
    assert!(again.unwrap_err().to_string().contains("is held"));
    s.healthy();
    for t in [2, 40, 200] {
        assert!(s.at(t).await.resolved.is_empty());
    }
    s.tickets.transition(&s.h.sink, &id, TicketStatus::Open, "done looking", "cli", T0 + 201_000).await.unwrap();
    // It has been absent since 2 s; once open it settles.
    assert_eq!(s.at(202).await.resolved, vec![id]);
}

#[tokio::test]
async fn a_returning_violation_reopens_its_ticket_within_the_window() {
    let mut s = Scripted::start().await;
    s.violation("alpha", "x", "broken");
    let id = s.at(0).await.opened[0].clone();
    s.healthy();
    s.at(1).await;
    assert_eq!(s.at(31).await.resolved, vec![id.clone()]);
    s.violation("alpha", "x", "broken again");
    let report = s.at(100).await;
    assert_eq!(report.reopened, vec![id.clone()]);
    assert!(report.opened.is_empty());
    let ticket = s.tickets.require(&id).unwrap();
    assert_eq!((ticket.status, ticket.reopened), (TicketStatus::Open, 1));
    // Resolved again, and back after the window (600 s): a new ticket.
    s.healthy();
    s.at(101).await;
    s.at(131).await;
    s.violation("alpha", "x", "much later");
    let report = s.at(131 + 601).await;
    assert_eq!(report.opened.len(), 1);
    assert_ne!(report.opened[0], id);
}

#[tokio::test]
async fn the_tikv_plugin_on_the_simulator_opens_and_resolves_a_store_ticket() {
    use operator_host::runtime::CallContext;
    use tikv_sim::{ClusterSpec, SimCluster};
    let sim = SimCluster::start(ClusterSpec { stores: 4, regions: 80, ..ClusterSpec::default() }, 0.0).await.unwrap();
    sim.step(11_000);
    let mut config = Config::default();
    config
        .endpoints
        .insert("pd".into(), EndpointConfig { urls: sim.pd_urls(), bearer_token_env: None, headers: BTreeMap::new() });
    let grants = vec![
        GrantSpec {
            endpoint: Some("pd".into()),
            url: None,
            methods: vec!["GET".into()],
            paths: vec!["/pd/api/v1/**".into()],
        },
        GrantSpec {
            endpoint: None,
            url: Some("http://127.0.0.1:*".into()),
            methods: vec!["GET".into()],
            paths: vec!["/status".into()],
        },
    ];
    config.plugins.insert("tikv".into(), PluginConfig { grants, ..PluginConfig::default() });
    let h = Harness::new(config);
    let plugins = h.runtime.discover(h.dir.path(), &h.resolved);
    let tikv = plugins.get("tikv").unwrap().clone();
    assert!(tikv.as_subject().unwrap().info(&CallContext::default()).await.is_ok());
    let tickets = TicketStore::new(h.log.store().clone());
    let mut monitor = Monitor::new(tikv, tickets.clone(), h.sink.clone(), MonitorConfig::default()).await.unwrap();
    assert!(monitor.cycle(T0).await.opened.is_empty(), "healthy");
    sim.kill_store(2).await.unwrap();
    sim.step(25_000);
    let report = monitor.cycle(T0 + 25_000).await;
    assert_eq!(report.opened.len(), 1, "{report:?}");
    let ticket = tickets.require(&report.opened[0]).unwrap();
    assert_eq!((ticket.invariant.as_str(), ticket.entity.as_str()), ("store-down", "store-2"));
    sim.restart_store(2).await.unwrap();
    sim.step(11_000);
    monitor.cycle(T0 + 40_000).await;
    let report = monitor.cycle(T0 + 71_000).await;
    assert_eq!(report.resolved, vec![ticket.id.clone()], "{report:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_subject_is_the_one_named_or_else_the_only_subject_plugin_loaded() {
    let h = Harness::new(Config::default());
    let plugins = h.runtime.discover(h.dir.path(), &h.resolved);
    let only = plugins.subject("").expect("one built-in subject plugin, chosen unnamed");
    assert_eq!(only.name(), "tikv");
    let error = plugins.subject("tools").err().expect("the tools plugin is not a subject adapter");
    assert!(error.contains("`subject = \"tools\"` names a tools plugin"), "{error}");
    let error = plugins.subject("nope").err().expect("an unknown plugin");
    assert!(error.contains("`nope` is not loaded"), "{error}");

    // A second subject plugin dropped in: an unnamed subject is now ambiguous, a named one is not.
    h.install("scripted", "subject");
    let plugins = h.runtime.discover(h.dir.path(), &h.resolved);
    let error = plugins.subject("").err().expect("two subject plugins and none named");
    assert!(error.contains("several subject plugins are loaded (scripted, tikv)"), "{error}");
    assert_eq!(plugins.subject("scripted").unwrap().name(), "scripted");
}
