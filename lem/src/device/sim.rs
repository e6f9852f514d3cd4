//! A simulated GPU driven by a scenario file: an exact, deterministic power trace.
//!
//! The energy counter is the exact integral of the trace since the device was opened, so
//! tests can compare lem's numbers with the truth. Every output marks it `simulated`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::sensor::SensorProfile;
use super::source::{DeviceInfo, DeviceKind, EnergySource, PowerSource, Reading, Violations};
use super::throttle_reasons::ThrottleReasons;
use crate::base::clock::Clock;
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
struct Seg {
    start: f64,
    end: f64,
    power: f64,
    throttle: ThrottleReasons,
    temperature: f64,
    memory: f64,
    util: f64,
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
        let nonneg = |v: f64, what: &str| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!("{what} must be a finite number >= 0, got {v}"))
            }
        };
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
            let at = format!("segments[{i}]");
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
        }
        if let Some(sn) = &self.sensor {
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
    fn fingerprint(&self) -> u64 {
        let mut text = serde_json::to_string(self).unwrap_or_default();
        if let Some(p) = &self.source {
            text.push_str(&p.to_string_lossy());
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    }

    fn resolved(&self) -> Vec<Seg> {
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

/// One simulated GPU.
#[derive(Debug)]
pub struct SimDevice {
    info: DeviceInfo,
    scenario: Scenario,
    segs: Vec<Seg>,
    resets: Vec<f64>,
    clock: Arc<dyn Clock>,
    opened_at_s: f64,
    /// Device times (s since open) at which the trace (re)started: the first at 0, later
    /// ones from [`restart_trace`](Self::restart_trace).
    restarts: Mutex<Vec<f64>>,
    /// With a sensor: the sensed energy before each sensor period's start (prefix sums),
    /// grown on demand.
    sensed: Mutex<Vec<f64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SimDevice {
    /// Open every device of a scenario (`count` of them) on `clock`, numbering them from
    /// `first_index`.
    pub fn open_all(
        scenario: &Scenario,
        clock: Arc<dyn Clock>,
        first_index: u32,
    ) -> Vec<SimDevice> {
        let fp = scenario.fingerprint();
        (0..scenario.count)
            .map(|i| SimDevice::open(scenario, fp, i, first_index + i, clock.clone()))
            .collect()
    }

    fn open(scenario: &Scenario, fp: u64, i: u32, index: u32, clock: Arc<dyn Clock>) -> Self {
        let mut resets = scenario.counter_resets_s.clone();
        resets.sort_by(f64::total_cmp);
        let sensor = scenario.sensor.as_ref();
        let averaged = sensor.is_some_and(|s| s.power_average_s > 0.0);
        let info = DeviceInfo {
            index,
            kind: DeviceKind::SimulatedGpu,
            name: scenario.name.clone(),
            uuid: format!("SIM-{fp:016x}-{i}"),
            nvml_index: None,
            pci_bus_id: None,
            compute_capability: None,
            memory_total_mb: scenario.memory_total_mb,
            power_limit_w: scenario.power_limit_w,
            mig: false,
            simulated: true,
            energy_counter: scenario.energy_counter,
            // a sensed counter moves once per sensor period
            counter_update_s: match sensor {
                Some(s) if scenario.counter_update_ms == 0.0 => s.period_ms / 1000.0,
                _ => scenario.counter_update_ms / 1000.0,
            },
            counter_step_j: 0.0,
            power_source: if averaged {
                PowerSource::Averaged
            } else {
                PowerSource::Simulated
            },
            architecture: None,
            sensor: sensor.map_or_else(SensorProfile::default, |s| SensorProfile {
                period_s: s.period_ms / 1000.0,
                sensing_fraction: s.sensing_duty,
                // readings are period means: they change at most once a period
                refresh_s: (s.power_refresh_ms.max(s.period_ms)) / 1000.0,
                source: "simulated: the scenario's sensor block".into(),
                calibration_pct: None,
            }),
        };
        let opened_at_s = clock.now().as_secs_f64();
        Self {
            info,
            scenario: scenario.clone(),
            segs: scenario.resolved(),
            resets,
            clock,
            opened_at_s,
            restarts: Mutex::new(vec![0.0]),
            sensed: Mutex::new(vec![0.0]),
        }
    }

    /// Seconds since this device was opened.
    pub fn elapsed_s(&self) -> f64 {
        (self.clock.now().as_secs_f64() - self.opened_at_s).max(0.0)
    }

    /// Start the trace again from its beginning now, as a workload whose power pattern
    /// starts when its work starts (the sensor keeps its own clock).
    pub fn restart_trace(&self) {
        let now = self.elapsed_s();
        lock(&self.restarts).push(now);
        if let Some(sn) = &self.scenario.sensor {
            // sensed periods that ended before now are history; later ones change
            let keep = (now / (sn.period_ms / 1000.0)).floor() as usize + 1;
            lock(&self.sensed).truncate(keep.max(1));
        }
    }

    /// The trace's own time at device time `t`, and the restart it counts from.
    fn trace_time(&self, t: f64) -> f64 {
        let r = lock(&self.restarts);
        let i = r.partition_point(|x| *x <= t);
        t - i.checked_sub(1).map_or(0.0, |j| r[j])
    }

    /// The sum of `f(stretch of trace time)` over the trace's runs in `[0, t]` of device time.
    fn over_runs(&self, t: f64, f: impl Fn(f64) -> f64) -> f64 {
        let r = lock(&self.restarts);
        let t = t.max(0.0);
        r.iter()
            .enumerate()
            .filter(|(_, s)| **s < t)
            .map(|(i, s)| f(r.get(i + 1).copied().unwrap_or(t).min(t) - s))
            .sum()
    }

    fn segment_at(&self, t: f64) -> Option<&Seg> {
        let u = self.trace_time(t);
        let i = self.segs.partition_point(|s| s.start <= u);
        i.checked_sub(1)
            .map(|j| &self.segs[j])
            .filter(|s| u < s.end)
    }

    /// The exact power of the trace at `t` seconds since open.
    pub fn power_at(&self, t: f64) -> f64 {
        self.segment_at(t).map_or(self.scenario.idle_w, |s| s.power)
    }

    /// The trace's energy over its first `u` seconds.
    fn run_energy(&self, u: f64) -> f64 {
        let extra: f64 = self
            .segs
            .iter()
            .map(|s| (s.power - self.scenario.idle_w) * (s.end.min(u) - s.start).max(0.0))
            .sum();
        self.scenario.idle_w * u + extra
    }

    /// The exact energy of the trace over `[0, t]` in J: the truth.
    pub fn energy_until(&self, t: f64) -> f64 {
        self.over_runs(t, |u| self.run_energy(u))
    }

    /// Exact time in `[0, t]` during which `pred` holds for the segment's reasons, in s.
    pub fn time_where(&self, t: f64, pred: impl Fn(ThrottleReasons) -> bool) -> f64 {
        self.over_runs(t, |u| {
            self.segs
                .iter()
                .filter(|s| pred(s.throttle))
                .map(|s| (s.end.min(u) - s.start).max(0.0))
                .sum()
        })
    }

    /// The energy the sensor attributes to sensor period `k`: the mean power over the part
    /// it observed, times the period.
    fn period_energy(&self, sn: &SensorSpec, k: usize) -> f64 {
        let period = sn.period_ms / 1000.0;
        let start = k as f64 * period;
        let seen = sn.sensing_duty * period;
        (self.energy_until(start + seen) - self.energy_until(start)) / sn.sensing_duty
    }

    /// The sensed energy before the start of sensor period `k`.
    fn sensed_before(&self, sn: &SensorSpec, k: usize) -> f64 {
        let mut p = lock(&self.sensed);
        while p.len() <= k {
            let j = p.len() - 1;
            let next = p[j] + self.period_energy(sn, j);
            p.push(next);
        }
        p[k]
    }

    /// The energy the sensor has attributed to `[0, t]`: whole periods as sensed, the
    /// current one at its sensed power. The exact energy without a sensor.
    pub fn sensed_until(&self, t: f64) -> f64 {
        let Some(sn) = &self.scenario.sensor else {
            return self.energy_until(t);
        };
        let period = sn.period_ms / 1000.0;
        let t = t.max(0.0);
        let k = (t / period).floor() as usize;
        self.sensed_before(sn, k) + (t - k as f64 * period) / period * self.period_energy(sn, k)
    }

    /// The power reading at `t`: exact without a sensor; with one, the mean power of the
    /// last observed stretch as of the last refresh, or its trailing average.
    pub fn sensed_power_at(&self, t: f64) -> f64 {
        let Some(sn) = &self.scenario.sensor else {
            return self.power_at(t);
        };
        if sn.power_average_s > 0.0 {
            let win = sn.power_average_s.min(t);
            if win > 0.0 {
                return (self.sensed_until(t) - self.sensed_until(t - win)) / win;
            }
        }
        let period = sn.period_ms / 1000.0;
        let refresh = sn.power_refresh_ms / 1000.0;
        let r = if refresh > 0.0 {
            (t / refresh).floor() * refresh
        } else {
            t
        };
        // the latest period whose observed part had ended by `r`
        let last = ((r - sn.sensing_duty * period) / period).floor();
        if last < 0.0 {
            return self.power_at(0.0);
        }
        self.period_energy(sn, last as usize) / period
    }

    /// The counter value at `t` seconds since open: quantised to the update period (and, with
    /// a sensor, made of whole sensed periods), restarted at each reset.
    pub fn counter_at(&self, t: f64) -> f64 {
        let period = self.info.counter_update_s;
        let q = |t: f64| {
            if period > 0.0 {
                (t / period).floor() * period
            } else {
                t
            }
        };
        let value = |t: f64| match &self.scenario.sensor {
            Some(sn) => {
                let p = sn.period_ms / 1000.0;
                self.sensed_before(sn, (t / p + 1e-9).floor() as usize)
            }
            None => self.energy_until(t),
        };
        let tq = q(t);
        let origin = self
            .resets
            .iter()
            .copied()
            .filter(|r| *r <= tq)
            .fold(0.0_f64, f64::max);
        value(tq) - value(origin)
    }
}

impl SimDevice {
    /// What the device answers at `t` seconds since open (the power as its sensor reads it).
    pub fn reading_at(&self, t: f64) -> Reading {
        let seg = self.segment_at(t);
        Reading {
            power_w: Some(self.sensed_power_at(t)),
            power_source: Some(self.info.power_source),
            memory_used_mb: Some(seg.map_or(self.scenario.idle_memory_used_mb, |s| s.memory)),
            utilisation_pct: Some(seg.map_or(0.0, |s| s.util)),
            temperature_c: Some(seg.map_or(self.scenario.idle_temperature_c, |s| s.temperature)),
            throttle: Some(seg.map_or(ThrottleReasons::GPU_IDLE, |s| s.throttle)),
            failed_fields: 0,
        }
    }

    /// The scenario this device was opened from.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }
}

impl EnergySource for SimDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn energy_j(&self) -> Result<f64> {
        if !self.scenario.energy_counter {
            return Err(Error::NotSupported {
                device: format!("{} (simulated)", self.info.name),
                what: "energy counter".into(),
            });
        }
        Ok(self.counter_at(self.elapsed_s()))
    }

    fn read(&self) -> Result<Reading> {
        Ok(self.reading_at(self.elapsed_s()))
    }

    fn temperature_c(&self) -> Option<f64> {
        let t = self.elapsed_s();
        Some(
            self.segment_at(t)
                .map_or(self.scenario.idle_temperature_c, |s| s.temperature),
        )
    }

    fn violations(&self) -> Option<Violations> {
        if !self.scenario.violation_counters {
            return None;
        }
        let t = self.elapsed_s();
        let ns = |s: f64| (s * 1e9).round() as u64;
        // As on NVIDIA GPUs: the power policy counts the SW power cap only (not the HW
        // power brake), the thermal policy SW and HW thermal slowdown.
        Some(Violations {
            power_ns: Some(ns(
                self.time_where(t, |r| r.contains(ThrottleReasons::SW_POWER_CAP))
            )),
            thermal_ns: Some(ns(self.time_where(t, ThrottleReasons::is_thermal))),
        })
    }

    fn driver_version(&self) -> Option<String> {
        Some("simulated".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::ManualClock;

    fn parse(json: &str) -> Result<Scenario> {
        Scenario::from_json(json, Path::new("s.json"))
    }

    fn err(json: &str) -> String {
        match parse(json) {
            Ok(_) => panic!("scenario should be rejected: {json}"),
            Err(e) => e.to_string(),
        }
    }

    const EXAMPLE: &str = r#"{
      "name": "Sim H100", "count": 1, "idle_w": 60.0, "power_limit_w": 700.0,
      "memory_total_mb": 81559, "energy_counter": true,
      "segments": [
        {"start_s": 1.0, "end_s": 2.0, "power_w": 300.0},
        {"start_s": 2.0, "end_s": 2.5, "power_w": 280.0, "throttle": ["hw_thermal_slowdown"]},
        {"start_s": 2.5, "end_s": 60.0, "power_w": 300.0}
      ]}"#;

    #[test]
    fn defaults_apply_when_only_idle_is_given() {
        let s = parse(r#"{"idle_w": 42}"#).unwrap();
        assert_eq!(s.name, "Simulated GPU");
        assert_eq!(s.count, 1);
        assert!(s.energy_counter);
        assert!(s.segments.is_empty());
    }

    #[test]
    fn energy_is_the_exact_integral() {
        let clock = Arc::new(ManualClock::new());
        let s = parse(EXAMPLE).unwrap();
        let devs = SimDevice::open_all(&s, clock.clone(), 0);
        let d = &devs[0];
        assert!(d.info().simulated);
        clock.advance_s(3.0);
        // 1 s idle at 60 + 1 s at 300 + 0.5 s at 280 + 0.5 s at 300
        let truth = 60.0 + 300.0 + 140.0 + 150.0;
        assert!((d.energy_j().unwrap() - truth).abs() < 1e-9);
        assert_eq!(d.power_at(0.5), 60.0);
        assert_eq!(d.power_at(2.2), 280.0);
        assert_eq!(d.power_at(100.0), 60.0);
        let r = d.read().unwrap();
        assert_eq!(r.power_w, Some(300.0));
        assert_eq!(r.utilisation_pct, Some(100.0));
    }

    #[test]
    fn counter_quantises_and_resets() {
        let clock = Arc::new(ManualClock::new());
        let s = parse(r#"{"idle_w": 100, "counter_update_ms": 100, "counter_resets_s": [5.0]}"#)
            .unwrap();
        let d = &SimDevice::open_all(&s, clock.clone(), 0)[0];
        clock.advance_s(1.05);
        assert!((d.energy_j().unwrap() - 100.0).abs() < 1e-9);
        clock.advance_s(4.0); // t = 5.05 → reset at 5.0, quantised to 5.0
        assert!(d.energy_j().unwrap().abs() < 1e-9);
        clock.advance_s(1.0);
        assert!((d.energy_j().unwrap() - 100.0).abs() < 1e-6);
    }

    #[test]
    fn counterless_device_says_not_supported() {
        let clock = Arc::new(ManualClock::new());
        let s = parse(r#"{"idle_w": 10, "energy_counter": false}"#).unwrap();
        let d = &SimDevice::open_all(&s, clock, 0)[0];
        assert!(matches!(d.energy_j(), Err(Error::NotSupported { .. })));
    }

    #[test]
    fn violation_counters_are_exact() {
        let clock = Arc::new(ManualClock::new());
        let s = parse(
            r#"{"idle_w": 10, "violation_counters": true, "segments": [
            {"start_s": 1, "end_s": 1.5, "power_w": 50, "throttle": ["sw_thermal_slowdown"]},
            {"start_s": 2, "end_s": 2.25, "power_w": 50, "throttle": ["sw_power_cap"]}]}"#,
        )
        .unwrap();
        let d = &SimDevice::open_all(&s, clock.clone(), 0)[0];
        clock.advance_s(10.0);
        let v = d.violations().unwrap();
        assert_eq!(v.thermal_ns, Some(500_000_000));
        assert_eq!(v.power_ns, Some(250_000_000));
    }

    #[test]
    fn identical_devices_get_distinct_stable_uuids() {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
        let s = parse(r#"{"idle_w": 10, "count": 3}"#).unwrap();
        let a = SimDevice::open_all(&s, clock.clone(), 0);
        let b = SimDevice::open_all(&s, clock, 0);
        assert_eq!(a.len(), 3);
        assert_ne!(a[0].info().uuid, a[1].info().uuid);
        assert_eq!(a[2].info().uuid, b[2].info().uuid);
        assert_eq!(a[2].info().index, 2);
    }

    #[test]
    fn every_validation_error_names_the_file_and_problem() {
        let cases = [
            (r#"{"idle_w": 10, "bogus": 1}"#, "unknown field `bogus`"),
            (r#"{"name": "x"}"#, "missing field `idle_w`"),
            (r#"{"idle_w": -1}"#, "idle_w must be"),
            (r#"{"idle_w": 10, "count": 0}"#, "count must be"),
            (
                r#"{"idle_w": 10, "segments": [{"start_s": 2, "end_s": 1, "power_w": 5}]}"#,
                "reversed",
            ),
            (
                r#"{"idle_w": 10, "segments": [{"start_s": 0, "end_s": 2, "power_w": 5},
                   {"start_s": 1, "end_s": 3, "power_w": 5}]}"#,
                "overlap",
            ),
            (
                r#"{"idle_w": 10, "segments": [{"start_s": 0, "end_s": 2, "power_w": -5}]}"#,
                "power_w must be >= 0",
            ),
            (
                r#"{"idle_w": 10, "segments": [{"start_s": 0, "end_s": 2, "power_w": 5, "throttle": ["too_hot"]}]}"#,
                "unknown throttle reason `too_hot`",
            ),
            (
                r#"{"idle_w": 10, "segments": [{"start_s": 0, "end_s": 2, "power_w": 5, "colour": 1}]}"#,
                "unknown field `colour`",
            ),
            ("not json", "expected"),
        ];
        for (json, want) in cases {
            let e = err(json);
            assert!(e.starts_with("s.json: invalid scenario:"), "{e}");
            assert!(e.contains(want), "{e} should mention {want}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }
}
