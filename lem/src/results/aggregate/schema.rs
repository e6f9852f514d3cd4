//! The aggregate file's schema (`OUTPUT/aggregated/<experiment_id>.json`).

use serde::{Deserialize, Serialize};

use crate::results::env::Environment;
use crate::results::report::EnergyMethod;
use crate::results::stats::Interval;

/// Energy totals of an aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateEnergy {
    /// Gross energy over every cycle and device, J; `null` if any part is unknown.
    pub raw_j: Option<f64>,
    /// Net energy over every cycle and device, J; `null` if any part is unknown.
    pub adjusted_j: Option<f64>,
    /// Bound on |raw_j − truth|, J: the counted devices' bounds summed.
    #[serde(default)]
    pub uncertainty_j: Option<f64>,
    /// Bound on |adjusted_j − truth|, J.
    #[serde(default)]
    pub adjusted_uncertainty_j: Option<f64>,
    /// The model the bounds came from.
    #[serde(default)]
    pub uncertainty_method: Option<crate::results::report::UncertaintyMethod>,
    /// Sum of the distinct devices' baselines, W.
    pub baseline_power_w: Option<f64>,
    /// How the raw energy was obtained.
    pub method: Option<EnergyMethod>,
    /// How the baselines were obtained (the weakest across processes).
    pub baseline_method: Option<crate::results::report::BaselineMethod>,
}

/// One physical device in an aggregate: a GPU by its UUID alone, a RAPL domain by its id and
/// its host's identity (`environment.host_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateDevice {
    /// Host it is in (the hostname of the first process that measured it).
    pub host: String,
    /// Device UUID.
    pub uuid: String,
    /// Product name.
    pub name: String,
    /// Gross energy summed over cycles, J.
    pub raw_j: Option<f64>,
    /// Net energy summed over cycles, J.
    pub adjusted_j: Option<f64>,
    /// Process indices that measured it.
    pub measured_by: Vec<u32>,
}

/// Throttling over an aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateThermal {
    /// Any process saw throttling.
    pub throttle_detected: bool,
    /// Longest throttled time of any process, s.
    pub throttle_duration_s: f64,
    /// Longest thermally throttled time, s.
    pub thermal_duration_s: f64,
    /// Longest power-throttled time, s.
    pub power_duration_s: f64,
    /// Highest temperature, °C.
    pub max_temp_c: Option<f64>,
}

/// One cycle's totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleRow {
    /// Cycle number.
    pub cycle: u64,
    /// Processes in the cycle.
    pub num_processes: usize,
    /// Gross energy, J.
    pub raw_j: Option<f64>,
    /// Net energy, J.
    pub adjusted_j: Option<f64>,
    /// Bound on the gross energy's error, J.
    #[serde(default)]
    pub uncertainty_j: Option<f64>,
    /// Bound on the net energy's error, J.
    #[serde(default)]
    pub adjusted_uncertainty_j: Option<f64>,
    /// Time span, s.
    pub duration_s: f64,
    /// Start temperature (highest device), °C.
    pub start_temp_c: Option<f64>,
    /// Throttled time of the cycle: the longest of its processes', s.
    #[serde(default)]
    pub throttle_duration_s: Option<f64>,
    /// Thermally throttled time: the longest of its processes', s.
    #[serde(default)]
    pub thermal_duration_s: Option<f64>,
    /// Power-throttled time: the longest of its processes', s.
    #[serde(default)]
    pub power_duration_s: Option<f64>,
}

/// Statistics over cycles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleStats {
    /// Number of cycles.
    pub n: usize,
    /// Net energy per cycle.
    pub energy_adjusted_j: Option<Interval>,
    /// Gross energy per cycle.
    pub energy_raw_j: Option<Interval>,
    /// Duration per cycle.
    pub duration_s: Option<Interval>,
    /// Each cycle.
    pub per_cycle: Vec<CycleRow>,
    /// Cycles left out of the totals and statistics (a process's command failed or was
    /// interrupted), unless `--include-failed` kept them.
    #[serde(default)]
    pub excluded: Vec<ExcludedCycle>,
}

/// A result file left out of an aggregate because it belongs to another run, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExcludedFile {
    /// File name in the raw experiment directory.
    pub file: String,
    /// Why it is not part of the run aggregated.
    pub reason: String,
}

/// A cycle left out of an aggregate, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExcludedCycle {
    /// Cycle number.
    pub cycle: u64,
    /// What went wrong, per process.
    pub reason: String,
}

/// An aggregated experiment (`OUTPUT/aggregated/<experiment_id>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// Schema version.
    pub schema_version: String,
    /// Marks an aggregate (as opposed to a process result).
    pub aggregated: bool,
    /// The experiment.
    pub experiment_id: String,
    /// Distinct process indices.
    pub num_processes: usize,
    /// The process indices found.
    pub process_indices: Vec<u32>,
    /// Any device simulated.
    pub simulated: bool,
    /// Earliest start, Unix s.
    pub start_unix_s: Option<f64>,
    /// Latest end, Unix s.
    pub end_unix_s: Option<f64>,
    /// Earliest start, RFC 3339.
    pub started_at: Option<String>,
    /// From the earliest start to the latest end, s.
    pub duration_s: f64,
    /// Energy totals.
    pub energy: AggregateEnergy,
    /// Distinct devices.
    pub devices: Vec<AggregateDevice>,
    /// Throttling, OR-ed over processes.
    pub thermal: AggregateThermal,
    /// Cycle statistics.
    pub cycles: CycleStats,
    /// Environment of the lowest process index.
    pub environment: Option<Environment>,
    /// Result files combined.
    pub sources: Vec<String>,
    /// Result files in the directory left out because they belong to another run (an
    /// earlier run of the same process index, a cycle beyond the run's planned count, a
    /// process index outside the world size).
    #[serde(default)]
    pub excluded_files: Vec<ExcludedFile>,
    /// The clock skew allowed between hosts when checking that processes overlapped, s.
    #[serde(default)]
    pub clock_skew_allowance_s: Option<f64>,
    /// Problems found.
    pub warnings: Vec<String>,
    /// Sections passed through from the process results: `workload` always (it describes
    /// the experiment), `metrics`, `warmup`, `bench` and `command` when there is one result.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}
