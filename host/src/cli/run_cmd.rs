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
use crate::monitor::tickets::{SnapshotKind, TicketStore};
use crate::monitor::{Monitor, MonitorEvent};
use crate::runtime::gate::EndpointConfig;
use crate::runtime::grants::GrantSpec;
use crate::runtime::{CallContext, Plugin, Runtime};
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
    let resolved = config.resolve().with_context(|| format!("in {}", context.config_path.display()))?;

    let store = Store::open(&context.data_dir)?;
    let log = AuditLog::new(store.clone())?;
    let sink = AuditSink::spawn(log.clone());
    let runtime = Runtime::new(&context.data_dir, &resolved, sink.clone())?;
    let plugins = runtime.discover(&context.data_dir, &resolved);
    for refused in &plugins.refused {
        tracing::warn!(plugin = %refused.name, "plugin refused: {}", refused.reason);
    }
    let subject = plugins.get(&config.subject).cloned().ok_or_else(|| {
        anyhow!("the subject plugin `{}` is not loaded (see `operator-host plugins list`)", config.subject)
    })?;
    let tools = (!config.tools.is_empty()).then(|| plugins.get(&config.tools).cloned()).flatten();

    let tickets = TicketStore::new(store.clone());
    let monitor = Monitor::new(subject.clone(), tickets.clone(), sink.clone(), config.monitor.clone()).await?;
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
        "mode: {}{}; every {} ms; diagnosis: rules",
        safety.mode.as_str(),
        if safety.kill_switch { " (KILL SWITCH ON)" } else { "" },
        config.monitor.interval_ms
    );
    if !recovered.is_empty() {
        println!("reconciled {} action(s) left executing by the previous run", recovered.len());
    }

    let daemon = Arc::new(Daemon {
        sink: sink.clone(),
        tickets: tickets.clone(),
        executor: executor.clone(),
        subject: subject.clone(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let monitor_task = tokio::spawn(monitor.run(stop_rx.clone()));
    let diagnosis_task = tokio::spawn(diagnosis_loop(daemon.clone(), events, stop_rx.clone()));
    let executor_task = tokio::spawn(executor_loop(daemon.clone(), config.actions.tick_ms, stop_rx.clone()));

    wait_for_stop(args.duration).await;
    println!("stopping: finishing the current action, flushing state");
    let _ = stop_tx.send(true);
    let _ = monitor_task.await;
    let _ = diagnosis_task.await;
    let _ = executor_task.await;
    sink.record(AuditEvent::note("operator-host stopped"));
    sink.flush().await?;
    if let Some(cluster) = sim {
        let _ = tikv_sim::control::remove_discovery(&context.data_dir);
        cluster.shutdown().await;
    }
    Ok(ExitCode::SUCCESS)
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

/// Diagnoses a ticket with the subject plugin's rules, records the diagnosis on the ticket and
/// proposes its recommended actions (each validated; a refused one is recorded as dropped).
async fn diagnose_and_propose(daemon: &Daemon, id: &str) -> Result<()> {
    let ticket = daemon.tickets.require(id)?;
    let observation =
        daemon.tickets.snapshot(id, SnapshotKind::Latest)?.ok_or_else(|| anyhow!("ticket {id} has no observation"))?;
    let wit_ticket = crate::runtime::bindings::types::Ticket {
        id: ticket.id.clone(),
        invariant: ticket.invariant.clone(),
        entity: ticket.entity.clone(),
        severity: match ticket.severity.as_str() {
            "critical" => crate::runtime::bindings::types::Severity::Critical,
            "info" => crate::runtime::bindings::types::Severity::Info,
            _ => crate::runtime::bindings::types::Severity::Warning,
        },
        message: ticket.message.clone(),
        evidence: ticket
            .evidence
            .iter()
            .map(|e| crate::runtime::bindings::types::Evidence { label: e.label.clone(), value: e.value.clone() })
            .collect(),
        opened_at_ms: ticket.opened_at_ms,
        last_seen_ms: ticket.last_seen_ms,
        occurrences: ticket.occurrences,
    };
    let subject = daemon.subject.as_subject().ok_or_else(|| anyhow!("no subject plugin"))?;
    let started = std::time::Instant::now();
    let context = CallContext { ticket: Some(id.to_owned()) };
    let diagnosis = subject.diagnose(&context, &wit_ticket, &observation.into()).await?.map_err(|e| anyhow!(e))?;
    let mut dropped = Vec::new();
    let mut proposed = Vec::new();
    for rec in &diagnosis.recommendations {
        let params = rec.params.iter().map(|p| (p.name.clone(), crate::actions::params::to_json(&p.value))).collect();
        let mut proposal = Proposal::new(&rec.action, ProposalParams::Json(params), "diagnosis", "diagnoser:rules");
        proposal.ticket = Some(id.to_owned());
        match daemon.executor.propose(proposal, now_ms()).await {
            Ok(action) => proposed.push(action.id),
            Err(e) => {
                dropped.push(serde_json::json!({"recommendation": {"action": rec.action}, "reason": e.to_string()}))
            }
        }
    }
    let record = serde_json::json!({
        "diagnoser": "rules",
        "diagnosis": diagnosis_to_json(&diagnosis),
        "latency_ms": started.elapsed().as_millis() as u64,
        "dropped_recommendations": dropped,
        "proposed_actions": proposed,
    });
    let mut ticket = daemon.tickets.require(id)?;
    ticket.diagnoses.push(record);
    daemon.sink.record(AuditEvent::note(format!("ticket {id} diagnosed by rules: {}", diagnosis.summary)));
    daemon.tickets.save(&ticket)?;
    Ok(())
}

/// A plugin diagnosis as stored on a ticket.
fn diagnosis_to_json(d: &crate::runtime::bindings::types::Diagnosis) -> serde_json::Value {
    use crate::runtime::bindings::types::Urgency;
    serde_json::json!({
        "summary": d.summary,
        "timeline": d.timeline,
        "affected": d.affected,
        "root_cause": d.root_cause,
        "confidence": d.confidence,
        "evidence": d.evidence,
        "alternatives": d.alternatives.iter().map(|a| serde_json::json!({
            "hypothesis": a.hypothesis, "supporting": a.supporting,
            "contradicting": a.contradicting, "conclusion": a.conclusion,
        })).collect::<Vec<_>>(),
        "recommendations": d.recommendations.iter().map(|r| serde_json::json!({
            "action": r.action,
            "params": r.params.iter().map(|p| (p.name.clone(), crate::actions::params::to_json(&p.value))).collect::<serde_json::Map<_, _>>(),
            "reason": r.reason,
            "urgency": match r.urgency { Urgency::Immediate => "immediate", Urgency::Soon => "soon", Urgency::WhenConvenient => "when-convenient" },
            "expected_outcome": r.expected_outcome,
            "risks": r.risks,
        })).collect::<Vec<_>>(),
        "wait_reason": d.wait_reason,
    })
}
