//! EnergyScope on simulated devices with a manual clock: every figure is compared with the
//! scenario's exact truth.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lem::device::{Scenario, SimDevice};
use lem::{BaselineMethod, BaselineMode, EnergyMethod, ManualClock, Meter, SharedDevice};

struct Rig {
    clock: Arc<ManualClock>,
    meter: Meter,
    _cache: tempfile::TempDir,
}

/// A meter on a manual clock over the scenario; the baseline (1 s) runs first, so segment
/// times in these scenarios start after it.
fn rig_with(json: &str, mode: BaselineMode, keep: bool) -> Rig {
    let clock = Arc::new(ManualClock::new());
    let s = Scenario::from_json(json, Path::new("test.json")).unwrap();
    let devices: Vec<SharedDevice> = SimDevice::open_all(&s, clock.clone(), 0)
        .into_iter()
        .map(|d| Arc::new(d) as SharedDevice)
        .collect();
    let cache = tempfile::tempdir().unwrap();
    let meter = Meter::builder()
        .devices(devices)
        .clock(clock.clone())
        .baseline_mode(mode)
        .baseline_duration(Duration::from_secs(1))
        .cache_dir(cache.path())
        .keep_timeseries(keep)
        .build()
        .unwrap();
    Rig {
        clock,
        meter,
        _cache: cache,
    }
}

fn rig(json: &str) -> Rig {
    rig_with(json, BaselineMode::Force, false)
}

impl Rig {
    /// Advance `s` seconds, sampling every `step` seconds on the way.
    fn run(&self, s: f64, step: f64) {
        let n = (s / step).round() as usize;
        for _ in 0..n {
            self.clock.advance_s(step);
            self.meter.sample_now();
        }
    }
}

const STEPS: &str = r#"{"idle_w": 60, "segments": [
    {"start_s": 2.0, "end_s": 3.0, "power_w": 300},
    {"start_s": 3.0, "end_s": 3.5, "power_w": 280, "throttle": ["hw_thermal_slowdown"]},
    {"start_s": 3.5, "end_s": 60.0, "power_w": 300}]}"#;

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs()
}

#[test]
fn counter_energy_matches_the_trace_within_half_a_percent() {
    let r = rig(STEPS);
    // t = 1.0 after the baseline; the window runs 1.5 .. 4.5
    r.run(0.5, 0.1);
    let scope = r.meter.start("work").unwrap();
    r.run(3.0, 0.1);
    let rep = scope.finish().unwrap();
    let truth = 60.0 * 0.5 + 300.0 * 1.0 + 280.0 * 0.5 + 300.0 * 1.0;
    let raw = rep.energy.raw_j.unwrap();
    assert!(close(raw, truth, 0.005), "{raw} vs {truth}");
    assert_eq!(rep.energy.method, Some(EnergyMethod::EnergyCounter));
    assert!((rep.duration_s - 3.0).abs() < 1e-9);
    assert!(rep.simulated);
    assert_eq!(rep.schema_version, lem::SCHEMA_VERSION);
    // baseline ≈ idle; adjusted = raw − idle × duration
    assert!((rep.energy.baseline_power_w.unwrap() - 60.0).abs() < 1e-9);
    assert_eq!(rep.energy.baseline_method, BaselineMethod::Fresh);
    let adj = rep.energy.adjusted_j.unwrap();
    assert!((adj - (raw - 60.0 * 3.0)).abs() < 1e-6);
    let d = &rep.devices[0];
    assert_eq!(d.power.peak_w, Some(300.0));
    assert!((d.power.mean_w.unwrap() - raw / 3.0).abs() < 1e-9);
    assert_eq!(d.temperature.start_c, Some(35.0));
    assert!(d.temperature.max_c.unwrap() > 50.0);
    assert_eq!(d.memory.peak_used_mb, Some(512.0));
}

#[test]
fn integration_at_100ms_is_within_3_percent_on_a_stepped_trace() {
    let json = STEPS.replace(
        r#""idle_w": 60,"#,
        r#""idle_w": 60, "energy_counter": false,"#,
    );
    let r = rig(&json);
    r.run(0.53, 0.01); // misalign samples and steps
    for window in [2.0, 2.5, 4.0] {
        let scope = r.meter.start("w").unwrap();
        let t0 = r.clock.now_s();
        r.run(window, 0.1);
        let rep = scope.finish().unwrap();
        let truth = energy(&json, t0, t0 + window);
        let raw = rep.energy.raw_j.unwrap();
        assert_eq!(rep.energy.method, Some(EnergyMethod::PowerIntegration));
        assert!(close(raw, truth, 0.03), "window {window}: {raw} vs {truth}");
    }
}

/// Exact energy of a scenario between two times since open.
fn energy(json: &str, a: f64, b: f64) -> f64 {
    let s = Scenario::from_json(json, Path::new("x")).unwrap();
    let c = Arc::new(ManualClock::new());
    let d = SimDevice::open_all(&s, c, 0).remove(0);
    d.energy_until(b) - d.energy_until(a)
}

trait NowS {
    fn now_s(&self) -> f64;
}
impl NowS for ManualClock {
    fn now_s(&self) -> f64 {
        lem::Clock::now(self).as_secs_f64()
    }
}

#[test]
fn adjusted_energy_is_floored_at_zero_with_a_warning() {
    let cache = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let s = Scenario::from_json(r#"{"idle_w": 50}"#, Path::new("x")).unwrap();
    let dev = Arc::new(SimDevice::open_all(&s, clock.clone(), 0).remove(0)) as SharedDevice;
    // a cached baseline higher than what the device draws
    let entry = lem::baseline::CacheEntry {
        lem_baseline: 1,
        uuid: dev.info().uuid.clone(),
        device_name: "x".into(),
        power_w: 80.0,
        timestamp_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            - 10.0,
        timestamp: String::new(),
        duration_s: 30.0,
        sample_count: 300,
        power_cv: Some(0.01),
        mean_utilisation_pct: Some(0.0),
        idle_temperature_c: None,
        simulated: true,
    };
    lem::baseline::write_cache(cache.path(), &entry).unwrap();
    let meter = Meter::builder()
        .devices(vec![dev])
        .clock(clock.clone())
        .cache_dir(cache.path())
        .build()
        .unwrap();
    assert_eq!(meter.baselines()[0].method, BaselineMethod::Cached);
    let scope = meter.start("idle").unwrap();
    clock.advance_s(2.0);
    let rep = scope.finish().unwrap();
    assert!((rep.energy.raw_j.unwrap() - 100.0).abs() < 1e-9);
    assert_eq!(rep.energy.adjusted_j, Some(0.0));
    assert_eq!(rep.energy.baseline_method, BaselineMethod::Cached);
    assert!(rep.energy.baseline_cache_age_s.unwrap() >= 10.0);
    assert!(
        rep.warnings.iter().any(|w| w.contains("floored at 0")),
        "{:?}",
        rep.warnings
    );
}

#[test]
fn throttle_time_from_samples_is_within_one_interval() {
    let r = rig(STEPS);
    r.run(0.55, 0.05);
    let scope = r.meter.start("t").unwrap();
    r.run(4.0, 0.1);
    let rep = scope.finish().unwrap();
    let th = &rep.thermal;
    assert!(th.throttle_detected);
    assert!(
        (th.thermal_duration_s - 0.5).abs() <= 0.1,
        "{}",
        th.thermal_duration_s
    );
    assert!((th.throttle_duration_s - 0.5).abs() <= 0.1);
    assert_eq!(th.power_duration_s, 0.0);
    assert_eq!(th.events.len(), 1);
    let ev = &th.events[0];
    // the segment is 3.0..3.5 since open; the window starts at 1.55
    assert!(
        (ev.start_s - 1.45).abs() <= 0.1 && (ev.end_s - 1.95).abs() <= 0.1,
        "{ev:?}"
    );
    assert!(ev.reasons.is_thermal());
    assert!(rep.warnings.iter().any(|w| w.contains("throttled")));
    let d = &rep.devices[0].throttle;
    assert_eq!(d.duration_source, lem::report::ThrottleSource::Samples);
}

#[test]
fn violation_counters_give_exact_throttle_time() {
    let json = STEPS.replace(
        r#""idle_w": 60,"#,
        r#""idle_w": 60, "violation_counters": true,"#,
    );
    let r = rig(&json);
    let scope = r.meter.start("t").unwrap();
    r.run(4.0, 0.25);
    let rep = scope.finish().unwrap();
    assert!((rep.thermal.thermal_duration_s - 0.5).abs() < 1e-9);
    assert_eq!(
        rep.devices[0].throttle.duration_source,
        lem::report::ThrottleSource::ViolationCounters
    );
}

#[test]
fn several_devices_are_summed_and_reported_each() {
    let r = rig(
        r#"{"idle_w": 40, "count": 3, "segments": [{"start_s": 1.0, "end_s": 100, "power_w": 140}]}"#,
    );
    let scope = r.meter.start("multi").unwrap();
    r.run(2.0, 0.1);
    let rep = scope.finish().unwrap();
    assert_eq!(rep.devices.len(), 3);
    for d in &rep.devices {
        assert!((d.energy.raw_j.unwrap() - 280.0).abs() < 1e-6);
        assert!((d.energy.adjusted_j.unwrap() - 200.0).abs() < 1e-6);
    }
    assert!((rep.energy.raw_j.unwrap() - 840.0).abs() < 1e-6);
    assert!((rep.energy.adjusted_j.unwrap() - 600.0).abs() < 1e-6);
    assert!((rep.energy.baseline_power_w.unwrap() - 120.0).abs() < 1e-9);
    let uuids: std::collections::HashSet<_> = rep.devices.iter().map(|d| &d.uuid).collect();
    assert_eq!(uuids.len(), 3);
}

#[test]
fn a_counter_that_goes_backwards_falls_back_to_integration() {
    let r = rig(r#"{"idle_w": 100, "counter_resets_s": [2.5]}"#);
    let scope = r.meter.start("reset").unwrap();
    r.run(2.0, 0.1);
    let rep = scope.finish().unwrap();
    assert_eq!(rep.energy.method, Some(EnergyMethod::PowerIntegration));
    assert!(
        close(rep.energy.raw_j.unwrap(), 200.0, 0.01),
        "{:?}",
        rep.energy.raw_j
    );
    assert!(
        rep.warnings.iter().any(|w| w.contains("went backwards")),
        "{:?}",
        rep.warnings
    );
}

#[test]
fn a_window_below_counter_resolution_is_flagged_never_a_silent_zero() {
    // sampled every 10 ms: dense enough (twice per counter update or more) to integrate
    let r = rig(r#"{"idle_w": 100, "counter_update_ms": 100}"#);
    let r = Rig {
        meter: Meter::builder()
            .devices(r.meter.devices().to_vec())
            .clock(r.clock.clone())
            .baseline_mode(BaselineMode::Off)
            .interval(Duration::from_millis(10))
            .build()
            .unwrap(),
        ..r
    };
    r.run(0.03, 0.01);
    // 50 ms without a counter update: the counter delta is 0
    let scope = r.meter.start("tiny").unwrap();
    r.run(0.05, 0.01);
    let rep = scope.finish().unwrap();
    assert!(rep.energy.below_resolution);
    assert!(rep.devices[0].energy.below_resolution);
    assert_eq!(rep.energy.method, Some(EnergyMethod::PowerIntegration));
    assert!(
        close(rep.energy.raw_j.unwrap(), 5.0, 0.01),
        "{:?}",
        rep.energy.raw_j
    );
    assert!(rep.warnings.iter().any(|w| w.contains("below_resolution")));
    // 200 ms with an update: still below 3 updates, so integrated like every window this
    // short (whether the counter moved never picks the estimator), and flagged
    let scope = r.meter.start("short").unwrap();
    r.run(0.2, 0.01);
    let rep = scope.finish().unwrap();
    assert_eq!(rep.energy.method, Some(EnergyMethod::PowerIntegration));
    assert!(close(rep.energy.raw_j.unwrap(), 20.0, 0.01));
    assert!(rep.energy.below_resolution);
    // a 1 s window is fine
    let scope = r.meter.start("ok").unwrap();
    r.run(1.0, 0.01);
    let rep = scope.finish().unwrap();
    assert!(!rep.energy.below_resolution);
    assert!(close(rep.energy.raw_j.unwrap(), 100.0, 0.11));
}

#[test]
fn a_short_window_sampled_sparsely_reads_the_counter_and_says_how_coarse() {
    // the default 100 ms interval is no finer than the counter: its difference serves, even
    // when it reads 0 J, flagged and with a bound that covers the truth
    let r = rig(r#"{"idle_w": 100, "counter_update_ms": 100}"#);
    r.run(0.03, 0.1);
    let scope = r.meter.start("tiny").unwrap();
    r.run(0.05, 0.05);
    let rep = scope.finish().unwrap();
    assert!(rep.energy.below_resolution);
    assert_eq!(rep.energy.method, Some(EnergyMethod::EnergyCounter));
    let (got, bound) = (rep.energy.raw_j.unwrap(), rep.energy.uncertainty_j.unwrap());
    assert!((got - 5.0).abs() <= bound, "{got} ± {bound} J against 5 J");
    assert!(rep
        .warnings
        .iter()
        .any(|w| w.contains("below_resolution") && w.contains("sampled too sparsely")));
}

#[test]
fn nested_scopes_measure_a_request_and_its_phases() {
    let r = rig(r#"{"idle_w": 50, "segments": [
        {"start_s": 1.0, "end_s": 2.0, "power_w": 400},
        {"start_s": 2.0, "end_s": 5.0, "power_w": 200}]}"#);
    let request = r.meter.start("request").unwrap();
    let prefill = r.meter.start("prefill").unwrap();
    r.run(1.0, 0.1);
    let p = prefill.finish().unwrap();
    let decode = r.meter.start("decode").unwrap();
    r.run(3.0, 0.1);
    let d = decode.finish().unwrap();
    let q = request.finish().unwrap();
    assert!((p.energy.raw_j.unwrap() - 400.0).abs() < 1e-6);
    assert!((d.energy.raw_j.unwrap() - 600.0).abs() < 1e-6);
    assert!((q.energy.raw_j.unwrap() - 1000.0).abs() < 1e-6);
    assert!(p.energy.raw_j.unwrap() + d.energy.raw_j.unwrap() <= q.energy.raw_j.unwrap() + 1e-9);
    assert!((q.duration_s - 4.0).abs() < 1e-9);
    assert!(d.start_s > p.start_s);
}

#[test]
fn sample_count_is_reported_against_the_expected_count() {
    let r = rig(r#"{"idle_w": 10}"#);
    let scope = r.meter.start("s").unwrap();
    r.run(2.0, 0.1);
    let rep = scope.finish().unwrap();
    assert_eq!(rep.sampling.expected_sample_count, 20);
    assert_eq!(rep.sampling.sample_count, 20);
    assert_eq!(rep.sampling.failed_reads, 0);
    assert_eq!(rep.sampling.interval_ms, 100.0);
}

#[test]
fn sync_hook_runs_at_both_ends_of_every_scope() {
    let clock = Arc::new(ManualClock::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let meter = Meter::builder()
        .device(lem::DeviceSpec::None)
        .clock(clock)
        .sync(move || {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let (v, rep) = meter.measure("closure", || 41 + 1).unwrap();
    assert_eq!(v, 42);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // no device: energy is unknown, not zero
    assert_eq!(rep.energy.raw_j, None);
    assert_eq!(rep.energy.adjusted_j, None);
    assert_eq!(rep.energy.method, None);
    assert!(rep.warnings.iter().any(|w| w.contains("not measured")));
}

#[test]
fn disabled_baseline_leaves_adjusted_unknown() {
    let r = rig_with(r#"{"idle_w": 10}"#, BaselineMode::Off, false);
    let scope = r.meter.start("s").unwrap();
    r.run(1.0, 0.1);
    let rep = scope.finish().unwrap();
    assert!(rep.energy.raw_j.is_some());
    assert_eq!(rep.energy.adjusted_j, None);
    assert_eq!(rep.energy.baseline_method, BaselineMethod::Disabled);
}

#[test]
fn timeseries_covers_the_window() {
    let r = rig_with(STEPS, BaselineMode::Force, true);
    let scope = r.meter.start("ts").unwrap();
    r.run(2.0, 0.1);
    let rep = scope.finish().unwrap();
    let ts = r.meter.timeseries(&rep);
    assert_eq!(ts.len(), 20);
    assert!(ts.iter().all(|s| s.t_s > 0.0 && s.t_s <= 2.0 + 1e-9));
}

#[test]
fn report_serialises_with_the_stable_keys() {
    let r = rig(STEPS);
    let scope = r.meter.start("keys").unwrap();
    r.run(3.0, 0.1);
    let rep = scope.finish().unwrap();
    let v: serde_json::Value = serde_json::from_str(&rep.to_json().unwrap()).unwrap();
    for ptr in [
        "/schema_version",
        "/duration_s",
        "/simulated",
        "/warnings",
        "/energy/raw_j",
        "/energy/adjusted_j",
        "/energy/baseline_power_w",
        "/energy/baseline_method",
        "/energy/baseline_timestamp",
        "/energy/baseline_cache_age_s",
        "/energy/method",
        "/devices/0/index",
        "/devices/0/uuid",
        "/devices/0/name",
        "/devices/0/energy/raw_j",
        "/devices/0/energy/adjusted_j",
        "/devices/0/energy/baseline_power_w",
        "/devices/0/energy/method",
        "/devices/0/power/mean_w",
        "/devices/0/power/peak_w",
        "/devices/0/temperature/start_c",
        "/devices/0/temperature/max_c",
        "/devices/0/memory/peak_used_mb",
        "/thermal/throttle_detected",
        "/thermal/throttle_duration_s",
        "/thermal/thermal_duration_s",
        "/thermal/power_duration_s",
        "/thermal/events/0/device",
        "/thermal/events/0/start_s",
        "/thermal/events/0/end_s",
        "/thermal/events/0/reasons",
        "/sampling/interval_ms",
        "/sampling/sample_count",
        "/sampling/expected_sample_count",
        "/sampling/failed_reads",
    ] {
        assert!(v.pointer(ptr).is_some(), "missing {ptr}");
    }
    assert!(v["schema_version"].as_str().unwrap().starts_with('3'));
    assert_eq!(v["energy"]["method"], "energy_counter");
    assert_eq!(v["energy"]["baseline_method"], "fresh");
    assert_eq!(
        v["thermal"]["events"][0]["reasons"][0],
        "hw_thermal_slowdown"
    );
}

#[test]
fn result_files_round_trip_with_their_timeseries() {
    let r = rig_with(STEPS, BaselineMode::Force, true);
    let scope = r.meter.start("saved").unwrap();
    r.run(2.5, 0.1);
    let rep = scope.finish().unwrap();
    let out = tempfile::tempdir().unwrap();
    let path = lem::output::process_result_path(out.path(), "exp-1", 0);
    let mut rf = r.meter.result_file(rep.clone(), "exp-1", 0);
    rf.extra
        .insert("workload".into(), serde_json::json!({"model": "tiny"}));
    r.meter.save(&mut rf, &path, true).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["experiment_id"], "exp-1");
    assert_eq!(v["process_index"], 0);
    assert_eq!(v["timeseries_file"], "process_0_timeseries.json");
    assert_eq!(v["workload"]["model"], "tiny");
    assert_eq!(v["environment"]["simulated"], true);
    assert!(v["environment"]["summary"]
        .as_str()
        .unwrap()
        .contains("simulated"));
    assert!(v.get("samples").is_none(), "time series never embedded");
    let ts: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("raw/exp-1/process_0_timeseries.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(ts["experiment_id"], "exp-1");
    assert_eq!(ts["sample_count"], 25);
    assert_eq!(ts["interval_ms"], 100.0);
    let s0 = &ts["samples"][0];
    for k in [
        "t_s",
        "device",
        "power_w",
        "memory_used_mb",
        "temperature_c",
        "utilisation_pct",
        "throttle_reasons",
    ] {
        assert!(s0.get(k).is_some(), "sample lacks {k}");
    }
    let back = lem::output::read_result(&path).unwrap();
    assert_eq!(back.report, rep);
    assert_eq!(back.extra["workload"]["model"], "tiny");
}

#[test]
fn overlapping_scopes_each_measure_their_own_window() {
    let r = rig(r#"{"idle_w": 100}"#);
    let a = r.meter.start("a").unwrap();
    r.run(1.0, 0.1);
    let b = r.meter.start("b").unwrap();
    r.run(1.0, 0.1);
    let ra = a.finish().unwrap(); // a ends while b is still open
    r.run(1.0, 0.1);
    let rb = b.finish().unwrap();
    assert!((ra.energy.raw_j.unwrap() - 200.0).abs() < 1e-6);
    assert!((rb.energy.raw_j.unwrap() - 200.0).abs() < 1e-6);
    assert_eq!(ra.sampling.sample_count, 20);
    // 20 rounds inside b, plus the one taken at the very instant b started
    assert_eq!(rb.sampling.sample_count, 21, "b's samples survive a's end");
    // a dropped scope is discarded without disturbing the others
    let c = r.meter.start("c").unwrap();
    drop(r.meter.start("dropped").unwrap());
    r.run(0.5, 0.1);
    assert!((c.finish().unwrap().energy.raw_j.unwrap() - 50.0).abs() < 1e-6);
}

#[test]
fn closing_a_window_never_loses_its_early_samples_to_a_concurrent_round() {
    // A round that prunes between the window's unregistering and the read of its samples
    // would leave a 10 s integrated window with its last ~2 s only: energy far too low. A
    // second thread runs rounds as fast as it can while windows close.
    let json = r#"{"idle_w": 50, "energy_counter": false,
        "segments": [{"start_s": 1.0, "end_s": 1e6, "power_w": 400}]}"#;
    for trial in 0..50 {
        let r = rig_with(json, BaselineMode::Off, false);
        r.run(1.5, 0.1);
        let scope = r.meter.start("w").unwrap();
        r.run(10.0, 0.1);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let report = std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    r.meter.sample_now();
                }
            });
            let rep = scope.finish().unwrap();
            stop.store(true, Ordering::Relaxed);
            rep
        });
        let got = report.energy.raw_j.unwrap();
        assert!(
            close(got, 4000.0, 0.01),
            "trial {trial}: {got} J over 10 s at 400 W (early samples pruned?)"
        );
    }
}

/// A simulated GPU whose counter read takes 10 ms on the manual clock.
#[derive(Debug)]
struct SlowCounter {
    inner: SimDevice,
    clock: Arc<ManualClock>,
}

impl lem::EnergySource for SlowCounter {
    fn info(&self) -> &lem::device::DeviceInfo {
        self.inner.info()
    }
    fn energy_j(&self) -> lem::Result<f64> {
        self.clock.advance_s(0.01);
        self.inner.energy_j()
    }
    fn read(&self) -> lem::Result<lem::device::Reading> {
        self.inner.read()
    }
}

#[test]
fn each_device_is_accounted_over_its_own_counter_reads() {
    // With 8 GPUs whose counter reads take 10 ms each, the first is read 70 ms before the
    // last at both ends: its counter delta covers its own span, which its duration, its mean
    // power and its baseline subtraction must use too.
    let clock = Arc::new(ManualClock::new());
    let s = Scenario::from_json(r#"{"idle_w": 300, "count": 8}"#, Path::new("x")).unwrap();
    let devices: Vec<SharedDevice> = SimDevice::open_all(&s, clock.clone(), 0)
        .into_iter()
        .map(|inner| {
            Arc::new(SlowCounter {
                inner,
                clock: clock.clone(),
            }) as SharedDevice
        })
        .collect();
    let meter = Meter::builder()
        .devices(devices)
        .clock(clock.clone())
        .baseline_mode(BaselineMode::Off)
        .build()
        .unwrap();
    let scope = meter.start("w").unwrap();
    for _ in 0..10 {
        clock.advance_s(0.1);
        meter.sample_now();
    }
    let r = scope.finish().unwrap();
    for d in &r.devices {
        let mean = d.power.mean_w.unwrap();
        assert!((mean - 300.0).abs() < 1e-6, "device {}: {mean} W", d.index);
    }
    // the report spans from before the first read to after the last
    assert!(r.duration_s >= 1.0 + 0.08 - 1e-9, "{}", r.duration_s);
    let total = r.energy.raw_j.unwrap();
    assert!(total <= 8.0 * 300.0 * r.duration_s + 1e-6);
}
