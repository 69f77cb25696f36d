//! The TiKV plugin at scale: one observe + check cycle of the built-in `tikv` plugin, run by the real
//! host runtime, against a simulated cluster of 300 stores and 1,000,000 regions with about 1 % of
//! the regions abnormal. Target: at most 250 ms median per cycle and at most 64 MiB of plugin
//! (linear) memory.
//!
//! `cargo bench -p operator-tests --bench plugin_scale` (release). The cluster is served by the
//! simulator at speed 0; one store of 300 is killed and 11 simulated minutes pass, so the regions
//! with a peer on it (1 %) report it as a down peer. The plugin is granted PD's read API only and
//! runs with `[runtime] memory_limit_mib = 64`.
//!
//! Figures:
//! - wall time of `PLUGIN_SCALE_CYCLES` (default 20) cycles after a warm-up: median and p90, with
//!   the observe and check calls apart;
//! - where a cycle's time goes: each request the plugin made, from the audit log (latency and body
//!   size as the capability gate saw them), against the call durations;
//! - memory: the host caps a call's linear memory (`memory_limit_mib`) and reports nothing finer, so
//!   the peak is found by bisection: the smallest per-plugin `memory_limit_mib` under which both calls
//!   still succeed. A call's instance is fresh, so its peak is its own.
//!
//! `PLUGIN_SCALE_STORES`, `PLUGIN_SCALE_REGIONS`, `PLUGIN_SCALE_CYCLES` and
//! `PLUGIN_SCALE_FAULT_MINUTES` change the sizes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use operator_host::audit::{AuditEvent, AuditFilter, AuditLog, AuditSink};
use operator_host::config::{Config, PluginConfig, ResolvedConfig};
use operator_host::runtime::bindings::types::Observation;
use operator_host::runtime::builtin::BUILTINS;
use operator_host::runtime::gate::EndpointConfig;
use operator_host::runtime::grants::GrantSpec;
use operator_host::runtime::{CallContext, Plugin, PluginSource, Runtime};
use operator_host::store::Store;
use tikv_sim::{ClusterSpec, SimCluster};

const TIME_TARGET_MS: f64 = 250.0;
const MEMORY_TARGET_MIB: u64 = 64;
/// The engine's memory cap while bisecting (every plugin slot reserves it).
const BISECT_CEILING_MIB: u64 = 1024;

/// The cores and the load average when the run starts: wall-clock figures on a shared machine
/// depend on both.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("{cores} cores, load average {}", load.join(" "))
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The value at quantile `q` of sorted samples.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let n = sorted.len().max(1);
    sorted[((n as f64 * q).ceil() as usize).clamp(1, n) - 1]
}

fn config(pd_urls: Vec<String>, runtime_memory_mib: u64) -> anyhow::Result<ResolvedConfig> {
    let mut config = Config::default();
    config.runtime.memory_limit_mib = runtime_memory_mib;
    config
        .endpoints
        .insert("pd".into(), EndpointConfig { urls: pd_urls, bearer_token_env: None, headers: BTreeMap::new() });
    let grants = vec![GrantSpec {
        endpoint: Some("pd".into()),
        url: None,
        methods: vec!["GET".into()],
        paths: vec!["/pd/api/v1/**".into()],
    }];
    config.plugins.insert("tikv".into(), PluginConfig { grants, ..PluginConfig::default() });
    config.resolve()
}

/// A data directory, audit log and runtime, as the daemon sets them up.
struct Host {
    dir: tempfile::TempDir,
    log: AuditLog,
    sink: AuditSink,
    runtime: Runtime,
    resolved: ResolvedConfig,
}

impl Host {
    fn new(resolved: ResolvedConfig, dir: tempfile::TempDir) -> anyhow::Result<Host> {
        let store = Store::open(dir.path())?;
        let log = AuditLog::new(store)?;
        let sink = AuditSink::spawn(log.clone());
        let runtime = Runtime::new(dir.path(), &resolved, sink.clone())?;
        Ok(Host { dir, log, sink, runtime, resolved })
    }

    /// The built-in TiKV plugin, with its memory cap overridden when `memory_mib` is given.
    fn tikv(&self, memory_mib: Option<u64>) -> anyhow::Result<Arc<Plugin>> {
        let builtin = BUILTINS.iter().find(|b| b.name == "tikv").ok_or_else(|| anyhow::anyhow!("no built-in tikv"))?;
        let manifest = builtin.manifest().map_err(anyhow::Error::msg)?;
        let mut config = self.resolved.config.plugins.get("tikv").cloned().unwrap_or_default();
        config.memory_limit_mib = memory_mib;
        let grants = self.resolved.grants.get("tikv").cloned().ok_or_else(|| anyhow::anyhow!("no tikv grants"))?;
        let sha = operator_host::digest::sha256_hex(builtin.component);
        let (plugin, _) = self
            .runtime
            .load(manifest, builtin.component, sha, PluginSource::BuiltIn, &config, grants)
            .map_err(|f| anyhow::anyhow!("loading tikv: {}", f.reason))?;
        Ok(plugin)
    }
}

/// One cycle's figures.
struct Cycle {
    observe: Duration,
    check: Duration,
    observation: Observation,
    violations: usize,
}

async fn cycle(plugin: &Plugin, context: &CallContext) -> anyhow::Result<Cycle> {
    let subject = plugin.as_subject().ok_or_else(|| anyhow::anyhow!("tikv is not a subject plugin"))?;
    let started = Instant::now();
    let observation = subject
        .observe(context)
        .await
        .map_err(|e| anyhow::anyhow!("observe: {e}"))?
        .map_err(|e| anyhow::anyhow!("observe failed: {e:?}"))?;
    let observe = started.elapsed();
    let started = Instant::now();
    let violations = subject.check(context, &observation).await.map_err(|e| anyhow::anyhow!("check: {e}"))?;
    Ok(Cycle { observe, check: started.elapsed(), observation, violations: violations.len() })
}

/// Whether a cycle succeeds with the plugin capped at `mib`; an error that is not the memory cap is
/// an error, so that a failed request cannot pass for a small cap.
async fn fits(host: &Host, mib: u64, context: &CallContext) -> anyhow::Result<bool> {
    let plugin = host.tikv(Some(mib))?;
    match cycle(&plugin, context).await {
        Ok(_) => Ok(true),
        Err(e) if e.to_string().contains("exceeded its memory limit") => Ok(false),
        Err(e) => Err(e.context(format!("a cycle capped at {mib} MiB"))),
    }
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let stores = env("PLUGIN_SCALE_STORES", 300) as usize;
    let regions = env("PLUGIN_SCALE_REGIONS", 1_000_000) as usize;
    let cycles = env("PLUGIN_SCALE_CYCLES", 20).max(1) as usize;
    let fault_minutes = env("PLUGIN_SCALE_FAULT_MINUTES", 11);
    println!("tikv plugin at scale: {stores} stores, {regions} regions; {}", machine());

    let started = Instant::now();
    let spec = ClusterSpec { stores, regions, ..ClusterSpec::default() };
    let sim = SimCluster::start(spec, 0.0).await?;
    sim.step(11_000);
    let victim = 1;
    sim.kill_store(victim).await?;
    sim.step(fault_minutes * 60_000);
    let (total, down) = {
        let model = sim.sim();
        (model.regions.len(), model.regions.iter().filter(|r| !r.down_peers.is_empty()).count())
    };
    let share = down as f64 * 100.0 / total.max(1) as f64;
    println!(
        "cluster ready in {:.1} s: store {victim} killed {fault_minutes} simulated minutes ago, {down} of {total} \
         regions ({share:.2} %) report a down peer",
        started.elapsed().as_secs_f64()
    );

    let host = Host::new(config(sim.pd_urls(), MEMORY_TARGET_MIB)?, tempfile::tempdir()?)?;
    let plugins = host.runtime.discover(host.dir.path(), &host.resolved);
    let plugin = plugins.get("tikv").ok_or_else(|| anyhow::anyhow!("the built-in tikv plugin did not load"))?.clone();
    let context = CallContext::default();

    let warm = cycle(&plugin, &context).await?;
    let mut samples = Vec::with_capacity(cycles);
    let mut observes = Vec::with_capacity(cycles);
    let mut checks = Vec::with_capacity(cycles);
    host.sink.flush().await?;
    let first_seq =
        host.log.list(&AuditFilter { limit: Some(1), ..AuditFilter::default() })?.last().map_or(0, |r| r.seq);
    let mut last = warm;
    let mut failures = Vec::new();
    for _ in 0..cycles {
        match cycle(&plugin, &context).await {
            Ok(c) => {
                samples.push(c.observe + c.check);
                observes.push(c.observe);
                checks.push(c.check);
                last = c;
            }
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    anyhow::ensure!(!samples.is_empty(), "every cycle failed: {failures:?}");
    samples.sort();
    observes.sort();
    checks.sort();

    // Where the time goes: the requests of the timed cycles, from the audit log.
    host.sink.flush().await?;
    let records = host.log.list(&AuditFilter { plugin: Some("tikv".into()), ..AuditFilter::default() })?;
    let mut requests: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    let mut calls: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for record in records.iter().filter(|r| r.seq > first_seq) {
        match &record.event {
            AuditEvent::Capability { path, latency_us, bytes, .. } => {
                let entry = requests.entry(path.clone()).or_default();
                entry.0 += 1;
                entry.1 += latency_us;
                entry.2 = entry.2.max(*bytes);
            }
            AuditEvent::PluginCall { export, duration_us, .. } => {
                let entry = calls.entry(export.clone()).or_default();
                entry.0 += 1;
                entry.1 += duration_us;
            }
            _ => {}
        }
    }

    // Peak memory by bisection over the plugin's cap (a fresh runtime whose engine allows more).
    let bisect = Host::new(config(sim.pd_urls(), BISECT_CEILING_MIB)?, tempfile::tempdir()?)?;
    let at_target = fits(&bisect, MEMORY_TARGET_MIB, &context).await?;
    let (mut lo, mut hi) = if at_target { (0, MEMORY_TARGET_MIB) } else { (MEMORY_TARGET_MIB, BISECT_CEILING_MIB) };
    if !at_target && !fits(&bisect, hi, &context).await? {
        lo = hi;
    }
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if fits(&bisect, mid, &context).await? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let peak =
        if lo == BISECT_CEILING_MIB { format!("> {BISECT_CEILING_MIB} MiB") } else { format!("{}–{hi} MiB", hi - 1) };

    let median = quantile(&samples, 0.5);
    let p90 = quantile(&samples, 0.9);
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!();
    println!("{:<52} {:>14}   {:<12} ok", "figure", "value", "target");
    println!(
        "{:<52} {:>11.1} ms   {:<12} {}",
        format!("observe + check, median of {}", samples.len()),
        ms(median),
        format!("<= {TIME_TARGET_MS} ms"),
        verdict(ms(median) <= TIME_TARGET_MS)
    );
    println!("{:<52} {:>11.1} ms", "observe + check, p90", ms(p90));
    println!("{:<52} {:>11.1} ms", "observe alone, median", ms(quantile(&observes, 0.5)));
    println!("{:<52} {:>11.1} ms", "check alone, median", ms(quantile(&checks, 0.5)));
    println!(
        "{:<52} {:>14}   {:<12} {}",
        format!("timed cycles under memory_limit_mib = {MEMORY_TARGET_MIB}"),
        format!("{} of {cycles} ok", samples.len()),
        "all",
        verdict(failures.is_empty())
    );
    if let Some(first) = failures.first() {
        println!("  first failure: {first}");
    }
    println!(
        "{:<52} {:>14}   {:<12} {}",
        "peak linear memory (smallest cap that succeeds)",
        peak,
        format!("<= {MEMORY_TARGET_MIB} MiB"),
        verdict(hi <= MEMORY_TARGET_MIB)
    );
    println!(
        "{:<52} {:>14}",
        "observation",
        format!(
            "{} KiB, {}",
            last.observation.payload.len() / 1024,
            if last.observation.complete {
                "complete".to_owned()
            } else {
                format!("partial: {:?}", last.observation.errors)
            }
        )
    );
    println!("{:<52} {:>14}", "violations", last.violations);

    println!("\nper cycle (mean over {cycles} cycles)");
    println!("{:<52} {:>10} {:>12}", "plugin call", "ms", "");
    for (export, (n, us)) in &calls {
        println!("{:<52} {:>10.1}", export, *us as f64 / 1000.0 / (*n).max(1) as f64);
    }
    println!("{:<52} {:>10} {:>12}", "request (as the gate saw it)", "ms", "body");
    let mut request_ms = 0.0;
    for (path, (n, us, bytes)) in &requests {
        let per_cycle = *us as f64 / 1000.0 / cycles as f64;
        request_ms += per_cycle;
        println!(
            "{:<52} {:>10.1} {:>8.1} KiB{}",
            format!("GET {path}"),
            per_cycle,
            *bytes as f64 / 1024.0,
            if *n as usize != cycles { format!("  ({n} requests)") } else { String::new() }
        );
    }
    let call_ms = calls.values().map(|(_, us)| *us as f64 / 1000.0).sum::<f64>() / cycles as f64;
    println!("{:<52} {:>10.1}", "all requests", request_ms);
    println!("{:<52} {:>10.1}", "in the plugin (calls minus requests)", call_ms - request_ms);
    sim.shutdown().await;
    Ok(())
}
