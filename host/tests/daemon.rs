//! The daemon end to end against the simulator: a leader skew becomes a ticket, the rules
//! diagnose it and propose a transfer-leader, a human approves it through the CLI (which goes
//! through the daemon's API), it executes, verifies, and the ticket resolves; the audit chain
//! verifies after a clean stop.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

mod common;

use common::{host, spawn, stderr, stdout, wait_for};

/// Polling pace of [`wait_for`] here.
const POLL: Duration = Duration::from_millis(500);

fn json(data_dir: &Path, args: &[&str]) -> Value {
    let out = host(data_dir, args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", stdout(&out)))
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
    let mut daemon = spawn(
        dir.path(),
        &["run", "--sim", "--sim-speed", "10", "--sim-stores", "4", "--sim-regions", "120", "--mode", "execute"],
    );
    wait_for(60, POLL, "the daemon's API", |_| dir.path().join("daemon.json").exists().then_some(()));
    std::thread::sleep(Duration::from_secs(3));
    assert!(json(dir.path(), &["tickets", "list", "--json"]).as_array().unwrap().is_empty(), "healthy at start");

    // Balance-leader stays paused for 60 simulated seconds (6 s here), then evens leaders out.
    let fault = host(dir.path(), &["sim", "fault", "leader-skew", "1", "--hold-secs", "60"]);
    assert!(fault.status.success(), "{}", stderr(&fault));

    let ticket = wait_for(30, POLL, "a leader-imbalance ticket", |_| {
        let list = json(dir.path(), &["tickets", "list", "--json"]);
        list.as_array().unwrap().iter().find(|t| t["invariant"] == "leader-imbalance").cloned()
    });
    let ticket_id = ticket["id"].as_str().unwrap().to_owned();
    let action = wait_for(30, POLL, "a transfer-leader proposal awaiting approval", |_| {
        let list = json(dir.path(), &["actions", "list", "--status", "awaiting-approval", "--json"]);
        list.as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "transfer-leader" && a["ticket"] == ticket_id.as_str())
            .cloned()
    });
    let action_id = action["id"].as_str().unwrap().to_owned();
    let shown = host(dir.path(), &["tickets", "show", &ticket_id]);
    let shown = stdout(&shown);
    assert!(shown.contains("(S3)") && shown.contains("transfer-leader"), "{shown}");

    let approve = host(dir.path(), &["actions", "approve", &action_id, "--reason", "checked the leader spread"]);
    assert!(approve.status.success(), "{}", stderr(&approve));
    let done = wait_for(30, POLL, "the action to complete and verify", |_| {
        let a = json(dir.path(), &["actions", "show", &action_id, "--json"]);
        (a["status"] == "completed" && a["verification"]["state"] == "verified").then_some(a)
    });
    assert_eq!(done["decision"]["reason"], "checked the leader spread");
    wait_for(90, POLL, "the ticket to resolve", |_| {
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
    assert!(common::sigterm(daemon.0.id()));
    let status = daemon.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let verify = host(dir.path(), &["audit", "verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
}

#[test]
fn a_ticket_can_be_diagnosed_again_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("operator.toml"), "[api]\nlisten = \"127.0.0.1:0\"\n[monitor]\ninterval_ms = 500\n")
        .unwrap();
    let mut daemon =
        spawn(dir.path(), &["run", "--sim", "--sim-speed", "5", "--sim-stores", "4", "--sim-regions", "60"]);
    wait_for(60, POLL, "the daemon's API", |_| dir.path().join("daemon.json").exists().then_some(()));
    assert!(host(dir.path(), &["sim", "fault", "kill-store", "3"]).status.success());
    let ticket = wait_for(30, POLL, "a store-down ticket", |_| {
        let list = json(dir.path(), &["tickets", "list", "--json"]);
        list.as_array().unwrap().iter().find(|t| t["entity"] == "store-3").cloned()
    });
    let id = ticket["id"].as_str().unwrap().to_owned();
    // While the daemon runs, it diagnoses; by hand only once it stopped.
    let busy = host(dir.path(), &["diagnose", &id]);
    assert!(!busy.status.success() && stderr(&busy).contains("daemon"));
    assert!(common::sigterm(daemon.0.id()));
    assert!(daemon.0.wait().unwrap().success());

    let out = host(dir.path(), &["diagnose", &id, "--diagnoser", "rules", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let record: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["diagnoser"], "rules");
    assert!(record["diagnosis"]["summary"].as_str().unwrap().contains("store 3"), "{record}");
    let shown = json(dir.path(), &["tickets", "show", &id, "--json"]);
    assert!(shown["ticket"]["diagnoses"].as_array().unwrap().len() >= 2, "the daemon's and the one by hand");
    let missing = host(dir.path(), &["diagnose", "T-999999"]);
    assert!(stderr(&missing).contains("no ticket T-999999"));
}

#[test]
fn workflows_are_started_approved_and_followed_through_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("operator.toml"),
        "[api]\nlisten = \"127.0.0.1:0\"\n[monitor]\ninterval_ms = 500\n[actions]\ntick_ms = 250\nentity_cooldown_secs = 0\n",
    )
    .unwrap();
    let mut daemon = spawn(
        dir.path(),
        &["run", "--sim", "--sim-speed", "20", "--sim-stores", "5", "--sim-regions", "60", "--mode", "execute"],
    );
    wait_for(60, POLL, "the daemon's API", |_| dir.path().join("daemon.json").exists().then_some(()));

    // Every command below goes through the API: the daemon holds the database.
    let defs = json(dir.path(), &["workflows", "definitions", "--json"]);
    assert_eq!(defs["definitions"][0]["definition"]["name"], "drain-store", "{defs}");
    let text = stdout(&host(dir.path(), &["workflows", "definitions"]));
    assert!(text.contains("step offline-store: offline-store, then wait for store-state-is"), "{text}");
    let bad = host(dir.path(), &["workflows", "start", "drain-store", "-p", "store=four"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("`store` must be a whole number"), "{bad:?}");

    let run = json(dir.path(), &["workflows", "start", "drain-store", "-p", "store=2", "--json"]);
    assert_eq!(run["status"], "awaiting-approval", "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    let listed = json(dir.path(), &["workflows", "list", "--status", "awaiting-approval", "--json"]);
    assert_eq!(listed[0]["id"], id.as_str());
    let approve = host(dir.path(), &["workflows", "approve", &id, "--reason", "decommission", "--by", "carol"]);
    assert!(approve.status.success(), "{}", stderr(&approve));
    assert!(stdout(&approve).contains("approved: running"));

    let done = wait_for(90, POLL, "the drain to complete", |_| {
        let run = json(dir.path(), &["workflows", "show", &id, "--json"]);
        run["status"].as_str().is_some_and(|s| !matches!(s, "running" | "awaiting-approval")).then_some(run)
    });
    assert_eq!(done["status"], "completed", "{done:#}");
    assert_eq!(done["approval"]["by"], "api:carol");
    let shown = stdout(&host(dir.path(), &["workflows", "show", &id]));
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
    assert!(stderr(&resume).contains("only a failed or stopped workflow resumes"));
    assert!(host(dir.path(), &["safety", "kill-switch", "--reason", "drill"]).status.success());
    let refused = host(dir.path(), &["workflows", "start", "drain-store", "-p", "store=3"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("kill switch is on"), "{refused:?}");

    assert!(common::sigterm(daemon.0.id()));
    assert!(daemon.0.wait().unwrap().success());
    let verify = host(dir.path(), &["audit", "verify"]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    // Without the daemon the same commands read the database directly.
    let listed = json(dir.path(), &["workflows", "list", "--json"]);
    assert_eq!(listed[0]["status"], "completed");
}
