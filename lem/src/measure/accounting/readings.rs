//! Power, memory, temperature and utilisation statistics of one device over one window, and
//! which power readings the driver gave.

use super::input::DeviceWindow;
use super::stream::InsideFold;
use super::trace::PowerTrace;
use crate::device::{PowerSource, Reading};
use crate::results::report::{MemoryStats, PowerStats, TemperatureStats, UtilisationStats};

/// The statistics of the readings inside a window.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReadingStats {
    pub power: PowerStats,
    pub temperature: TemperatureStats,
    pub memory: MemoryStats,
    pub utilisation: UtilisationStats,
}

fn max_opt(it: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    it.flatten().filter(|v| v.is_finite()).reduce(f64::max)
}

/// Statistics over the samples inside the window and the two edge readings; peaks fall back
/// to the reading held from before the window when nothing inside has one. `raw_j` gives the
/// mean power.
pub(crate) fn reading_stats(
    w: &DeviceWindow<'_>,
    trace: &PowerTrace<'_>,
    raw_j: Option<f64>,
) -> ReadingStats {
    let duration = w.duration_s();
    let held = w
        .samples
        .first()
        .filter(|s| s.t_s < w.t0)
        .map(|s| s.reading);
    let (peak_power, peak_mem, max_temp, mean_util) = match &trace.folded {
        Some(f) => folded_stats(w, &f.inside),
        None => inside_stats(w, trace),
    };
    let peak_power = peak_power.or_else(|| held.and_then(|r| r.power_w));
    let peak_mem = peak_mem.or_else(|| held.and_then(|r| r.memory_used_mb));
    let (instant_readings, usage_readings) = power_sources(trace);
    ReadingStats {
        power: PowerStats {
            mean_w: raw_j.filter(|_| duration > 0.0).map(|r| r / duration),
            peak_w: peak_power,
            source: w.info.power_source,
            instant_readings,
            usage_readings,
        },
        temperature: TemperatureStats {
            start_c: w.temp0,
            max_c: max_temp,
        },
        memory: MemoryStats {
            peak_used_mb: peak_mem,
            total_mb: w.info.memory_total_mb,
        },
        utilisation: UtilisationStats {
            mean_pct: mean_util,
        },
    }
}

/// Peak power, peak memory, highest temperature and mean utilisation over the samples
/// inside the window and the edge readings.
fn inside_stats(
    w: &DeviceWindow<'_>,
    trace: &PowerTrace<'_>,
) -> (Option<f64>, Option<f64>, Option<f64>, Option<f64>) {
    let inside = &trace.inside;
    let edge_iter = w.edges.iter().flat_map(|(a, b)| [*a, *b]);
    let readings: Vec<Reading> = inside.iter().map(|s| s.reading).chain(edge_iter).collect();
    let peak_power = max_opt(readings.iter().map(|r| r.power_w));
    let peak_mem = max_opt(readings.iter().map(|r| r.memory_used_mb));
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
    (peak_power, peak_mem, max_temp, mean_util)
}

/// [`inside_stats`] of a folded window: the same maxima, in the same order, and mean.
fn folded_stats(
    w: &DeviceWindow<'_>,
    f: &InsideFold,
) -> (Option<f64>, Option<f64>, Option<f64>, Option<f64>) {
    let edges: Vec<Reading> = w.edges.iter().flat_map(|(a, b)| [*a, *b]).collect();
    let with_edges = |inside: Option<f64>, field: fn(&Reading) -> Option<f64>| {
        max_opt(std::iter::once(inside).chain(edges.iter().map(field)))
    };
    let peak_power = with_edges(f.peak_power, |r| r.power_w);
    let peak_mem = with_edges(f.peak_memory, |r| r.memory_used_mb);
    let max_temp = max_opt(
        std::iter::once(f.max_temperature)
            .chain(edges.iter().map(|r| r.temperature_c))
            .chain(std::iter::once(w.temp0)),
    );
    let n = f.utilisation_n;
    let mean_util = (n > 0).then(|| f.utilisation_sum / n as f64);
    (peak_power, peak_mem, max_temp, mean_util)
}

/// How many readings inside came from the instant power field, and how many from
/// `nvmlDeviceGetPowerUsage`.
pub(crate) fn power_sources(trace: &PowerTrace<'_>) -> (u64, u64) {
    if let Some(f) = &trace.folded {
        return (f.inside.instant, f.inside.usage);
    }
    let instant = trace
        .inside
        .iter()
        .filter(|s| s.reading.power_source == Some(PowerSource::Instant))
        .count() as u64;
    let usage = trace
        .inside
        .iter()
        .filter(|s| {
            matches!(
                s.reading.power_source,
                Some(PowerSource::Averaged | PowerSource::Usage)
            )
        })
        .count() as u64;
    (instant, usage)
}
