//! Energy over one window: the power trace around it, the counter's delta or the integrated
//! trace, and the cross-check between the two.

use super::input::{DeviceWindow, Notes};
use super::trace::PowerTrace;
use super::uncertainty::Bounds;
use crate::results::report::EnergyMethod;

/// A window counts as below the counter's resolution when shorter than this many updates.
pub const MIN_COUNTER_UPDATES: f64 = 3.0;
/// A counter and integrated samples that differ by more than this fraction over a window of
/// at least [`CROSS_CHECK_MIN_S`] mean one of them is wrong; lem trusts the samples and says so.
pub const CROSS_CHECK_TOLERANCE: f64 = 0.10;
/// Shortest window whose counter is cross-checked against instantaneous power samples.
pub const CROSS_CHECK_MIN_S: f64 = 2.0;
/// Shortest window cross-checked when the samples are 1-second averages (which lag steps).
pub const CROSS_CHECK_MIN_AVERAGED_S: f64 = 10.0;

/// The raw energy of one window and how it was obtained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RawEnergy {
    pub raw_j: Option<f64>,
    pub method: Option<EnergyMethod>,
    /// The window is below the counter's resolution.
    pub below_resolution: bool,
    /// For a device lost during the window: the energy measured up to the loss and its
    /// bound (partial: the rest of the window is unknown).
    pub until_lost: Option<(f64, f64)>,
}

/// The raw energy: the counter's delta where it can be trusted, else the integrated trace;
/// nothing for a lost device. Every fallback says why in `warnings`.
pub(crate) fn raw_energy(
    w: &DeviceWindow<'_>,
    trace: &PowerTrace<'_>,
    bounds: &Bounds,
    dev: &str,
    warnings: &mut Notes<'_>,
) -> RawEnergy {
    let integration = RawEnergy {
        raw_j: trace.integrated,
        method: trace.integrated.map(|_| EnergyMethod::PowerIntegration),
        below_resolution: false,
        until_lost: None,
    };
    let mut until_lost = None;
    let (raw, method, below) = if let Some((at, why)) = &w.lost {
        let when = if *at <= w.t0 {
            "before the window started".to_string()
        } else {
            format!("{:.3} s into the window", at - w.t0)
        };
        until_lost = until(trace, w.t0, *at);
        let partial = match until_lost {
            Some((j, u)) => {
                format!("; measured up to then: {j:.3} ± {u:.3} J (energy_until_lost_j, partial)")
            }
            None => String::new(),
        };
        warnings.push(|| format!(
            "{dev}: stopped answering {when} ({why}); its energy for this window is unknown (lem does not extrapolate past the last reading){partial}"
        ));
        (None, None, false)
    } else {
        let r = from_counter(w, trace, bounds, dev, warnings).unwrap_or(integration);
        (r.raw_j, r.method, r.below_resolution)
    };
    if raw.is_none() && w.lost.is_none() {
        warnings.push(|| format!(
            "{dev}: energy could not be measured (no energy counter and no power samples in the window)"
        ));
    }
    if method == Some(EnergyMethod::PowerIntegration) && trace.averaged {
        warnings.push(|| format!(
            "{dev}: integrated power readings that the driver averages over 1 s; short windows are smoothed"
        ));
    }
    RawEnergy {
        raw_j: raw,
        method,
        below_resolution: below,
        until_lost,
    }
}

/// The energy integrated from the window's start to the moment the device was lost, with its
/// integration bound; `None` when it was lost before the window or no reading came before.
fn until(trace: &PowerTrace<'_>, t0: f64, lost_at: f64) -> Option<(f64, f64)> {
    if lost_at <= t0 {
        return None;
    }
    if let Some(f) = &trace.folded {
        let (j, bound) = f.until_lost?;
        let u = bound
            + super::uncertainty::POWER_RESOLUTION_W * (lost_at - t0)
            + super::uncertainty::MIN_COUNTER_STEP_J;
        return Some((j?, u));
    }
    let before: Vec<(f64, f64)> = trace
        .points
        .iter()
        .copied()
        .filter(|p| p.0 <= lost_at)
        .collect();
    let j = crate::results::stats::integrate(&before, t0, lost_at)?;
    let u = super::uncertainty::integration_bound(&before, t0, lost_at)
        + super::uncertainty::POWER_RESOLUTION_W * (lost_at - t0)
        + super::uncertainty::MIN_COUNTER_STEP_J;
    Some((j, u))
}

/// The counter's verdict: `None` to integrate instead (no counter, or a counter read that
/// failed, went backwards, stood still or disagrees with the trace).
fn from_counter(
    w: &DeviceWindow<'_>,
    trace: &PowerTrace<'_>,
    bounds: &Bounds,
    dev: &str,
    warnings: &mut Notes<'_>,
) -> Option<RawEnergy> {
    let duration = w.duration_s();
    let period = w.counter_update.0;
    let integrated = |below| RawEnergy {
        raw_j: trace.integrated,
        method: trace.integrated.map(|_| EnergyMethod::PowerIntegration),
        below_resolution: below,
        until_lost: None,
    };
    let counter = match (w.e0, w.e1) {
        (Some(a), Some(b)) => b - a,
        _ if w.counter_failed.0 || w.counter_failed.1 => {
            let which = match w.counter_failed {
                (true, true) => "both ends",
                (true, false) => "the window's start",
                _ => "the window's end",
            };
            warnings.push(|| format!(
                "{dev}: the energy-counter read failed at {which}; used integrated power samples for this window"
            ));
            return None;
        }
        _ => return None,
    };
    if counter < 0.0 {
        warnings.push(|| format!(
            "{dev}: energy counter went backwards by {:.3} J (reset or driver reload); used integrated power samples for this window",
            -counter
        ));
        return None;
    }
    // Below the counter's resolution (fewer than a few updates of the counter as known:
    // probed, or the architecture's default) one estimator serves every window, whatever
    // the counter did: choosing integration only when the counter stood still, and keeping
    // it when it moved once, would bias short windows upward by up to 2x (the expected
    // value is P*dt*(2 - dt/T)). Which one depends only on the sampling, fixed before any
    // value is seen: integration where power samples come at least twice per counter
    // update (they then see more than the counter), else the counter's difference, which
    // is unbiased over the window's phase even when it reads 0 (its bound says how coarse).
    let below = period > 0.0 && duration < MIN_COUNTER_UPDATES * period;
    let dense = w.interval_s > 0.0 && 2.0 * w.interval_s <= period;
    if below && dense && trace.integrated.is_some() {
        warnings.push(|| format!(
            "{dev}: below_resolution: the window spans fewer than {MIN_COUNTER_UPDATES} energy-counter updates (~{:.0} ms each); used integrated power samples, as for every window this short",
            period * 1e3
        ));
        return Some(integrated(true));
    }
    if counter == 0.0 && duration > 0.0 && !below {
        warnings.push(|| format!(
            "{dev}: the energy counter did not move during a window of {:.1} s; used integrated power instead of reporting zero",
            duration
        ));
        return Some(integrated(false));
    }
    if let Some(i) = disagreement(w, trace, bounds, counter) {
        warnings.push(|| format!(
            "{dev}: the energy counter ({counter:.1} J) disagrees with the integrated power samples ({i:.1} J) by {:.0} % over {duration:.1} s (a frozen or reset counter?); used the integrated samples",
            (counter - i).abs() / i * 100.0
        ));
        return Some(integrated(false));
    }
    if below {
        warnings.push(|| format!(
            "{dev}: below_resolution: the window spans fewer than {MIN_COUNTER_UPDATES} energy-counter updates (~{:.0} ms each) and power is sampled too sparsely to do better; the counter's difference is right only on average over many windows: measure longer windows or more iterations per window",
            period * 1e3
        ));
    }
    Some(RawEnergy {
        raw_j: Some(counter),
        method: Some(EnergyMethod::EnergyCounter),
        below_resolution: below,
        until_lost: None,
    })
}

/// The integrated energy when a long, densely sampled window's counter disagrees with it by
/// more than both the tolerance and the two models' bounds allow.
fn disagreement(
    w: &DeviceWindow<'_>,
    trace: &PowerTrace<'_>,
    bounds: &Bounds,
    counter: f64,
) -> Option<f64> {
    let duration = w.duration_s();
    let min_s = if trace.averaged {
        CROSS_CHECK_MIN_AVERAGED_S
    } else {
        CROSS_CHECK_MIN_S
    };
    let points = &trace.points;
    let (count, gap) = match &trace.folded {
        Some(f) => (f.points_len, f.largest_gap),
        None => (points.len(), largest_gap(points, w.t0, w.t1)),
    };
    let i = trace.integrated.filter(|i| {
        duration >= min_s && *i > 0.0 && count >= 5 && gap <= (0.1 * duration).max(0.5)
    })?;
    // stale and part-time readings lag and miss changes too: the samples may be off by as
    // much as their own bound says
    let allowed = (CROSS_CHECK_TOLERANCE * i).max(
        bounds.counter_j.unwrap_or(0.0)
            + bounds.sampling_j
            + bounds.averaging_j
            + bounds.staleness_j
            + bounds.part_time_j,
    );
    ((counter - i).abs() > allowed).then_some(i)
}

/// The largest gap between consecutive power points covering `[t0, t1]` (edges included).
fn largest_gap(points: &[(f64, f64)], t0: f64, t1: f64) -> f64 {
    let mut last = t0;
    let mut gap: f64 = 0.0;
    for (t, _) in points.iter().filter(|p| p.0 >= t0 && p.0 <= t1) {
        gap = gap.max(t - last);
        last = *t;
    }
    gap.max(t1 - last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_gap_counts_the_window_edges() {
        let pts = [(1.0, 5.0), (1.5, 5.0), (1.6, 5.0)];
        assert!((largest_gap(&pts, 0.0, 2.0) - 1.0).abs() < 1e-12);
        assert!((largest_gap(&pts, 1.0, 3.0) - 1.4).abs() < 1e-12);
        assert!((largest_gap(&[], 0.0, 2.0) - 2.0).abs() < 1e-12);
    }
}
