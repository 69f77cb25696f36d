//! `operator-host demo`: a terminal UI over the daemon's pipeline ([`crate::daemon::Pipeline`])
//! running against the in-process simulated cluster. It walks through chapters — a healthy
//! cluster, a fault picked from the S1–S12 menu and injected after a countdown, its detection,
//! diagnosis, the proposed action, a human's approval, the execution against the simulator's
//! API, its verification and the recovery — showing the pipeline's real state at each step.
//!
//! [`app`] holds the state and the chapter logic (pure), [`ui`] draws it with ratatui, and this
//! module runs the loop: keys from crossterm, snapshots of the pipeline, effects carried out.

pub mod app;
pub mod scenarios;
pub mod ui;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;

use crate::actions::policy::{ApprovalRule, Mode};
use crate::audit::{AuditEvent, AuditSink, CallOutcome, Decision, now_ms};
use crate::config::Config;
use crate::daemon::{Pipeline, PipelineOptions, SimOptions, StartMode};
use crate::runtime::CallContext;
use crate::runtime::bindings::types;
use app::{App, AuditLine, Effect, Entity, Health, Key, World};

/// How often the screen is refreshed from the pipeline.
const REFRESH: Duration = Duration::from_millis(200);
/// How often the workload is sampled.
const SAMPLE_MS: u64 = 1_000;
/// Workload samples kept (the sparkline shows as many as fit).
const SAMPLES: usize = 240;
/// Audit lines kept for the stream.
const AUDIT_LINES: usize = 100;

/// What `operator-host demo` was asked for.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The data directory named on the command line; none: a fresh temporary one, removed at the end.
    pub data_dir: Option<PathBuf>,
    /// The configuration file, and whether it was named explicitly (then it must exist).
    pub config: Option<(PathBuf, bool)>,
    /// Simulated seconds per real second.
    pub speed: f64,
    /// Stores of the simulated cluster.
    pub stores: usize,
    /// Regions of the simulated cluster.
    pub regions: usize,
    /// Seed of the simulation.
    pub seed: u64,
    /// The diagnoser: auto, claude, openai or rules.
    pub diagnoser: String,
}

/// The demo's changes to the configuration, so that a chapter takes seconds and every action
/// waits for the human in front of it: a monitor cycle every second, a short settling time, no
/// cooldown between actions on one entity, and approval required whatever the risk.
pub fn demo_config(config: &mut Config, diagnoser: &str) -> Result<()> {
    config.monitor.interval_ms = 1_000;
    config.monitor.settle_secs = 5;
    config.monitor.stale_after_ms = config.monitor.stale_after_ms.max(config.monitor.interval_ms);
    config.actions.tick_ms = 250;
    config.actions.blast_radius.entity_cooldown_secs = 0;
    let approval = &mut config.actions.approval;
    approval.low = ApprovalRule::Required;
    approval.medium = ApprovalRule::Required;
    approval.high = ApprovalRule::Required;
    approval.overrides.clear();
    config.diagnosis.diagnoser = diagnoser.parse().map_err(|e: String| anyhow!(e))?;
    Ok(())
}

/// Runs the demo until `q`.
pub async fn run(options: DemoOptions) -> Result<ExitCode> {
    let temp = match &options.data_dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("operator-demo-").tempdir()?),
    };
    let data_dir = match (&options.data_dir, &temp) {
        (Some(dir), _) => dir.clone(),
        (None, Some(temp)) => temp.path().to_owned(),
        (None, None) => unreachable!("a temporary directory is made when none is named"),
    };
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    init_logging(&data_dir.join("demo.log"));
    let (config_path, explicit) = options.config.clone().unwrap_or_else(|| (data_dir.join("operator.toml"), false));
    let mut config = Config::load(&config_path, explicit)?;
    demo_config(&mut config, &options.diagnoser)?;

    println!(
        "starting the simulated cluster ({} stores, {} regions, {}× speed) and the operator in {} …",
        options.stores,
        options.regions,
        options.speed,
        data_dir.display()
    );
    let sim = SimOptions { stores: options.stores, regions: options.regions, seed: options.seed, speed: options.speed };
    let mut pipeline = Pipeline::build(
        &data_dir,
        config,
        PipelineOptions {
            sim: Some(sim),
            mode: Some(StartMode {
                mode: Mode::Execute,
                by: "demo".into(),
                reason: "the demo executes the actions its user approves".into(),
            }),
            grace_divisor: Some(options.speed),
            config_path: Some(config_path),
        },
    )
    .await?;
    let feed = AuditFeed::attach(&pipeline.sink);
    pipeline.start();

    let result = run_terminal(&pipeline, &feed, options.speed).await;
    pipeline.finish().await?;
    result?;
    match temp {
        Some(temp) => {
            let path = temp.path().display().to_string();
            drop(temp);
            println!("demo stopped; its temporary data directory {path} was removed");
        }
        None => println!(
            "demo stopped; its tickets, actions and audit log stay in {} (try `operator-host --data-dir {} audit verify`)",
            data_dir.display(),
            data_dir.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Logs go to a file: the terminal belongs to the UI.
fn init_logging(path: &std::path::Path) {
    let Ok(file) = std::fs::OpenOptions::new().create(true).append(true).open(path) else { return };
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPERATOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(Mutex::new(file)).try_init();
}

/// Restores the terminal however the UI ends (an error included; a panic is handled by
/// ratatui's hook).
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Reads keys on a thread of its own (crossterm's reads block) and hands them to the loop.
struct KeyReader {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KeyReader {
    fn spawn(tx: mpsc::UnboundedSender<Key>) -> KeyReader {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                // Polling with a timeout lets the thread notice the stop flag.
                match event::poll(Duration::from_millis(100)) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(_) => break,
                }
                let Ok(Event::Key(key)) = event::read() else { continue };
                if key.kind != KeyEventKind::Press {
                    continue;
                }
                let mapped = match key.code {
                    KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Key::Interrupt,
                    KeyCode::Char(c) => Key::Char(c.to_ascii_lowercase()),
                    KeyCode::Enter => Key::Enter,
                    KeyCode::Esc => Key::Esc,
                    KeyCode::Up => Key::Up,
                    KeyCode::Down => Key::Down,
                    KeyCode::Right => Key::Right,
                    _ => continue,
                };
                if tx.send(mapped).is_err() {
                    break;
                }
            }
        });
        KeyReader { stop, thread: Some(thread) }
    }
}

impl Drop for KeyReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn run_terminal(pipeline: &Pipeline, feed: &AuditFeed, speed: f64) -> Result<()> {
    let cluster = pipeline.sim.clone().ok_or_else(|| anyhow!("the demo needs its simulated cluster"))?;
    let stores: Vec<u64> = cluster.sim().stores.iter().map(|s| s.id).collect();
    let mut app = App::new(scenarios::menu(&stores));
    let mut world = World { speed, ..World::default() };
    let mut summarized_at = None;
    let mut sampled_at = 0;

    let mut terminal = ratatui::try_init().context("cannot take over the terminal")?;
    let _guard = TerminalGuard;
    let (tx, mut keys) = mpsc::unbounded_channel();
    let _reader = KeyReader::spawn(tx);
    let mut refresh = tokio::time::interval(REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let effects = tokio::select! {
            key = keys.recv() => match key {
                Some(key) => app.on_key(key, &world, now_ms()),
                None => vec![Effect::Quit],
            },
            _ = refresh.tick() => {
                let now = now_ms();
                if now >= sampled_at + SAMPLE_MS {
                    sampled_at = now;
                    world.ops.push(ops_per_sec(&cluster));
                    if world.ops.len() > SAMPLES {
                        world.ops.remove(0);
                    }
                }
                refresh_world(pipeline, &cluster, feed, &mut world, &mut summarized_at).await;
                app.observe(&world, now);
                app.tick(now)
            }
        };
        for effect in effects {
            match effect {
                Effect::Quit => {
                    terminal.draw(|frame| {
                        ui::draw(frame, &app, &world, now_ms());
                        let area = frame.area();
                        let last = ratatui::layout::Rect { y: area.bottom().saturating_sub(1), height: 1, ..area };
                        frame.render_widget(
                            ratatui::widgets::Paragraph::new(
                                " stopping: finishing the current action, flushing state…",
                            )
                            .style(ratatui::style::Style::new().add_modifier(ratatui::style::Modifier::REVERSED)),
                            last,
                        );
                    })?;
                    return Ok(());
                }
                Effect::Inject(i) => {
                    let fault = app.scenarios[i].fault.clone();
                    let result = cluster.inject(fault).await.map(|_| ()).map_err(|e| format!("{e:#}"));
                    app.injected(result, now_ms());
                }
                Effect::ClearFaults => {
                    if let Err(e) = cluster.clear_all().await {
                        app.notice = Some((format!("clearing the faults failed: {e:#}"), now_ms()));
                    }
                }
                Effect::Approve(id) => {
                    let reason = "approved with the a key in the demo";
                    if let Err(e) = pipeline.executor.approve(&id, "demo", reason, now_ms()).await {
                        app.notice = Some((format!("approving {id} failed: {e:#}"), now_ms()));
                    }
                }
                Effect::Reject(id) => {
                    let reason = "rejected with the r key in the demo";
                    if let Err(e) = pipeline.executor.reject(&id, "demo", reason, now_ms()).await {
                        app.notice = Some((format!("rejecting {id} failed: {e:#}"), now_ms()));
                    }
                }
            }
        }
        terminal.draw(|frame| ui::draw(frame, &app, &world, now_ms()))?;
    }
}

/// Requests per simulated second over the whole cluster: every gRPC type on every store, from the
/// simulator's store loads (which follow its per-region read and write rates).
fn ops_per_sec(cluster: &tikv_sim::SimCluster) -> u64 {
    let sim = cluster.sim();
    sim.telemetry.loads().iter().map(|load| tikv_sim::stats::request_rates(load).iter().sum::<f64>()).sum::<f64>()
        as u64
}

async fn refresh_world(
    pipeline: &Pipeline,
    cluster: &tikv_sim::SimCluster,
    feed: &AuditFeed,
    world: &mut World,
    summarized_at: &mut Option<u64>,
) {
    if let Ok(mut tickets) = pipeline.tickets.list(None) {
        tickets.sort_by(|a, b| b.id.cmp(&a.id));
        world.tickets = tickets;
    }
    world.actions = pipeline.executor.actions();
    let safety = pipeline.executor.safety();
    world.mode = safety.mode.as_str().to_owned();
    world.kill_switch = safety.kill_switch;
    {
        let sim = cluster.sim();
        world.sim_secs = sim.now_ms / 1000;
        world.faults = sim.active_faults().iter().map(|f| f.fault.kind().to_owned()).collect();
    }
    (world.audit, world.audit_total) = feed.snapshot();
    // The plugin summarises each new observation once.
    let latest = pipeline.latest.read().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(latest) = latest
        && *summarized_at != Some(latest.at_ms)
        && let Some(subject) = pipeline.subject.as_subject()
        && let Ok(entities) = subject.summarize(&CallContext::default(), &latest.observation).await
    {
        *summarized_at = Some(latest.at_ms);
        world.observed_at_ms = Some(latest.at_ms);
        world.entities = entities.into_iter().map(entity).collect();
    }
}

fn entity(e: types::EntitySummary) -> Entity {
    Entity {
        kind: e.kind,
        id: e.id,
        health: match e.health {
            types::Health::Healthy => Health::Healthy,
            types::Health::Degraded => Health::Degraded,
            types::Health::Down => Health::Down,
            types::Health::Unknown => Health::Unknown,
        },
        figures: e.figures.into_iter().map(|f| (f.name, f.value, f.unit)).collect(),
        note: e.note,
    }
}

/// The audit stream as the sink records it: every record counted, the routine ones (successful
/// observe/check/summarize calls and their reads) left out of the lines shown.
struct AuditFeed {
    inner: Arc<Mutex<(VecDeque<AuditLine>, u64)>>,
}

impl AuditFeed {
    fn attach(sink: &AuditSink) -> AuditFeed {
        let inner: Arc<Mutex<(VecDeque<AuditLine>, u64)>> = Arc::default();
        let shared = inner.clone();
        sink.observe(Arc::new(move |event: &AuditEvent| {
            let mut guard = shared.lock().unwrap_or_else(|e| e.into_inner());
            guard.1 += 1;
            if is_routine(event) {
                return;
            }
            let prefix = event.plugin().map(|p| format!("{p} ")).unwrap_or_default();
            let line = AuditLine {
                at_ms: now_ms(),
                kind: event.kind().to_owned(),
                text: format!("{prefix}{}", crate::cli::audit_summary(event)),
            };
            guard.0.push_back(line);
            if guard.0.len() > AUDIT_LINES {
                guard.0.pop_front();
            }
        }));
        AuditFeed { inner }
    }

    fn snapshot(&self) -> (Vec<AuditLine>, u64) {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (guard.0.iter().cloned().collect(), guard.1)
    }
}

/// Whether an audit event is the monitor's routine: a successful read-only call or a successful read.
pub fn is_routine(event: &AuditEvent) -> bool {
    match event {
        AuditEvent::PluginCall { export, outcome, .. } => {
            matches!(outcome, CallOutcome::Ok) && matches!(export.as_str(), "observe" | "check" | "summarize" | "info")
        }
        AuditEvent::Capability { method, decision, status, .. } => {
            matches!(decision, Decision::Allowed { .. })
                && matches!(method.as_str(), "GET" | "HEAD")
                && status.is_some_and(|s| s < 400)
        }
        _ => false,
    }
}
