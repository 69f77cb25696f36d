//! Crash safety: a real daemon process executing an action against a simulated cluster (a separate
//! `operator-host sim` process, so the cluster outlives the daemon) is SIGKILLed at many points.
//! After each restart the action is neither lost nor run twice (PD records exactly one admin
//! operator for it when it completed, none when it failed), and the audit chain verifies.
//!
//! `CRASH_RUNS=N` changes the number of kills (default 50).

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn host(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_operator-host"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("OPERATOR_CONFIG")
        .env("OPERATOR_LOG", "error")
        .output()
        .expect("running operator-host")
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(data_dir: &Path, args: &[&str]) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_operator-host"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("OPERATOR_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn wait_for<T>(secs: u64, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(started.elapsed() < Duration::from_secs(secs), "timed out after {secs} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn get(rt: &tokio::runtime::Runtime, url: &str) -> Option<Value> {
    rt.block_on(async { serde_json::from_slice(&reqwest::get(url).await.ok()?.bytes().await.ok()?).ok() })
}

/// A cheap deterministic spread of kill delays over the daemon's first seconds.
fn delay_ms(run: u64) -> u64 {
    (run.wrapping_mul(2_654_435_761) >> 7) % 2_500
}

#[test]
fn sigkill_at_any_point_loses_nothing_and_runs_nothing_twice() {
    let runs: u64 = std::env::var("CRASH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim_dir = tempfile::tempdir().unwrap();
    let _sim = spawn(sim_dir.path(), &["sim", "--stores", "4", "--regions", "200", "--speed", "2"]);
    let discovery = sim_dir.path().join("sim-control.json");
    wait_for(60, "the simulator", || discovery.exists().then_some(()));
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
        let api = wait_for(60, "the restarted daemon", || {
            let info: Value = serde_json::from_slice(&std::fs::read(dir.path().join("daemon.json")).ok()?).ok()?;
            Some(info["api_url"].as_str()?.to_owned())
        });
        let status = wait_for(60, "the action to finish", || {
            let a = get(&rt, &format!("{api}/api/v1/actions/{id}"))?;
            let status = a["action"]["status"].as_str()?.to_owned();
            matches!(status.as_str(), "completed" | "failed" | "cancelled").then_some(status)
        });
        Command::new("kill").arg("-TERM").arg(daemon.0.id().to_string()).status().unwrap();
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
