//! The benchmark harness on a simulated device with its real sampler and clock.
#![cfg(feature = "bench")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use lem::bench::{run_one, BenchOptions};
use lem::{BaselineMode, DeviceSpec, Meter};

/// These tests time real spinning work: run them one at a time so they do not preempt each
/// other on a small machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// 60 W idle (during the 0.2 s baseline), 300 W from 0.25 s on.
fn meter(dir: &tempfile::TempDir) -> Meter {
    let p = dir.path().join("s.json");
    std::fs::write(
        &p,
        r#"{"idle_w": 60, "segments": [{"start_s": 0.25, "end_s": 100000, "power_w": 300}]}"#,
    )
    .unwrap();
    let m = Meter::builder()
        .device(DeviceSpec::Sim(p))
        .baseline_mode(BaselineMode::Force)
        .baseline_duration(Duration::from_millis(200))
        .cache_dir(dir.path().join("cache"))
        .interval(Duration::from_millis(20))
        .build()
        .unwrap();
    while m.devices()[0].read().unwrap().power_w != Some(300.0) {
        std::thread::yield_now();
    }
    m
}

fn spin(d: Duration) -> u64 {
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < d {
        n = n.wrapping_add(1);
    }
    n
}

#[test]
fn a_steady_function_converges_and_energy_per_iteration_matches_the_trace() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let m = meter(&dir);
    let opts = BenchOptions {
        samples: Some(4),
        min_sample_s: Some(0.15),
        // a loose target: scheduler noise on a busy 2-core machine must not fail the test;
        // the exact convergence rule is tested on synthetic latencies in `lem::warmup`
        cv: Some(0.2),
        ..BenchOptions::DEFAULT
    };
    let out = run_one(&m, "steady", &opts, |b| {
        b.iter(|| spin(Duration::from_millis(2)))
    })
    .unwrap()
    .unwrap();
    let w = &out.warmups[0];
    assert!(w.converged, "{w:?}");
    assert!(w.iterations >= 5, "not before the window of 5 is full");
    let s = &out.stats;
    assert_eq!(s.samples, 4);
    for r in &s.per_sample {
        assert!(
            r.duration_s >= 0.15,
            "each sample spans min_sample_s: {}",
            r.duration_s
        );
        assert_eq!(r.iterations, s.iterations_per_sample);
    }
    let t = s.time_per_iter_s.unwrap().mean;
    let e = s.energy_per_iter_j.unwrap().mean;
    let a = s.adjusted_energy_per_iter_j.unwrap().mean;
    assert!(
        (e - 300.0 * t).abs() / (300.0 * t) < 0.03,
        "{e} J vs {} J",
        300.0 * t
    );
    assert!(
        (a - 240.0 * t).abs() / (240.0 * t) < 0.03,
        "{a} J vs {} J",
        240.0 * t
    );
    let ci = s.energy_per_iter_j.unwrap();
    assert!(ci.ci95_low.unwrap() <= ci.mean && ci.mean <= ci.ci95_high.unwrap());
    let report = out.report.unwrap();
    assert!(report.simulated);
    assert!(out.warnings.iter().all(|w| !w.contains("did not converge")));
}

#[test]
fn a_noisy_function_does_not_converge_and_is_reported() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let m = meter(&dir);
    let opts = BenchOptions {
        samples: Some(2),
        min_sample_s: Some(0.02),
        max_warmup: Some(12),
        ..BenchOptions::DEFAULT
    };
    let mut i = 0u32;
    let out = run_one(&m, "noisy", &opts, |b| {
        b.iter(|| {
            i += 1;
            // injected latency noise: 1 ms or 4 ms, alternating
            spin(Duration::from_millis(if i.is_multiple_of(2) {
                1
            } else {
                4
            }))
        })
    })
    .unwrap()
    .unwrap();
    let w = &out.warmups[0];
    assert!(!w.converged);
    assert_eq!(w.iterations, 12);
    assert!(w.final_cv.unwrap() > 0.05);
    assert!(
        out.warnings.iter().any(|w| w.contains("did not converge")),
        "{:?}",
        out.warnings
    );
    assert_eq!(
        out.stats.samples, 2,
        "non-convergence is not an error: samples still run"
    );
}

#[test]
fn units_give_energy_per_unit() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let m = meter(&dir);
    let opts = BenchOptions {
        samples: Some(3),
        min_sample_s: Some(0.05),
        units: Some("tokens"),
        warmup: Some(lem::warmup::WarmupMode::Fixed),
        warmup_iters: Some(2),
        ..BenchOptions::DEFAULT
    };
    let synced = std::rc::Rc::new(std::cell::Cell::new(0u32));
    let counter = synced.clone();
    let out = run_one(&m, "gen", &opts, |b| {
        b.sync_with(move || counter.set(counter.get() + 1));
        b.iter(|| {
            spin(Duration::from_millis(1));
            8usize
        })
    })
    .unwrap()
    .unwrap();
    let s = &out.stats;
    let per_iter = s.energy_per_iter_j.unwrap().mean;
    let per_unit = s.energy_per_unit_j.unwrap().mean;
    assert!((per_unit * 8.0 - per_iter).abs() / per_iter < 1e-6);
    assert!(s.units_per_s.unwrap().mean > 0.0);
    // sync after each warmup iteration and at both ends of every sample
    assert_eq!(synced.get(), 2 + 3 * 2);
}

#[test]
fn max_uncertainty_lengthens_samples_until_their_bound_is_small_enough() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    // a counter that updates every 50 ms: a 0.05 s sample at 300 W is uncertain by ~30 %
    let p = dir.path().join("q.json");
    std::fs::write(&p, r#"{"idle_w": 300, "counter_update_ms": 50}"#).unwrap();
    let m = Meter::builder()
        .device(DeviceSpec::Sim(p))
        .baseline_mode(BaselineMode::Off)
        .interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let opts = |max: Option<f64>| BenchOptions {
        samples: Some(3),
        min_sample_s: Some(0.05),
        cv: Some(0.5),
        max_uncertainty: max,
        ..BenchOptions::DEFAULT
    };
    // without the option the bound is reported, and nothing acts on it
    let out = run_one(&m, "plain", &opts(None), |b| {
        b.iter(|| spin(Duration::from_millis(5)))
    })
    .unwrap()
    .unwrap();
    let plain = out.stats.achieved_relative_uncertainty.unwrap();
    assert!(plain > 0.05, "a short sample is coarse: {plain}");
    assert!(out.stats.energy_per_iter_uncertainty_j.unwrap() > 0.0);
    for r in &out.stats.per_sample {
        assert!(r.uncertainty_j.is_some() && r.relative_uncertainty.is_some());
    }
    // with max_uncertainty = 5 %: every sample's bound is under 5 % of its energy
    let out = run_one(&m, "bounded", &opts(Some(0.05)), |b| {
        b.iter(|| spin(Duration::from_millis(5)))
    })
    .unwrap()
    .unwrap();
    let s = &out.stats;
    assert_eq!(s.max_uncertainty, Some(0.05));
    for r in &s.per_sample {
        let rel = r.relative_uncertainty.unwrap();
        assert!(rel <= 0.05, "{rel} with {} iterations", r.iterations);
    }
    assert!(s.achieved_relative_uncertainty.unwrap() <= 0.05);
    assert!(
        s.per_sample.iter().all(|r| r.duration_s > 0.1),
        "lengthened"
    );
    assert!(
        !out.warnings.iter().any(|w| w.contains("max_uncertainty")),
        "{:?}",
        out.warnings
    );
    // a bad value is a named configuration error
    let e = run_one(&m, "bad", &opts(Some(1.5)), |_| {}).unwrap_err();
    assert!(e.to_string().contains("max_uncertainty"), "{e}");
}

/// Per-iteration energy of a 50 ms square wave (100/400 W) under a sensor that observes
/// 25 ms of every 100 ms, over 10 samples. The trace restarts when each sample's work
/// starts (the sync hook), as a real workload's power pattern does; each iteration is two
/// square periods (100 ms of the manual clock), so every sample is locked to the sensor.
fn square_wave_bench(random_start: bool) -> (f64, lem::bench::BenchOutcome) {
    use lem::device::{Scenario, SharedDevice, SimDevice};
    use std::path::Path;
    use std::sync::Arc;
    let mut segs = Vec::new();
    for k in 0..2000 {
        let t = f64::from(k) * 0.05;
        segs.push(format!(
            r#"{{"start_s": {t}, "end_s": {}, "power_w": 400}}"#,
            t + 0.025
        ));
    }
    let json = format!(
        r#"{{"idle_w": 100, "power_limit_w": 700, "sensor": {{"period_ms": 100, "sensing_duty": 0.25}}, "segments": [{}]}}"#,
        segs.join(",")
    );
    let clock = Arc::new(lem::ManualClock::new());
    let scenario = Scenario::from_json(&json, Path::new("square.json")).unwrap();
    let sim = Arc::new(SimDevice::open_all(&scenario, clock.clone(), 0).remove(0));
    let meter = Meter::builder()
        .devices(vec![sim.clone() as SharedDevice])
        .clock(clock.clone())
        .baseline_mode(BaselineMode::Off)
        .build()
        .unwrap();
    let opts = BenchOptions {
        warmup: Some(lem::warmup::WarmupMode::Fixed),
        warmup_iters: Some(2),
        samples: Some(10),
        min_sample_s: Some(0.02),
        random_start: Some(random_start),
        seed: Some(7),
        ..Default::default()
    };
    let out = run_one(&meter, "square", &opts, |b| {
        let s = sim.clone();
        b.sync_with(move || s.restart_trace());
        b.iter(|| {
            clock.advance_s(0.1);
            std::thread::sleep(Duration::from_millis(2));
        });
    })
    .unwrap()
    .unwrap();
    // the truth: 25 ms at 400 W and 25 ms at 100 W, twice
    let truth = 2.0 * (0.025 * 400.0 + 0.025 * 100.0);
    (truth, out)
}

#[test]
fn random_start_delays_turn_aliasing_into_noise_that_averages_out() {
    let (truth, locked) = square_wave_bench(false);
    let locked_mean = locked.stats.energy_per_iter_j.unwrap().mean;
    // locked to the sensor, every observed slice sees the same phase: visibly biased
    assert!(
        (locked_mean - truth).abs() / truth > 0.2,
        "without delays: {locked_mean} J vs {truth} J"
    );
    assert!(locked.stats.start_delay_seed.is_none());
    let (_, random) = square_wave_bench(true);
    let mean = random.stats.energy_per_iter_j.unwrap().mean;
    assert!(
        (mean - truth).abs() / truth < 0.05,
        "with delays: {mean} J vs {truth} J"
    );
    // the delays are recorded, within one sensor period, and repeat with the seed
    assert_eq!(random.stats.start_delay_seed, Some(7));
    let delays: Vec<f64> = random
        .stats
        .per_sample
        .iter()
        .map(|r| r.start_delay_s)
        .collect();
    assert!(delays.iter().all(|d| (0.0..0.1).contains(d)), "{delays:?}");
    let (_, again) = square_wave_bench(true);
    let again: Vec<f64> = again
        .stats
        .per_sample
        .iter()
        .map(|r| r.start_delay_s)
        .collect();
    // the same phases (to rounding: the samples before may have run a different number of
    // iterations, timed on the real clock)
    assert_eq!(delays.len(), again.len());
    for (a, b) in delays.iter().zip(&again) {
        assert!((a - b).abs() < 1e-9, "{delays:?} vs {again:?}");
    }
    // and an iteration shorter than the sensor's period is flagged
    assert!(
        random.warnings.iter().any(|w| w.contains("alias")),
        "{:?}",
        random.warnings
    );
}
