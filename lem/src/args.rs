//! The flags every lem command shares, defined once: the device, the idle baseline and the
//! sampling interval ([`MeterArgs`]), and where results go ([`OutputArgs`]). `lem run` and the
//! `llm_energy` example flatten them into their own arguments, so a flag means the same
//! thing, with the same environment fallback, wherever it appears.
//!
//! Precedence: a flag, then its `LEM_*` variable, then the default.

use clap::Args;
use std::path::PathBuf;

use crate::device::DeviceSpec;
use crate::error::{Error, Result};
use crate::measure::baseline::BaselineMode;
use crate::measure::builder::MeterBuilder;
use crate::measure::builder::{parse_interval_ms, parse_seconds};

/// Which devices to measure, the idle baseline and the sampling interval.
#[derive(Debug, Clone, Default, Args)]
pub struct MeterArgs {
    /// Device spec: auto, nvml, nvml:0,2, rapl, sim:PATH, none (default: LEM_DEVICE or auto).
    #[arg(long)]
    pub device: Option<String>,
    /// Idle baseline length in seconds (default: LEM_BASELINE_DURATION_S or 30).
    #[arg(long, value_name = "S")]
    pub baseline_duration: Option<String>,
    /// How long a cached baseline stays valid, s (default 3600).
    #[arg(long, value_name = "S")]
    pub baseline_ttl: Option<String>,
    /// No baseline: report raw energy only.
    #[arg(long, conflicts_with_all = ["force_baseline", "require_baseline"])]
    pub no_baseline: bool,
    /// Measure the baseline even if a valid cached one exists.
    #[arg(long)]
    pub force_baseline: bool,
    /// Fail if the baseline cannot be established.
    #[arg(long)]
    pub require_baseline: bool,
    /// Sampling interval in ms, 1..=10000 (default: LEM_INTERVAL_MS or 100).
    #[arg(long, value_name = "MS")]
    pub interval_ms: Option<String>,
}

impl MeterArgs {
    /// A meter builder from the `LEM_*` variables, overridden by these flags.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the flag or variable whose value is invalid.
    pub fn builder(&self) -> Result<MeterBuilder> {
        let mut b = MeterBuilder::from_env()?;
        if let Some(d) = &self.device {
            b = b.device(DeviceSpec::parse_for("--device", d)?);
        }
        if let Some(s) = &self.baseline_duration {
            b = b.baseline_duration(parse_seconds("--baseline-duration", s)?);
        }
        if let Some(s) = &self.baseline_ttl {
            b = b.baseline_ttl(parse_seconds("--baseline-ttl", s)?);
        }
        if let Some(s) = &self.interval_ms {
            b = b.interval(parse_interval_ms("--interval-ms", s)?);
        }
        if self.no_baseline {
            b = b.baseline_mode(BaselineMode::Off);
        }
        if self.force_baseline {
            b = b.baseline_mode(BaselineMode::Force);
        }
        if self.require_baseline {
            b = b.baseline_required(true);
        }
        Ok(b)
    }
}

/// Where results go: the results root, the experiment id and the process index.
#[derive(Debug, Clone, Default, Args)]
pub struct OutputArgs {
    /// Results root (default: LEM_OUTPUT_DIR or `results`).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Experiment id (default: LEM_EXPERIMENT_ID, the Slurm job or torchrun run id, else a
    /// timestamp).
    #[arg(long)]
    pub experiment_id: Option<String>,
    /// Process index (default: LEM_PROCESS_INDEX, RANK, SLURM_PROCID, OMPI_COMM_WORLD_RANK, else 0).
    #[arg(long)]
    pub process_index: Option<u32>,
    /// Number of processes in the experiment (default: the size the launcher of the process
    /// index sets beside it: LEM_WORLD_SIZE, WORLD_SIZE, SLURM_STEP_NUM_TASKS or
    /// SLURM_NTASKS, OMPI_COMM_WORLD_SIZE; else unknown); recorded so that aggregation can
    /// name missing ones.
    #[arg(long, value_name = "N")]
    pub world_size: Option<String>,
}

fn env_nonempty(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.trim().is_empty())
}

impl OutputArgs {
    /// The results root: `--output`, else `LEM_OUTPUT_DIR`, else `results`.
    pub fn output_dir(&self) -> PathBuf {
        self.output
            .clone()
            .unwrap_or_else(crate::results::output::default_output_dir)
    }

    /// The experiment id: `--experiment-id`, else `LEM_EXPERIMENT_ID`, else the Slurm job
    /// (`slurm-JOB[.STEP]`) or torchrun run (`torchrun-ID`), else `PREFIX` and a timestamp
    /// (`PREFIX20261130T104304Z-PID`).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming `--experiment-id` when the id is not a safe directory
    /// name.
    pub fn experiment_id(&self, prefix: &str) -> Result<String> {
        let id = self
            .experiment_id
            .clone()
            .unwrap_or_else(|| default_experiment_id(prefix));
        let ok = !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !id.starts_with('.');
        if ok {
            Ok(id)
        } else {
            Err(Error::config(
                "--experiment-id",
                format!("`{id}`: use letters, digits, `-`, `_` and `.`"),
            ))
        }
    }

    /// The process index: `--process-index`, else the first of `LEM_PROCESS_INDEX`, `RANK`,
    /// `SLURM_PROCID` and `OMPI_COMM_WORLD_RANK` that is set, else 0.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the variable that is not a process index.
    pub fn process_index(&self) -> Result<u32> {
        Ok(self.index_source()?.0)
    }

    /// The process index and the launcher it came from (its position in [`LAUNCHERS`];
    /// `None` for `--process-index` or the default 0).
    fn index_source(&self) -> Result<(u32, Option<usize>)> {
        if let Some(i) = self.process_index {
            return Ok((i, None));
        }
        for (n, (k, _)) in LAUNCHERS.iter().enumerate() {
            if let Some(v) = env_nonempty(k) {
                let i = v
                    .trim()
                    .parse()
                    .map_err(|_| Error::config(*k, format!("`{v}` is not a process index")))?;
                return Ok((i, Some(n)));
            }
        }
        Ok((0, None))
    }

    /// The number of processes: `--world-size`, else the size the launcher that gave the
    /// process index sets beside it (`LEM_WORLD_SIZE` with `LEM_PROCESS_INDEX`, `WORLD_SIZE`
    /// with `RANK`, `SLURM_STEP_NUM_TASKS` or else `SLURM_NTASKS` with `SLURM_PROCID`,
    /// `OMPI_COMM_WORLD_SIZE` with `OMPI_COMM_WORLD_RANK`); with `--process-index`, the first
    /// of those sizes that is set; else `LEM_WORLD_SIZE`; else unknown (`None`). An index
    /// from one launcher's variable is never paired with another launcher's size.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the flag or variable whose value is not a whole number
    /// of at least 1.
    pub fn world_size(&self) -> Result<Option<u32>> {
        let parse = |k: &str, v: &str| -> Result<Option<u32>> {
            match v.trim().parse::<u32>() {
                Ok(n) if n >= 1 => Ok(Some(n)),
                _ => Err(Error::config(
                    k,
                    format!("`{v}` is not a world size (a whole number of at least 1)"),
                )),
            }
        };
        if let Some(v) = &self.world_size {
            return parse("--world-size", v);
        }
        let sizes: &[&str] = match self.index_source()? {
            (_, Some(n)) => LAUNCHERS[n].1,
            // an index given on the command line: whichever launcher set a size
            _ if self.process_index.is_some() => &[
                "LEM_WORLD_SIZE",
                "WORLD_SIZE",
                "SLURM_STEP_NUM_TASKS",
                "SLURM_NTASKS",
                "OMPI_COMM_WORLD_SIZE",
            ],
            _ => &["LEM_WORLD_SIZE"],
        };
        for k in sizes {
            if let Some(v) = env_nonempty(k) {
                return parse(k, &v);
            }
        }
        Ok(None)
    }

    /// The process index and the world size, checked against each other.
    ///
    /// # Errors
    /// As [`Self::process_index`] and [`Self::world_size`], and [`Error::InvalidConfig`]
    /// naming `--process-index` when the index is not below the world size.
    pub fn rank_and_world(&self) -> Result<(u32, Option<u32>)> {
        let i = self.process_index()?;
        let w = self.world_size()?;
        if let Some(w) = w.filter(|w| i >= *w) {
            return Err(Error::config(
                "--process-index",
                format!(
                    "{i} is not below the world size {w} (indices run 0..{})",
                    w - 1
                ),
            ));
        }
        Ok((i, w))
    }
}

/// Where launchers put a process's index, and the variables that hold the number of
/// processes beside it, in order of preference. Inside a Slurm job the batch script itself
/// runs as `SLURM_PROCID` 0 of `SLURM_NTASKS`; a job step launched by `srun` also sets
/// `SLURM_STEP_NUM_TASKS`, which is preferred.
const LAUNCHERS: [(&str, &[&str]); 4] = [
    ("LEM_PROCESS_INDEX", &["LEM_WORLD_SIZE"]),
    ("RANK", &["WORLD_SIZE"]),
    ("SLURM_PROCID", &["SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"]),
    ("OMPI_COMM_WORLD_RANK", &["OMPI_COMM_WORLD_SIZE"]),
];

/// The seed of a run's start delays when none is given: a stable hash of its experiment id.
pub fn seed_from(experiment_id: &str) -> u64 {
    crate::base::seeded::fnv1a(experiment_id.as_bytes())
}

/// The random delay before cycle `cycle` of a run seeded `seed`, s: uniform within
/// `period_s` (a sensor period), so that a command locked to the sensor's sampling does not
/// alias the same way every cycle.
pub fn cycle_start_delay(seed: u64, cycle: u32, period_s: f64) -> f64 {
    let mut g = crate::base::seeded::SplitMix(seed);
    for _ in 0..cycle {
        g.next_u64();
    }
    period_s * g.uniform()
}

fn default_experiment_id(prefix: &str) -> String {
    if let Some(id) = env_nonempty("LEM_EXPERIMENT_ID") {
        return id;
    }
    if let Some(job) = env_nonempty("SLURM_JOB_ID") {
        return match env_nonempty("SLURM_STEP_ID") {
            Some(step) => format!("slurm-{job}.{step}"),
            None => format!("slurm-{job}"),
        };
    }
    if let Some(run) = env_nonempty("TORCHELASTIC_RUN_ID").filter(|r| r != "none") {
        return format!("torchrun-{run}");
    }
    let now = crate::base::timefmt::unix_now_s();
    format!(
        "{prefix}{}-{}",
        crate::base::timefmt::compact_id(now),
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        meter: MeterArgs,
        #[command(flatten)]
        output: OutputArgs,
    }

    #[test]
    fn flags_parse_and_bad_values_name_the_flag() {
        let c = Cmd::try_parse_from(["x", "--interval-ms", "0", "--experiment-id", "a/b"]).unwrap();
        let e = c.meter.builder().unwrap_err().to_string();
        assert!(e.contains("--interval-ms"), "{e}");
        let e = c.output.experiment_id("x-").unwrap_err().to_string();
        assert!(e.contains("--experiment-id") && e.contains("a/b"), "{e}");
        let c =
            Cmd::try_parse_from(["x", "--experiment-id", "run.1", "--process-index", "3"]).unwrap();
        assert_eq!(c.output.experiment_id("x-").unwrap(), "run.1");
        assert_eq!(c.output.process_index().unwrap(), 3);
        assert!(Cmd::try_parse_from(["x", "--no-baseline", "--force-baseline"]).is_err());
    }

    #[test]
    fn world_size_parses_and_bad_values_name_the_flag() {
        let c = Cmd::try_parse_from(["x", "--world-size", "4", "--process-index", "3"]).unwrap();
        assert_eq!(c.output.rank_and_world().unwrap(), (3, Some(4)));
        for bad in ["0", "-1", "four"] {
            let c = Cmd::try_parse_from(["x", &format!("--world-size={bad}")]).unwrap();
            let e = c.output.world_size().unwrap_err().to_string();
            assert!(e.contains("--world-size") && e.contains(bad), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
        let c = Cmd::try_parse_from(["x", "--world-size", "2", "--process-index", "2"]).unwrap();
        let e = c.output.rank_and_world().unwrap_err().to_string();
        assert!(
            e.contains("--process-index") && e.contains("world size 2"),
            "{e}"
        );
    }
}
