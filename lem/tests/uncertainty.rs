//! The uncertainty contract on exact traces: over ≥ 1000 random windows (0.05–10 s) on step
//! loads, the truth lies within the reported bound in ≥ 99 % of windows, and the median
//! bound is at most 5× the median actual error. Counter windows with quantised counters
//! (50–200 ms), integration windows at 10–500 ms intervals. Deterministic: a manual clock
//! and a seeded generator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lem::device::{Scenario, SharedDevice, SimDevice};
use lem::{BaselineMode, Clock, EnergyScope, ManualClock, Meter};

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[(self.next() % v.len() as u64) as usize]
    }
}

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

#[derive(Debug, Default)]
struct Outcome {
    windows: usize,
    covered: usize,
    errors: Vec<f64>,
    bounds: Vec<f64>,
}

impl Outcome {
    fn median(v: &[f64]) -> f64 {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    fn coverage(&self) -> f64 {
        self.covered as f64 / self.windows as f64
    }
    fn tightness(&self) -> f64 {
        Self::median(&self.bounds) / Self::median(&self.errors)
    }
}

/// Play `windows` random windows over one trace: the sampler ticks every `interval_s` (at a
/// random phase), scopes open and close at their times, overlapping freely.
fn play(json: &str, interval_s: f64, windows: usize, rng: &mut Rng, out: &mut Outcome) {
    let clock = Arc::new(ManualClock::new());
    let scenario = Scenario::from_json(json, Path::new("trace.json")).unwrap();
    let sim = Arc::new(SimDevice::open_all(&scenario, clock.clone(), 0).remove(0));
    let devices: Vec<SharedDevice> = vec![sim.clone()];
    let meter = Meter::builder()
        .devices(devices)
        .clock(clock.clone())
        .baseline_mode(BaselineMode::Off)
        .interval(Duration::from_secs_f64(interval_s))
        .build()
        .unwrap();
    // events: (time, +1 open / -1 close, window id)
    let mut events: BTreeMap<(u64, i8, usize), ()> = BTreeMap::new();
    let ns = |t: f64| (t * 1e9).round() as u64;
    for id in 0..windows {
        let len = rng.uniform(0.05, 10.0);
        let start = rng.uniform(2.0, 100.0);
        events.insert((ns(start), 1, id), ());
        events.insert((ns(start + len), -1, id), ());
    }
    let mut next_tick = rng.uniform(0.0, interval_s);
    let mut open: BTreeMap<usize, EnergyScope<'_>> = BTreeMap::new();
    for (&(t_ns, kind, id), ()) in &events {
        let t = t_ns as f64 / 1e9;
        while next_tick <= t {
            clock.advance_s(next_tick - clock.now().as_secs_f64());
            meter.sample_now();
            next_tick += interval_s;
        }
        clock.advance_s((t - clock.now().as_secs_f64()).max(0.0));
        if kind == 1 {
            open.insert(id, meter.start("w").unwrap());
        } else {
            let scope = open.remove(&id).unwrap();
            let r = scope.finish().unwrap();
            let t0 = r.start_s;
            let truth = sim.energy_until(t0 + r.duration_s) - sim.energy_until(t0);
            let got = r.energy.raw_j.unwrap();
            let bound = r.energy.uncertainty_j.unwrap();
            let err = (got - truth).abs();
            out.windows += 1;
            if err <= bound + 1e-9 * truth.max(1.0) {
                out.covered += 1;
            }
            out.errors.push(err);
            out.bounds.push(bound);
        }
    }
}

fn report(name: &str, o: &Outcome) {
    println!(
        "{name}: {} windows, truth within the bound in {:.2} %, median bound {:.3} J / median error {:.3} J = {:.2}",
        o.windows,
        o.coverage() * 100.0,
        Outcome::median(&o.bounds),
        Outcome::median(&o.errors),
        o.tightness()
    );
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
