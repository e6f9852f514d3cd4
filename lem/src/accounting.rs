//! Pure accounting of one device over one window: energy (counter or integration),
//! power/memory/temperature statistics and throttle time. No I/O, no clocks: everything it
//! needs is passed in, so it is tested against exact truths.

use crate::baseline::BaselineMethod;
use crate::device::{DeviceInfo, Reading, ThrottleReasons, Violations};
use crate::report::{
    DeviceEnergy, DeviceReport, DeviceThrottle, EnergyMethod, MemoryStats, PowerStats,
    TemperatureStats, ThrottleEvent, ThrottleSource, UncertaintyMethod, UtilisationStats,
};
use crate::sampler::Sample;

/// A window counts as below the counter's resolution when shorter than this many updates.
pub const MIN_COUNTER_UPDATES: f64 = 3.0;

/// Everything known about one device over one window.
#[derive(Debug)]
pub(crate) struct DeviceWindow<'a> {
    pub info: &'a DeviceInfo,
    pub t0: f64,
    pub t1: f64,
    pub e0: Option<f64>,
    pub e1: Option<f64>,
    pub temp0: Option<f64>,
    pub violations: Option<(Violations, Violations)>,
    /// This device's samples, in time order; may start with one from before `t0`.
    pub samples: &'a [Sample],
    /// Readings taken at the window's two ends (devices without a counter).
    pub edges: Option<(Reading, Reading)>,
    pub baseline_w: Option<f64>,
    pub baseline_method: BaselineMethod,
    /// The device stopped answering at this time (clock s) and had not recovered when the
    /// window closed, with the reason.
    pub lost: Option<(f64, String)>,
    /// Which counter reads failed: (start, end).
    pub counter_failed: (bool, bool),
    /// The sampling interval, s.
    pub interval_s: f64,
    /// The counter's update period to bound staleness with, s, and where it came from.
    pub counter_update: (f64, Option<String>),
    /// The baseline's own uncertainty, W.
    pub baseline_uncertainty_w: Option<f64>,
}

/// The averaging window of `nvmlDeviceGetPowerUsage` on Ampere and newer, s.
pub const POWER_AVERAGE_S: f64 = 1.0;

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

/// Each stretch between consecutive points that overlaps `[t0, t1]`: the two points and
/// the overlap `(lo, hi)`.
fn overlapping_gaps(
    points: &[(f64, f64)],
    t0: f64,
    t1: f64,
) -> impl Iterator<Item = ((f64, f64), (f64, f64), f64, f64)> + '_ {
    points.windows(2).filter_map(move |w| {
        let (a, b) = (w[0], w[1]);
        let (lo, hi) = (a.0.max(t0), b.0.min(t1));
        (hi > lo && b.0 > a.0).then_some((a, b, lo, hi))
    })
}

/// Bound on the error of [`integrate`] over `[t0, t1]` for a piecewise-constant trace: a
/// step between two samples is unseen for up to their gap (half of it on average, which the
/// trapezoid recovers: |Δp| × gap / 2 for a whole gap, |Δp| × the part for a gap the window
/// cuts); a held stretch before the first or after the last sample may hide any change the
/// window's samples span.
pub fn integration_bound(points: &[(f64, f64)], t0: f64, t1: f64) -> f64 {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return 0.0;
    };
    let mut bound = 0.0;
    for (a, b, lo, hi) in overlapping_gaps(points, t0, t1) {
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

/// A counter and integrated samples that differ by more than this fraction over a window of
/// at least [`CROSS_CHECK_MIN_S`] mean one of them is wrong; lem trusts the samples and says so.
pub const CROSS_CHECK_TOLERANCE: f64 = 0.10;
/// Shortest window whose counter is cross-checked against instantaneous power samples.
pub const CROSS_CHECK_MIN_S: f64 = 2.0;
/// Shortest window cross-checked when the samples are 1-second averages (which lag steps).
pub const CROSS_CHECK_MIN_AVERAGED_S: f64 = 10.0;

/// Integrate the piecewise-linear power curve through `points` (time-sorted `(t_s, W)`),
/// held constant before the first and after the last point, over `[t0, t1]`. `None` without
/// points.
pub fn integrate(points: &[(f64, f64)], t0: f64, t1: f64) -> Option<f64> {
    let first = points.first()?;
    let last = points.last()?;
    if t1 <= t0 {
        return Some(0.0);
    }
    let mut total = 0.0;
    // held before the first point
    if t0 < first.0 {
        total += first.1 * (first.0.min(t1) - t0);
    }
    for (a, b, lo, hi) in overlapping_gaps(points, t0, t1) {
        let at = |t: f64| a.1 + (b.1 - a.1) * (t - a.0) / (b.0 - a.0);
        total += (at(lo) + at(hi)) / 2.0 * (hi - lo);
    }
    // held after the last point
    if t1 > last.0 {
        total += last.1 * (t1 - last.0.max(t0));
    }
    Some(total)
}

/// Throttle time from sampled reasons, each held until the next sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SampledThrottle {
    /// Time slowed down (thermal, HW slowdown, power brake), s.
    pub slowdown: f64,
    /// Time thermally throttled, s.
    pub thermal: f64,
    /// Time at the power cap or braked, s.
    pub power: f64,
    /// Time braked while not at the power cap (what the power counter misses), s.
    pub brake_without_cap: f64,
    /// Every throttling reason seen.
    pub seen: ThrottleReasons,
    /// Intervals with any throttling reason.
    pub events: Vec<ThrottleEvent>,
}

/// Throttle time and events from sampled reasons, each held until the next sample.
pub(crate) fn throttle_from_samples(
    device: u32,
    samples: &[(f64, ThrottleReasons)],
    t0: f64,
    t1: f64,
) -> SampledThrottle {
    let mut out = SampledThrottle::default();
    for (i, (t, r)) in samples.iter().enumerate() {
        let start = t.max(t0);
        let end = samples.get(i + 1).map_or(t1, |n| n.0).min(t1);
        if end <= start {
            continue;
        }
        let r = r.throttling_only();
        if r.is_empty() {
            continue;
        }
        let dt = end - start;
        if r.is_slowdown() {
            out.slowdown += dt;
        }
        if r.is_thermal() {
            out.thermal += dt;
        }
        if r.is_power() {
            out.power += dt;
        }
        if r.contains(ThrottleReasons::HW_POWER_BRAKE) && !r.contains(ThrottleReasons::SW_POWER_CAP)
        {
            out.brake_without_cap += dt;
        }
        out.seen = out.seen.union(r);
        let (s_rel, e_rel) = (start - t0, end - t0);
        match out.events.last_mut() {
            Some(ev) if (ev.end_s - s_rel).abs() < 1e-12 => {
                ev.end_s = e_rel;
                ev.reasons = ev.reasons.union(r);
            }
            _ => out.events.push(ThrottleEvent {
                device,
                start_s: s_rel,
                end_s: e_rel,
                reasons: r,
            }),
        }
    }
    out
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

fn max_opt(it: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    it.flatten().filter(|v| v.is_finite()).reduce(f64::max)
}

/// Account one device over one window: its report, its throttle events and warnings.
pub(crate) fn account(w: &DeviceWindow<'_>) -> (DeviceReport, Vec<ThrottleEvent>, Vec<String>) {
    let info = w.info;
    let dev = format!("device {} ({})", info.index, info.name);
    let duration = (w.t1 - w.t0).max(0.0);
    let mut warnings = Vec::new();
    let inside: Vec<&Sample> = w.samples.iter().filter(|s| s.t_s >= w.t0).collect();

    let mut points: Vec<(f64, f64)> = Vec::with_capacity(w.samples.len() + 2);
    if let Some((r0, _)) = &w.edges {
        if let Some(p) = r0.power_w {
            points.push((w.t0, p));
        }
    }
    points.extend(
        w.samples
            .iter()
            .filter(|s| s.t_s > w.t0 || w.edges.is_none())
            .filter_map(|s| s.reading.power_w.map(|p| (s.t_s, p))),
    );
    if let Some((_, r1)) = &w.edges {
        if let Some(p) = r1.power_w {
            points.push((w.t1, p));
        }
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let integrated = integrate(&points, w.t0, w.t1);
    // Every power reading known around the window (samples before it included), for the
    // counter's staleness bound.
    let mut near_points: Vec<(f64, f64)> = w
        .samples
        .iter()
        .filter_map(|s| s.reading.power_w.map(|p| (s.t_s, p)))
        .collect();
    if let Some((r0, r1)) = &w.edges {
        near_points.extend(r0.power_w.map(|p| (w.t0, p)));
        near_points.extend(r1.power_w.map(|p| (w.t1, p)));
    }
    near_points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let averaged_readings = inside
        .iter()
        .any(|s| s.reading.power_source == Some(crate::device::PowerSource::Averaged));

    // Both models' bounds, computed up front: the cross-check between counter and samples
    // only flags a disagreement larger than the two bounds allow.
    let period = w.counter_update.0;
    let peak_seen = points.iter().map(|p| p.1).reduce(f64::max);
    let lead = if averaged_readings {
        POWER_AVERAGE_S
    } else {
        0.0
    };
    let near = |t: f64| {
        max_power_near(&near_points, t - period - lead - w.interval_s, t)
            .or(peak_seen)
            .or(info.power_limit_w)
    };
    let (near0, near1) = (near(w.t0), near(w.t1));
    // Each counter read may be stale by up to one period: the start read over-counts, the end
    // read under-counts, by at most period × the power near that end; plus one step.
    let counter_bound = near0
        .zip(near1)
        .map(|(a, b)| period * a.max(b) + info.counter_step_j);
    let sampling_bound = integration_bound(&points, w.t0, w.t1);
    let averaging_bound = if averaged_readings {
        let range =
            |t: f64| power_range_near(&points, t - 2.0 * POWER_AVERAGE_S, t + POWER_AVERAGE_S);
        POWER_AVERAGE_S / 2.0 * (range(w.t0) + range(w.t1))
    } else {
        0.0
    };

    let counter = match (w.e0, w.e1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    // Below resolution: shorter than a few updates of the counter as known (probed, or the
    // architecture's default), not a fixed constant.
    let limit_s = MIN_COUNTER_UPDATES * period;
    let mut below = false;
    let integration = || {
        (
            integrated,
            integrated.map(|_| EnergyMethod::PowerIntegration),
        )
    };
    let (raw, method) = if let Some((at, why)) = &w.lost {
        let when = if *at <= w.t0 {
            "before the window started".to_string()
        } else {
            format!("{:.3} s into the window", at - w.t0)
        };
        warnings.push(format!(
            "{dev}: stopped answering {when} ({why}); its energy for this window is unknown (lem does not extrapolate past the last reading)"
        ));
        (None, None)
    } else {
        match counter {
            None if w.counter_failed.0 || w.counter_failed.1 => {
                let which = match w.counter_failed {
                    (true, true) => "both ends",
                    (true, false) => "the window's start",
                    _ => "the window's end",
                };
                warnings.push(format!(
                    "{dev}: the energy-counter read failed at {which}; used integrated power samples for this window"
                ));
                integration()
            }
            Some(d) if d < 0.0 => {
                warnings.push(format!(
                    "{dev}: energy counter went backwards by {:.3} J (reset or driver reload); used integrated power samples for this window",
                    -d
                ));
                integration()
            }
            Some(d) if d == 0.0 && duration > 0.0 => {
                below = true;
                let period = if period > 0.0 {
                    format!(" (it updates every ~{:.0} ms)", period * 1e3)
                } else {
                    String::new()
                };
                warnings.push(format!(
                    "{dev}: below_resolution: the energy counter did not move during the {:.1} ms window{period}; used integrated power instead of reporting zero",
                    duration * 1e3
                ));
                integration()
            }
            Some(d) => {
                let min_s = if averaged_readings {
                    CROSS_CHECK_MIN_AVERAGED_S
                } else {
                    CROSS_CHECK_MIN_S
                };
                let checkable = integrated.filter(|i| {
                    duration >= min_s
                        && *i > 0.0
                        && points.len() >= 5
                        && largest_gap(&points, w.t0, w.t1) <= (0.1 * duration).max(0.5)
                });
                match checkable {
                    Some(i)
                        if (d - i).abs()
                            > (CROSS_CHECK_TOLERANCE * i).max(
                                counter_bound.unwrap_or(0.0) + sampling_bound + averaging_bound,
                            ) =>
                    {
                        warnings.push(format!(
                            "{dev}: the energy counter ({d:.1} J) disagrees with the integrated power samples ({i:.1} J) by {:.0} % over {duration:.1} s (a frozen or reset counter?); used the integrated samples",
                            (d - i).abs() / i * 100.0
                        ));
                        (Some(i), Some(EnergyMethod::PowerIntegration))
                    }
                    _ => {
                        if duration < limit_s {
                            below = true;
                            warnings.push(format!(
                                "{dev}: below_resolution: the {:.1} ms window spans fewer than {MIN_COUNTER_UPDATES} energy-counter updates (~{:.0} ms each); the energy is coarse: measure longer windows or more iterations per window",
                                duration * 1e3,
                                period * 1e3
                            ));
                        }
                        (Some(d), Some(EnergyMethod::EnergyCounter))
                    }
                }
            }
            None => integration(),
        }
    };
    if raw.is_none() && w.lost.is_none() {
        warnings.push(format!(
            "{dev}: energy could not be measured (no energy counter and no power samples in the window)"
        ));
    }
    if method == Some(EnergyMethod::PowerIntegration) && averaged_readings {
        warnings.push(format!(
            "{dev}: integrated power readings that the driver averages over 1 s; short windows are smoothed"
        ));
    }
    let instant_readings = inside
        .iter()
        .filter(|s| s.reading.power_source == Some(crate::device::PowerSource::Instant))
        .count() as u64;
    let usage_readings = inside
        .iter()
        .filter(|s| {
            matches!(
                s.reading.power_source,
                Some(crate::device::PowerSource::Averaged | crate::device::PowerSource::Usage)
            )
        })
        .count() as u64;
    if info.power_source == crate::device::PowerSource::Instant && usage_readings > 0 {
        warnings.push(format!(
            "{dev}: {usage_readings} of {} power readings fell back from the instant power field to nvmlDeviceGetPowerUsage",
            usage_readings + instant_readings
        ));
    }
    // The bound on |raw − truth| and what it was computed from.
    let mut inputs = crate::report::UncertaintyInputs::default();
    let (uncertainty, uncertainty_method) = match method {
        Some(EnergyMethod::EnergyCounter) => {
            inputs.counter_update_s = Some(period);
            inputs.counter_update_source = w.counter_update.1.clone();
            inputs.power_near_start_w = near0;
            inputs.power_near_end_w = near1;
            inputs.counter_step_j = Some(info.counter_step_j);
            (
                counter_bound,
                counter_bound.map(|_| UncertaintyMethod::CounterStaleness),
            )
        }
        Some(_) => {
            inputs.interval_s = Some(w.interval_s);
            inputs.sampling_j = Some(sampling_bound);
            inputs.averaging_j = averaged_readings.then_some(averaging_bound);
            (
                Some(sampling_bound + averaging_bound),
                Some(UncertaintyMethod::Integration),
            )
        }
        None => (None, None),
    };
    inputs.baseline_uncertainty_w = w.baseline_uncertainty_w;
    let adjusted_uncertainty = match (uncertainty, w.baseline_w) {
        (Some(u), Some(_)) => w.baseline_uncertainty_w.map(|b| u + b * duration),
        _ => None,
    };

    let adjusted = match (raw, w.baseline_w) {
        (Some(r), Some(b)) => {
            let a = r - b * duration;
            if a < 0.0 {
                warnings.push(format!(
                    "{dev}: adjusted energy floored at 0 J: the window drew less ({r:.3} J) than the idle baseline predicts ({:.3} J)",
                    b * duration
                ));
            }
            Some(a.max(0.0))
        }
        _ => None,
    };
    if info.mig {
        warnings.push(format!(
            "{dev}: MIG mode: NVML reports the whole GPU's energy, not this slice's"
        ));
    }

    let edge_iter = w.edges.iter().flat_map(|(a, b)| [*a, *b]);
    let readings: Vec<Reading> = inside.iter().map(|s| s.reading).chain(edge_iter).collect();
    let held = w
        .samples
        .first()
        .filter(|s| s.t_s < w.t0)
        .map(|s| s.reading);
    let peak_power =
        max_opt(readings.iter().map(|r| r.power_w)).or_else(|| held.and_then(|r| r.power_w));
    let peak_mem = max_opt(readings.iter().map(|r| r.memory_used_mb))
        .or_else(|| held.and_then(|r| r.memory_used_mb));
    let max_temp = max_opt(
        readings
            .iter()
            .map(|r| r.temperature_c)
            .chain(std::iter::once(w.temp0)),
    );
    let utils: Vec<f64> = inside
        .iter()
        .filter_map(|s| s.reading.utilisation_pct)
        .collect();
    let mean_util = (!utils.is_empty()).then(|| utils.iter().sum::<f64>() / utils.len() as f64);

    let reasons: Vec<(f64, ThrottleReasons)> = w
        .samples
        .iter()
        .filter_map(|s| s.reading.throttle.map(|r| (s.t_s, r)))
        .collect();
    let sampled = throttle_from_samples(info.index, &reasons, w.t0, w.t1);
    let (mut slowdown, mut thermal, mut power) = (sampled.slowdown, sampled.thermal, sampled.power);
    let mut source = ThrottleSource::Samples;
    if let Some((v0, v1)) = w.violations {
        let delta = |a: Option<u64>, b: Option<u64>| {
            a.zip(b)
                .map(|(a, b)| (b.saturating_sub(a) as f64 / 1e9).min(duration))
        };
        // Each policy's counter refines only the reasons it counts.
        if let Some(t) = delta(v0.thermal_ns, v1.thermal_ns) {
            thermal = t;
            slowdown = slowdown.max(t);
            source = ThrottleSource::ViolationCounters;
        }
        if let Some(cap) = delta(v0.power_ns, v1.power_ns) {
            power = (cap + sampled.brake_without_cap).min(duration);
            source = ThrottleSource::ViolationCounters;
        }
    }
    let detected = slowdown > 0.0 || sampled.seen.is_slowdown();
    if detected {
        warnings.push(format!(
            "{dev}: throttled for {slowdown:.2} s of {duration:.2} s (thermal {thermal:.2} s, power {power:.2} s; {}): energy and speed reflect a throttled device",
            sampled.seen
        ));
    }

    let report = DeviceReport {
        index: info.index,
        uuid: info.uuid.clone(),
        name: info.name.clone(),
        kind: info.kind,
        simulated: info.simulated,
        mig: info.mig,
        energy: DeviceEnergy {
            raw_j: raw,
            adjusted_j: adjusted,
            baseline_power_w: w.baseline_w,
            baseline_method: w.baseline_method,
            method,
            below_resolution: below,
            uncertainty_j: uncertainty,
            adjusted_uncertainty_j: adjusted_uncertainty,
            uncertainty_method,
            uncertainty: inputs,
        },
        power: PowerStats {
            mean_w: raw.filter(|_| duration > 0.0).map(|r| r / duration),
            peak_w: peak_power,
            source: info.power_source,
            instant_readings,
            usage_readings,
        },
        temperature: TemperatureStats {
            start_c: w.temp0,
            max_c: max_temp,
        },
        memory: MemoryStats {
            peak_used_mb: peak_mem,
            total_mb: info.memory_total_mb,
        },
        utilisation: UtilisationStats {
            mean_pct: mean_util,
        },
        throttle: DeviceThrottle {
            detected,
            throttle_duration_s: slowdown,
            thermal_duration_s: thermal,
            power_duration_s: power,
            duration_source: source,
            reasons: sampled.seen,
        },
    };
    (report, sampled.events, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrates_constant_and_linear_exactly() {
        let pts = [(0.0, 100.0), (1.0, 100.0), (2.0, 100.0)];
        assert!((integrate(&pts, 0.0, 2.0).unwrap() - 200.0).abs() < 1e-9);
        let ramp = [(0.0, 0.0), (2.0, 200.0)];
        assert!((integrate(&ramp, 0.0, 2.0).unwrap() - 200.0).abs() < 1e-9);
        assert!((integrate(&ramp, 1.0, 2.0).unwrap() - 150.0).abs() < 1e-9);
        // held beyond the ends
        assert!((integrate(&[(1.0, 50.0)], 0.0, 3.0).unwrap() - 150.0).abs() < 1e-9);
        assert!(integrate(&[], 0.0, 1.0).is_none());
        assert_eq!(integrate(&pts, 1.0, 1.0), Some(0.0));
    }

    #[test]
    fn integration_of_a_sampled_step_trace_is_within_3_percent() {
        // truth: 60 W until 1.03 s, 300 W until 2.47 s, then 280 W; window [0.5, 3.0]
        let p = |t: f64| {
            if t < 1.03 {
                60.0
            } else if t < 2.47 {
                300.0
            } else {
                280.0
            }
        };
        let truth = 60.0 * 0.53 + 300.0 * 1.44 + 280.0 * 0.53;
        let pts: Vec<(f64, f64)> = (0..40)
            .map(|i| 0.017 + 0.1 * f64::from(i))
            .map(|t| (t, p(t)))
            .collect();
        let got = integrate(&pts, 0.5, 3.0).unwrap();
        assert!((got - truth).abs() / truth < 0.03, "{got} vs {truth}");
    }

    #[test]
    fn throttle_time_is_held_until_the_next_sample_and_merged_into_events() {
        let th = ThrottleReasons::HW_THERMAL;
        let pc = ThrottleReasons::SW_POWER_CAP;
        let none = ThrottleReasons::GPU_IDLE;
        let s = [(0.9, th), (1.0, th), (1.1, pc), (1.2, none), (1.3, th)];
        let st = throttle_from_samples(0, &s, 1.0, 1.35);
        // the power cap alone is not a slowdown
        assert!((st.slowdown - 0.15).abs() < 1e-9, "{}", st.slowdown);
        assert!((st.thermal - 0.15).abs() < 1e-9);
        assert!((st.power - 0.1).abs() < 1e-9);
        assert!(st.seen.is_thermal() && st.seen.is_power());
        let ev = st.events;
        assert_eq!(ev.len(), 2);
        assert!((ev[0].start_s - 0.0).abs() < 1e-9 && (ev[0].end_s - 0.2).abs() < 1e-9);
        assert!((ev[1].start_s - 0.3).abs() < 1e-9 && (ev[1].end_s - 0.35).abs() < 1e-9);
    }

    use crate::device::{DeviceKind, PowerSource};

    fn gpu() -> DeviceInfo {
        DeviceInfo {
            index: 0,
            kind: DeviceKind::NvmlGpu,
            name: "G".into(),
            uuid: "GPU-x".into(),
            nvml_index: Some(0),
            pci_bus_id: None,
            compute_capability: None,
            memory_total_mb: None,
            power_limit_w: None,
            mig: false,
            simulated: false,
            energy_counter: true,
            counter_update_s: 0.1,
            counter_step_j: 0.001,
            power_source: PowerSource::Instant,
            architecture: None,
        }
    }

    /// Samples every 0.1 s over [0, 4] of `power(t)` with `reasons(t)`.
    fn samples(
        power: impl Fn(f64) -> f64,
        reasons: impl Fn(f64) -> ThrottleReasons,
    ) -> Vec<Sample> {
        (0..=40)
            .map(|i| {
                let t = f64::from(i) * 0.1;
                Sample {
                    t_s: t,
                    device: 0,
                    reading: Reading {
                        power_w: Some(power(t)),
                        power_source: Some(PowerSource::Instant),
                        throttle: Some(reasons(t)),
                        ..Reading::default()
                    },
                }
            })
            .collect()
    }

    fn window<'a>(
        info: &'a DeviceInfo,
        s: &'a [Sample],
        e: (Option<f64>, Option<f64>),
    ) -> DeviceWindow<'a> {
        DeviceWindow {
            info,
            t0: 0.0,
            t1: 4.0,
            e0: e.0,
            e1: e.1,
            temp0: None,
            violations: None,
            samples: s,
            edges: None,
            baseline_w: None,
            baseline_method: BaselineMethod::Disabled,
            lost: None,
            counter_failed: (e.0.is_none(), e.1.is_none()),
            interval_s: 0.1,
            counter_update: (0.1, Some("default".into())),
            baseline_uncertainty_w: None,
        }
    }

    fn none(_: f64) -> ThrottleReasons {
        ThrottleReasons::NONE
    }

    #[test]
    fn a_lost_device_reports_no_energy_rather_than_holding_its_last_reading() {
        let info = gpu();
        let s = samples(|_| 300.0, none);
        let mut w = window(&info, &s[..20], (Some(0.0), None));
        w.lost = Some((1.9, "GPU_IS_LOST".into()));
        let (r, _, warn) = account(&w);
        assert_eq!(r.energy.raw_j, None);
        assert_eq!(r.energy.method, None);
        assert!(
            warn.iter().any(|x| x.contains("1.900 s into the window")),
            "{warn:?}"
        );
    }

    #[test]
    fn a_failed_counter_read_integrates_and_says_so() {
        let info = gpu();
        let s = samples(|_| 300.0, none);
        let (r, _, warn) = account(&window(&info, &s, (Some(0.0), None)));
        assert_eq!(r.energy.method, Some(EnergyMethod::PowerIntegration));
        assert!((r.energy.raw_j.unwrap() - 1200.0).abs() < 1e-6);
        assert!(
            warn.iter()
                .any(|x| x.contains("failed at the window's end")),
            "{warn:?}"
        );
    }

    #[test]
    fn a_counter_far_from_the_samples_is_replaced_and_a_close_one_kept() {
        let info = gpu();
        let s = samples(|_| 300.0, none);
        // frozen for half the window: 600 J counted of 1200 J drawn
        let (r, _, warn) = account(&window(&info, &s, (Some(0.0), Some(600.0))));
        assert_eq!(r.energy.method, Some(EnergyMethod::PowerIntegration));
        assert!(warn.iter().any(|x| x.contains("disagrees")), "{warn:?}");
        // within 10 %: the counter stands
        let (r, _, warn) = account(&window(&info, &s, (Some(0.0), Some(1150.0))));
        assert_eq!(r.energy.method, Some(EnergyMethod::EnergyCounter));
        assert_eq!(r.energy.raw_j, Some(1150.0));
        assert!(warn.is_empty(), "{warn:?}");
    }

    #[test]
    fn counters_refine_only_their_own_reasons() {
        let info = gpu();
        // cap over [1, 2), brake over [2, 3), HW thermal over [3, 3.5)
        let reasons = |t: f64| {
            if (1.0..2.0).contains(&t) {
                ThrottleReasons::SW_POWER_CAP
            } else if (2.0..3.0).contains(&t) {
                ThrottleReasons::HW_POWER_BRAKE
            } else if (3.0..3.5).contains(&t) {
                ThrottleReasons::HW_THERMAL
            } else {
                ThrottleReasons::NONE
            }
        };
        let s = samples(|_| 300.0, reasons);
        let mut w = window(&info, &s, (Some(0.0), Some(1200.0)));
        // the power counter says 0.98 s at the cap; no thermal counter
        w.violations = Some((
            Violations {
                power_ns: Some(5_000_000_000),
                thermal_ns: None,
            },
            Violations {
                power_ns: Some(5_980_000_000),
                thermal_ns: None,
            },
        ));
        let (r, _, _) = account(&w);
        assert!(
            (r.throttle.power_duration_s - 1.98).abs() < 1e-6,
            "{:?}",
            r.throttle
        );
        assert!((r.throttle.thermal_duration_s - 0.5).abs() < 1e-6);
        assert!(
            (r.throttle.throttle_duration_s - 1.5).abs() < 1e-6,
            "brake + thermal"
        );
        assert!(r.throttle.detected);
        assert_eq!(
            r.throttle.duration_source,
            ThrottleSource::ViolationCounters
        );
    }

    #[test]
    fn the_power_cap_alone_is_not_a_throttle() {
        let info = gpu();
        let s = samples(|_| 700.0, |_| ThrottleReasons::SW_POWER_CAP);
        let (r, events, warn) = account(&window(&info, &s, (Some(0.0), Some(2800.0))));
        assert!(!r.throttle.detected);
        assert!((r.throttle.power_duration_s - 4.0).abs() < 1e-9);
        assert_eq!(r.throttle.throttle_duration_s, 0.0);
        assert_eq!(events.len(), 1);
        assert!(warn.is_empty(), "{warn:?}");
    }
}
