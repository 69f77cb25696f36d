//! `operator-host demo`: the terminal UI over the daemon's pipeline and the simulated cluster.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::Context;
use crate::demo::DemoOptions;

/// Options of the demo.
#[derive(Debug, Args)]
#[command(after_help = "\
Keys: space next chapter · 1-9 0 - = inject S1-S12 (or the menu: ↑↓ enter) · a approve · r reject
      c clear the fault by hand · esc back · q quit

The demo works in a fresh temporary data directory, removed when it ends, unless --data-dir is
given on the command line. Monitor cycles every second, grace periods divided by --speed, a
five-second settling time, and every action waits for approval (press a).")]
pub struct DemoArgs {
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 20.0)]
    pub speed: f64,
    /// Stores of the simulated cluster.
    #[arg(long, default_value_t = 6)]
    pub stores: usize,
    /// Regions of the simulated cluster.
    #[arg(long, default_value_t = 1000)]
    pub regions: usize,
    /// Seed of the simulated cluster.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The diagnoser: rules (the subject plugin's expert rules), auto, claude or openai.
    #[arg(long, default_value = "rules", value_parser = ["auto", "claude", "openai", "rules"])]
    pub diagnoser: String,
}

pub(super) async fn run(context: &Context, args: DemoArgs) -> Result<ExitCode> {
    if !(args.speed > 0.0 && args.speed <= 1000.0) {
        anyhow::bail!("--speed {} must be above 0 and at most 1000", args.speed);
    }
    if args.stores < 3 {
        anyhow::bail!("--stores {} must be at least 3 (three replicas per region)", args.stores);
    }
    let options = DemoOptions {
        data_dir: context.data_dir_from_flag.then(|| context.data_dir.clone()),
        config: context
            .config_explicit
            .then(|| (context.config_path.clone(), true))
            .or_else(|| context.data_dir_from_flag.then(|| (context.config_path.clone(), false))),
        speed: args.speed,
        stores: args.stores,
        regions: args.regions,
        seed: args.seed,
        diagnoser: args.diagnoser,
    };
    crate::demo::run(options).await
}
