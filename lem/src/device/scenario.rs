//! The simulated-device scenario format: a power trace, the device's facts and, optionally,
//! how its sensor reads the trace. Parsing and validation only; `sim.rs` plays it.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::sim_process::ProcessScenario;
use super::throttle_reasons::ThrottleReasons;
use crate::error::{Error, Result};

/// A simulated device scenario (the JSON scenario file format).
///
/// Only `idle_w` is required. Times are seconds since the device was opened; outside every
/// segment the device draws `idle_w`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Device name; default "Simulated GPU".
    #[serde(default = "default_name")]
    pub name: String,
    /// Number of identical devices; default 1.
    #[serde(default = "default_count")]
    pub count: u32,
    /// Idle power in W.
    pub idle_w: f64,
    /// Power limit in W.
    #[serde(default)]
    pub power_limit_w: Option<f64>,
    /// Total memory in MB.
    #[serde(default)]
    pub memory_total_mb: Option<f64>,
    /// Whether the device has an energy counter (false forces power integration); default true.
    #[serde(default = "default_true")]
    pub energy_counter: bool,
    /// How often the counter updates, in ms (0, the default: continuously). Real NVML counters
    /// step about every 100 ms; set this to see lem flag windows below resolution.
    #[serde(default)]
    pub counter_update_ms: f64,
    /// Times (s) at which the energy counter resets to zero, as after a driver reload.
    #[serde(default)]
    pub counter_resets_s: Vec<f64>,
    /// Whether the device keeps violation counters (exact throttle time); default false.
    #[serde(default)]
    pub violation_counters: bool,
    /// Temperature when idle in °C; default 35.
    #[serde(default = "default_idle_temp")]
    pub idle_temperature_c: f64,
    /// Memory in use when idle in MB; default 512.
    #[serde(default = "default_idle_mem")]
    pub idle_memory_used_mb: f64,
    /// The power trace.
    #[serde(default)]
    pub segments: Vec<Segment>,
    /// How the simulated power sensor reads the trace (default: an ideal sensor that reads
    /// the exact power at any instant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor: Option<SensorSpec>,
    /// MIG mode is enabled (per-process utilisation is then unavailable); default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mig: bool,
    /// The processes using the device: per-process SM-utilisation and memory traces (what
    /// NVML's process calls answer). Without it the device lists no processes and lem does
    /// not attribute its energy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<ProcessScenario>,
    /// Driver-level behaviour for the NVML driver simulator (`tools/fake-nvml`): architecture,
    /// supported calls, identities. `sim:` ignores it, so one file drives both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nvml: Option<serde_json::Value>,
    /// Faults for the NVML driver simulator (return codes, lost GPUs, frozen counters...).
    /// `sim:` ignores them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<serde_json::Value>,
    /// The file the scenario was read from (canonical path), part of the devices' identity:
    /// the same file is the same simulated GPU, two files are two GPUs.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// One constant-power stretch of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// Start, seconds since open.
    pub start_s: f64,
    /// End, seconds since open (exclusive).
    pub end_s: f64,
    /// Power in W.
    pub power_w: f64,
    /// Throttle reasons active during the segment, NVML names in snake_case.
    #[serde(default)]
    pub throttle: Vec<String>,
    /// Temperature in °C; default: idle temperature + 0.08 °C per W above idle.
    #[serde(default)]
    pub temperature_c: Option<f64>,
    /// Memory in use in MB; default: the idle memory.
    #[serde(default)]
    pub memory_used_mb: Option<f64>,
    /// Utilisation in percent; default 100 when above idle power, else 0.
    #[serde(default)]
    pub utilisation_pct: Option<f64>,
}

/// A simulated power sensor that behaves like a real one: it publishes a value every
/// `period_ms`, observes only `sensing_duty` of each period, holds the instant power field
/// between refreshes, and may average the power reading over a trailing window. The truth
/// stays the trace; only what the device answers changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorSpec {
    /// The sensor's period, ms (the counter then advances by each completed period's sensed
    /// energy); default 100.
    #[serde(default = "default_sensor_period")]
    pub period_ms: f64,
    /// Fraction of each period observed, from its start: 0.25 senses 25 ms of every 100 ms;
    /// default 1.
    #[serde(default = "default_duty")]
    pub sensing_duty: f64,
    /// The power reading holds its value between refreshes this far apart, ms (0: fresh at
    /// every read); default 0.
    #[serde(default)]
    pub power_refresh_ms: f64,
    /// The power reading is the sensed power averaged over this trailing window, s (as
    /// `nvmlDeviceGetPowerUsage` on Ampere and newer); default 0 (no averaging).
    #[serde(default)]
    pub power_average_s: f64,
}

fn default_sensor_period() -> f64 {
    100.0
}
fn default_duty() -> f64 {
    1.0
}

fn default_name() -> String {
    "Simulated GPU".to_string()
}
fn default_count() -> u32 {
    1
}
fn default_true() -> bool {
    true
}
fn default_idle_temp() -> f64 {
    35.0
}
fn default_idle_mem() -> f64 {
    512.0
}

/// A segment with its throttle names resolved.
#[derive(Debug, Clone)]
pub(super) struct Seg {
    pub(super) start: f64,
    pub(super) end: f64,
    pub(super) power: f64,
    pub(super) throttle: ThrottleReasons,
    pub(super) temperature: f64,
    pub(super) memory: f64,
    pub(super) util: f64,
}

impl Scenario {
    /// Read and validate a scenario file.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read, [`Error::Scenario`] naming the file and the
    /// problem when it is not a valid scenario.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut s = Self::from_json(&text, path)?;
        s.source = Some(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()));
        Ok(s)
    }

    /// Parse and validate scenario JSON; `path` is only used in error messages.
    ///
    /// # Errors
    /// [`Error::Scenario`] naming `path` and the problem.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::Scenario {
            path: path.to_path_buf(),
            reason,
        };
        let s: Scenario = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        s.validate().map_err(bad)?;
        Ok(s)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        nonneg(self.idle_w, "idle_w")?;
        if self.count == 0 || self.count > 64 {
            return Err(format!(
                "count must be between 1 and 64, got {}",
                self.count
            ));
        }
        if let Some(p) = self.power_limit_w {
            if !(p.is_finite() && p > 0.0) {
                return Err(format!("power_limit_w must be > 0, got {p}"));
            }
        }
        if let Some(m) = self.memory_total_mb {
            if !(m.is_finite() && m > 0.0) {
                return Err(format!("memory_total_mb must be > 0, got {m}"));
            }
        }
        nonneg(self.counter_update_ms, "counter_update_ms")?;
        nonneg(self.idle_memory_used_mb, "idle_memory_used_mb")?;
        if !self.idle_temperature_c.is_finite() {
            return Err("idle_temperature_c must be finite".into());
        }
        for r in &self.counter_resets_s {
            nonneg(*r, "counter_resets_s entry")?;
        }
        for (i, seg) in self.segments.iter().enumerate() {
            seg.validate(&format!("segments[{i}]"))?;
        }
        if let Some(sn) = &self.sensor {
            sn.validate()?;
        }
        if let Some(p) = &self.processes {
            p.validate(self.count)?;
        }
        let mut order: Vec<&Segment> = self.segments.iter().collect();
        order.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        for w in order.windows(2) {
            if w[1].start_s < w[0].end_s {
                return Err(format!(
                    "segments overlap: [{}, {}) and [{}, {})",
                    w[0].start_s, w[0].end_s, w[1].start_s, w[1].end_s
                ));
            }
        }
        Ok(())
    }

    /// A stable fingerprint of the scenario (FNV-1a of its source file and canonical JSON),
    /// used in UUIDs: stable across processes, different for another file or an edit.
    pub(super) fn fingerprint(&self) -> u64 {
        let mut text = serde_json::to_string(self).unwrap_or_default();
        if let Some(p) = &self.source {
            text.push_str(&p.to_string_lossy());
        }
        crate::base::seeded::fnv1a(text.as_bytes())
    }

    pub(super) fn resolved(&self) -> Vec<Seg> {
        let mut segs: Vec<Seg> = self
            .segments
            .iter()
            .map(|s| {
                let throttle = s
                    .throttle
                    .iter()
                    .filter_map(|n| ThrottleReasons::from_name(n))
                    .fold(ThrottleReasons::NONE, ThrottleReasons::union);
                Seg {
                    start: s.start_s,
                    end: s.end_s,
                    power: s.power_w,
                    throttle,
                    temperature: s.temperature_c.unwrap_or(
                        self.idle_temperature_c + 0.08 * (s.power_w - self.idle_w).max(0.0),
                    ),
                    memory: s.memory_used_mb.unwrap_or(self.idle_memory_used_mb),
                    util: s.utilisation_pct.unwrap_or(if s.power_w > self.idle_w {
                        100.0
                    } else {
                        0.0
                    }),
                }
            })
            .collect();
        segs.sort_by(|a, b| a.start.total_cmp(&b.start));
        segs
    }
}

/// `v` is finite and ≥ 0, or a message naming `what`.
fn nonneg(v: f64, what: &str) -> std::result::Result<(), String> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(format!("{what} must be a finite number >= 0, got {v}"))
    }
}

impl Segment {
    fn validate(&self, at: &str) -> std::result::Result<(), String> {
        let seg = self;
        nonneg(seg.start_s, &format!("{at}.start_s"))?;
        if !seg.end_s.is_finite() || seg.end_s <= seg.start_s {
            return Err(format!(
                "{at} is reversed or empty: end_s ({}) must be after start_s ({})",
                seg.end_s, seg.start_s
            ));
        }
        if !(seg.power_w.is_finite() && seg.power_w >= 0.0) {
            return Err(format!("{at}.power_w must be >= 0, got {}", seg.power_w));
        }
        for name in &seg.throttle {
            if ThrottleReasons::from_name(name).is_none() {
                let valid: Vec<&str> = crate::device::throttle_reasons::REASONS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect();
                return Err(format!(
                    "{at}: unknown throttle reason `{name}` (valid: {})",
                    valid.join(", ")
                ));
            }
        }
        if let Some(u) = seg.utilisation_pct {
            if !(0.0..=100.0).contains(&u) {
                return Err(format!(
                    "{at}.utilisation_pct must be within 0..=100, got {u}"
                ));
            }
        }
        if let Some(m) = seg.memory_used_mb {
            nonneg(m, &format!("{at}.memory_used_mb"))?;
        }
        Ok(())
    }
}

impl SensorSpec {
    fn validate(&self) -> std::result::Result<(), String> {
        let sn = self;
        if !(sn.period_ms.is_finite() && sn.period_ms > 0.0 && sn.period_ms <= 10_000.0) {
            return Err(format!(
                "sensor.period_ms must be within (0, 10000], got {}",
                sn.period_ms
            ));
        }
        if !(sn.sensing_duty > 0.0 && sn.sensing_duty <= 1.0) {
            return Err(format!(
                "sensor.sensing_duty must be within (0, 1], got {}",
                sn.sensing_duty
            ));
        }
        nonneg(sn.power_refresh_ms, "sensor.power_refresh_ms")?;
        nonneg(sn.power_average_s, "sensor.power_average_s")?;
        Ok(())
    }
}
