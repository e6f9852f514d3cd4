//! Checks on a real NVIDIA GPU. Ignored by default (CI has no GPU) but always compiled:
//! run with `cargo test -p lem --test gpu -- --ignored --nocapture` on a GPU machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use lem::device::{open_devices, DeviceSpec};
use lem::{BaselineMode, Meter, MonotonicClock};

#[test]
#[ignore = "requires an NVIDIA GPU"]
fn nvml_opens_visible_gpus_with_sane_facts() {
    let opened = open_devices(
        &DeviceSpec::Nvml(None),
        std::sync::Arc::new(MonotonicClock::new()),
    )
    .unwrap();
    assert!(!opened.devices.is_empty());
    for d in &opened.devices {
        let i = d.info();
        println!("{i:#?}");
        assert!(i.uuid.starts_with("GPU-"), "{}", i.uuid);
        assert!(!i.simulated);
        let r = d.read().unwrap();
        println!("reading: {r:?}");
        assert!(r.power_w.unwrap() > 1.0);
        assert!(r.temperature_c.unwrap() > 0.0);
        assert!(r.throttle.is_some(), "clocks-event reasons readable");
        if i.energy_counter {
            let a = d.energy_j().unwrap();
            std::thread::sleep(Duration::from_millis(300));
            let b = d.energy_j().unwrap();
            assert!(b > a, "energy counter moves: {a} -> {b}");
        }
        println!("violations: {:?}", d.violations());
    }
    println!("notices: {:?}", opened.notices);
    println!(
        "driver {:?}, cuda {:?}",
        opened.devices[0].driver_version(),
        opened.devices[0].cuda_version()
    );
}

#[test]
#[ignore = "requires an NVIDIA GPU"]
fn counter_and_integrated_samples_agree_over_a_5_second_window() {
    let meter = Meter::builder()
        .device(DeviceSpec::Nvml(None))
        .baseline_mode(BaselineMode::Force)
        .baseline_duration(Duration::from_secs(3))
        .keep_timeseries(true)
        .build()
        .unwrap();
    println!("{}", meter.environment().summary);
    println!("baselines: {:?}", meter.baselines());
    let scope = meter.start("idle-5s").unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let rep = scope.finish().unwrap();
    println!("{}", rep.to_json().unwrap());
    let ts = meter.timeseries(&rep);
    for d in &rep.devices {
        let pts: Vec<(f64, f64)> = ts
            .iter()
            .filter(|s| s.device == d.index)
            .filter_map(|s| s.reading.power_w.map(|p| (s.t_s, p)))
            .collect();
        let integrated = lem::accounting::integrate(&pts, 0.0, rep.duration_s).unwrap();
        let counter = d.energy.raw_j.unwrap();
        let diff = (integrated - counter).abs() / counter;
        println!(
            "device {}: counter {counter:.2} J, integrated {integrated:.2} J, differ {:.2} %",
            d.index,
            diff * 100.0
        );
        assert!(
            diff < 0.10,
            "counter and integration disagree by {:.1} %",
            diff * 100.0
        );
    }
    let expected = rep.sampling.expected_sample_count as f64;
    assert!((rep.sampling.sample_count as f64 - expected).abs() <= 0.1 * expected + 1.0);
}
