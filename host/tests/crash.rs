//! Crash safety: a real daemon process against a simulated cluster (a separate `operator-host sim`
//! process, so the cluster outlives the daemon) is SIGKILLed at many points.
//!
//! - Executing a single action: after each restart the action is neither lost nor run twice (PD
//!   records exactly one admin operator for it when it completed, none when it failed), and the
//!   audit chain verifies. `CRASH_RUNS=N` changes the number of kills (default 50).
//! - Running the `drain-store` workflow (evict leaders, wait, offline the store, wait for
//!   Tombstone; a third of the runs fail at the offline step and compensate): the daemon reaches PD
//!   through a recording proxy, so the test knows every mutating request PD received. After each
//!   restart the run completes or fails cleanly with its compensation, each step's action exists
//!   once, PD received each change once, and the audit chain verifies.
//!   `WORKFLOW_CRASH_RUNS=N` changes the number of kills (default 50).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

mod common;

use common::{Proc, daemon_api_url, host_logging, spawn_logging, wait_for};

/// Polling pace of [`wait_for`] here.
const POLL: Duration = Duration::from_millis(100);

/// `operator-host` to its end; this test logs errors only.
fn host(data_dir: &Path, args: &[&str]) -> Output {
    host_logging(data_dir, "error", args)
}

/// `operator-host` in the background; this test logs errors only.
fn spawn(data_dir: &Path, args: &[&str]) -> Proc {
    spawn_logging(data_dir, "error", args)
}

fn get(rt: &tokio::runtime::Runtime, url: &str) -> Option<Value> {
    rt.block_on(async { serde_json::from_slice(&reqwest::get(url).await.ok()?.bytes().await.ok()?).ok() })
}

/// A cheap deterministic spread of kill delays over the daemon's first seconds.
fn delay_ms(run: u64) -> u64 {
    scatter(run, 2_500)
}

/// A cheap deterministic spread of `seed`s over `0..span`.
fn scatter(seed: u64, span: u64) -> u64 {
    (seed.wrapping_mul(2_654_435_761) >> 7) % span.max(1)
}

#[test]
fn sigkill_at_any_point_loses_nothing_and_runs_nothing_twice() {
    let runs: u64 = std::env::var("CRASH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim_dir = tempfile::tempdir().unwrap();
    let _sim = spawn(sim_dir.path(), &["sim", "--stores", "4", "--regions", "200", "--speed", "2"]);
    let discovery = sim_dir.path().join("sim-control.json");
    wait_for(60, POLL, "the simulator", |_| discovery.exists().then_some(()));
    let sim: Value = serde_json::from_slice(&std::fs::read(&discovery).unwrap()).unwrap();
    let pd = sim["pd_urls"][0].as_str().unwrap().to_owned();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("operator.toml"),
        format!(
            r#"
[api]
listen = "127.0.0.1:0"
[monitor]
interval_ms = 300
[actions]
tick_ms = 100
entity_cooldown_secs = 0
max_per_hour = 100000
[endpoints.pd]
urls = [{pd:?}]
[plugins.tikv]
grants = [{{ endpoint = "pd", methods = ["GET", "POST", "DELETE"], paths = ["/pd/api/v1/**"] }}]
settings = {{ "status-probes" = "false" }}
"#
        ),
    )
    .unwrap();
    let mode = host(dir.path(), &["safety", "mode", "execute", "--reason", "crash test"]);
    assert!(mode.status.success(), "{}", String::from_utf8_lossy(&mode.stderr));

    let mut completed = 0;
    let mut region_offset = 0usize;
    for run in 0..runs {
        // A region and a follower store to move its leader to.
        let regions = get(&rt, &format!("{pd}/pd/api/v1/regions/key?key=&limit=200")).expect("regions");
        let (region, target) = loop {
            let r = &regions["regions"][region_offset % 200];
            region_offset += 1;
            let leader = r["leader"]["store_id"].as_u64().unwrap_or(0);
            let follower =
                r["peers"].as_array().unwrap().iter().map(|p| p["store_id"].as_u64().unwrap()).find(|s| *s != leader);
            if let (true, Some(follower)) = (leader != 0, follower) {
                break (r["id"].as_u64().unwrap(), follower);
            }
        };
        let propose = host(
            dir.path(),
            &[
                "actions",
                "propose",
                "transfer-leader",
                "--param",
                &format!("region={region}"),
                "--param",
                &format!("to-store={target}"),
                "--json",
            ],
        );
        if !propose.status.success() {
            // The leader moved meanwhile (balance-leader): a refused proposal stores nothing.
            continue;
        }
        let action: Value = serde_json::from_slice(&propose.stdout).unwrap();
        let id = action["id"].as_str().unwrap().to_owned();

        // Start, kill at some point of the first seconds, start again.
        let mut daemon = spawn(dir.path(), &["run"]);
        std::thread::sleep(Duration::from_millis(delay_ms(run)));
        daemon.0.kill().unwrap();
        daemon.0.wait().unwrap();
        let _ = std::fs::remove_file(dir.path().join("daemon.json"));
        let mut daemon = spawn(dir.path(), &["run"]);
        let api = wait_for(60, POLL, "the restarted daemon", |_| daemon_api_url(dir.path()));
        let status = wait_for(60, POLL, "the action to finish", |_| {
            let a = get(&rt, &format!("{api}/api/v1/actions/{id}"))?;
            let status = a["action"]["status"].as_str()?.to_owned();
            matches!(status.as_str(), "completed" | "failed" | "cancelled").then_some(status)
        });
        common::sigterm(daemon.0.id());
        assert!(daemon.0.wait().unwrap().success());

        // PD's record of finished operators: one admin transfer for this region if completed.
        let records = get(&rt, &format!("{pd}/pd/api/v1/operators/records?from=0")).unwrap_or(Value::Null);
        let ours = records
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|r| r.as_str())
                    .filter(|r| r.contains("admin-transfer-leader") && r.contains(&format!("region:{region}(")))
                    .count()
            })
            .unwrap_or(0);
        let running = get(&rt, &format!("{pd}/pd/api/v1/operators")).unwrap_or(Value::Null);
        let still = running
            .as_array()
            .map(|l| l.iter().filter_map(|r| r.as_str()).filter(|r| r.contains(&format!("region:{region}("))).count())
            .unwrap_or(0);
        match status.as_str() {
            "completed" => {
                completed += 1;
                assert_eq!(ours + still, 1, "run {run}: action {id} on region {region} made {ours} operators");
            }
            _ => assert!(ours + still <= 1, "run {run}: a failed action left {ours} operators"),
        }
        let verify = host(dir.path(), &["audit", "verify"]);
        assert!(verify.status.success(), "run {run}: {}", String::from_utf8_lossy(&verify.stdout));
        // Each action exists exactly once.
        let list = host(dir.path(), &["actions", "list", "--status", "all", "--json"]);
        let list: Value = serde_json::from_slice(&list.stdout).unwrap();
        assert_eq!(list.as_array().unwrap().iter().filter(|a| a["id"] == id.as_str()).count(), 1);
    }
    assert!(completed >= runs / 2, "most actions complete: {completed} of {runs}");
}

// ───────────────────────────── a workflow under SIGKILL ─────────────────────────────

/// A proxy in front of PD that records every mutating request PD answered, in order: the test's
/// view of what reached the cluster, independent of anything the daemon wrote down.
struct Recorder {
    upstream: Mutex<String>,
    received: Mutex<Vec<String>>,
    client: reqwest::Client,
}

impl Recorder {
    /// Serves the proxy on loopback; its URL.
    fn serve(rt: &tokio::runtime::Runtime) -> (Arc<Recorder>, String) {
        let recorder = Arc::new(Recorder {
            upstream: Mutex::new(String::new()),
            received: Mutex::default(),
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
        });
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(forward).with_state(recorder.clone());
        rt.spawn(async move { axum::serve(listener, app).await });
        (recorder, url)
    }

    /// Forwards to another PD from now on, with an empty record.
    fn point_at(&self, pd: &str) {
        *self.upstream.lock().unwrap() = pd.to_owned();
        self.received.lock().unwrap().clear();
    }

    fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

async fn forward(
    State(recorder): State<Arc<Recorder>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Forwarded in a task of its own: a daemon killed mid-request does not cut the request to PD
    // short, so what is recorded is what PD received.
    let task = tokio::spawn(async move {
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let url = format!("{}{path}", recorder.upstream.lock().unwrap());
        let mut request = recorder.client.request(method.clone(), url).body(body.clone());
        if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let reply = request.send().await?;
        if method != Method::GET && method != Method::HEAD {
            let line = format!("{method} {path} {}", String::from_utf8_lossy(&body));
            recorder.received.lock().unwrap().push(line.trim_end().to_owned());
        }
        let status = reply.status();
        let content_type = reply.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = reply.bytes().await?;
        Ok::<_, reqwest::Error>((status, content_type, bytes))
    });
    match task.await {
        Ok(Ok((status, content_type, bytes))) => {
            let mut response = (status, bytes).into_response();
            if let Some(content_type) = content_type {
                response.headers_mut().insert(header::CONTENT_TYPE, content_type);
            }
            response
        }
        _ => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// A running daemon and its API.
struct Daemon {
    process: Proc,
    api: String,
}

fn start_daemon(dir: &Path) -> Daemon {
    let _ = std::fs::remove_file(dir.join("daemon.json"));
    let process = spawn(dir, &["run"]);
    let api = wait_for(60, POLL, "the daemon's API", |_| daemon_api_url(dir));
    Daemon { process, api }
}

fn sigkill(mut daemon: Daemon) {
    daemon.process.0.kill().unwrap();
    daemon.process.0.wait().unwrap();
}

fn sigterm(mut daemon: Daemon) {
    common::sigterm(daemon.process.0.id());
    let status = daemon.process.0.wait().unwrap();
    assert!(status.success(), "the daemon stops cleanly: {status:?}");
}

fn post(rt: &tokio::runtime::Runtime, url: &str, token: &str, body: Value) -> Value {
    rt.block_on(async {
        let reply = reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = reply.status();
        let value: Value = serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap();
        assert!(status.is_success(), "POST {url}: {status} {value}");
        value
    })
}

/// Where a run stands, in words: the status when settled, else the step that is moving.
fn phase(run: &Value) -> String {
    let status = run["status"].as_str().unwrap_or("?");
    if !matches!(status, "running" | "compensating") {
        return status.to_owned();
    }
    let steps = run["steps"].as_array().cloned().unwrap_or_default();
    let moving = steps.iter().find(|s| !matches!(s["state"]["state"].as_str(), Some("pending" | "done")));
    match moving {
        Some(s) => {
            format!("{status}: {} {}", s["name"].as_str().unwrap_or("?"), s["state"]["state"].as_str().unwrap_or("?"))
        }
        None if steps.iter().all(|s| s["state"]["state"] == "pending") => format!("{status}: before the first step"),
        None => format!("{status}: between steps"),
    }
}

/// One drain of store 2 on a fresh simulated cluster, the daemon SIGKILLed after each delay (ms
/// after the run's approval, then after each restart); returns where the run stood at each kill and
/// how long it took from approval to settle. With `compensate`, store 1's disk is full, so PD has
/// too little room for store 2's replicas: the offline step is refused and the eviction undone.
fn drain_once(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    recorder: &Recorder,
    seed: u64,
    label: &str,
    compensate: bool,
    kills: &[u64],
) -> (Vec<String>, Duration) {
    let sim_dir = tempfile::tempdir().unwrap();
    let _sim = spawn(
        sim_dir.path(),
        &["sim", "--stores", "4", "--regions", "40", "--speed", "20", "--seed", &seed.to_string()],
    );
    let discovery = sim_dir.path().join("sim-control.json");
    wait_for(60, POLL, "the simulator", |_| discovery.exists().then_some(()));
    let sim: Value = serde_json::from_slice(&std::fs::read(&discovery).unwrap()).unwrap();
    let pd = sim["pd_urls"][0].as_str().unwrap().to_owned();
    wait_for(30, POLL, "store 2 to lead regions", |_| {
        let store = get(rt, &format!("{pd}/pd/api/v1/store/2"))?;
        (store["status"]["leader_count"].as_u64()? > 0).then_some(())
    });
    if compensate {
        let fault = host(sim_dir.path(), &["sim", "fault", "fill-disk", "1"]);
        assert!(fault.status.success(), "{}", String::from_utf8_lossy(&fault.stderr));
    }
    recorder.point_at(&pd);

    let mut daemon = start_daemon(dir);
    let token = std::fs::read_to_string(dir.join("api-token")).unwrap().trim().to_owned();
    let started = post(
        rt,
        &format!("{}/api/v1/workflows", daemon.api),
        &token,
        json!({"name": "drain-store", "params": {"store": 2}}),
    );
    let id = started["workflow"]["id"].as_str().unwrap().to_owned();
    post(rt, &format!("{}/api/v1/workflows/{id}/approve", daemon.api), &token, json!({"reason": label}));
    let mut phases = Vec::new();
    for &delay in kills {
        std::thread::sleep(Duration::from_millis(delay));
        let run = get(rt, &format!("{}/api/v1/workflows/{id}", daemon.api)).map(|r| phase(&r["workflow"]));
        sigkill(daemon);
        phases.push(run.unwrap_or_else(|| "unknown".into()));
        daemon = start_daemon(dir);
    }
    let run = wait_for(60, POLL, "the workflow to settle", |_| {
        let run = get(rt, &format!("{}/api/v1/workflows/{id}", daemon.api))?["workflow"].clone();
        (!matches!(run["status"].as_str()?, "running" | "compensating" | "awaiting-approval")).then_some(run)
    });
    // From the approval to the end, by the run's own clock (the daemon's, not this test's polling).
    let took = Duration::from_millis(
        run["finished_ms"].as_u64().unwrap_or(0).saturating_sub(run["approval"]["at_ms"].as_u64().unwrap_or(0)),
    );
    if std::env::var_os("WORKFLOW_CRASH_VERBOSE").is_some() {
        eprintln!("{label}: killed at {phases:?}; history:");
        for e in run["history"].as_array().unwrap() {
            eprintln!("  {} {} → {} by {}: {}", e["step"], e["from"], e["to"], e["actor"], e["reason"]);
        }
    }
    let actions = get(rt, &format!("{}/api/v1/actions?status=all", daemon.api)).expect("actions");
    let since = run["created_ms"].as_u64().unwrap_or(0);
    let audited =
        get(rt, &format!("{}/api/v1/audit?kind=state-change&since={since}&limit=10000", daemon.api)).expect("audit");
    sigterm(daemon);

    // The run ends as it must: completed, or failed with the eviction undone.
    let ctx = format!("{label} (killed at {phases:?}): {run:#}");
    let state = |i: usize| run["steps"][i]["state"]["state"].as_str().unwrap_or("?").to_owned();
    if compensate {
        assert_eq!(run["status"], "failed", "{ctx}");
        assert_eq!((state(0).as_str(), state(1).as_str()), ("compensated", "failed"), "{ctx}");
        assert!(run["failure"].as_str().unwrap().contains("offline-store refused"), "{ctx}");
    } else {
        assert_eq!(run["status"], "completed", "{ctx}");
        assert_eq!((state(0).as_str(), state(1).as_str()), ("done", "done"), "{ctx}");
    }

    // Each step's action exists once, every action of the run is one of its steps', and each
    // completed.
    let ours: Vec<&Value> =
        actions["actions"].as_array().unwrap().iter().filter(|a| a["workflow"]["workflow"] == id.as_str()).collect();
    let of = |step: u64, compensation: bool| -> Vec<(String, String)> {
        ours.iter()
            .filter(|a| a["workflow"]["step"] == step && a["workflow"]["compensation"] == compensation)
            .map(|a| (a["name"].as_str().unwrap().to_owned(), a["status"].as_str().unwrap().to_owned()))
            .collect()
    };
    let one = |name: &str| vec![(name.to_owned(), "completed".to_owned())];
    assert_eq!(of(0, false), one("evict-leaders"), "{ctx}");
    assert!(of(1, true).is_empty(), "{ctx}");
    if compensate {
        assert!(of(1, false).is_empty(), "{ctx}");
        assert_eq!(of(0, true), one("restore-leaders"), "{ctx}");
    } else {
        assert_eq!(of(1, false), one("offline-store"), "{ctx}");
        assert!(of(0, true).is_empty(), "{ctx}");
    }
    let mut referenced: Vec<&str> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["actions"].as_array().unwrap())
        .filter_map(Value::as_str)
        .collect();
    let mut stored: Vec<&str> = ours.iter().filter_map(|a| a["id"].as_str()).collect();
    referenced.sort_unstable();
    stored.sort_unstable();
    assert_eq!(referenced, stored, "{ctx}");

    // PD received each change exactly once.
    let received = recorder.received();
    let second =
        if compensate { "DELETE /pd/api/v1/schedulers/evict-leader-scheduler-2" } else { "DELETE /pd/api/v1/store/2" };
    assert_eq!(received.len(), 2, "{ctx}\nPD received: {received:#?}");
    assert!(
        received[0].starts_with("POST /pd/api/v1/schedulers ")
            && received[0].contains(r#""evict-leader-scheduler""#)
            && received[0].contains(r#""store_id":2"#),
        "{ctx}\nPD received: {received:#?}"
    );
    assert_eq!(received[1], second, "{ctx}\nPD received: {received:#?}");

    // Every change the run records was audited before it was written, crash or no crash.
    let mut trail: Vec<String> = audited["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["event"])
        .filter(|e| e["subject"] == "workflow")
        .map(|e| format!("{} {} → {} by {}", e["id"], e["from"], e["to"], e["actor"]))
        .collect();
    for event in run["history"].as_array().unwrap() {
        let event_id = match event["step"].as_str() {
            Some(step) => format!("{id}/{step}"),
            None => id.clone(),
        };
        let line = format!("{} {} → {} by {}", Value::from(event_id), event["from"], event["to"], event["actor"]);
        let Some(at) = trail.iter().position(|t| t == &line) else {
            panic!("{ctx}\nnot audited: {line}\naudit trail: {trail:#?}");
        };
        trail.remove(at);
    }

    let verify = host(dir, &["audit", "verify"]);
    assert!(verify.status.success(), "{label}: {}", String::from_utf8_lossy(&verify.stdout));
    (phases, took)
}

#[test]
fn sigkill_at_any_point_of_a_workflow_loses_nothing_and_runs_nothing_twice() {
    let kills: u64 = std::env::var("WORKFLOW_CRASH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (recorder, proxy) = Recorder::serve(&rt);
    let dir = tempfile::tempdir().unwrap();
    // Only the workflow's approved actions run: the diagnoser's proposals all wait for a human.
    std::fs::write(
        dir.path().join("operator.toml"),
        format!(
            r#"
[api]
listen = "127.0.0.1:0"
[monitor]
interval_ms = 300
[actions]
tick_ms = 100
entity_cooldown_secs = 0
max_per_hour = 100000
approval = {{ low = "required", medium = "required", high = "required" }}
[endpoints.pd]
urls = [{proxy:?}]
[plugins.tikv]
grants = [{{ endpoint = "pd", methods = ["GET", "POST", "DELETE"], paths = ["/pd/api/v1/**"] }}]
settings = {{ "status-probes" = "false" }}
"#
        ),
    )
    .unwrap();
    let mode = host(dir.path(), &["safety", "mode", "execute", "--reason", "crash test"]);
    assert!(mode.status.success(), "{}", String::from_utf8_lossy(&mode.stderr));

    // Uninterrupted drains, both ways, say how long a run takes here: kills spread over that.
    let (_, happy) = drain_once(&rt, dir.path(), &recorder, 1, "uninterrupted", false, &[]);
    let (_, failing) = drain_once(&rt, dir.path(), &recorder, 2, "uninterrupted, compensating", true, &[]);
    let span = |took: Duration| (took.as_millis() as u64).max(500);
    eprintln!("uninterrupted: a drain settles in {happy:?}, a compensated one in {failing:?}");

    let mut phases: BTreeMap<String, u64> = BTreeMap::new();
    let (mut done, mut run) = (0u64, 0u64);
    while done < kills {
        // A third of the runs compensate; every fourth is killed twice (the second time during
        // or just after the restart's recovery).
        let compensate = run % 3 == 2;
        let spread = span(if compensate { failing } else { happy });
        let mut delays = vec![scatter(run + 1, spread)];
        if run % 4 == 3 && done + 1 < kills {
            delays.push(scatter(run + 101, 1_500));
        }
        let (at, _) = drain_once(&rt, dir.path(), &recorder, run + 3, &format!("run {run}"), compensate, &delays);
        done += at.len() as u64;
        for phase in at {
            *phases.entry(phase).or_default() += 1;
        }
        run += 1;
    }
    eprintln!("{done} kills in {run} runs; the runs stood at: {phases:#?}");
    assert!(phases.len() >= 4, "the kills landed in too few places: {phases:?}");
}
