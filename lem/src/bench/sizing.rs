//! How long a benchmark's samples are, decided before any kept sample is measured.
//!
//! 1. **Timing.** Warmup syncs after every iteration, samples only at their ends, so with
//!    asynchronous (GPU) work a sample of `min_sample_s / warmup latency` iterations can be
//!    far shorter than `min_sample_s`. A timing pilot runs the routine exactly as a sample
//!    does (no sync between iterations) and is lengthened until it lasts `min_sample_s`.
//!    Pilots are never kept.
//! 2. **The bound.** With `max_uncertainty`, two pilot windows (of the timed length and
//!    three times it) give the bound of the reported figure as `A + B·T`: a part fixed per
//!    window (the counter's staleness at the edges) and a part that grows with the window
//!    (integration's sampling terms, part-time sensing of each power change, the baseline's
//!    uncertainty over the window for adjusted energy). The relative bound falls with length
//!    only down to `B / power`: the sample length that meets the target is `A / (target ·
//!    power − B)`, and where `B / power` is already above the target no length meets it,
//!    which is said instead of lengthening forever.
//! 3. **Time.** `max_time_s` limits the measuring time: the pilots and the samples (not the
//!    warmups, the gaps between cycles or the start delays). Samples sized for the bound
//!    share what the pilots left (a target that needs more is not met, and said), and the
//!    bencher starts no sample that would end past the limit (fewer samples, said).
//!
//! Samples are never measured again because of their own value: re-measuring the ones
//! whose energy came out low would bias the kept samples upward.

use super::plan::Plan;
use crate::results::report::EnergyReport;

/// The most iterations one sample may have.
pub(super) const MAX_ITERATIONS: u64 = 100_000_000;

/// A timing pilot is accepted when it lasts at least this fraction of `min_sample_s`.
const LONG_ENOUGH: f64 = 0.9;

/// The energy figure a bench reports per window and its bound: the adjusted one where the
/// window has it (that is the headline figure), else the raw one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Judged {
    pub energy_j: f64,
    pub bound_j: f64,
    pub figure: &'static str,
}

impl Judged {
    pub(super) fn of(r: &EnergyReport) -> Option<Self> {
        let e = &r.energy;
        if let (Some(j), Some(u)) = (e.adjusted_j, e.adjusted_uncertainty_j) {
            return Some(Self {
                energy_j: j,
                bound_j: u,
                figure: "adjusted",
            });
        }
        Some(Self {
            energy_j: e.raw_j?,
            bound_j: e.uncertainty_j?,
            figure: "raw",
        })
    }

    /// The bound as a fraction of the energy; `None` for energy ≤ 0.
    pub(super) fn relative(&self) -> Option<f64> {
        (self.energy_j > 0.0).then(|| self.bound_j / self.energy_j)
    }
}

/// The samples' length.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Sizing {
    /// Iterations per sample.
    pub iterations: u64,
    /// Seconds per iteration as a sample runs them (from the last timing pilot; 0 unknown).
    pub per_iter_s: f64,
    /// The iteration cap limited the samples.
    pub capped: bool,
    /// Time spent in pilots, s (counts against `max_time_s`).
    pub pilot_s: f64,
}

/// What the sizing needs of the bencher: run `n` iterations as a sample does and say how
/// long they took (s), or run them inside a pilot window and return its length (s) and the
/// judged figure (`None`: the window could not be opened or closed).
pub(super) trait Pilot {
    fn timed(&mut self, n: u64) -> f64;
    fn window(&mut self, n: u64) -> Option<(f64, Option<Judged>)>;
}

/// The samples' length for `plan`, starting from `first` iterations (the warmup's estimate);
/// what the reader should know goes to `warnings`.
pub(super) fn size(
    plan: &Plan,
    first: u64,
    pilot: &mut dyn Pilot,
    warnings: &mut Vec<String>,
) -> Sizing {
    let mut s = Sizing {
        iterations: first.clamp(1, MAX_ITERATIONS),
        per_iter_s: 0.0,
        capped: false,
        pilot_s: 0.0,
    };
    if plan.min_sample_s <= 0.0 {
        return s;
    }
    time_pilots(plan, pilot, &mut s, warnings);
    if let Some(target) = plan.max_uncertainty {
        bound_pilots(plan, target, pilot, &mut s, warnings);
    }
    s
}

/// Lengthen the timing pilot until it lasts `min_sample_s` (at most four tries), and size
/// the samples from its pace to last a little over it.
fn time_pilots(plan: &Plan, pilot: &mut dyn Pilot, s: &mut Sizing, warnings: &mut Vec<String>) {
    let mut d = 0.0;
    for _ in 0..4 {
        d = pilot.timed(s.iterations);
        s.pilot_s += d;
        s.per_iter_s = d / s.iterations as f64;
        if d >= LONG_ENOUGH * plan.min_sample_s || s.iterations >= MAX_ITERATIONS {
            break;
        }
        let grow = if d > 0.0 {
            plan.min_sample_s / d * 1.1
        } else {
            10.0
        };
        s.iterations = ((s.iterations as f64 * grow).ceil() as u64).clamp(1, MAX_ITERATIONS);
    }
    if d >= LONG_ENOUGH * plan.min_sample_s && d < 1.05 * plan.min_sample_s {
        // close: the pace is known, so no further pilot is needed
        let n = (plan.min_sample_s * 1.05 / s.per_iter_s).ceil() as u64;
        s.iterations = n.clamp(s.iterations, MAX_ITERATIONS);
    }
    if d < LONG_ENOUGH * plan.min_sample_s {
        s.capped = s.iterations >= MAX_ITERATIONS;
        let why = if s.capped {
            format!("the cap of {MAX_ITERATIONS} iterations per sample")
        } else {
            "its pace kept changing over four timing pilots".into()
        };
        warnings.push(format!(
            "{}: a timing pilot of the samples' length lasted {:.3} s, shorter than min_sample_s {:.3} s: {why}; samples have {} iterations",
            plan.name, d, plan.min_sample_s, s.iterations
        ));
    }
}

/// The bound of the reported figure as `A + B·T` from two pilot windows, and the length
/// that meets `target` within the time limit.
fn bound_pilots(
    plan: &Plan,
    target: f64,
    pilot: &mut dyn Pilot,
    s: &mut Sizing,
    warnings: &mut Vec<String>,
) {
    let n1 = s.iterations;
    let n2 = n1.saturating_mul(3).min(MAX_ITERATIONS);
    let p1 = pilot.window(n1);
    let p2 = pilot.window(n2);
    let judged = |r: &Option<(f64, Option<Judged>)>| r.and_then(|(d, j)| j.map(|j| (j, d)));
    s.pilot_s += [&p1, &p2]
        .iter()
        .filter_map(|p| p.map(|p| p.0))
        .sum::<f64>();
    let (Some((j1, d1)), Some((j2, d2))) = (judged(&p1), judged(&p2)) else {
        warnings.push(format!(
            "{}: max_uncertainty cannot be judged: the pilot windows have no energy or no bound; samples keep min_sample_s",
            plan.name
        ));
        return;
    };
    let rate = (j1.energy_j + j2.energy_j) / (d1 + d2);
    if !(rate > 0.0 && d2 > d1) {
        warnings.push(format!(
            "{}: max_uncertainty cannot be judged: the {} energy of the pilot windows is not positive; samples keep min_sample_s",
            plan.name, j1.figure
        ));
        return;
    }
    let b = ((j2.bound_j - j1.bound_j) / (d2 - d1)).max(0.0);
    let a = (j1.bound_j - b * d1).max(0.0);
    let floor = b / rate;
    if floor >= target {
        warnings.push(format!(
            "{}: max_uncertainty {:.2} % cannot be met by longer samples: the {} energy's bound grows with the sample ({:.2} % of it at any length: integration, part-time sensing or the baseline's uncertainty); samples keep min_sample_s",
            plan.name,
            target * 100.0,
            j1.figure,
            floor * 100.0
        ));
        return;
    }
    let wanted_s = a / (target * rate - b) * 1.1;
    // the fastest of the pilots' paces: a pilot slowed by a busy machine must not leave
    // the samples short of the length the target needs
    let per_iter = [s.per_iter_s, d1 / n1 as f64, d2 / n2 as f64]
        .into_iter()
        .filter(|p| *p > 0.0)
        .fold(f64::INFINITY, f64::min);
    if !per_iter.is_finite() {
        return;
    }
    // what is left of max_time_s after the pilots, shared by every sample
    let budget_s = (plan.max_time_s - s.pilot_s).max(0.0) / (plan.samples * plan.cycles) as f64;
    let length_s = wanted_s.min(budget_s);
    let n = ((length_s / per_iter).ceil() as u64).clamp(1, MAX_ITERATIONS);
    if n > s.iterations {
        s.iterations = n;
        s.capped = n >= MAX_ITERATIONS;
    }
    let got_s = s.iterations as f64 * per_iter;
    let expected = (a + b * got_s) / (rate * got_s);
    if expected > target {
        let why = if s.capped {
            format!("the cap of {MAX_ITERATIONS} iterations per sample")
        } else {
            format!(
                "max_time_s {:.0} s for {} samples x {} cycle(s)",
                plan.max_time_s, plan.samples, plan.cycles
            )
        };
        warnings.push(format!(
            "{}: max_uncertainty {:.2} % needs samples of {:.1} s; {why} allows {:.1} s, whose {} energy bound is about {:.2} %",
            plan.name,
            target * 100.0,
            wanted_s,
            got_s,
            j1.figure,
            expected * 100.0
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::plan::BenchOptions;

    /// A routine of `per_iter` s per iteration on a device whose window bound is
    /// `a + b·T` J at `power` W.
    struct Model {
        per_iter: f64,
        power: f64,
        a: f64,
        b: f64,
        timed: Vec<u64>,
        windows: Vec<u64>,
    }

    impl Pilot for Model {
        fn timed(&mut self, n: u64) -> f64 {
            self.timed.push(n);
            n as f64 * self.per_iter
        }
        fn window(&mut self, n: u64) -> Option<(f64, Option<Judged>)> {
            self.windows.push(n);
            let t = n as f64 * self.per_iter;
            let j = Judged {
                energy_j: self.power * t,
                bound_j: self.a + self.b * t,
                figure: "raw",
            };
            Some((t, Some(j)))
        }
    }

    fn model(per_iter: f64, a: f64, b: f64) -> Model {
        Model {
            per_iter,
            power: 100.0,
            a,
            b,
            timed: Vec::new(),
            windows: Vec::new(),
        }
    }

    fn plan(max_uncertainty: Option<f64>) -> Plan {
        let o = BenchOptions {
            max_uncertainty,
            ..BenchOptions::DEFAULT
        };
        Plan::new("b", &o, false).unwrap()
    }

    #[test]
    fn a_fixed_bound_gives_the_length_that_meets_the_target() {
        // 5 J fixed at 100 W: 1 % needs 5 s (sized 10 % over)
        let mut m = model(0.01, 5.0, 0.0);
        let mut w = Vec::new();
        let s = size(&plan(Some(0.01)), 100, &mut m, &mut w);
        let t = s.iterations as f64 * 0.01;
        assert!((5.0..5.6).contains(&t), "{t} s");
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn a_bound_growing_with_the_window_is_said_and_never_lengthened() {
        // 2 J/s on 100 W: 2 % at any length, above a 1 % target
        let mut m = model(0.01, 0.5, 2.0);
        let mut w = Vec::new();
        let s = size(&plan(Some(0.01)), 100, &mut m, &mut w);
        assert_eq!(s.iterations, 105, "min_sample_s and 5 %, no more");
        assert!(w[0].contains("cannot be met by longer samples"), "{w:?}");
        assert!(w[0].contains("2.00 %"), "{w:?}");
    }

    #[test]
    fn a_target_beyond_the_time_limit_is_capped_and_said() {
        // 500 J fixed: 1 % needs 500 s per sample, 5000 s for 10; the limit is 600 s
        let mut m = model(0.01, 500.0, 0.0);
        let mut w = Vec::new();
        let s = size(&plan(Some(0.01)), 100, &mut m, &mut w);
        let total = s.iterations as f64 * 0.01 * 10.0;
        assert!(total <= 600.0 + 1e-6, "{total}");
        assert!(w[0].contains("max_time_s"), "{w:?}");
    }

    #[test]
    fn samples_faster_than_warmup_are_lengthened_before_any_is_kept() {
        // warmup said 10 ms per iteration (synced); unsynced they take 1 ms
        let mut m = model(0.001, 0.0, 0.0);
        let mut w = Vec::new();
        let s = size(&plan(None), 100, &mut m, &mut w);
        assert!(s.iterations as f64 * 0.001 >= 0.9, "{}", s.iterations);
        assert!(m.timed.len() >= 2 && m.windows.is_empty());
        assert!(w.is_empty(), "{w:?}");
    }
}
