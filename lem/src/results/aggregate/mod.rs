//! Combining result files: processes (ranks) of one experiment and its repeated cycles.
//!
//! Each physical device (a GPU by UUID, a RAPL domain by host identity + id) is counted once per cycle, however many processes
//! measured it; processes of one cycle should overlap in time and be numbered 0..N−1.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::base::cache::write_atomic;
use crate::base::timefmt::rfc3339;
use crate::error::{Error, Result};
use crate::results::output::{read_result, ResultFile};
use crate::results::report::EnergyMethod;
use crate::results::stats::Interval;

mod cycles;
mod runs;
mod schema;
mod select;
mod warnings;

pub use runs::{is_process_file, new_run_id, process_files, wait_for_ranks};
pub use schema::{
    Aggregate, AggregateDevice, AggregateEnergy, AggregateThermal, CycleRow, CycleStats,
    ExcludedCycle, ExcludedFile,
};
pub use select::{every_cycle_failed, failure_of};

use cycles::sum_all;
use cycles::Item;

/// How to aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateOptions {
    /// Make the consistency checks (complete process sets, overlapping processes, devices
    /// measured once, one experiment) errors instead of warnings.
    pub strict: bool,
    /// Keep cycles in which a process's command failed or was interrupted (left out by
    /// default).
    pub include_failed: bool,
    /// How far apart two hosts' wall clocks may be, s: processes of one cycle count as
    /// overlapping unless one ended more than this before another started.
    pub clock_skew_s: f64,
}

/// The default clock-skew allowance between hosts, s.
pub const DEFAULT_CLOCK_SKEW_S: f64 = 1.0;

impl Default for AggregateOptions {
    fn default() -> Self {
        Self {
            strict: false,
            include_failed: false,
            clock_skew_s: DEFAULT_CLOCK_SKEW_S,
        }
    }
}

impl AggregateOptions {
    /// The defaults, with `strict`.
    pub fn strict(strict: bool) -> Self {
        Self {
            strict,
            ..Self::default()
        }
    }
}

/// Every process result file in a raw experiment directory (time series excluded), in
/// name order.
///
/// # Errors
/// [`Error::Io`] when the directory cannot be read; [`Error::BadFile`] naming a file that is
/// not a valid lem result, or when there is none.
pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, ResultFile)>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| is_result_name(p))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(Error::BadFile {
            path: dir.to_path_buf(),
            reason: "no lem result files (process_*.json) in this directory".into(),
        });
    }
    paths
        .into_iter()
        .map(|p| read_result(&p).map(|r| (p, r)))
        .collect()
}

/// Whether a path names a result file (JSON, not a time series, not hidden).
pub fn is_result_name(p: &Path) -> bool {
    let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    p.is_file()
        && name.ends_with(".json")
        && !name.ends_with("_timeseries.json")
        && !name.starts_with('.')
}

/// Combine result files. With `strict`, incomplete process sets, processes that did not
/// overlap in time, devices measured twice and mixed experiment ids are errors instead of
/// warnings. Cycles whose command failed or was interrupted are left out (and reported).
///
/// # Errors
/// [`Error::BadFile`] (naming `origin`) when there is nothing to combine, or in strict mode.
pub fn aggregate(
    origin: &Path,
    results: &[(PathBuf, ResultFile)],
    strict: bool,
) -> Result<Aggregate> {
    aggregate_with(origin, results, &AggregateOptions::strict(strict))
}

/// [`aggregate`] with every option.
///
/// # Errors
/// As [`aggregate`]; also when every cycle failed and `include_failed` is off.
pub fn aggregate_with(
    origin: &Path,
    results: &[(PathBuf, ResultFile)],
    opts: &AggregateOptions,
) -> Result<Aggregate> {
    if results.is_empty() {
        return Err(Error::BadFile {
            path: origin.to_path_buf(),
            reason: "nothing to aggregate".into(),
        });
    }
    let mut notes: Vec<String> = Vec::new();
    let (items, other_runs) = runs::own_run(results.iter().collect());
    for f in &other_runs {
        notes.push(format!("{} left out: {}", f.file, f.reason));
    }
    if items.is_empty() {
        return Err(Error::BadFile {
            path: origin.to_path_buf(),
            reason: "no result file of the run to aggregate (see excluded files)".into(),
        });
    }
    let (items, excluded) =
        select::drop_failed_cycles(origin, items, opts.include_failed, &mut notes)?;
    let mut agg = combine(origin, &items, opts)?;
    agg.cycles.excluded = excluded;
    agg.excluded_files = other_runs;
    notes.append(&mut agg.warnings);
    agg.warnings = notes;
    Ok(agg)
}

fn combine(origin: &Path, results: &[Item<'_>], opts: &AggregateOptions) -> Result<Aggregate> {
    let strict = opts.strict;
    let Some((_, first)) = results.first() else {
        return Err(Error::BadFile {
            path: origin.to_path_buf(),
            reason: "nothing to aggregate".into(),
        });
    };
    let mut problems: Vec<String> = Vec::new();
    let ids: BTreeSet<&str> = results
        .iter()
        .map(|(_, r)| r.experiment_id.as_str())
        .collect();
    if ids.len() > 1 {
        problems.push(format!("results of several experiments mixed: {ids:?}"));
    }
    let cycles = cycles::combine(results, opts.clock_skew_s, &mut problems);
    if strict && !problems.is_empty() {
        return Err(Error::BadFile {
            path: origin.to_path_buf(),
            reason: format!("--strict: {}", problems.join("; ")),
        });
    }
    let mut warnings = problems;
    warnings.extend(warnings::process_warnings(results));
    let rows = cycles.rows;
    let cycle_stats = cycle_stats(&rows, &mut warnings);
    let starts: Vec<f64> = results.iter().filter_map(|(_, r)| r.start_unix_s).collect();
    let ends: Vec<f64> = results.iter().filter_map(|(_, r)| r.end_unix_s).collect();
    let start = starts.iter().copied().reduce(f64::min);
    let end = ends.iter().copied().reduce(f64::max);
    let duration_s = match (start, end) {
        (Some(s), Some(e)) if starts.len() == results.len() => e - s,
        _ => rows.iter().map(|r| r.duration_s).sum(),
    };
    let lowest = results
        .iter()
        .min_by_key(|(_, r)| (cycles::cycle_of(r), r.process_index))
        .map(|(_, r)| r);
    Ok(Aggregate {
        schema_version: crate::results::report::SCHEMA_VERSION.into(),
        aggregated: true,
        experiment_id: first.experiment_id.clone(),
        num_processes: cycles.process_indices.len(),
        process_indices: cycles.process_indices.into_iter().collect(),
        simulated: results.iter().any(|(_, r)| r.report.simulated),
        start_unix_s: start,
        end_unix_s: end,
        started_at: start.map(rfc3339),
        duration_s,
        energy: energy_of(results, &rows, cycles.methods.len()),
        devices: cycles.devices.into_values().collect(),
        thermal: thermal_of(results),
        cycles: cycle_stats,
        environment: lowest.and_then(|r| r.environment.clone()),
        sources: results
            .iter()
            .map(|(p, _)| {
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect(),
        excluded_files: Vec::new(),
        clock_skew_allowance_s: Some(opts.clock_skew_s),
        warnings,
        extra: lowest
            .map(|r| extra_of(r, results.len()))
            .unwrap_or_default(),
    })
}

/// Statistics across cycles (a warning when there are too few for them).
fn cycle_stats(rows: &[CycleRow], warnings: &mut Vec<String>) -> CycleStats {
    let n = rows.len();
    if n < 3 {
        warnings.push(format!(
            "only {n} cycle(s): statistics across cycles need at least 3 (run with --cycles 3 or more)"
        ));
    }
    let col = |f: &dyn Fn(&CycleRow) -> Option<f64>| -> Option<Interval> {
        let v: Option<Vec<f64>> = rows.iter().map(f).collect();
        v.and_then(|v| Interval::of(&v))
    };
    CycleStats {
        n,
        energy_adjusted_j: col(&|r| r.adjusted_j),
        energy_raw_j: col(&|r| r.raw_j),
        duration_s: col(&|r| Some(r.duration_s)),
        per_cycle: rows.to_vec(),
        excluded: Vec::new(),
    }
}

/// The energy totals: every cycle's sums, the distinct devices' baselines, one method if
/// all devices shared it (`methods` distinct methods were seen).
fn energy_of(results: &[Item<'_>], rows: &[CycleRow], methods: usize) -> AggregateEnergy {
    let method = match methods {
        0 => None,
        1 => results
            .iter()
            .flat_map(|(_, r)| r.report.devices.iter().filter_map(|d| d.energy.method))
            .next(),
        _ => Some(EnergyMethod::Mixed),
    };
    let mut baseline_by_device: BTreeMap<cycles::DeviceKey, Option<f64>> = BTreeMap::new();
    for (_, r) in results {
        for d in &r.report.devices {
            baseline_by_device
                .entry(cycles::device_key(r, &d.uuid))
                .or_insert(d.energy.baseline_power_w);
        }
    }
    AggregateEnergy {
        raw_j: sum_all(rows.iter().map(|r| r.raw_j)),
        adjusted_j: sum_all(rows.iter().map(|r| r.adjusted_j)),
        uncertainty_j: sum_all(rows.iter().map(|r| r.uncertainty_j)),
        adjusted_uncertainty_j: sum_all(rows.iter().map(|r| r.adjusted_uncertainty_j)),
        uncertainty_method: crate::results::report::combine_methods(
            results
                .iter()
                .map(|(_, r)| r.report.energy.uncertainty_method),
        ),
        baseline_power_w: sum_all(baseline_by_device.values().copied()),
        method,
        baseline_method: results
            .iter()
            .map(|(_, r)| r.report.energy.baseline_method)
            .max(),
    }
}

/// Throttling over every process: any detected, the longest durations, the hottest device.
fn thermal_of(results: &[Item<'_>]) -> AggregateThermal {
    let reports = || results.iter().map(|(_, r)| &r.report);
    let longest = |f: &dyn Fn(&crate::results::report::EnergyReport) -> f64| {
        reports().map(f).fold(0.0, f64::max)
    };
    AggregateThermal {
        throttle_detected: reports().any(|r| r.thermal.throttle_detected),
        throttle_duration_s: longest(&|r| r.thermal.throttle_duration_s),
        thermal_duration_s: longest(&|r| r.thermal.thermal_duration_s),
        power_duration_s: longest(&|r| r.thermal.power_duration_s),
        max_temp_c: reports()
            .filter_map(|r| r.thermal.max_temp_c)
            .reduce(f64::max),
    }
}

/// The sections passed through from the lowest process: `workload` always; with a single
/// result also its metrics, phases, warmup, bench and command.
fn extra_of(r: &ResultFile, count: usize) -> serde_json::Map<String, serde_json::Value> {
    let keys: &[&str] = if count == 1 {
        &[
            "workload", "metrics", "phases", "warmup", "bench", "command",
        ]
    } else {
        &["workload"]
    };
    keys.iter()
        .filter_map(|k| r.extra.get(*k).map(|v| ((*k).to_string(), v.clone())))
        .collect()
}

/// Aggregate a raw experiment directory.
///
/// # Errors
/// As [`load_dir`] and [`aggregate`].
pub fn aggregate_dir(dir: &Path, strict: bool) -> Result<Aggregate> {
    aggregate_dir_with(dir, &AggregateOptions::strict(strict))
}

/// [`aggregate_dir`] with every option.
///
/// # Errors
/// As [`load_dir`] and [`aggregate_with`].
pub fn aggregate_dir_with(dir: &Path, opts: &AggregateOptions) -> Result<Aggregate> {
    aggregate_with(dir, &load_dir(dir)?, opts)
}

/// The results root of a raw experiment directory `ROOT/raw/<id>`: `ROOT`.
pub fn results_root_of(raw_experiment_dir: &Path) -> PathBuf {
    let parent = raw_experiment_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty());
    match parent {
        Some(p) if p.file_name().is_some_and(|n| n == "raw") => p
            .parent()
            .filter(|r| !r.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        Some(p) => p.to_path_buf(),
        None => PathBuf::from("."),
    }
}

/// Write `OUTPUT/aggregated/<experiment_id>.json` atomically.
///
/// # Errors
/// [`Error::Io`] naming the directory or file.
pub fn write_aggregate(output_root: &Path, agg: &Aggregate) -> Result<PathBuf> {
    let dir = output_root.join("aggregated");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path = dir.join(format!("{}.json", agg.experiment_id));
    write_atomic(&path, &serde_json::to_vec_pretty(agg)?)?;
    Ok(path)
}

/// Read an aggregate file.
///
/// # Errors
/// [`Error::Io`] or [`Error::BadFile`] naming the file.
pub fn read_aggregate(path: &Path) -> Result<Aggregate> {
    let v = crate::results::output::read_lem_json(path)?;
    serde_json::from_value(v).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        reason: format!("not a lem aggregate ({e})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_root_is_above_raw() {
        assert_eq!(
            results_root_of(Path::new("out/raw/exp1")),
            PathBuf::from("out")
        );
        assert_eq!(results_root_of(Path::new("raw/exp1")), PathBuf::from("."));
        assert_eq!(
            results_root_of(Path::new("/a/b/exp1")),
            PathBuf::from("/a/b")
        );
    }

    #[test]
    fn sum_all_is_unknown_if_any_part_is() {
        assert_eq!(sum_all([Some(1.0), Some(2.0)].into_iter()), Some(3.0));
        assert_eq!(sum_all([Some(1.0), None].into_iter()), None);
        assert_eq!(sum_all(std::iter::empty()), None);
    }
}
