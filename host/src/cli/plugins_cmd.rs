//! `operator-host plugins list|inspect`.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};

use super::Context;
use crate::runtime::bindings::types;
use crate::runtime::{CallContext, Plugin};

/// Plugin commands.
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Lists the plugins (built-in and drop-in), and those refused with the reason.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Shows one plugin: manifest, requested capabilities, grants, limits and its catalogue.
    Inspect {
        /// The plugin's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(super) async fn run(context: &Context, command: PluginsCommand) -> anyhow::Result<ExitCode> {
    let (runtime, resolved, sink) = context.runtime()?;
    let set = runtime.discover(&context.data_dir, &resolved);
    let code = match command {
        PluginsCommand::List { json } => {
            if json {
                let loaded: Vec<Value> = set.loaded.values().map(|p| summary_json(p)).collect();
                let refused: Vec<Value> = set
                    .refused
                    .iter()
                    .map(|f| json!({ "name": f.name, "source": f.source, "reason": f.reason }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&json!({ "plugins": loaded, "refused": refused }))?);
            } else {
                println!("{:<12} {:<9} {:<8} {:<14} {:<7} SOURCE", "NAME", "VERSION", "WORLD", "SHA256", "GRANTS");
                for plugin in set.loaded.values() {
                    println!(
                        "{:<12} {:<9} {:<8} {:<14} {:<7} {}",
                        plugin.name(),
                        plugin.version(),
                        plugin.world().as_str(),
                        &plugin.sha256()[..12],
                        plugin.grants().iter().count(),
                        plugin.source()
                    );
                }
                for failure in &set.refused {
                    // Printed whole: the reason is what the operator needs to fix it.
                    println!("REFUSED {} ({}): {}", failure.name, failure.source, failure.reason);
                }
                if set.loaded.is_empty() && set.refused.is_empty() {
                    println!("no plugins");
                }
            }
            ExitCode::SUCCESS
        }
        PluginsCommand::Inspect { name, json } => match set.get(&name) {
            Some(plugin) => {
                inspect(plugin, json).await?;
                ExitCode::SUCCESS
            }
            None => {
                if let Some(failure) = set.refused.iter().find(|f| f.name == name) {
                    eprintln!("error: plugin `{name}` was refused ({}): {}", failure.source, failure.reason);
                } else {
                    let known: Vec<&str> = set.loaded.keys().map(String::as_str).collect();
                    eprintln!(
                        "error: no plugin named `{name}`; known plugins: {}. Run `operator-host plugins list`.",
                        known.join(", ")
                    );
                }
                ExitCode::FAILURE
            }
        },
    };
    sink.flush().await?;
    Ok(code)
}

fn summary_json(plugin: &Plugin) -> Value {
    json!({
        "name": plugin.name(),
        "version": plugin.version(),
        "world": plugin.world().as_str(),
        "sha256": plugin.sha256(),
        "source": plugin.source().to_string(),
        "description": plugin.manifest().description,
        "grants": plugin.grants().iter().map(|g| g.to_string()).collect::<Vec<_>>(),
    })
}

async fn inspect(plugin: &Plugin, as_json: bool) -> anyhow::Result<()> {
    let context = CallContext::default();
    let catalogue: Value = if let Some(subject) = plugin.as_subject() {
        let info = subject.info(&context).await?;
        subject_info_json(&info)
    } else if let Some(tools) = plugin.as_tools() {
        let info = tools.info(&context).await?;
        json!({
            "name": info.name, "version": info.version, "description": info.description,
            "tools": info.tools.iter().map(action_json).collect::<Vec<_>>(),
        })
    } else {
        Value::Null
    };
    let requested: Vec<Value> = plugin
        .manifest()
        .capabilities
        .iter()
        .map(|c| json!({ "target": c.target(), "methods": c.methods, "paths": c.paths, "reason": c.reason }))
        .collect();
    let mut document = summary_json(plugin);
    document["requested"] = Value::Array(requested);
    document["limits"] = json!({
        "call_deadline_ms": plugin.deadline().as_millis() as u64,
        "memory_limit_mib": plugin.memory_limit() / (1024 * 1024),
    });
    document["settings"] = json!(plugin.settings().all());
    document["catalogue"] = catalogue;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&document)?);
        return Ok(());
    }
    println!("{} {} ({} plugin, {})", plugin.name(), plugin.version(), plugin.world().as_str(), plugin.source());
    if !plugin.manifest().description.is_empty() {
        println!("  {}", plugin.manifest().description);
    }
    println!("  sha256   {}", plugin.sha256());
    println!(
        "  limits   deadline {} ms, memory {} MiB",
        plugin.deadline().as_millis(),
        plugin.memory_limit() / (1024 * 1024)
    );
    println!("\nRequested capabilities (the plugin asks; the operator grants):");
    for c in &plugin.manifest().capabilities {
        println!("  {} {} {}  — {}", c.methods.join(","), c.target(), c.paths.join(" "), c.reason);
    }
    if plugin.manifest().capabilities.is_empty() {
        println!("  none");
    }
    println!("\nGranted ([plugins.{}] grants in the configuration):", plugin.name());
    let mut any = false;
    for grant in plugin.grants().iter() {
        any = true;
        println!("  {grant}");
    }
    if !any {
        println!("  nothing: every request is denied");
    }
    if !plugin.settings().all().is_empty() {
        println!("\nSettings:");
        for (key, value) in plugin.settings().all() {
            println!("  {key} = {value}");
        }
    }
    print_catalogue(&document["catalogue"]);
    Ok(())
}

fn print_catalogue(catalogue: &Value) {
    let section = |title: &str, key: &str| {
        if let Some(items) = catalogue[key].as_array()
            && !items.is_empty()
        {
            println!("\n{title}:");
            for item in items {
                let mut line = format!("  {}", item["name"].as_str().unwrap_or(""));
                if let Some(risk) = item["risk"].as_str() {
                    line.push_str(&format!(" [{risk} risk]"));
                }
                if let Some(severity) = item["severity"].as_str() {
                    line.push_str(&format!(" [{severity}]"));
                }
                line.push_str(&format!(" — {}", item["description"].as_str().unwrap_or("")));
                println!("{line}");
                if let Some(params) = item["params"].as_array() {
                    for param in params {
                        println!(
                            "      {} ({}{}): {}",
                            param["name"].as_str().unwrap_or(""),
                            param["type"].as_str().unwrap_or(""),
                            if param["required"].as_bool() == Some(true) { ", required" } else { "" },
                            param["description"].as_str().unwrap_or("")
                        );
                    }
                }
            }
        }
    };
    section("Invariants", "invariants");
    section("Actions", "actions");
    section("Tools", "tools");
    section("Queries", "queries");
    section("Conditions", "conditions");
}

fn subject_info_json(info: &types::SubjectInfo) -> Value {
    json!({
        "name": info.name,
        "version": info.version,
        "description": info.description,
        "invariants": info.invariants.iter().map(|i| json!({
            "name": i.name, "description": i.description,
            "severity": severity_name(i.severity), "grace_secs": i.grace_secs,
        })).collect::<Vec<_>>(),
        "actions": info.actions.iter().map(action_json).collect::<Vec<_>>(),
        "queries": info.queries.iter().map(|q| json!({
            "name": q.name, "description": q.description, "params": q.params.iter().map(param_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "conditions": info.conditions.iter().map(|c| json!({
            "name": c.name, "description": c.description, "params": c.params.iter().map(param_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn action_json(action: &types::ActionSpec) -> Value {
    json!({
        "name": action.name,
        "description": action.description,
        "risk": risk_name(action.risk),
        "params": action.params.iter().map(param_json).collect::<Vec<_>>(),
        "entity_param": action.entity_param,
        "undo": action.undo,
        "verify_window_secs": action.verify_window_secs,
    })
}

fn param_json(param: &types::ParamSpec) -> Value {
    let kind = match &param.kind {
        types::ParamType::Boolean => "boolean".to_owned(),
        types::ParamType::Integer(r) => format!("integer{}", range(r.min, r.max)),
        types::ParamType::Number(r) => format!("number{}", range(r.min, r.max)),
        types::ParamType::Text(_) => "text".to_owned(),
        types::ParamType::Choice(options) => format!("one of {}", options.join("|")),
        types::ParamType::DurationSecs(r) => format!("seconds{}", range(r.min, r.max)),
        types::ParamType::IntegerList(r) => format!("integer list{}", range(r.min, r.max)),
    };
    json!({ "name": param.name, "description": param.description, "type": kind, "required": param.required })
}

fn range<T: std::fmt::Display>(min: Option<T>, max: Option<T>) -> String {
    match (min, max) {
        (None, None) => String::new(),
        (Some(lo), Some(hi)) => format!(" {lo}..={hi}"),
        (Some(lo), None) => format!(" ≥ {lo}"),
        (None, Some(hi)) => format!(" ≤ {hi}"),
    }
}

fn severity_name(severity: types::Severity) -> &'static str {
    match severity {
        types::Severity::Info => "info",
        types::Severity::Warning => "warning",
        types::Severity::Critical => "critical",
    }
}

fn risk_name(risk: types::Risk) -> &'static str {
    match risk {
        types::Risk::Low => "low",
        types::Risk::Medium => "medium",
        types::Risk::High => "high",
    }
}
