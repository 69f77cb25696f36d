//! `operator-host run`: the daemon. Monitor, diagnosis, action executor (with its scheduler and
//! verifier) in one process over one data directory, until SIGINT or SIGTERM.
//!
//! `--sim` starts the built-in simulated cluster in-process on loopback and grants the subject
//! plugin what it needs there, so a newcomer sees the whole pipeline without a cluster.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use clap::Args;
use tokio::sync::watch;

use super::Context;
use crate::actions::executor::{Executor, Proposal, ProposalParams};
use crate::actions::policy::Mode;
use crate::actions::store::ActionStore;
use crate::audit::{AuditEvent, AuditLog, AuditSink, now_ms};
use crate::config::{Config, PluginConfig};
use crate::monitor::tickets::TicketStore;
use crate::monitor::{Monitor, MonitorEvent};
use crate::runtime::gate::EndpointConfig;
use crate::runtime::grants::GrantSpec;
use crate::runtime::{Plugin, Runtime};
use crate::store::Store;

/// Options of the daemon.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run against the built-in simulated cluster (started in-process on loopback).
    #[arg(long)]
    pub sim: bool,
    /// Simulated seconds per real second for --sim.
    #[arg(long, default_value_t = 1.0)]
    pub sim_speed: f64,
    /// Stores of the simulated cluster.
    #[arg(long, default_value_t = 6)]
    pub sim_stores: usize,
    /// Regions of the simulated cluster.
    #[arg(long, default_value_t = 1000)]
    pub sim_regions: usize,
    /// Seed of the simulated cluster.
    #[arg(long, default_value_t = 1)]
    pub sim_seed: u64,
    /// PD URLs of a real cluster (overrides `[endpoints.pd]`); also `OPERATOR_PD`, comma-separated.
    #[arg(long = "pd", env = "OPERATOR_PD", value_delimiter = ',', value_name = "URL")]
    pub pd: Vec<String>,
    /// Start in this mode (otherwise the persisted mode, observe by default).
    #[arg(long, value_parser = ["observe", "execute"])]
    pub mode: Option<String>,
    /// The diagnoser: auto (Claude when an Anthropic key is configured, else rules), claude, openai, rules.
    #[arg(long, value_parser = ["auto", "claude", "openai", "rules"])]
    pub diagnoser: Option<String>,
    /// Stop after this many seconds (for scripted runs).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<u64>,
}

/// The grants `--sim` gives the subject plugin when the configuration names none.
fn sim_grants() -> Vec<GrantSpec> {
    vec![
        GrantSpec {
            endpoint: Some("pd".into()),
            url: None,
            methods: vec!["GET".into(), "POST".into(), "DELETE".into()],
            paths: vec!["/pd/api/v1/**".into()],
        },
        GrantSpec {
            endpoint: None,
            url: Some("http://127.0.0.1:*".into()),
            methods: vec!["GET".into()],
            paths: vec!["/status".into()],
        },
    ]
}

fn set_pd(config: &mut Config, urls: Vec<String>) {
    let endpoint = config.endpoints.entry("pd".into()).or_insert_with(|| EndpointConfig {
        urls: vec![],
        bearer_token_env: None,
        headers: BTreeMap::new(),
    });
    endpoint.urls = urls;
}

/// Everything the daemon runs, for the loops and the shutdown.
struct Daemon {
    engine: crate::diagnose::DiagnosisEngine,
    workflows: Arc<crate::actions::workflow::WorkflowEngine>,
    sink: AuditSink,
    tickets: TicketStore,
    executor: Arc<Executor>,
    subject: Arc<Plugin>,
}

pub(super) async fn run(context: &Context, args: RunArgs) -> Result<ExitCode> {
    let mut config = Config::load(&context.config_path, context.config_explicit)?;
    if !args.pd.is_empty() {
        set_pd(&mut config, args.pd.clone());
    }
    let sim = if args.sim {
        let spec = tikv_sim::ClusterSpec {
            stores: args.sim_stores,
            regions: args.sim_regions,
            seed: args.sim_seed,
            ..tikv_sim::ClusterSpec::default()
        };
        let cluster = tikv_sim::SimCluster::start(spec, args.sim_speed).await?;
        set_pd(&mut config, cluster.pd_urls());
        let subject = config.subject.clone();
        let plugin = config.plugins.entry(subject).or_insert_with(PluginConfig::default);
        if plugin.grants.is_empty() {
            plugin.grants = sim_grants();
        }
        std::fs::create_dir_all(&context.data_dir)?;
        tikv_sim::control::write_discovery(
            &context.data_dir,
            &tikv_sim::control::DiscoveryInfo {
                control_url: cluster.control_url(),
                pd_urls: cluster.pd_urls(),
                pid: std::process::id(),
            },
        )?;
        Some(cluster)
    } else {
        None
    };
    if let Some(choice) = &args.diagnoser {
        config.diagnosis.diagnoser = choice.parse().map_err(|e: String| anyhow!(e))?;
    }
    let resolved = config.resolve().with_context(|| format!("in {}", context.config_path.display()))?;

    let store = Store::open(&context.data_dir)?;
    let log = AuditLog::new(store.clone())?;
    let sink = AuditSink::spawn(log.clone());
    let metrics = Arc::new(crate::api::Metrics::new());
    metrics.attach(&sink);
    let notifier = crate::notify::Notifier::new(&config.notifications)?;
    if !notifier.is_empty() {
        notifier.attach(&sink);
    }
    let runtime = Runtime::new(&context.data_dir, &resolved, sink.clone())?;
    let plugins = runtime.discover(&context.data_dir, &resolved);
    for refused in &plugins.refused {
        tracing::warn!(plugin = %refused.name, "plugin refused: {}", refused.reason);
    }
    let subject = plugins.get(&config.subject).cloned().ok_or_else(|| {
        anyhow!("the subject plugin `{}` is not loaded (see `operator-host plugins list`)", config.subject)
    })?;
    let tools = (!config.tools.is_empty()).then(|| plugins.get(&config.tools).cloned()).flatten();

    let engine = crate::diagnose::DiagnosisEngine::new(config.diagnosis.clone()).map_err(|e| anyhow!(e))?;
    let tickets = TicketStore::new(store.clone());
    let mut monitor = Monitor::new(subject.clone(), tickets.clone(), sink.clone(), config.monitor.clone()).await?;
    {
        let metrics = metrics.clone();
        monitor.on_cycle(Arc::new(move |report, took| {
            metrics.observe_cycle(took.as_secs_f64());
            if !report.observed || !report.complete {
                metrics.observe_observation_failure();
            }
        }));
    }
    let latest = monitor.latest();
    let events = monitor.subscribe();
    let executor = Arc::new(
        Executor::new(
            subject.clone(),
            tools.clone(),
            ActionStore::new(store.clone()),
            tickets.clone(),
            sink.clone(),
            config.actions.clone(),
            config.monitor.stale_after_ms,
            latest.clone(),
        )
        .await?,
    );
    let workflows = Arc::new(
        crate::actions::workflow::WorkflowEngine::new(
            executor.clone(),
            subject.clone(),
            tools.clone(),
            crate::actions::workflow_store::WorkflowStore::new(store.clone()),
            sink.clone(),
            crate::actions::workflow::EngineSettings {
                approval: config.actions.approval.clone(),
                stale_after_ms: config.monitor.stale_after_ms,
                latest: latest.clone(),
            },
        )
        .await?,
    );
    if let Some(mode) = &args.mode {
        let mode = if mode == "execute" { Mode::Execute } else { Mode::Observe };
        if executor.safety().mode != mode {
            executor.set_mode(mode, "daemon", "--mode at start", now_ms()).await?;
        }
    }
    sink.record(AuditEvent::note(format!(
        "operator-host {} started (pid {})",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    )));
    let recovered = executor.recover(now_ms()).await?;

    // The local API: loopback by default; a token for every change.
    let token = crate::api::ApiToken::load_or_create(&context.data_dir)?;
    let state = Arc::new(crate::api::ApiState::new(
        executor.clone(),
        tickets.clone(),
        log.clone(),
        sink.clone(),
        crate::api::PluginSummary::from_set(&plugins),
        latest.clone(),
        subject.clone(),
        metrics.clone(),
        token,
    ));
    let router = crate::api::router(state);
    let listener = tokio::net::TcpListener::bind(&config.api.listen)
        .await
        .with_context(|| format!("cannot listen on {} (api.listen): is another daemon running?", config.api.listen))?;
    let api_url = format!("http://{}", listener.local_addr()?);
    let unix =
        if config.api.unix_socket { Some(crate::api::bind_unix(&context.data_dir.join("api.sock"))?) } else { None };
    DaemonInfo { api_url: api_url.clone(), pid: std::process::id() }.write(&context.data_dir)?;

    // The startup summary: what is watched, how, and where.
    let safety = executor.safety();
    println!("operator-host {} — data in {}", env!("CARGO_PKG_VERSION"), context.data_dir.display());
    match &sim {
        Some(cluster) => println!(
            "monitoring the simulated cluster ({} stores, {} regions, speed {}x): PD {}; faults: `operator-host sim fault …` (control {})",
            args.sim_stores,
            args.sim_regions,
            args.sim_speed,
            cluster.pd_urls().join(", "),
            cluster.control_url()
        ),
        None => println!(
            "monitoring {} through endpoint pd = {}",
            config.subject,
            config.endpoints.get("pd").map(|e| e.urls.join(", ")).unwrap_or_else(|| "(not configured)".into())
        ),
    }
    println!(
        "subject plugin {} {}; tools {}",
        subject.name(),
        subject.version(),
        tools.as_ref().map(|t| t.name().to_owned()).unwrap_or_else(|| "none".into())
    );
    for grant in subject.grants().iter() {
        println!("  grant: {grant}");
    }
    println!(
        "mode: {}{}; every {} ms; diagnosis: {}{}",
        safety.mode.as_str(),
        if safety.kill_switch { " (KILL SWITCH ON)" } else { "" },
        config.monitor.interval_ms,
        engine.diagnoser().kind().as_str(),
        engine.diagnoser().model().map(|m| format!(" ({m})")).unwrap_or_default()
    );
    if !recovered.is_empty() {
        println!("reconciled {} action(s) left executing by the previous run", recovered.len());
    }

    println!("API on {api_url} (token in {})", crate::api::ApiToken::path(&context.data_dir).display());

    let daemon = Arc::new(Daemon {
        engine,
        workflows,
        sink: sink.clone(),
        tickets: tickets.clone(),
        executor: executor.clone(),
        subject: subject.clone(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let monitor_task = tokio::spawn(monitor.run(stop_rx.clone()));
    let diagnosis_task = tokio::spawn(diagnosis_loop(daemon.clone(), events, stop_rx.clone()));
    let executor_task = tokio::spawn(executor_loop(daemon.clone(), config.actions.tick_ms, stop_rx.clone()));
    let mut api_stop = stop_rx.clone();
    let api_task = tokio::spawn(crate::api::serve(listener, router.clone(), async move {
        let _ = api_stop.changed().await;
    }));
    let unix_task = unix.map(|l| {
        let mut unix_stop = stop_rx.clone();
        tokio::spawn(crate::api::serve_unix(l, router, async move {
            let _ = unix_stop.changed().await;
        }))
    });

    wait_for_stop(args.duration).await;
    println!("stopping: finishing the current action, flushing state");
    let _ = stop_tx.send(true);
    let _ = monitor_task.await;
    let _ = diagnosis_task.await;
    let _ = executor_task.await;
    let _ = api_task.await;
    if let Some(task) = unix_task {
        let _ = task.await;
    }
    DaemonInfo::remove(&context.data_dir);
    sink.record(AuditEvent::note("operator-host stopped"));
    // Notifications of the last events go out before the process ends, within a bound.
    if !notifier.is_empty() {
        notifier.flush(Duration::from_secs(10)).await;
    }
    sink.flush().await?;
    if let Some(cluster) = sim {
        let _ = tikv_sim::control::remove_discovery(&context.data_dir);
        cluster.shutdown().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// `<data-dir>/daemon.json`: where a running daemon's API is, so the CLI talks to it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DaemonInfo {
    /// The API's base URL.
    pub api_url: String,
    /// The daemon's process id.
    pub pid: u32,
}

impl DaemonInfo {
    /// The file's path.
    pub fn path(data_dir: &std::path::Path) -> std::path::PathBuf {
        data_dir.join("daemon.json")
    }

    /// Writes the file atomically.
    pub fn write(&self, data_dir: &std::path::Path) -> Result<()> {
        let tmp = data_dir.join("daemon.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, Self::path(data_dir))?;
        Ok(())
    }

    /// Reads the file, if there is one.
    pub fn read(data_dir: &std::path::Path) -> Option<DaemonInfo> {
        serde_json::from_slice(&std::fs::read(Self::path(data_dir)).ok()?).ok()
    }

    /// Removes the file.
    pub fn remove(data_dir: &std::path::Path) {
        let _ = std::fs::remove_file(Self::path(data_dir));
    }
}

async fn wait_for_stop(duration: Option<u64>) {
    let timer = async {
        match duration {
            Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
            None => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let terminate = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
            _ = timer => {}
        }
    }
    #[cfg(not(unix))]
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = timer => {}
    }
}

async fn executor_loop(daemon: Arc<Daemon>, tick_ms: u64, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(Duration::from_millis(tick_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                if let Err(e) = daemon.executor.tick(now_ms()).await {
                    tracing::error!("executor: {e:#}");
                }
                if let Err(e) = daemon.workflows.tick(now_ms()).await {
                    tracing::error!("workflows: {e:#}");
                }
            }
            _ = stop.changed() => break,
        }
    }
}

async fn diagnosis_loop(
    daemon: Arc<Daemon>,
    mut events: tokio::sync::broadcast::Receiver<MonitorEvent>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = stop.changed() => break,
        };
        let id = match event {
            Ok(MonitorEvent::Opened(id) | MonitorEvent::Reopened(id)) => id,
            Ok(MonitorEvent::Resolved(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("the diagnosis worker missed {n} ticket events");
                continue;
            }
            Err(_) => break,
        };
        if let Err(e) = diagnose_and_propose(&daemon, &id).await {
            tracing::error!(ticket = %id, "diagnosis failed: {e:#}");
        }
    }
}

/// Diagnoses a ticket with the configured diagnoser (falling back to the plugin's rules), records
/// the diagnosis on the ticket and proposes its recommended actions; a proposal the executor
/// refuses is recorded on the ticket as dropped, with why.
async fn diagnose_and_propose(daemon: &Daemon, id: &str) -> Result<()> {
    let actions = daemon.executor.actions();
    let record = crate::diagnose::ticket::diagnose_ticket(
        &daemon.engine,
        &daemon.subject,
        &daemon.tickets,
        &actions,
        &daemon.sink,
        id,
    )
    .await?;
    let by = format!("diagnoser:{}", record.diagnoser.as_str());
    let mut refused = Vec::new();
    let mut proposed = Vec::new();
    for rec in &record.diagnosis.recommendations {
        let params = rec.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut proposal = Proposal::new(&rec.action, ProposalParams::Json(params), "diagnosis", &by);
        proposal.ticket = Some(id.to_owned());
        match daemon.executor.propose(proposal, now_ms()).await {
            Ok(action) => proposed.push(action.id),
            Err(e) => refused.push(serde_json::json!({"recommendation": rec, "reason": e.to_string()})),
        }
    }
    let mut ticket = daemon.tickets.require(id)?;
    if let Some(last) = ticket.diagnoses.last_mut() {
        last["proposed_actions"] = serde_json::json!(proposed);
        if let Some(list) = last["dropped_recommendations"].as_array_mut() {
            list.extend(refused);
        }
    }
    daemon.tickets.save(&ticket)?;
    Ok(())
}
