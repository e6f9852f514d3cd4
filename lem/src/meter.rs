//! The meter (devices + sampler + baseline) and the `EnergyScope` guard that measures one
//! window of work.
//!
//! GPU work is asynchronous: a window that closes before the GPU finished the work launched
//! inside it measures the wrong thing. Give the meter a sync hook
//! ([`MeterBuilder::sync`]); it runs at both ends of every scope.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::accounting::{account, DeviceWindow};
use crate::baseline::{self, Baseline, BaselineConfig, BaselineMethod, BaselineMode};
use crate::clock::{Clock, MonotonicClock};
use crate::device::{open_devices, DeviceSpec, Reading, SharedDevice, Violations};
use crate::error::{Error, Result};
use crate::report::{
    EnergyMethod, EnergyReport, EnergySummary, SamplingSummary, ThermalSummary, SCHEMA_VERSION,
};
use crate::sampler::{self, Sample, Sampler};

/// A function that waits until the device finished all work queued so far.
pub type SyncHook = Arc<dyn Fn() + Send + Sync>;

/// Builds a [`Meter`]. Defaults: device `auto`, 100 ms sampling, a 30 s baseline cached for
/// an hour.
pub struct MeterBuilder {
    spec: DeviceSpec,
    devices: Option<Vec<SharedDevice>>,
    clock: Option<Arc<dyn Clock>>,
    interval: Duration,
    baseline: BaselineConfig,
    keep_timeseries: bool,
    sync: Option<SyncHook>,
    powercap_root: Option<PathBuf>,
    progress: Option<Box<dyn FnMut(f64) + Send>>,
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
            sync: None,
            powercap_root: None,
            progress: None,
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

    /// Keep every sample so [`Meter::timeseries`] can return a scope's time series.
    #[must_use]
    pub fn keep_timeseries(mut self, keep: bool) -> Self {
        self.keep_timeseries = keep;
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
                crate::timefmt::unix_now_s(),
                &mut cb,
            )?
        };
        notices.extend(outcome.warnings);
        let counter_updates = devices
            .iter()
            .map(|d| {
                crate::probe::counter_update_for(d.as_ref(), self.baseline.cache_dir.as_deref())
            })
            .collect();
        let sampler = Sampler::start(devices.clone(), clock.clone(), self.interval)?;
        sampler.shared().set_keep_all(self.keep_timeseries);
        let origin_s = clock.now().as_secs_f64();
        let origin_unix_s = crate::timefmt::unix_now_s();
        Ok(Meter {
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
        })
    }
}

/// Devices, their idle baselines and a background sampler: the thing scopes measure with.
///
/// Build one per process (building may measure a baseline) and open as many scopes on it as
/// needed, nested or overlapping.
pub struct Meter {
    devices: Vec<SharedDevice>,
    clock: Arc<dyn Clock>,
    sampler: Sampler,
    baselines: Vec<Baseline>,
    baseline_mode: BaselineMode,
    notices: Vec<String>,
    sync: Option<SyncHook>,
    next_id: AtomicU64,
    origin_s: f64,
    /// Wall-clock time (Unix s) at `origin_s`.
    origin_unix_s: f64,
    interval: Duration,
    spec: DeviceSpec,
    /// Per device: the counter's update period used for bounds, and where it came from.
    counter_updates: Vec<(f64, Option<String>)>,
    /// Tells this meter's open windows from another's.
    meter_id: u64,
}

/// Source of [`Meter`] identities.
static NEXT_METER_ID: AtomicU64 = AtomicU64::new(1);

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter")
            .field("devices", &self.devices.len())
            .field("spec", &self.spec)
            .field("interval", &self.interval)
            .field("baselines", &self.baselines)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
struct DeviceStart {
    e0: Option<f64>,
    /// The counter read at the start failed.
    e0_failed: bool,
    temp0: Option<f64>,
    viol0: Option<Violations>,
    edge0: Option<Reading>,
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

    /// Open a scope: the window starts now (after the sync hook).
    ///
    /// # Errors
    /// None today; the `Result` leaves room for devices that fail at the window's start.
    pub fn start(&self, name: impl Into<Cow<'static, str>>) -> Result<EnergyScope<'_>> {
        Ok(EnergyScope {
            meter: self,
            window: Some(self.open_window(name)?),
        })
    }

    /// Open a window that does not borrow the meter (for owners that keep the meter behind
    /// an `Arc`, such as language bindings): close it with [`close_window`](Self::close_window)
    /// on this meter, or [`discard_window`](Self::discard_window).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn open_window(&self, name: impl Into<Cow<'static, str>>) -> Result<OpenWindow> {
        if let Some(s) = &self.sync {
            s();
        }
        let mut starts = Vec::with_capacity(self.devices.len());
        let mut failed_here = 0;
        for d in &self.devices {
            let info = d.info();
            let e0 = if info.energy_counter {
                d.energy_j().ok()
            } else {
                None
            };
            let e0_failed = info.energy_counter && e0.is_none();
            failed_here += u64::from(e0_failed);
            starts.push(DeviceStart {
                e0,
                e0_failed,
                temp0: d.temperature_c(),
                viol0: d.violations(),
                // The power at the window's edge: integrated by devices without a counter, and
                // the counter's staleness bound needs the power near each end.
                edge0: match d.power_reading() {
                    Ok(r) => Some(r),
                    Err(_) => {
                        failed_here += 1;
                        None
                    }
                },
            });
        }
        let t0 = self.clock.now().as_secs_f64();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shared = self.sampler.shared();
        shared.register(id, t0);
        Ok(OpenWindow {
            meter_id: self.meter_id,
            id,
            name: name.into(),
            t0,
            failed0: shared.failed_reads(),
            failed_here,
            starts,
        })
    }

    /// Close a window opened by [`open_window`](Self::open_window) (after the sync hook) and
    /// account it.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the window belongs to another meter.
    pub fn close_window(&self, window: OpenWindow) -> Result<EnergyReport> {
        if window.meter_id != self.meter_id {
            return Err(Error::config(
                "window",
                format!("`{}` was opened on another meter", window.name),
            ));
        }
        Ok(self.finish_scope(&window))
    }

    /// Forget an open window: its samples are no longer kept for it.
    pub fn discard_window(&self, window: OpenWindow) {
        if window.meter_id == self.meter_id {
            self.sampler.shared().unregister(window.id);
        }
    }

    /// Measure `f` in a scope named `name`; returns its value and the report.
    ///
    /// # Errors
    /// As [`start`](Self::start) and [`EnergyScope::finish`].
    pub fn measure<T>(
        &self,
        name: impl Into<Cow<'static, str>>,
        f: impl FnOnce() -> T,
    ) -> Result<(T, EnergyReport)> {
        let scope = self.start(name)?;
        let value = f();
        let report = scope.finish()?;
        Ok((value, report))
    }

    /// The measured devices.
    pub fn devices(&self) -> &[SharedDevice] {
        &self.devices
    }

    /// The idle baseline of each device.
    pub fn baselines(&self) -> &[Baseline] {
        &self.baselines
    }

    /// Notices from opening the devices and establishing the baseline; every report carries
    /// them too.
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// Whether any device is simulated.
    pub fn is_simulated(&self) -> bool {
        self.devices.iter().any(|d| d.info().simulated)
    }

    /// The meter's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The sampling interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The device spec the meter was built from.
    pub fn spec(&self) -> &DeviceSpec {
        &self.spec
    }

    /// Seconds since the meter was built.
    pub fn elapsed_s(&self) -> f64 {
        self.clock.now().as_secs_f64() - self.origin_s
    }

    /// Take one sampling round now. The background thread does this on its own; call it
    /// yourself with a manual clock.
    pub fn sample_now(&self) {
        self.sampler.shared().sample_round();
    }

    /// The samples inside a finished scope's window (needs
    /// [`keep_timeseries`](MeterBuilder::keep_timeseries), or a scope still open),
    /// with times relative to the window's start.
    pub fn timeseries(&self, report: &EnergyReport) -> Vec<Sample> {
        let t0 = self.origin_s + report.start_s;
        let (samples, _, _) = self.sampler.shared().window(t0, t0 + report.duration_s);
        samples
            .into_iter()
            .filter(|s| s.t_s >= t0)
            .map(|s| Sample {
                t_s: s.t_s - t0,
                ..s
            })
            .collect()
    }

    /// The environment around the meter's devices (host, OS, GPUs, driver, CUDA...).
    pub fn environment(&self) -> crate::env::Environment {
        crate::env::collect(&self.devices)
    }

    /// Wrap a report into a result file for `experiment_id` / `process_index`.
    pub fn result_file(
        &self,
        report: EnergyReport,
        experiment_id: impl Into<String>,
        process_index: u32,
    ) -> crate::output::ResultFile {
        let start = self.origin_unix_s + report.start_s;
        let end = start + report.duration_s;
        let mut rf = crate::output::ResultFile::new(
            report,
            experiment_id,
            process_index,
            self.environment(),
        );
        rf.start_unix_s = Some(start);
        rf.end_unix_s = Some(end);
        rf.started_at = Some(crate::timefmt::rfc3339(start));
        rf
    }

    /// Write `result` atomically to `path`, with its time series beside it when `timeseries`
    /// (needs [`keep_timeseries`](MeterBuilder::keep_timeseries)).
    ///
    /// # Errors
    /// [`Error::Io`] naming the file or directory that could not be written.
    pub fn save(
        &self,
        result: &mut crate::output::ResultFile,
        path: &std::path::Path,
        timeseries: bool,
    ) -> Result<()> {
        let ts = timeseries.then(|| {
            let samples = self.timeseries(&result.report);
            crate::output::Timeseries::new(
                &result.experiment_id,
                &result.report,
                &self.devices,
                &samples,
            )
        });
        crate::output::write_result(path, result, ts.as_ref())
    }

    fn finish_scope(&self, scope: &OpenWindow) -> EnergyReport {
        if let Some(s) = &self.sync {
            s();
        }
        let t1 = self.clock.now().as_secs_f64();
        let mut ends: Vec<DeviceEnd> = Vec::with_capacity(self.devices.len());
        let mut failed_here = scope.failed_here;
        for d in &self.devices {
            let counter = d.info().energy_counter;
            let mut end = DeviceEnd::default();
            if counter {
                match d.energy_j() {
                    Ok(e) => end.e1 = Some(e),
                    Err(e) => end.failure = Some(e),
                }
                match d.power_reading() {
                    Ok(r) => end.edge = Some(r),
                    Err(_) => failed_here += 1,
                }
            } else {
                match d.power_reading() {
                    Ok(r) if r.power_w.is_some() => end.edge = Some(r),
                    Ok(r) => {
                        end.edge = Some(r);
                        end.failure = Some(Error::Device {
                            device: d.info().name.clone(),
                            reason: "power read failed".into(),
                        });
                    }
                    Err(e) => end.failure = Some(e),
                }
            }
            failed_here += u64::from(end.failure.is_some());
            end.violations = d.violations();
            ends.push(end);
        }
        let shared = self.sampler.shared();
        shared.unregister(scope.id);
        // Samples from a little before the window too: the counter's staleness at the start
        // depends on the power during the update period before it.
        let lookback = self.counter_updates.iter().map(|c| c.0).fold(0.0, f64::max)
            + self.interval.as_secs_f64()
            + crate::accounting::POWER_AVERAGE_S;
        let (samples, rounds, failed_total) = shared.window_with_lookback(scope.t0, t1, lookback);
        let t0 = scope.t0;
        let duration = (t1 - t0).max(0.0);

        let mut warnings: Vec<String> = self.notices.clone();
        let mut devices = Vec::with_capacity(self.devices.len());
        let mut events = Vec::new();
        for (i, d) in self.devices.iter().enumerate() {
            let info = d.info();
            let mine: Vec<Sample> = samples
                .iter()
                .filter(|s| s.device == info.index)
                .copied()
                .collect();
            let st = scope.starts[i];
            let end = &ends[i];
            // A device that fails at the window's end is lost for this window if the sampler
            // has seen it failing since some earlier time, or it says it is lost; a single
            // failed read with good samples around it is transient (integration covers it).
            let lost = end.failure.as_ref().and_then(|e| {
                shared
                    .down_since(i)
                    .or_else(|| matches!(e, Error::DeviceLost { .. }).then(|| (t1, e.to_string())))
            });
            let b = self.baselines.get(i);
            let w = DeviceWindow {
                info,
                t0,
                t1,
                e0: st.e0,
                e1: end.e1,
                temp0: st.temp0,
                violations: st.viol0.zip(end.violations),
                samples: &mine,
                edges: st.edge0.zip(end.edge),
                lost,
                interval_s: self.interval.as_secs_f64(),
                counter_update: self.counter_updates[i].clone(),
                baseline_uncertainty_w: b.and_then(|b| b.uncertainty_w(self.counter_updates[i].0)),
                counter_failed: (st.e0_failed, d.info().energy_counter && end.e1.is_none()),
                baseline_w: b.and_then(|b| b.power_w),
                baseline_method: b.map_or(BaselineMethod::Unavailable, |b| b.method),
            };
            let (rep, ev, warn) = account(&w);
            devices.push(rep);
            events.extend(ev);
            warnings.extend(warn);
        }

        let all = |f: &dyn Fn(&crate::report::DeviceReport) -> Option<f64>| -> Option<f64> {
            if devices.is_empty() {
                return None;
            }
            devices.iter().map(f).sum::<Option<f64>>()
        };
        let raw_j = all(&|d| d.energy.raw_j);
        let adjusted_j = all(&|d| d.energy.adjusted_j);
        let baseline_power_w = all(&|d| d.energy.baseline_power_w);
        if self.devices.is_empty() {
            warnings.push("no energy source: energy was not measured (timing only)".into());
        } else if raw_j.is_none() {
            warnings.push("total energy unknown: at least one device could not be measured".into());
        }
        let methods: Vec<EnergyMethod> = devices.iter().filter_map(|d| d.energy.method).collect();
        let method = match methods.first() {
            None => None,
            Some(m) if methods.len() == devices.len() && methods.iter().all(|x| x == m) => Some(*m),
            Some(_) => Some(EnergyMethod::Mixed),
        };
        let baseline_method = if self.baseline_mode == BaselineMode::Off {
            BaselineMethod::Disabled
        } else {
            self.baselines
                .iter()
                .map(|b| b.method)
                .max()
                .unwrap_or(BaselineMethod::Unavailable)
        };
        let oldest = self
            .baselines
            .iter()
            .filter(|b| b.timestamp_unix_s.is_some())
            .min_by(|a, b| {
                a.timestamp_unix_s
                    .partial_cmp(&b.timestamp_unix_s)
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
        let cache_age = self
            .baselines
            .iter()
            .filter_map(|b| b.cache_age_s)
            .reduce(f64::max);

        let thermal = ThermalSummary {
            throttle_detected: devices.iter().any(|d| d.throttle.detected),
            throttle_duration_s: devices
                .iter()
                .map(|d| d.throttle.throttle_duration_s)
                .fold(0.0, f64::max),
            thermal_duration_s: devices
                .iter()
                .map(|d| d.throttle.thermal_duration_s)
                .fold(0.0, f64::max),
            power_duration_s: devices
                .iter()
                .map(|d| d.throttle.power_duration_s)
                .fold(0.0, f64::max),
            max_temp_c: devices
                .iter()
                .filter_map(|d| d.temperature.max_c)
                .reduce(f64::max),
            events,
        };
        let interval_s = self.interval.as_secs_f64();
        let expected = if self.devices.is_empty() {
            0
        } else {
            (duration / interval_s).floor() as u64
        };
        if self.sampler.is_running() && expected >= 10 && rounds * 2 < expected {
            warnings.push(format!(
                "the sampler fell behind: {rounds} of {expected} expected samples (slow device reads?)"
            ));
        }
        let below_resolution = devices.iter().any(|d| d.energy.below_resolution);
        let power = crate::report::TotalPower {
            mean_w: raw_j.filter(|_| duration > 0.0).map(|e| e / duration),
            peak_w: total_peak(&samples, t0, self.devices.len()),
        };
        EnergyReport {
            schema_version: SCHEMA_VERSION.to_string(),
            name: scope.name.to_string(),
            start_s: t0 - self.origin_s,
            duration_s: duration,
            simulated: self.is_simulated(),
            energy: EnergySummary {
                raw_j,
                adjusted_j,
                baseline_power_w,
                baseline_method,
                baseline_timestamp: oldest.and_then(|b| b.timestamp.clone()),
                baseline_cache_age_s: cache_age,
                method,
                uncertainty_j: raw_j.and(all(&|d| d.energy.uncertainty_j)),
                adjusted_uncertainty_j: adjusted_j.and(all(&|d| d.energy.adjusted_uncertainty_j)),
                uncertainty_method: crate::report::combine_methods(
                    devices.iter().map(|d| d.energy.uncertainty_method),
                ),
                below_resolution,
            },
            power,
            devices,
            thermal,
            sampling: SamplingSummary {
                interval_ms: interval_s * 1000.0,
                sample_count: rounds,
                expected_sample_count: expected,
                failed_reads: failed_total.saturating_sub(scope.failed0) + failed_here,
            },
            warnings,
        }
    }
}

/// The highest total power of one sampling round inside the window, over rounds in which all
/// `n` devices answered. Samples arrive round by round, devices in order.
fn total_peak(samples: &[Sample], t0: f64, n: usize) -> Option<f64> {
    let mut best: Option<f64> = None;
    let (mut sum, mut seen, mut last) = (0.0, 0usize, None::<u32>);
    let close = |sum: f64, seen: usize, best: &mut Option<f64>| {
        if seen == n && n > 0 {
            *best = Some(best.map_or(sum, |b: f64| b.max(sum)));
        }
    };
    for s in samples.iter().filter(|s| s.t_s >= t0) {
        if last.is_some_and(|l| s.device <= l) {
            close(sum, seen, &mut best);
            (sum, seen) = (0.0, 0);
        }
        if let Some(p) = s.reading.power_w {
            sum += p;
            seen += 1;
        }
        last = Some(s.device);
    }
    close(sum, seen, &mut best);
    best
}

/// What was read from one device at a window's end.
#[derive(Debug, Default)]
struct DeviceEnd {
    e1: Option<f64>,
    violations: Option<Violations>,
    edge: Option<Reading>,
    failure: Option<Error>,
}

/// An open window that does not borrow its meter ([`Meter::open_window`]). Dropping it
/// without [`Meter::close_window`] or [`Meter::discard_window`] leaves its samples kept
/// until the meter is dropped.
#[derive(Debug)]
#[must_use = "an open window is measured only when closed with Meter::close_window"]
pub struct OpenWindow {
    meter_id: u64,
    id: u64,
    name: Cow<'static, str>,
    t0: f64,
    failed0: u64,
    /// Reads that failed at the window's start (not the sampler's).
    failed_here: u64,
    starts: Vec<DeviceStart>,
}

impl OpenWindow {
    /// The window's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When the window started, seconds on its meter's clock.
    pub fn start_clock_s(&self) -> f64 {
        self.t0
    }
}

/// An open measurement window. Close it with [`finish`](Self::finish) to get its report;
/// dropping it discards the measurement.
#[must_use = "dropping an EnergyScope discards its measurement; call finish() to get the report"]
pub struct EnergyScope<'m> {
    meter: &'m Meter,
    /// `None` once finished.
    window: Option<OpenWindow>,
}

impl std::fmt::Debug for EnergyScope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnergyScope")
            .field("name", &self.name())
            .field("elapsed_s", &self.elapsed_s())
            .finish_non_exhaustive()
    }
}

impl EnergyScope<'_> {
    /// The scope's name.
    pub fn name(&self) -> &str {
        self.window.as_ref().map_or("", |w| &w.name)
    }

    /// Seconds since the scope started.
    pub fn elapsed_s(&self) -> f64 {
        self.window
            .as_ref()
            .map_or(0.0, |w| self.meter.clock.now().as_secs_f64() - w.t0)
    }

    /// Close the window (after the sync hook) and account it.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for devices that fail at the window's end.
    pub fn finish(mut self) -> Result<EnergyReport> {
        match self.window.take() {
            Some(w) => self.meter.close_window(w),
            None => Err(Error::config("scope", "already finished")),
        }
    }
}

impl Drop for EnergyScope<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.window.take() {
            // Best effort: stop keeping samples for a window nobody will read.
            self.meter.discard_window(w);
        }
    }
}
