//! What a benchmark produced: each sample, the per-iteration statistics over them.

use serde::{Deserialize, Serialize};

use super::plan::Plan;
use crate::measure::warmup::WarmupResult;
use crate::results::report::EnergyReport;
use crate::results::stats::Interval;

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

/// A report's bound as a fraction of its energy.
pub(super) fn relative(r: &EnergyReport) -> Option<f64> {
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

pub(super) fn stats_of(plan: &Plan, iters: u64, records: &[SampleRecord]) -> BenchStats {
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
