//! `operator-host workflows …`: start, approve, resume and follow workflows. While a daemon runs
//! these go through its API (redb admits one process); without one they open the data directory
//! directly, and the daemon's loop advances the runs once it starts.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;

use super::actions_cmd::whoami;
use super::{Context, fit, format_time, terminal_width};
use crate::actions::executor::Executor;
use crate::actions::store::ActionStore;
use crate::actions::workflow::{
    Definition, EngineSettings, StepState, WorkflowDef, WorkflowEngine, WorkflowRun, WorkflowStatus,
};
use crate::actions::workflow_store::WorkflowStore;
use crate::audit::{AuditSink, now_ms};
use crate::monitor::tickets::TicketStore;

/// Workflow commands.
#[derive(Debug, Subcommand)]
pub enum WorkflowsCommand {
    /// Lists workflow runs, newest first.
    List {
        /// Only runs in this state (`active` for those not finished, `all` for every one).
        #[arg(long, default_value = "all")]
        status: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Shows one run: its steps with their state, actions and timings, and its history.
    Show {
        /// Run id, e.g. W-000001.
        id: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Lists the workflows the plugins define, and those refused with their problems.
    Definitions {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Starts a workflow.
    Start {
        /// The workflow's name, e.g. drain-store.
        name: String,
        /// A parameter, name=value (repeat for each).
        #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// The ticket it serves.
        #[arg(long)]
        ticket: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Approves a workflow awaiting approval (one approval for every step).
    Approve {
        /// Run id.
        id: String,
        /// Why (recorded with the approval).
        #[arg(long)]
        reason: String,
        /// Who approves [default: $USER].
        #[arg(long)]
        by: Option<String>,
    },
    /// Rejects a workflow awaiting approval.
    Reject {
        /// Run id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
        /// Who rejects [default: $USER].
        #[arg(long)]
        by: Option<String>,
    },
    /// Resumes a failed workflow after a fix, or one the kill switch stopped once it is released.
    Resume {
        /// Run id.
        id: String,
    },
    /// Cancels a workflow and its pending actions (nothing is undone).
    Cancel {
        /// Run id.
        id: String,
        /// Why.
        #[arg(long, default_value = "cancelled by hand")]
        reason: String,
    },
}

/// A workflow engine (and its executor) over the data directory's store and the configured
/// plugins.
pub async fn direct_engine(context: &Context) -> Result<(Arc<WorkflowEngine>, AuditSink)> {
    let resolved = context.config()?;
    // One handle on the database for everything: redb admits one per process.
    let store = crate::store::Store::open(&context.data_dir)?;
    let sink = AuditSink::spawn(crate::audit::AuditLog::new(store.clone())?);
    let runtime = crate::runtime::Runtime::new(&context.data_dir, &resolved, sink.clone())?;
    let plugins = runtime.discover(&context.data_dir, &resolved);
    let subject = plugins.subject(&resolved.config.subject).map_err(|e| anyhow!(e))?;
    let tools = plugins.tools(&resolved.config.tools);
    let latest = Arc::new(RwLock::new(None));
    let executor = Executor::new(
        subject.clone(),
        tools.clone(),
        ActionStore::new(store.clone()),
        TicketStore::new(store.clone()),
        sink.clone(),
        resolved.config.actions.clone(),
        resolved.config.monitor.stale_after_ms,
        latest.clone(),
    )
    .await?;
    let settings = EngineSettings {
        approval: resolved.config.actions.approval.clone(),
        stale_after_ms: resolved.config.monitor.stale_after_ms,
        latest,
    };
    let engine =
        WorkflowEngine::new(Arc::new(executor), subject, tools, WorkflowStore::new(store), sink.clone(), settings)
            .await?;
    Ok((Arc::new(engine), sink))
}

fn parse_params(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in pairs {
        let Some((name, value)) = pair.split_once('=') else {
            bail!("--param `{pair}` is not name=value");
        };
        if out.insert(name.trim().to_owned(), value.trim().to_owned()).is_some() {
            bail!("--param `{name}` is given more than once");
        }
    }
    Ok(out)
}

fn print_definitions(defs: &[Definition], refused: &BTreeMap<String, Vec<String>>) {
    for d in defs {
        let params: Vec<String> = d.def.params.iter().map(|p| format!("{}=…", p.name)).collect();
        println!("{} ({}; approval: {}) {}", d.def.name, d.plugin, d.def.approval.as_str(), params.join(" "));
        if !d.def.description.is_empty() {
            println!("  {}", d.def.description);
        }
        for p in &d.def.params {
            println!("  param {}: {}", p.name, p.description);
        }
        for s in &d.def.steps {
            let wait = s
                .wait_for
                .as_ref()
                .map(|w| format!(", then wait for {} (≤ {} s)", w.condition, w.timeout_secs))
                .unwrap_or_default();
            println!("  step {}: {}{wait}", s.name, s.action);
        }
    }
    for (name, problems) in refused {
        println!("{name}: REFUSED");
        for p in problems {
            println!("  - {p}");
        }
    }
    if defs.is_empty() && refused.is_empty() {
        println!("no workflows are defined by the loaded plugins");
    }
}

fn print_started(run: &WorkflowRun, json: bool, daemon_runs: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(run)?);
        return Ok(());
    }
    println!("workflow {} started: {} {} — {}", run.id, run.definition, run.params_text(), run.status);
    if run.status == WorkflowStatus::AwaitingApproval {
        println!("approve every step at once with: operator-host workflows approve {} --reason \"…\"", run.id);
    }
    if daemon_runs {
        println!("the daemon runs its steps; follow with: operator-host workflows show {}", run.id);
    } else {
        println!(
            "the daemon (`operator-host run`) runs its steps; follow with: operator-host workflows show {}",
            run.id
        );
    }
    Ok(())
}

/// The run in a reply of the daemon's API.
fn reply_run(reply: &serde_json::Value) -> Result<WorkflowRun> {
    serde_json::from_value(reply["workflow"].clone()).map_err(|e| anyhow!("the daemon's reply is not a workflow: {e}"))
}

async fn workflows_via_api(client: super::client::ApiClient, command: WorkflowsCommand) -> Result<ExitCode> {
    let by = whoami();
    match command {
        WorkflowsCommand::List { status, json } => {
            let reply = client.get(&format!("workflows?status={status}")).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply["workflows"])?);
            } else {
                let list: Vec<WorkflowRun> = serde_json::from_value(reply["workflows"].clone())?;
                if list.is_empty() {
                    println!("no workflows ({status})");
                } else {
                    print_runs(&list);
                }
            }
        }
        WorkflowsCommand::Show { id, json } => {
            let reply = client.get(&format!("workflows/{id}")).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply["workflow"])?);
            } else {
                print!("{}", render_run(&reply_run(&reply)?));
            }
        }
        WorkflowsCommand::Definitions { json } => {
            let reply = client.get("workflows/definitions").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                #[derive(serde::Deserialize)]
                struct Listed {
                    plugin: String,
                    definition: WorkflowDef,
                }
                let listed: Vec<Listed> = serde_json::from_value(reply["definitions"].clone())?;
                let defs: Vec<Definition> =
                    listed.into_iter().map(|l| Definition { plugin: l.plugin, def: l.definition }).collect();
                let refused: BTreeMap<String, Vec<String>> = serde_json::from_value(reply["refused"].clone())?;
                print_definitions(&defs, &refused);
            }
        }
        WorkflowsCommand::Start { name, params, ticket, json } => {
            let params = parse_params(&params)?;
            let mut body = serde_json::json!({"name": name, "params": params, "by": by});
            if let Some(ticket) = ticket {
                body["ticket"] = ticket.into();
            }
            let reply = client.post("workflows", body).await?;
            print_started(&reply_run(&reply)?, json, true)?;
        }
        WorkflowsCommand::Approve { id, reason, by: who } => {
            let body = serde_json::json!({"reason": reason, "by": who.unwrap_or(by)});
            let run = reply_run(&client.post(&format!("workflows/{id}/approve"), body).await?)?;
            println!("workflow {} approved: {}", run.id, run.status);
        }
        WorkflowsCommand::Reject { id, reason, by: who } => {
            let body = serde_json::json!({"reason": reason, "by": who.unwrap_or(by)});
            let run = reply_run(&client.post(&format!("workflows/{id}/reject"), body).await?)?;
            println!("workflow {} rejected: {}", run.id, run.status);
        }
        WorkflowsCommand::Resume { id } => {
            let run = reply_run(&client.post(&format!("workflows/{id}/resume"), serde_json::json!({"by": by})).await?)?;
            println!("workflow {} resumed: {}", run.id, run.status);
        }
        WorkflowsCommand::Cancel { id, reason } => {
            let body = serde_json::json!({"reason": reason, "by": by});
            let run = reply_run(&client.post(&format!("workflows/{id}/cancel"), body).await?)?;
            println!("workflow {} cancelled", run.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs a `workflows` command: through the daemon's API while one runs, else on the data
/// directory directly.
pub async fn run_workflows(context: &Context, command: WorkflowsCommand) -> Result<ExitCode> {
    if let Some(client) = super::client::ApiClient::discover(&context.data_dir).await {
        return workflows_via_api(client, command).await;
    }
    match command {
        WorkflowsCommand::List { status, json } => {
            let store = WorkflowStore::new(crate::store::Store::open(&context.data_dir)?);
            let list: Vec<WorkflowRun> = match status.as_str() {
                "all" => store.list(None)?,
                "active" => store.list(None)?.into_iter().filter(|r| !r.status.is_settled()).collect(),
                other => store.list(Some(WorkflowStatus::parse(other).map_err(anyhow::Error::msg)?))?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no workflows ({status})");
            } else {
                print_runs(&list);
            }
        }
        WorkflowsCommand::Show { id, json } => {
            let store = WorkflowStore::new(crate::store::Store::open(&context.data_dir)?);
            let run = store.require(&id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&run)?);
            } else {
                print!("{}", render_run(&run));
            }
        }
        WorkflowsCommand::Definitions { json } => {
            let (engine, _) = direct_engine(context).await?;
            if json {
                let defs: Vec<_> = engine
                    .definitions()
                    .iter()
                    .map(|d| serde_json::json!({ "plugin": d.plugin, "definition": d.def }))
                    .collect();
                let value = serde_json::json!({ "definitions": defs, "refused": engine.refused() });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                let defs: Vec<Definition> = engine.definitions().into_iter().cloned().collect();
                print_definitions(&defs, engine.refused());
            }
        }
        WorkflowsCommand::Start { name, params, ticket, json } => {
            let params = parse_params(&params)?;
            let (engine, sink) = direct_engine(context).await?;
            let run = engine.start(&name, params, ticket, &whoami(), now_ms()).await?;
            sink.flush().await?;
            print_started(&run, json, false)?;
        }
        WorkflowsCommand::Approve { id, reason, by } => {
            let (engine, sink) = direct_engine(context).await?;
            let run = engine.approve(&id, &by.unwrap_or_else(whoami), &reason, now_ms()).await?;
            sink.flush().await?;
            println!("workflow {} approved: {}", run.id, run.status);
        }
        WorkflowsCommand::Reject { id, reason, by } => {
            let (engine, sink) = direct_engine(context).await?;
            let run = engine.reject(&id, &by.unwrap_or_else(whoami), &reason, now_ms()).await?;
            sink.flush().await?;
            println!("workflow {} rejected: {}", run.id, run.status);
        }
        WorkflowsCommand::Resume { id } => {
            let (engine, sink) = direct_engine(context).await?;
            let run = engine.resume(&id, &whoami(), now_ms()).await?;
            sink.flush().await?;
            println!("workflow {} resumed: {}", run.id, run.status);
        }
        WorkflowsCommand::Cancel { id, reason } => {
            let (engine, sink) = direct_engine(context).await?;
            let run = engine.cancel(&id, &whoami(), &reason, now_ms()).await?;
            sink.flush().await?;
            println!("workflow {} cancelled", run.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn current_step(run: &WorkflowRun) -> String {
    let active: Vec<String> = run
        .steps
        .iter()
        .filter(|s| !matches!(s.state, StepState::Pending | StepState::Done | StepState::Compensated))
        .map(|s| format!("{}: {}", s.name, s.state.describe()))
        .collect();
    if active.is_empty() {
        let done = run.steps.iter().filter(|s| s.state == StepState::Done).count();
        format!("{done}/{} done", run.steps.len())
    } else {
        active.join(", ")
    }
}

fn print_runs(list: &[WorkflowRun]) {
    let width = terminal_width();
    let steps_width = width.saturating_sub(9 + 1 + 18 + 1 + 18 + 1 + 16 + 1).max(16);
    println!("{:<9} {:<18} {:<18} {:<16} STEPS", "ID", "WORKFLOW", "STATUS", "PARAMS");
    for r in list {
        println!(
            "{:<9} {:<18} {:<18} {:<16} {}",
            r.id,
            fit(&r.definition, 18),
            r.status.as_str(),
            fit(&r.params_text(), 16),
            fit(&current_step(r), steps_width)
        );
    }
}

fn duration(from: Option<u64>, to: Option<u64>) -> String {
    match (from, to) {
        (Some(a), Some(b)) if b >= a => format!(" in {:.1} s", (b - a) as f64 / 1000.0),
        _ => String::new(),
    }
}

/// A run as readable text.
pub fn render_run(r: &WorkflowRun) -> String {
    let mut out = format!("{}  {} {}  [plugin {}]  {}\n", r.id, r.definition, r.params_text(), r.plugin, r.status);
    out.push_str(&format!(
        "  started by {} at {}; approval: {}\n",
        r.started_by,
        format_time(r.created_ms),
        r.approval_mode.as_str()
    ));
    if let Some(ticket) = &r.ticket {
        out.push_str(&format!("  for ticket {ticket}\n"));
    }
    match &r.approval {
        Some(d) => out.push_str(&format!(
            "  {} by {} at {}: {}\n",
            if d.approved { "approved" } else { "rejected" },
            d.by,
            format_time(d.at_ms),
            d.reason
        )),
        None if r.status == WorkflowStatus::AwaitingApproval => out.push_str("  awaiting approval\n"),
        None => {}
    }
    if let Some(failure) = &r.failure {
        out.push_str(&format!("  failure: {failure}\n"));
    }
    if let Some(at) = r.finished_ms {
        out.push_str(&format!("  finished at {}{}\n", format_time(at), duration(Some(r.created_ms), Some(at))));
    }
    out.push_str("Steps\n");
    for (i, s) in r.steps.iter().enumerate() {
        let after = if s.after.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = s.after.iter().filter_map(|&j| r.steps.get(j)).map(|d| d.name.as_str()).collect();
            format!(" (after {})", names.join(", "))
        };
        out.push_str(&format!("  {}. {}{after}: {}\n", i + 1, s.name, s.state.describe()));
        out.push_str(&format!("     action: {}\n", s.action.text()));
        if let Some(w) = &s.wait_for {
            out.push_str(&format!("     wait for: {} (timeout {} s)\n", w.text(), w.timeout_secs));
        }
        if let Some(c) = &s.compensation {
            out.push_str(&format!("     compensation: {}\n", c.text()));
        }
        if !s.actions.is_empty() {
            out.push_str(&format!("     actions: {}\n", s.actions.join(", ")));
        }
        if let Some(start) = s.started_ms {
            out.push_str(&format!("     started {}", format_time(start)));
            if let Some(end) = s.finished_ms.filter(|&e| e >= start) {
                out.push_str(&format!(", finished {}{}", format_time(end), duration(Some(start), Some(end))));
            }
            out.push('\n');
        }
        match &s.state {
            StepState::Waiting { since_ms } => out.push_str(&format!(
                "     waiting since {} (until {})\n",
                format_time(*since_ms),
                s.wait_for.as_ref().map(|w| format_time(since_ms + w.timeout_secs * 1000)).unwrap_or_default()
            )),
            StepState::Failed { reason } | StepState::CompensationFailed { reason } => {
                out.push_str(&format!("     why: {reason}\n"))
            }
            _ => {}
        }
        if let Some(note) = &s.note {
            out.push_str(&format!("     note: {note}\n"));
        }
    }
    out.push_str("History\n");
    for e in &r.history {
        let what = e.step.as_deref().map(|s| format!("step {s}: ")).unwrap_or_default();
        let from = e.from.as_deref().map(|f| format!("{f} → ")).unwrap_or_default();
        let reason = if e.reason.is_empty() { String::new() } else { format!(": {}", e.reason) };
        out.push_str(&format!("  {}  {what}{from}{} by {}{reason}\n", format_time(e.at_ms), e.to, e.actor));
    }
    out
}
