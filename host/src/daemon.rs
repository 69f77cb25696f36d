//! The daemon's pipeline, assembled in one place: the simulated cluster when asked for, the store
//! and its audit log, the plugins, the monitor, the diagnosis engine, the action executor and the
//! workflow engine, and the loops that connect them (monitor → diagnosis → proposals; executor and
//! workflow ticks).
//!
//! `operator-host run` serves it through the local API; `operator-host demo` draws it in a
//! terminal. Both run this pipeline, so what the demo shows is what the daemon does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::actions::executor::{Executor, Proposal, ProposalParams};
use crate::actions::ledger::Action;
use crate::actions::policy::Mode;
use crate::actions::store::ActionStore;
use crate::actions::workflow::{EngineSettings, WorkflowEngine};
use crate::actions::workflow_store::WorkflowStore;
use crate::api::Metrics;
use crate::audit::{AuditEvent, AuditLog, AuditSink, now_ms};
use crate::config::Config;
use crate::diagnose::DiagnosisEngine;
use crate::monitor::tickets::TicketStore;
use crate::monitor::{Monitor, MonitorEvent, SharedObservation};
use crate::notify::Notifier;
use crate::runtime::gate::EndpointConfig;
use crate::runtime::grants::GrantSpec;
use crate::runtime::{Plugin, PluginSet, Runtime};
use crate::store::Store;

/// The simulated cluster to start in-process.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Stores.
    pub stores: usize,
    /// Regions.
    pub regions: usize,
    /// Seed of every random choice of the simulation.
    pub seed: u64,
    /// Simulated seconds per real second.
    pub speed: f64,
}

/// A change of the safety mode made as the pipeline starts.
#[derive(Debug, Clone, PartialEq)]
pub struct StartMode {
    /// The mode.
    pub mode: Mode,
    /// Who asks for it (audited).
    pub by: String,
    /// Why (audited).
    pub reason: String,
}

/// How to build the pipeline, beyond the configuration.
#[derive(Debug, Clone, Default)]
pub struct PipelineOptions {
    /// Start the simulated cluster and point the endpoints it serves (and default grants) at it.
    pub sim: Option<SimOptions>,
    /// Set this mode before anything runs, when it differs from the persisted one.
    pub mode: Option<StartMode>,
    /// Divide the invariants' grace periods by this factor (at least 1). A simulated cluster that
    /// runs N times faster than real time shows in N times less wall-clock time what a grace period
    /// waits for; the demo divides by the simulation's speed so its chapters keep their proportions.
    pub grace_divisor: Option<f64>,
    /// The configuration file, named in the errors of a configuration that does not resolve.
    pub config_path: Option<PathBuf>,
}

/// The grants the subject plugin needs against the simulated cluster when the configuration names
/// none, as the simulator describes them.
pub fn sim_grants() -> Vec<GrantSpec> {
    tikv_sim::SimCluster::client_access()
        .into_iter()
        .map(|access| GrantSpec {
            endpoint: access.endpoint,
            url: access.url,
            methods: access.methods,
            paths: access.paths,
        })
        .collect()
}

/// Points the endpoint `name` at `urls`, creating it when the configuration has none (its token
/// and headers, when configured, are kept).
pub fn set_endpoint(config: &mut Config, name: &str, urls: Vec<String>) {
    let endpoint = config.endpoints.entry(name.to_owned()).or_insert_with(|| EndpointConfig {
        urls: vec![],
        bearer_token_env: None,
        headers: BTreeMap::new(),
    });
    endpoint.urls = urls;
}

/// What the diagnosis and executor loops share.
struct Workers {
    engine: Arc<DiagnosisEngine>,
    workflows: Arc<WorkflowEngine>,
    sink: AuditSink,
    tickets: TicketStore,
    executor: Arc<Executor>,
    subject: Arc<Plugin>,
    metrics: Arc<Metrics>,
}

/// The assembled pipeline. Build it, read what it is made of (for a startup summary or an API),
/// [`Pipeline::start`] its loops, [`Pipeline::stop`] them, and [`Pipeline::finish`] to flush.
pub struct Pipeline {
    /// The configuration as applied (the simulated cluster's endpoint and grants included).
    pub config: Config,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The simulated cluster, when one was asked for.
    pub sim: Option<Arc<tikv_sim::SimCluster>>,
    /// The audit log.
    pub log: AuditLog,
    /// The audit sink every component records through.
    pub sink: AuditSink,
    /// The Prometheus metrics, fed by the sink and the monitor.
    pub metrics: Arc<Metrics>,
    /// Webhook notifications (empty when none are configured).
    pub notifier: Notifier,
    /// The plugins found, loaded and refused.
    pub plugins: PluginSet,
    /// The subject plugin.
    pub subject: Arc<Plugin>,
    /// The tools plugin, when configured and loaded.
    pub tools: Option<Arc<Plugin>>,
    /// The diagnosis engine.
    pub engine: Arc<DiagnosisEngine>,
    /// Tickets.
    pub tickets: TicketStore,
    /// The monitor's latest observation.
    pub latest: SharedObservation,
    /// The action executor.
    pub executor: Arc<Executor>,
    /// The workflow engine.
    pub workflows: Arc<WorkflowEngine>,
    /// Actions left executing by a previous run and reconciled at build time.
    pub recovered: Vec<Action>,
    monitor: Option<Monitor>,
    events: Option<broadcast::Receiver<MonitorEvent>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    // The engine the plugins were compiled with; kept for as long as they run.
    _runtime: Runtime,
}

impl Pipeline {
    /// Builds everything over `data_dir` from `config` and `options`, reconciles actions a previous
    /// run left executing, and records the start in the audit log. Nothing runs until
    /// [`Pipeline::start`].
    pub async fn build(data_dir: &Path, mut config: Config, options: PipelineOptions) -> Result<Pipeline> {
        let sim = match &options.sim {
            Some(spec) => Some(start_sim(data_dir, &mut config, spec).await?),
            None => None,
        };
        let resolved = match &options.config_path {
            Some(path) => config.resolve().with_context(|| format!("in {}", path.display()))?,
            None => config.resolve()?,
        };

        let store = Store::open(data_dir)?;
        let log = AuditLog::new(store.clone())?;
        let sink = AuditSink::spawn(log.clone());
        let metrics = Arc::new(Metrics::new());
        metrics.attach(&sink);
        let notifier = Notifier::new(&config.notifications)?;
        if !notifier.is_empty() {
            notifier.attach(&sink);
        }
        let runtime = Runtime::new(data_dir, &resolved, sink.clone())?;
        let plugins = runtime.discover(data_dir, &resolved);
        for refused in &plugins.refused {
            tracing::warn!(plugin = %refused.name, "plugin refused: {}", refused.reason);
        }
        let subject = plugins.subject(&config.subject).map_err(|e| anyhow!(e))?;
        let tools = plugins.tools(&config.tools);

        let engine = Arc::new(DiagnosisEngine::new(config.diagnosis.clone()).map_err(|e| anyhow!(e))?);
        let tickets = TicketStore::new(store.clone());
        let mut monitor = Monitor::new(subject.clone(), tickets.clone(), sink.clone(), config.monitor.clone()).await?;
        if let Some(divisor) = options.grace_divisor {
            monitor.divide_grace(divisor);
        }
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
            WorkflowEngine::new(
                executor.clone(),
                subject.clone(),
                tools.clone(),
                WorkflowStore::new(store.clone()),
                sink.clone(),
                EngineSettings {
                    approval: config.actions.approval.clone(),
                    stale_after_ms: config.monitor.stale_after_ms,
                    latest: latest.clone(),
                },
            )
            .await?,
        );
        if let Some(start) = &options.mode
            && executor.safety().mode != start.mode
        {
            executor.set_mode(start.mode, &start.by, &start.reason, now_ms()).await?;
        }
        sink.record(AuditEvent::note(format!(
            "operator-host {} started (pid {})",
            env!("CARGO_PKG_VERSION"),
            std::process::id()
        )));
        let recovered = executor.recover(now_ms()).await?;
        let (stop, _) = watch::channel(false);
        Ok(Pipeline {
            config,
            data_dir: data_dir.to_owned(),
            sim,
            log,
            sink,
            metrics,
            notifier,
            plugins,
            subject,
            tools,
            engine,
            tickets,
            latest,
            executor,
            workflows,
            recovered,
            monitor: Some(monitor),
            events: Some(events),
            stop,
            tasks: Vec::new(),
            _runtime: runtime,
        })
    }

    /// A receiver that turns `true` when the pipeline stops, for services that should stop with it.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Starts the monitor, diagnosis and executor loops (once; later calls do nothing).
    pub fn start(&mut self) {
        let (Some(monitor), Some(events)) = (self.monitor.take(), self.events.take()) else {
            return;
        };
        let workers = Arc::new(Workers {
            engine: self.engine.clone(),
            workflows: self.workflows.clone(),
            sink: self.sink.clone(),
            tickets: self.tickets.clone(),
            executor: self.executor.clone(),
            subject: self.subject.clone(),
            metrics: self.metrics.clone(),
        });
        let stop = self.stop.subscribe();
        self.tasks.push(tokio::spawn(monitor.run(stop.clone())));
        self.tasks.push(tokio::spawn(diagnosis_loop(workers.clone(), events, stop.clone())));
        self.tasks.push(tokio::spawn(executor_loop(workers, self.config.actions.tick_ms, stop)));
    }

    /// Stops the loops: the executor finishes the call in flight, the monitor its cycle. Services
    /// watching [`Pipeline::stop_signal`] stop too.
    pub async fn stop(&mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }

    /// Stops the loops if they run, records the stop, delivers pending notifications (within a
    /// bound), flushes the audit log and shuts the simulated cluster down.
    pub async fn finish(mut self) -> Result<()> {
        self.stop().await;
        self.sink.record(AuditEvent::note("operator-host stopped"));
        // Notifications of the last events go out before the process ends, within a bound.
        if !self.notifier.is_empty() {
            self.notifier.flush(Duration::from_secs(10)).await;
        }
        self.sink.flush().await?;
        if let Some(cluster) = self.sim.take() {
            let _ = tikv_sim::control::remove_discovery(&self.data_dir);
            cluster.shutdown().await;
        }
        Ok(())
    }
}

/// Starts the simulated cluster, points the endpoints it serves at it, grants the subject plugin
/// what it needs there unless the configuration grants something, and writes the control API's
/// discovery file so that `operator-host sim fault …` finds it.
async fn start_sim(data_dir: &Path, config: &mut Config, options: &SimOptions) -> Result<Arc<tikv_sim::SimCluster>> {
    let spec = tikv_sim::ClusterSpec {
        stores: options.stores,
        regions: options.regions,
        seed: options.seed,
        ..tikv_sim::ClusterSpec::default()
    };
    let cluster = tikv_sim::SimCluster::start(spec, options.speed).await?;
    for endpoint in cluster.endpoints() {
        set_endpoint(config, &endpoint.name, endpoint.urls);
    }
    if config.subject.is_empty() {
        // The simulator knows which subject plugin operates it, as it knows its endpoints.
        config.subject = tikv_sim::SUBJECT_PLUGIN.to_owned();
    }
    let plugin = config.plugins.entry(config.subject.clone()).or_default();
    if plugin.grants.is_empty() {
        plugin.grants = sim_grants();
    }
    std::fs::create_dir_all(data_dir)?;
    tikv_sim::control::write_discovery(data_dir, &cluster.discovery_info())?;
    Ok(cluster)
}

async fn executor_loop(workers: Arc<Workers>, tick_ms: u64, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(Duration::from_millis(tick_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                if let Err(e) = workers.executor.tick(now_ms()).await {
                    tracing::error!("executor: {e:#}");
                }
                if let Err(e) = workers.workflows.tick(now_ms()).await {
                    tracing::error!("workflows: {e:#}");
                }
            }
            _ = stop.changed() => break,
        }
    }
}

async fn diagnosis_loop(
    workers: Arc<Workers>,
    mut events: broadcast::Receiver<MonitorEvent>,
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
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("the diagnosis worker missed {n} ticket events");
                continue;
            }
            Err(_) => break,
        };
        if let Err(e) = diagnose_and_propose(&workers, &id).await {
            tracing::error!(ticket = %id, "diagnosis failed: {e:#}");
        }
    }
}

/// Diagnoses a ticket with the configured diagnoser (falling back to the plugin's rules), records
/// the diagnosis on the ticket and proposes its recommended actions; a proposal the executor
/// refuses is recorded on the ticket as dropped, with why.
async fn diagnose_and_propose(workers: &Workers, id: &str) -> Result<()> {
    let actions = workers.executor.actions();
    let started = std::time::Instant::now();
    let record = crate::diagnose::ticket::diagnose_ticket(
        &workers.engine,
        &workers.subject,
        &workers.tickets,
        &actions,
        &workers.sink,
        id,
    )
    .await?;
    // Every input token counts, cached ones included: they are what the diagnosis read.
    let usage = &record.usage;
    let input_tokens = usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens;
    workers.metrics.observe_diagnosis(
        record.diagnoser.as_str(),
        started.elapsed().as_secs_f64(),
        input_tokens,
        usage.output_tokens,
    );
    let by = format!("diagnoser:{}", record.diagnoser.as_str());
    let mut refused = Vec::new();
    let mut proposed = Vec::new();
    for rec in &record.diagnosis.recommendations {
        let params = rec.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut proposal = Proposal::new(&rec.action, ProposalParams::Json(params), "diagnosis", &by);
        proposal.ticket = Some(id.to_owned());
        match workers.executor.propose(proposal, now_ms()).await {
            Ok(action) => proposed.push(action.id),
            Err(e) => refused.push(serde_json::json!({"recommendation": rec, "reason": e.to_string()})),
        }
    }
    let mut ticket = workers.tickets.require(id)?;
    if let Some(last) = ticket.diagnoses.last_mut() {
        last["proposed_actions"] = serde_json::json!(proposed);
        if let Some(list) = last["dropped_recommendations"].as_array_mut() {
            list.extend(refused);
        }
    }
    workers.tickets.save(&ticket)?;
    Ok(())
}
