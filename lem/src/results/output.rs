//! Writing results: atomic files, result files (schema v3) and time-series files.
//!
//! Layout: `OUTPUT/raw/<experiment_id>/process_<i>.json`, with the time series (when
//! recorded) beside it as `process_<i>_timeseries.json`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

use crate::base::cache::write_atomic;
use crate::device::Sample;
use crate::device::{SharedDevice, ThrottleReasons};
use crate::error::{Error, Result};
use crate::results::env::Environment;
use crate::results::report::{EnergyReport, SCHEMA_VERSION};

/// A result file: a report plus where and by whom it was measured. Workload-specific
/// sections (`workload`, `metrics`, `phases`, `bench`, `warmup`, `command`...) go in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultFile {
    /// The experiment this result belongs to.
    pub experiment_id: String,
    /// Which process (rank) wrote it.
    pub process_index: u32,
    /// The measurement.
    #[serde(flatten)]
    pub report: EnergyReport,
    /// Where it ran.
    pub environment: Option<Environment>,
    /// The time-series file beside it (relative path), if one was recorded.
    pub timeseries_file: Option<String>,
    /// Wall-clock start of the window, Unix s.
    pub start_unix_s: Option<f64>,
    /// Wall-clock end of the window, Unix s.
    pub end_unix_s: Option<f64>,
    /// Wall-clock start of the window, RFC 3339 UTC.
    pub started_at: Option<String>,
    /// Further sections, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ResultFile {
    /// A result file for `report`.
    pub fn new(
        report: EnergyReport,
        experiment_id: impl Into<String>,
        process_index: u32,
        environment: Environment,
    ) -> Self {
        Self {
            experiment_id: experiment_id.into(),
            process_index,
            report,
            environment: Some(environment),
            timeseries_file: None,
            start_unix_s: None,
            end_unix_s: None,
            started_at: None,
            extra: Map::new(),
        }
    }
}

/// One time-series point, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeseriesSample {
    /// Seconds since the window's start.
    pub t_s: f64,
    /// Device index.
    pub device: u32,
    /// Power, W.
    pub power_w: Option<f64>,
    /// Memory in use, MB.
    pub memory_used_mb: Option<f64>,
    /// Temperature, °C.
    pub temperature_c: Option<f64>,
    /// Utilisation, %.
    pub utilisation_pct: Option<f64>,
    /// Clocks-event reasons.
    pub throttle_reasons: ThrottleReasons,
}

/// A device named in a time-series file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeseriesDevice {
    /// Device index.
    pub index: u32,
    /// Stable identifier.
    pub uuid: String,
    /// Product name.
    pub name: String,
    /// Idle baseline, W.
    pub baseline_power_w: Option<f64>,
}

/// A time-series file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeseries {
    /// Schema version.
    pub schema_version: String,
    /// The experiment.
    pub experiment_id: String,
    /// Sampling interval, ms.
    pub interval_ms: f64,
    /// Number of samples (all devices).
    pub sample_count: usize,
    /// Simulated devices.
    pub simulated: bool,
    /// The devices sampled.
    pub devices: Vec<TimeseriesDevice>,
    /// The samples, in time order.
    pub samples: Vec<TimeseriesSample>,
}

impl Timeseries {
    /// A time series from samples whose times are relative to the window's start.
    pub fn new(
        experiment_id: &str,
        report: &EnergyReport,
        devices: &[SharedDevice],
        samples: &[Sample],
    ) -> Self {
        Self {
            schema_version: SCHEMA_VERSION.into(),
            experiment_id: experiment_id.into(),
            interval_ms: report.sampling.interval_ms,
            sample_count: samples.len(),
            simulated: report.simulated,
            devices: devices
                .iter()
                .map(|d| {
                    let i = d.info();
                    TimeseriesDevice {
                        index: i.index,
                        uuid: i.uuid.clone(),
                        name: i.name.clone(),
                        baseline_power_w: report
                            .devices
                            .iter()
                            .find(|r| r.index == i.index)
                            .and_then(|r| r.energy.baseline_power_w),
                    }
                })
                .collect(),
            samples: samples
                .iter()
                .map(|s| TimeseriesSample {
                    t_s: s.t_s,
                    device: s.device,
                    power_w: s.reading.power_w,
                    memory_used_mb: s.reading.memory_used_mb,
                    temperature_c: s.reading.temperature_c,
                    utilisation_pct: s.reading.utilisation_pct,
                    throttle_reasons: s.reading.throttle.unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// The results root when none is given: `LEM_OUTPUT_DIR`, else `results`.
pub fn default_output_dir() -> PathBuf {
    std::env::var_os("LEM_OUTPUT_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("results"), PathBuf::from)
}

/// `OUTPUT/raw/<experiment_id>/process_<i>.json`.
pub fn process_result_path(output: &Path, experiment_id: &str, process_index: u32) -> PathBuf {
    output
        .join("raw")
        .join(experiment_id)
        .join(format!("process_{process_index}.json"))
}

/// The time-series path beside a result path: `<stem>_timeseries.json`.
pub fn timeseries_path(result_path: &Path) -> PathBuf {
    let stem = result_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    result_path.with_file_name(format!("{stem}_timeseries.json"))
}

/// Write a result (and its time series, if given) atomically, creating the directory.
/// Sets `result.timeseries_file` to the time series' relative name.
///
/// # Errors
/// [`Error::Io`] naming the directory or file that could not be written.
pub fn write_result(
    path: &Path,
    result: &mut ResultFile,
    timeseries: Option<&Timeseries>,
) -> Result<()> {
    match timeseries {
        Some(ts) => write_result_with(path, result, |tp| {
            write_atomic(tp, &serde_json::to_vec_pretty(ts)?)
        }),
        None => {
            if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            result.timeseries_file = None;
            write_atomic(path, &serde_json::to_vec_pretty(result)?)
        }
    }
}

/// Write a result atomically, creating the directory, after `write_timeseries` has written
/// its time series to the path it is given (`<stem>_timeseries.json`, to be written
/// atomically). Sets `result.timeseries_file` to the time series' relative name.
///
/// # Errors
/// [`Error::Io`] naming the directory or file that could not be written, or
/// `write_timeseries`'s.
pub fn write_result_with(
    path: &Path,
    result: &mut ResultFile,
    write_timeseries: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tp = timeseries_path(path);
    write_timeseries(&tp)?;
    result.timeseries_file = tp.file_name().map(|n| n.to_string_lossy().into_owned());
    write_atomic(path, &serde_json::to_vec_pretty(result)?)
}

/// The stream beside a result path, written as the samples are taken:
/// `<stem>_timeseries.jsonl`.
pub fn timeseries_stream_path(result_path: &Path) -> PathBuf {
    timeseries_path(result_path).with_extension("jsonl")
}

/// Check a `schema_version` value: any 3.x is readable.
///
/// # Errors
/// [`Error::BadFile`] naming `path` when missing or of another major version.
pub fn check_schema(path: &Path, v: &Value) -> Result<()> {
    let bad = |reason: String| Error::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let version = v
        .get("schema_version")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("not a lem result (no schema_version)".into()))?;
    let major = version.split('.').next().unwrap_or("");
    if major != "3" {
        return Err(bad(format!(
            "schema version {version} is not supported by this lem (it reads 3.x)"
        )));
    }
    Ok(())
}

/// Read a JSON file lem wrote (result, aggregate or time series) and check its schema
/// version: any 3.x.
///
/// # Errors
/// [`Error::Io`] or [`Error::BadFile`] naming the file.
pub fn read_lem_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        reason: format!("not valid JSON ({e})"),
    })?;
    check_schema(path, &v)?;
    Ok(v)
}

/// Read a result file written by any 3.x lem (unknown fields are kept in `extra`).
///
/// # Errors
/// [`Error::Io`] or [`Error::BadFile`] naming the file.
pub fn read_result(path: &Path) -> Result<ResultFile> {
    let v = read_lem_json(path)?;
    serde_json::from_value(v).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        reason: format!("not a lem result ({e})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn failed_atomic_write_names_the_file_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-dir/a.json");
        let e = write_atomic(&p, b"x").unwrap_err();
        assert!(e.to_string().contains("missing-dir/a.json"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn paths_follow_the_layout() {
        let p = process_result_path(Path::new("results"), "exp1", 3);
        assert_eq!(p, PathBuf::from("results/raw/exp1/process_3.json"));
        assert_eq!(
            timeseries_path(&p),
            PathBuf::from("results/raw/exp1/process_3_timeseries.json")
        );
    }

    #[test]
    fn schema_major_version_is_checked() {
        let p = Path::new("r.json");
        assert!(check_schema(p, &serde_json::json!({"schema_version": "3.7"})).is_ok());
        assert!(check_schema(p, &serde_json::json!({"schema_version": "3"})).is_ok());
        let e = check_schema(p, &serde_json::json!({"schema_version": "4.0"})).unwrap_err();
        assert!(
            e.to_string()
                .contains("schema version 4.0 is not supported"),
            "{e}"
        );
        assert!(check_schema(p, &serde_json::json!({"x": 1})).is_err());
    }
}
