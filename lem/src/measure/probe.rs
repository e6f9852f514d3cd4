//! `lem probe`: what a device's sensors actually do. For each device: how often its energy
//! counter changes and by how little, how often its power reading changes, and what each
//! call a sampler round makes costs. Results are cached per (GPU name, driver version)
//! beside the baselines, and the meter bounds counter staleness with the probed period.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::base::clock::Clock;
use crate::device::{DeviceInfo, DeviceKind, EnergySource, SharedDevice};
use crate::error::{Error, Result};
use crate::results::env::{Environment, ProbeBrief};

/// Where the counter's update period was assumed (no probe), by architecture: ~100 ms is
/// what A100/H100 show (ML.ENERGY; MEASUREMENT.md); NVIDIA documents none. Where a device
/// updates faster, this over-states the bound (honest, less tight) until it is probed.
pub const DEFAULT_COUNTER_UPDATE_S: f64 = 0.1;

/// Median and 95th percentile of a set of durations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// 95th percentile.
    pub p95: f64,
}

impl Spread {
    /// Of `values` (unsorted); `None` when empty.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Some(Self {
            median: at(0.5),
            p95: at(0.95),
        })
    }
}

/// The latency of one call a sampler round makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallLatency {
    /// The call (`nvmlDeviceGetTotalEnergyConsumption`, ...).
    pub call: String,
    /// Latency in µs.
    pub latency_us: Spread,
    /// Calls that failed while timed.
    pub failures: u64,
}

/// What probing one device found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Product name.
    pub name: String,
    /// UUID of the device probed.
    pub uuid: String,
    /// Driver version (the cache key with the name).
    pub driver_version: Option<String>,
    /// Simulated device.
    pub simulated: bool,
    /// When probed, Unix s.
    pub timestamp_unix_s: f64,
    /// When probed, RFC 3339.
    pub timestamp: String,
    /// How long each phase polled, s.
    pub duration_s: f64,
    /// Intervals between changes of the energy counter, ms; `None` without a counter or when
    /// it changed fewer than three times.
    pub counter_update_ms: Option<Spread>,
    /// Changes of the counter seen.
    pub counter_changes: u64,
    /// The smallest change of the counter, mJ.
    pub counter_step_mj: Option<f64>,
    /// Intervals between changes of the power reading, ms; `None` when it did not change.
    pub power_update_ms: Option<Spread>,
    /// The power reading did not change while probed.
    pub power_constant: bool,
    /// The calls a sampler round makes, each timed.
    pub calls: Vec<CallLatency>,
}

impl ProbeResult {
    /// The counter's update period to bound staleness with, s: the probed 95th percentile
    /// (a bound must hold for most windows, not the typical one).
    pub fn counter_update_s(&self) -> Option<f64> {
        self.counter_update_ms.map(|s| s.p95 / 1000.0)
    }
}

/// Poll `f` every `poll` for `duration` on `clock`; the times (s) at which its value
/// changed, with the changes.
fn changes(
    clock: &Arc<dyn Clock>,
    duration: Duration,
    poll: Duration,
    mut f: impl FnMut() -> Option<f64>,
) -> Vec<(f64, f64)> {
    let start = clock.now();
    let mut last = f();
    let mut out = Vec::new();
    while clock.now() - start < duration {
        clock.sleep(poll);
        let v = f();
        if let (Some(a), Some(b)) = (last, v) {
            if (b - a).abs() > 0.0 {
                out.push((clock.now().as_secs_f64(), b - a));
            }
        }
        if v.is_some() {
            last = v;
        }
    }
    out
}

/// The gaps between consecutive change times, ms (the first change only starts the clock).
fn gaps_ms(ch: &[(f64, f64)]) -> Vec<f64> {
    ch.windows(2).map(|w| (w[1].0 - w[0].0) * 1000.0).collect()
}

/// Probe one device for `duration` per phase (counter, power), polling every `poll`
/// (at most 1 ms for a meaningful period), then time each call 200 times.
pub fn probe_device(
    d: &dyn EnergySource,
    clock: &Arc<dyn Clock>,
    duration: Duration,
    poll: Duration,
) -> ProbeResult {
    let info = d.info();
    let counter = if info.energy_counter {
        changes(clock, duration, poll, || d.energy_j().ok())
    } else {
        Vec::new()
    };
    let power = changes(clock, duration, poll, || {
        d.read().ok().and_then(|r| r.power_w)
    });
    let counter_gaps = gaps_ms(&counter);
    let power_gaps = gaps_ms(&power);
    let calls = d
        .round_calls()
        .iter()
        .map(|name| {
            let mut failures = 0;
            let us: Vec<f64> = (0..200)
                .map(|_| {
                    let t = std::time::Instant::now();
                    if d.call(name).is_err() {
                        failures += 1;
                    }
                    t.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            CallLatency {
                call: (*name).to_string(),
                latency_us: Spread::of(&us).unwrap_or(Spread {
                    median: 0.0,
                    p95: 0.0,
                }),
                failures,
            }
        })
        .collect();
    let now = crate::base::timefmt::unix_now_s();
    ProbeResult {
        name: info.name.clone(),
        uuid: info.uuid.clone(),
        driver_version: d.driver_version(),
        simulated: info.simulated,
        timestamp_unix_s: now,
        timestamp: crate::base::timefmt::rfc3339(now),
        duration_s: duration.as_secs_f64(),
        counter_update_ms: if counter_gaps.len() >= 2 {
            Spread::of(&counter_gaps)
        } else {
            None
        },
        counter_changes: counter.len() as u64,
        counter_step_mj: counter.iter().map(|c| c.1.abs() * 1000.0).reduce(f64::min),
        power_update_ms: Spread::of(&power_gaps),
        power_constant: power.is_empty(),
        calls,
    }
}

/// Probe every device, one after the other.
pub fn probe_all(
    devices: &[SharedDevice],
    clock: &Arc<dyn Clock>,
    duration: Duration,
) -> Vec<ProbeResult> {
    devices
        .iter()
        .map(|d| probe_device(d.as_ref(), clock, duration, Duration::from_millis(1)))
        .collect()
}

/// The cache file of a (name, driver) pair in `dir`.
pub fn cache_path(dir: &Path, name: &str, driver: Option<&str>) -> PathBuf {
    dir.join(format!(
        "probe-{}-{}.json",
        crate::base::cache::file_safe(name),
        crate::base::cache::file_safe(driver.unwrap_or("none"))
    ))
}

/// Cache a probe result (atomically, in a private directory).
///
/// # Errors
/// [`Error::Io`] naming the file or directory.
pub fn save(dir: &Path, r: &ProbeResult) -> Result<PathBuf> {
    crate::base::cache::ensure_private_dir(dir)?;
    let path = cache_path(dir, &r.name, r.driver_version.as_deref());
    let text = serde_json::to_string_pretty(r)?;
    crate::base::cache::write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

/// The cached probe of a (name, driver) pair, if any. A corrupted file reads as none.
pub fn load(dir: &Path, name: &str, driver: Option<&str>) -> Option<ProbeResult> {
    let text = std::fs::read_to_string(cache_path(dir, name, driver)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Every cached probe in `dir`, with the files that could not be read.
pub fn list(dir: &Path) -> Vec<(PathBuf, std::result::Result<ProbeResult, String>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, std::result::Result<ProbeResult, String>)> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("probe-") && n.ends_with(".json"))
        })
        .map(|p| {
            let r = std::fs::read_to_string(&p)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()));
            (p, r)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The counter update period to bound a device's staleness with, and where it came from:
/// the device's own for simulated and RAPL devices; for NVML, a cached probe of the same
/// GPU model and driver, else the documented default.
pub(crate) fn counter_update_for(
    d: &dyn EnergySource,
    cache_dir: Option<&Path>,
) -> (f64, Option<String>) {
    let info: &DeviceInfo = d.info();
    match info.kind {
        DeviceKind::SimulatedGpu => (info.counter_update_s, Some("simulated".into())),
        DeviceKind::RaplCpu => (info.counter_update_s, Some("rapl".into())),
        DeviceKind::NvmlGpu => {
            let dir =
                cache_dir.map_or_else(crate::base::cache::default_cache_dir, Path::to_path_buf);
            let driver = d.driver_version();
            if let Some(p) = load(&dir, &info.name, driver.as_deref()) {
                if let Some(s) = p.counter_update_s() {
                    return (s, Some(format!("probed {}", p.timestamp)));
                }
            }
            let arch = info
                .architecture
                .as_deref()
                .unwrap_or("unknown architecture");
            (info.counter_update_s, Some(format!("default ({arch})")))
        }
    }
}

/// The environment around `devices`, with each device's cached probe (from `cache_dir`, else
/// [`default_cache_dir`](crate::base::cache::default_cache_dir)) attached.
pub fn collect_environment(devices: &[SharedDevice], cache_dir: Option<&Path>) -> Environment {
    let mut env = crate::results::env::collect(devices);
    let dir = cache_dir.map_or_else(crate::base::cache::default_cache_dir, Path::to_path_buf);
    for (g, d) in env.gpus.iter_mut().zip(devices) {
        g.probe = load(&dir, &d.info().name, d.driver_version().as_deref()).map(|p| ProbeBrief {
            counter_update_ms: p.counter_update_ms.map(|s| s.median),
            counter_update_p95_ms: p.counter_update_ms.map(|s| s.p95),
            power_update_ms: p.power_update_ms.map(|s| s.median),
            timestamp: p.timestamp,
        });
    }
    env
}

/// The power reading's refresh period a cached probe of an NVML device measured (its 95th
/// percentile), s; `None` without one (or for other devices).
pub(crate) fn power_refresh_for(d: &dyn EnergySource, cache_dir: Option<&Path>) -> Option<f64> {
    let info = d.info();
    if info.kind != DeviceKind::NvmlGpu {
        return None;
    }
    let dir = cache_dir.map_or_else(crate::base::cache::default_cache_dir, Path::to_path_buf);
    let p = load(&dir, &info.name, d.driver_version().as_deref())?;
    p.power_update_ms.map(|s| s.p95 / 1000.0)
}

/// Check a probe duration; `field` names the option.
///
/// # Errors
/// [`Error::InvalidConfig`] when not within 0.1 ..= 600 s.
pub fn validate_duration(field: &str, d: Duration) -> Result<Duration> {
    if d < Duration::from_millis(100) || d > Duration::from_secs(600) {
        return Err(Error::config(
            field,
            format!("{} s is outside 0.1 ..= 600 s", d.as_secs_f64()),
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::ManualClock;
    use crate::device::{Scenario, SimDevice};

    fn sim(json: &str) -> (SimDevice, Arc<dyn Clock>) {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
        let s = Scenario::from_json(json, Path::new("p.json")).unwrap();
        let d = SimDevice::open_all(&s, clock.clone(), 0).remove(0);
        (d, clock)
    }

    #[test]
    fn recovers_the_counter_update_period_within_10_percent() {
        for ms in [50.0, 100.0, 137.0, 200.0] {
            let (d, clock) = sim(&format!(r#"{{"idle_w": 80, "counter_update_ms": {ms}}}"#));
            let r = probe_device(&d, &clock, Duration::from_secs(3), Duration::from_millis(1));
            let got = r.counter_update_ms.unwrap().median;
            assert!((got - ms).abs() / ms < 0.1, "{ms} ms: probed {got}");
            // one update at 80 W is 80 × period mJ
            let step = r.counter_step_mj.unwrap();
            assert!((step - 80.0 * ms).abs() / (80.0 * ms) < 0.02, "{step}");
            assert!(r.power_constant, "a constant trace's power never changes");
            assert!(!r.calls.is_empty());
        }
    }

    #[test]
    fn power_changes_are_timed() {
        let (d, clock) = sim(r#"{"idle_w": 50, "energy_counter": false, "segments": [
                {"start_s": 0.5, "end_s": 1.0, "power_w": 60},
                {"start_s": 1.0, "end_s": 1.5, "power_w": 70},
                {"start_s": 1.5, "end_s": 2.0, "power_w": 80}]}"#);
        let r = probe_device(&d, &clock, Duration::from_secs(3), Duration::from_millis(1));
        assert!(!r.power_constant);
        assert!((r.power_update_ms.unwrap().median - 500.0).abs() < 5.0);
    }

    #[test]
    fn cache_round_trip_and_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let (d, clock) = sim(r#"{"idle_w": 80, "counter_update_ms": 100}"#);
        let r = probe_device(&d, &clock, Duration::from_secs(1), Duration::from_millis(1));
        let p = save(dir.path(), &r).unwrap();
        assert!(p
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("probe-Simulated_GPU-"));
        let back = load(dir.path(), &r.name, r.driver_version.as_deref()).unwrap();
        assert_eq!(back.uuid, r.uuid);
        assert_eq!(back.counter_changes, r.counter_changes);
        let (a, b) = (
            back.counter_update_s().unwrap(),
            r.counter_update_s().unwrap(),
        );
        assert!((a - b).abs() < 1e-12);
        assert_eq!(list(dir.path()).len(), 1);
        std::fs::write(&p, "{broken").unwrap();
        assert!(load(dir.path(), &r.name, r.driver_version.as_deref()).is_none());
        assert!(list(dir.path())[0].1.is_err());
    }
}
