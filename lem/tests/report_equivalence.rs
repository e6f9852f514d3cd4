//! Whole reports, byte for byte (numbers to 1e-9 relative), against reports recorded before
//! the library's layout changed: the accounting may be reorganised, never changed by
//! accident.
//!
//! Every scenario runs on a manual clock with fixed traces, so the same code gives the same
//! report. Besides the plain `sim:` traces, a scripted device wraps a simulated one and
//! injects what the NVML driver simulator injects (failed counter and power reads, a lost
//! GPU, a frozen counter, 1-second-averaged power readings, MIG), so every branch of the
//! accounting that the fake driver reaches is covered here deterministically.
//!
//! To record anew after an intended change: `LEM_BLESS=1 cargo test -p lem --test
//! report_equivalence`, and say why in the commit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lem::device::{
    DeviceInfo, EnergySource, PowerSource, Reading, Scenario, SimDevice, Violations,
};
use lem::{BaselineMode, Clock, ManualClock, Meter, SharedDevice};
use serde_json::Value;

/// Faults a scripted device injects, by time on the manual clock (seconds).
#[derive(Debug, Clone, Default)]
struct Faults {
    /// Counter reads fail inside these spans.
    counter_fails: Vec<(f64, f64)>,
    /// Every read fails from this time on, with `DeviceLost`.
    lost_at: Option<f64>,
    /// The counter stops moving from this time on.
    frozen_at: Option<f64>,
    /// Power readings are 1-second averages (as `nvmlDeviceGetPowerUsage` on Ampere+).
    averaged: bool,
    /// The device is in MIG mode.
    mig: bool,
    /// Power reads at a window's edge fail inside these spans.
    power_fails: Vec<(f64, f64)>,
}

#[derive(Debug)]
struct Scripted {
    inner: SimDevice,
    info: DeviceInfo,
    faults: Faults,
    clock: Arc<ManualClock>,
    frozen_value: std::sync::Mutex<Option<f64>>,
    lost: AtomicBool,
    /// Fault times count from here: the clock time when the meter was built.
    origin: Arc<AtomicU64>,
}

impl Scripted {
    fn now(&self) -> f64 {
        self.clock.now().as_secs_f64() - f64::from_bits(self.origin.load(Ordering::SeqCst))
    }
    fn inside(spans: &[(f64, f64)], t: f64) -> bool {
        spans.iter().any(|&(a, b)| t >= a && t < b)
    }
    fn check_lost(&self) -> lem::Result<()> {
        if self.faults.lost_at.is_some_and(|t| self.now() >= t) {
            self.lost.store(true, Ordering::SeqCst);
            return Err(lem::Error::DeviceLost {
                device: self.info.name.clone(),
                reason: "GPU is lost".into(),
            });
        }
        Ok(())
    }
    fn averaged_power(&self, t: f64) -> f64 {
        // the trailing 1 s mean of the trace, sampled finely
        let n = 100;
        (0..n)
            .map(|i| {
                self.inner
                    .power_at((t - 1.0 + (i as f64 + 0.5) / n as f64).max(0.0))
            })
            .sum::<f64>()
            / n as f64
    }
    fn reading(&self) -> Reading {
        let mut r = self.inner.read().unwrap();
        if self.faults.averaged {
            r.power_w = Some(self.averaged_power(self.inner.elapsed_s()));
            r.power_source = Some(PowerSource::Averaged);
        }
        r
    }
}

impl EnergySource for Scripted {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }
    fn energy_j(&self) -> lem::Result<f64> {
        self.check_lost()?;
        let t = self.now();
        if Self::inside(&self.faults.counter_fails, t) {
            return Err(lem::Error::Device {
                device: self.info.name.clone(),
                reason: "energy read failed".into(),
            });
        }
        let e = self.inner.energy_j()?;
        if self.faults.frozen_at.is_some_and(|f| t >= f) {
            let mut frozen = self.frozen_value.lock().unwrap();
            return Ok(*frozen.get_or_insert(e));
        }
        Ok(e)
    }
    fn read(&self) -> lem::Result<Reading> {
        self.check_lost()?;
        Ok(self.reading())
    }
    fn power_reading(&self) -> lem::Result<Reading> {
        self.check_lost()?;
        if Self::inside(&self.faults.power_fails, self.now()) {
            return Err(lem::Error::Device {
                device: self.info.name.clone(),
                reason: "power read failed".into(),
            });
        }
        Ok(self.reading())
    }
    fn temperature_c(&self) -> Option<f64> {
        self.inner.temperature_c()
    }
    fn violations(&self) -> Option<Violations> {
        self.inner.violations()
    }
}

/// One scenario: a trace, faults, sampling, baseline and the windows to measure.
struct Case {
    name: &'static str,
    trace: &'static str,
    faults: Faults,
    interval_s: f64,
    baseline: bool,
    /// (name, start, end) on the clock, seconds after the meter is built.
    windows: &'static [(&'static str, f64, f64)],
}

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/scenarios")
}

fn cases() -> Vec<Case> {
    let nested: &'static [(&str, f64, f64)] = &[
        ("request", 0.5, 6.3),
        ("prefill", 0.5, 0.9),
        ("decode", 0.9, 6.3),
        ("tiny", 2.0, 2.02),
        ("short", 3.0, 3.25),
        ("long", 1.0, 14.0),
    ];
    let faults = Faults::default();
    vec![
        Case {
            name: "steady_300w",
            trace: "@steady_300w.json",
            faults: faults.clone(),
            interval_s: 0.1,
            baseline: true,
            windows: nested,
        },
        Case {
            name: "h100",
            trace: "@h100.json",
            faults: faults.clone(),
            interval_s: 0.1,
            baseline: true,
            windows: nested,
        },
        Case {
            name: "two_gpus",
            trace: r#"{"name": "Two", "idle_w": 80, "count": 2, "segments": [{"start_s": 0.2, "end_s": 1e5, "power_w": 410}]}"#,
            faults: faults.clone(),
            interval_s: 0.05,
            baseline: true,
            windows: nested,
        },
        Case {
            name: "no_counter",
            trace: r#"{"name": "NoCounter", "idle_w": 90, "energy_counter": false, "segments": [{"start_s": 0.2, "end_s": 3.1, "power_w": 200}, {"start_s": 3.1, "end_s": 1e5, "power_w": 420, "utilisation_pct": 70}]}"#,
            faults: faults.clone(),
            interval_s: 0.1,
            baseline: true,
            windows: nested,
        },
        Case {
            name: "quantised",
            trace: r#"{"name": "Q", "idle_w": 70, "counter_update_ms": 100, "segments": [{"start_s": 0.2, "end_s": 1e5, "power_w": 350}]}"#,
            faults: faults.clone(),
            interval_s: 0.1,
            baseline: false,
            windows: nested,
        },
        Case {
            name: "violations",
            trace: r#"{"name": "V", "idle_w": 70, "violation_counters": true, "power_limit_w": 500, "segments": [
                {"start_s": 0.2, "end_s": 0.9, "power_w": 500},
                {"start_s": 0.9, "end_s": 1.4, "power_w": 500, "throttle": ["sw_power_cap"]},
                {"start_s": 1.4, "end_s": 1.7, "power_w": 450, "throttle": ["sw_thermal_slowdown"]},
                {"start_s": 1.7, "end_s": 2.5, "power_w": 480, "throttle": ["hw_power_brake_slowdown"]},
                {"start_s": 2.5, "end_s": 1e5, "power_w": 500}]}"#,
            faults: faults.clone(),
            interval_s: 0.1,
            baseline: true,
            windows: nested,
        },
        Case {
            name: "sampled_throttle",
            trace: r#"{"name": "S", "idle_w": 70, "segments": [
                {"start_s": 0.9, "end_s": 1.4, "power_w": 500, "throttle": ["sw_power_cap"]},
                {"start_s": 1.4, "end_s": 1.7, "power_w": 450, "throttle": ["hw_thermal_slowdown"], "temperature_c": 91},
                {"start_s": 1.7, "end_s": 1e5, "power_w": 500, "memory_used_mb": 30000}]}"#,
            faults: faults.clone(),
            interval_s: 0.1,
            baseline: true,
            windows: nested,
        },
        Case {
            name: "counter_reset",
            trace: r#"{"name": "R", "idle_w": 70, "counter_resets_s": [1.5, 6.0], "segments": [{"start_s": 0.2, "end_s": 1e5, "power_w": 300}]}"#,
            faults: faults.clone(),
            interval_s: 0.1,
            baseline: false,
            windows: nested,
        },
        Case {
            name: "below_idle",
            trace: r#"{"name": "Low", "idle_w": 300, "segments": [{"start_s": 0.35, "end_s": 1e5, "power_w": 120}]}"#,
            faults: faults.clone(),
            interval_s: 0.1,
            baseline: true,
            windows: nested,
        },
        Case {
            name: "counter_read_fails",
            trace: r#"{"name": "F", "idle_w": 70, "segments": [{"start_s": 0.2, "end_s": 1e5, "power_w": 330}]}"#,
            faults: Faults {
                counter_fails: vec![(0.85, 0.95), (6.25, 6.35)],
                power_fails: vec![(1.95, 2.05)],
                ..Faults::default()
            },
            interval_s: 0.1,
            baseline: true,
            windows: nested,
        },
        Case {
            name: "lost_gpu",
            trace: r#"{"name": "L", "idle_w": 70, "segments": [{"start_s": 0.2, "end_s": 1e5, "power_w": 330}]}"#,
            faults: Faults {
                lost_at: Some(5.0),
                ..Faults::default()
            },
            interval_s: 0.1,
            baseline: true,
            windows: nested,
        },
        Case {
            name: "frozen_counter",
            trace: r#"{"name": "Z", "idle_w": 70, "segments": [{"start_s": 0.2, "end_s": 1e5, "power_w": 330}]}"#,
            faults: Faults {
                frozen_at: Some(3.0),
                ..Faults::default()
            },
            interval_s: 0.1,
            baseline: true,
            windows: nested,
        },
        Case {
            name: "averaged_no_counter",
            trace: r#"{"name": "A", "idle_w": 70, "energy_counter": false, "segments": [{"start_s": 0.2, "end_s": 2.0, "power_w": 250}, {"start_s": 2.0, "end_s": 1e5, "power_w": 450}]}"#,
            faults: Faults {
                averaged: true,
                mig: true,
                ..Faults::default()
            },
            interval_s: 0.1,
            baseline: true,
            windows: nested,
        },
    ]
}

fn run_case(case: &Case, cache: &Path) -> Value {
    run_case_with(case, cache, false)
}

/// [`run_case`]; with `retain`, every sample of an open window is kept and the window is
/// accounted from them at its close (the reference for the folded accounting).
fn run_case_with(case: &Case, cache: &Path, retain: bool) -> Value {
    let clock = Arc::new(ManualClock::new());
    // faults wait until the meter is built (the baseline is measured first)
    let origin_bits = Arc::new(AtomicU64::new(f64::INFINITY.to_bits()));
    let json = match case.trace.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(scenarios_dir().join(file)).unwrap(),
        None => case.trace.to_string(),
    };
    let scenario = Scenario::from_json(&json, Path::new("trace.json")).unwrap();
    let devices: Vec<SharedDevice> = SimDevice::open_all(&scenario, clock.clone(), 0)
        .into_iter()
        .map(|inner| {
            let mut info = inner.info().clone();
            info.mig = case.faults.mig;
            if case.faults.averaged {
                info.power_source = PowerSource::Averaged;
            }
            Arc::new(Scripted {
                inner,
                info,
                faults: case.faults.clone(),
                clock: clock.clone(),
                frozen_value: std::sync::Mutex::new(None),
                lost: AtomicBool::new(false),
                origin: origin_bits.clone(),
            }) as SharedDevice
        })
        .collect();
    let meter = Meter::builder()
        .devices(devices)
        .clock(clock.clone())
        .interval(Duration::from_secs_f64(case.interval_s))
        .baseline_mode(if case.baseline {
            BaselineMode::Force
        } else {
            BaselineMode::Off
        })
        .baseline_duration(Duration::from_millis(300))
        .retain_window_samples(retain)
        .cache_dir(cache)
        .build()
        .unwrap();
    let origin = clock.now().as_secs_f64();
    origin_bits.store(origin.to_bits(), Ordering::SeqCst);
    // open/close events in time order; the sampler ticks every interval in between
    let mut events: Vec<(f64, bool, usize)> = Vec::new();
    for (i, w) in case.windows.iter().enumerate() {
        events.push((w.1, true, i));
        events.push((w.2, false, i));
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut open: Vec<Option<lem::EnergyScope<'_>>> = case.windows.iter().map(|_| None).collect();
    let mut reports = vec![Value::Null; case.windows.len()];
    let mut tick = 0.0;
    for (t, opening, i) in events {
        while tick <= t {
            clock.advance_s(origin + tick - clock.now().as_secs_f64());
            meter.sample_now();
            tick += case.interval_s;
        }
        clock.advance_s(origin + t - clock.now().as_secs_f64());
        if opening {
            open[i] = Some(meter.start(case.windows[i].0).unwrap());
        } else {
            let r = open[i].take().unwrap().finish().unwrap();
            reports[i] = serde_json::to_value(&r).unwrap();
        }
    }
    let mut v = Value::Array(reports);
    scrub(&mut v);
    v
}

/// Drop what depends on the wall clock (when the baseline was measured).
fn scrub(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("baseline_timestamp");
            m.remove("baseline_cache_age_s");
            for x in m.values_mut() {
                scrub(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(scrub),
        _ => {}
    }
}

/// Equal, with numbers equal to 1e-9 relative (a reordered sum may move the last digit).
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            if (x - y).abs() > 1e-9 * x.abs().max(y.abs()).max(1e-12) {
                out.push(format!("{path}: {x} != {y}"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => diff(&format!("{path}.{k}"), p, q, out),
                    _ => out.push(format!("{path}.{k}: present on one side only")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), p, q, out);
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{path}: {a} != {b}")),
    }
}

#[test]
fn reports_are_identical_to_the_recorded_ones() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/reports.json");
    let cache = tempfile::tempdir().unwrap();
    let mut now = serde_json::Map::new();
    for case in cases() {
        now.insert(case.name.into(), run_case(&case, cache.path()));
    }
    let now = Value::Object(now);
    if std::env::var_os("LEM_BLESS").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, serde_json::to_string_pretty(&now).unwrap() + "\n").unwrap();
        return;
    }
    let recorded: Value = serde_json::from_str(&std::fs::read_to_string(&golden).unwrap()).unwrap();
    let mut out = Vec::new();
    diff("", &recorded, &now, &mut out);
    assert!(
        out.is_empty(),
        "{} differences from the recorded reports:\n{}",
        out.len(),
        out.join("\n")
    );
}

/// A random trace of `n` segments over `total_s`: power, throttle reasons, temperature,
/// memory and utilisation changing at random times.
fn random_trace(seed: u64, n: usize, total_s: f64) -> String {
    let mut x = seed;
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let reasons = [
        "",
        r#""sw_power_cap""#,
        r#""hw_thermal_slowdown""#,
        r#""hw_power_brake_slowdown""#,
        r#""sw_thermal_slowdown", "sw_power_cap""#,
    ];
    let mut t = 0.2;
    let mut segs = Vec::new();
    for _ in 0..n {
        let end = t + next() * 2.0 * total_s / n as f64;
        let r = reasons[(next() * 5.0) as usize % 5];
        segs.push(format!(
            r#"{{"start_s": {t}, "end_s": {end}, "power_w": {}, "temperature_c": {}, "memory_used_mb": {}, "utilisation_pct": {}, "throttle": [{r}]}}"#,
            50.0 + next() * 550.0,
            40.0 + next() * 50.0,
            (next() * 40000.0).round(),
            (next() * 100.0).round()
        ));
        t = end;
    }
    format!(
        r#"{{"name": "Random", "idle_w": 65, "count": 2, "power_limit_w": 650, "violation_counters": {}, "segments": [{}]}}"#,
        seed.is_multiple_of(2),
        segs.join(",")
    )
}

#[test]
fn long_windows_fold_to_the_same_reports_as_all_their_samples() {
    // Long windows, whose middles are folded as they are sampled, against the same windows
    // accounted from every sample kept to their close: every field equal, to the bit. They
    // start and end where the fault cases fail a read, lose the GPU or freeze the counter.
    let long: &'static [(&str, f64, f64)] = &[
        ("all", 0.5, 40.0),
        ("inner", 3.0, 25.0),
        ("edge_read_fails_at_start", 2.0, 30.0),
        ("counter_read_fails_at_end", 1.0, 6.3),
        ("late", 20.0, 40.0),
        ("short", 39.0, 39.5),
    ];
    let mut cases = cases();
    for seed in 1..=4 {
        cases.push(Case {
            name: "random",
            trace: Box::leak(random_trace(seed, 150, 40.0).into_boxed_str()),
            faults: Faults::default(),
            interval_s: [0.1, 0.05, 0.02, 0.01][seed as usize - 1],
            baseline: !seed.is_multiple_of(2),
            windows: long,
        });
    }
    let cache = tempfile::tempdir().unwrap();
    for case in cases {
        let case = Case {
            windows: long,
            ..case
        };
        let folded = run_case_with(&case, cache.path(), false);
        let kept = run_case_with(&case, cache.path(), true);
        for (i, (a, b)) in folded
            .as_array()
            .unwrap()
            .iter()
            .zip(kept.as_array().unwrap())
            .enumerate()
        {
            assert_eq!(a, b, "{}: window {}", case.name, long[i].0);
        }
    }
}

#[test]
fn the_recording_covers_every_accounting_branch() {
    // A recording that missed a branch would prove nothing about it.
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/reports.json");
    let text = std::fs::read_to_string(golden).unwrap();
    for needle in [
        "energy_counter",
        "power_integration",
        "the energy counter did not move during a window",
        "fewer than 3 energy-counter updates (~100 ms each) and power is sampled too sparsely",
        "went backwards",
        "read failed at",
        "stopped answering",
        "disagrees with the integrated power samples",
        "averages over 1 s",
        "floored at 0 J",
        "MIG mode",
        "throttled for",
        "violation_counters",
        "counter_staleness",
        "integration",
    ] {
        assert!(text.contains(needle), "no recorded report shows `{needle}`");
    }
}
