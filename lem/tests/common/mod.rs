//! What the uncertainty contract tests share: a seeded generator, and a player that opens
//! and closes random overlapping windows over a simulated trace on a manual clock and scores
//! each window's bound against the trace's exact energy.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lem::device::{Scenario, SharedDevice, SimDevice};
use lem::{BaselineMode, Clock, EnergyScope, ManualClock, Meter};

/// A small deterministic generator (SplitMix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[(self.next() % v.len() as u64) as usize]
    }
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub windows: usize,
    pub covered: usize,
    pub errors: Vec<f64>,
    pub bounds: Vec<f64>,
    /// Windows whose bound was exactly 0 J.
    pub zero_bounds: usize,
    /// Signed relative errors (got − truth) / truth.
    pub relative: Vec<f64>,
}

impl Outcome {
    pub fn median(v: &[f64]) -> f64 {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    pub fn coverage(&self) -> f64 {
        self.covered as f64 / self.windows as f64
    }
    pub fn tightness(&self) -> f64 {
        Self::median(&self.bounds) / Self::median(&self.errors)
    }
}

/// Play `windows` random windows over one trace: the sampler ticks every `interval_s` (at a
/// random phase), scopes open and close at their times, overlapping freely.
pub fn play(json: &str, interval_s: f64, windows: usize, rng: &mut Rng, out: &mut Outcome) {
    play_lengths(json, interval_s, windows, (0.05, 10.0), rng, out);
}

/// [`play`] with windows of `lengths` (min, max) seconds.
pub fn play_lengths(
    json: &str,
    interval_s: f64,
    windows: usize,
    lengths: (f64, f64),
    rng: &mut Rng,
    out: &mut Outcome,
) {
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
        let len = rng.uniform(lengths.0, lengths.1);
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
            out.zero_bounds += usize::from(bound == 0.0);
            out.relative.push((got - truth) / truth);
        }
    }
}

pub fn report(name: &str, o: &Outcome) {
    println!(
        "{name}: {} windows, truth within the bound in {:.2} %, median bound {:.3} J / median error {:.3} J = {:.2}",
        o.windows,
        o.coverage() * 100.0,
        Outcome::median(&o.bounds),
        Outcome::median(&o.errors),
        o.tightness()
    );
}
