//! Helpers shared by the tests that run the `operator-host` binary: running it to its end or in the
//! background, reading its output, polling until something holds, stopping a daemon.
//!
//! Each test file that uses them declares `mod common;` and uses only some of them.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `operator-host` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_operator-host");

/// `operator-host --data-dir DIR`, logging at `log` (`OPERATOR_LOG`), and reading the configuration
/// of the data directory whatever `OPERATOR_CONFIG` the environment holds.
pub fn command(data_dir: &Path, log: &str) -> Command {
    let mut command = Command::new(BIN);
    command.arg("--data-dir").arg(data_dir).env_remove("OPERATOR_CONFIG").env("OPERATOR_LOG", log);
    command
}

/// Runs `operator-host --data-dir DIR ARGS…` to its end, logging warnings and errors.
pub fn host(data_dir: &Path, args: &[&str]) -> Output {
    host_logging(data_dir, "warn", args)
}

/// Runs `operator-host --data-dir DIR ARGS…` to its end, logging at `log`.
pub fn host_logging(data_dir: &Path, log: &str, args: &[&str]) -> Output {
    command(data_dir, log).args(args).output().expect("running operator-host")
}

/// What a run printed on stdout.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What a run printed on stderr.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A child process, killed (and reaped) when dropped, so that a failing assertion leaves nothing
/// running.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `operator-host --data-dir DIR ARGS…` in the background, stdout discarded, logging
/// warnings and errors.
pub fn spawn(data_dir: &Path, args: &[&str]) -> Proc {
    spawn_logging(data_dir, "warn", args)
}

/// Starts `operator-host --data-dir DIR ARGS…` in the background, stdout discarded, logging at `log`.
pub fn spawn_logging(data_dir: &Path, log: &str, args: &[&str]) -> Proc {
    Proc(command(data_dir, log).args(args).stdout(Stdio::null()).spawn().expect("starting operator-host"))
}

/// Polls `probe` every `every` until it returns `Some`, at most `secs` seconds. The probe may write
/// what it last saw into its argument; a timeout names it.
pub fn wait_for<T>(secs: u64, every: Duration, what: &str, mut probe: impl FnMut(&mut String) -> Option<T>) -> T {
    let started = Instant::now();
    let mut seen = String::new();
    loop {
        if let Some(value) = probe(&mut seen) {
            return value;
        }
        if seen.is_empty() {
            assert!(started.elapsed() < Duration::from_secs(secs), "timed out after {secs} s waiting for {what}");
        } else {
            assert!(
                started.elapsed() < Duration::from_secs(secs),
                "timed out after {secs} s waiting for {what}; last seen: {seen}"
            );
        }
        std::thread::sleep(every);
    }
}

/// The API URL a running daemon wrote into `<data-dir>/daemon.json`, once it did.
pub fn daemon_api_url(data_dir: &Path) -> Option<String> {
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(data_dir.join("daemon.json")).ok()?).ok()?;
    Some(info["api_url"].as_str()?.to_owned())
}

/// Sends SIGTERM (a daemon's graceful stop) to `pid` without a libc dependency; whether `kill`
/// succeeded.
pub fn sigterm(pid: u32) -> bool {
    Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap().success()
}
