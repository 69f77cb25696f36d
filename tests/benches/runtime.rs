//! Runtime benchmark: prints the figures the runtime is held to.
//!
//! `cargo bench -p operator-tests --bench runtime` (release build). Figures named a median are
//! medians of single operations timed one by one; the others are the median of 25 samples, each
//! sample timing a batch and dividing by its size.
//!
//! - instantiate + call a trivial export (fresh store from the `InstancePre`, audited call): the
//!   median and 90th percentile of 20 000 calls, and the mean over batches of back-to-back calls;
//! - one guest → host call (from a loop of host calls inside one export);
//! - a loopback GET made directly with reqwest, and the same GET through the capability gate
//!   (decision, endpoint resolution, timeout, response cap, audit record): the gate's overhead is
//!   the difference of the medians of 20 000 requests each way, alternating one by one; the same
//!   comparison over blocks of back-to-back requests, where the audit writer is busy beside the
//!   requests, is printed too, and so is the writer's work per record;
//! - loading a plugin whose precompiled artifact is cached.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use operator_host::audit::{AuditEvent, AuditLog, AuditSink, Commit, Decision};
use operator_host::config::{Config, PluginConfig};
use operator_host::runtime::bindings::types::{Observation, Param, ParamValue};
use operator_host::runtime::bindings::wit_http::{Method, Request, Target};
use operator_host::runtime::gate::{EndpointConfig, HttpGate};
use operator_host::runtime::grants::GrantSpec;
use operator_host::runtime::manifest::Manifest;
use operator_host::runtime::{CallContext, PluginSource, Runtime};
use operator_host::store::Store;

const SAMPLES: usize = 25;
/// Requests each way in the interleaved latency comparison.
const LATENCY_REQUESTS: usize = 20_000;

fn component(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("TEST_PLUGIN_DIR")).join(format!("{name}.wasm"))).unwrap()
}

/// Median over samples of the mean time per iteration of `batch` iterations.
async fn measure<F, Fut>(batch: usize, mut op: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..batch.min(200) {
        op().await;
    }
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let started = Instant::now();
        for _ in 0..batch {
            op().await;
        }
        samples.push(started.elapsed() / batch as u32);
    }
    samples.sort();
    samples[SAMPLES / 2]
}

/// Times `count` runs of `op` one by one (after a warm-up), for a median and a tail of single
/// calls; a batch mean mixes in whatever else the machine did meanwhile.
async fn each<F, Fut>(count: usize, mut op: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..count.min(1000) {
        op().await;
    }
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        op().await;
        times.push(started.elapsed());
    }
    times
}

/// The `percentile`th of `samples` (sorts them).
fn percentile(samples: &mut [Duration], percentile: usize) -> Duration {
    samples.sort();
    samples[(samples.len() * percentile / 100).min(samples.len() - 1)]
}

/// The median of `samples` (sorts them).
fn median(samples: &mut [Duration]) -> Duration {
    percentile(samples, 50)
}

/// How much longer `slower` is than `base`, in percent.
fn percent_over(slower: Duration, base: Duration) -> f64 {
    (slower.as_nanos() as f64 / base.as_nanos() as f64 - 1.0) * 100.0
}

fn micros(d: Duration) -> String {
    format!("{:.2} µs", d.as_nanos() as f64 / 1000.0)
}

async fn serve() -> SocketAddr {
    let app = axum::Router::new().route("/ok", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let addr = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.endpoints.insert(
        "api".into(),
        EndpointConfig { urls: vec![format!("http://{addr}")], bearer_token_env: None, headers: BTreeMap::new() },
    );
    let grant =
        GrantSpec { endpoint: Some("api".into()), url: None, methods: vec!["GET".into()], paths: vec!["/ok".into()] };
    config.plugins.insert("good".into(), PluginConfig { grants: vec![grant], ..PluginConfig::default() });
    let resolved = config.resolve().unwrap();
    let log = AuditLog::new(Store::open(dir.path()).unwrap()).unwrap();
    let sink = AuditSink::spawn(log);
    let host = Runtime::new(dir.path(), &resolved, sink.clone()).unwrap();

    let bytes = component("good");
    let sha = operator_host::digest::sha256_hex(&bytes);
    let manifest = Manifest::parse("name = \"good\"\nversion = \"1.0.0\"\nworld = \"subject\"\n", "bench").unwrap();
    let plugin_config = resolved.config.plugins["good"].clone();
    let grants = resolved.grants["good"].clone();
    let load = || {
        host.load(manifest.clone(), &bytes, sha.clone(), PluginSource::BuiltIn, &plugin_config, grants.clone())
            .map_err(|f| f.reason)
            .unwrap()
    };
    let (plugin, _) = load();
    let subject = plugin.as_subject().unwrap();
    let context = CallContext::default();

    let only_gate = std::env::var_os("RUNTIME_BENCH_ONLY_GATE").is_some();
    // 1. instantiate + call a trivial export.
    let healthy = Observation { taken_at_ms: 0, complete: true, errors: vec![], payload: "ok".into() };
    let check_once = || async {
        let violations = subject.check(&context, &healthy).await.unwrap();
        assert!(violations.is_empty());
    };
    let mut trivial_each = each(if only_gate { 1 } else { 20_000 }, check_once).await;
    let (trivial, trivial_p90) = (median(&mut trivial_each), percentile(&mut trivial_each, 90));
    let trivial_mean = measure(if only_gate { 1 } else { 2000 }, check_once).await;

    // The same with the smaller built-in tools plugin and its `info()`.
    let builtins = host.discover(dir.path(), &resolved);
    let tools = builtins.get("tools").expect("the built-in tools plugin").clone();
    let tools = tools.as_tools().unwrap();
    let mut small_each = each(if only_gate { 1 } else { 20_000 }, || async {
        let info = tools.info(&context).await.unwrap();
        assert_eq!(info.name, "tools");
    })
    .await;
    let small = median(&mut small_each);

    if std::env::var_os("RUNTIME_BENCH_ONLY_CALLS").is_some() {
        // For profilers: only the instantiate + call loop.
        println!(
            "instantiate + call a trivial export: median {}, p90 {}, batch mean {} (tools info(): median {})",
            micros(trivial),
            micros(trivial_p90),
            micros(trivial_mean),
            micros(small)
        );
        return;
    }

    // 2. guest → host calls: the difference between n = 10 000 and n = 0, per call.
    let n = |n: i64| vec![Param { name: "n".into(), value: ParamValue::Integer(n) }];
    let (zero, many) = (n(0), n(10_000));
    let without = measure(200, || async {
        subject.query(&context, "host-calls", &zero).await.unwrap().unwrap();
    })
    .await;
    let with = measure(20, || async {
        subject.query(&context, "host-calls", &many).await.unwrap().unwrap();
    })
    .await;
    let host_call = with.saturating_sub(without) / 10_000;

    // 3. a loopback GET, directly and through the gate, interleaved to share the machine's mood.
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap();
    let url = format!("http://{addr}/ok");
    let shared = host.gate_shared();
    let plugin_name: Arc<str> = Arc::from("good");
    let request = Request {
        target: Target::Endpoint("api".into()),
        method: Method::Get,
        path_and_query: "/ok".into(),
        headers: vec![],
        body: None,
        timeout_ms: None,
    };
    let gate =
        HttpGate::new(plugin_name, "observe", resolved.grants["good"].clone(), shared, false, None, sink.clone());
    // Latency: requests alternate one by one between the two paths, so that both meet the same
    // machine, and each is timed alone. The gate's audit record is written in the background, as
    // in the daemon, and costs these figures only where the writer competes for the CPU.
    let direct_once = || async {
        let started = Instant::now();
        let body = client.get(&url).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(&body[..], b"ok");
        started.elapsed()
    };
    let gated_once = || async {
        let started = Instant::now();
        let response = gate.send(request.clone()).await.unwrap();
        assert_eq!(response.body, b"ok");
        started.elapsed()
    };
    for _ in 0..500 {
        direct_once().await;
        gated_once().await;
    }
    let (mut direct_each, mut gated_each) = (Vec::new(), Vec::new());
    for _ in 0..LATENCY_REQUESTS {
        direct_each.push(direct_once().await);
        gated_each.push(gated_once().await);
    }
    let direct = median(&mut direct_each);
    let gated = median(&mut gated_each);
    let overhead = percent_over(gated, direct);
    if only_gate {
        // For profilers: only the interleaved loopback GETs.
        println!("loopback GET: direct {}, through the gate {} (+{overhead:.1} %)", micros(direct), micros(gated));
        return;
    }

    // Throughput: blocks of back-to-back requests each way, five alternations. The audit writer
    // now runs steadily beside the gate's requests (a commit every 20 ms, an fsync a second).
    let mut direct_blocks = Vec::new();
    let mut gated_blocks = Vec::new();
    for _ in 0..5 {
        direct_blocks.push(
            measure(400, || async {
                direct_once().await;
            })
            .await,
        );
        gated_blocks.push(
            measure(400, || async {
                gated_once().await;
            })
            .await,
        );
    }
    let sustained_overhead = percent_over(median(&mut gated_blocks), median(&mut direct_blocks));

    // The audit writer's work per capability record under load: encode, hash, chain and insert,
    // in deferred commits of 400 like the sink's under this load.
    let writer_dir = tempfile::tempdir().unwrap();
    let writer_log = AuditLog::new(Store::open(writer_dir.path()).unwrap()).unwrap();
    let record = AuditEvent::Capability {
        plugin: "good".into(),
        export: "observe".into(),
        target: "api".into(),
        url: Some(url.clone()),
        method: "GET".into(),
        path: "/ok".into(),
        decision: Decision::Allowed { rule: "endpoint api GET /ok".into() },
        status: Some(200),
        bytes: 2,
        latency_us: 95,
        error: None,
        link: None,
    };
    let per_record = measure(5, || async {
        let batch = vec![(operator_host::audit::now_ms(), record.clone()); 400];
        writer_log.append_with(batch, Commit::Deferred).unwrap();
    })
    .await
        / 400;

    // The whole path: a plugin's observe() doing that GET (instantiate, call, gate, audit).
    let observe = measure(400, || async {
        let observation = subject.observe(&context).await.unwrap().unwrap();
        assert_eq!(observation.payload, "ok");
    })
    .await;

    // 4. loading a plugin whose precompiled artifact is cached (read, HMAC check,
    //    deserialize, link, type-check the world).
    let cached_load = measure(50, || async {
        let (_, outcome) = load();
        assert_eq!(outcome, operator_host::runtime::cache::CacheOutcome::Hit);
    })
    .await;

    sink.flush().await.unwrap();
    println!();
    println!("{:<58} {:>12}   target", "runtime benchmark (method of each: benches/runtime.rs)", "figure");
    println!("{:<58} {:>12}   ≤ 20 µs", "instantiate + call a trivial export (audited), median", micros(trivial));
    println!("{:<58} {:>12}", "  the same, 90th percentile", micros(trivial_p90));
    println!("{:<58} {:>12}", "  the same, mean of batches of 2000 back to back", micros(trivial_mean));
    println!("{:<58} {:>12}", "  the same, built-in tools plugin info(), median", micros(small));
    println!("{:<58} {:>12}", "guest → host call", micros(host_call));
    println!("{:<58} {:>12}", "loopback GET, direct reqwest (median of each)", micros(direct));
    println!("{:<58} {:>12}", "loopback GET, through the capability gate", micros(gated));
    println!("{:<58} {:>11.1}%   ≤ 10 %", "gate overhead over direct reqwest", overhead);
    println!("{:<58} {:>11.1}%", "  the same, sustained back-to-back (audit writer busy)", sustained_overhead);
    println!("{:<58} {:>12}", "  audit writer's work per capability record", micros(per_record));
    println!("{:<58} {:>12}", "plugin observe() doing that GET (instantiate+call+gate)", micros(observe));
    println!("{:<58} {:>12}   ≤ 2 ms", "load a cached precompiled plugin", micros(cached_load));
}
