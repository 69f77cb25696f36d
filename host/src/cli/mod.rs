//! The `operator-host` command line (clap).
//!
//! Commands open the data directory themselves; later, when a daemon runs, they talk to it
//! through its local API instead (redb is single-process).

pub mod actions_cmd;
mod audit_cmd;
mod client;
mod demo_cmd;
mod diagnose_cmd;
mod plugins_cmd;
pub mod run_cmd;
mod sim_cmd;
mod tickets_cmd;
mod workflows_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::audit::{AuditLog, AuditSink};
use crate::config::{ResolvedConfig, default_data_dir};
use crate::runtime::Runtime;
use crate::store::Store;

/// Operates distributed systems through sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "operator-host", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    /// The data directory (state, audit log, plugin cache, drop-in plugins).
    #[arg(long, global = true, env = "OPERATOR_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// The configuration file (default: `<data-dir>/operator.toml`).
    #[arg(long, global = true, env = "OPERATOR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES: &str = "\
Examples:
  operator-host run --sim                    # the whole pipeline on the built-in simulated cluster
  operator-host run --endpoint api=http://10.0.0.1:2379,http://10.0.0.2:2379   # a real cluster ([endpoints.api])
  operator-host demo                         # the pipeline in a terminal UI, on the simulated cluster
  operator-host plugins list
  operator-host plugins inspect tools
  operator-host audit list --denied --since 1h
  operator-host audit verify
  operator-host audit export --jsonl > audit.jsonl
  operator-host actions propose transfer-leader --param region=12 --param to-store=4
  operator-host actions approve A-000001 --reason 'checked the store'
  operator-host safety mode execute --reason 'on call'
  operator-host safety kill-switch --reason 'incident'
  operator-host tickets list --status all
  operator-host tickets show T-000001
  operator-host diagnose T-000001 --diagnoser claude
  operator-host workflows start drain-store -p store=4
  operator-host tickets hold T-000001 --reason 'disk swap planned'
  operator-host sim --stores 6 --pd-members 3 --regions 1000 --speed 1 --seed 1
  operator-host sim fault kill-store 1
  operator-host sim fault list
  operator-host sim fault clear";

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Plugins: what is loaded, what each asks for and what it is granted.
    #[command(subcommand)]
    Plugins(plugins_cmd::PluginsCommand),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Runs the daemon: monitor, diagnosis, actions (`--sim` for the built-in simulated cluster).
    Run(run_cmd::RunArgs),
    /// Actions: propose, approve, reject, cancel, and see what ran and whether it worked.
    #[command(subcommand)]
    Actions(actions_cmd::ActionsCommand),
    /// The safety switches: observe or execute mode, and the kill switch.
    #[command(subcommand)]
    Safety(actions_cmd::SafetyCommand),
    /// Prints shell completions: `operator-host completions bash > /etc/bash_completion.d/operator-host`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Diagnoses a ticket now (the daemon does it as tickets open) and records it on the ticket.
    Diagnose(diagnose_cmd::DiagnoseArgs),
    /// Workflows: multi-step remedies with conditions between steps and compensations.
    #[command(subcommand)]
    Workflows(workflows_cmd::WorkflowsCommand),
    /// Tickets: the problems the monitor found, their history and diagnoses.
    #[command(subcommand)]
    Tickets(tickets_cmd::TicketsCommand),
    /// Runs the built-in simulated cluster (PD's HTTP API and the stores' status ports) on loopback.
    Sim(sim_cmd::SimCommand),
    /// A terminal UI over the whole pipeline on the simulated cluster: inject a fault, watch it
    /// detected and diagnosed, approve the fix, see it verified.
    Demo(demo_cmd::DemoArgs),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let data_dir_from_flag = matches.value_source("data_dir") == Some(clap::parser::ValueSource::CommandLine);
    // The demo's terminal belongs to its UI: it logs to a file of its own.
    if !matches!(cli.command, Command::Demo(_)) {
        init_logging(cli.log_format);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, data_dir_from_flag)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, data_dir_from_flag: bool) -> anyhow::Result<ExitCode> {
    let mut context = Context::new(&cli);
    context.data_dir_from_flag = data_dir_from_flag;
    match cli.command {
        Command::Plugins(command) => plugins_cmd::run(&context, command).await,
        Command::Audit(command) => audit_cmd::run(&context, command).await,
        Command::Run(args) => run_cmd::run(&context, args).await,
        Command::Actions(command) => actions_cmd::run_actions(&context, command).await,
        Command::Safety(command) => actions_cmd::run_safety(&context, command).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "operator-host", &mut script);
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            Ok(ExitCode::SUCCESS)
        }
        Command::Diagnose(args) => diagnose_cmd::run(&context, args).await,
        Command::Workflows(command) => workflows_cmd::run_workflows(&context, command).await,
        Command::Tickets(command) => tickets_cmd::run(&context, command).await,
        Command::Sim(command) => sim_cmd::run(&context, command).await,
        Command::Demo(args) => demo_cmd::run(&context, args).await,
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPERATOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Where a command finds the data directory and the configuration.
pub struct Context {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The configuration file.
    pub config_path: PathBuf,
    /// Whether the configuration file was named explicitly (then it must exist).
    pub config_explicit: bool,
    /// Whether `--data-dir` was given on the command line (not through the environment): the
    /// demo uses a throw-away directory otherwise.
    pub data_dir_from_flag: bool,
}

impl Context {
    fn new(cli: &Cli) -> Context {
        let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
        let config_path = cli.config.clone().unwrap_or_else(|| data_dir.join("operator.toml"));
        Context { data_dir, config_path, config_explicit: cli.config.is_some(), data_dir_from_flag: false }
    }

    /// Opens the store and its audit log.
    pub fn open_audit(&self) -> anyhow::Result<AuditLog> {
        let store = Store::open(&self.data_dir)?;
        Ok(AuditLog::new(store)?)
    }

    /// Loads the configuration.
    pub fn config(&self) -> anyhow::Result<ResolvedConfig> {
        crate::runtime::load_config(&self.config_path, self.config_explicit)
    }

    /// Builds the runtime over the data directory with an audit sink.
    pub fn runtime(&self) -> anyhow::Result<(Runtime, ResolvedConfig, AuditSink)> {
        let resolved = self.config()?;
        let log = self.open_audit()?;
        let sink = AuditSink::spawn(log);
        let runtime = Runtime::new(&self.data_dir, &resolved, sink.clone())?;
        Ok((runtime, resolved, sink))
    }
}

pub use audit_cmd::summary as audit_summary;

/// Formats unix milliseconds as an RFC 3339 UTC time.
pub fn format_time(at_ms: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at_ms);
    humantime::format_rfc3339_millis(time).to_string()
}

/// Cuts text to `width` characters, marking the cut.
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The terminal width from `COLUMNS`, or 120.
pub fn terminal_width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|w: &usize| *w >= 40).unwrap_or(120)
}
