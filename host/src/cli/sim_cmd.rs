//! `operator-host sim`: runs the built-in cluster simulator standalone on loopback, so that the
//! operator (or a human with curl) can be pointed at it.

use std::process::ExitCode;

use clap::Args;

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

pub(super) async fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
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
    println!("running until interrupted (Ctrl-C)");
    tokio::signal::ctrl_c().await?;
    cluster.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
