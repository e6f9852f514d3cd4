//! The bound on |raw − truth| of one window, for each way the energy can be obtained, and
//! the inputs it was computed from (reported beside it).

use super::fold::Steps;
use super::input::DeviceWindow;
use super::trace::PowerTrace;
use crate::results::report::{EnergyMethod, UncertaintyInputs, UncertaintyMethod};

pub use super::fold::POWER_AVERAGE_S;

/// Both models' bounds, computed before the energy is chosen: the cross-check between
/// counter and samples only flags a disagreement larger than the two bounds allow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bounds {
    /// The highest power near the window's start and end (what a stale counter read missed).
    pub near0_w: Option<f64>,
    pub near1_w: Option<f64>,
    /// The lowest power near the window's start and end.
    pub low0_w: Option<f64>,
    pub low1_w: Option<f64>,
    /// The power changes seen around the window (rises, falls, squares).
    steps: Steps,
    /// Counter staleness: each read may be stale by up to one update period.
    pub counter_j: Option<f64>,
    /// Integration of a piecewise-constant trace between samples.
    pub sampling_j: f64,
    /// 1-second averaged readings lag steps near the window's edges.
    pub averaging_j: f64,
    /// Part-time sensing: each change seen may sit in an unobserved part of a period. Rises
    /// can only make the sensed energy too low, falls only too high: (too low, too high).
    pub part_time: (f64, f64),
    /// The larger side of `part_time`, J.
    pub part_time_j: f64,
    /// Stale readings (integration): each change shows up to one refresh late.
    pub staleness_j: f64,
    /// No fresh reading inside the window (integration): the held value may be out of date.
    pub held_j: Option<f64>,
    /// The readings' resolution (integration): keeps the bound above zero.
    pub resolution_j: f64,
}

/// The power reading's resolution (NVML reports milliwatts), W.
pub const POWER_RESOLUTION_W: f64 = 0.001;
/// The smallest energy step any counter lem reads can show (NVML counts millijoules), J.
pub const MIN_COUNTER_STEP_J: f64 = 0.001;

impl Bounds {
    pub(crate) fn of(w: &DeviceWindow<'_>, trace: &PowerTrace<'_>) -> Self {
        let period = w.counter_update.0;
        let points = &trace.points;
        let folded = trace.folded.as_ref();
        let peak_seen = match folded {
            Some(f) => f.peak_seen,
            None => points.iter().map(|p| p.1).reduce(f64::max),
        };
        let lead = if trace.averaged { POWER_AVERAGE_S } else { 0.0 };
        let near = |t: f64| {
            max_power_near(&trace.near_points, t - period - lead - w.interval_s, t)
                .or(peak_seen)
                .or(w.info.power_limit_w)
        };
        let (near0_w, near1_w) = (near(w.t0), near(w.t1));
        let low = |t: f64| {
            points_near(&trace.near_points, t - period - lead - w.interval_s, t)
                .iter()
                .map(|p| p.1)
                .reduce(f64::min)
        };
        let (low0_w, low1_w) = (low(w.t0), low(w.t1));
        // Each counter read may be stale by up to one period: the start read over-counts, the
        // end read under-counts, by at most period × the power near that end; plus one step.
        let counter_j = near0_w
            .zip(near1_w)
            .map(|(a, b)| period * a.max(b) + w.info.counter_step_j);
        let averaging_j = if trace.averaged {
            let range =
                |t: f64| power_range_near(points, t - 2.0 * POWER_AVERAGE_S, t + POWER_AVERAGE_S);
            POWER_AVERAGE_S / 2.0 * (range(w.t0) + range(w.t1))
        } else {
            0.0
        };
        let sensor = &w.sensor;
        // every change seen around the window, for the terms that scale with changes
        let (seen, inside, sampling_j) = match folded {
            Some(f) => (f.seen, f.inside_steps.total(), f.sampling_j),
            None => (
                one_way_steps(&trace.near_points, w.t0 - sensor.period_s, w.t1),
                one_way_steps(points, w.t0, w.t1).total(),
                integration_bound(points, w.t0, w.t1),
            ),
        };
        let part_time = seen.part_time(sensor.unobserved_s());
        Self {
            near0_w,
            near1_w,
            low0_w,
            low1_w,
            steps: seen,
            counter_j: counter_j.map(|c| c.max(MIN_COUNTER_STEP_J)),
            sampling_j,
            averaging_j,
            part_time,
            part_time_j: part_time.0.max(part_time.1),
            staleness_j: sensor.refresh_s * inside,
            held_j: held_bound(w, trace),
            resolution_j: POWER_RESOLUTION_W * w.duration_s() + MIN_COUNTER_STEP_J,
        }
    }

    /// The counter's whole bound: its reads' staleness at both ends, part-time sensing and
    /// one counter step.
    ///
    /// The read at the start over-counts by the energy since the counter's last update, the
    /// read at the end under-counts by the same at its end: each the elapsed part of an
    /// update period (uniform over the period for windows not locked to the sensor) times a
    /// power between the lowest and the highest seen near that end. Hidden falls over-count,
    /// hidden rises under-count. The worst case adds every term at its maximum on one side;
    /// the errors are independent and partly cancel, so lem takes, per side, the 99 %
    /// quantile of their sum (mean plus 2.58 standard deviations, which for sums of uniform
    /// terms lies above the exact quantile) where it is below the worst case.
    fn counter_total(&self, w: &DeviceWindow<'_>) -> Option<f64> {
        let (p0, p1) = self.near0_w.zip(self.near1_w)?;
        let (l0, l1) = (self.low0_w.unwrap_or(0.0), self.low1_w.unwrap_or(0.0));
        let t = w.counter_update.0;
        let u = w.sensor.unobserved_s();
        let (rises, falls) = (self.steps.rises * u, self.steps.falls * u);
        let pt_var = self.steps.squares * u * u / 12.0;
        // one side: an over-count of up to `a` (mean a/2) against an under-count of `b`
        let side = |a: f64, b: f64, worst: f64| {
            let mean = (a - b) / 2.0 + (falls - rises) / 2.0;
            let sd = ((a * a + b * b) / 12.0 + pt_var).sqrt();
            worst.min((mean.abs() + Z99 * sd).max(0.0))
        };
        let high = side(t * p0, t * l1, t * p0 + falls);
        let low = side(t * l0, t * p1, t * p1 + rises);
        Some((high.max(low) + w.info.counter_step_j).max(MIN_COUNTER_STEP_J))
    }

    /// The integration bound's total; `None` when a held reading admits no bound.
    fn integration_j(&self) -> Option<f64> {
        let held = self.held_j?;
        Some(
            self.sampling_j
                + self.averaging_j
                + self.part_time_j
                + self.staleness_j
                + held
                + self.resolution_j,
        )
    }
}

/// The rises and the falls between consecutive points in `[from, to]` (and the one before
/// it), W. A rise hidden in an unobserved part of a sensor period can only make the sensed
/// energy too low, a fall only too high (by at most |ΔP| × the unobserved time each), so
/// their errors have opposite signs.
fn one_way_steps(points: &[(f64, f64)], from: f64, to: f64) -> Steps {
    let mut s = Steps::default();
    for p in points_near(points, from, to).windows(2) {
        s.add(p[0], p[1]);
    }
    s
}

/// The normal quantile for 99 % two-sided coverage.
const Z99: f64 = 2.576;

impl Steps {
    /// Every change, either way, W.
    fn total(self) -> f64 {
        self.rises + self.falls
    }

    /// The bound on part-time sensing's error, J, for `unobserved` seconds of each period:
    /// (too low, too high). Each change's error has the sign of its direction and, with the
    /// change's moment uniform within the sensor period (work not locked to the sensor's
    /// clock; lem's random start delay makes it so for benchmarks), is uniform between 0
    /// and |ΔP| × unobserved. The worst case adds every change at its maximum; the sum of
    /// many such errors cancels, so lem takes the 99 % quantile of the sum (its mean plus
    /// 2.58 standard deviations) where that is smaller, on the side the mean leans to.
    fn part_time(self, unobserved: f64) -> (f64, f64) {
        let (low_worst, high_worst) = (self.rises * unobserved, self.falls * unobserved);
        let mean = (high_worst - low_worst) / 2.0;
        let spread = Z99 * (self.squares / 12.0).sqrt() * unobserved;
        (
            low_worst.min((spread - mean).max(0.0)),
            high_worst.min((spread + mean).max(0.0)),
        )
    }
}

/// The bound for a window whose integration rests on held readings: no reading refreshed
/// inside it (it is no longer than a refresh and every reading in it is the same), so the
/// power may have changed unseen for the whole window. The change is bounded by how much the
/// power varies nearby, how far the device's limits (power cap, idle baseline) allow, or,
/// knowing neither, by the reading itself (it could have fallen to zero or doubled). `Some(0)`
/// when the window has fresh readings; `None` when nothing bounds it.
fn held_bound(w: &DeviceWindow<'_>, trace: &PowerTrace<'_>) -> Option<f64> {
    let sensor = &w.sensor;
    let d = w.duration_s();
    let refresh = sensor.refresh_s.max(sensor.period_s);
    let inside = points_near(&trace.points, w.t0, w.t1);
    let held = inside.first().map(|p| p.1);
    let all_same = inside.iter().all(|p| Some(p.1) == held);
    if refresh <= 0.0 || d > refresh || !all_same {
        return Some(0.0);
    }
    let Some(p) = held else {
        return Some(0.0);
    };
    let lookback = 2.0 + refresh;
    let range = power_range_near(&trace.near_points, w.t0 - lookback, w.t1);
    let up = w.info.power_limit_w.map(|l| (l - p).max(0.0));
    let down = w.baseline_w.map(|b| (p - b).max(0.0));
    let change = match (up, down) {
        (None, None) => range.max(p),
        (u, dn) => range.max(u.unwrap_or(0.0)).max(dn.unwrap_or(0.0)),
    };
    (change > 0.0).then_some(change * d)
}

/// The bounds reported for one window.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WindowBound {
    pub uncertainty_j: Option<f64>,
    pub method: Option<UncertaintyMethod>,
    pub inputs: UncertaintyInputs,
    /// The bound on the adjusted energy: the raw bound plus the baseline's own uncertainty
    /// over the window.
    pub adjusted_j: Option<f64>,
}

/// The bound that goes with the energy `method` chose.
pub(crate) fn window_bound(
    w: &DeviceWindow<'_>,
    trace: &PowerTrace<'_>,
    bounds: &Bounds,
    method: Option<EnergyMethod>,
) -> WindowBound {
    let mut inputs = UncertaintyInputs::default();
    let (uncertainty_j, um) = match method {
        Some(EnergyMethod::EnergyCounter) => {
            inputs.counter_update_s = Some(w.counter_update.0);
            inputs.counter_update_source = w.counter_update.1.clone();
            inputs.power_near_start_w = bounds.near0_w;
            inputs.power_near_end_w = bounds.near1_w;
            inputs.counter_step_j = Some(w.info.counter_step_j);
            (
                bounds.counter_j,
                bounds
                    .counter_j
                    .map(|_| UncertaintyMethod::CounterStaleness),
            )
        }
        Some(_) => {
            inputs.interval_s = Some(w.interval_s);
            inputs.sampling_j = Some(bounds.sampling_j);
            inputs.averaging_j = trace.averaged.then_some(bounds.averaging_j);
            inputs.staleness_j = Some(bounds.staleness_j);
            inputs.held_j = bounds.held_j;
            inputs.resolution_j = Some(bounds.resolution_j);
            let total = bounds.integration_j();
            (total, total.map(|_| UncertaintyMethod::Integration))
        }
        None => (None, None),
    };
    if method.is_some() {
        let sensor = &w.sensor;
        inputs.sensor_period_s = Some(sensor.period_s);
        inputs.sensing_fraction = Some(sensor.sensing_fraction);
        inputs.sensor_source = Some(sensor.source.clone());
        inputs.part_time_j = Some(bounds.part_time_j);
    }
    // the counter's reported total is its two sides' larger one (`counter_total`)
    let uncertainty_j = uncertainty_j.and(bound_j(w, bounds, method));
    inputs.baseline_uncertainty_w = w.baseline_uncertainty_w;
    let adjusted_j = match (uncertainty_j, w.baseline_w) {
        (Some(u), Some(_)) => w.baseline_uncertainty_w.map(|b| u + b * w.duration_s()),
        _ => None,
    };
    WindowBound {
        uncertainty_j,
        method: um,
        inputs,
        adjusted_j,
    }
}

/// The bound on the raw energy that goes with the energy `method` chose (what
/// [`window_bound`] reports, without its inputs).
pub(crate) fn bound_j(
    w: &DeviceWindow<'_>,
    bounds: &Bounds,
    method: Option<EnergyMethod>,
) -> Option<f64> {
    match method {
        // The counter's read at the start can only over-count (by up to a period of the
        // power near it), the read at the end only under-count; hidden falls over-count,
        // hidden rises under-count. The worst case is the larger side.
        Some(EnergyMethod::EnergyCounter) => bounds.counter_total(w),
        Some(_) => bounds.integration_j(),
        None => None,
    }
}

/// The time-sorted points inside `[from, to]`, with the nearest point on each side.
fn points_near(points: &[(f64, f64)], from: f64, to: f64) -> &[(f64, f64)] {
    let lo = points.partition_point(|p| p.0 < from).saturating_sub(1);
    let hi = (points.partition_point(|p| p.0 <= to) + 1).min(points.len());
    points.get(lo..hi).unwrap_or(&[])
}

/// The highest power among points near `[from, to]`.
fn max_power_near(points: &[(f64, f64)], from: f64, to: f64) -> Option<f64> {
    points_near(points, from, to)
        .iter()
        .map(|p| p.1)
        .reduce(f64::max)
}

/// The spread (max − min) of power among points near `[from, to]`.
fn power_range_near(points: &[(f64, f64)], from: f64, to: f64) -> f64 {
    let near = points_near(points, from, to);
    let max = near.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    let min = near.iter().map(|p| p.1).fold(f64::MAX, f64::min);
    (max - min).max(0.0)
}

/// Bound on the error of [`integrate`](crate::results::stats::integrate) over `[t0, t1]`
/// for a piecewise-constant trace: a step between two samples is unseen for up to their gap
/// (half of it on average, which the trapezoid recovers: |Δp| × gap / 2 for a whole gap,
/// |Δp| × the part for a gap the window cuts); a held stretch before the first or after the
/// last sample may hide any change the window's samples span.
pub fn integration_bound(points: &[(f64, f64)], t0: f64, t1: f64) -> f64 {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return 0.0;
    };
    let mut bound = 0.0;
    for (a, b, lo, hi) in crate::results::stats::overlapping_gaps(points, t0, t1) {
        let dp = (b.1 - a.1).abs();
        let whole = lo == a.0 && hi == b.0;
        bound += if whole {
            dp * (hi - lo) / 2.0
        } else {
            dp * (hi - lo)
        };
    }
    let range = power_range_near(points, f64::MIN, f64::MAX);
    if t0 < first.0 {
        bound += range * (first.0.min(t1) - t0);
    }
    if t1 > last.0 {
        bound += range * (t1 - last.0.max(t0));
    }
    bound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_near_keep_one_neighbour_on_each_side() {
        let pts = [(0.0, 1.0), (1.0, 5.0), (2.0, 3.0), (3.0, 9.0)];
        assert_eq!(points_near(&pts, 1.5, 1.8), &pts[1..3]);
        assert_eq!(max_power_near(&pts, 1.5, 1.8), Some(5.0));
        assert!((power_range_near(&pts, 0.5, 2.5) - 8.0).abs() < 1e-12);
        assert_eq!(max_power_near(&[], 0.0, 1.0), None);
    }

    #[test]
    fn the_integration_bound_is_half_a_step_per_whole_gap_and_the_range_when_held() {
        // one 100 W step between samples 1 s apart: half of it unseen on average
        let pts = [(0.0, 100.0), (1.0, 200.0)];
        assert!((integration_bound(&pts, 0.0, 1.0) - 50.0).abs() < 1e-9);
        // a window cutting the gap: the whole step over the part
        assert!((integration_bound(&pts, 0.5, 1.0) - 50.0).abs() < 1e-9);
        // held for 1 s past the last sample: the range seen (100 W) over that second
        assert!((integration_bound(&pts, 0.0, 2.0) - 150.0).abs() < 1e-9);
        assert_eq!(integration_bound(&[], 0.0, 1.0), 0.0);
    }
}
