//! The bound on |raw − truth| of one window, for each way the energy can be obtained, and
//! the inputs it was computed from (reported beside it).

use super::input::DeviceWindow;
use super::trace::PowerTrace;
use crate::results::report::{EnergyMethod, UncertaintyInputs, UncertaintyMethod};

/// The averaging window of `nvmlDeviceGetPowerUsage` on Ampere and newer, s.
pub const POWER_AVERAGE_S: f64 = 1.0;

/// Both models' bounds, computed before the energy is chosen: the cross-check between
/// counter and samples only flags a disagreement larger than the two bounds allow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bounds {
    /// The highest power near the window's start and end (what a stale counter read missed).
    pub near0_w: Option<f64>,
    pub near1_w: Option<f64>,
    /// Counter staleness: each read may be stale by up to one update period.
    pub counter_j: Option<f64>,
    /// Integration of a piecewise-constant trace between samples.
    pub sampling_j: f64,
    /// 1-second averaged readings lag steps near the window's edges.
    pub averaging_j: f64,
}

impl Bounds {
    pub(crate) fn of(w: &DeviceWindow<'_>, trace: &PowerTrace<'_>) -> Self {
        let period = w.counter_update.0;
        let points = &trace.points;
        let peak_seen = points.iter().map(|p| p.1).reduce(f64::max);
        let lead = if trace.averaged { POWER_AVERAGE_S } else { 0.0 };
        let near = |t: f64| {
            max_power_near(&trace.near_points, t - period - lead - w.interval_s, t)
                .or(peak_seen)
                .or(w.info.power_limit_w)
        };
        let (near0_w, near1_w) = (near(w.t0), near(w.t1));
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
        Self {
            near0_w,
            near1_w,
            counter_j,
            sampling_j: integration_bound(points, w.t0, w.t1),
            averaging_j,
        }
    }
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
            (
                Some(bounds.sampling_j + bounds.averaging_j),
                Some(UncertaintyMethod::Integration),
            )
        }
        None => (None, None),
    };
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
