//! `operator-host tickets …`: list, show, resolve, hold and unhold tickets.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;

use super::{Context, fit, format_time, terminal_width};
use crate::audit::{AuditSink, now_ms};
use crate::monitor::tickets::{SnapshotKind, Ticket, TicketStatus, TicketStore};

/// Ticket commands.
#[derive(Debug, Subcommand)]
pub enum TicketsCommand {
    /// Lists tickets, newest first.
    List {
        /// Only tickets in this state: open, held, resolved, or all.
        #[arg(long, default_value = "active", value_parser = ["active", "open", "held", "resolved", "all"])]
        status: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Shows one ticket with its history and diagnoses.
    Show {
        /// Ticket id, e.g. T-000012.
        id: String,
        /// JSON output (includes the observation snapshots).
        #[arg(long)]
        json: bool,
    },
    /// Resolves a ticket by hand.
    Resolve {
        /// Ticket id.
        id: String,
        /// Why.
        #[arg(long, default_value = "resolved by hand")]
        reason: String,
    },
    /// Puts a ticket on hold: it no longer resolves by itself or drives automatic actions.
    Hold {
        /// Ticket id.
        id: String,
        /// Why.
        #[arg(long, default_value = "held by hand")]
        reason: String,
    },
    /// Takes a ticket off hold.
    Unhold {
        /// Ticket id.
        id: String,
        /// Why.
        #[arg(long, default_value = "unheld by hand")]
        reason: String,
    },
}

async fn via_api(client: super::client::ApiClient, command: TicketsCommand) -> Result<ExitCode> {
    match command {
        TicketsCommand::List { status, json } => {
            let reply = client.get(&format!("tickets?status={status}")).await?;
            let list: Vec<Ticket> = serde_json::from_value(reply["tickets"].clone())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no {status} tickets");
            } else {
                print_table(&list);
            }
        }
        TicketsCommand::Show { id, json } => {
            let reply = client.get(&format!("tickets/{id}")).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                let ticket: Ticket = serde_json::from_value(reply["ticket"].clone())?;
                print!("{}", render_ticket(&ticket));
            }
        }
        TicketsCommand::Resolve { .. } | TicketsCommand::Hold { .. } | TicketsCommand::Unhold { .. } => {
            unreachable!("changes go through change_via_api")
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn change_via_api(client: &super::client::ApiClient, id: &str, verb: &str, reason: &str) -> Result<ExitCode> {
    let reply = client
        .post(
            &format!("tickets/{id}/{verb}"),
            serde_json::json!({"reason": reason, "by": super::actions_cmd::whoami()}),
        )
        .await?;
    println!("ticket {id} is now {}", reply["ticket"]["status"].as_str().unwrap_or("?"));
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn run(context: &Context, command: TicketsCommand) -> Result<ExitCode> {
    if let Some(client) = super::client::ApiClient::discover(&context.data_dir).await {
        return match command {
            TicketsCommand::Resolve { id, reason } => change_via_api(&client, &id, "resolve", &reason).await,
            TicketsCommand::Hold { id, reason } => change_via_api(&client, &id, "hold", &reason).await,
            TicketsCommand::Unhold { id, reason } => change_via_api(&client, &id, "unhold", &reason).await,
            other => via_api(client, other).await,
        };
    }
    let log = context.open_audit()?;
    let tickets = TicketStore::new(log.store().clone());
    match command {
        TicketsCommand::List { status, json } => {
            let list = match status.as_str() {
                "all" => tickets.list(None)?,
                "active" => tickets.active()?,
                other => tickets.list(Some(TicketStatus::parse(other).map_err(anyhow::Error::msg)?))?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no {} tickets", if status == "all" { String::new() } else { status.clone() }.trim());
            } else {
                print_table(&list);
            }
        }
        TicketsCommand::Show { id, json } => {
            let ticket = tickets.require(&id)?;
            if json {
                let at_open = tickets.snapshot(&id, SnapshotKind::AtOpen)?;
                let latest = tickets.snapshot(&id, SnapshotKind::Latest)?;
                let value =
                    serde_json::json!({"ticket": ticket, "observation_at_open": at_open, "latest_observation": latest});
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print!("{}", render_ticket(&ticket));
            }
        }
        TicketsCommand::Resolve { id, reason } => change(&log, &tickets, &id, TicketStatus::Resolved, &reason).await?,
        TicketsCommand::Hold { id, reason } => change(&log, &tickets, &id, TicketStatus::Held, &reason).await?,
        TicketsCommand::Unhold { id, reason } => {
            let ticket = tickets.require(&id)?;
            if ticket.status != TicketStatus::Held {
                anyhow::bail!("ticket {id} is {}, not held", ticket.status);
            }
            change(&log, &tickets, &id, TicketStatus::Open, &reason).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn change(
    log: &crate::audit::AuditLog,
    tickets: &TicketStore,
    id: &str,
    to: TicketStatus,
    reason: &str,
) -> Result<()> {
    let sink = AuditSink::spawn(log.clone());
    let ticket = tickets.transition(&sink, id, to, reason, "cli", now_ms()).await?;
    sink.flush().await?;
    println!("ticket {} is now {}", ticket.id, ticket.status);
    Ok(())
}

fn print_table(list: &[Ticket]) {
    let width = terminal_width();
    let message_width = width.saturating_sub(8 + 1 + 9 + 1 + 8 + 1 + 40 + 1 + 5 + 1 + 20 + 1).max(20);
    println!("{:<8} {:<9} {:<8} {:<40} {:>5} {:<20} MESSAGE", "ID", "STATUS", "SEVERITY", "PROBLEM", "SEEN", "OPENED");
    for t in list {
        println!(
            "{:<8} {:<9} {:<8} {:<40} {:>5} {:<20} {}",
            t.id,
            t.status,
            t.severity,
            fit(&t.key(), 40),
            t.occurrences,
            fit(&format_time(t.opened_at_ms), 20),
            fit(&t.message, message_width)
        );
    }
}

/// A ticket as readable text: what, when, history, and each diagnosis.
pub fn render_ticket(t: &Ticket) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("{}  {}  [{}]  {}", t.id, t.key(), t.severity, t.status));
    line(format!("  {}", t.message));
    line(format!(
        "  first seen {}, opened {}, last seen {}, seen {} times{}",
        format_time(t.first_seen_ms),
        format_time(t.opened_at_ms),
        format_time(t.last_seen_ms),
        t.occurrences,
        if t.reopened > 0 { format!(", re-opened {} times", t.reopened) } else { String::new() }
    ));
    if let Some(resolution) = &t.resolution {
        line(format!("  resolved: {resolution}"));
    }
    if !t.evidence.is_empty() {
        line("Evidence".into());
        for e in &t.evidence {
            line(format!("  {}: {}", e.label, e.value));
        }
    }
    line("History".into());
    for e in &t.history {
        let from = e.from.map(|f| format!("{f} → ")).unwrap_or_default();
        line(format!("  {}  {from}{} by {}: {}", format_time(e.at_ms), e.to, e.actor, e.reason));
    }
    if !t.actions.is_empty() {
        line(format!("Actions: {}", t.actions.join(", ")));
    }
    for (i, record) in t.diagnoses.iter().enumerate() {
        line(String::new());
        out_diagnosis(&mut line, i + 1, record);
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn list(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().map(text).collect()).unwrap_or_default()
}

fn out_diagnosis(line: &mut impl FnMut(String), n: usize, record: &Value) {
    let d = record.get("diagnosis").unwrap_or(record);
    let by = text(&record["diagnoser"]);
    let model = text(&record["model"]);
    line(format!(
        "Diagnosis {n} by {}{}",
        if by.is_empty() { "unknown" } else { &by },
        if model.is_empty() { String::new() } else { format!(" ({model})") }
    ));
    if let Some(reason) = record.get("fallback").filter(|f| !f.is_null()) {
        line(format!("  (the language model failed: {}; the built-in rules answered)", text(reason)));
    }
    line(format!("  Summary: {}", text(&d["summary"])));
    line(format!(
        "  Root cause ({:.0} % confident): {}",
        d["confidence"].as_f64().unwrap_or(0.0) * 100.0,
        text(&d["root_cause"])
    ));
    for (title, key) in [("Timeline", "timeline"), ("Evidence", "evidence"), ("Affected", "affected")] {
        let items = list(&d[key]);
        if !items.is_empty() {
            line(format!("  {title}:"));
            for item in items {
                line(format!("    - {item}"));
            }
        }
    }
    if let Some(alternatives) = d["alternatives"].as_array().filter(|a| !a.is_empty()) {
        line("  Alternatives considered:".into());
        for a in alternatives {
            line(format!("    ? {} → {}", text(&a["hypothesis"]), text(&a["conclusion"])));
            for s in list(&a["supporting"]) {
                line(format!("        + {s}"));
            }
            for c in list(&a["contradicting"]) {
                line(format!("        - {c}"));
            }
        }
    }
    if let Some(recs) = d["recommendations"].as_array().filter(|a| !a.is_empty()) {
        line("  Recommended actions:".into());
        for r in recs {
            line(format!("    * {} {} [{}]", text(&r["action"]), params_text(&r["params"]), text(&r["urgency"])));
            line(format!("        why: {}", text(&r["reason"])));
            line(format!("        expect: {}", text(&r["expected_outcome"])));
            line(format!("        risks: {}", text(&r["risks"])));
        }
    }
    if let Some(wait) = d.get("wait_reason").filter(|w| !w.is_null()) {
        line(format!("  Wait: {}", text(wait)));
    }
    if let Some(dropped) = record["dropped_recommendations"].as_array().filter(|a| !a.is_empty()) {
        line("  Dropped recommendations:".into());
        for item in dropped {
            line(format!("    x {}: {}", text(&item["recommendation"]["action"]), text(&item["reason"])));
        }
    }
    if let Some(usage) = record.get("usage").filter(|u| u.is_object()) {
        let cost = record["cost_usd"].as_f64().map(|c| format!(", ${c:.4}")).unwrap_or_default();
        line(format!(
            "  Tokens: {} in, {} out{cost}",
            usage["input_tokens"].as_u64().unwrap_or(0),
            usage["output_tokens"].as_u64().unwrap_or(0)
        ));
    }
}

fn params_text(v: &Value) -> String {
    match v {
        Value::Object(map) => map.iter().map(|(k, v)| format!("{k}={}", text(v))).collect::<Vec<_>>().join(" "),
        Value::Array(items) => items
            .iter()
            .map(|p| format!("{}={}", text(&p["name"]), text(p.get("value").unwrap_or(&Value::Null))))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}
