//! `operator-host audit list|show|verify|export`.

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;

use super::{Context, fit, format_time, terminal_width};
use crate::audit::{AuditEvent, AuditFilter, AuditRecord, CallOutcome, Decision, LoadOutcome};

/// Audit commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Lists records, oldest first (the most recent `--limit`).
    List {
        /// Only records about this plugin.
        #[arg(long)]
        plugin: Option<String>,
        /// Only this kind: plugin-load, plugin-call, capability, sandbox, note.
        #[arg(long)]
        kind: Option<String>,
        /// Only records newer than this: a duration ago (`90s`, `15m`, `2h`, `1d`) or an RFC 3339 time.
        #[arg(long, value_parser = parse_since)]
        since: Option<u64>,
        /// Only denials.
        #[arg(long)]
        denied: bool,
        /// At most this many (the most recent).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Shows one record in full.
    Show {
        /// The record's sequence number.
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verifies the hash chain; exits non-zero naming the first bad record.
    Verify,
    /// Exports every record.
    Export {
        /// One JSON record per line (the only format).
        #[arg(long, required = true)]
        jsonl: bool,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
}

fn parse_since(text: &str) -> Result<u64, String> {
    let now = std::time::SystemTime::now();
    let at = if let Ok(duration) = humantime::parse_duration(text) {
        now.checked_sub(duration).ok_or_else(|| format!("`{text}` reaches before 1970"))?
    } else if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        time
    } else {
        return Err(format!(
            "`{text}` is neither a duration (like 90s, 15m, 2h, 1d) nor an RFC 3339 time (like 2026-11-27T08:00:00Z)"
        ));
    };
    Ok(at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0))
}

const KINDS: &[&str] = &["plugin-load", "plugin-call", "capability", "sandbox", "note"];

pub(super) async fn run(context: &Context, command: AuditCommand) -> anyhow::Result<ExitCode> {
    let log = context.open_audit()?;
    match command {
        AuditCommand::List { plugin, kind, since, denied, limit, json } => {
            if let Some(kind) = &kind
                && !KINDS.contains(&kind.as_str())
            {
                anyhow::bail!("unknown kind `{kind}`; the kinds are {}", KINDS.join(", "));
            }
            let filter = AuditFilter { plugin, kind, since_ms: since, denied_only: denied, limit: Some(limit) };
            let records = log.list(&filter)?;
            if json {
                let mut out = std::io::stdout().lock();
                for record in &records {
                    writeln!(out, "{}", serde_json::to_string(record)?)?;
                }
            } else if records.is_empty() {
                println!("no audit records match");
            } else {
                let width = terminal_width();
                println!("{:>6}  {:<24} {:<11} {:<10} WHAT", "ID", "TIME (UTC)", "KIND", "PLUGIN");
                for record in &records {
                    let line = format!(
                        "{:>6}  {:<24} {:<11} {:<10} {}",
                        record.seq,
                        format_time(record.at_ms),
                        record.event.kind(),
                        record.event.plugin().unwrap_or("-"),
                        summary(&record.event)
                    );
                    println!("{}", fit(&line, width));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Show { id, json } => match log.get(id)? {
            Some(record) => {
                if json {
                    println!("{}", serde_json::to_string_pretty(&record)?);
                } else {
                    show(&record)?;
                }
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("error: there is no audit record {id}; `operator-host audit list` shows the recent ones");
                Ok(ExitCode::FAILURE)
            }
        },
        AuditCommand::Verify => {
            let report = log.verify()?;
            match report.first_problem {
                None => {
                    println!("audit log intact: {} records, hash chain verified", report.records);
                    Ok(ExitCode::SUCCESS)
                }
                Some(problem) => {
                    eprintln!("audit log BROKEN: {problem}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        AuditCommand::Export { jsonl: _, output } => {
            let count = match output {
                Some(path) => {
                    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
                    let count = log.export_jsonl(&mut file)?;
                    file.flush()?;
                    eprintln!("exported {count} records to {}", path.display());
                    count
                }
                None => {
                    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                    let count = log.export_jsonl(&mut out)?;
                    out.flush()?;
                    count
                }
            };
            let _ = count;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn show(record: &AuditRecord) -> anyhow::Result<()> {
    println!("record     {}", record.seq);
    println!("time       {}", format_time(record.at_ms));
    println!("kind       {}", record.event.kind());
    println!("summary    {}", summary(&record.event));
    println!("prev hash  {}", record.prev_hash);
    println!("hash       {}", record.hash);
    println!("event:");
    let event = serde_json::to_value(&record.event)?;
    if let Some(fields) = event.as_object() {
        for (key, value) in fields {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("  {key:<18} {text}");
        }
    }
    Ok(())
}

/// One line describing an event.
pub fn summary(event: &AuditEvent) -> String {
    match event {
        AuditEvent::PluginLoad { version, component_sha256, source, outcome, .. } => match outcome {
            LoadOutcome::Loaded => format!(
                "loaded {version} from {source} (sha256 {})",
                component_sha256.get(..12).unwrap_or(component_sha256)
            ),
            LoadOutcome::Refused { reason } => format!("REFUSED from {source}: {reason}"),
        },
        AuditEvent::PluginCall { export, duration_us, outcome, output_truncated, .. } => {
            let took = format!("{:.1} ms", *duration_us as f64 / 1000.0);
            let result = match outcome {
                CallOutcome::Ok => "ok".to_owned(),
                CallOutcome::Error { message } => format!("error: {message}"),
                CallOutcome::Trap { message } => format!("TRAP: {message}"),
                CallOutcome::Timeout { after_ms } => format!("TIMEOUT after {after_ms} ms"),
            };
            let truncated = if *output_truncated { " (output truncated)" } else { "" };
            format!("{export} {result} in {took}{truncated}")
        }
        AuditEvent::Capability { export, target, method, path, decision, status, bytes, latency_us, error, .. } => {
            match decision {
                Decision::Denied { reason, .. } => format!("DENIED {method} {target} {path} in {export}: {reason}"),
                Decision::Allowed { .. } => match (status, error) {
                    (Some(status), _) => format!(
                        "{method} {target} {path} → {status} ({bytes} B, {:.1} ms)",
                        *latency_us as f64 / 1000.0
                    ),
                    (None, Some(error)) => format!("{method} {target} {path} failed: {error}"),
                    (None, None) => format!("{method} {target} {path} sending (mutating, recorded first)"),
                },
            }
        }
        AuditEvent::Sandbox { export, what, detail, .. } => format!("{export} asked for {what}: {detail}"),
        AuditEvent::StateChange { subject, id, from, to, reason, actor } => match from {
            Some(from) => format!("{subject} {id}: {from} → {to} by {actor}: {reason}"),
            None => format!("{subject} {id}: → {to} by {actor}: {reason}"),
        },
        AuditEvent::Note { message } => message.clone(),
    }
}
