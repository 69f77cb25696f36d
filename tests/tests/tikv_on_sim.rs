//! The built-in TiKV plugin, run by the real host runtime, against the simulated cluster: what it
//! sees of a healthy cluster and of a killed store.

mod common;

use common::Harness;
use operator_host::config::{Config, PluginConfig};
use operator_host::runtime::CallContext;
use operator_host::runtime::gate::EndpointConfig;
use operator_host::runtime::grants::GrantSpec;
use tikv_sim::{ClusterSpec, SimCluster};

#[tokio::test]
async fn the_tikv_plugin_sees_a_killed_store() {
    // Speed 0: the test steps simulated time itself.
    let sim = SimCluster::start(ClusterSpec { stores: 4, regions: 60, ..ClusterSpec::default() }, 0.0).await.unwrap();
    let mut config = Config::default();
    config.endpoints.insert(
        "pd".into(),
        EndpointConfig { urls: sim.pd_urls(), bearer_token_env: None, headers: Default::default() },
    );
    let grant = GrantSpec {
        endpoint: Some("pd".into()),
        url: None,
        methods: vec!["GET".into()],
        paths: vec!["/pd/api/v1/**".into()],
    };
    config.plugins.insert("tikv".into(), PluginConfig { grants: vec![grant], ..PluginConfig::default() });
    let h = Harness::new(config);
    let plugins = h.runtime.discover(h.dir.path(), &h.resolved);
    let tikv = plugins.get("tikv").expect("the built-in TiKV plugin loads").clone();
    let subject = tikv.as_subject().unwrap();
    let context = CallContext::default();

    let healthy = subject.observe(&context).await.unwrap().unwrap();
    assert!(healthy.complete, "{:?}", healthy.errors);
    assert!(subject.check(&context, &healthy).await.unwrap().is_empty(), "a healthy cluster has no violation");
    let entities = subject.summarize(&context, &healthy).await.unwrap();
    assert_eq!(entities.iter().filter(|e| e.kind == "store").count(), 4);

    sim.kill_store(2).await.unwrap();
    sim.step(40_000);
    let observation = subject.observe(&context).await.unwrap().unwrap();
    let violations = subject.check(&context, &observation).await.unwrap();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].invariant, "store-not-up");
    assert_eq!(violations[0].entity, "store-2");
    assert!(violations[0].message.contains("Disconnected"), "{}", violations[0].message);
    sim.shutdown().await;
}
