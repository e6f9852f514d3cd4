//! The uncertainty contract through the fake NVML driver, in real time: `lem probe` measures
//! the quantised counter's update period, the meter bounds each window with it, and the
//! truth (the scenario's exact energy between the window's ends, on the fake driver's own
//! clock) lies within the bound.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lem::device::{Scenario, SimDevice};
use lem::{BaselineMode, DeviceSpec, EnergyScope, ManualClock, Meter};
use lem_burn::sampling::Rng;

fn uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.uniform()
}

const CHILD: &str = "LEM_TEST_UNCERTAINTY_CHILD";

/// The fake driver's clock, through its extra (non-NVML) symbol.
fn fake_now() -> f64 {
    // SAFETY: the library is already loaded (lem opened NVML); dlopen only takes another
    // reference, and `fake_nvml_time_s` has this signature in tools/fake-nvml.
    unsafe {
        let h = libc::dlopen(c"libnvidia-ml.so.1".as_ptr(), libc::RTLD_NOW);
        assert!(!h.is_null(), "the fake driver is not loadable");
        let f = libc::dlsym(h, c"fake_nvml_time_s".as_ptr());
        assert!(!f.is_null(), "not the fake driver");
        let f: extern "C" fn() -> f64 = std::mem::transmute(f);
        f()
    }
}

/// Runs only as the child of the test below (the driver must be on LD_LIBRARY_PATH at
/// start): plays random overlapping windows for ~20 s and prints the outcome.
#[test]
#[ignore = "run by fake_nvml_windows_honour_the_contract"]
fn child_plays_windows() {
    // Only meaningful as the child of the test below: run directly (`--ignored`), it fails
    // rather than pass having checked nothing.
    let (Ok(scenario_path), Some(_)) = (
        std::env::var("LEM_FAKE_NVML_SCENARIO"),
        std::env::var_os(CHILD),
    ) else {
        panic!("child_plays_windows is run by fake_nvml_windows_honour_the_contract, with the fake driver loaded");
    };
    let cache = std::env::var("LEM_CACHE_DIR").unwrap();
    // 1. probe: the counter's update period is found, not assumed
    let clock: Arc<dyn lem::Clock> = Arc::new(lem::MonotonicClock::new());
    let opened = lem::device::open_devices(&DeviceSpec::Nvml(None), clock.clone()).unwrap();
    for r in lem::probe::probe_all(&opened.devices, &clock, Duration::from_secs(2)) {
        lem::probe::save(Path::new(&cache), &r).unwrap();
    }
    drop(opened);
    // 2. windows
    let meter = Meter::builder()
        .device(DeviceSpec::Nvml(None))
        .baseline_mode(BaselineMode::Off)
        .cache_dir(&cache)
        .interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let offset = fake_now() - meter.elapsed_s();
    let text = std::fs::read_to_string(&scenario_path).unwrap();
    let scenario = Scenario::from_json(&text, Path::new(&scenario_path)).unwrap();
    let truth = SimDevice::open_all(&scenario, Arc::new(ManualClock::new()), 0).remove(0);
    let mut rng = Rng::new(0x5eed);
    let mut events: BTreeMap<(u64, i8, usize), ()> = BTreeMap::new();
    for id in 0..400 {
        let start = uniform(&mut rng, 0.2, 12.0);
        let len = uniform(&mut rng, 0.05, 8.0);
        let ms = |t: f64| (t * 1000.0) as u64;
        events.insert((ms(start), 1, id), ());
        events.insert((ms(start + len), -1, id), ());
    }
    let t_base = Instant::now();
    let mut open: BTreeMap<usize, EnergyScope<'_>> = BTreeMap::new();
    let (mut n, mut covered) = (0usize, 0usize);
    let (mut errs, mut bounds) = (Vec::new(), Vec::new());
    for (&(t_ms, kind, id), ()) in &events {
        let due = Duration::from_millis(t_ms);
        if let Some(wait) = due.checked_sub(t_base.elapsed()) {
            std::thread::sleep(wait);
        }
        if kind == 1 {
            open.insert(id, meter.start("w").unwrap());
            continue;
        }
        let r = open.remove(&id).unwrap().finish().unwrap();
        // windows too short for the counter to move are integrated (and flagged); either way
        // the bound must hold
        let counter = r.energy.method == Some(lem::EnergyMethod::EnergyCounter);
        let (a, b) = (r.start_s + offset, r.start_s + r.duration_s + offset);
        let true_j = truth.energy_until(b) - truth.energy_until(a);
        let err = (r.energy.raw_j.unwrap() - true_j).abs();
        let bound = r.energy.uncertainty_j.unwrap();
        n += 1;
        if err <= bound + 1e-6 * true_j {
            covered += 1;
        }
        errs.push(err);
        bounds.push(bound);
        if counter {
            let src = r.devices[0]
                .energy
                .uncertainty
                .counter_update_source
                .clone();
            assert!(
                src.clone().unwrap_or_default().starts_with("probed"),
                "the bound uses the probe: {src:?}"
            );
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "RESULT {n} {covered} {} {}",
        med(&mut bounds),
        med(&mut errs)
    );
}

#[test]
fn fake_nvml_windows_honour_the_contract() {
    let sb = common::Sandbox::new();
    // a step load on a counter that updates every 150 ms (slower than the 100 ms default:
    // only the probe makes the bound honest)
    let mut rng = Rng::new(0xfa4e);
    let mut segs = Vec::new();
    let mut t = 0.0;
    while t < 60.0 {
        let len = uniform(&mut rng, 0.05, 3.0);
        segs.push(format!(
            r#"{{"start_s": {t}, "end_s": {}, "power_w": {}}}"#,
            t + len,
            uniform(&mut rng, 60.0, 700.0)
        ));
        t += len;
    }
    let json = format!(
        r#"{{"name": "Fake Q150", "idle_w": 60, "counter_update_ms": 150, "segments": [{}]}}"#,
        segs.join(",")
    );
    let scenario = sb.scenario_file("q.json", &json);
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    common::nvml_env(&mut c, &scenario);
    let o = c
        .args(["--exact", "child_plays_windows", "--ignored", "--nocapture"])
        .env(CHILD, "1")
        .env("LEM_CACHE_DIR", sb.path().join("cache"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("RESULT"))
        .expect("child result");
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    let (n, covered, bound, err) = (v[0], v[1], v[2], v[3]);
    println!("fake NVML: {n} windows, {:.2} % covered, median bound {bound:.3} J / median error {err:.3} J = {:.2}", covered / n * 100.0, bound / err);
    assert!(n >= 400.0);
    assert!(covered / n >= 0.99, "{covered} of {n}");
    assert!(bound / err <= 5.0, "{bound} / {err}");
}
