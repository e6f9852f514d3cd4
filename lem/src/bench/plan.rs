//! A benchmark's options (what `#[energy_bench(...)]` sets) and the plan resolved from them.

use std::time::Duration;

use crate::measure::warmup::{WarmupConfig, WarmupMode};

/// Options of one benchmark, as written in `#[energy_bench(...)]`. Every field is optional:
/// `BenchOptions { samples: Some(20), ..BenchOptions::DEFAULT }`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchOptions {
    /// Target coefficient of variation of warmup latency (default 0.05).
    pub cv: Option<f64>,
    /// Rolling window of the CV (default 5).
    pub window: Option<usize>,
    /// Warmup iterations before convergence is checked (default 5).
    pub min_warmup: Option<usize>,
    /// Warmup gives up after this many iterations (default 50).
    pub max_warmup: Option<usize>,
    /// `converge` (default) or `fixed`.
    pub warmup: Option<WarmupMode>,
    /// Iterations of a fixed warmup (default 5).
    pub warmup_iters: Option<usize>,
    /// Measured samples (default 10).
    pub samples: Option<usize>,
    /// Minimum length of one sample in seconds (default 1.0).
    pub min_sample_s: Option<f64>,
    /// Lengthen each sample until its energy bound is under this fraction of its energy
    /// (`0.01` = 1 %); default: report the bound without acting on it.
    pub max_uncertainty: Option<f64>,
    /// Limit on the measuring time of one benchmark, s (default 600): the sizing pilots and
    /// the samples, not the warmups, the gaps between cycles or the start delays. Samples
    /// sized for `max_uncertainty` fit in it (the target is then not met, and said), and no
    /// sample starts that would end past it (fewer samples, said).
    pub max_time_s: Option<f64>,
    /// Before each sample, wait until every device is within this many °C of its idle
    /// temperature (from the baseline): thermally stable samples. Default: no wait.
    pub cooldown_c: Option<f64>,
    /// Longest cooldown before a sample, s (default 300); the sample then starts warm, and
    /// a warning says so.
    pub cooldown_timeout_s: Option<f64>,
    /// What a throttled sample does: `continue` (default: kept, warned about), `discard`
    /// (measured again, at most 3 times) or `abort` (the benchmark stops with an error,
    /// keeping what was measured).
    pub on_throttle: Option<ThrottlePolicy>,
    /// Repetitions of warmup + samples (default 1).
    pub cycles: Option<usize>,
    /// Idle gap between cycles in seconds (default 0).
    pub cycle_gap_s: Option<f64>,
    /// What one iteration produces ("tokens"): enables energy per unit.
    pub units: Option<&'static str>,
    /// Device spec overriding `LEM_DEVICE`.
    pub device: Option<&'static str>,
    /// Skip unless `--ignored` is given.
    pub ignore: bool,
    /// Benchmark name (default: the function's name).
    pub name: Option<&'static str>,
    /// Seed of the random start delays (default: derived from the benchmark's name, so a run
    /// is repeatable); recorded in the result.
    pub seed: Option<u64>,
    /// Start each sample after a random delay within one sensor period (default true), so
    /// that a workload whose power pattern is locked to its start does not meet the
    /// sensor's part-time sensing at the same phase every time: systematic aliasing becomes
    /// random error that averages out across samples and shows in the confidence interval.
    pub random_start: Option<bool>,
}

impl BenchOptions {
    /// Every option unset.
    pub const DEFAULT: Self = Self {
        cv: None,
        window: None,
        min_warmup: None,
        max_warmup: None,
        warmup: None,
        warmup_iters: None,
        samples: None,
        min_sample_s: None,
        max_uncertainty: None,
        max_time_s: None,
        cooldown_c: None,
        cooldown_timeout_s: None,
        on_throttle: None,
        cycles: None,
        cycle_gap_s: None,
        units: None,
        device: None,
        ignore: false,
        name: None,
        seed: None,
        random_start: None,
    };

    /// The warmup these options ask for.
    pub fn warmup_config(&self) -> WarmupConfig {
        let d = WarmupConfig::default();
        WarmupConfig {
            mode: self.warmup.unwrap_or(d.mode),
            cv_threshold: self.cv.unwrap_or(d.cv_threshold),
            window: self.window.unwrap_or(d.window),
            min_iters: self.min_warmup.unwrap_or(d.min_iters),
            max_iters: self.max_warmup.unwrap_or(d.max_iters),
            fixed_iters: self.warmup_iters.unwrap_or(d.fixed_iters),
        }
    }
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Resolved settings the harness hands a [`Bencher`].
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub name: String,
    pub warmup: WarmupConfig,
    pub samples: usize,
    pub min_sample_s: f64,
    pub max_uncertainty: Option<f64>,
    pub max_time_s: f64,
    /// Cooldown margin, °C, and its timeout.
    pub cooldown: Option<(f64, Duration)>,
    pub on_throttle: ThrottlePolicy,
    pub cycles: usize,
    pub cycle_gap: Duration,
    pub units: Option<&'static str>,
    pub progress: bool,
    /// Seed of the start delays; `None` for no delays.
    pub random_start: Option<u64>,
}

impl Plan {
    /// Resolve `options` (defaults filled in, warmup checked) for the benchmark `name`.
    pub(crate) fn new(
        name: &str,
        options: &BenchOptions,
        progress: bool,
    ) -> crate::error::Result<Self> {
        let warmup = options.warmup_config();
        warmup.validate()?;
        Ok(Self {
            name: name.to_string(),
            warmup,
            samples: options.samples.unwrap_or(10).max(1),
            min_sample_s: options.min_sample_s.unwrap_or(1.0).max(0.0),
            max_uncertainty: match options.max_uncertainty {
                Some(v) if !(v > 0.0 && v < 1.0) => {
                    return Err(crate::error::Error::config(
                        "max_uncertainty",
                        format!("{v} is not a fraction of the energy (> 0 and < 1)"),
                    ))
                }
                other => other,
            },
            max_time_s: match options.max_time_s {
                Some(v) if !(v > 0.0 && v.is_finite()) => {
                    return Err(crate::error::Error::config(
                        "max_time_s",
                        format!("{v} is not a positive number of seconds"),
                    ))
                }
                Some(v) => v,
                None => DEFAULT_MAX_TIME_S,
            },
            cooldown: options.cooldown_c.map(|c| {
                (
                    c.max(0.0),
                    Duration::from_secs_f64(
                        options
                            .cooldown_timeout_s
                            .unwrap_or(DEFAULT_COOLDOWN_TIMEOUT_S)
                            .clamp(0.0, 86_400.0),
                    ),
                )
            }),
            on_throttle: options.on_throttle.unwrap_or_default(),
            cycles: options.cycles.unwrap_or(1).max(1),
            cycle_gap: Duration::from_secs_f64(options.cycle_gap_s.unwrap_or(0.0).max(0.0)),
            units: options.units,
            progress,
            random_start: options
                .random_start
                .unwrap_or(true)
                .then(|| options.seed.unwrap_or_else(|| name_seed(name))),
        })
    }
}

/// The default longest cooldown before a sample, s.
pub const DEFAULT_COOLDOWN_TIMEOUT_S: f64 = 300.0;

/// What a throttled sample does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThrottlePolicy {
    /// Keep it, with a warning.
    #[default]
    Continue,
    /// Measure it again (at most [`MAX_DISCARDS`] times in a row).
    Discard,
    /// Stop the benchmark with an error, keeping the samples measured so far.
    Abort,
}

/// How many throttled samples in a row `discard` measures again before keeping one.
pub const MAX_DISCARDS: usize = 3;

/// The default limit on one benchmark's measuring time, s.
pub const DEFAULT_MAX_TIME_S: f64 = 600.0;

/// A seed from a benchmark's name (FNV-1a), so that its delays repeat from run to run.
pub(super) fn name_seed(name: &str) -> u64 {
    crate::base::seeded::fnv1a(name.as_bytes())
}
