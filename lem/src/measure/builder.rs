//! Building a meter: its settings (from code, or from `LEM_*` variables), opening the
//! devices, establishing the idle baseline and starting the sampler.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::baseline::{self, BaselineConfig, BaselineMode};
use super::meter::{Meter, SyncHook, NEXT_METER_ID};
use super::sampler::{self, Sampler};
use crate::base::clock::{Clock, MonotonicClock};
use crate::device::{open_devices, DeviceSpec, SensorProfile, SharedDevice};
use crate::error::{Error, Result};

/// Builds a [`Meter`]. Defaults: device `auto`, 100 ms sampling, a 30 s baseline cached for
/// an hour.
pub struct MeterBuilder {
    spec: DeviceSpec,
    devices: Option<Vec<SharedDevice>>,
    clock: Option<Arc<dyn Clock>>,
    interval: Duration,
    baseline: BaselineConfig,
    keep_timeseries: bool,
    retain_window_samples: bool,
    sync: Option<SyncHook>,
    powercap_root: Option<PathBuf>,
    progress: Option<Box<dyn FnMut(f64) + Send>>,
    sensing_fraction: Option<f64>,
    sensor_period: Option<Duration>,
}

impl std::fmt::Debug for MeterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeterBuilder")
            .field("spec", &self.spec)
            .field("interval", &self.interval)
            .field("baseline", &self.baseline)
            .field("keep_timeseries", &self.keep_timeseries)
            .field("sync", &self.sync.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for MeterBuilder {
    fn default() -> Self {
        Self {
            spec: DeviceSpec::Auto,
            devices: None,
            clock: None,
            interval: sampler::DEFAULT_INTERVAL,
            baseline: BaselineConfig::default(),
            keep_timeseries: false,
            retain_window_samples: false,
            sync: None,
            powercap_root: None,
            progress: None,
            sensing_fraction: None,
            sensor_period: None,
        }
    }
}

fn env_var(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::config(name, "not valid UTF-8")),
    }
}

/// Parse a positive number of seconds; `field` names the option in errors.
///
/// # Errors
/// [`Error::InvalidConfig`] naming `field`.
pub fn parse_seconds(field: &str, s: &str) -> Result<Duration> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| Error::config(field, format!("`{s}` is not a number of seconds")))?;
    if !(v.is_finite() && v > 0.0 && v < 1e9) {
        return Err(Error::config(
            field,
            format!("`{s}` must be a positive number of seconds"),
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Parse a sampling interval in ms (1 ..= 10000); `field` names the option in errors.
///
/// # Errors
/// [`Error::InvalidConfig`] naming `field`.
pub fn parse_interval_ms(field: &str, s: &str) -> Result<Duration> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| Error::config(field, format!("`{s}` is not a number of milliseconds")))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(Error::config(
            field,
            format!("`{s}` must be a positive number of milliseconds"),
        ));
    }
    if !(1.0..=10_000.0).contains(&v) {
        // checked before converting: a huge value must not overflow the duration
        return Err(Error::config(
            field,
            format!("{v} ms is outside 1 ms ..= 10000 ms"),
        ));
    }
    sampler::validate_interval(field, Duration::from_secs_f64(v / 1000.0))
}

impl MeterBuilder {
    /// A builder with every default.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder configured from `LEM_DEVICE`, `LEM_CACHE_DIR`, `LEM_BASELINE`,
    /// `LEM_BASELINE_DURATION_S` and `LEM_INTERVAL_MS` (defaults where unset).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the variable whose value is invalid.
    pub fn from_env() -> Result<Self> {
        let mut b = Self::new();
        b.spec = DeviceSpec::from_env()?;
        if let Some(v) = env_var("LEM_CACHE_DIR")? {
            b.baseline.cache_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = env_var("LEM_BASELINE")? {
            b.baseline.mode = BaselineMode::parse_for("LEM_BASELINE", &v)?;
        }
        if let Some(v) = env_var("LEM_BASELINE_DURATION_S")? {
            b.baseline.duration = parse_seconds("LEM_BASELINE_DURATION_S", &v)?;
        }
        if let Some(v) = env_var("LEM_SENSING_FRACTION")? {
            b.sensing_fraction = Some(parse_fraction("LEM_SENSING_FRACTION", &v)?);
        }
        if let Some(v) = env_var("LEM_SENSOR_PERIOD_MS")? {
            b.sensor_period = Some(parse_sensor_period_ms("LEM_SENSOR_PERIOD_MS", &v)?);
        }
        if let Some(v) = env_var("LEM_INTERVAL_MS")? {
            b.interval = parse_interval_ms("LEM_INTERVAL_MS", &v)?;
            b.baseline.interval = b.interval;
        }
        Ok(b)
    }

    /// Which devices to measure.
    #[must_use]
    pub fn device(mut self, spec: DeviceSpec) -> Self {
        self.spec = spec;
        self
    }

    /// Measure these already-opened devices instead of a spec.
    #[must_use]
    pub fn devices(mut self, devices: Vec<SharedDevice>) -> Self {
        self.devices = Some(devices);
        self
    }

    /// The clock (default: the system's monotonic clock). With a manual clock no sampler
    /// thread runs; call [`Meter::sample_now`] to take samples.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Sampling interval, 1 ms ..= 10 s (checked by [`build`](Self::build)).
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self.baseline.interval = interval;
        self
    }

    /// Baseline mode: auto (cache or measure), off, force (always measure).
    #[must_use]
    pub fn baseline_mode(mut self, mode: BaselineMode) -> Self {
        self.baseline.mode = mode;
        self
    }

    /// How long to measure the idle baseline (default 30 s).
    #[must_use]
    pub fn baseline_duration(mut self, d: Duration) -> Self {
        self.baseline.duration = d;
        self
    }

    /// How long a cached baseline stays valid (default 1 h).
    #[must_use]
    pub fn baseline_ttl(mut self, d: Duration) -> Self {
        self.baseline.ttl = d;
        self
    }

    /// Fail instead of warning when the baseline cannot be established.
    #[must_use]
    pub fn baseline_required(mut self, required: bool) -> Self {
        self.baseline.required = required;
        self
    }

    /// Where baselines are cached (default [`baseline::default_cache_dir`]).
    #[must_use]
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.baseline.cache_dir = Some(dir.into());
        self
    }

    /// Record the time series from the start: every sampling round is streamed by a writer
    /// thread to a file of the meter's own in the temporary directory (removed when the
    /// meter is dropped), so [`Meter::timeseries`] and [`Meter::save`] can return and write
    /// a scope's time series. Nothing is kept in memory per sample. To stream to a file of
    /// your choice, call [`Meter::record_timeseries`] instead.
    #[must_use]
    pub fn keep_timeseries(mut self, keep: bool) -> Self {
        self.keep_timeseries = keep;
        self
    }

    /// Keep every sample of an open window until it closes and account the window from
    /// them then, instead of folding its middle as it is sampled. The reports are the same;
    /// memory grows with the window. For tests that compare the two.
    #[doc(hidden)]
    #[must_use]
    pub fn retain_window_samples(mut self, retain: bool) -> Self {
        self.retain_window_samples = retain;
        self
    }

    /// Run `f` at both ends of every scope, e.g. a CUDA device synchronise.
    #[must_use]
    pub fn sync(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.sync = Some(Arc::new(f));
        self
    }

    /// The powercap sysfs root for RAPL (default `/sys/class/powercap`).
    #[must_use]
    pub fn powercap_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.powercap_root = Some(root.into());
        self
    }

    /// Override the fraction of each sensor period the devices' power sensors observe
    /// (default: each device's profile, e.g. 0.25 on A100/H100; see
    /// [`SensorProfile`](crate::device::SensorProfile)). Checked by [`build`](Self::build).
    #[must_use]
    pub fn sensing_fraction(mut self, fraction: f64) -> Self {
        self.sensing_fraction = Some(fraction);
        self
    }

    /// Override the devices' sensor period (default: each device's profile, 100 ms on NVIDIA
    /// GPUs). Checked by [`build`](Self::build).
    #[must_use]
    pub fn sensor_period(mut self, period: Duration) -> Self {
        self.sensor_period = Some(period);
        self
    }

    /// Called with the fraction done while the baseline is measured.
    #[must_use]
    pub fn on_baseline_progress(mut self, f: impl FnMut(f64) + Send + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Open the devices, establish the baseline (cached or measured: this may take the
    /// baseline duration) and start the sampler.
    ///
    /// # Errors
    /// Invalid configuration, devices that cannot be opened, or a required baseline that
    /// cannot be established.
    pub fn build(mut self) -> Result<Meter> {
        sampler::validate_interval("interval", self.interval)?;
        if self.baseline.duration.is_zero() {
            return Err(Error::config("baseline duration", "must be positive"));
        }
        let clock = self
            .clock
            .take()
            .unwrap_or_else(|| Arc::new(MonotonicClock::new()));
        let mut notices = Vec::new();
        let devices = match self.devices.take() {
            Some(d) => d,
            None => {
                let opened = match &self.powercap_root {
                    Some(root) => {
                        crate::device::open_devices_with_powercap(&self.spec, clock.clone(), root)?
                    }
                    None => open_devices(&self.spec, clock.clone())?,
                };
                notices.extend(opened.notices);
                opened.devices
            }
        };
        let mut progress = self.progress.take();
        let mut cb = |f: f64| {
            if let Some(p) = progress.as_mut() {
                p(f);
            }
        };
        let outcome = if devices.is_empty() {
            if self.baseline.required && self.baseline.mode != BaselineMode::Off {
                return Err(Error::BaselineRequired(
                    "there is no device to measure an idle baseline for".into(),
                ));
            }
            baseline::BaselineOutcome::default()
        } else {
            baseline::establish(
                &devices,
                &clock,
                &self.baseline,
                crate::base::timefmt::unix_now_s(),
                &mut cb,
            )?
        };
        notices.extend(outcome.warnings);
        let counter_updates: Vec<(f64, Option<String>)> = devices
            .iter()
            .map(|d| {
                crate::measure::probe::counter_update_for(
                    d.as_ref(),
                    self.baseline.cache_dir.as_deref(),
                )
            })
            .collect();
        let sensors = self.sensors(&devices)?;
        let sampler = Sampler::start(devices.clone(), clock.clone(), self.interval)?;
        sampler
            .shared()
            .set_retain_windows(self.retain_window_samples);
        sampler.shared().set_tail_s(tail_s(
            &counter_updates,
            &sensors,
            self.interval.as_secs_f64(),
        ));
        let origin_s = clock.now().as_secs_f64();
        let origin_unix_s = crate::base::timefmt::unix_now_s();
        let meter = Meter {
            origin_unix_s,
            devices,
            clock,
            sampler,
            baselines: outcome.baselines,
            baseline_mode: self.baseline.mode,
            notices,
            sync: self.sync,
            next_id: AtomicU64::new(1),
            origin_s,
            interval: self.interval,
            spec: self.spec,
            counter_updates,
            meter_id: NEXT_METER_ID.fetch_add(1, Ordering::Relaxed),
            cache_dir: self.baseline.cache_dir,
            sensors,
            series: std::sync::Mutex::new(None),
            groups: std::sync::Mutex::new(Vec::new()),
            observer: std::sync::OnceLock::new(),
        };
        if self.keep_timeseries {
            let path = crate::measure::series::temporary_path(meter.meter_id);
            meter.start_recording(&path, "", true)?;
        }
        Ok(meter)
    }
}

impl MeterBuilder {
    /// Each device's sensor profile with the user's overrides applied.
    fn sensors(&self, devices: &[SharedDevice]) -> Result<Vec<SensorProfile>> {
        devices
            .iter()
            .map(|d| {
                let mut p = d.info().sensor.clone();
                // a probed refresh period beats the profile's assumption
                if let Some(r) = crate::measure::probe::power_refresh_for(
                    d.as_ref(),
                    self.baseline.cache_dir.as_deref(),
                ) {
                    if r > p.refresh_s {
                        p.refresh_s = r;
                        p.source =
                            format!("{} (power refresh {:.0} ms, probed)", p.source, r * 1e3);
                    }
                }
                let mut what = Vec::new();
                if let Some(f) = self.sensing_fraction {
                    p.sensing_fraction = f;
                    what.push(format!("sensing fraction {f}"));
                }
                if let Some(t) = self.sensor_period {
                    p.period_s = t.as_secs_f64();
                    p.refresh_s = p.refresh_s.max(p.period_s);
                    what.push(format!("period {} ms", p.period_s * 1e3));
                }
                if !what.is_empty() {
                    p.source = format!("override: {} (was: {})", what.join(", "), p.source);
                }
                p.validate().map_err(|e| Error::config("sensor", e))?;
                Ok(p)
            })
            .collect()
    }
}

/// How long samples stay raw in the sampler's buffer before open windows fold them, s: what
/// the terms at a window's end read (the power over a counter update period, the 1 s power
/// average and a sampling interval before it; the stretch a held reading may cover), plus
/// two intervals.
fn tail_s(
    counter_updates: &[(f64, Option<String>)],
    sensors: &[SensorProfile],
    interval: f64,
) -> f64 {
    let average = crate::measure::accounting::POWER_AVERAGE_S;
    let period = counter_updates.iter().map(|c| c.0).fold(0.0, f64::max);
    let refresh = sensors
        .iter()
        .map(|s| s.refresh_s.max(s.period_s))
        .fold(0.0, f64::max);
    let need = [
        crate::measure::sampler::LOOKBACK_S,
        2.0 * average,
        period + average + interval,
        refresh,
    ]
    .into_iter()
    .fold(0.0, f64::max);
    need + 2.0 * interval
}

/// Parse a fraction in (0, 1]; `field` names the option in errors.
fn parse_fraction(field: &str, s: &str) -> Result<f64> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(Error::config(
            field,
            format!("`{s}` is not a fraction in (0, 1]"),
        )),
    }
}

/// Parse a sensor period in ms (0 ..= 10000); `field` names the option in errors.
fn parse_sensor_period_ms(field: &str, s: &str) -> Result<Duration> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=10_000.0).contains(&v) => Ok(Duration::from_secs_f64(v / 1000.0)),
        _ => Err(Error::config(
            field,
            format!("`{s}` is not a number of milliseconds within 0 ..= 10000"),
        )),
    }
}

impl Meter {
    /// A builder with every default.
    pub fn builder() -> MeterBuilder {
        MeterBuilder::new()
    }

    /// A meter configured from the `LEM_*` environment variables.
    ///
    /// # Errors
    /// As [`MeterBuilder::from_env`] and [`MeterBuilder::build`].
    pub fn from_env() -> Result<Self> {
        MeterBuilder::from_env()?.build()
    }
}
