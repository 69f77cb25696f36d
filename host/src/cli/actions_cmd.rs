//! `operator-host actions …` and `operator-host safety …`: proposals, approvals and the safety
//! switches. Without a running daemon these open the data directory directly.

use std::process::ExitCode;
use std::sync::{Arc, RwLock};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Subcommand;

use super::{Context, fit, format_time, terminal_width};
use crate::actions::executor::{Executor, Proposal, ProposalParams};
use crate::actions::ledger::{Action, ActionStatus, Verification};
use crate::actions::policy::Mode;
use crate::actions::store::ActionStore;
use crate::audit::{AuditSink, now_ms};
use crate::monitor::tickets::TicketStore;

/// Action commands.
#[derive(Debug, Subcommand)]
pub enum ActionsCommand {
    /// Lists actions, newest first.
    List {
        /// Only actions in this state (or `active` for those not final, `all` for every one).
        #[arg(long, default_value = "active")]
        status: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Shows one action with its history and why it waits.
    Show {
        /// Action id, e.g. A-000007.
        id: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Proposes an action from a plugin's catalogue; it runs once its gates pass.
    Propose {
        /// The action name, e.g. transfer-leader.
        name: String,
        /// A parameter, name=value (repeat for each).
        #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// The ticket it serves.
        #[arg(long)]
        ticket: Option<String>,
        /// Run no earlier than this time (RFC 3339, e.g. 2026-11-27T22:00:00Z).
        #[arg(long, conflicts_with = "in")]
        at: Option<String>,
        /// Run no earlier than this long from now (e.g. 10m, 2h).
        #[arg(long = "in", value_name = "DURATION")]
        r#in: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Approves an action awaiting approval.
    Approve {
        /// Action id.
        id: String,
        /// Why (recorded with the approval).
        #[arg(long)]
        reason: String,
        /// Who approves [default: $USER].
        #[arg(long)]
        by: Option<String>,
    },
    /// Rejects an action awaiting approval.
    Reject {
        /// Action id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
        /// Who rejects [default: $USER].
        #[arg(long)]
        by: Option<String>,
    },
    /// Cancels an action that has not started.
    Cancel {
        /// Action id.
        id: String,
        /// Why.
        #[arg(long, default_value = "cancelled by hand")]
        reason: String,
    },
}

/// Safety commands.
#[derive(Debug, Subcommand)]
pub enum SafetyCommand {
    /// The mode and the kill switch.
    Status {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Switches between observe (nothing executes) and execute.
    Mode {
        /// observe or execute.
        #[arg(value_parser = ["observe", "execute"])]
        mode: String,
        /// Why.
        #[arg(long, default_value = "set by hand")]
        reason: String,
    },
    /// The kill switch: cancels every pending action, stops workflows, switches to observe.
    KillSwitch {
        /// Why.
        #[arg(long, default_value = "kill switch pulled by hand")]
        reason: String,
    },
    /// Lifts the kill switch (the mode stays observe).
    Release {
        /// Why.
        #[arg(long, default_value = "released by hand")]
        reason: String,
    },
}

/// The user running the command.
pub fn whoami() -> String {
    std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "cli".into())
}

/// An executor over the data directory's store and the configured subject and tools plugins.
pub async fn direct_executor(context: &Context) -> Result<(Arc<Executor>, AuditSink)> {
    let resolved = context.config()?;
    // One handle on the database for everything: redb admits one per process.
    let store = crate::store::Store::open(&context.data_dir)?;
    let sink = AuditSink::spawn(crate::audit::AuditLog::new(store.clone())?);
    let runtime = crate::runtime::Runtime::new(&context.data_dir, &resolved, sink.clone())?;
    let plugins = runtime.discover(&context.data_dir, &resolved);
    let subject = plugins.subject(&resolved.config.subject).map_err(|e| anyhow!(e))?;
    let tools = plugins.tools(&resolved.config.tools);
    let executor = Executor::new(
        subject,
        tools,
        ActionStore::new(store.clone()),
        TicketStore::new(store),
        sink.clone(),
        resolved.config.actions.clone(),
        resolved.config.monitor.stale_after_ms,
        Arc::new(RwLock::new(None)),
    )
    .await?;
    Ok((Arc::new(executor), sink))
}

fn parse_when(at: Option<String>, r#in: Option<String>) -> Result<u64> {
    if let Some(at) = at {
        let time = humantime::parse_rfc3339_weak(&at)
            .with_context(|| format!("--at `{at}` is not a time like 2026-11-27T22:00:00Z"))?;
        let ms = time.duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
        if ms <= now_ms() {
            bail!("--at `{at}` is in the past");
        }
        return Ok(ms);
    }
    if let Some(delay) = r#in {
        let d =
            humantime::parse_duration(&delay).with_context(|| format!("--in `{delay}` is not a duration like 10m"))?;
        return Ok(now_ms() + d.as_millis() as u64);
    }
    Ok(0)
}

async fn actions_via_api(client: super::client::ApiClient, command: ActionsCommand) -> Result<ExitCode> {
    let by = whoami();
    match command {
        ActionsCommand::List { status, json } => {
            let reply = client.get(&format!("actions?status={status}")).await?;
            let list: Vec<Action> = serde_json::from_value(reply["actions"].clone())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply["actions"])?);
            } else if list.is_empty() {
                println!("no actions ({status})");
            } else {
                print_actions(&list);
            }
        }
        ActionsCommand::Show { id, json } => {
            let reply = client.get(&format!("actions/{id}")).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply["action"])?);
            } else {
                let action: Action = serde_json::from_value(reply["action"].clone())?;
                print!("{}", render_action(&action));
                if let Some(hold) = reply["action"]["hold"].as_str() {
                    println!("  waiting: {hold}");
                }
            }
        }
        ActionsCommand::Propose { name, params, ticket, at, r#in, json } => {
            let at_ms = parse_when(at, r#in)?;
            let mut body = serde_json::json!({"name": name, "params_text": params, "by": by});
            if let Some(ticket) = ticket {
                body["ticket"] = ticket.into();
            }
            if at_ms > 0 {
                body["at_ms"] = at_ms.into();
            }
            let reply = client.post("actions", body).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply["action"])?);
            } else {
                let action: Action = serde_json::from_value(reply["action"].clone())?;
                println!("action {} proposed: {} {} — {}", action.id, action.name, action.params_text(), action.status);
                if action.awaits_approval() {
                    println!("approve with: operator-host actions approve {} --reason \"…\"", action.id);
                }
            }
        }
        ActionsCommand::Approve { id, reason, by: who } => {
            let reply = client
                .post(&format!("actions/{id}/approve"), serde_json::json!({"reason": reason, "by": who.unwrap_or(by)}))
                .await?;
            println!("action {id} approved: {}", reply["action"]["status"].as_str().unwrap_or("?"));
        }
        ActionsCommand::Reject { id, reason, by: who } => {
            client
                .post(&format!("actions/{id}/reject"), serde_json::json!({"reason": reason, "by": who.unwrap_or(by)}))
                .await?;
            println!("action {id} rejected");
        }
        ActionsCommand::Cancel { id, reason } => {
            client.post(&format!("actions/{id}/cancel"), serde_json::json!({"reason": reason, "by": by})).await?;
            println!("action {id} cancelled");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn safety_via_api(client: super::client::ApiClient, command: SafetyCommand) -> Result<ExitCode> {
    let by = whoami();
    let reply = match command {
        SafetyCommand::Status { json } => {
            let reply = client.get("safety").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply["safety"])?);
                return Ok(ExitCode::SUCCESS);
            }
            reply
        }
        SafetyCommand::Mode { mode, reason } => {
            client.post("safety/mode", serde_json::json!({"mode": mode, "reason": reason, "by": by})).await?
        }
        SafetyCommand::KillSwitch { reason } => {
            client.post("safety/kill-switch", serde_json::json!({"reason": reason, "by": by})).await?
        }
        SafetyCommand::Release { reason } => {
            client.post("safety/release", serde_json::json!({"reason": reason, "by": by})).await?
        }
    };
    let safety = &reply["safety"];
    println!(
        "mode {}, kill switch {}",
        safety["mode"].as_str().unwrap_or("?"),
        if safety["kill_switch"].as_bool() == Some(true) { "ON" } else { "off" }
    );
    if let Some(cancelled) = reply["cancelled"].as_array().filter(|c| !c.is_empty()) {
        println!("cancelled: {}", cancelled.iter().filter_map(|c| c.as_str()).collect::<Vec<_>>().join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn run_actions(context: &Context, command: ActionsCommand) -> Result<ExitCode> {
    if let Some(client) = super::client::ApiClient::discover(&context.data_dir).await {
        return actions_via_api(client, command).await;
    }
    match command {
        ActionsCommand::List { status, json } => {
            let store = ActionStore::new(crate::store::Store::open(&context.data_dir)?);
            let list: Vec<Action> = match status.as_str() {
                "all" => store.list(None)?,
                "active" => store.list(None)?.into_iter().filter(|a| !a.status.is_final()).collect(),
                other => store.list(Some(ActionStatus::parse(other).map_err(anyhow::Error::msg)?))?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no actions ({status})");
            } else {
                print_actions(&list);
            }
        }
        ActionsCommand::Show { id, json } => {
            let store = ActionStore::new(crate::store::Store::open(&context.data_dir)?);
            let action = store.require(&id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&action)?);
            } else {
                print!("{}", render_action(&action));
            }
        }
        ActionsCommand::Propose { name, params, ticket, at, r#in, json } => {
            let not_before_ms = parse_when(at, r#in)?;
            let (executor, sink) = direct_executor(context).await?;
            let mut proposal = Proposal::new(&name, ProposalParams::Text(params), "cli", &whoami());
            proposal.ticket = ticket;
            proposal.not_before_ms = not_before_ms;
            let action = executor.propose(proposal, now_ms()).await?;
            sink.flush().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&action)?);
            } else {
                println!("action {} proposed: {} {} — {}", action.id, action.name, action.params_text(), action.status);
                if action.awaits_approval() {
                    println!("approve with: operator-host actions approve {} --reason \"…\"", action.id);
                }
                let safety = executor.safety();
                if !safety.allows_execution() {
                    println!(
                        "note: the operator is in {} mode; nothing executes until `operator-host safety mode execute`",
                        safety.mode.as_str()
                    );
                }
            }
        }
        ActionsCommand::Approve { id, reason, by } => {
            let (executor, sink) = direct_executor(context).await?;
            let action = executor.approve(&id, &by.unwrap_or_else(whoami), &reason, now_ms()).await?;
            sink.flush().await?;
            println!("action {} approved: {}", action.id, action.status);
        }
        ActionsCommand::Reject { id, reason, by } => {
            let (executor, sink) = direct_executor(context).await?;
            let action = executor.reject(&id, &by.unwrap_or_else(whoami), &reason, now_ms()).await?;
            sink.flush().await?;
            println!("action {} rejected", action.id);
        }
        ActionsCommand::Cancel { id, reason } => {
            let (executor, sink) = direct_executor(context).await?;
            let action = executor.cancel(&id, &whoami(), &reason, now_ms()).await?;
            sink.flush().await?;
            println!("action {} cancelled", action.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn run_safety(context: &Context, command: SafetyCommand) -> Result<ExitCode> {
    if let Some(client) = super::client::ApiClient::discover(&context.data_dir).await {
        return safety_via_api(client, command).await;
    }
    if let SafetyCommand::Status { json } = command {
        let store = ActionStore::new(crate::store::Store::open(&context.data_dir)?);
        let safety = store.safety()?;
        if json {
            println!("{}", serde_json::to_string_pretty(&safety)?);
        } else {
            println!("mode: {}", safety.mode.as_str());
            println!("kill switch: {}", if safety.kill_switch { "ON" } else { "off" });
            if safety.at_ms > 0 {
                println!("set by {} at {}: {}", safety.by, format_time(safety.at_ms), safety.reason);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (executor, sink) = direct_executor(context).await?;
    let by = whoami();
    let safety = match command {
        SafetyCommand::Mode { mode, reason } => {
            let mode = if mode == "execute" { Mode::Execute } else { Mode::Observe };
            executor.set_mode(mode, &by, &reason, now_ms()).await?
        }
        SafetyCommand::KillSwitch { reason } => executor.kill(&by, &reason, now_ms()).await?,
        SafetyCommand::Release { reason } => executor.release(&by, &reason, now_ms()).await?,
        SafetyCommand::Status { .. } => unreachable!("handled above"),
    };
    sink.flush().await?;
    println!("mode {}, kill switch {}", safety.mode.as_str(), if safety.kill_switch { "ON" } else { "off" });
    Ok(ExitCode::SUCCESS)
}

fn print_actions(list: &[Action]) {
    let width = terminal_width();
    let params_width = width.saturating_sub(9 + 1 + 24 + 1 + 18 + 1 + 6 + 1 + 9 + 1 + 8 + 1).max(16);
    println!("{:<9} {:<24} {:<18} {:<6} {:<9} {:<8} PARAMS", "ID", "ACTION", "STATUS", "RISK", "TICKET", "VERIFIED");
    for a in list {
        let verified = match &a.verification {
            Some(Verification::Verified(_)) => "yes",
            Some(Verification::NotEffective(_)) => "NO",
            Some(Verification::Pending(_)) => "pending",
            None => "",
        };
        println!(
            "{:<9} {:<24} {:<18} {:<6} {:<9} {:<8} {}",
            a.id,
            fit(&a.name, 24),
            a.status.as_str(),
            a.risk.as_str(),
            a.ticket.as_deref().unwrap_or("-"),
            verified,
            fit(&a.params_text(), params_width)
        );
    }
}

/// An action as readable text.
pub fn render_action(a: &Action) -> String {
    let mut out = format!("{}  {} {}  [{} risk]  {}\n", a.id, a.name, a.params_text(), a.risk.as_str(), a.status);
    out.push_str(&format!("  proposed by {} ({}) at {}\n", a.proposed_by, a.source, format_time(a.created_ms)));
    if let Some(ticket) = &a.ticket {
        out.push_str(&format!("  for ticket {ticket}\n"));
    }
    if a.not_before_ms > 0 {
        out.push_str(&format!("  not before {}\n", format_time(a.not_before_ms)));
    }
    if a.needs_approval {
        match &a.decision {
            Some(d) => out.push_str(&format!(
                "  {} by {} at {}: {}\n",
                if d.approved { "approved" } else { "rejected" },
                d.by,
                format_time(d.at_ms),
                d.reason
            )),
            None => out.push_str(&format!(
                "  awaiting approval until {}\n",
                a.approval_expires_ms.map(format_time).unwrap_or_default()
            )),
        }
    }
    if a.attempts > 0 {
        out.push_str(&format!("  attempts: {}", a.attempts));
        if let Some(next) = a.next_attempt_ms {
            out.push_str(&format!(", next at {}", format_time(next)));
        }
        out.push('\n');
    }
    if let Some(e) = &a.last_error {
        out.push_str(&format!("  last error: {e}\n"));
    }
    if let Some(o) = &a.outcome {
        out.push_str(&format!("  outcome: {o}\n"));
    }
    match &a.verification {
        Some(Verification::Verified(m)) => out.push_str(&format!("  verified: {m}\n")),
        Some(Verification::NotEffective(m)) => out.push_str(&format!("  NOT EFFECTIVE: {m}\n")),
        Some(Verification::Pending(until)) => out.push_str(&format!("  verifying until {}\n", format_time(*until))),
        None => {}
    }
    out.push_str("History\n");
    for e in &a.history {
        let from = e.from.map(|f| format!("{f} → ")).unwrap_or_default();
        out.push_str(&format!("  {}  {from}{} by {}: {}\n", format_time(e.at_ms), e.to, e.actor, e.reason));
    }
    out
}
