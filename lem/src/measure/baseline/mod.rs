//! The idle baseline: the power each device draws doing nothing, measured with the device
//! idle, cached per device UUID, and subtracted per device over each window's own duration.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod cache;

use crate::base::cache::default_cache_dir;
use crate::base::clock::Clock;
use crate::base::timefmt::rfc3339;
use crate::device::SharedDevice;
use crate::error::{Error, Result};
use crate::results::report::BaselineMethod;
use cache::CACHE_FORMAT;
pub use cache::{cache_path, clear_cache, list_cache, read_cache, write_cache, CacheEntry};

/// Default baseline duration.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(30);
/// Default time a cached baseline stays valid.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// How much of the baseline idle power may drift per hour since it was measured (assumed:
/// idle power follows the GPU's temperature, which settles within minutes but moves with the
/// room and neighbouring load).
pub const DRIFT_PER_HOUR: f64 = 0.01;
/// The most drift allowed, however old the baseline.
pub const MAX_DRIFT: f64 = 0.10;
/// Utilisation (%) above which a baseline counts as taken on a busy device.
pub const BUSY_UTILISATION_PCT: f64 = 1.0;
/// Power coefficient of variation above which a baseline counts as unsteady.
pub const BUSY_POWER_CV: f64 = 0.10;

/// Whether and how to establish the baseline (`LEM_BASELINE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BaselineMode {
    /// Use a valid cached baseline, else measure one (`auto`).
    #[default]
    Auto,
    /// No baseline: results carry raw energy only (`off`).
    Off,
    /// Always measure afresh and refresh the cache (`force`).
    Force,
}

impl BaselineMode {
    /// Parse `auto` | `off` | `force`; `field` names the source in errors.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming `field`.
    pub fn parse_for(field: &str, s: &str) -> Result<Self> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "off" => Ok(Self::Off),
            "force" => Ok(Self::Force),
            other => Err(Error::config(
                field,
                format!("`{other}` is not one of auto, off, force"),
            )),
        }
    }
}

/// Baseline settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineConfig {
    /// Auto, off or force.
    pub mode: BaselineMode,
    /// How long to measure.
    pub duration: Duration,
    /// Sampling interval while measuring.
    pub interval: Duration,
    /// How long a cached baseline stays valid.
    pub ttl: Duration,
    /// Fail (instead of warning) when the baseline cannot be established.
    pub required: bool,
    /// Cache directory; `None` uses [`default_cache_dir`].
    pub cache_dir: Option<PathBuf>,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        Self {
            mode: BaselineMode::Auto,
            duration: DEFAULT_DURATION,
            interval: crate::measure::sampler::DEFAULT_INTERVAL,
            ttl: DEFAULT_TTL,
            required: false,
            cache_dir: None,
        }
    }
}

/// One device's baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Device UUID.
    pub uuid: String,
    /// Idle power in W; `None` when disabled or unavailable.
    pub power_w: Option<f64>,
    /// How it was obtained.
    pub method: BaselineMethod,
    /// When it was measured (Unix s).
    pub timestamp_unix_s: Option<f64>,
    /// When it was measured, RFC 3339.
    pub timestamp: Option<String>,
    /// Age of the cached value at use, s; `None` when fresh.
    pub cache_age_s: Option<f64>,
    /// Measurement length, s.
    pub duration_s: Option<f64>,
    /// Power samples taken.
    pub sample_count: u64,
    /// Coefficient of variation of the power samples.
    pub power_cv: Option<f64>,
    /// Mean utilisation during the measurement, %.
    pub mean_utilisation_pct: Option<f64>,
    /// Mean temperature while idle, °C (what a cooldown waits for).
    #[serde(default)]
    pub idle_temperature_c: Option<f64>,
    /// The device was not idle (utilisation or unsteady power): treat with care.
    pub busy: bool,
}

impl Baseline {
    /// A bound on how far the idle power during a window may be from this baseline, W, of
    /// the same kind as a window's `uncertainty_j`:
    ///
    /// - the staleness of the two counter reads the baseline was taken from
    ///   (`counter_update_s` × the power, over its duration), a worst case;
    /// - the idle power's own spread: 2.58 × its standard deviation over √n_eff, where
    ///   n_eff counts one independent sample per second of baseline (power readings are
    ///   1-second averages and idle power wanders on thermal time scales, so samples 100 ms
    ///   apart are not independent: √n over n samples would be several times too small);
    /// - drift since it was measured: idle power follows temperature, and lem allows
    ///   [`DRIFT_PER_HOUR`] of the baseline per hour of `age_s` (an assumption, capped at
    ///   [`MAX_DRIFT`]).
    ///
    /// `None` when there is no baseline.
    pub fn uncertainty_w(&self, counter_update_s: f64, age_s: f64) -> Option<f64> {
        let p = self.power_w?;
        let duration = self.duration_s.filter(|d| *d > 0.0);
        let n_eff = match duration {
            Some(d) => d.min(self.sample_count as f64).max(1.0),
            None => (self.sample_count as f64).max(1.0),
        };
        let spread = match self.power_cv {
            Some(cv) if self.sample_count > 1 => 2.576 * p * cv / n_eff.sqrt(),
            _ => 0.0,
        };
        let staleness = duration.map_or(0.0, |d| counter_update_s * p / d);
        let drift = p * (DRIFT_PER_HOUR * age_s.max(0.0) / 3600.0).min(MAX_DRIFT);
        Some(spread + staleness + drift)
    }

    fn without(uuid: &str, method: BaselineMethod) -> Self {
        Self {
            uuid: uuid.to_string(),
            power_w: None,
            method,
            timestamp_unix_s: None,
            timestamp: None,
            cache_age_s: None,
            duration_s: None,
            sample_count: 0,
            power_cv: None,
            mean_utilisation_pct: None,
            idle_temperature_c: None,
            busy: false,
        }
    }
}

/// The baseline of every device and the warnings raised establishing them.
#[derive(Debug, Clone, Default)]
pub struct BaselineOutcome {
    /// One per device, in device order.
    pub baselines: Vec<Baseline>,
    /// Things to tell the user.
    pub warnings: Vec<String>,
}

/// A fresh idle measurement of one device.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Mean idle power (counter delta / duration where there is a counter), W.
    pub power_w: Option<f64>,
    /// Power samples taken.
    pub sample_count: u64,
    /// Coefficient of variation of the power samples.
    pub power_cv: Option<f64>,
    /// Mean utilisation, %.
    pub mean_utilisation_pct: Option<f64>,
    /// Mean temperature, °C.
    pub mean_temperature_c: Option<f64>,
    /// Actual measurement length, s.
    pub duration_s: f64,
}

/// Measure the idle power of several devices at once for `duration`, reading them every
/// `interval` on `clock`. `progress` is called with the fraction done after each round.
pub fn measure(
    devices: &[SharedDevice],
    clock: &Arc<dyn Clock>,
    duration: Duration,
    interval: Duration,
    progress: &mut dyn FnMut(f64),
) -> Vec<Measured> {
    let n = devices.len();
    // Each counter read is timestamped on its own (at the middle of the call, as a window's
    // are), so the division uses the time between the two reads of that counter, not the
    // loop's.
    let read_counters = || -> Vec<Option<(f64, f64)>> {
        devices
            .iter()
            .map(|d| {
                let (e, t) = crate::base::clock::at_middle(clock.as_ref(), || d.energy_j());
                Some((e.ok()?, t))
            })
            .collect()
    };
    let e0 = read_counters();
    let t0 = clock.now();
    let mut powers: Vec<Vec<(f64, f64)>> = vec![Vec::new(); n];
    let mut utils: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut temps: Vec<Vec<f64>> = vec![Vec::new(); n];
    let rounds = (duration.as_secs_f64() / interval.as_secs_f64())
        .ceil()
        .max(1.0) as u64;
    for round in 0..rounds {
        for (i, d) in devices.iter().enumerate() {
            if let Ok(r) = d.read() {
                let t = clock.now().as_secs_f64();
                if let Some(p) = r.power_w {
                    powers[i].push((t, p));
                }
                if let Some(u) = r.utilisation_pct {
                    utils[i].push(u);
                }
                if let Some(c) = r.temperature_c {
                    temps[i].push(c);
                }
            }
        }
        let target = t0 + duration.mul_f64((round + 1) as f64 / rounds as f64);
        let now = clock.now();
        if target > now {
            clock.sleep(target - now);
        }
        progress((round + 1) as f64 / rounds as f64);
    }
    let elapsed = (clock.now() - t0).as_secs_f64();
    let e1 = read_counters();
    (0..n)
        .map(|i| {
            let ps: Vec<f64> = powers[i].iter().map(|(_, p)| *p).collect();
            let stats = crate::results::stats::Summary::of(&ps);
            let counter = match (e0[i], e1[i]) {
                (Some((a, ta)), Some((b, tb))) if b > a && tb > ta => Some((b - a) / (tb - ta)),
                _ => None,
            };
            Measured {
                power_w: counter.or(stats.as_ref().map(|s| s.mean)),
                sample_count: ps.len() as u64,
                power_cv: stats.as_ref().and_then(|s| s.cv),
                mean_utilisation_pct: crate::results::stats::Summary::of(&utils[i]).map(|s| s.mean),
                mean_temperature_c: crate::results::stats::Summary::of(&temps[i]).map(|s| s.mean),
                duration_s: elapsed,
            }
        })
        .collect()
}

/// Establish the baseline of every device according to `cfg`: from the cache where valid,
/// else measured (all devices needing it at once) and cached. `now_unix_s` is the wall-clock
/// time used for cache ages.
///
/// # Errors
/// [`Error::BaselineRequired`] when `cfg.required` and some device has no baseline.
pub fn establish(
    devices: &[SharedDevice],
    clock: &Arc<dyn Clock>,
    cfg: &BaselineConfig,
    now_unix_s: f64,
    progress: &mut dyn FnMut(f64),
) -> Result<BaselineOutcome> {
    let mut out = BaselineOutcome::default();
    if cfg.mode == BaselineMode::Off {
        out.baselines = devices
            .iter()
            .map(|d| Baseline::without(&d.info().uuid, BaselineMethod::Disabled))
            .collect();
        if cfg.required {
            return Err(Error::BaselineRequired(
                "the baseline is turned off (LEM_BASELINE=off / --no-baseline)".into(),
            ));
        }
        return Ok(out);
    }
    let dir = cfg.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let mut slots: Vec<Option<Baseline>> = if cfg.mode == BaselineMode::Auto {
        devices
            .iter()
            .map(|d| cached(d, &dir, cfg.ttl, now_unix_s, &mut out.warnings))
            .collect()
    } else {
        vec![None; devices.len()]
    };
    let todo: Vec<usize> = (0..devices.len()).filter(|i| slots[*i].is_none()).collect();
    if !todo.is_empty() {
        let devs: Vec<SharedDevice> = todo.iter().map(|i| devices[*i].clone()).collect();
        let measured = measure(&devs, clock, cfg.duration, cfg.interval, progress);
        for (k, m) in todo.iter().zip(measured) {
            slots[*k] = Some(fresh(&devices[*k], &m, &dir, now_unix_s, &mut out.warnings));
        }
    }
    out.baselines = slots
        .into_iter()
        .zip(devices)
        .map(|(b, d)| {
            b.unwrap_or_else(|| Baseline::without(&d.info().uuid, BaselineMethod::Unavailable))
        })
        .collect();
    if cfg.required {
        if let Some(b) = out.baselines.iter().find(|b| b.power_w.is_none()) {
            return Err(Error::BaselineRequired(format!(
                "device {} has no idle baseline",
                b.uuid
            )));
        }
    }
    Ok(out)
}

/// The cached baseline of `d` when there is one younger than `ttl`; an unreadable or foreign
/// cache file is a warning.
fn cached(
    d: &SharedDevice,
    dir: &Path,
    ttl: Duration,
    now_unix_s: f64,
    warnings: &mut Vec<String>,
) -> Option<Baseline> {
    let uuid = &d.info().uuid;
    let e = match read_cache(&cache_path(dir, uuid), uuid) {
        Ok(e) => e?,
        Err(w) => {
            warnings.push(w);
            return None;
        }
    };
    let age = now_unix_s - e.timestamp_unix_s;
    (age >= 0.0 && age <= ttl.as_secs_f64()).then(|| Baseline {
        uuid: uuid.clone(),
        power_w: Some(e.power_w),
        method: BaselineMethod::Cached,
        timestamp_unix_s: Some(e.timestamp_unix_s),
        timestamp: Some(e.timestamp),
        cache_age_s: Some(age),
        duration_s: Some(e.duration_s),
        sample_count: e.sample_count,
        power_cv: e.power_cv,
        mean_utilisation_pct: e.mean_utilisation_pct,
        idle_temperature_c: e.idle_temperature_c,
        busy: false,
    })
}

/// The baseline just measured for `d`: flagged (and not cached) when the device was busy,
/// cached otherwise; unavailable, with a warning, when nothing could be read.
fn fresh(
    d: &SharedDevice,
    m: &Measured,
    dir: &Path,
    now_unix_s: f64,
    warnings: &mut Vec<String>,
) -> Baseline {
    let info = d.info();
    let Some(power_w) = m.power_w else {
        warnings.push(format!(
            "device {} ({}): the idle baseline could not be measured (no energy counter or power reading); results carry raw energy only",
            info.index, info.name
        ));
        return Baseline::without(&info.uuid, BaselineMethod::Unavailable);
    };
    let busy_util = m
        .mean_utilisation_pct
        .is_some_and(|u| u > BUSY_UTILISATION_PCT);
    let busy_cv = m.power_cv.is_some_and(|c| c > BUSY_POWER_CV);
    let busy = busy_util || busy_cv;
    if busy {
        warnings.push(format!(
            "device {} ({}): baseline taken while the device was not idle (mean utilisation {:.1} %, power CV {:.3}); adjusted energy is suspect and this baseline is not cached",
            info.index,
            info.name,
            m.mean_utilisation_pct.unwrap_or(0.0),
            m.power_cv.unwrap_or(0.0)
        ));
    } else {
        let entry = CacheEntry {
            lem_baseline: CACHE_FORMAT,
            uuid: info.uuid.clone(),
            device_name: info.name.clone(),
            power_w,
            timestamp_unix_s: now_unix_s,
            timestamp: rfc3339(now_unix_s),
            duration_s: m.duration_s,
            sample_count: m.sample_count,
            power_cv: m.power_cv,
            mean_utilisation_pct: m.mean_utilisation_pct,
            idle_temperature_c: m.mean_temperature_c,
            simulated: info.simulated,
        };
        if let Err(e) = write_cache(dir, &entry) {
            warnings.push(format!("baseline not cached: {e}"));
        }
    }
    Baseline {
        uuid: info.uuid.clone(),
        power_w: Some(power_w),
        method: BaselineMethod::Fresh,
        timestamp_unix_s: Some(now_unix_s),
        timestamp: Some(rfc3339(now_unix_s)),
        cache_age_s: None,
        duration_s: Some(m.duration_s),
        sample_count: m.sample_count,
        power_cv: m.power_cv,
        mean_utilisation_pct: m.mean_utilisation_pct,
        idle_temperature_c: m.mean_temperature_c,
        busy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::ManualClock;
    use crate::device::{Scenario, SimDevice};

    fn sim(json: &str, clock: &Arc<dyn Clock>) -> Vec<SharedDevice> {
        let s = Scenario::from_json(json, Path::new("t.json")).unwrap();
        SimDevice::open_all(&s, clock.clone(), 0)
            .into_iter()
            .map(|d| Arc::new(d) as SharedDevice)
            .collect()
    }

    fn cfg(dir: &Path, mode: BaselineMode) -> BaselineConfig {
        BaselineConfig {
            mode,
            duration: Duration::from_secs(5),
            cache_dir: Some(dir.to_path_buf()),
            ..BaselineConfig::default()
        }
    }

    #[test]
    fn fresh_then_cached_then_forced_then_expired() {
        let dir = tempfile::tempdir().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
        let devs = sim(r#"{"idle_w": 61.5}"#, &clock);
        let mut noop = |_f: f64| {};
        let c = cfg(dir.path(), BaselineMode::Auto);

        let a = establish(&devs, &clock, &c, 1000.0, &mut noop).unwrap();
        assert_eq!(a.baselines[0].method, BaselineMethod::Fresh);
        assert!((a.baselines[0].power_w.unwrap() - 61.5).abs() < 1e-9);
        assert!(
            (clock.now().as_secs_f64() - 5.0).abs() < 1e-6,
            "measured for 5 s"
        );
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);

        let b = establish(&devs, &clock, &c, 1100.0, &mut noop).unwrap();
        assert_eq!(b.baselines[0].method, BaselineMethod::Cached);
        assert!((b.baselines[0].cache_age_s.unwrap() - 100.0).abs() < 1e-9);
        assert!((b.baselines[0].power_w.unwrap() - 61.5).abs() < 1e-9);

        let f = establish(
            &devs,
            &clock,
            &cfg(dir.path(), BaselineMode::Force),
            1200.0,
            &mut noop,
        )
        .unwrap();
        assert_eq!(f.baselines[0].method, BaselineMethod::Fresh);

        // the forced run refreshed the cache: 1200 + 3600 is still valid, 1200 + 3601 is not
        let ok = establish(&devs, &clock, &c, 4800.0, &mut noop).unwrap();
        assert_eq!(ok.baselines[0].method, BaselineMethod::Cached);
        let expired = establish(&devs, &clock, &c, 4801.0 + 3600.0, &mut noop).unwrap();
        assert_eq!(expired.baselines[0].method, BaselineMethod::Fresh);
    }

    #[test]
    fn corrupted_and_foreign_cache_files_are_ignored_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
        let devs = sim(r#"{"idle_w": 40}"#, &clock);
        let uuid = devs[0].info().uuid.clone();
        let path = cache_path(dir.path(), &uuid);
        std::fs::write(&path, "{ not json").unwrap();
        let mut noop = |_f: f64| {};
        let c = cfg(dir.path(), BaselineMode::Auto);
        let a = establish(&devs, &clock, &c, 10.0, &mut noop).unwrap();
        assert_eq!(a.baselines[0].method, BaselineMethod::Fresh);
        assert!(a.warnings[0].contains("corrupted"), "{:?}", a.warnings);
        // the re-measurement replaced the corrupted file
        assert!(read_cache(&path, &uuid).unwrap().is_some());

        let mut foreign = read_cache(&path, &uuid).unwrap().unwrap();
        foreign.uuid = "GPU-other".into();
        std::fs::write(&path, serde_json::to_string(&foreign).unwrap()).unwrap();
        let b = establish(&devs, &clock, &c, 20.0, &mut noop).unwrap();
        assert_eq!(b.baselines[0].method, BaselineMethod::Fresh);
        assert!(
            b.warnings[0].contains("belongs to GPU-other"),
            "{:?}",
            b.warnings
        );
    }

    #[test]
    fn off_required_and_busy() {
        let dir = tempfile::tempdir().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
        let devs = sim(r#"{"idle_w": 40}"#, &clock);
        let mut noop = |_f: f64| {};
        let off = establish(
            &devs,
            &clock,
            &cfg(dir.path(), BaselineMode::Off),
            0.0,
            &mut noop,
        )
        .unwrap();
        assert_eq!(off.baselines[0].method, BaselineMethod::Disabled);
        assert!(off.baselines[0].power_w.is_none());
        let mut req = cfg(dir.path(), BaselineMode::Off);
        req.required = true;
        assert!(matches!(
            establish(&devs, &clock, &req, 0.0, &mut noop),
            Err(Error::BaselineRequired(_))
        ));

        // a device that is working during the baseline is flagged and not cached
        let busy = sim(
            r#"{"idle_w": 40, "segments": [{"start_s": 0, "end_s": 100, "power_w": 250}]}"#,
            &clock,
        );
        let b = establish(
            &busy,
            &clock,
            &cfg(dir.path(), BaselineMode::Force),
            0.0,
            &mut noop,
        )
        .unwrap();
        assert!(b.baselines[0].busy);
        assert!(
            b.warnings.iter().any(|w| w.contains("not idle")),
            "{:?}",
            b.warnings
        );
        let uuid = &busy[0].info().uuid;
        assert!(read_cache(&cache_path(dir.path(), uuid), uuid)
            .unwrap()
            .is_none());
    }

    #[test]
    fn counterless_baseline_uses_power_samples_and_progress_reaches_one() {
        let dir = tempfile::tempdir().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
        let devs = sim(r#"{"idle_w": 33, "energy_counter": false}"#, &clock);
        let mut last = 0.0;
        let mut prog = |f: f64| last = f;
        let b = establish(
            &devs,
            &clock,
            &cfg(dir.path(), BaselineMode::Auto),
            0.0,
            &mut prog,
        )
        .unwrap();
        assert!((b.baselines[0].power_w.unwrap() - 33.0).abs() < 1e-9);
        assert_eq!(b.baselines[0].sample_count, 50);
        assert!((last - 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_baseline_bound_counts_independent_seconds_and_drift() {
        let b = Baseline {
            power_w: Some(100.0),
            duration_s: Some(30.0),
            sample_count: 300,
            power_cv: Some(0.05),
            ..Baseline::without("x", BaselineMethod::Fresh)
        };
        // 300 samples over 30 s are 30 independent seconds, not 300
        let fresh = b.uncertainty_w(0.0, 0.0).unwrap();
        assert!(
            (fresh - 2.576 * 100.0 * 0.05 / 30f64.sqrt()).abs() < 1e-9,
            "{fresh}"
        );
        assert!(fresh > 3.0 * 100.0 * 0.05 / 300f64.sqrt());
        // an hour old: 1 % of the baseline more; never more than 10 %
        let old = b.uncertainty_w(0.0, 3600.0).unwrap();
        assert!((old - fresh - 1.0).abs() < 1e-9, "{old}");
        let ancient = b.uncertainty_w(0.0, 1e9).unwrap();
        assert!((ancient - fresh - 10.0).abs() < 1e-9);
        // the counter's staleness over the baseline's duration
        let stale = b.uncertainty_w(0.1, 0.0).unwrap();
        assert!((stale - fresh - 0.1 * 100.0 / 30.0).abs() < 1e-9);
        assert_eq!(
            Baseline::without("x", BaselineMethod::Disabled).uncertainty_w(0.1, 0.0),
            None
        );
    }
}
