//! Detection latency: the time from killing a store in the simulator (1× speed) to an open (or
//! re-opened) ticket, with the default monitor interval and status probes granted. PD itself
//! only notices after 20 s; the status probe notices at the next cycle.
//!
//! `cargo bench -p operator-tests --bench detection` prints every sample and the distribution.
//! `DETECTION_KILLS=N` changes the number of kills (default 10).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use operator_host::audit::{AuditLog, AuditSink};
use operator_host::config::{Config, PluginConfig};
use operator_host::monitor::tickets::TicketStore;
use operator_host::monitor::{Monitor, MonitorConfig, MonitorEvent};
use operator_host::runtime::Runtime;
use operator_host::runtime::gate::EndpointConfig;
use operator_host::runtime::grants::GrantSpec;
use operator_host::store::Store;
use tikv_sim::{ClusterSpec, SimCluster};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let kills: usize = std::env::var("DETECTION_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let sim = SimCluster::start(ClusterSpec::default(), 1.0).await?;
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
    let resolved = config.resolve()?;
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let sink = AuditSink::spawn(AuditLog::new(store.clone())?);
    let runtime = Runtime::new(dir.path(), &resolved, sink.clone())?;
    let plugins = runtime.discover(dir.path(), &resolved);
    let tikv = plugins.get("tikv").expect("the TiKV plugin loads").clone();
    // The default interval; a short settling time so each restarted store's ticket resolves
    // before the next kill (detection does not depend on it).
    let monitor_config = MonitorConfig { settle_secs: 3, ..MonitorConfig::default() };
    let monitor = Monitor::new(tikv, TicketStore::new(store), sink, monitor_config).await?;
    let mut events = monitor.subscribe();
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(monitor.run(stop_rx));
    // Let the first heartbeats and cycles pass.
    tokio::time::sleep(Duration::from_secs(12)).await;

    let stores: Vec<u64> = sim.status_addrs().keys().copied().collect();
    let mut samples = Vec::new();
    for i in 0..kills {
        let victim = stores[i % stores.len()];
        // Kill at a random point of the monitor's cycle.
        tokio::time::sleep(Duration::from_millis(500 + (i as u64 * 377) % 2000)).await;
        while events.try_recv().is_ok() {}
        let killed = Instant::now();
        sim.kill_store(victim).await?;
        let detected = loop {
            match tokio::time::timeout(Duration::from_secs(60), events.recv()).await {
                Ok(Ok(MonitorEvent::Opened(_) | MonitorEvent::Reopened(_))) => break killed.elapsed(),
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => anyhow::bail!("event stream: {e}"),
                Err(_) => anyhow::bail!("no ticket within 60 s of killing store {victim}"),
            }
        };
        println!("kill {:>2}: store {victim} detected after {:.2} s", i + 1, detected.as_secs_f64());
        samples.push(detected.as_secs_f64());
        sim.restart_store(victim).await?;
        // Wait until the ticket resolves, so the next kill opens (or re-opens) one.
        loop {
            match tokio::time::timeout(Duration::from_secs(90), events.recv()).await {
                Ok(Ok(MonitorEvent::Resolved(_))) => break,
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => anyhow::bail!("event stream: {e}"),
                Err(_) => anyhow::bail!("store {victim}'s ticket did not resolve within 90 s of its restart"),
            }
        }
    }
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    println!(
        "detection over {} kills: min {:.2} s, median {:.2} s, p90 {:.2} s, max {:.2} s (target: median ≤ 3 s)",
        samples.len(),
        samples[0],
        median,
        samples[(samples.len() * 9 / 10).min(samples.len() - 1)],
        samples[samples.len() - 1]
    );
    sim.shutdown().await;
    Ok(())
}
