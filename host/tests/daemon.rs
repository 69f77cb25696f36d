//! The daemon end to end against the simulator: a leader skew becomes a ticket, the rules
//! diagnose it and propose a transfer-leader, a human approves it through the CLI (which goes
//! through the daemon's API), it executes, verifies, and the ticket resolves; the audit chain
//! verifies after a clean stop.

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
        .env("OPERATOR_LOG", "warn")
        .output()
        .expect("running operator-host")
}

fn json(data_dir: &Path, args: &[&str]) -> Value {
    let out = host(data_dir, args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Polls `probe` every 500 ms until it returns `Some`, at most `secs` seconds.
fn wait_for<T>(secs: u64, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(started.elapsed() < Duration::from_secs(secs), "timed out after {secs} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn leader_skew_is_detected_diagnosed_approved_executed_verified_and_resolved() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("operator.toml"),
        r#"
[api]
listen = "127.0.0.1:0"
[monitor]
interval_ms = 1000
settle_secs = 5
[actions]
tick_ms = 250
entity_cooldown_secs = 0
[actions.approval.overrides]
transfer-leader = "required"
[plugins.tikv.settings]
"grace.leader-imbalance" = "0"
"#,
    )
    .unwrap();
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_operator-host"))
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "run",
                "--sim",
                "--sim-speed",
                "10",
                "--sim-stores",
                "4",
                "--sim-regions",
                "120",
                "--mode",
                "execute",
            ])
            .env("OPERATOR_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(60, "the daemon's API", || dir.path().join("daemon.json").exists().then_some(()));
    std::thread::sleep(Duration::from_secs(3));
    assert!(json(dir.path(), &["tickets", "list", "--json"]).as_array().unwrap().is_empty(), "healthy at start");

    // Balance-leader stays paused for 60 simulated seconds (6 s here), then evens leaders out.
    let fault = host(dir.path(), &["sim", "fault", "leader-skew", "1", "--hold-secs", "60"]);
    assert!(fault.status.success(), "{}", String::from_utf8_lossy(&fault.stderr));

    let ticket = wait_for(30, "a leader-imbalance ticket", || {
        let list = json(dir.path(), &["tickets", "list", "--json"]);
        list.as_array().unwrap().iter().find(|t| t["invariant"] == "leader-imbalance").cloned()
    });
    let ticket_id = ticket["id"].as_str().unwrap().to_owned();
    let action = wait_for(30, "a transfer-leader proposal awaiting approval", || {
        let list = json(dir.path(), &["actions", "list", "--status", "awaiting-approval", "--json"]);
        list.as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "transfer-leader" && a["ticket"] == ticket_id.as_str())
            .cloned()
    });
    let action_id = action["id"].as_str().unwrap().to_owned();
    let shown = host(dir.path(), &["tickets", "show", &ticket_id]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("(S3)") && shown.contains("transfer-leader"), "{shown}");

    let approve = host(dir.path(), &["actions", "approve", &action_id, "--reason", "checked the leader spread"]);
    assert!(approve.status.success(), "{}", String::from_utf8_lossy(&approve.stderr));
    let done = wait_for(30, "the action to complete and verify", || {
        let a = json(dir.path(), &["actions", "show", &action_id, "--json"]);
        (a["status"] == "completed" && a["verification"]["state"] == "verified").then_some(a)
    });
    assert_eq!(done["decision"]["reason"], "checked the leader spread");
    wait_for(90, "the ticket to resolve", || {
        let t = json(dir.path(), &["tickets", "show", &ticket_id, "--json"]);
        (t["ticket"]["status"] == "resolved").then_some(())
    });

    // The API's metrics count it.
    let info: Value = serde_json::from_slice(&std::fs::read(dir.path().join("daemon.json")).unwrap()).unwrap();
    let url = format!("{}/metrics", info["api_url"].as_str().unwrap());
    let metrics = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() });
    assert!(metrics.contains("operator_actions"), "{metrics}");
    // The rules diagnosed the ticket once, and the time it took is a sample of the histogram.
    assert!(
        metrics.lines().any(|l| l.starts_with("operator_diagnosis_duration_seconds_count{diagnoser=\"rules\"}")
            && l.split_whitespace().last().and_then(|v| v.parse::<f64>().ok()).is_some_and(|v| v >= 1.0)),
        "{metrics}"
    );

    // A clean stop, then the audit chain verifies.
    unsafe_sigterm(daemon.0.id());
    let status = daemon.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let verify = host(dir.path(), &["audit", "verify"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}

/// Sends SIGTERM (the daemon's graceful stop) without a libc dependency.
fn unsafe_sigterm(pid: u32) {
    let status = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
    assert!(status.success());
}

#[test]
fn a_ticket_can_be_diagnosed_again_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("operator.toml"), "[api]\nlisten = \"127.0.0.1:0\"\n[monitor]\ninterval_ms = 500\n")
        .unwrap();
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_operator-host"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["run", "--sim", "--sim-speed", "5", "--sim-stores", "4", "--sim-regions", "60"])
            .env("OPERATOR_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(60, "the daemon's API", || dir.path().join("daemon.json").exists().then_some(()));
    assert!(host(dir.path(), &["sim", "fault", "kill-store", "3"]).status.success());
    let ticket = wait_for(30, "a store-down ticket", || {
        let list = json(dir.path(), &["tickets", "list", "--json"]);
        list.as_array().unwrap().iter().find(|t| t["entity"] == "store-3").cloned()
    });
    let id = ticket["id"].as_str().unwrap().to_owned();
    // While the daemon runs, it diagnoses; by hand only once it stopped.
    let busy = host(dir.path(), &["diagnose", &id]);
    assert!(!busy.status.success() && String::from_utf8_lossy(&busy.stderr).contains("daemon"));
    unsafe_sigterm(daemon.0.id());
    assert!(daemon.0.wait().unwrap().success());

    let out = host(dir.path(), &["diagnose", &id, "--diagnoser", "rules", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let record: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["diagnoser"], "rules");
    assert!(record["diagnosis"]["summary"].as_str().unwrap().contains("store 3"), "{record}");
    let shown = json(dir.path(), &["tickets", "show", &id, "--json"]);
    assert!(shown["ticket"]["diagnoses"].as_array().unwrap().len() >= 2, "the daemon's and the one by hand");
    let missing = host(dir.path(), &["diagnose", "T-999999"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no ticket T-999999"));
}

#[test]
fn workflows_are_started_approved_and_followed_through_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("operator.toml"),
        "[api]\nlisten = \"127.0.0.1:0\"\n[monitor]\ninterval_ms = 500\n[actions]\ntick_ms = 250\nentity_cooldown_secs = 0\n",
    )
    .unwrap();
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_operator-host"))
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "run",
                "--sim",
                "--sim-speed",
                "20",
                "--sim-stores",
                "5",
                "--sim-regions",
                "60",
                "--mode",
                "execute",
            ])
            .env("OPERATOR_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(60, "the daemon's API", || dir.path().join("daemon.json").exists().then_some(()));

    // Every command below goes through the API: the daemon holds the database.
    let defs = json(dir.path(), &["workflows", "definitions", "--json"]);
    assert_eq!(defs["definitions"][0]["definition"]["name"], "drain-store", "{defs}");
    let text = String::from_utf8_lossy(&host(dir.path(), &["workflows", "definitions"]).stdout).into_owned();
    assert!(text.contains("step offline-store: offline-store, then wait for store-state-is"), "{text}");
    let bad = host(dir.path(), &["workflows", "start", "drain-store", "-p", "store=four"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`store` must be a whole number"), "{bad:?}");

    let run = json(dir.path(), &["workflows", "start", "drain-store", "-p", "store=2", "--json"]);
    assert_eq!(run["status"], "awaiting-approval", "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    let listed = json(dir.path(), &["workflows", "list", "--status", "awaiting-approval", "--json"]);
    assert_eq!(listed[0]["id"], id.as_str());
    let approve = host(dir.path(), &["workflows", "approve", &id, "--reason", "decommission", "--by", "carol"]);
    assert!(approve.status.success(), "{}", String::from_utf8_lossy(&approve.stderr));
    assert!(String::from_utf8_lossy(&approve.stdout).contains("approved: running"));

    let done = wait_for(90, "the drain to complete", || {
        let run = json(dir.path(), &["workflows", "show", &id, "--json"]);
        run["status"].as_str().is_some_and(|s| !matches!(s, "running" | "awaiting-approval")).then_some(run)
    });
    assert_eq!(done["status"], "completed", "{done:#}");
    assert_eq!(done["approval"]["by"], "api:carol");
    let shown = String::from_utf8_lossy(&host(dir.path(), &["workflows", "show", &id]).stdout).into_owned();
    assert!(shown.contains("completed") && shown.contains("2. offline-store (after evict-leaders): done"), "{shown}");
    let actions = json(dir.path(), &["actions", "list", "--status", "all", "--json"]);
    let ours: Vec<(String, String)> = actions
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["workflow"]["workflow"] == id.as_str())
        .map(|a| (a["name"].as_str().unwrap().to_owned(), a["status"].as_str().unwrap().to_owned()))
        .collect();
    let expected = [("offline-store", "completed"), ("evict-leaders", "completed")];
    assert_eq!(ours, expected.map(|(a, b)| (a.to_owned(), b.to_owned())));

    // A finished run cannot be resumed; under the kill switch nothing starts.
    let resume = host(dir.path(), &["workflows", "resume", &id]);
    assert!(!resume.status.success());
    assert!(String::from_utf8_lossy(&resume.stderr).contains("only a failed or stopped workflow resumes"));
    assert!(host(dir.path(), &["safety", "kill-switch", "--reason", "drill"]).status.success());
    let refused = host(dir.path(), &["workflows", "start", "drain-store", "-p", "store=3"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("kill switch is on"), "{refused:?}");

    unsafe_sigterm(daemon.0.id());
    assert!(daemon.0.wait().unwrap().success());
    let verify = host(dir.path(), &["audit", "verify"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    // Without the daemon the same commands read the database directly.
    let listed = json(dir.path(), &["workflows", "list", "--json"]);
    assert_eq!(listed[0]["status"], "completed");
}
