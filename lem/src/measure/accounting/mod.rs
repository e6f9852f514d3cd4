//! Pure accounting of one device over one window. No I/O, no clocks: everything it needs is
//! passed in a [`DeviceWindow`], so each part is tested against exact truths. One concern a
//! file:
//!
//! - [`trace`]: the power readings around the window, gathered once;
//! - [`energy`]: the counter or the integrated trace, and the cross-check between them;
//! - [`uncertainty`]: the bound on the raw energy and on the adjusted energy;
//! - [`throttle`]: throttle time from sampled reasons and violation counters;
//! - [`readings`]: power, memory, temperature and utilisation statistics.
//!
//! [`account`] runs them in order and assembles the device's report.

pub mod energy;
pub mod fold;
pub mod input;
pub mod readings;
pub mod stream;
pub mod throttle;
pub mod trace;
pub mod uncertainty;

pub(crate) use input::DeviceWindow;
use input::Notes;

use crate::device::PowerSource;
use crate::results::report::{DeviceEnergy, DeviceReport, ThrottleEvent};

pub use uncertainty::POWER_AVERAGE_S;

/// Account one device over one window: its report, its throttle events and warnings (in a
/// fixed order: energy, power source, baseline, MIG, throttling).
pub(crate) fn account(w: &DeviceWindow<'_>) -> (DeviceReport, Vec<ThrottleEvent>, Vec<String>) {
    account_trace(w, &trace::PowerTrace::of(w))
}

/// [`account`] for a window whose middle was folded as it was sampled: `w.samples` holds
/// the samples kept raw at its ends, `folded` the whole window's sums (the same numbers).
pub(crate) fn account_folded(
    w: &DeviceWindow<'_>,
    folded: stream::Folded,
) -> (DeviceReport, Vec<ThrottleEvent>, Vec<String>) {
    account_trace(w, &trace::PowerTrace::streamed(w, folded))
}

/// What a group's stretch needs of one device: its raw energy and the raw figure's bound,
/// chosen and bounded as [`account`] does, and its adjusted energy (not floored at 0 J),
/// without the readings' statistics, throttle time or the warnings' text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StretchEnergy {
    pub raw_j: Option<f64>,
    pub adjusted_j: Option<f64>,
    pub uncertainty_j: Option<f64>,
}

/// Buffers a group's stretches build their power points in, kept from one stretch to the
/// next so that accounting one allocates nothing once they have grown.
#[derive(Debug, Default)]
pub(crate) struct TraceBuffers {
    points: Vec<fold::Point>,
    near: Vec<fold::Point>,
}

/// [`StretchEnergy`] of one device, from the samples at hand or the folded sums; the
/// points are built in `buffers`.
pub(crate) fn stretch_energy(
    w: &DeviceWindow<'_>,
    folded: Option<stream::Folded>,
    buffers: &mut TraceBuffers,
) -> StretchEnergy {
    let trace = match folded {
        Some(f) => trace::PowerTrace::streamed(w, f),
        None => trace::PowerTrace::points_only(
            w,
            std::mem::take(&mut buffers.points),
            std::mem::take(&mut buffers.near),
        ),
    };
    let mut quiet = Notes::none();
    let bounds = uncertainty::Bounds::of(w, &trace);
    let raw = energy::raw_energy(w, &trace, &bounds, "", &mut quiet);
    let out = StretchEnergy {
        raw_j: raw.raw_j,
        // unfloored: a group sums its stretches' and floors each window's total once
        adjusted_j: raw
            .raw_j
            .zip(w.baseline_w)
            .map(|(r, b)| r - b * w.duration_s()),
        uncertainty_j: uncertainty::bound_j(w, &bounds, raw.method),
    };
    let (mut points, mut near) = trace.into_points();
    points.clear();
    near.clear();
    *buffers = TraceBuffers { points, near };
    out
}

fn account_trace(
    w: &DeviceWindow<'_>,
    trace: &trace::PowerTrace<'_>,
) -> (DeviceReport, Vec<ThrottleEvent>, Vec<String>) {
    let info = w.info;
    let dev = format!("device {} ({})", info.index, info.name);
    let mut warnings = Vec::new();
    let bounds = uncertainty::Bounds::of(w, trace);
    let raw = energy::raw_energy(w, trace, &bounds, &dev, &mut Notes::to(&mut warnings));
    power_source_warning(w, trace, &dev, &mut warnings);
    let bound = uncertainty::window_bound(w, trace, &bounds, raw.method);
    if raw.raw_j.is_some() && bound.uncertainty_j.is_none() {
        warnings.push(format!(
            "{dev}: no meaningful error bound: the window rests on one held power reading and nothing (no variation nearby, no power limit, no baseline) bounds how far the power moved since"
        ));
    }
    let adjusted = adjusted_energy(w, raw.raw_j, &dev, &mut Notes::to(&mut warnings));
    if info.mig {
        warnings.push(format!(
            "{dev}: MIG mode: NVML reports the whole GPU's energy, not this slice's"
        ));
    }
    let (throttle, events) = throttle::device_throttle(w, trace, &dev, &mut warnings);
    let stats = readings::reading_stats(w, trace, raw.raw_j);
    let report = DeviceReport {
        index: info.index,
        uuid: info.uuid.clone(),
        name: info.name.clone(),
        kind: info.kind,
        simulated: info.simulated,
        mig: info.mig,
        energy: DeviceEnergy {
            raw_j: raw.raw_j,
            adjusted_j: adjusted,
            baseline_power_w: w.baseline_w,
            baseline_method: w.baseline_method,
            method: raw.method,
            below_resolution: raw.below_resolution,
            uncertainty_j: bound.uncertainty_j,
            adjusted_uncertainty_j: bound.adjusted_j,
            uncertainty_method: bound.method,
            uncertainty: bound.inputs,
            calibration_pct: w.sensor.calibration_pct,
            energy_until_lost_j: raw.until_lost.map(|u| u.0),
            energy_until_lost_uncertainty_j: raw.until_lost.map(|u| u.1),
        },
        power: stats.power,
        temperature: stats.temperature,
        memory: stats.memory,
        utilisation: stats.utilisation,
        throttle,
    };
    (report, events, warnings)
}

/// Warn when a device meant to be read through the instant power field fell back to
/// `nvmlDeviceGetPowerUsage` for some readings.
fn power_source_warning(
    w: &DeviceWindow<'_>,
    trace: &trace::PowerTrace<'_>,
    dev: &str,
    warnings: &mut Vec<String>,
) {
    let (instant, usage) = readings::power_sources(trace);
    if w.info.power_source == PowerSource::Instant && usage > 0 {
        warnings.push(format!(
            "{dev}: {usage} of {} power readings fell back from the instant power field to nvmlDeviceGetPowerUsage",
            usage + instant
        ));
    }
}

/// Raw energy minus the idle baseline over the window, floored at 0 J (with a warning).
fn adjusted_energy(
    w: &DeviceWindow<'_>,
    raw_j: Option<f64>,
    dev: &str,
    warnings: &mut Notes<'_>,
) -> Option<f64> {
    let (r, b) = raw_j.zip(w.baseline_w)?;
    let idle = b * w.duration_s();
    let a = r - idle;
    if a < 0.0 {
        warnings.push(|| format!(
            "{dev}: adjusted energy floored at 0 J: the window drew less ({r:.3} J) than the idle baseline predicts ({idle:.3} J)"
        ));
    }
    Some(a.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrates_constant_and_linear_exactly() {
        let pts = [(0.0, 100.0), (1.0, 100.0), (2.0, 100.0)];
        assert!((crate::results::stats::integrate(&pts, 0.0, 2.0).unwrap() - 200.0).abs() < 1e-9);
        let ramp = [(0.0, 0.0), (2.0, 200.0)];
        assert!((crate::results::stats::integrate(&ramp, 0.0, 2.0).unwrap() - 200.0).abs() < 1e-9);
        assert!((crate::results::stats::integrate(&ramp, 1.0, 2.0).unwrap() - 150.0).abs() < 1e-9);
        // held beyond the ends
        assert!(
            (crate::results::stats::integrate(&[(1.0, 50.0)], 0.0, 3.0).unwrap() - 150.0).abs()
                < 1e-9
        );
        assert!(crate::results::stats::integrate(&[], 0.0, 1.0).is_none());
        assert_eq!(crate::results::stats::integrate(&pts, 1.0, 1.0), Some(0.0));
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
        let got = crate::results::stats::integrate(&pts, 0.5, 3.0).unwrap();
        assert!((got - truth).abs() / truth < 0.03, "{got} vs {truth}");
    }

    #[test]
    fn throttle_time_is_held_until_the_next_sample_and_merged_into_events() {
        let th = ThrottleReasons::HW_THERMAL;
        let pc = ThrottleReasons::SW_POWER_CAP;
        let none = ThrottleReasons::GPU_IDLE;
        let s = [(0.9, th), (1.0, th), (1.1, pc), (1.2, none), (1.3, th)];
        let st = throttle::throttle_from_samples(0, &s, 1.0, 1.35);
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

    use crate::device::{DeviceInfo, DeviceKind, Reading, Sample, ThrottleReasons, Violations};
    use crate::results::report::BaselineMethod;
    use crate::results::report::{EnergyMethod, ThrottleSource};

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
            sensor: crate::device::SensorProfile::default(),
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
            counter_update: Box::leak(Box::new((0.1, Some("default".into())))),
            baseline_uncertainty_w: None,
            sensor: &info.sensor,
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
        // what was measured up to the loss is reported, as partial, with its bound
        let until = r.energy.energy_until_lost_j.unwrap();
        let bound = r.energy.energy_until_lost_uncertainty_j.unwrap();
        assert!((until - 300.0 * 1.9).abs() <= bound, "{until} ± {bound}");
        assert!(bound > 0.0 && bound < 1.0, "{bound}");
        assert!(warn.iter().any(|x| x.contains("partial")), "{warn:?}");
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

    #[test]
    fn a_violation_counter_reset_is_not_zero_throttling() {
        let info = gpu();
        // thermally throttled all along, by the samples; the counter went backwards
        let s = samples(|_| 300.0, |_| ThrottleReasons::SW_THERMAL);
        let mut w = window(&info, &s, (Some(0.0), Some(1200.0)));
        w.violations = Some((
            Violations {
                power_ns: None,
                thermal_ns: Some(5_000_000_000),
            },
            Violations {
                power_ns: None,
                thermal_ns: Some(1_000_000_000),
            },
        ));
        let (r, _, warn) = account(&w);
        assert_eq!(r.throttle.duration_source, ThrottleSource::Samples);
        assert!(r.throttle.thermal_duration_s > 3.9, "{:?}", r.throttle);
        assert!(
            warn.iter().any(|x| x.contains("went backwards (reset)")),
            "{warn:?}"
        );
    }
}
