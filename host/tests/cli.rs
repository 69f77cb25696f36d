//! The `operator-host` binary end to end: plugins, the audit log and its tamper detection, and
//! clear errors for bad input.

use std::path::Path;

use redb::{ReadableDatabase, TableDefinition};

const AUDIT_RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_records");

mod common;

use common::{host, spawn, stderr, stdout};

#[test]
fn lists_and_inspects_the_built_in_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let list = host(dir.path(), &["plugins", "list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    assert!(stdout(&list).contains("tools"), "{}", stdout(&list));

    let inspect = host(dir.path(), &["plugins", "inspect", "tools", "--json"]);
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    let document: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(document["world"], "tools");
    let tools: Vec<&str> =
        document["catalogue"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(tools, ["wait", "log", "notify"]);
    assert_eq!(document["grants"].as_array().unwrap().len(), 0, "nothing is granted without configuration");

    let missing = host(dir.path(), &["plugins", "inspect", "nosuch"]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("no plugin named `nosuch`"), "{}", stderr(&missing));
}

#[test]
fn a_plugin_whose_digest_does_not_match_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = dir.path().join("plugins").join("forged");
    std::fs::create_dir_all(&plugin_dir).unwrap();
    std::fs::write(plugin_dir.join("forged.wasm"), b"\0asm not really").unwrap();
    std::fs::write(
        plugin_dir.join("plugin.toml"),
        format!(
            "name = \"forged\"\nversion = \"1.0.0\"\nworld = \"subject\"\ncomponent = \"forged.wasm\"\nsha256 = \"{}\"\n",
            "ab".repeat(32)
        ),
    )
    .unwrap();

    let list = host(dir.path(), &["plugins", "list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    let text = stdout(&list);
    assert!(text.contains("REFUSED forged"), "{text}");
    assert!(text.contains("plugin.toml says abab"), "{text}");
    assert!(text.contains("the plugin is refused"), "{text}");

    let audit = host(dir.path(), &["audit", "list", "--kind", "plugin-load", "--json"]);
    let refused =
        stdout(&audit).lines().map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()).any(|record| {
            record["event"]["plugin"] == "forged" && record["event"]["outcome"].to_string().contains("refused")
        });
    assert!(refused, "{}", stdout(&audit));
}

#[test]
fn a_component_that_is_not_webassembly_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = dir.path().join("plugins").join("junk");
    std::fs::create_dir_all(&plugin_dir).unwrap();
    let bytes = b"definitely not a component";
    std::fs::write(plugin_dir.join("plugin.wasm"), bytes).unwrap();
    let sha = operator_host::digest::sha256_hex(bytes);
    std::fs::write(
        plugin_dir.join("plugin.toml"),
        format!("name = \"junk\"\nversion = \"1\"\nworld = \"tools\"\nsha256 = \"{sha}\"\n"),
    )
    .unwrap();
    let text = stdout(&host(dir.path(), &["plugins", "list"]));
    assert!(text.contains("REFUSED junk"), "{text}");
    assert!(text.contains("not a valid WebAssembly component"), "{text}");
}

#[test]
fn audit_verify_finds_a_record_altered_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    assert!(host(dir.path(), &["plugins", "inspect", "tools"]).status.success());
    let verify = host(dir.path(), &["audit", "verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    assert!(stdout(&verify).contains("hash chain verified"), "{}", stdout(&verify));

    // Change one character of record 2 directly in the database file.
    {
        let db = redb::Database::open(dir.path().join("operator.redb")).unwrap();
        let original = {
            let read = db.begin_read().unwrap();
            let table = read.open_table(AUDIT_RECORDS).unwrap();
            table.get(2).unwrap().unwrap().value().to_vec()
        };
        let text = String::from_utf8(original).unwrap();
        let altered = text.replacen("loaded", "LOADED", 1);
        assert_ne!(text, altered, "record 2 is a plugin load: {text}");
        let write = db.begin_write().unwrap();
        {
            let mut table = write.open_table(AUDIT_RECORDS).unwrap();
            table.insert(2, altered.as_bytes()).unwrap();
        }
        write.commit().unwrap();
    }

    let verify = host(dir.path(), &["audit", "verify"]);
    assert_eq!(verify.status.code(), Some(2), "{}", stdout(&verify));
    let message = stderr(&verify);
    assert!(message.contains("record 2"), "{message}");
}

#[test]
fn audit_verify_finds_a_removed_record() {
    let dir = tempfile::tempdir().unwrap();
    assert!(host(dir.path(), &["plugins", "inspect", "tools"]).status.success());
    {
        let db = redb::Database::open(dir.path().join("operator.redb")).unwrap();
        let write = db.begin_write().unwrap();
        {
            let mut table = write.open_table(AUDIT_RECORDS).unwrap();
            table.remove(2).unwrap();
        }
        write.commit().unwrap();
    }
    let verify = host(dir.path(), &["audit", "verify"]);
    assert_eq!(verify.status.code(), Some(2));
    assert!(stderr(&verify).contains("record 2"), "{}", stderr(&verify));
}

#[test]
fn audit_list_show_and_export() {
    let dir = tempfile::tempdir().unwrap();
    assert!(host(dir.path(), &["plugins", "inspect", "tools"]).status.success());

    let list = host(dir.path(), &["audit", "list"]);
    assert!(list.status.success());
    assert!(stdout(&list).contains("plugin-call"), "{}", stdout(&list));
    assert!(stdout(&list).contains("info ok"), "{}", stdout(&list));

    let calls = host(dir.path(), &["audit", "list", "--kind", "plugin-call", "--plugin", "tools", "--json"]);
    let lines: Vec<serde_json::Value> = stdout(&calls).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{}", stdout(&calls));
    assert_eq!(lines[0]["event"]["export"], "info");
    assert_eq!(lines[0]["event"]["args_sha256"].as_str().unwrap().len(), 64);

    let denied = host(dir.path(), &["audit", "list", "--denied"]);
    assert!(stdout(&denied).contains("no audit records match"), "{}", stdout(&denied));

    let show = host(dir.path(), &["audit", "show", "1"]);
    assert!(show.status.success());
    assert!(stdout(&show).contains("prev hash  0000000000"), "{}", stdout(&show));

    let export = host(dir.path(), &["audit", "export", "--jsonl"]);
    let exported = stdout(&export).lines().count();
    let all = host(dir.path(), &["audit", "list", "--limit", "100000", "--json"]);
    assert_eq!(exported, stdout(&all).lines().count());
    assert!(exported >= 3);

    let bad_kind = host(dir.path(), &["audit", "list", "--kind", "gossip"]);
    assert!(!bad_kind.status.success());
    assert!(stderr(&bad_kind).contains("unknown kind `gossip`"), "{}", stderr(&bad_kind));
    let bad_since = host(dir.path(), &["audit", "list", "--since", "yesterday-ish"]);
    assert!(!bad_since.status.success());
    assert!(stderr(&bad_since).contains("neither a duration"), "{}", stderr(&bad_since));
}

#[test]
fn a_bad_configuration_is_refused_with_its_place_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("operator.toml"),
        "[runtime]\nmemory_limit_mib = 0\n[plugins.tools]\ngrants = [{ endpoint = \"hook\", methods = [\"POST\"], paths = [\"/\"] }]\n",
    )
    .unwrap();
    let output = host(dir.path(), &["plugins", "list"]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("operator.toml"), "{message}");
    assert!(message.contains("runtime.memory_limit_mib"), "{message}");
    assert!(message.contains("endpoint `hook`, which is not configured"), "{message}");
    assert!(!dir.path().join("operator.redb").exists(), "nothing was written");
}

#[test]
fn sim_arguments_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let output = host(dir.path(), &["sim", "--speed", "0"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("the speed must be between 0.01 and 1000"), "{}", stderr(&output));
    let output = host(dir.path(), &["sim", "--stores", "0"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--stores"), "{}", stderr(&output));
}

#[test]
fn run_endpoint_arguments_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    for (argument, why) in [
        ("http://10.0.0.1:8080", "NAME=URL"),
        ("=http://10.0.0.1:8080", "name before `=` is empty"),
        ("api=not a url", "`not a url` is not a URL"),
        ("api=http://10.0.0.1:8080,", "empty URL"),
    ] {
        let output = host(dir.path(), &["run", "--endpoint", argument, "--duration", "1"]);
        assert!(!output.status.success(), "{argument} is refused");
        let message = stderr(&output);
        assert!(message.contains("--endpoint") && message.contains(why), "{argument}: {message}");
    }
    let output = host(
        dir.path(),
        &["run", "--endpoint", "api=http://10.0.0.1:1", "--endpoint", "api=http://10.0.0.2:1", "--duration", "1"],
    );
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--endpoint api is given more than once"), "{}", stderr(&output));
    assert!(!dir.path().join("operator.redb").exists(), "nothing was written");
}

/// Writes one open ticket straight into a fresh data directory.
fn seed_ticket(data_dir: &Path) -> String {
    use operator_host::monitor::tickets::{Ticket, TicketEvent, TicketStatus, TicketStore};
    let store = operator_host::store::Store::open(data_dir).unwrap();
    let tickets = TicketStore::new(store);
    let id = tickets.next_id().unwrap();
    tickets
        .save(&Ticket {
            id: id.clone(),
            plugin: "tikv".into(),
            invariant: "store-down".into(),
            entity: "store-2".into(),
            severity: "critical".into(),
            status: TicketStatus::Open,
            message: "store 2 is Down".into(),
            evidence: vec![],
            first_seen_ms: 1_800_000_000_000,
            opened_at_ms: 1_800_000_000_000,
            last_seen_ms: 1_800_000_010_000,
            occurrences: 3,
            absent_since_ms: None,
            resolved_at_ms: None,
            resolution: None,
            reopened: 0,
            diagnoses: vec![serde_json::json!({
                "diagnoser": "rules",
                "diagnosis": {"summary": "store 2 is lost (S2)", "root_cause": "the host is gone", "confidence": 0.8,
                    "recommendations": [{"action": "offline-store", "params": {"store": 2}, "reason": "repair now",
                        "urgency": "soon", "expected_outcome": "Tombstone", "risks": "none"}]}
            })],
            actions: vec![],
            history: vec![TicketEvent {
                at_ms: 1_800_000_000_000,
                from: None,
                to: TicketStatus::Open,
                reason: "store 2 is Down".into(),
                actor: "monitor".into(),
            }],
        })
        .unwrap();
    id
}

#[test]
fn tickets_are_listed_shown_held_and_resolved_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let id = seed_ticket(dir.path());
    let list = host(dir.path(), &["tickets", "list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    assert!(stdout(&list).contains(&id) && stdout(&list).contains("store-down@store-2"), "{}", stdout(&list));

    let show = host(dir.path(), &["tickets", "show", &id]);
    let text = stdout(&show);
    assert!(text.contains("store 2 is lost (S2)") && text.contains("offline-store store=2"), "{text}");

    let json = host(dir.path(), &["tickets", "show", &id, "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["ticket"]["status"], "open");

    assert!(host(dir.path(), &["tickets", "hold", &id, "--reason", "disk swap"]).status.success());
    let held = host(dir.path(), &["tickets", "list", "--status", "held", "--json"]);
    let held: serde_json::Value = serde_json::from_slice(&held.stdout).unwrap();
    assert_eq!(held[0]["id"], id.as_str());
    assert!(host(dir.path(), &["tickets", "unhold", &id]).status.success());
    let unhold_again = host(dir.path(), &["tickets", "unhold", &id]);
    assert!(!unhold_again.status.success() && stderr(&unhold_again).contains("not held"), "{}", stderr(&unhold_again));
    assert!(host(dir.path(), &["tickets", "resolve", &id, "--reason", "fixed by hand"]).status.success());
    let again = host(dir.path(), &["tickets", "resolve", &id]);
    assert!(!again.status.success() && stderr(&again).contains("is resolved"), "{}", stderr(&again));
    let missing = host(dir.path(), &["tickets", "show", "T-999999"]);
    assert!(stderr(&missing).contains("no ticket T-999999"), "{}", stderr(&missing));

    let audit = host(dir.path(), &["audit", "list"]);
    let audit = stdout(&audit);
    assert!(audit.contains("open → held by cli") && audit.contains("fixed by hand"), "{audit}");
    assert!(host(dir.path(), &["audit", "verify"]).status.success());
}

#[test]
fn sim_fault_finds_the_running_simulator_and_injects_faults() {
    let dir = tempfile::tempdir().unwrap();
    // Without a simulator: a clear error saying what to do.
    let none = host(dir.path(), &["sim", "fault", "kill-store", "1"]);
    assert!(!none.status.success());
    assert!(stderr(&none).contains("operator-host sim"), "{}", stderr(&none));

    let _sim = spawn(dir.path(), &["sim", "--stores", "3", "--regions", "30", "--speed", "5"]);
    let discovery = dir.path().join("sim-control.json");
    for _ in 0..200 {
        if discovery.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(discovery.exists(), "the simulator writes its discovery file");

    let kill = host(dir.path(), &["sim", "fault", "kill-store", "1"]);
    assert!(kill.status.success(), "{}", stderr(&kill));
    let list = host(dir.path(), &["sim", "fault", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list["faults"]["active"][0]["kind"], "kill-store");
    assert!(list["catalogue"].as_array().unwrap().len() >= 12);

    let bad = host(dir.path(), &["sim", "fault", "slow-disk", "42"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("400") && stderr(&bad).contains("42"), "{}", stderr(&bad));

    let clear = host(dir.path(), &["sim", "fault", "clear"]);
    assert!(clear.status.success() && stdout(&clear).contains("cleared"), "{}", stdout(&clear));
    let list = host(dir.path(), &["sim", "fault", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list["faults"]["active"].as_array().unwrap().len(), 0);

    // --control overrides the discovery file.
    let wrong = host(dir.path(), &["sim", "fault", "list", "--control", "http://127.0.0.1:1"]);
    assert!(!wrong.status.success() && stderr(&wrong).contains("cannot reach"), "{}", stderr(&wrong));
}

#[test]
fn shell_completions_are_printed() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = host(dir.path(), &["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        assert!(stdout(&out).contains("operator-host") && stdout(&out).contains("tickets"), "{shell}");
    }
    let bad = host(dir.path(), &["completions", "tcsh"]);
    assert!(!bad.status.success() && stderr(&bad).contains("tcsh"));
}
