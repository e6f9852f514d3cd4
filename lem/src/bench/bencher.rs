//! The bencher: a plan of warmup and samples for one benchmark, and running it.

use serde::{Deserialize, Serialize};
use std::any::Any;
use std::hint::black_box;
use std::time::Duration;

use crate::measure::warmup::{typical_latency, warm_up, WarmupConfig, WarmupMode, WarmupResult};
use crate::results::report::{merge_reports, EnergyReport};
use crate::results::stats::Interval;
use crate::Meter;

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

/// One measured sample: N iterations inside one energy scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// Cycle the sample belongs to.
    pub cycle: usize,
    /// Iterations in the sample.
    pub iterations: u64,
    /// Sample length, s.
    pub duration_s: f64,
    /// Gross energy, J.
    pub raw_j: Option<f64>,
    /// Net energy, J.
    pub adjusted_j: Option<f64>,
    /// Bound on |raw_j − truth|, J.
    #[serde(default)]
    pub uncertainty_j: Option<f64>,
    /// Bound on |adjusted_j − truth|, J.
    #[serde(default)]
    pub adjusted_uncertainty_j: Option<f64>,
    /// uncertainty_j / raw_j.
    #[serde(default)]
    pub relative_uncertainty: Option<f64>,
    /// Units produced (when `units` is set).
    pub units: Option<f64>,
    /// Throttling during the sample.
    pub throttled: bool,
    /// Start temperature (highest device), °C.
    pub start_temp_c: Option<f64>,
    /// The random delay before the sample started, s.
    #[serde(default)]
    pub start_delay_s: f64,
}

/// Per-iteration statistics of a benchmark (the `bench` section of its result).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchStats {
    /// Benchmark name.
    pub name: String,
    /// Measured samples.
    pub samples: usize,
    /// Iterations in each sample.
    pub iterations_per_sample: u64,
    /// Cycles.
    pub cycles: usize,
    /// What one iteration produces.
    pub units: Option<String>,
    /// Time per iteration, s.
    pub time_per_iter_s: Option<Interval>,
    /// Gross energy per iteration, J.
    pub energy_per_iter_j: Option<Interval>,
    /// Net energy per iteration, J.
    pub adjusted_energy_per_iter_j: Option<Interval>,
    /// Mean power per sample, W.
    pub power_w: Option<Interval>,
    /// Gross energy per unit, J.
    pub energy_per_unit_j: Option<Interval>,
    /// Net energy per unit, J.
    pub adjusted_energy_per_unit_j: Option<Interval>,
    /// Units per second.
    pub units_per_s: Option<Interval>,
    /// Bound on the systematic error of the mean gross energy per iteration, J: the mean of
    /// the samples' bounds per iteration (each sample's error is within its bound).
    #[serde(default)]
    pub energy_per_iter_uncertainty_j: Option<f64>,
    /// The same for the net energy per iteration, J.
    #[serde(default)]
    pub adjusted_energy_per_iter_uncertainty_j: Option<f64>,
    /// The same for the gross energy per unit, J.
    #[serde(default)]
    pub energy_per_unit_uncertainty_j: Option<f64>,
    /// The largest relative bound of any sample (what `max_uncertainty` holds down).
    #[serde(default)]
    pub achieved_relative_uncertainty: Option<f64>,
    /// The `max_uncertainty` asked for.
    #[serde(default)]
    pub max_uncertainty: Option<f64>,
    /// The seed of the random start delays (`null`: samples started without one).
    #[serde(default)]
    pub start_delay_seed: Option<u64>,
    /// Each sample.
    pub per_sample: Vec<SampleRecord>,
}

/// Everything one benchmark produced.
#[derive(Debug, Clone)]
pub struct BenchOutcome {
    /// Statistics.
    pub stats: BenchStats,
    /// Warmup of each cycle (the first is reported as `warmup`).
    pub warmups: Vec<WarmupResult>,
    /// The samples' reports merged into one.
    pub report: Option<EnergyReport>,
    /// Things to tell the reader.
    pub warnings: Vec<String>,
}

/// Resolved settings the harness hands a [`Bencher`].
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub name: String,
    pub warmup: WarmupConfig,
    pub samples: usize,
    pub min_sample_s: f64,
    pub max_uncertainty: Option<f64>,
    pub cycles: usize,
    pub cycle_gap: Duration,
    pub units: Option<&'static str>,
    pub progress: bool,
    /// Seed of the start delays; `None` for no delays.
    pub random_start: Option<u64>,
}

impl Plan {
    /// Resolve `options` (defaults filled in, warmup checked) for the benchmark `name`.
    pub(crate) fn new(name: &str, options: &BenchOptions, progress: bool) -> crate::Result<Self> {
        let warmup = options.warmup_config();
        warmup.validate()?;
        Ok(Self {
            name: name.to_string(),
            warmup,
            samples: options.samples.unwrap_or(10).max(1),
            min_sample_s: options.min_sample_s.unwrap_or(1.0).max(0.0),
            max_uncertainty: match options.max_uncertainty {
                Some(v) if !(v > 0.0 && v < 1.0) => {
                    return Err(crate::Error::config(
                        "max_uncertainty",
                        format!("{v} is not a fraction of the energy (> 0 and < 1)"),
                    ))
                }
                other => other,
            },
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

/// Handed to a benchmark function: set a sync hook, then call [`iter`](Self::iter) with
/// the routine to measure. Setup before `iter` is not measured.
pub struct Bencher<'m> {
    meter: &'m Meter,
    plan: Plan,
    /// The generator of start delays (SplitMix64 state).
    delays: std::cell::Cell<u64>,
    sync: Option<Box<dyn Fn() + 'm>>,
    outcome: Option<BenchOutcome>,
}

impl std::fmt::Debug for Bencher<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bencher")
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

/// The number of units a routine's return value stands for, when it is a number.
fn units_of<R: Any>(r: &R) -> Option<f64> {
    let a = r as &dyn Any;
    if let Some(v) = a.downcast_ref::<usize>() {
        return Some(*v as f64);
    }
    if let Some(v) = a.downcast_ref::<u64>() {
        return Some(*v as f64);
    }
    if let Some(v) = a.downcast_ref::<u32>() {
        return Some(f64::from(*v));
    }
    if let Some(v) = a.downcast_ref::<i64>() {
        return Some(*v as f64);
    }
    if let Some(v) = a.downcast_ref::<i32>() {
        return Some(f64::from(*v));
    }
    if let Some(v) = a.downcast_ref::<f64>() {
        return Some(*v);
    }
    a.downcast_ref::<f32>().map(|v| f64::from(*v))
}

impl<'m> Bencher<'m> {
    pub(crate) fn new(meter: &'m Meter, plan: Plan) -> Self {
        Self {
            meter,
            delays: std::cell::Cell::new(plan.random_start.unwrap_or(0)),
            plan,
            sync: None,
            outcome: None,
        }
    }

    /// Wait for asynchronous work (a GPU stream) at every measurement boundary and after
    /// each warmup iteration. Without it, GPU work launched in one sample can land in the
    /// next, or after the window closes.
    ///
    /// The hook outlives the benchmark function's locals, so give it what it needs by value:
    /// `let device = device.clone(); b.sync_with(move || B::sync(&device));`.
    pub fn sync_with(&mut self, f: impl Fn() + 'm) {
        self.sync = Some(Box::new(f));
    }

    /// Measure `routine`: warmup, then the measured samples. With `units` set, the routine
    /// returns how many units (tokens, items) one call produced.
    pub fn iter<R: Any>(&mut self, mut routine: impl FnMut() -> R) {
        let sync: &dyn Fn() = match &self.sync {
            Some(s) => s.as_ref(),
            None => &|| {},
        };
        let plan = self.plan.clone();
        let mut warnings = Vec::new();
        let mut warmups = Vec::new();
        let mut records = Vec::new();
        let mut reports = Vec::new();
        let mut iters_per_sample = 1u64;
        for cycle in 0..plan.cycles {
            if cycle > 0 && !plan.cycle_gap.is_zero() {
                std::thread::sleep(plan.cycle_gap);
            }
            let w = warm(&plan, &mut routine, sync, &mut warnings);
            if cycle == 0 {
                iters_per_sample = initial_iterations(&plan, &w);
            }
            warmups.push(w);
            let period = self.sensor_period();
            let clock = self.meter.clock().clone();
            let origin = clock.now().as_secs_f64();
            for phase in self.start_phases(&plan, plan.samples) {
                // wait until the sample starts at its phase (counted from the first sample's
                // planned start), however long the samples before took
                let delay = if period > 0.0 && plan.random_start.is_some() {
                    (origin + phase - clock.now().as_secs_f64()).rem_euclid(period)
                } else {
                    0.0
                };
                let Some((rep, units, counted, start_temp, start_delay_s)) = self.measured_sample(
                    &plan,
                    &mut routine,
                    sync,
                    &mut iters_per_sample,
                    &mut warnings,
                    delay,
                ) else {
                    break;
                };
                check_sample(&plan, &rep, counted, &mut warnings);
                records.push(SampleRecord {
                    cycle,
                    iterations: iters_per_sample,
                    duration_s: rep.duration_s,
                    raw_j: rep.energy.raw_j,
                    adjusted_j: rep.energy.adjusted_j,
                    uncertainty_j: rep.energy.uncertainty_j,
                    adjusted_uncertainty_j: rep.energy.adjusted_uncertainty_j,
                    relative_uncertainty: relative(&rep),
                    units: counted.then_some(units),
                    throttled: rep.thermal.throttle_detected,
                    start_temp_c: start_temp,
                    start_delay_s,
                });
                reports.push(rep);
            }
        }
        summary_warnings(&plan, &records, &mut warnings);
        aliasing_warning(&plan, self.meter, &records, &mut warnings);
        let stats = stats_of(&plan, iters_per_sample, &records);
        let report = merge_reports(&plan.name, &reports);
        self.outcome = Some(BenchOutcome {
            stats,
            warmups,
            report,
            warnings,
        });
    }

    /// One kept sample. A sample whose bound is above `max_uncertainty` is measured again,
    /// longer (`iters` grows): the counter's staleness is fixed per window, so the relative
    /// bound falls as the window grows.
    fn measured_sample<R: Any>(
        &self,
        plan: &Plan,
        routine: &mut impl FnMut() -> R,
        sync: &dyn Fn(),
        iters: &mut u64,
        warnings: &mut Vec<String>,
        delay: f64,
    ) -> Option<(EnergyReport, f64, bool, Option<f64>, f64)> {
        let mut attempts = 0;
        loop {
            let got = self.sample(plan, routine, sync, *iters, warnings, delay)?;
            match (plan.max_uncertainty, relative(&got.0)) {
                (Some(target), Some(r)) if r > target && attempts < MAX_LENGTHENING => {
                    attempts += 1;
                    *iters = ((*iters as f64) * (r / target) * 1.1)
                        .ceil()
                        .min(100_000_000.0) as u64;
                }
                _ => return Some(got),
            }
        }
    }

    /// One measured sample of `iters` iterations: its report, the units produced, whether
    /// the routine returned units, and the start temperature. `None` if no scope opened.
    fn sample<R: Any>(
        &self,
        plan: &Plan,
        routine: &mut impl FnMut() -> R,
        sync: &dyn Fn(),
        iters: u64,
        warnings: &mut Vec<String>,
        delay: f64,
    ) -> Option<(EnergyReport, f64, bool, Option<f64>, f64)> {
        if delay > 0.0 {
            self.meter
                .clock()
                .sleep(std::time::Duration::from_secs_f64(delay));
        }
        sync();
        let start_temp = self
            .meter
            .devices()
            .iter()
            .filter_map(|d| d.temperature_c())
            .reduce(f64::max);
        let scope = match self.meter.start(plan.name.clone()) {
            Ok(s) => s,
            Err(e) => {
                warnings.push(format!("{}: could not open a scope: {e}", plan.name));
                return None;
            }
        };
        let mut units = 0.0;
        let mut counted = plan.units.is_some();
        for _ in 0..iters {
            let r = routine();
            if counted {
                match units_of(&r) {
                    Some(u) => units += u,
                    None => counted = false,
                }
            }
            black_box(r);
        }
        sync();
        match scope.finish() {
            Ok(r) => Some((r, units, counted, start_temp, delay)),
            Err(e) => {
                warnings.push(format!("{}: could not close a scope: {e}", plan.name));
                None
            }
        }
    }

    /// The longest sensor period of the meter's devices, s.
    fn sensor_period(&self) -> f64 {
        self.meter
            .sensors()
            .iter()
            .map(|s| s.period_s)
            .fold(0.0, f64::max)
    }

    /// A uniform number in [0, 1) from the seeded generator (SplitMix64).
    fn uniform(&self) -> f64 {
        let mut x = self.delays.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.delays.set(x);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The start phases of `n` samples within the longest sensor period of the meter's
    /// devices, s: stratified (one in each n-th of the period, in random order, at a random
    /// point of it), so that the samples' phases cover the period evenly and their mean
    /// averages the phase out far better than independent draws. All 0 with random starts
    /// off, or on an ideal sensor.
    fn start_phases(&self, plan: &Plan, n: usize) -> Vec<f64> {
        let period = self.sensor_period();
        if plan.random_start.is_none() || period <= 0.0 || n == 0 {
            return vec![0.0; n];
        }
        let mut strata: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = ((self.uniform() * (i + 1) as f64) as usize).min(i);
            strata.swap(i, j);
        }
        strata
            .into_iter()
            .map(|k| period * (k as f64 + self.uniform()) / n as f64)
            .collect()
    }

    pub(crate) fn take_outcome(&mut self) -> Option<BenchOutcome> {
        self.outcome.take()
    }
}

/// Run one benchmark outside `lem::main!()`: `f` gets a [`Bencher`] and calls
/// [`Bencher::iter`]. For people writing their own harness or loops; `None` if `f` never
/// called `iter`.
///
/// # Errors
/// [`crate::Error::InvalidConfig`] naming the option when the options are invalid.
pub fn run_one(
    meter: &Meter,
    name: &str,
    options: &BenchOptions,
    f: impl FnOnce(&mut Bencher<'_>),
) -> crate::Result<Option<BenchOutcome>> {
    let mut b = Bencher::new(meter, Plan::new(name, options, false)?);
    f(&mut b);
    Ok(b.take_outcome())
}

/// Warm up (with its progress display); a warmup that did not converge is a warning.
fn warm<R>(
    plan: &Plan,
    routine: &mut impl FnMut() -> R,
    sync: &dyn Fn(),
    warnings: &mut Vec<String>,
) -> WarmupResult {
    let progress = super::progress::WarmupProgress::new(&plan.name, plan.progress, &plan.warmup);
    let w = warm_up(plan.warmup, routine, sync, |i, cv| progress.update(i, cv));
    progress.finish(&w);
    if !w.converged {
        let msg = format!(
            "{}: warmup did not converge in {} iterations (CV {} > target {:.3}); latency is still changing, so results vary more",
            plan.name,
            w.iterations,
            w.final_cv.map_or("-".into(), |c| format!("{c:.3}")),
            w.target_cv
        );
        push_once(warnings, msg);
    }
    w
}

/// Iterations per sample from the warmup's typical latency: enough to last `min_sample_s`.
fn initial_iterations(plan: &Plan, w: &WarmupResult) -> u64 {
    let per_iter = typical_latency(w, plan.warmup.window).as_secs_f64();
    if per_iter > 0.0 {
        ((plan.min_sample_s / per_iter).ceil() as u64).clamp(1, 100_000_000)
    } else {
        1
    }
}

/// Warnings about one kept sample: units not returned, a bound still above
/// `max_uncertainty`.
fn check_sample(plan: &Plan, rep: &EnergyReport, counted: bool, warnings: &mut Vec<String>) {
    if plan.units.is_some() && !counted {
        let msg = format!(
            "{}: `units` is set but the routine does not return a number of units; energy per unit is not reported",
            plan.name
        );
        push_once(warnings, msg);
    }
    if let (Some(target), Some(r)) = (plan.max_uncertainty, relative(rep)) {
        if r > target {
            let msg = format!(
                "{}: a sample's energy bound is {:.2} % of its energy, above max_uncertainty {:.2} % after lengthening it {MAX_LENGTHENING} times",
                plan.name,
                r * 100.0,
                target * 100.0
            );
            push_once(warnings, msg);
        }
    }
}

/// Warnings about the samples as a whole: throttling, too few for an interval.
fn summary_warnings(plan: &Plan, records: &[SampleRecord], warnings: &mut Vec<String>) {
    if records.iter().any(|r| r.throttled) {
        let n = records.iter().filter(|r| r.throttled).count();
        warnings.push(format!(
            "{}: {n} of {} samples throttled: energy and time reflect a throttled device",
            plan.name,
            records.len()
        ));
    }
    if records.len() < 3 {
        warnings.push(format!(
            "{}: only {} sample(s): confidence intervals need at least 3",
            plan.name,
            records.len()
        ));
    }
}

/// Warn when one iteration is shorter than the power sensor's period on a sensor that
/// observes only part of each period: a power pattern that repeats each iteration can then
/// alias with the sensor, which no reading can see.
fn aliasing_warning(
    plan: &Plan,
    meter: &Meter,
    records: &[SampleRecord],
    warnings: &mut Vec<String>,
) {
    let Some(sensor) = meter
        .sensors()
        .iter()
        .filter(|s| s.sensing_fraction < 1.0 && s.period_s > 0.0)
        .max_by(|a, b| a.period_s.total_cmp(&b.period_s))
    else {
        return;
    };
    let per_iter: Vec<f64> = records
        .iter()
        .filter(|r| r.iterations > 0)
        .map(|r| r.duration_s / r.iterations as f64)
        .collect();
    let Some(mean) =
        (!per_iter.is_empty()).then(|| per_iter.iter().sum::<f64>() / per_iter.len() as f64)
    else {
        return;
    };
    if mean < sensor.period_s {
        let remedy = if plan.random_start.is_some() {
            "the random start delays turn a systematic error into spread across samples; check the interval"
        } else {
            "random_start is off, so a systematic error is possible"
        };
        warnings.push(format!(
            "{}: one iteration ({:.1} ms) is shorter than the power sensor's period ({:.0} ms, {:.0} % of it observed): a power pattern repeating each iteration can alias with the sensor, which no reading shows; {remedy}",
            plan.name,
            mean * 1e3,
            sensor.period_s * 1e3,
            sensor.sensing_fraction * 100.0
        ));
    }
}

/// A seed from a benchmark's name (FNV-1a), so that its delays repeat from run to run.
fn name_seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn push_once(warnings: &mut Vec<String>, msg: String) {
    if !warnings.contains(&msg) {
        warnings.push(msg);
    }
}

/// How many times a sample is measured again, longer, to meet `max_uncertainty`.
const MAX_LENGTHENING: u32 = 6;

/// A report's bound as a fraction of its energy.
fn relative(r: &EnergyReport) -> Option<f64> {
    let (j, u) = (r.energy.raw_j?, r.energy.uncertainty_j?);
    (j > 0.0).then(|| u / j)
}

/// The mean of `f` over the samples; `None` if any is unknown.
fn mean_of(records: &[SampleRecord], f: impl Fn(&SampleRecord) -> Option<f64>) -> Option<f64> {
    let v: Option<Vec<f64>> = records.iter().map(f).collect();
    v.filter(|v| !v.is_empty())
        .map(|v| v.iter().sum::<f64>() / v.len() as f64)
}

fn per(records: &[SampleRecord], f: impl Fn(&SampleRecord) -> Option<f64>) -> Option<Interval> {
    let v: Option<Vec<f64>> = records.iter().map(f).collect();
    v.and_then(|v| Interval::of(&v))
}

fn stats_of(plan: &Plan, iters: u64, records: &[SampleRecord]) -> BenchStats {
    let n = |r: &SampleRecord| r.iterations as f64;
    let units = |r: &SampleRecord| r.units.filter(|u| *u > 0.0);
    BenchStats {
        name: plan.name.clone(),
        samples: records.len(),
        iterations_per_sample: iters,
        cycles: plan.cycles,
        units: plan.units.map(str::to_string),
        time_per_iter_s: per(records, |r| Some(r.duration_s / n(r))),
        energy_per_iter_j: per(records, |r| r.raw_j.map(|e| e / n(r))),
        adjusted_energy_per_iter_j: per(records, |r| r.adjusted_j.map(|e| e / n(r))),
        power_w: per(records, |r| {
            r.raw_j
                .filter(|_| r.duration_s > 0.0)
                .map(|e| e / r.duration_s)
        }),
        energy_per_unit_j: per(records, |r| Some(r.raw_j? / units(r)?)),
        adjusted_energy_per_unit_j: per(records, |r| Some(r.adjusted_j? / units(r)?)),
        units_per_s: per(records, |r| Some(units(r)? / r.duration_s)),
        energy_per_iter_uncertainty_j: mean_of(records, |r| r.uncertainty_j.map(|u| u / n(r))),
        adjusted_energy_per_iter_uncertainty_j: mean_of(records, |r| {
            r.adjusted_uncertainty_j.map(|u| u / n(r))
        }),
        energy_per_unit_uncertainty_j: mean_of(records, |r| Some(r.uncertainty_j? / units(r)?)),
        achieved_relative_uncertainty: records
            .iter()
            .filter_map(|r| r.relative_uncertainty)
            .reduce(f64::max),
        max_uncertainty: plan.max_uncertainty,
        start_delay_seed: plan.random_start,
        per_sample: records.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_units_and_other_values_are_not() {
        assert_eq!(units_of(&64usize), Some(64.0));
        assert_eq!(units_of(&3u32), Some(3.0));
        assert_eq!(units_of(&2.5f64), Some(2.5));
        assert_eq!(units_of(&"x"), None);
        assert_eq!(units_of(&()), None);
        assert_eq!(units_of(&vec![1u8]), None);
    }

    #[test]
    fn options_default_to_the_documented_warmup() {
        let w = BenchOptions::DEFAULT.warmup_config();
        assert_eq!(
            (w.cv_threshold, w.window, w.min_iters, w.max_iters),
            (0.05, 5, 5, 50)
        );
        let o = BenchOptions {
            cv: Some(0.03),
            warmup: Some(WarmupMode::Fixed),
            ..BenchOptions::DEFAULT
        };
        assert_eq!(o.warmup_config().cv_threshold, 0.03);
        assert_eq!(o.warmup_config().mode, WarmupMode::Fixed);
    }
}
