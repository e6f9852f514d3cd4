//! A simulated GPU driven by a scenario file: an exact, deterministic power trace.
//!
//! The energy counter is the exact integral of the trace since the device was opened, so
//! tests can compare lem's numbers with the truth. Every output marks it `simulated`.

use std::sync::{Arc, Mutex};

use super::process::{GpuProcess, ProcessResult, ProcessSamples, ProcessUnavailable};
use super::scenario::{Scenario, Seg, SensorSpec};
use super::sensor::SensorProfile;
use super::source::{DeviceInfo, DeviceKind, EnergySource, PowerSource, Reading, Violations};
use super::throttle_reasons::ThrottleReasons;
use crate::base::clock::Clock;
use crate::error::{Error, Result};

/// One simulated GPU.
#[derive(Debug)]
pub struct SimDevice {
    info: DeviceInfo,
    /// Its position among the scenario's `count` devices.
    position: u32,
    scenario: Scenario,
    segs: Vec<Seg>,
    resets: Vec<f64>,
    clock: Arc<dyn Clock>,
    opened_at_s: f64,
    /// Device times (s since open) at which the trace (re)started: the first at 0, later
    /// ones from [`restart_trace`](Self::restart_trace).
    restarts: Mutex<Vec<f64>>,
    /// The pid `"child"` process traces name: the first child of this process seen, kept
    /// after it ends (its buffered samples still come).
    child: Mutex<Option<u32>>,
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
            mig: scenario.mig,
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
            position: i,
            scenario: scenario.clone(),
            segs: scenario.resolved(),
            resets,
            clock,
            opened_at_s,
            restarts: Mutex::new(vec![0.0]),
            child: Mutex::new(None),
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

    fn processes(&self) -> ProcessResult<Vec<GpuProcess>> {
        self.processes_at(self.elapsed_s())
    }

    fn process_utilisation(&self, since_us: u64) -> ProcessResult<ProcessSamples> {
        self.process_samples_at(self.elapsed_s(), since_us)
    }
}

impl SimDevice {
    /// The processes on this device at `t` s since open (the scenario's `processes` block).
    ///
    /// # Errors
    /// Not applicable without a `processes` block; as its `support` says.
    pub fn processes_at(&self, t: f64) -> ProcessResult<Vec<GpuProcess>> {
        match &self.scenario.processes {
            Some(p) => p.processes_at(self.position, t, self.child(p)),
            None => Err(ProcessUnavailable::not_applicable()),
        }
    }

    /// What `"child"` names: the first child of this process seen (kept once seen). `/proc`
    /// is searched only when a trace of `procs` names `"child"`.
    fn child(&self, procs: &super::sim_process::ProcessScenario) -> Option<u32> {
        if !procs.names_child() {
            return None;
        }
        let mut c = lock(&self.child);
        if c.is_none() {
            *c = super::sim_process::child_of_self();
        }
        *c
    }

    /// The per-process utilisation samples newer than `since_us` (µs since open) at `t` s
    /// since open.
    ///
    /// # Errors
    /// Not applicable without a `processes` block; as its `support` says; MIG.
    pub fn process_samples_at(&self, t: f64, since_us: u64) -> ProcessResult<ProcessSamples> {
        match &self.scenario.processes {
            Some(p) => p.samples_at(self.position, t, since_us, self.scenario.mig, self.child(p)),
            None => Err(ProcessUnavailable::not_applicable()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::ManualClock;
    use std::path::Path;

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
    fn process_reads_search_proc_for_a_child_only_when_a_trace_names_one() {
        let clock = Arc::new(ManualClock::new());
        let trace = |pid: &str| {
            format!(
                r#"{{"idle_w": 10, "processes": {{"list": [{{"pid": {pid},
                "segments": [{{"start_s": 0, "end_s": 10, "sm_pct": 50}}]}}]}}}}"#
            )
        };
        let mine = parse(&trace(r#""self""#)).unwrap();
        let theirs = parse(&trace(r#""child""#)).unwrap();
        let mine = &SimDevice::open_all(&mine, clock.clone(), 0)[0];
        let theirs = &SimDevice::open_all(&theirs, clock.clone(), 0)[0];
        let mut kid = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        clock.advance_s(1.0);
        assert_eq!(mine.processes_at(1.0).unwrap().len(), 1);
        mine.process_samples_at(1.0, 0).unwrap();
        // no trace names "child": no child is looked for (a /proc scan per call)
        assert!(lock(&mine.child).is_none());
        assert_eq!(theirs.processes_at(1.0).unwrap().len(), 1);
        assert!(lock(&theirs.child).is_some());
        let _ = kid.kill();
        let _ = kid.wait();
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
