//! `operator-host sim`: runs the built-in cluster simulator standalone on loopback, so that the
//! operator (or a human with curl) can be pointed at it; `operator-host sim fault …` injects
//! faults into a running simulator through its control API.
//!
//! A running simulator writes `<data-dir>/sim-control.json` naming its control API, so `sim fault`
//! finds it without flags (`--control URL` overrides).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use tikv_sim::control::{self, ClearReply, ErrorReply, FaultsReply, InjectReply};
use tikv_sim::faults::{Fault, HotFlow};

use super::Context;

/// `operator-host sim`: run a simulator, or act on a running one.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SimCommand {
    /// Act on a running simulator.
    #[command(subcommand)]
    pub action: Option<SimAction>,
    /// Options for running one.
    #[command(flatten)]
    pub run: SimArgs,
}

/// What to do with a running simulator.
#[derive(Debug, Subcommand)]
pub enum SimAction {
    /// Injects, lists or clears faults (S1–S12 of the simulator's fault catalogue).
    Fault {
        /// The simulator's control API [default: from <data-dir>/sim-control.json].
        #[arg(long, global = true, value_name = "URL")]
        control: Option<String>,
        /// What to do.
        #[command(subcommand)]
        fault: FaultCommand,
    },
}

/// Fault commands.
#[derive(Debug, Subcommand)]
pub enum FaultCommand {
    /// The fault catalogue, the active faults (the ground truth) and their history.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Clears one fault by id, or every fault.
    Clear {
        /// The fault id (from `sim fault list`); all faults when left out.
        id: Option<u64>,
    },
    /// S1/S2: kills a store's process (its status port closes).
    KillStore {
        /// Store id.
        store: u64,
    },
    /// Restarts a killed store.
    RestartStore {
        /// Store id.
        store: u64,
    },
    /// S9: cuts a store off from PD while its process (and status port) stays up.
    PartitionStore {
        /// Store id.
        store: u64,
    },
    /// S8/S11: makes a store's disk slow (slow score rises, pending peers pile up).
    SlowDisk {
        /// Store id.
        store: u64,
        /// How many times slower.
        #[arg(long)]
        factor: Option<f64>,
    },
    /// S7: fills a store's disk.
    FillDisk {
        /// Store id.
        store: u64,
        /// Share of the capacity in use afterwards (0–1].
        #[arg(long)]
        ratio: Option<f64>,
    },
    /// S5: makes one region hot.
    HotRegion {
        /// Region id [default: one in the middle of the key space].
        #[arg(long)]
        region: Option<u64>,
        /// Which flow.
        #[arg(long, default_value = "write", value_parser = ["write", "read"])]
        flow: String,
        /// Bytes per second.
        #[arg(long)]
        bytes_per_sec: Option<u64>,
    },
    /// S3: piles leaders onto one store.
    LeaderSkew {
        /// Store id.
        store: u64,
        /// How long balance-leader stays paused, seconds.
        #[arg(long)]
        hold_secs: Option<u64>,
    },
    /// S4: leaves an evict-leader-scheduler behind for a healthy store.
    StaleEvictLeader {
        /// Store id.
        store: u64,
    },
    /// S10: kills the PD leader.
    KillPdLeader,
    /// S10: kills one PD member.
    KillPdMember {
        /// Member name, e.g. pd-1.
        name: String,
    },
    /// Restarts a killed PD member.
    RestartPdMember {
        /// Member name.
        name: String,
    },
    /// S6: regions lose a replica while repair is throttled.
    UnderReplicate {
        /// How many regions.
        #[arg(long)]
        regions: Option<u64>,
        /// replica-schedule-limit while the fault lasts.
        #[arg(long)]
        replica_schedule_limit: Option<u64>,
    },
    /// S12: a store set Offline whose regions have nowhere to go.
    StuckOffline {
        /// Store id.
        store: u64,
    },
}

impl FaultCommand {
    fn fault(&self) -> Option<Fault> {
        Some(match self {
            FaultCommand::List { .. } | FaultCommand::Clear { .. } => return None,
            FaultCommand::KillStore { store } => Fault::KillStore { store: *store },
            FaultCommand::RestartStore { store } => Fault::RestartStore { store: *store },
            FaultCommand::PartitionStore { store } => Fault::PartitionStore { store: *store },
            FaultCommand::SlowDisk { store, factor } => Fault::SlowDisk { store: *store, factor: *factor },
            FaultCommand::FillDisk { store, ratio } => Fault::FillDisk { store: *store, ratio: *ratio },
            FaultCommand::HotRegion { region, flow, bytes_per_sec } => Fault::HotRegion {
                region: *region,
                flow: if flow == "read" { HotFlow::Read } else { HotFlow::Write },
                bytes_per_sec: *bytes_per_sec,
            },
            FaultCommand::LeaderSkew { store, hold_secs } => Fault::LeaderSkew { store: *store, hold_secs: *hold_secs },
            FaultCommand::StaleEvictLeader { store } => Fault::StaleEvictLeader { store: *store },
            FaultCommand::KillPdLeader => Fault::KillPdLeader,
            FaultCommand::KillPdMember { name } => Fault::KillPdMember { name: name.clone() },
            FaultCommand::RestartPdMember { name } => Fault::RestartPdMember { name: name.clone() },
            FaultCommand::UnderReplicate { regions, replica_schedule_limit } => {
                Fault::UnderReplicate { regions: *regions, replica_schedule_limit: *replica_schedule_limit }
            }
            FaultCommand::StuckOffline { store } => Fault::StuckOffline { store: *store },
        })
    }
}

/// Options of the simulated cluster.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Number of stores.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub stores: u16,
    /// Number of PD members.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=7))]
    pub pd_members: u8,
    /// Number of regions.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=2_000_000))]
    pub regions: u32,
    /// Simulated seconds per real second (1 is real time).
    #[arg(long, default_value_t = 1.0, value_parser = parse_speed)]
    pub speed: f64,
    /// Seed: the same seed gives the same cluster.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

fn parse_speed(text: &str) -> Result<f64, String> {
    let speed: f64 = text.parse().map_err(|_| format!("`{text}` is not a number"))?;
    if speed.is_finite() && (0.01..=1000.0).contains(&speed) {
        Ok(speed)
    } else {
        Err(format!("the speed must be between 0.01 and 1000, not {text}"))
    }
}

pub(super) async fn run(context: &Context, command: SimCommand) -> Result<ExitCode> {
    match command.action {
        None => run_cluster(&context.data_dir, command.run).await,
        Some(SimAction::Fault { control, fault }) => run_fault(&context.data_dir, control, fault).await,
    }
}

/// Where the control API is: `--control`, else the discovery file.
fn control_url(data_dir: &Path, control: Option<String>) -> Result<String> {
    if let Some(url) = control {
        return Ok(url.trim_end_matches('/').to_owned());
    }
    match control::read_discovery(data_dir) {
        Ok(info) => Ok(info.control_url),
        Err(e) => {
            bail!("{e}\nstart one with `operator-host sim` (or `operator-host run --sim`), or pass --control URL")
        }
    }
}

async fn reply_or_error<T: serde::de::DeserializeOwned>(response: reqwest::Response, what: &str) -> Result<T> {
    let status = response.status();
    let body = response.bytes().await.with_context(|| format!("{what}: reading the reply"))?;
    if status.is_success() {
        return serde_json::from_slice(&body).with_context(|| format!("{what}: unreadable reply"));
    }
    let message = serde_json::from_slice::<ErrorReply>(&body)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
    bail!("{what}: the simulator answered {status}: {message}")
}

async fn run_fault(data_dir: &Path, control: Option<String>, command: FaultCommand) -> Result<ExitCode> {
    let base = control_url(data_dir, control)?;
    let client = reqwest::Client::builder().no_proxy().timeout(std::time::Duration::from_secs(10)).build()?;
    let unreachable = |e: reqwest::Error| {
        anyhow::anyhow!(
            "cannot reach the simulator's control API at {base}: {e}\n(is it still running? a stale {} is left behind when it is killed)",
            control::DISCOVERY_FILE
        )
    };
    if let Some(fault) = command.fault() {
        let response = client
            .post(format!("{base}/faults"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&fault)?)
            .send()
            .await
            .map_err(unreachable)?;
        let reply: InjectReply = reply_or_error(response, "injecting the fault").await?;
        println!("fault {} injected: {}", reply.id, serde_json::to_string(&fault)?);
        return Ok(ExitCode::SUCCESS);
    }
    match command {
        FaultCommand::Clear { id } => {
            let url = match id {
                Some(id) => format!("{base}/faults/{id}"),
                None => format!("{base}/faults"),
            };
            let response = client.delete(url).send().await.map_err(unreachable)?;
            let reply: ClearReply = reply_or_error(response, "clearing faults").await?;
            if reply.cleared.is_empty() {
                println!("no fault was active");
            } else {
                println!("cleared {}", reply.cleared.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(", "));
            }
        }
        FaultCommand::List { json } => {
            let catalogue: serde_json::Value = reply_or_error(
                client.get(format!("{base}/faults/catalogue")).send().await.map_err(unreachable)?,
                "the catalogue",
            )
            .await?;
            let faults: FaultsReply =
                reply_or_error(client.get(format!("{base}/faults")).send().await.map_err(unreachable)?, "the faults")
                    .await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"catalogue": catalogue, "faults": faults}))?
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!("fault kinds:");
            for entry in catalogue.as_array().into_iter().flatten() {
                println!(
                    "  {:<20} {:<8} {}",
                    entry["kind"].as_str().unwrap_or_default(),
                    entry["scenario"].as_str().unwrap_or_default(),
                    entry["description"].as_str().unwrap_or_default()
                );
            }
            if faults.active.is_empty() {
                println!("no fault is active (simulated time {} s)", faults.now_sim_ms / 1000);
            } else {
                println!("active faults (simulated time {} s):", faults.now_sim_ms / 1000);
                for f in &faults.active {
                    println!("  {:>3}  {:<20} {}  since {} s", f.id, f.kind, f.params, f.since_sim_ms / 1000);
                }
            }
        }
        _ => unreachable!("every other command is a fault"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_cluster(data_dir: &Path, args: SimArgs) -> Result<ExitCode> {
    let spec = tikv_sim::ClusterSpec {
        stores: usize::from(args.stores),
        pd_members: usize::from(args.pd_members),
        regions: args.regions as usize,
        seed: args.seed,
        ..tikv_sim::ClusterSpec::default()
    };
    let cluster = tikv_sim::SimCluster::start(spec, args.speed).await?;
    println!(
        "simulated cluster: {} stores, {} PD members, {} regions, speed {}x, seed {}",
        args.stores, args.pd_members, args.regions, args.speed, args.seed
    );
    println!("PD endpoints:");
    for url in cluster.pd_urls() {
        println!("  {url}");
    }
    println!("store status addresses:");
    for (id, address) in cluster.status_addrs() {
        println!("  store {id}: {address}");
    }
    println!("control API: {}", cluster.control_url());
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let info = control::DiscoveryInfo {
        control_url: cluster.control_url(),
        pd_urls: cluster.pd_urls(),
        pid: std::process::id(),
    };
    let path = control::write_discovery(data_dir, &info)?;
    println!("(`operator-host sim fault …` finds it through {})", path.display());
    println!("running until interrupted (Ctrl-C)");
    tokio::signal::ctrl_c().await?;
    let _ = control::remove_discovery(data_dir);
    cluster.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
