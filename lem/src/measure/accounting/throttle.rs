//! Throttle time over one window: sampled reasons held until the next sample, refined by the
//! device's violation counters where it keeps them; and over all devices of a window.

use super::fold::{SampledThrottle, ThrottleFold};
use super::input::DeviceWindow;
use super::trace::PowerTrace;
use crate::device::ThrottleReasons;
use crate::results::report::{
    DeviceReport, DeviceThrottle, ThermalSummary, ThrottleEvent, ThrottleSource,
};

/// Throttle time and events from sampled reasons, each held until the next sample.
pub(crate) fn throttle_from_samples(
    device: u32,
    samples: &[(f64, ThrottleReasons)],
    t0: f64,
    t1: f64,
) -> SampledThrottle {
    // the same fold the long windows use, fed from the slice
    let mut fold = ThrottleFold::new(device, t0, t1);
    for s in samples {
        fold.push(*s);
    }
    fold.finish(t1)
}

/// The device's throttle summary and events over the window, with a warning when it was
/// slowed down.
pub(crate) fn device_throttle(
    w: &DeviceWindow<'_>,
    trace: &PowerTrace<'_>,
    dev: &str,
    warnings: &mut Vec<String>,
) -> (DeviceThrottle, Vec<ThrottleEvent>) {
    let duration = w.duration_s();
    let sampled = match &trace.folded {
        Some(f) => f.throttle.clone(),
        None => {
            let reasons: Vec<(f64, ThrottleReasons)> = w
                .samples
                .iter()
                .filter_map(|s| s.reading.throttle.map(|r| (s.t_s, r)))
                .collect();
            throttle_from_samples(w.info.index, &reasons, w.t0, w.t1)
        }
    };
    let (mut slowdown, mut thermal, mut power) = (sampled.slowdown, sampled.thermal, sampled.power);
    let mut source = ThrottleSource::Samples;
    if let Some((v0, v1)) = w.violations {
        // A counter that went backwards was reset (a driver reload): it says nothing about
        // this window, so the sampled reasons stand for that policy, and the report says so.
        let mut reset = Vec::new();
        let mut delta = |what: &'static str, a: Option<u64>, b: Option<u64>| {
            let (a, b) = a.zip(b)?;
            if b < a {
                reset.push(what);
                return None;
            }
            Some(((b - a) as f64 / 1e9).min(duration))
        };
        let thermal_delta = delta("thermal", v0.thermal_ns, v1.thermal_ns);
        let power_delta = delta("power", v0.power_ns, v1.power_ns);
        if !reset.is_empty() {
            warnings.push(format!(
                "{dev}: the {} violation counter went backwards (reset); throttle time for this window comes from sampled reasons",
                reset.join(" and ")
            ));
        }
        // Each policy's counter refines only the reasons it counts.
        if let Some(t) = thermal_delta {
            thermal = t;
            slowdown = slowdown.max(t);
            source = ThrottleSource::ViolationCounters;
        }
        if let Some(cap) = power_delta {
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
    let throttle = DeviceThrottle {
        detected,
        throttle_duration_s: slowdown,
        thermal_duration_s: thermal,
        power_duration_s: power,
        duration_source: source,
        reasons: sampled.seen,
    };
    (throttle, sampled.events)
}

/// Throttling over all devices: the longest time any device spent throttled, per cause.
pub(crate) fn thermal_summary(
    devices: &[DeviceReport],
    events: Vec<ThrottleEvent>,
) -> ThermalSummary {
    let longest = |f: &dyn Fn(&DeviceReport) -> f64| devices.iter().map(f).fold(0.0, f64::max);
    ThermalSummary {
        throttle_detected: devices.iter().any(|d| d.throttle.detected),
        throttle_duration_s: longest(&|d| d.throttle.throttle_duration_s),
        thermal_duration_s: longest(&|d| d.throttle.thermal_duration_s),
        power_duration_s: longest(&|d| d.throttle.power_duration_s),
        max_temp_c: devices
            .iter()
            .filter_map(|d| d.temperature.max_c)
            .reduce(f64::max),
        events,
    }
}
