//! `lem`: measure any command's energy, manage baselines, show the environment, aggregate,
//! export and plot results.
//!
//! Exit codes: `lem run` exits with the command's own code (128 + N when a signal N killed
//! it, or interrupted lem's run); lem's own failures exit 125, a command that cannot be executed 126, one that does not
//! exist 127 (the conventions of `env`, `timeout` and `nice`).

mod commands;
mod compare;
mod monitor;
mod plot;
mod run;
mod show;
mod signals;
mod ui;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// lem's own failures.
pub const EXIT_LEM: u8 = 125;
/// The command exists but cannot be executed.
pub const EXIT_NOT_EXECUTABLE: u8 = 126;
/// The command does not exist.
pub const EXIT_NOT_FOUND: u8 = 127;

#[derive(Debug, Parser)]
#[command(
    name = "lem",
    version,
    about = "Measure the energy of GPU workloads the way a careful experimenter would",
    after_help = "Exit codes: `run` passes the command's code through (128+N if signal N killed it); \
125 = lem failed, 126 = command not executable, 127 = command not found."
)]
struct Cli {
    /// Print nothing but errors.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Measure a command from spawn to exit: lem run [OPTIONS] -- CMD [ARGS...]
    Run(Box<run::RunArgs>),
    /// Measure, show or clear idle baselines.
    #[command(subcommand)]
    Baseline(BaselineCmd),
    /// Show the environment (GPUs, driver, CUDA, CPU, OS).
    Env(EnvArgs),
    /// Measure each device's energy-counter and power update periods and call latencies
    /// (cached per GPU model and driver; bounds use it).
    Probe(ProbeArgs),
    /// Combine the process (and cycle) results of one experiment.
    Aggregate(AggregateArgs),
    /// Export results to CSV.
    Export(ExportArgs),
    /// Plot power over time to SVG.
    Plot(PlotArgs),
    /// Summarise a result, aggregate or time-series file.
    Show(ShowArgs),
    /// Compare two measurements metric by metric: change, 95 % interval, p-value, verdict
    /// (exit 1 with --threshold when a metric regressed beyond it).
    Compare(compare::CompareArgs),
    /// Serve every device's energy (raw, above the idle baseline, with its bound), power,
    /// throttle time and readings on a Prometheus /metrics endpoint until SIGINT or SIGTERM.
    Monitor(Box<monitor::MonitorArgs>),
}

#[derive(Debug, Subcommand)]
enum BaselineCmd {
    /// Measure the idle baseline of each device (cached per device).
    Measure(BaselineMeasureArgs),
    /// List cached baselines.
    Show(BaselineShowArgs),
    /// Delete cached baselines.
    Clear,
}

#[derive(Debug, Args)]
struct BaselineMeasureArgs {
    /// Device spec: auto, nvml, nvml:0,2, rapl, sim:PATH, none (default: LEM_DEVICE or auto).
    #[arg(long)]
    device: Option<String>,
    /// Seconds to measure (default: LEM_BASELINE_DURATION_S or 30).
    #[arg(long)]
    duration: Option<String>,
    /// Measure even if a valid cached baseline exists.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct BaselineShowArgs {
    /// Time a cached baseline stays valid, s (for the "expires in" column).
    #[arg(long, default_value = "3600")]
    ttl: String,
}

#[derive(Debug, Args)]
struct ProbeArgs {
    /// Device spec (default: LEM_DEVICE or auto).
    #[arg(long)]
    device: Option<String>,
    /// Seconds to poll the counter, then the power reading (default 5).
    #[arg(long)]
    duration: Option<String>,
    /// List the cached probes instead of probing.
    #[arg(long)]
    show: bool,
}

#[derive(Debug, Args)]
struct EnvArgs {
    /// Device spec (default: LEM_DEVICE or auto).
    #[arg(long)]
    device: Option<String>,
}

#[derive(Debug, Args)]
struct AggregateArgs {
    /// A raw experiment directory: OUTPUT/raw/<experiment_id>.
    dir: PathBuf,
    /// Treat incomplete process sets, non-overlapping processes and doubly measured devices
    /// as errors.
    #[arg(long)]
    strict: bool,
    /// Results root to write aggregated/<experiment_id>.json under (default: the root above raw/).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Keep the cycles in which a process's command failed or was interrupted (left out of the
    /// totals and statistics by default, and listed under cycles.excluded).
    #[arg(long)]
    include_failed: bool,
    /// Clock skew allowed between hosts when checking that the processes of a cycle
    /// overlapped in time, s.
    #[arg(long, default_value = "1", value_name = "S")]
    clock_skew_s: String,
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// The CSV file to write.
    #[arg(long, value_name = "FILE")]
    csv: PathBuf,
    /// One row per process result instead of per experiment.
    #[arg(long)]
    per_process: bool,
    /// Result files, aggregate files or directories of them.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct PlotArgs {
    /// A result file (with a time series beside it) or a time-series file.
    file: PathBuf,
    /// The SVG file to write.
    #[arg(short, long, value_name = "FILE.svg")]
    output: PathBuf,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// A result, aggregate or time-series file.
    file: PathBuf,
}

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl From<lem::Error> for Failure {
    fn from(e: lem::Error) -> Self {
        Failure {
            code: EXIT_LEM,
            message: e.to_string(),
        }
    }
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_LEM,
            message: message.into(),
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    return ExitCode::SUCCESS;
                }
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    return ExitCode::from(EXIT_LEM);
                }
                _ => {}
            }
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("lem: error: {first} (see `lem --help`)");
            return ExitCode::from(EXIT_LEM);
        }
    };
    let ui = ui::Ui::new(cli.quiet, cli.json);
    let result = match cli.cmd {
        Cmd::Run(a) => run::run(&ui, *a),
        Cmd::Baseline(BaselineCmd::Measure(a)) => {
            commands::baseline_measure(&ui, a.device.as_deref(), a.duration.as_deref(), a.force)
                .map(|()| 0)
        }
        Cmd::Baseline(BaselineCmd::Show(a)) => commands::baseline_show(&ui, &a.ttl).map(|()| 0),
        Cmd::Baseline(BaselineCmd::Clear) => commands::baseline_clear(&ui).map(|()| 0),
        Cmd::Env(a) => commands::env(&ui, a.device.as_deref()).map(|()| 0),
        Cmd::Probe(a) => if a.show {
            commands::probe_show(&ui)
        } else {
            commands::probe(&ui, a.device.as_deref(), a.duration.as_deref())
        }
        .map(|()| 0),
        Cmd::Aggregate(a) => commands::aggregate_opts(a.strict, a.include_failed, &a.clock_skew_s)
            .and_then(|opts| commands::aggregate(&ui, &a.dir, &opts, a.output.as_deref()))
            .map(|()| 0),
        Cmd::Export(a) => commands::export(&ui, &a.csv, &a.paths, a.per_process).map(|()| 0),
        Cmd::Plot(a) => plot::plot(&ui, &a.file, &a.output).map(|()| 0),
        Cmd::Show(a) => show::show(&ui, &a.file).map(|()| 0),
        Cmd::Compare(a) => compare::compare(&ui, &a),
        Cmd::Monitor(a) => monitor::monitor(&ui, &a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("lem: error: {}", f.message.replace('\n', " "));
            ExitCode::from(f.code)
        }
    }
}
