//! The results schema (version 3): what a scope reports and what result files hold.
//!
//! Every number carries its unit in its name. Values lem could not measure are `null`,
//! never zero. Readers ignore unknown fields, so files from any 3.x lem can be read.

use serde::{Deserialize, Serialize};

use crate::device::{DeviceKind, PowerSource, ThrottleReasons};

/// How a baseline was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BaselineMethod {
    /// Measured by this process.
    Fresh,
    /// Read from the cache.
    Cached,
    /// Turned off by configuration.
    #[default]
    Disabled,
    /// Could not be measured.
    Unavailable,
}

impl BaselineMethod {
    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fresh => "fresh",
            Self::Cached => "cached",
            Self::Disabled => "disabled",
            Self::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for BaselineMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The schema version written into every result; readers accept any "3.x".
pub const SCHEMA_VERSION: &str = "3.0";

/// How a device's (or the total's) raw energy was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnergyMethod {
    /// The device's cumulative energy counter, read at both ends of the window.
    EnergyCounter,
    /// Trapezoid integration of the sampled power.
    PowerIntegration,
    /// Devices used different methods.
    Mixed,
}

impl EnergyMethod {
    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EnergyCounter => "energy_counter",
            Self::PowerIntegration => "power_integration",
            Self::Mixed => "mixed",
        }
    }
}

impl std::fmt::Display for EnergyMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The measurement of one window (what `EnergyScope::finish`
/// returns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyReport {
    /// Schema version ("3.0").
    pub schema_version: String,
    /// The scope's name.
    pub name: String,
    /// Start of the window, seconds since the meter was created.
    pub start_s: f64,
    /// Length of the window in seconds.
    pub duration_s: f64,
    /// True when any device is simulated: the numbers are not measurements.
    pub simulated: bool,
    /// Totals over all devices.
    pub energy: EnergySummary,
    /// Power of all devices together (the same basis for mean and peak).
    #[serde(default)]
    pub power: TotalPower,
    /// One entry per device.
    pub devices: Vec<DeviceReport>,
    /// Throttling over the window.
    pub thermal: ThermalSummary,
    /// What the background sampler did during the window.
    pub sampling: SamplingSummary,
    /// Everything the reader should know before trusting the numbers.
    pub warnings: Vec<String>,
    /// Whose share of the active energy it was, where the devices list their processes
    /// (absent where none does: CPUs, simulated GPUs without process traces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<crate::results::attribution::Attribution>,
}

/// Power of all devices together, in W.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TotalPower {
    /// Total raw energy / duration.
    pub mean_w: Option<f64>,
    /// Highest sum over devices of one sampling round's readings (rounds where every device
    /// answered).
    pub peak_w: Option<f64>,
}

/// How an energy bound was derived (README, "How sure is a joule").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UncertaintyMethod {
    /// Energy counter: each read may be stale by up to one update period, so each end can
    /// miss up to period × the power near it; plus one counter step, plus part-time sensing.
    CounterStaleness,
    /// Integrated power samples: a step between two samples is unseen for up to the gap;
    /// plus the smoothing of 1-second averaged readings at the window's ends, stale and held
    /// readings, and part-time sensing.
    Integration,
    /// Devices whose bounds came from different models.
    Mixed,
}

impl std::fmt::Display for UncertaintyMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::CounterStaleness => "counter_staleness",
            Self::Integration => "integration",
            Self::Mixed => "mixed",
        })
    }
}

/// What one device's bound was computed from (the inputs, recorded in the result).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UncertaintyInputs {
    /// The counter's update period used, s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter_update_s: Option<f64>,
    /// Where that period came from: `probed`, `simulated` or `default (<architecture>)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter_update_source: Option<String>,
    /// Highest power seen near the window's start, W.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_near_start_w: Option<f64>,
    /// Highest power seen near the window's end, W.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_near_end_w: Option<f64>,
    /// The counter's resolution, J.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter_step_j: Option<f64>,
    /// Sampling interval, s (integration).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_s: Option<f64>,
    /// Part of the bound from power changes between samples, J (integration).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampling_j: Option<f64>,
    /// Part of the bound from 1-second averaged readings, J (integration).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub averaging_j: Option<f64>,
    /// The idle baseline's own uncertainty, W (standard error, plus the counter's staleness
    /// over the baseline measurement).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_uncertainty_w: Option<f64>,
    /// The sensor's period used, s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor_period_s: Option<f64>,
    /// The fraction of each sensor period the sensor observes (1: all of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensing_fraction: Option<f64>,
    /// Where the sensor's figures come from (measured, assumed, override).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor_source: Option<String>,
    /// Part of the bound from part-time sensing, J: every power change seen may have
    /// happened in the unobserved part of a sensor period (|ΔP| × unobserved time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_time_j: Option<f64>,
    /// Part of the bound from stale readings, J (integration): a reading held between sensor
    /// refreshes shows each change up to one refresh late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staleness_j: Option<f64>,
    /// Part of the bound for a window no fresh reading fell inside, J (integration): the
    /// power may have changed since the held reading, by as much as it varies nearby or the
    /// device's limits allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_j: Option<f64>,
    /// The readings' resolution over the window, J (1 mW of power, 1 mJ of energy): what
    /// keeps a bound above zero when nothing else varies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution_j: Option<f64>,
}

/// Energy totals over all devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergySummary {
    /// Gross energy in J; `null` when some device's energy could not be measured.
    pub raw_j: Option<f64>,
    /// Net energy in J: per device max(0, raw − baseline × duration), summed; `null` without
    /// a baseline for every device.
    pub adjusted_j: Option<f64>,
    /// Sum of the devices' idle baselines in W.
    pub baseline_power_w: Option<f64>,
    /// How the baselines were obtained (the weakest across devices).
    pub baseline_method: BaselineMethod,
    /// When the (oldest) baseline was measured, RFC 3339 UTC.
    pub baseline_timestamp: Option<String>,
    /// Age of the (oldest) cached baseline in s; `null` for a fresh one.
    pub baseline_cache_age_s: Option<f64>,
    /// How raw energy was obtained; `null` when nothing was measured.
    pub method: Option<EnergyMethod>,
    /// A bound on |raw_j − true energy| in J (the devices' bounds summed); `null` when the
    /// energy, or what the bound needs, is unknown.
    #[serde(default)]
    pub uncertainty_j: Option<f64>,
    /// A bound on |adjusted_j − true net energy| in J: raw's plus the baselines'.
    #[serde(default)]
    pub adjusted_uncertainty_j: Option<f64>,
    /// The model the bound came from (`counter_staleness`, `integration` or `mixed`).
    #[serde(default)]
    pub uncertainty_method: Option<UncertaintyMethod>,
    /// Some device's window was too short for its energy counter's resolution.
    #[serde(default)]
    pub below_resolution: bool,
    /// A shared window's part of its group's energy (`shared_j`...); absent for other
    /// windows.
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedEnergy>,
}

/// A shared window's part of the energy of its group: over each stretch between two of the
/// group's window boundaries, the stretch's energy divided among the windows open in it
/// (equally, or the active part by the weight each added in it). The shares of a group add
/// up to the energy of the union of its windows; `raw_j` stays the full-overlap energy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedEnergy {
    /// The group the window belongs to.
    pub shared_group: String,
    /// The window's share of the group's energy, J; `null` when a stretch it was open in
    /// could not be measured.
    pub shared_j: Option<f64>,
    /// A bound on the share's error, J: each stretch's bound divided like its energy.
    pub shared_uncertainty_j: Option<f64>,
    /// The share of the group's adjusted energy, J (`null` without a baseline).
    pub shared_adjusted_j: Option<f64>,
    /// The weight the window reported (0 when it reported none).
    pub shared_weight: f64,
}

/// One device's share of a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceReport {
    /// Device index in the meter.
    pub index: u32,
    /// Stable device identifier.
    pub uuid: String,
    /// Product name.
    pub name: String,
    /// Kind of source.
    pub kind: DeviceKind,
    /// Simulated device.
    pub simulated: bool,
    /// MIG mode: the energy is the whole GPU's.
    #[serde(default)]
    pub mig: bool,
    /// Energy of this device.
    pub energy: DeviceEnergy,
    /// Power over the window.
    pub power: PowerStats,
    /// Temperature over the window.
    pub temperature: TemperatureStats,
    /// Memory over the window.
    pub memory: MemoryStats,
    /// Utilisation over the window.
    pub utilisation: UtilisationStats,
    /// Throttling on this device.
    pub throttle: DeviceThrottle,
}

/// One device's energy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceEnergy {
    /// Gross energy in J, `null` when it could not be measured.
    pub raw_j: Option<f64>,
    /// max(0, raw − baseline × duration) in J, `null` without a baseline.
    pub adjusted_j: Option<f64>,
    /// The idle baseline used, in W.
    pub baseline_power_w: Option<f64>,
    /// How the baseline was obtained.
    pub baseline_method: BaselineMethod,
    /// How `raw_j` was obtained.
    pub method: Option<EnergyMethod>,
    /// The window is shorter than a few counter updates: the figure is coarse.
    pub below_resolution: bool,
    /// A bound on |raw_j − true energy| in J.
    #[serde(default)]
    pub uncertainty_j: Option<f64>,
    /// A bound on |adjusted_j − true net energy| in J.
    #[serde(default)]
    pub adjusted_uncertainty_j: Option<f64>,
    /// The model the bound came from.
    #[serde(default)]
    pub uncertainty_method: Option<UncertaintyMethod>,
    /// What the bound was computed from.
    #[serde(default)]
    pub uncertainty: UncertaintyInputs,
    /// The sensor's documented calibration accuracy, ± % of the reading, where the vendor
    /// states one. `uncertainty_j` does not include it: it bounds how lem sampled the sensor,
    /// not how right the sensor is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_pct: Option<f64>,
    /// For a device lost during the window: the energy integrated up to the loss, J. Partial
    /// (the rest of the window is unknown); `raw_j` stays `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_until_lost_j: Option<f64>,
    /// The bound on `energy_until_lost_j`, J.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_until_lost_uncertainty_j: Option<f64>,
}

/// Power statistics in W.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerStats {
    /// Raw energy / duration.
    pub mean_w: Option<f64>,
    /// Highest sampled power.
    pub peak_w: Option<f64>,
    /// Which reading the samples are when nothing falls back.
    pub source: PowerSource,
    /// Samples in the window read from the instantaneous power field.
    #[serde(default)]
    pub instant_readings: u64,
    /// Samples in the window read from `nvmlDeviceGetPowerUsage` (averaged or not; on a
    /// device whose `source` is `instant`, these fell back).
    #[serde(default)]
    pub usage_readings: u64,
}

/// Temperatures in °C.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemperatureStats {
    /// At the start of the window.
    pub start_c: Option<f64>,
    /// Highest during the window.
    pub max_c: Option<f64>,
}

/// Memory in MiB (as nvidia-smi prints it; the keys keep their `_mb` names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Highest memory in use during the window.
    pub peak_used_mb: Option<f64>,
    /// Device memory.
    pub total_mb: Option<f64>,
}

/// Utilisation in percent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UtilisationStats {
    /// Mean of the samples.
    pub mean_pct: Option<f64>,
}

/// Where throttle durations come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThrottleSource {
    /// Sampled clocks-event reasons: durations as fine as the sampling interval.
    Samples,
    /// The device's violation counters: exact time for the reasons each policy counts (SW
    /// power cap, thermal slowdown); reasons no counter covers (HW power brake, HW slowdown)
    /// keep their sampled time.
    ViolationCounters,
}

/// One device's throttling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceThrottle {
    /// A slowdown during the window: thermal, HW slowdown or power brake. The SW power cap
    /// alone (GPU Boost at its limit, normal under heavy load) does not count.
    pub detected: bool,
    /// Time slowed down (thermal, HW slowdown or power brake), s.
    pub throttle_duration_s: f64,
    /// Time thermally throttled (software or hardware), s.
    pub thermal_duration_s: f64,
    /// Time at the power limit or braked (SW power cap or HW power brake), s.
    pub power_duration_s: f64,
    /// Where the durations come from.
    pub duration_source: ThrottleSource,
    /// Every reason seen.
    pub reasons: ThrottleReasons,
}

/// Throttling over all devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThermalSummary {
    /// Any device throttled.
    pub throttle_detected: bool,
    /// Longest throttled time of any device, s.
    pub throttle_duration_s: f64,
    /// Longest thermally throttled time of any device, s.
    pub thermal_duration_s: f64,
    /// Longest power-throttled time of any device, s.
    pub power_duration_s: f64,
    /// Highest temperature of any device, °C.
    pub max_temp_c: Option<f64>,
    /// Throttle intervals, from the samples.
    pub events: Vec<ThrottleEvent>,
}

/// One throttle interval on one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThrottleEvent {
    /// Device index.
    pub device: u32,
    /// Start, seconds since the window's start.
    pub start_s: f64,
    /// End, seconds since the window's start.
    pub end_s: f64,
    /// Reasons seen during the interval.
    pub reasons: ThrottleReasons,
}

/// Sampler statistics for the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingSummary {
    /// Sampling interval, ms.
    pub interval_ms: f64,
    /// Sampling rounds (each reads every device) inside the window.
    pub sample_count: u64,
    /// Rounds the interval promises for the window's length.
    pub expected_sample_count: u64,
    /// Device reads that failed during the window (not fatal).
    pub failed_reads: u64,
}

/// One model if every figure used it, `mixed` if they differ, `None` if any is unknown.
pub fn combine_methods(
    methods: impl Iterator<Item = Option<UncertaintyMethod>>,
) -> Option<UncertaintyMethod> {
    let mut out: Option<UncertaintyMethod> = None;
    for m in methods {
        let m = m?;
        out = Some(match out {
            Some(o) if o != m => UncertaintyMethod::Mixed,
            _ => m,
        });
    }
    out
}

impl EnergyReport {
    /// The report as pretty JSON.
    ///
    /// # Errors
    /// Only if serialisation fails, which these types do not do.
    pub fn to_json(&self) -> crate::error::Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Whether any device throttled during the window.
    pub fn throttled(&self) -> bool {
        self.thermal.throttle_detected
    }
}

/// Combine the reports of consecutive windows (e.g. a benchmark's samples) into one: energies,
/// durations and throttle times add up, peaks and maxima are the highest, events keep their
/// times relative to the first window's start. Unknown energy anywhere stays unknown.
pub fn merge_reports(name: &str, reports: &[EnergyReport]) -> Option<EnergyReport> {
    let first = reports.first()?;
    let add =
        |f: &dyn Fn(&EnergyReport) -> Option<f64>| -> Option<f64> { reports.iter().map(f).sum() };
    let duration_s: f64 = reports.iter().map(|r| r.duration_s).sum();
    let mut devices = first.devices.clone();
    for (i, d) in devices.iter_mut().enumerate() {
        let mine: Vec<&DeviceReport> = reports.iter().filter_map(|r| r.devices.get(i)).collect();
        merge_device(d, &mine, duration_s);
    }
    let mut warnings: Vec<String> = Vec::new();
    for r in reports {
        for w in &r.warnings {
            if !warnings.contains(w) {
                warnings.push(w.clone());
            }
        }
    }
    let events = reports
        .iter()
        .flat_map(|r| {
            let off = r.start_s - first.start_s;
            r.thermal.events.iter().map(move |e| ThrottleEvent {
                start_s: e.start_s + off,
                end_s: e.end_s + off,
                ..e.clone()
            })
        })
        .collect();
    Some(EnergyReport {
        schema_version: SCHEMA_VERSION.to_string(),
        name: name.to_string(),
        start_s: first.start_s,
        duration_s,
        simulated: reports.iter().any(|r| r.simulated),
        energy: EnergySummary {
            raw_j: add(&|r| r.energy.raw_j),
            adjusted_j: add(&|r| r.energy.adjusted_j),
            uncertainty_j: add(&|r| r.energy.uncertainty_j),
            adjusted_uncertainty_j: add(&|r| r.energy.adjusted_uncertainty_j),
            uncertainty_method: combine_methods(
                reports.iter().map(|r| r.energy.uncertainty_method),
            ),
            below_resolution: reports.iter().any(|r| r.energy.below_resolution),
            shared: None,
            method: if reports
                .iter()
                .all(|r| r.energy.method == first.energy.method)
            {
                first.energy.method
            } else {
                Some(EnergyMethod::Mixed)
            },
            ..first.energy.clone()
        },
        power: TotalPower {
            mean_w: add(&|r| r.energy.raw_j)
                .filter(|_| duration_s > 0.0)
                .map(|e| e / duration_s),
            peak_w: reports
                .iter()
                .filter_map(|r| r.power.peak_w)
                .reduce(f64::max),
        },
        devices,
        thermal: ThermalSummary {
            throttle_detected: reports.iter().any(|r| r.thermal.throttle_detected),
            throttle_duration_s: reports.iter().map(|r| r.thermal.throttle_duration_s).sum(),
            thermal_duration_s: reports.iter().map(|r| r.thermal.thermal_duration_s).sum(),
            power_duration_s: reports.iter().map(|r| r.thermal.power_duration_s).sum(),
            max_temp_c: reports
                .iter()
                .filter_map(|r| r.thermal.max_temp_c)
                .reduce(f64::max),
            events,
        },
        sampling: SamplingSummary {
            interval_ms: first.sampling.interval_ms,
            sample_count: reports.iter().map(|r| r.sampling.sample_count).sum(),
            expected_sample_count: reports
                .iter()
                .map(|r| r.sampling.expected_sample_count)
                .sum(),
            failed_reads: reports.iter().map(|r| r.sampling.failed_reads).sum(),
        },
        warnings,
        // shares of separate windows are not merged: each window's stays in its own report
        attribution: None,
    })
}
/// One device over several windows (`mine`, in order, lasting `duration_s` together):
/// energies, bounds and throttle times add, peaks take the highest.
fn merge_device(d: &mut DeviceReport, mine: &[&DeviceReport], duration_s: f64) {
    let sum = |f: &dyn Fn(&DeviceReport) -> Option<f64>| -> Option<f64> {
        mine.iter().map(|x| f(x)).sum()
    };
    let max = |f: &dyn Fn(&DeviceReport) -> Option<f64>| {
        mine.iter().filter_map(|x| f(x)).reduce(f64::max)
    };
    d.energy.raw_j = sum(&|x| x.energy.raw_j);
    d.energy.adjusted_j = sum(&|x| x.energy.adjusted_j);
    d.energy.below_resolution = mine.iter().any(|x| x.energy.below_resolution);
    if mine.iter().any(|x| x.energy.method != d.energy.method) {
        d.energy.method = Some(EnergyMethod::Mixed);
    }
    // Bounds of separate windows add.
    d.energy.uncertainty_j = sum(&|x| x.energy.uncertainty_j);
    d.energy.adjusted_uncertainty_j = sum(&|x| x.energy.adjusted_uncertainty_j);
    d.energy.uncertainty_method = combine_methods(mine.iter().map(|x| x.energy.uncertainty_method));
    d.power.mean_w = d
        .energy
        .raw_j
        .filter(|_| duration_s > 0.0)
        .map(|e| e / duration_s);
    d.power.peak_w = max(&|x| x.power.peak_w);
    d.temperature.max_c = max(&|x| x.temperature.max_c);
    d.memory.peak_used_mb = max(&|x| x.memory.peak_used_mb);
    d.throttle.detected = mine.iter().any(|x| x.throttle.detected);
    d.throttle.throttle_duration_s = mine.iter().map(|x| x.throttle.throttle_duration_s).sum();
    d.throttle.thermal_duration_s = mine.iter().map(|x| x.throttle.thermal_duration_s).sum();
    d.throttle.power_duration_s = mine.iter().map(|x| x.throttle.power_duration_s).sum();
    d.throttle.reasons = mine
        .iter()
        .fold(ThrottleReasons::NONE, |a, x| a.union(x.throttle.reasons));
}
