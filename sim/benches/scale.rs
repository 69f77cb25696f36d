//! Scale benchmark: a 300-store, 1,000,000-region cluster must fit in under 2 GiB, keep its tick
//! rate (a tick is 100 ms of simulated time, so real time needs at least 10 ticks per second), and
//! answer `GET /stores` and `GET /regions/check/*` in under 100 ms, healthy and with about 1 % of
//! the regions abnormal.
//!
//! `cargo bench -p tikv-sim --bench scale` (release). The cluster is served by [`SimCluster`] with
//! speed 0, so time only moves when the benchmark ticks it. Figures:
//!
//! - build: `SimCluster::start` (the model plus one listener per PD member and store);
//! - memory: `VmRSS` and `VmHWM` of `/proc/self/status`;
//! - ticks: `Simulation::tick` timed one by one (the first tick, which runs a full load pass, is a
//!   warm-up), mean, p50, p99, max and ticks per second against real time;
//! - requests: median wall time of `SCALE_REQUESTS` sequential requests over a kept-alive connection,
//!   body read included, with the number of regions each check lists;
//! - the same after killing one store (1 % of the regions have a peer on it) and running 11 simulated
//!   minutes, past TiKV's 10-minute down-peer delay; that run is timed tick by tick too.
//!
//! `SCALE_STORES`, `SCALE_REGIONS`, `SCALE_TICKS` (default 100), `SCALE_REQUESTS` (default 10) and
//! `SCALE_FAULT_MINUTES` (default 11) change the sizes.

use std::time::{Duration, Instant};

use tikv_sim::sim::TICK_MS;
use tikv_sim::{ClusterSpec, SimCluster};

const CHECKS: [&str; 6] = ["miss-peer", "down-peer", "pending-peer", "offline-peer", "extra-peer", "empty-region"];
const MEMORY_TARGET_MIB: f64 = 2048.0;
const REQUEST_TARGET_MS: f64 = 100.0;

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

/// `VmRSS` and `VmHWM` in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Tick durations: mean, p50, p99, max (ms).
struct TickStats {
    count: usize,
    mean: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

impl TickStats {
    fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return TickStats { count: 0, mean: f64::NAN, p50: f64::NAN, p99: f64::NAN, max: f64::NAN };
        }
        samples.sort();
        let n = samples.len().max(1);
        let at = |q: f64| ms(samples[((n as f64 * q).ceil() as usize).clamp(1, n) - 1]);
        let mean = samples.iter().map(|d| ms(*d)).sum::<f64>() / n as f64;
        TickStats { count: samples.len(), mean, p50: at(0.5), p99: at(0.99), max: at(1.0) }
    }

    fn per_second(&self) -> f64 {
        1000.0 / self.mean
    }
}

/// Runs `ticks` ticks, timing each one.
fn run_ticks(cluster: &SimCluster, ticks: u64) -> Vec<Duration> {
    let mut sim = cluster.sim();
    (0..ticks)
        .map(|_| {
            let started = Instant::now();
            sim.tick();
            started.elapsed()
        })
        .collect()
}

/// One request's figures: median time, body size, listed count.
struct Timed {
    path: String,
    median: Duration,
    max: Duration,
    bytes: usize,
    count: u64,
}

async fn time_get(client: &reqwest::Client, base: &str, path: &str, requests: u64) -> anyhow::Result<Timed> {
    let url = format!("{base}/pd/api/v1{path}");
    let mut samples = Vec::new();
    let mut bytes = 0;
    let mut count = 0;
    for _ in 0..requests.max(1) {
        let started = Instant::now();
        let resp = client.get(&url).send().await?;
        anyhow::ensure!(resp.status().is_success(), "{path}: {}", resp.status());
        let body = resp.bytes().await?;
        samples.push(started.elapsed());
        bytes = body.len();
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        count = v["count"].as_u64().unwrap_or_default();
    }
    samples.sort();
    Ok(Timed { path: path.into(), median: samples[samples.len() / 2], max: samples[samples.len() - 1], bytes, count })
}

async fn time_endpoints(client: &reqwest::Client, base: &str, requests: u64) -> anyhow::Result<Vec<Timed>> {
    let mut out = vec![time_get(client, base, "/stores", requests).await?];
    for check in CHECKS {
        out.push(time_get(client, base, &format!("/regions/check/{check}"), requests).await?);
    }
    Ok(out)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

fn print_ticks(label: &str, t: &TickStats) {
    let real_time = t.per_second() >= 1000.0 / TICK_MS as f64;
    println!(
        "{:<44} {:>9.2} ms {:>9.2} ms {:>9.2} ms {:>9.2} ms {:>9.0}/s   {:<22} {}",
        format!("{label} ({} ticks)", t.count),
        t.mean,
        t.p50,
        t.p99,
        t.max,
        t.per_second(),
        format!(">= {}/s (mean < {} ms)", 1000 / TICK_MS, TICK_MS),
        verdict(real_time && t.mean < TICK_MS as f64),
    );
}

fn print_requests(label: &str, timed: &[Timed]) {
    println!("\n{label}");
    println!("{:<36} {:>10} {:>10} {:>10} {:>11}   {:<10} ok", "request", "median", "max", "listed", "body", "target");
    for t in timed {
        println!(
            "{:<36} {:>7.1} ms {:>7.1} ms {:>10} {:>7.2} MiB   {:<10} {}",
            format!("GET {}", t.path),
            ms(t.median),
            ms(t.max),
            t.count,
            t.bytes as f64 / (1 << 20) as f64,
            format!("< {REQUEST_TARGET_MS} ms"),
            verdict(ms(t.median) < REQUEST_TARGET_MS),
        );
    }
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let stores = env("SCALE_STORES", 300) as usize;
    let regions = env("SCALE_REGIONS", 1_000_000) as usize;
    let ticks = env("SCALE_TICKS", 100);
    let requests = env("SCALE_REQUESTS", 10);
    let fault_minutes = env("SCALE_FAULT_MINUTES", 11);
    let spec = ClusterSpec { stores, regions, start_unix_ms: Some(1_780_000_000_000), ..ClusterSpec::default() };
    println!("tikv-sim scale: {stores} stores, {regions} regions, seed {}; {}", spec.seed, machine());
    let (rss_start, _) = memory();

    let started = Instant::now();
    let cluster = SimCluster::start(spec, 0.0).await?;
    let build = started.elapsed();
    let (rss_built, _) = memory();
    println!();
    println!("{:<44} {:>12}   {:<22} ok", "figure", "value", "target");
    println!("{:<44} {:>10.2} s", "build (SimCluster::start)", build.as_secs_f64());
    println!("{:<44} {:>8.0} MiB", "resident at start", rss_start);
    println!(
        "{:<44} {:>8.0} MiB   {:<22} {}",
        "resident after build",
        rss_built,
        format!("< {MEMORY_TARGET_MIB} MiB"),
        verdict(rss_built < MEMORY_TARGET_MIB)
    );

    let started = Instant::now();
    run_ticks(&cluster, 1);
    println!("{:<44} {:>9.2} ms", "first tick (full load pass)", ms(started.elapsed()));
    let healthy = TickStats::of(run_ticks(&cluster, ticks));
    println!(
        "\n{:<44} {:>12} {:>12} {:>12} {:>12} {:>11}   {:<22} ok",
        "ticks", "mean", "p50", "p99", "max", "rate", "target"
    );
    print_ticks("healthy", &healthy);

    let client = reqwest::Client::new();
    let base = cluster.pd_urls()[0].clone();
    print_requests("healthy cluster", &time_endpoints(&client, &base, requests).await?);

    // One store of 300 holds a peer of 1 % of the regions: kill it and wait past the down-peer delay.
    let victim = 1;
    cluster.kill_store(victim).await?;
    let faulty = TickStats::of(run_ticks(&cluster, fault_minutes * 60_000 / TICK_MS));
    println!();
    print_ticks(&format!("store {victim} killed, {fault_minutes} min"), &faulty);
    let on_victim = cluster.sim().regions.iter().filter(|r| r.peers.iter().any(|p| p.store_id == victim)).count();
    let total = cluster.sim().regions.len();
    let share = on_victim as f64 * 100.0 / total.max(1) as f64;
    let faulty_requests = time_endpoints(&client, &base, requests).await?;
    print_requests(
        &format!(
            "store {victim} killed {fault_minutes} simulated minutes ago: {on_victim} of {total} regions ({share:.2} %) \
             have a peer on it"
        ),
        &faulty_requests,
    );

    let (rss_end, hwm_end) = memory();
    println!();
    println!("{:<44} {:>8.0} MiB", "resident at the end", rss_end);
    println!(
        "{:<44} {:>8.0} MiB   {:<22} {}",
        "peak resident (VmHWM)",
        hwm_end,
        format!("< {MEMORY_TARGET_MIB} MiB"),
        verdict(hwm_end < MEMORY_TARGET_MIB)
    );
    cluster.shutdown().await;
    Ok(())
}
