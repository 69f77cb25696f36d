//! `operator-host diagnose TICKET [--diagnoser …]`: a one-shot diagnosis of a stored ticket,
//! recorded on the ticket like the daemon's. Its recommendations are shown, not proposed.

use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::Args;

use super::Context;
use super::tickets_cmd::render_ticket;
use crate::actions::store::ActionStore;
use crate::audit::{AuditLog, AuditSink};
use crate::diagnose::DiagnosisEngine;
use crate::monitor::tickets::TicketStore;
use crate::runtime::Runtime;
use crate::store::Store;

/// Options of a one-shot diagnosis.
#[derive(Debug, Args)]
pub struct DiagnoseArgs {
    /// The ticket, e.g. T-000003.
    pub ticket: String,
    /// The diagnoser [default: the configuration's, `auto`].
    #[arg(long, value_parser = ["auto", "claude", "openai", "rules"])]
    pub diagnoser: Option<String>,
    /// Print the diagnosis record as JSON.
    #[arg(long)]
    pub json: bool,
}

pub(super) async fn run(context: &Context, args: DiagnoseArgs) -> Result<ExitCode> {
    if super::client::ApiClient::discover(&context.data_dir).await.is_some() {
        bail!(
            "a daemon runs on this data directory and diagnoses tickets as they open; see `operator-host tickets show {}`, \
             or stop the daemon to diagnose again by hand",
            args.ticket
        );
    }
    let mut resolved = context.config()?;
    if let Some(choice) = &args.diagnoser {
        resolved.config.diagnosis.diagnoser = choice.parse().map_err(|e: String| anyhow!(e))?;
    }
    let engine = DiagnosisEngine::new(resolved.config.diagnosis.clone()).map_err(|e| anyhow!(e))?;
    let store = Store::open(&context.data_dir)?;
    let sink = AuditSink::spawn(AuditLog::new(store.clone())?);
    let runtime = Runtime::new(&context.data_dir, &resolved, sink.clone())?;
    let plugins = runtime.discover(&context.data_dir, &resolved);
    let tickets = TicketStore::new(store.clone());
    let ticket = tickets.require(&args.ticket)?;
    let subject = plugins
        .get(&ticket.plugin)
        .cloned()
        .ok_or_else(|| anyhow!("ticket {} came from plugin `{}`, which is not loaded", ticket.id, ticket.plugin))?;
    let actions = ActionStore::new(store).list(None)?;
    let record =
        crate::diagnose::ticket::diagnose_ticket(&engine, &subject, &tickets, &actions, &sink, &args.ticket).await?;
    sink.flush().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        let ticket = tickets.require(&args.ticket)?;
        // Only the new diagnosis, under the ticket's header.
        let mut latest = ticket.clone();
        latest.diagnoses = ticket.diagnoses.last().cloned().into_iter().collect();
        latest.history.clear();
        print!("{}", render_ticket(&latest));
    }
    Ok(ExitCode::SUCCESS)
}
