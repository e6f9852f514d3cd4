//! The bencher: a plan of warmup and samples for one benchmark, and running it.

use std::any::Any;
use std::hint::black_box;

use super::outcome::{stats_of, BenchOutcome, SampleRecord};
use super::plan::{BenchOptions, Plan};
use super::sizing::{self, Judged, Pilot, Sizing};
use super::thermal::{self, push_once};
use crate::base::seeded::SplitMix;
use crate::measure::meter::Meter;
use crate::measure::warmup::{typical_latency, warm_up, WarmupResult};
use crate::results::report::{merge_reports, EnergyReport};

/// Handed to a benchmark function: set a sync hook, then call [`iter`](Self::iter) with
/// the routine to measure. Setup before `iter` is not measured.
pub struct Bencher<'m> {
    meter: &'m Meter,
    plan: Plan,
    /// The generator of start delays.
    delays: std::cell::Cell<SplitMix>,
    sync: Option<Box<dyn Fn() + 'm>>,
    outcome: Option<BenchOutcome>,
}

impl std::fmt::Debug for Bencher<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bencher")
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

/// The number of units a routine's return value stands for, when it is a number.
fn units_of<R: Any>(r: &R) -> Option<f64> {
    let a = r as &dyn Any;
    if let Some(v) = a.downcast_ref::<usize>() {
        return Some(*v as f64);
    }
    if let Some(v) = a.downcast_ref::<u64>() {
        return Some(*v as f64);
    }
    if let Some(v) = a.downcast_ref::<u32>() {
        return Some(f64::from(*v));
    }
    if let Some(v) = a.downcast_ref::<i64>() {
        return Some(*v as f64);
    }
    if let Some(v) = a.downcast_ref::<i32>() {
        return Some(f64::from(*v));
    }
    if let Some(v) = a.downcast_ref::<f64>() {
        return Some(*v);
    }
    a.downcast_ref::<f32>().map(|v| f64::from(*v))
}

impl<'m> Bencher<'m> {
    pub(crate) fn new(meter: &'m Meter, plan: Plan) -> Self {
        Self {
            meter,
            delays: std::cell::Cell::new(SplitMix(plan.random_start.unwrap_or(0))),
            plan,
            sync: None,
            outcome: None,
        }
    }

    /// Wait for asynchronous work (a GPU stream) at every measurement boundary and after
    /// each warmup iteration. Without it, GPU work launched in one sample can land in the
    /// next, or after the window closes.
    ///
    /// The hook outlives the benchmark function's locals, so give it what it needs by value:
    /// `let device = device.clone(); b.sync_with(move || B::sync(&device));`.
    pub fn sync_with(&mut self, f: impl Fn() + 'm) {
        self.sync = Some(Box::new(f));
    }

    /// Measure `routine`: warmup, then the measured samples. With `units` set, the routine
    /// returns how many units (tokens, items) one call produced.
    ///
    /// The samples' length is decided before any kept sample (see the `sizing` module); a
    /// sample that still comes out shorter than `min_sample_s` is kept, said, and the ones
    /// after it are lengthened. No sample starts that would take the measuring time (pilots
    /// and samples) past `max_time_s`.
    pub fn iter<R: Any>(&mut self, mut routine: impl FnMut() -> R) {
        let sync: &dyn Fn() = match &self.sync {
            Some(s) => s.as_ref(),
            None => &|| {},
        };
        let plan = self.plan.clone();
        let clock = self.meter.clock().clone();
        let mut warnings = Vec::new();
        let mut warmups = Vec::new();
        let mut records = Vec::new();
        let mut reports = Vec::new();
        let mut judged = None;
        let mut sized: Option<Sizing> = None;
        let (mut discarded, mut aborted) = (0usize, None::<String>);
        // measuring time so far (pilots and samples), s: what max_time_s limits
        let mut spent = 0.0;
        'cycles: for cycle in 0..plan.cycles {
            if cycle > 0 && !plan.cycle_gap.is_zero() {
                std::thread::sleep(plan.cycle_gap);
            }
            let w = warm(&plan, &mut routine, sync, &mut warnings);
            let first = initial_iterations(&plan, &w);
            warmups.push(w);
            let size = match &mut sized {
                Some(s) => s,
                None => {
                    let mut pilot = BenchPilot {
                        bencher: self,
                        routine: &mut routine,
                        sync,
                    };
                    let s = sizing::size(&plan, first, &mut pilot, &mut warnings);
                    spent += s.pilot_s;
                    sized.insert(s)
                }
            };
            let period = self.sensor_period();
            let origin = clock.now().as_secs_f64();
            for phase in self.start_phases(&plan, plan.samples) {
                let expected = size.iterations as f64 * size.per_iter_s;
                if !records.is_empty() && spent + expected > plan.max_time_s {
                    warnings.push(format!(
                        "{}: stopped after {} of {} samples: another would take the measuring time past max_time_s {:.0} s",
                        plan.name,
                        records.len(),
                        plan.samples * plan.cycles,
                        plan.max_time_s
                    ));
                    break 'cycles;
                }
                let iterations = size.iterations;
                let at = (origin, phase, period);
                let mut kept =
                    self.kept_sample(&plan, &mut routine, sync, iterations, at, &mut warnings);
                discarded += kept.discarded;
                let Some(got) = kept.got.take() else {
                    break 'cycles;
                };
                if kept.abort {
                    aborted = Some(format!(
                        "sample {} throttled and on_throttle is `abort`: stopped, keeping the {} sample(s) measured",
                        records.len() + 1,
                        records.len() + 1
                    ));
                }
                spent += got.report.duration_s;
                let j = Judged::of(&got.report);
                judged = judged.or(j.map(|j| j.figure));
                check_sample(&plan, &got, j, &mut warnings);
                check_length(&plan, &got.report, records.len(), size, &mut warnings);
                records.push(SampleRecord {
                    cycle,
                    iterations,
                    duration_s: got.report.duration_s,
                    raw_j: got.report.energy.raw_j,
                    adjusted_j: got.report.energy.adjusted_j,
                    uncertainty_j: got.report.energy.uncertainty_j,
                    adjusted_uncertainty_j: got.report.energy.adjusted_uncertainty_j,
                    relative_uncertainty: j.and_then(|j| j.relative()),
                    units: got.counted.then_some(got.units),
                    throttled: got.report.thermal.throttle_detected,
                    start_temp_c: got.start_temp_c,
                    start_delay_s: got.delay_s,
                    cooldown_s: got.cooldown_s,
                });
                reports.push(got.report);
                if aborted.is_some() {
                    break 'cycles;
                }
            }
        }
        if discarded > 0 {
            warnings.push(format!(
                "{}: {discarded} throttled sample(s) discarded and measured again (on_throttle = \"discard\")",
                plan.name
            ));
        }
        summary_warnings(&plan, &records, &mut warnings);
        aliasing_warning(&plan, self.meter, &records, &mut warnings);
        let mut stats = stats_of(&plan, &records, judged);
        stats.discarded_samples = discarded;
        let report = merge_reports(&plan.name, &reports);
        self.outcome = Some(BenchOutcome {
            stats,
            warmups,
            report,
            warnings,
            aborted,
        });
    }

    /// One sample to keep: after the cooldown and the start delay that puts it at its
    /// `phase` of the sensor `period` (counted from `origin`); a throttled one measured again
    /// or ending the benchmark as `on_throttle` says.
    fn kept_sample<R: Any>(
        &self,
        plan: &Plan,
        routine: &mut impl FnMut() -> R,
        sync: &dyn Fn(),
        iterations: u64,
        (origin, phase, period): (f64, f64, f64),
        warnings: &mut Vec<String>,
    ) -> Kept {
        let clock = self.meter.clock();
        let mut kept = Kept::default();
        loop {
            let cooldown_s = thermal::cooldown(plan, self.meter, warnings);
            // wait until the sample starts at its phase (counted from the first sample's
            // planned start), however long the samples before took
            let delay = if period > 0.0 && plan.random_start.is_some() {
                (origin + phase - clock.now().as_secs_f64()).rem_euclid(period)
            } else {
                0.0
            };
            let Some(mut got) = self.sample(plan, routine, sync, iterations, warnings, delay)
            else {
                return kept;
            };
            got.cooldown_s = cooldown_s;
            match thermal::decide(plan, got.report.thermal.throttle_detected, kept.discarded) {
                thermal::Decision::Again => kept.discarded += 1,
                d => {
                    kept.abort = d == thermal::Decision::Abort;
                    kept.got = Some(got);
                    return kept;
                }
            }
        }
    }

    /// Run `iters` iterations as a sample does, without a window: the time they took, s.
    fn timed<R: Any>(&self, routine: &mut impl FnMut() -> R, sync: &dyn Fn(), iters: u64) -> f64 {
        let clock = self.meter.clock();
        sync();
        let t0 = clock.now();
        for _ in 0..iters {
            black_box(routine());
        }
        sync();
        clock.now().saturating_sub(t0).as_secs_f64()
    }

    /// One measured sample of `iters` iterations after `delay` s. `None` if no scope opened
    /// or closed (said in `warnings`).
    fn sample<R: Any>(
        &self,
        plan: &Plan,
        routine: &mut impl FnMut() -> R,
        sync: &dyn Fn(),
        iters: u64,
        warnings: &mut Vec<String>,
        delay: f64,
    ) -> Option<Got> {
        if delay > 0.0 {
            self.meter
                .clock()
                .sleep(std::time::Duration::from_secs_f64(delay));
        }
        sync();
        let start_temp_c = self
            .meter
            .devices()
            .iter()
            .filter_map(|d| d.temperature_c())
            .reduce(f64::max);
        let scope = match self.meter.start(plan.name.clone()) {
            Ok(s) => s,
            Err(e) => {
                push_once(
                    warnings,
                    format!("{}: could not open a scope: {e}", plan.name),
                );
                return None;
            }
        };
        let mut units = 0.0;
        let mut counted = plan.units.is_some();
        for _ in 0..iters {
            let r = routine();
            if counted {
                match units_of(&r) {
                    Some(u) => units += u,
                    None => counted = false,
                }
            }
            black_box(r);
        }
        sync();
        match scope.finish() {
            Ok(report) => Some(Got {
                report,
                units,
                counted,
                start_temp_c,
                delay_s: delay,
                cooldown_s: None,
            }),
            Err(e) => {
                push_once(
                    warnings,
                    format!("{}: could not close a scope: {e}", plan.name),
                );
                None
            }
        }
    }

    /// The longest sensor period of the meter's devices, s.
    fn sensor_period(&self) -> f64 {
        self.meter.longest_sensor_period_s()
    }

    /// A uniform number in [0, 1) from the seeded generator.
    fn uniform(&self) -> f64 {
        let mut g = self.delays.get();
        let u = g.uniform();
        self.delays.set(g);
        u
    }

    /// The start phases of `n` samples within the longest sensor period of the meter's
    /// devices, s: stratified (one in each n-th of the period, in random order, at a random
    /// point of it), so that the samples' phases cover the period evenly and their mean
    /// averages the phase out far better than independent draws. All 0 with random starts
    /// off, or on an ideal sensor.
    fn start_phases(&self, plan: &Plan, n: usize) -> Vec<f64> {
        let period = self.sensor_period();
        if plan.random_start.is_none() || period <= 0.0 || n == 0 {
            return vec![0.0; n];
        }
        let mut strata: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = ((self.uniform() * (i + 1) as f64) as usize).min(i);
            strata.swap(i, j);
        }
        strata
            .into_iter()
            .map(|k| period * (k as f64 + self.uniform()) / n as f64)
            .collect()
    }

    pub(crate) fn take_outcome(&mut self) -> Option<BenchOutcome> {
        self.outcome.take()
    }
}

/// Run one benchmark outside `lem::main!()`: `f` gets a [`Bencher`] and calls
/// [`Bencher::iter`]. For people writing their own harness or loops; `None` if `f` never
/// called `iter`.
///
/// # Errors
/// [`crate::error::Error::InvalidConfig`] naming the option when the options are invalid.
pub fn run_one(
    meter: &Meter,
    name: &str,
    options: &BenchOptions,
    f: impl FnOnce(&mut Bencher<'_>),
) -> crate::error::Result<Option<BenchOutcome>> {
    let mut b = Bencher::new(meter, Plan::new(name, options, false)?);
    f(&mut b);
    Ok(b.take_outcome())
}

/// Warm up (with its progress display); a warmup that did not converge is a warning.
fn warm<R>(
    plan: &Plan,
    routine: &mut impl FnMut() -> R,
    sync: &dyn Fn(),
    warnings: &mut Vec<String>,
) -> WarmupResult {
    let progress = super::progress::WarmupProgress::new(&plan.name, plan.progress, &plan.warmup);
    let w = warm_up(plan.warmup, routine, sync, |i, cv| progress.update(i, cv));
    progress.finish(&w);
    if !w.converged {
        let msg = format!(
            "{}: warmup did not converge in {} iterations (CV {} > target {:.3}); latency is still changing, so results vary more",
            plan.name,
            w.iterations,
            w.final_cv.map_or("-".into(), |c| format!("{c:.3}")),
            w.target_cv
        );
        push_once(warnings, msg);
    }
    w
}

/// Iterations per sample from the warmup's typical latency: enough to last `min_sample_s`.
fn initial_iterations(plan: &Plan, w: &WarmupResult) -> u64 {
    let per_iter = typical_latency(w, plan.warmup.window).as_secs_f64();
    if per_iter > 0.0 {
        ((plan.min_sample_s / per_iter).ceil() as u64).clamp(1, sizing::MAX_ITERATIONS)
    } else {
        1
    }
}

/// Warnings about one kept sample: units not returned, a bound above `max_uncertainty`.
fn check_sample(plan: &Plan, got: &Got, judged: Option<Judged>, warnings: &mut Vec<String>) {
    if plan.units.is_some() && !got.counted {
        let msg = format!(
            "{}: `units` is set but the routine does not return a number of units; energy per unit is not reported",
            plan.name
        );
        push_once(warnings, msg);
    }
    if let (Some(target), Some(j)) = (plan.max_uncertainty, judged) {
        if j.relative().is_some_and(|r| r > target) {
            let msg = format!(
                "{}: some samples' {} energy bound is above max_uncertainty {:.2} % of their energy (see relative_uncertainty per sample)",
                plan.name,
                j.figure,
                target * 100.0
            );
            push_once(warnings, msg);
        }
    }
}

/// A sample shorter than `min_sample_s` (by more than a fifth) is kept and said, and the
/// samples after it get enough iterations to last it (unless the cap already holds them).
fn check_length(
    plan: &Plan,
    rep: &EnergyReport,
    index: usize,
    size: &mut Sizing,
    warnings: &mut Vec<String>,
) {
    let d = rep.duration_s;
    if plan.min_sample_s <= 0.0 || d >= 0.8 * plan.min_sample_s || size.capped {
        return;
    }
    let grown = if d > 0.0 {
        (size.iterations as f64 * plan.min_sample_s / d * 1.1).ceil() as u64
    } else {
        size.iterations.saturating_mul(10)
    };
    let grown = grown.clamp(1, sizing::MAX_ITERATIONS);
    if d > 0.0 {
        size.per_iter_s = d / size.iterations as f64;
    }
    size.capped = grown >= sizing::MAX_ITERATIONS;
    warnings.push(format!(
        "{}: sample {} lasted {:.3} s, under min_sample_s {:.3} s: kept, and the samples after it use {} iterations instead of {}",
        plan.name,
        index + 1,
        d,
        plan.min_sample_s,
        grown,
        size.iterations
    ));
    size.iterations = grown;
}

/// Warnings about the samples as a whole: throttling, too few for an interval.
fn summary_warnings(plan: &Plan, records: &[SampleRecord], warnings: &mut Vec<String>) {
    if records.iter().any(|r| r.throttled) {
        let n = records.iter().filter(|r| r.throttled).count();
        warnings.push(format!(
            "{}: {n} of {} samples throttled: energy and time reflect a throttled device",
            plan.name,
            records.len()
        ));
    }
    let measured = records.iter().filter(|r| r.raw_j.is_some()).count();
    if measured > 0 && measured < records.len() {
        warnings.push(format!(
            "{}: energy was measured in {measured} of {} samples; the energy figures are over those",
            plan.name,
            records.len()
        ));
    }
    if records.len() < 3 {
        warnings.push(format!(
            "{}: only {} sample(s): confidence intervals need at least 3",
            plan.name,
            records.len()
        ));
    }
}

/// Warn when one iteration is shorter than the power sensor's period on a sensor that
/// observes only part of each period: a power pattern that repeats each iteration can then
/// alias with the sensor, which no reading can see.
fn aliasing_warning(
    plan: &Plan,
    meter: &Meter,
    records: &[SampleRecord],
    warnings: &mut Vec<String>,
) {
    let Some(sensor) = meter.part_time_sensor() else {
        return;
    };
    let per_iter: Vec<f64> = records
        .iter()
        .filter(|r| r.iterations > 0)
        .map(|r| r.duration_s / r.iterations as f64)
        .collect();
    let Some(mean) =
        (!per_iter.is_empty()).then(|| per_iter.iter().sum::<f64>() / per_iter.len() as f64)
    else {
        return;
    };
    // an iteration of exactly one period (to rounding) aliases as surely as a shorter one
    if mean < sensor.period_s * (1.0 + 1e-6) {
        let remedy = if plan.random_start.is_some() {
            "the random start delays turn a systematic error into spread across samples; check the interval"
        } else {
            "random_start is off, so a systematic error is possible"
        };
        warnings.push(format!(
            "{}: one iteration ({:.1} ms) is not longer than the power sensor's period ({:.0} ms, {:.0} % of it observed): a power pattern repeating each iteration can alias with the sensor, which no reading shows; {remedy}",
            plan.name,
            mean * 1e3,
            sensor.period_s * 1e3,
            sensor.sensing_fraction * 100.0
        ));
    }
}

/// A measured sample: its report, the units it produced, whether the routine returned
/// units, and the highest device temperature at its start.
struct Got {
    report: EnergyReport,
    units: f64,
    counted: bool,
    start_temp_c: Option<f64>,
    delay_s: f64,
    cooldown_s: Option<f64>,
}

/// The sample kept for one slot, the throttled ones discarded before it, and whether it
/// ends the benchmark (`on_throttle = "abort"`).
#[derive(Default)]
struct Kept {
    got: Option<Got>,
    discarded: usize,
    abort: bool,
}

/// The bencher's routine as the sizing's pilots run it.
struct BenchPilot<'b, 'm, F> {
    bencher: &'b Bencher<'m>,
    routine: &'b mut F,
    sync: &'b dyn Fn(),
}

impl<R: Any, F: FnMut() -> R> Pilot for BenchPilot<'_, '_, F> {
    fn timed(&mut self, n: u64) -> f64 {
        self.bencher.timed(self.routine, self.sync, n)
    }

    fn window(&mut self, n: u64) -> Option<(f64, Option<Judged>)> {
        let plan = self.bencher.plan.clone();
        let mut quiet = Vec::new();
        let got = self
            .bencher
            .sample(&plan, self.routine, self.sync, n, &mut quiet, 0.0)?;
        Some((got.report.duration_s, Judged::of(&got.report)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::warmup::WarmupMode;

    #[test]
    fn numbers_are_units_and_other_values_are_not() {
        assert_eq!(units_of(&64usize), Some(64.0));
        assert_eq!(units_of(&3u32), Some(3.0));
        assert_eq!(units_of(&2.5f64), Some(2.5));
        assert_eq!(units_of(&"x"), None);
        assert_eq!(units_of(&()), None);
        assert_eq!(units_of(&vec![1u8]), None);
    }

    #[test]
    fn options_default_to_the_documented_warmup() {
        let w = BenchOptions::DEFAULT.warmup_config();
        assert_eq!(
            (w.cv_threshold, w.window, w.min_iters, w.max_iters),
            (0.05, 5, 5, 50)
        );
        let o = BenchOptions {
            cv: Some(0.03),
            warmup: Some(WarmupMode::Fixed),
            ..BenchOptions::DEFAULT
        };
        assert_eq!(o.warmup_config().cv_threshold, 0.03);
        assert_eq!(o.warmup_config().mode, WarmupMode::Fixed);
    }
}
