//! `operator-host run`: the daemon. Monitor, diagnosis, action executor (with its scheduler and
//! verifier) in one process over one data directory, until SIGINT or SIGTERM.
//!
//! `--sim` starts the built-in simulated cluster in-process on loopback and grants the subject
//! plugin what it needs there, so a newcomer sees the whole pipeline without a cluster.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use clap::Args;

use super::Context;
use crate::actions::policy::Mode;
use crate::config::Config;
use crate::daemon::{Pipeline, PipelineOptions, SimOptions, StartMode, set_endpoint};

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
    /// Point the endpoint NAME at these URLs (overrides `[endpoints.NAME]`'s URLs; repeatable, one
    /// name each); also `OPERATOR_ENDPOINTS`, `;`-separated (`a=URL,URL;b=URL`).
    #[arg(
        long = "endpoint",
        env = "OPERATOR_ENDPOINTS",
        value_delimiter = ';',
        value_name = "NAME=URL[,URL...]",
        value_parser = parse_endpoint
    )]
    pub endpoints: Vec<EndpointArg>,
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

/// One `--endpoint NAME=URL[,URL...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointArg {
    /// The endpoint's name, as `[endpoints.NAME]` and grants name it.
    pub name: String,
    /// Its base URLs, tried in order.
    pub urls: Vec<String>,
}

/// Parses `NAME=URL[,URL...]`: a non-empty name, and absolute `http`/`https` URLs with a host.
fn parse_endpoint(text: &str) -> Result<EndpointArg, String> {
    let Some((name, urls)) = text.split_once('=') else {
        return Err("expected NAME=URL[,URL...], e.g. api=http://10.0.0.1:8080 (no `=`)".into());
    };
    let name = name.trim();
    if name.is_empty() {
        return Err("the endpoint name before `=` is empty".into());
    }
    let mut parsed = Vec::new();
    for url in urls.split(',').map(str::trim) {
        if url.is_empty() {
            return Err(format!("endpoint {name}: empty URL in `{urls}`"));
        }
        match url::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => parsed.push(url.to_owned()),
            Ok(_) => return Err(format!("endpoint {name}: `{url}` is not an http(s) URL with a host")),
            Err(e) => return Err(format!("endpoint {name}: `{url}` is not a URL ({e})")),
        }
    }
    Ok(EndpointArg { name: name.to_owned(), urls: parsed })
}

pub(super) async fn run(context: &Context, args: RunArgs) -> Result<ExitCode> {
    let mut config = Config::load(&context.config_path, context.config_explicit)?;
    let mut seen = std::collections::BTreeSet::new();
    for endpoint in &args.endpoints {
        if !seen.insert(endpoint.name.as_str()) {
            return Err(anyhow!(
                "--endpoint {} is given more than once: give all its URLs in one, comma-separated",
                endpoint.name
            ));
        }
        set_endpoint(&mut config, &endpoint.name, endpoint.urls.clone());
    }
    if let Some(choice) = &args.diagnoser {
        config.diagnosis.diagnoser = choice.parse().map_err(|e: String| anyhow!(e))?;
    }
    let options = PipelineOptions {
        sim: args.sim.then_some(SimOptions {
            stores: args.sim_stores,
            regions: args.sim_regions,
            seed: args.sim_seed,
            speed: args.sim_speed,
        }),
        mode: args.mode.as_deref().map(|mode| StartMode {
            mode: if mode == "execute" { Mode::Execute } else { Mode::Observe },
            by: "daemon".into(),
            reason: "--mode at start".into(),
        }),
        grace_divisor: None,
        config_path: Some(context.config_path.clone()),
    };
    let mut pipeline = Pipeline::build(&context.data_dir, config, options).await?;
    let config = pipeline.config.clone();
    let executor = pipeline.executor.clone();
    let subject = pipeline.subject.clone();

    // The local API: loopback by default; a token for every change.
    let token = crate::api::ApiToken::load_or_create(&context.data_dir)?;
    let state = Arc::new(crate::api::ApiState::new(
        executor.clone(),
        pipeline.workflows.clone(),
        pipeline.tickets.clone(),
        pipeline.log.clone(),
        pipeline.sink.clone(),
        crate::api::PluginSummary::from_set(&pipeline.plugins),
        pipeline.latest.clone(),
        subject.clone(),
        pipeline.metrics.clone(),
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
    let endpoints = if config.endpoints.is_empty() {
        "(none configured)".to_owned()
    } else {
        config
            .endpoints
            .iter()
            .map(|(name, e)| format!("{name} = {}", e.urls.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    };
    match &pipeline.sim {
        Some(cluster) => println!(
            "monitoring the simulated cluster ({}, speed {}x) through endpoints {endpoints}; faults: `operator-host sim fault …` (control {})",
            cluster.summary(),
            args.sim_speed,
            cluster.control_url()
        ),
        None => println!("monitoring {} through endpoints {endpoints}", subject.name()),
    }
    println!(
        "subject plugin {} {}; tools {}",
        subject.name(),
        subject.version(),
        pipeline.tools.as_ref().map(|t| t.name().to_owned()).unwrap_or_else(|| "none".into())
    );
    for grant in subject.grants().iter() {
        println!("  grant: {grant}");
    }
    println!(
        "mode: {}{}; every {} ms; diagnosis: {}{}",
        safety.mode.as_str(),
        if safety.kill_switch { " (KILL SWITCH ON)" } else { "" },
        config.monitor.interval_ms,
        pipeline.engine.diagnoser().kind().as_str(),
        pipeline.engine.diagnoser().model().map(|m| format!(" ({m})")).unwrap_or_default()
    );
    if !pipeline.recovered.is_empty() {
        println!("reconciled {} action(s) left executing by the previous run", pipeline.recovered.len());
    }

    println!("API on {api_url} (token in {})", crate::api::ApiToken::path(&context.data_dir).display());

    pipeline.start();
    let mut api_stop = pipeline.stop_signal();
    let api_task = tokio::spawn(crate::api::serve(listener, router.clone(), async move {
        let _ = api_stop.changed().await;
    }));
    let unix_task = unix.map(|l| {
        let mut unix_stop = pipeline.stop_signal();
        tokio::spawn(crate::api::serve_unix(l, router, async move {
            let _ = unix_stop.changed().await;
        }))
    });

    wait_for_stop(args.duration).await;
    println!("stopping: finishing the current action, flushing state");
    pipeline.stop().await;
    let _ = api_task.await;
    if let Some(task) = unix_task {
        let _ = task.await;
    }
    DaemonInfo::remove(&context.data_dir);
    pipeline.finish().await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_argument_is_a_name_and_urls() {
        let parsed = parse_endpoint("api=http://10.0.0.1:8080,https://b.example").unwrap();
        assert_eq!(parsed.name, "api");
        assert_eq!(parsed.urls, ["http://10.0.0.1:8080", "https://b.example"]);
        assert_eq!(parse_endpoint(" api = http://a:1 ").unwrap().urls, ["http://a:1"]);
    }

    #[test]
    fn malformed_endpoint_arguments_are_refused_with_why() {
        assert!(parse_endpoint("http://a:1").unwrap_err().contains("NAME=URL"), "no `=`");
        assert!(parse_endpoint("=http://a:1").unwrap_err().contains("name"), "empty name");
        assert!(parse_endpoint("api=").unwrap_err().contains("empty URL"));
        assert!(parse_endpoint("api=http://a:1,").unwrap_err().contains("empty URL"));
        assert!(parse_endpoint("api=not a url").unwrap_err().contains("`not a url` is not a URL"));
        assert!(parse_endpoint("api=localhost:8080").unwrap_err().contains("not an http(s) URL"));
    }
}
