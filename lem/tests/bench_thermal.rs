//! Thermally stable samples on a simulated device and a manual clock: the cooldown waits for
//! a device that is hot to come back near its idle temperature (and gives up, said, at its
//! timeout), and each `on_throttle` policy on a throttling scenario.
#![cfg(feature = "bench")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lem::bench::{run_one, BenchOptions, ThrottlePolicy};
use lem::device::{Scenario, SharedDevice, SimDevice};
use lem::warmup::WarmupMode;
use lem::{BaselineMode, Clock, ManualClock, Meter};

/// A meter on a manual clock whose baseline (0.5 s) is measured at the scenario's start.
fn rig(json: &str) -> (Arc<ManualClock>, Meter, tempfile::TempDir) {
    let clock = Arc::new(ManualClock::new());
    let s = Scenario::from_json(json, Path::new("thermal.json")).unwrap();
    let devices: Vec<SharedDevice> = SimDevice::open_all(&s, clock.clone(), 0)
        .into_iter()
        .map(|d| Arc::new(d) as SharedDevice)
        .collect();
    let cache = tempfile::tempdir().unwrap();
    let meter = Meter::builder()
        .devices(devices)
        .clock(clock.clone())
        .baseline_mode(BaselineMode::Force)
        .baseline_duration(Duration::from_millis(500))
        .cache_dir(cache.path())
        .build()
        .unwrap();
    (clock, meter, cache)
}

/// Samples of one iteration of 0.1 s of the manual clock.
fn opts() -> BenchOptions {
    BenchOptions {
        warmup: Some(WarmupMode::Fixed),
        warmup_iters: Some(1),
        samples: Some(3),
        min_sample_s: Some(0.0),
        random_start: Some(false),
        ..BenchOptions::DEFAULT
    }
}

/// Idle at 40 °C, then hot (90 °C) from 1 s to 4 s.
const HOT: &str = r#"{"idle_w": 60, "idle_temperature_c": 40, "segments": [
    {"start_s": 1.0, "end_s": 4.0, "power_w": 300, "temperature_c": 90}]}"#;

#[test]
fn a_cooldown_waits_for_the_idle_temperature_and_times_out_with_a_warning() {
    let (clock, meter, _c) = rig(HOT);
    assert_eq!(meter.baselines()[0].idle_temperature_c, Some(40.0));
    clock.advance_s(1.5 - clock.now().as_secs_f64());
    let o = BenchOptions {
        cooldown_c: Some(5.0),
        ..opts()
    };
    let c = clock.clone();
    let out = run_one(&meter, "cool", &o, |b| b.iter(|| c.advance_s(0.1)))
        .unwrap()
        .unwrap();
    let first = &out.stats.per_sample[0];
    // hot until 4 s: the first sample waited about 2.4 s, started at idle temperature
    let waited = first.cooldown_s.unwrap();
    assert!((2.0..2.8).contains(&waited), "{waited}");
    assert!(
        first.start_temp_c.unwrap() <= 45.0,
        "{:?}",
        first.start_temp_c
    );
    assert!(out.stats.cooldown_s.unwrap() >= waited);
    assert!(
        !out.warnings.iter().any(|w| w.contains("cooldown")),
        "{:?}",
        out.warnings
    );

    // a timeout shorter than the heat: the sample starts warm, and the report says so
    let (clock, meter, _c) = rig(HOT);
    clock.advance_s(1.5 - clock.now().as_secs_f64());
    let o = BenchOptions {
        cooldown_c: Some(5.0),
        cooldown_timeout_s: Some(0.5),
        ..opts()
    };
    let c = clock.clone();
    let out = run_one(&meter, "warm", &o, |b| b.iter(|| c.advance_s(0.1)))
        .unwrap()
        .unwrap();
    assert!((0.5..0.8).contains(&out.stats.per_sample[0].cooldown_s.unwrap()));
    assert!(
        out.warnings
            .iter()
            .any(|w| w.contains("cooldown timed out")),
        "{:?}",
        out.warnings
    );
}

/// Thermally throttled from 1 s to 1.35 s.
const THROTTLED: &str = r#"{"idle_w": 60, "segments": [
    {"start_s": 1.0, "end_s": 1.35, "power_w": 300, "throttle": ["sw_thermal_slowdown"]}]}"#;

fn throttle_bench(policy: ThrottlePolicy) -> lem::bench::BenchOutcome {
    let (clock, meter, _c) = rig(THROTTLED);
    clock.advance_s(1.0 - clock.now().as_secs_f64());
    meter.sample_now();
    let o = BenchOptions {
        on_throttle: Some(policy),
        ..opts()
    };
    let c = clock.clone();
    let m = &meter;
    run_one(&meter, "throttle", &o, |b| {
        b.iter(|| {
            c.advance_s(0.1);
            m.sample_now();
        })
    })
    .unwrap()
    .unwrap()
}

#[test]
fn each_throttle_policy_does_what_it_says() {
    // continue: the throttled samples are kept and counted
    let out = throttle_bench(ThrottlePolicy::Continue);
    assert_eq!(out.stats.samples, 3);
    assert!(out.stats.per_sample[0].throttled);
    assert_eq!(out.stats.discarded_samples, 0);
    assert!(out.aborted.is_none());
    // discard: throttled samples are measured again; the ones kept are not throttled
    let out = throttle_bench(ThrottlePolicy::Discard);
    assert_eq!(out.stats.samples, 3);
    assert!(
        out.stats.discarded_samples >= 2,
        "{}",
        out.stats.discarded_samples
    );
    assert!(out.stats.per_sample.iter().all(|r| !r.throttled));
    assert!(out.warnings.iter().any(|w| w.contains("discarded")));
    // abort: stops at the first throttled sample with the reason, keeping it
    let out = throttle_bench(ThrottlePolicy::Abort);
    assert_eq!(out.stats.samples, 1);
    assert!(out.stats.per_sample[0].throttled);
    let why = out.aborted.unwrap();
    assert!(why.contains("on_throttle is `abort`"), "{why}");
}
