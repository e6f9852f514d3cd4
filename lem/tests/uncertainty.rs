//! The uncertainty contract on exact traces: over ≥ 1000 random windows (0.05–10 s) on step
//! loads, the truth lies within the reported bound in ≥ 99 % of windows, and the median
//! bound is at most 5× the median actual error. Counter windows with quantised counters
//! (50–200 ms), integration windows at 10–500 ms intervals. Deterministic: a manual clock
//! and a seeded generator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{play, report, Outcome, Rng};

/// A step load: segments of 0.05–3 s at 60–700 W over `total_s`.
fn step_trace(rng: &mut Rng, total_s: f64, counter_ms: f64, counter: bool) -> String {
    let mut segs = Vec::new();
    let mut t = 0.0;
    while t < total_s {
        let len = rng.uniform(0.05, 3.0);
        let p = rng.uniform(60.0, 700.0);
        segs.push(format!(
            r#"{{"start_s": {t}, "end_s": {}, "power_w": {p}}}"#,
            t + len
        ));
        t += len;
    }
    format!(
        r#"{{"idle_w": 60, "energy_counter": {counter}, "counter_update_ms": {counter_ms}, "segments": [{}]}}"#,
        segs.join(",")
    )
}

#[test]
fn counter_windows_on_quantised_counters_and_step_loads() {
    let mut rng = Rng(0x1e5);
    let mut o = Outcome::default();
    for _ in 0..12 {
        let ms = rng.pick(&[50.0, 75.0, 100.0, 150.0, 200.0]);
        let json = step_trace(&mut rng, 115.0, ms, true);
        play(&json, 0.1, 100, &mut rng, &mut o);
    }
    report("counter, steps", &o);
    assert!(o.windows >= 1000);
    assert!(o.coverage() >= 0.99, "coverage {}", o.coverage());
    assert!(o.tightness() <= 5.0, "tightness {}", o.tightness());
}

#[test]
fn counter_windows_on_constant_load_are_about_3x_tight() {
    let mut rng = Rng(0xc0);
    let mut o = Outcome::default();
    for _ in 0..10 {
        let ms = rng.pick(&[50.0, 100.0, 200.0]);
        let p = rng.uniform(100.0, 700.0);
        let json = format!(r#"{{"idle_w": {p}, "counter_update_ms": {ms}}}"#);
        play(&json, 0.1, 100, &mut rng, &mut o);
    }
    report("counter, constant", &o);
    assert!(o.coverage() >= 0.99, "coverage {}", o.coverage());
    assert!(
        o.tightness() <= 5.0 && o.tightness() >= 2.0,
        "tightness {}",
        o.tightness()
    );
}

#[test]
fn integration_windows_at_10_to_500_ms() {
    let mut rng = Rng(0x1a7);
    let mut o = Outcome::default();
    for _ in 0..12 {
        let interval = rng.pick(&[0.01, 0.05, 0.1, 0.2, 0.5]);
        let json = step_trace(&mut rng, 115.0, 0.0, false);
        play(&json, interval, 100, &mut rng, &mut o);
    }
    report("integration, steps", &o);
    assert!(o.windows >= 1000);
    assert!(o.coverage() >= 0.99, "coverage {}", o.coverage());
    assert!(o.tightness() <= 5.0, "tightness {}", o.tightness());
}
