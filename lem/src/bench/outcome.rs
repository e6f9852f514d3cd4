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
    /// The bound of the figure the bench reports (adjusted where there is a baseline, else
    /// raw) over that figure: what `max_uncertainty` is judged on.
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
    /// Time waited for the devices to cool before the sample (`cooldown_c`), s.
    #[serde(default)]
    pub cooldown_s: Option<f64>,
}

/// Per-iteration statistics of a benchmark (the `bench` section of its result).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchStats {
    /// Benchmark name.
    pub name: String,
    /// Measured samples.
    pub samples: usize,
    /// Samples whose energy was measured (the energy figures are over these).
    #[serde(default)]
    pub energy_samples: usize,
    /// Iterations in each sample: the fewest any sample had (samples differ only when one
    /// came out shorter than `min_sample_s` and later ones were lengthened; each sample's own
    /// count is in `per_sample`).
    pub iterations_per_sample: u64,
    /// The most iterations any sample had.
    #[serde(default)]
    pub iterations_per_sample_max: u64,
    /// Cycles.
    pub cycles: usize,
    /// What the intervals are over: `"samples"`, or `"cycles"` with more than one cycle
    /// (each cycle's mean is one value, so the interval shows the variation between cycles
    /// instead of pooling every sample as if independent).
    #[serde(default)]
    pub interval_over: String,
    /// Each cycle's means, with more than one cycle.
    #[serde(default)]
    pub per_cycle: Vec<CycleMeans>,
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
    /// The figure those relative bounds are of: `"adjusted"` (the headline figure, where
    /// there is a baseline) or `"raw"`.
    #[serde(default)]
    pub relative_uncertainty_of: Option<String>,
    /// The `max_uncertainty` asked for.
    #[serde(default)]
    pub max_uncertainty: Option<f64>,
    /// Throttled samples measured again (`on_throttle = "discard"`).
    #[serde(default)]
    pub discarded_samples: usize,
    /// Total time waited for the devices to cool before samples, s (`null` without
    /// `cooldown_c`).
    #[serde(default)]
    pub cooldown_s: Option<f64>,
    /// The seed of the random start delays (`null`: samples started without one).
    #[serde(default)]
    pub start_delay_seed: Option<u64>,
    /// Each sample.
    pub per_sample: Vec<SampleRecord>,
}

/// One cycle's means per iteration (and per unit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleMeans {
    /// The cycle.
    pub cycle: usize,
    /// Its samples.
    pub samples: usize,
    /// Mean time per iteration, s.
    pub time_per_iter_s: Option<f64>,
    /// Mean gross energy per iteration, J.
    pub energy_per_iter_j: Option<f64>,
    /// Mean net energy per iteration, J.
    pub adjusted_energy_per_iter_j: Option<f64>,
    /// Mean gross energy per unit, J.
    pub energy_per_unit_j: Option<f64>,
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
    /// Why the benchmark stopped early with an error (`on_throttle = "abort"`); its samples
    /// so far are kept.
    pub aborted: Option<String>,
}

/// The mean of `f` over the samples that have it; `None` if none has.
fn mean_of(records: &[SampleRecord], f: impl Fn(&SampleRecord) -> Option<f64>) -> Option<f64> {
    let v: Vec<f64> = records.iter().filter_map(f).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

type Metric = fn(&SampleRecord) -> Option<f64>;

fn n(r: &SampleRecord) -> f64 {
    r.iterations as f64
}

fn units(r: &SampleRecord) -> Option<f64> {
    r.units.filter(|u| *u > 0.0)
}

fn time_per_iter(r: &SampleRecord) -> Option<f64> {
    Some(r.duration_s / n(r))
}

fn energy_per_iter(r: &SampleRecord) -> Option<f64> {
    r.raw_j.map(|e| e / n(r))
}

fn adjusted_per_iter(r: &SampleRecord) -> Option<f64> {
    r.adjusted_j.map(|e| e / n(r))
}

fn energy_per_unit(r: &SampleRecord) -> Option<f64> {
    Some(r.raw_j? / units(r)?)
}

/// The interval of `f`: over the samples that have it, or with more than one cycle over the
/// cycles' means (one value per cycle that has it).
fn interval(groups: &[&[SampleRecord]], f: Metric) -> Option<Interval> {
    let v: Vec<f64> = if groups.len() > 1 {
        groups.iter().filter_map(|g| mean_of(g, f)).collect()
    } else {
        groups.iter().flat_map(|g| g.iter().filter_map(f)).collect()
    };
    Interval::of(&v)
}

/// The samples of each cycle, in order (one group without cycles).
fn by_cycle(records: &[SampleRecord]) -> Vec<&[SampleRecord]> {
    records
        .chunk_by(|a, b| a.cycle == b.cycle)
        .filter(|g| !g.is_empty())
        .collect()
}

pub(super) fn stats_of(plan: &Plan, records: &[SampleRecord], judged: Option<&str>) -> BenchStats {
    let groups = by_cycle(records);
    let i = |f: Metric| interval(&groups, f);
    let per_cycle = if groups.len() > 1 {
        groups
            .iter()
            .map(|g| CycleMeans {
                cycle: g[0].cycle,
                samples: g.len(),
                time_per_iter_s: mean_of(g, time_per_iter),
                energy_per_iter_j: mean_of(g, energy_per_iter),
                adjusted_energy_per_iter_j: mean_of(g, adjusted_per_iter),
                energy_per_unit_j: mean_of(g, energy_per_unit),
            })
            .collect()
    } else {
        Vec::new()
    };
    BenchStats {
        name: plan.name.clone(),
        samples: records.len(),
        energy_samples: records.iter().filter(|r| r.raw_j.is_some()).count(),
        iterations_per_sample: records.iter().map(|r| r.iterations).min().unwrap_or(0),
        iterations_per_sample_max: records.iter().map(|r| r.iterations).max().unwrap_or(0),
        cycles: plan.cycles,
        interval_over: if groups.len() > 1 {
            "cycles"
        } else {
            "samples"
        }
        .into(),
        per_cycle,
        units: plan.units.map(str::to_string),
        time_per_iter_s: i(time_per_iter),
        energy_per_iter_j: i(energy_per_iter),
        adjusted_energy_per_iter_j: i(adjusted_per_iter),
        power_w: i(|r| {
            r.raw_j
                .filter(|_| r.duration_s > 0.0)
                .map(|e| e / r.duration_s)
        }),
        energy_per_unit_j: i(energy_per_unit),
        adjusted_energy_per_unit_j: i(|r| Some(r.adjusted_j? / units(r)?)),
        units_per_s: i(|r| Some(units(r)? / r.duration_s)),
        energy_per_iter_uncertainty_j: mean_of(records, |r| r.uncertainty_j.map(|u| u / n(r))),
        adjusted_energy_per_iter_uncertainty_j: mean_of(records, |r| {
            r.adjusted_uncertainty_j.map(|u| u / n(r))
        }),
        energy_per_unit_uncertainty_j: mean_of(records, |r| Some(r.uncertainty_j? / units(r)?)),
        achieved_relative_uncertainty: records
            .iter()
            .filter_map(|r| r.relative_uncertainty)
            .reduce(f64::max),
        relative_uncertainty_of: judged.map(str::to_string),
        max_uncertainty: plan.max_uncertainty,
        discarded_samples: 0,
        cooldown_s: plan
            .cooldown
            .map(|_| records.iter().filter_map(|r| r.cooldown_s).sum()),
        start_delay_seed: plan.random_start,
        per_sample: records.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::plan::BenchOptions;

    fn record(cycle: usize, iterations: u64, secs: f64, joules: Option<f64>) -> SampleRecord {
        SampleRecord {
            cycle,
            iterations,
            duration_s: secs,
            raw_j: joules,
            adjusted_j: joules.map(|j| j / 2.0),
            uncertainty_j: joules.map(|_| 0.1),
            adjusted_uncertainty_j: joules.map(|_| 0.2),
            relative_uncertainty: None,
            units: None,
            throttled: false,
            start_temp_c: None,
            start_delay_s: 0.0,
            cooldown_s: None,
        }
    }

    fn plan(cycles: usize) -> Plan {
        let o = BenchOptions {
            cycles: Some(cycles),
            ..BenchOptions::DEFAULT
        };
        Plan::new("b", &o, false).unwrap()
    }

    #[test]
    fn one_sample_without_energy_leaves_the_others_measured() {
        let r = [
            record(0, 10, 1.0, Some(10.0)),
            record(0, 10, 1.0, None),
            record(0, 10, 1.0, Some(12.0)),
        ];
        let s = stats_of(&plan(1), &r, Some("adjusted"));
        let e = s.energy_per_iter_j.unwrap();
        assert_eq!(e.n, 2);
        assert!((e.mean - 1.1).abs() < 1e-12);
        assert_eq!((s.samples, s.energy_samples), (3, 2));
        assert!(s.energy_per_iter_uncertainty_j.is_some());
        assert_eq!(s.relative_uncertainty_of.as_deref(), Some("adjusted"));
    }

    #[test]
    fn iterations_per_sample_covers_every_sample_not_the_last() {
        let r = [
            record(0, 10, 0.2, Some(1.0)),
            record(0, 50, 1.0, Some(5.0)),
            record(0, 50, 1.0, Some(5.0)),
        ];
        let s = stats_of(&plan(1), &r, None);
        assert_eq!(
            (s.iterations_per_sample, s.iterations_per_sample_max),
            (10, 50)
        );
        assert!(s.per_sample.iter().map(|r| r.iterations).eq([10, 50, 50]));
    }

    #[test]
    fn cycles_are_the_unit_of_the_interval_not_pooled_samples() {
        // three cycles, three samples each; the cycles differ far more than the samples in
        // a cycle do: pooling nine samples would give a narrow interval
        let mut r = Vec::new();
        for (c, base) in [1.0, 1.5, 2.0].into_iter().enumerate() {
            for k in 0..3 {
                r.push(record(
                    c,
                    10,
                    base + 0.001 * f64::from(k),
                    Some(10.0 * base),
                ));
            }
        }
        let s = stats_of(&plan(3), &r, None);
        assert_eq!(s.interval_over, "cycles");
        assert_eq!(s.per_cycle.len(), 3);
        assert!((s.per_cycle[1].energy_per_iter_j.unwrap() - 1.5).abs() < 1e-12);
        let t = s.time_per_iter_s.unwrap();
        assert_eq!(t.n, 3, "one value per cycle");
        // t(2 df) = 4.30, std of the cycle means 0.05: half-width 0.124 s per iteration
        let half = t.ci95_high.unwrap() - t.mean;
        assert!((half - 4.303 * 0.05 / 3f64.sqrt()).abs() < 1e-3, "{half}");
        let one = stats_of(&plan(1), &r[..3], None);
        assert_eq!(one.interval_over, "samples");
        assert!(one.per_cycle.is_empty());
    }
}
