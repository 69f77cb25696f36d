//! The idle daemon: `operator-host run` monitoring the default simulated cluster (6 stores, 1000
//! regions, 1× speed, nothing wrong) at the default monitor interval. Target: at most 2 % of one
//! core and 80 MiB RSS, measured over 5 minutes after the daemon settled.
//!
//! Two setups, both with the release binary:
//! - `run --sim`: the simulator runs inside the daemon's process, so its cost is counted too;
//! - the daemon alone: `operator-host sim` in its own process and `run` pointed at it through the
//!   configuration (endpoint `pd`, the grants `--sim` would give), so only the daemon is counted.
//!   The simulator's own process is reported for reference.
//!
//! CPU is the process's utime + stime (`/proc/<pid>/stat`) over the window divided by the wall
//! time; RSS is `VmRSS` (`/proc/<pid>/status`) sampled every second.
//!
//! `cargo bench -p operator-host --bench idle`; `IDLE_SECS` changes the window (default 300),
//! `IDLE_SETTLE_SECS` the settling time (default 30).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Target: share of one core.
const CPU_TARGET_PERCENT: f64 = 2.0;
/// Target: resident memory.
const RSS_TARGET_MIB: f64 = 80.0;

/// A child process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Clock ticks per second of `/proc/<pid>/stat`'s times (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process is running");
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')').expect("a /proc stat line") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the line are the 12th and 13th after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Resident memory of a process, MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process is running");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc status");
    let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024.0
}

/// CPU share and RSS of one process over a window.
struct Usage {
    cpu_percent: f64,
    rss_mean_mib: f64,
    rss_max_mib: f64,
    /// Least-squares slope of the RSS samples, MiB per hour: a daemon that runs for months must
    /// stay flat, which a five-minute maximum alone would not show.
    rss_growth_mib_per_hour: f64,
}

/// Least-squares slope of samples taken once a second, per hour.
fn slope_per_hour(samples: &[f64]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = samples.iter().sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, y) in samples.iter().enumerate() {
        let dx = i as f64 - mean_x;
        num += dx * (y - mean_y);
        den += dx * dx;
    }
    num / den * 3600.0
}

/// Samples the processes every second for `secs` seconds.
fn measure(pids: &[u32], secs: u64) -> Vec<Usage> {
    let hz = clock_ticks();
    let start = Instant::now();
    let cpu_start: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    let mut rss: Vec<Vec<f64>> = vec![Vec::new(); pids.len()];
    while start.elapsed() < Duration::from_secs(secs) {
        for (samples, pid) in rss.iter_mut().zip(pids) {
            samples.push(rss_mib(*pid));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let wall = start.elapsed().as_secs_f64();
    pids.iter()
        .zip(cpu_start)
        .zip(rss)
        .map(|((pid, before), samples)| Usage {
            cpu_percent: (cpu_ticks(*pid) - before) as f64 / hz / wall * 100.0,
            rss_mean_mib: samples.iter().sum::<f64>() / samples.len() as f64,
            rss_max_mib: samples.iter().copied().fold(0.0, f64::max),
            rss_growth_mib_per_hour: slope_per_hour(&samples),
        })
        .collect()
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

fn report(label: &str, usage: &Usage, targets: bool) {
    let cpu = if targets {
        format!("(≤ {CPU_TARGET_PERCENT} %: {})", verdict(usage.cpu_percent <= CPU_TARGET_PERCENT))
    } else {
        String::new()
    };
    let rss = if targets {
        format!("(≤ {RSS_TARGET_MIB} MiB: {})", verdict(usage.rss_max_mib <= RSS_TARGET_MIB))
    } else {
        String::new()
    };
    println!(
        "  {label:<46} CPU {:5.2} % of one core {cpu:<12}  RSS mean {:5.1} MiB, max {:5.1} MiB {rss:<16}  growth {:+5.1} MiB/h",
        usage.cpu_percent, usage.rss_mean_mib, usage.rss_max_mib, usage.rss_growth_mib_per_hour
    );
}

fn host(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_operator-host"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("OPERATOR_CONFIG")
        .env_remove("OPERATOR_ENDPOINTS")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env("OPERATOR_LOG", "warn")
        .stdin(Stdio::null());
    command
}

/// Starts the daemon in `data_dir` (whose `operator.toml` is written already) and waits until
/// its API is up.
fn start_daemon(data_dir: &Path, args: &[&str]) -> Proc {
    let daemon = Proc(host(data_dir).arg("run").args(args).stdout(Stdio::null()).spawn().expect("starting the daemon"));
    let started = Instant::now();
    while !data_dir.join("daemon.json").exists() {
        assert!(started.elapsed() < Duration::from_secs(120), "the daemon did not start within 120 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    daemon
}

/// Starts `operator-host sim` with the default cluster; returns it with its PD URLs.
fn start_sim(data_dir: &Path) -> (Proc, Vec<String>) {
    let mut child = host(data_dir).arg("sim").stdout(Stdio::piped()).spawn().expect("starting the simulator");
    let stdout = child.stdout.take().unwrap();
    let sim = Proc(child);
    let mut pd = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.expect("reading the simulator's output");
        let line = line.trim();
        if line.starts_with("control API:") {
            break;
        }
        if line.starts_with("http://") && pd.len() < 3 {
            pd.push(line.to_owned());
        }
    }
    assert!(!pd.is_empty(), "the simulator printed no PD endpoint");
    // Keep draining stdout so the simulator never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (sim, pd)
}

/// The API on an ephemeral port so the bench does not collide with a daemon already running.
const API: &str = "[api]\nlisten = \"127.0.0.1:0\"\n";

fn main() {
    let secs = env_secs("IDLE_SECS", 300);
    let settle = env_secs("IDLE_SETTLE_SECS", 30);
    println!(
        "idle daemon on the default simulated cluster (6 stores, 1000 regions, 1x), default monitor interval; \
         {settle} s settling, then {secs} s measured"
    );

    // 1. run --sim: daemon and simulator in one process.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("operator.toml"), API).unwrap();
    let daemon = start_daemon(dir.path(), &["--sim"]);
    std::thread::sleep(Duration::from_secs(settle));
    let usage = measure(&[daemon.0.id()], secs);
    report("run --sim (daemon + simulator, one process)", &usage[0], true);
    drop(daemon);

    // 2. The daemon alone, the simulator in its own process, with the grants `--sim` gives.
    let sim_dir = tempfile::tempdir().unwrap();
    let (sim, pd) = start_sim(sim_dir.path());
    let dir = tempfile::tempdir().unwrap();
    let urls = pd.iter().map(|u| format!("\"{u}\"")).collect::<Vec<_>>().join(", ");
    std::fs::write(
        dir.path().join("operator.toml"),
        format!(
            r#"{API}
[endpoints.pd]
urls = [{urls}]
[plugins.tikv]
grants = [
  {{ endpoint = "pd", methods = ["GET", "POST", "DELETE"], paths = ["/pd/api/v1/**"] }},
  {{ url = "http://127.0.0.1:*", methods = ["GET"], paths = ["/status"] }},
]
"#
        ),
    )
    .unwrap();
    let daemon = start_daemon(dir.path(), &[]);
    std::thread::sleep(Duration::from_secs(settle));
    let usage = measure(&[daemon.0.id(), sim.0.id()], secs);
    report("daemon alone (run, simulator elsewhere)", &usage[0], true);
    report("the simulator's process (reference)", &usage[1], false);
}
