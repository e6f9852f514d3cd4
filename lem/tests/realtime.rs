//! The meter with its real background sampler thread on a simulated device.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use lem::{BaselineMode, DeviceSpec, Meter};

#[test]
fn background_sampler_fills_the_window_and_energy_matches_the_trace() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.json");
    // 100 W idle, 250 W from 0.2 s on (after a 0.1 s baseline)
    std::fs::write(
        &p,
        r#"{"idle_w": 100, "segments": [{"start_s": 0.2, "end_s": 1000, "power_w": 250}]}"#,
    )
    .unwrap();
    let meter = Meter::builder()
        .device(DeviceSpec::Sim(p))
        .interval(Duration::from_millis(10))
        .baseline_mode(BaselineMode::Force)
        .baseline_duration(Duration::from_millis(100))
        .cache_dir(dir.path().join("cache"))
        .keep_timeseries(true)
        .build()
        .unwrap();
    // wait until the trace is in its busy segment
    while meter.devices()[0].read().unwrap().power_w != Some(250.0) {
        std::thread::yield_now();
    }
    let scope = meter.start("busy").unwrap();
    let t = Instant::now();
    // real time must pass for a real sampler; spin on the condition rather than sleeping
    while t.elapsed() < Duration::from_millis(500) {
        std::thread::yield_now();
    }
    let rep = scope.finish().unwrap();
    let raw = rep.energy.raw_j.unwrap();
    assert!(
        (raw - 250.0 * rep.duration_s).abs() / raw < 0.005,
        "{raw} over {} s",
        rep.duration_s
    );
    let expected = rep.sampling.expected_sample_count as f64;
    let got = rep.sampling.sample_count as f64;
    assert!(expected >= 49.0);
    assert!(
        (got - expected).abs() <= 0.1 * expected + 1.0,
        "{got} samples, {expected} expected"
    );
    assert_eq!(rep.sampling.failed_reads, 0);
    let ts = meter.timeseries(&rep);
    assert!(ts.iter().all(|s| s.reading.power_w == Some(250.0)));
    // dropping the meter stops the sampler promptly
    let t = Instant::now();
    drop(meter);
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
fn rapl_through_the_meter_on_a_fake_powercap_tree() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("intel-rapl:0");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("name"), "package-0").unwrap();
    std::fs::write(pkg.join("max_energy_range_uj"), "262143328850").unwrap();
    std::fs::write(pkg.join("energy_uj"), "262143000000").unwrap();
    let clock = std::sync::Arc::new(lem::ManualClock::new());
    let meter = Meter::builder()
        .device(DeviceSpec::Rapl)
        .powercap_root(dir.path())
        .clock(clock.clone())
        .baseline_mode(BaselineMode::Off)
        .build()
        .unwrap();
    assert_eq!(meter.devices()[0].info().name, "CPU package-0 (RAPL)");
    let scope = meter.start("cpu").unwrap();
    clock.advance_s(2.0);
    // 30 J later the counter has wrapped past its range
    std::fs::write(pkg.join("energy_uj"), "29671150").unwrap();
    let rep = scope.finish().unwrap();
    assert!(
        (rep.energy.raw_j.unwrap() - 30.0).abs() < 1e-6,
        "{:?}",
        rep.energy.raw_j
    );
    assert!(!rep.simulated);
}
