//! Below the energy counter's resolution, one estimator serves every window, whatever the
//! counter did: the mean over many short windows at random phases is the truth, not up to
//! twice it (the bias of integrating only when the counter stood still).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::Rng;
use lem::device::{Scenario, SharedDevice, SimDevice};
use lem::{BaselineMode, Clock, EnergyMethod, ManualClock, Meter};

/// Mean raw energy of `n` windows of `len_s` at random phases of a 100 ms counter on a
/// constant 200 W load, with the sampler ticking every `tick_s` (`None`: never, and the
/// meter's interval is 10 s: too sparse to integrate).
fn mean_short_window(len_s: f64, tick_s: Option<f64>, n: usize) -> (f64, Vec<EnergyMethod>) {
    let json = r#"{"idle_w": 200, "counter_update_ms": 100}"#;
    let clock = Arc::new(ManualClock::new());
    let scenario = Scenario::from_json(json, Path::new("short.json")).unwrap();
    let sim = Arc::new(SimDevice::open_all(&scenario, clock.clone(), 0).remove(0));
    let devices: Vec<SharedDevice> = vec![sim];
    let meter = Meter::builder()
        .devices(devices)
        .clock(clock.clone())
        .baseline_mode(BaselineMode::Off)
        .interval(Duration::from_millis(if tick_s.is_some() {
            10
        } else {
            10_000
        }))
        .build()
        .unwrap();
    let mut rng = Rng(0x5407);
    let mut sum = 0.0;
    let mut methods = Vec::new();
    for _ in 0..n {
        clock.advance_s(rng.uniform(0.0, 0.3));
        if tick_s.is_some() {
            meter.sample_now();
        }
        let scope = meter.start("short").unwrap();
        let end = clock.now().as_secs_f64() + len_s;
        if let Some(tick) = tick_s {
            while clock.now().as_secs_f64() + tick < end {
                clock.advance_s(tick);
                meter.sample_now();
            }
        }
        clock.advance_s((end - clock.now().as_secs_f64()).max(0.0));
        let r = scope.finish().unwrap();
        assert!(
            r.energy.below_resolution,
            "a 40 ms window is below a 100 ms counter"
        );
        sum += r.energy.raw_j.expect("short windows are measured");
        methods.extend(r.energy.method);
    }
    (sum / n as f64, methods)
}

#[test]
fn short_windows_average_to_the_truth_with_power_samples() {
    let (mean, methods) = mean_short_window(0.04, Some(0.01), 600);
    let truth = 200.0 * 0.04;
    assert!(
        (mean - truth).abs() < 0.03 * truth,
        "mean {mean:.3} J over 40 ms windows, truth {truth:.3} J"
    );
    assert!(methods.iter().all(|m| *m == EnergyMethod::PowerIntegration));
}

#[test]
fn short_windows_average_to_the_truth_on_the_counter_alone() {
    // sampled too sparsely to integrate: the counter's difference, 0 or 20 J a window,
    // unbiased over the phase (zeros are kept, never swapped for another estimate)
    let (mean, methods) = mean_short_window(0.04, None, 4000);
    let truth = 200.0 * 0.04;
    assert!(
        (mean - truth).abs() < 0.06 * truth,
        "mean {mean:.3} J over 40 ms windows, truth {truth:.3} J"
    );
    assert_eq!(methods.len(), 4000, "every window has an estimate");
    assert!(methods.iter().all(|m| *m == EnergyMethod::EnergyCounter));
}
