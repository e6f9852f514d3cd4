//! CSV export: one row per aggregated experiment (per benchmark for bench results), or per
//! process result.
//!
//! Column names carry grouped prefixes (`energy_`, `thermal_`, `env_`, `warmup_`...) and
//! units; a value lem does not have is an empty cell. Each column means one thing on every
//! row: figures of a measurement are per cycle (an aggregate row gives the mean over its
//! included cycles, a process row its own window), and raw/adjusted figures say which they
//! are. README.md's column table states every column's meaning.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::base::cache::write_atomic;
use crate::error::{Error, Result};
use crate::results::aggregate::AggregateOptions;
use crate::results::aggregate::{aggregate_with, every_cycle_failed, is_result_name};
use crate::results::output::ResultFile;

/// How a column's value is found in a result or aggregate (as JSON).
enum Col {
    /// The first of these JSON pointers that holds a value.
    Ptr(&'static [&'static str]),
    /// Computed.
    Fn(fn(&Value) -> Option<Value>),
    /// A per-cycle figure: on a process row the value at the pointer; on an aggregate row
    /// the mean of this field over `cycles.per_cycle` (empty if any cycle lacks it).
    PerCycle(&'static str, &'static str),
}

fn is_aggregate(v: &Value) -> bool {
    v.get("aggregated").and_then(Value::as_bool) == Some(true)
}

/// The mean of `field` over an aggregate's cycles.
fn cycle_mean(v: &Value, field: &str) -> Option<f64> {
    let rows = v.pointer("/cycles/per_cycle")?.as_array()?;
    let xs: Option<Vec<f64>> = rows.iter().map(|r| r.get(field)?.as_f64()).collect();
    let xs = xs.filter(|x| !x.is_empty())?;
    Some(xs.iter().sum::<f64>() / xs.len() as f64)
}

fn per_cycle(v: &Value, own: &str, field: &str) -> Option<f64> {
    if is_aggregate(v) {
        cycle_mean(v, field)
    } else {
        v.pointer(own)?.as_f64()
    }
}

/// Raw energy over time, per cycle: the row's `energy_raw_j` / `duration_s` (so the gaps
/// between cycles never dilute it).
fn mean_power(v: &Value) -> Option<Value> {
    let e = per_cycle(v, "/energy/raw_j", "raw_j")?;
    let d = per_cycle(v, "/duration_s", "duration_s")?;
    (d > 0.0).then(|| Value::from(e / d))
}

/// Cycles the row's per-cycle figures average: 1 for a process result.
fn cycles_n(v: &Value) -> Option<Value> {
    if is_aggregate(v) {
        v.pointer("/cycles/n").cloned()
    } else {
        Some(Value::from(1))
    }
}

/// Cycles left out of an aggregate (failed or interrupted); 0 for a process result.
fn cycles_excluded(v: &Value) -> Option<Value> {
    if is_aggregate(v) {
        Some(Value::from(
            v.pointer("/cycles/excluded")
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
        ))
    } else {
        Some(Value::from(0))
    }
}

fn peak_power(v: &Value) -> Option<Value> {
    // The total's peak (same basis as the mean); files from before it existed: one device's.
    if let Some(p) = v.pointer("/power/peak_w").and_then(Value::as_f64) {
        return Some(Value::from(p));
    }
    let devs = v.get("devices")?.as_array()?;
    let p: Vec<f64> = devs
        .iter()
        .filter_map(|d| d.pointer("/power/peak_w")?.as_f64())
        .collect();
    p.into_iter().reduce(f64::max).map(Value::from)
}

fn peak_memory(v: &Value) -> Option<Value> {
    let devs = v.get("devices")?.as_array()?;
    let p: Vec<f64> = devs
        .iter()
        .filter_map(|d| d.pointer("/memory/peak_used_mb")?.as_f64())
        .collect();
    p.into_iter().reduce(f64::max).map(Value::from)
}

fn command_line(v: &Value) -> Option<Value> {
    let argv = v.pointer("/command/argv")?.as_array()?;
    let parts: Vec<&str> = argv.iter().filter_map(Value::as_str).collect();
    Some(Value::from(parts.join(" ")))
}

/// The measured processes' fraction of the active energy (`attribution`).
fn attributed_share(v: &Value) -> Option<Value> {
    let a = v.get("attribution")?;
    let mine = a.get("self_active_j")?.as_f64()?;
    let active = a.get("active_j")?.as_f64()?;
    Some(Value::from(if active > 0.0 { mine / active } else { 0.0 }))
}

fn warnings_count(v: &Value) -> Option<Value> {
    v.get("warnings")?.as_array().map(|a| Value::from(a.len()))
}

const COLUMNS: &[(&str, Col)] = &[
    ("experiment_id", Col::Ptr(&["/experiment_id"])),
    ("process_index", Col::Ptr(&["/process_index"])),
    ("cycle", Col::Ptr(&["/cycle"])),
    ("num_processes", Col::Ptr(&["/num_processes"])),
    ("started_at", Col::Ptr(&["/started_at"])),
    ("duration_s", Col::PerCycle("/duration_s", "duration_s")),
    ("energy_raw_j", Col::PerCycle("/energy/raw_j", "raw_j")),
    (
        "energy_adjusted_j",
        Col::PerCycle("/energy/adjusted_j", "adjusted_j"),
    ),
    (
        "energy_uncertainty_j",
        Col::PerCycle("/energy/uncertainty_j", "uncertainty_j"),
    ),
    (
        "energy_adjusted_uncertainty_j",
        Col::PerCycle("/energy/adjusted_uncertainty_j", "adjusted_uncertainty_j"),
    ),
    (
        "energy_uncertainty_method",
        Col::Ptr(&["/energy/uncertainty_method"]),
    ),
    ("energy_baseline_w", Col::Ptr(&["/energy/baseline_power_w"])),
    (
        "energy_baseline_method",
        Col::Ptr(&["/energy/baseline_method"]),
    ),
    ("energy_method", Col::Ptr(&["/energy/method"])),
    (
        "energy_below_resolution",
        Col::Ptr(&["/energy/below_resolution"]),
    ),
    (
        "attributed_active_j",
        Col::Ptr(&["/attribution/self_active_j"]),
    ),
    ("attributed_share", Col::Fn(attributed_share)),
    ("power_mean_w", Col::Fn(mean_power)),
    ("power_peak_w", Col::Fn(peak_power)),
    ("memory_peak_used_mb", Col::Fn(peak_memory)),
    (
        "thermal_throttle_detected",
        Col::Ptr(&["/thermal/throttle_detected"]),
    ),
    (
        "thermal_throttle_duration_s",
        Col::PerCycle("/thermal/throttle_duration_s", "throttle_duration_s"),
    ),
    (
        "throttle_thermal_duration_s",
        Col::PerCycle("/thermal/thermal_duration_s", "thermal_duration_s"),
    ),
    (
        "throttle_power_duration_s",
        Col::PerCycle("/thermal/power_duration_s", "power_duration_s"),
    ),
    ("thermal_max_temp_c", Col::Ptr(&["/thermal/max_temp_c"])),
    (
        "sampling_sample_count",
        Col::Ptr(&["/sampling/sample_count"]),
    ),
    (
        "sampling_failed_reads",
        Col::Ptr(&["/sampling/failed_reads"]),
    ),
    ("env_gpu_name", Col::Ptr(&["/environment/gpus/0/name"])),
    ("env_gpu_count", Col::Ptr(&["/environment/gpu_count"])),
    (
        "env_driver_version",
        Col::Ptr(&["/environment/driver_version"]),
    ),
    ("env_cuda_version", Col::Ptr(&["/environment/cuda_version"])),
    ("env_in_container", Col::Ptr(&["/environment/in_container"])),
    ("env_hostname", Col::Ptr(&["/environment/hostname"])),
    ("env_lem_version", Col::Ptr(&["/environment/lem_version"])),
    ("warmup_converged", Col::Ptr(&["/warmup/converged"])),
    ("warmup_final_cv", Col::Ptr(&["/warmup/final_cv"])),
    ("workload_model", Col::Ptr(&["/workload/model"])),
    ("workload_backend", Col::Ptr(&["/workload/backend"])),
    ("workload_batch", Col::Ptr(&["/workload/batch"])),
    ("workload_prompt_len", Col::Ptr(&["/workload/prompt_len"])),
    (
        "tokens_out",
        Col::Ptr(&["/workload/tokens_out", "/metrics/tokens_out"]),
    ),
    (
        "energy_per_output_token_j",
        Col::Ptr(&["/metrics/energy_per_output_token_j"]),
    ),
    (
        "energy_per_output_token_raw_j",
        Col::Ptr(&["/metrics/energy_per_output_token_raw_j"]),
    ),
    ("tokens_per_s", Col::Ptr(&["/metrics/tokens_per_s"])),
    ("ttft_ms", Col::Ptr(&["/metrics/ttft_ms"])),
    ("bench_name", Col::Ptr(&["/bench/name"])),
    (
        "bench_energy_per_iter_raw_j",
        Col::Ptr(&["/bench/energy_per_iter_j/mean"]),
    ),
    (
        "bench_energy_per_iter_adjusted_j",
        Col::Ptr(&["/bench/adjusted_energy_per_iter_j/mean"]),
    ),
    ("cycles_n", Col::Fn(cycles_n)),
    ("cycles_excluded", Col::Fn(cycles_excluded)),
    (
        "cycles_energy_raw_ci95_low_j",
        Col::Ptr(&["/cycles/energy_raw_j/ci95_low"]),
    ),
    (
        "cycles_energy_raw_ci95_high_j",
        Col::Ptr(&["/cycles/energy_raw_j/ci95_high"]),
    ),
    (
        "cycles_energy_adjusted_ci95_low_j",
        Col::Ptr(&["/cycles/energy_adjusted_j/ci95_low"]),
    ),
    (
        "cycles_energy_adjusted_ci95_high_j",
        Col::Ptr(&["/cycles/energy_adjusted_j/ci95_high"]),
    ),
    ("command", Col::Fn(command_line)),
    ("exit_code", Col::Ptr(&["/command/exit_code"])),
    ("simulated", Col::Ptr(&["/simulated"])),
    ("warnings_count", Col::Fn(warnings_count)),
];

/// The CSV header, in order.
pub fn header() -> Vec<&'static str> {
    COLUMNS.iter().map(|(n, _)| *n).collect()
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => other.to_string(),
    }
}

/// One CSV row for a result or aggregate given as JSON.
pub fn row(v: &Value) -> Vec<String> {
    COLUMNS
        .iter()
        .map(|(_, col)| match col {
            Col::Ptr(ptrs) => cell(
                ptrs.iter()
                    .filter_map(|p| v.pointer(p))
                    .find(|x| !x.is_null()),
            ),
            Col::Fn(f) => cell(f(v).as_ref()),
            Col::PerCycle(own, field) => cell(per_cycle(v, own, field).map(Value::from).as_ref()),
        })
        .collect()
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_dir() {
        let rd = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?;
        let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() || is_result_name(&p) {
                collect_files(&p, out)?;
            }
        }
        Ok(())
    } else if path.is_file() {
        out.push(path.to_path_buf());
        Ok(())
    } else {
        Err(Error::io(
            path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ))
    }
}

/// The rows for `paths` (result files, aggregate files, or directories of them): one per
/// experiment (process results aggregated in memory), or one per process result.
///
/// # Errors
/// [`Error::Io`] / [`Error::BadFile`] naming a file that cannot be read or is not a lem result.
pub fn rows_for(paths: &[PathBuf], per_process: bool) -> Result<Vec<Vec<String>>> {
    let mut files = Vec::new();
    for p in paths {
        collect_files(p, &mut files)?;
    }
    let mut rows = Vec::new();
    // per experiment, and per benchmark: the benchmarks of one bench run share an
    // experiment id and process index but are separate measurements
    let mut experiments: BTreeMap<(String, String), Vec<(PathBuf, ResultFile)>> = BTreeMap::new();
    let mut aggregates: Vec<(String, Value)> = Vec::new();
    for f in files {
        let v = crate::results::output::read_lem_json(&f)?;
        if v.get("aggregated").and_then(Value::as_bool) == Some(true) {
            let id = v
                .get("experiment_id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            aggregates.push((id, v));
            continue;
        }
        if per_process {
            rows.push(row(&v));
            continue;
        }
        let r: ResultFile = serde_json::from_value(v).map_err(|e| Error::BadFile {
            path: f.clone(),
            reason: format!("not a lem result ({e})"),
        })?;
        let bench = r
            .extra
            .get("bench")
            .and_then(|b| b.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        experiments
            .entry((r.experiment_id.clone(), bench))
            .or_default()
            .push((f, r));
    }
    for results in experiments.values() {
        let origin = results.first().map(|(p, _)| p.clone()).unwrap_or_default();
        // failed cycles are left out, as `lem aggregate` does, unless nothing else is left
        let opts = AggregateOptions {
            include_failed: every_cycle_failed(results),
            ..AggregateOptions::default()
        };
        let agg = aggregate_with(&origin, results, &opts)?;
        rows.push(row(&serde_json::to_value(&agg)?));
    }
    for (id, v) in aggregates {
        // an experiment whose process files were given too is already a row
        if per_process || !experiments.keys().any(|(e, _)| *e == id) {
            rows.push(row(&v));
        }
    }
    Ok(rows)
}

/// Write the CSV for `paths` to `out` atomically; returns the number of rows.
///
/// # Errors
/// As [`rows_for`], and [`Error::Io`] naming `out`.
pub fn export_csv(out: &Path, paths: &[PathBuf], per_process: bool) -> Result<usize> {
    let rows = rows_for(paths, per_process)?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| Error::io(out, std::io::Error::other(e.to_string()));
    w.write_record(header()).map_err(csv_err)?;
    for r in &rows {
        w.write_record(r).map_err(csv_err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::io(out, std::io::Error::other(e.to_string())))?;
    write_atomic(out, &bytes)?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_has_the_contract_columns_and_fewer_than_60() {
        let h = header();
        assert!(h.len() < 60);
        for c in [
            "experiment_id",
            "process_index",
            "duration_s",
            "energy_raw_j",
            "energy_adjusted_j",
            "energy_uncertainty_j",
            "energy_adjusted_uncertainty_j",
            "energy_baseline_w",
            "energy_baseline_method",
            "energy_method",
            "thermal_throttle_detected",
            "thermal_throttle_duration_s",
            "thermal_max_temp_c",
            "env_gpu_name",
            "env_gpu_count",
            "env_driver_version",
            "env_cuda_version",
            "env_in_container",
            "warmup_converged",
            "warmup_final_cv",
            "simulated",
            "tokens_out",
            "energy_per_output_token_j",
            "tokens_per_s",
            "attributed_active_j",
            "attributed_share",
        ] {
            assert!(h.contains(&c), "missing column {c}");
        }
        let unique: std::collections::HashSet<_> = h.iter().collect();
        assert_eq!(unique.len(), h.len());
        assert!(h.contains(&"throttle_thermal_duration_s"));
        assert!(h.contains(&"throttle_power_duration_s"));
        for c in &h {
            let parts: Vec<&str> = c.split('_').collect();
            assert!(
                parts.len() < 2 || parts[0] != parts[1],
                "column {c} repeats its prefix"
            );
        }
    }

    #[test]
    fn missing_values_are_empty_cells() {
        let v = serde_json::json!({
            "experiment_id": "e", "process_index": 0, "duration_s": 2.0,
            "energy": {"raw_j": 100.0, "adjusted_j": null},
            "command": {"argv": ["sleep", "2"], "exit_code": 0},
            "simulated": true, "warnings": ["a", "b"]
        });
        let r = row(&v);
        let h = header();
        let get = |c: &str| r[h.iter().position(|x| *x == c).unwrap()].clone();
        assert_eq!(get("energy_raw_j"), "100.0");
        assert_eq!(get("energy_adjusted_j"), "");
        assert_eq!(get("attributed_share"), "");
        assert_eq!(get("power_mean_w"), "50.0");
        assert_eq!(get("command"), "sleep 2");
        assert_eq!(get("simulated"), "true");
        assert_eq!(get("warnings_count"), "2");
        assert_eq!(get("tokens_out"), "");
    }

    #[test]
    fn every_column_means_the_same_on_process_and_aggregate_rows() {
        let h = header();
        let get = |r: &[String], c: &str| r[h.iter().position(|x| *x == c).unwrap()].clone();
        // two cycles of 1 s and 2 s, 10 s apart: per-cycle figures, gaps left out
        let agg = serde_json::json!({
            "aggregated": true, "experiment_id": "e", "duration_s": 13.0,
            "energy": {"raw_j": 30.0, "adjusted_j": 12.0},
            "thermal": {"throttle_duration_s": 0.8},
            "cycles": {"n": 2, "excluded": [{"cycle": 2, "reason": "x"}],
                "energy_raw_j": {"mean": 15.0, "ci95_low": 5.0, "ci95_high": 25.0},
                "per_cycle": [
                    {"cycle": 0, "raw_j": 10.0, "adjusted_j": 4.0, "duration_s": 1.0,
                     "throttle_duration_s": 0.2},
                    {"cycle": 1, "raw_j": 20.0, "adjusted_j": 8.0, "duration_s": 2.0,
                     "throttle_duration_s": 0.8}]},
            "bench": {"name": "b", "energy_per_iter_j": {"mean": 1.5},
                      "adjusted_energy_per_iter_j": {"mean": 0.5}},
            "metrics": {"energy_per_output_token_j": 0.1}
        });
        let r = row(&agg);
        assert_eq!(get(&r, "energy_raw_j"), "15.0");
        assert_eq!(get(&r, "energy_adjusted_j"), "6.0");
        assert_eq!(get(&r, "duration_s"), "1.5");
        assert_eq!(get(&r, "power_mean_w"), "10.0");
        assert_eq!(get(&r, "thermal_throttle_duration_s"), "0.5");
        assert_eq!(get(&r, "cycles_n"), "2");
        assert_eq!(get(&r, "cycles_excluded"), "1");
        assert_eq!(get(&r, "cycles_energy_raw_ci95_low_j"), "5.0");
        assert_eq!(get(&r, "cycles_energy_adjusted_ci95_low_j"), "");
        assert_eq!(get(&r, "bench_energy_per_iter_raw_j"), "1.5");
        assert_eq!(get(&r, "bench_energy_per_iter_adjusted_j"), "0.5");
        assert_eq!(get(&r, "energy_per_output_token_j"), "0.1");
        let p = serde_json::json!({
            "experiment_id": "e", "process_index": 0, "duration_s": 2.0,
            "energy": {"raw_j": 20.0}, "thermal": {"throttle_duration_s": 0.8}
        });
        let r = row(&p);
        assert_eq!(get(&r, "energy_raw_j"), "20.0");
        assert_eq!(get(&r, "power_mean_w"), "10.0");
        assert_eq!(get(&r, "thermal_throttle_duration_s"), "0.8");
        assert_eq!(get(&r, "cycles_n"), "1");
        for gone in ["bench_energy_per_iter_j", "cycles_energy_adjusted_cv"] {
            assert!(!h.contains(&gone), "{gone}: one name, one meaning");
        }
    }
}
