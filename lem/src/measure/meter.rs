//! The meter (devices + sampler + baseline): the thing windows measure with.
//!
//! GPU work is asynchronous: a window that closes before the GPU finished the work launched
//! inside it measures the wrong thing. Give the meter a sync hook
//! ([`MeterBuilder::sync`]); it runs at both ends of every scope.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use super::baseline::{Baseline, BaselineMode};
use super::sampler::Sampler;
use crate::base::clock::Clock;
use crate::device::{DeviceSpec, SharedDevice};
use crate::results::report::EnergyReport;
use crate::results::timeseries::writer::StreamWriter;

/// A function that waits until the device finished all work queued so far.
pub type SyncHook = Arc<dyn Fn() + Send + Sync>;

/// Devices, their idle baselines and a background sampler: the thing scopes measure with.
///
/// Build one per process (building may measure a baseline) and open as many scopes on it as
/// needed, nested or overlapping.
pub struct Meter {
    pub(super) devices: Vec<SharedDevice>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) sampler: Sampler,
    pub(super) baselines: Vec<Baseline>,
    pub(super) baseline_mode: BaselineMode,
    pub(super) notices: Vec<String>,
    pub(super) sync: Option<SyncHook>,
    pub(super) next_id: AtomicU64,
    pub(super) origin_s: f64,
    /// Wall-clock time (Unix s) at `origin_s`.
    pub(super) origin_unix_s: f64,
    pub(super) interval: Duration,
    pub(super) spec: DeviceSpec,
    /// Per device: the counter's update period used for bounds, and where it came from.
    pub(super) counter_updates: Vec<(f64, Option<String>)>,
    /// Tells this meter's open windows from another's.
    pub(super) meter_id: u64,
    /// Per device: its power sensor, with the user's override applied.
    pub(super) sensors: Vec<crate::device::SensorProfile>,
    /// Where baselines and probes are cached (`None`: the default directory).
    pub(super) cache_dir: Option<PathBuf>,
    /// The time series being written, if any, and whether its file is the meter's own
    /// temporary one (`measure/series.rs`).
    pub(super) series: std::sync::Mutex<Option<(StreamWriter, bool)>>,
    /// The groups of shared windows (`measure/group.rs`), kept type-erased so that the
    /// meter does not import the module built on it.
    pub(super) groups: std::sync::Mutex<Vec<Arc<dyn std::any::Any + Send + Sync>>>,
    /// Told of every window the application closes (the live exporter's window metrics).
    pub(super) observer: std::sync::OnceLock<WindowObserver>,
}

/// A function told of every report of a window the application closes.
pub type WindowObserver = Box<dyn Fn(&crate::results::report::EnergyReport) + Send + Sync>;

/// Source of [`Meter`] identities.
pub(super) static NEXT_METER_ID: AtomicU64 = AtomicU64::new(1);

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

impl Meter {
    /// Tell `observer` of every report of a window closed from now on (scopes, shared
    /// scopes, `close_window`; not the meter's own baselines or rolling windows). One per
    /// meter: `false` when one is already set.
    pub fn set_window_observer(&self, observer: WindowObserver) -> bool {
        self.observer.set(observer).is_ok()
    }

    pub(super) fn observe(&self, report: &crate::results::report::EnergyReport) {
        if let Some(o) = self.observer.get() {
            o(report);
        }
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

    /// Each device's power sensor as the bounds use it (its profile, or the override).
    pub fn sensors(&self) -> &[crate::device::SensorProfile] {
        &self.sensors
    }

    /// The longest sensor period among the meter's devices, s (0 for ideal sensors).
    pub fn longest_sensor_period_s(&self) -> f64 {
        self.sensors.iter().map(|s| s.period_s).fold(0.0, f64::max)
    }

    /// The sensor, among the meter's devices, that observes only part of each period and
    /// has the longest one: what a workload's own period should not be shorter than.
    pub fn part_time_sensor(&self) -> Option<&crate::device::SensorProfile> {
        self.sensors
            .iter()
            .filter(|s| s.sensing_fraction < 1.0 && s.period_s > 0.0)
            .max_by(|a, b| a.period_s.total_cmp(&b.period_s))
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

    /// The environment around the meter's devices (host, OS, GPUs, driver, CUDA...).
    pub fn environment(&self) -> crate::results::env::Environment {
        crate::measure::probe::collect_environment(&self.devices, self.cache_dir.as_deref())
    }

    /// Wrap a report into a result file for `experiment_id` / `process_index`.
    pub fn result_file(
        &self,
        report: EnergyReport,
        experiment_id: impl Into<String>,
        process_index: u32,
    ) -> crate::results::output::ResultFile {
        let start = self.origin_unix_s + report.start_s;
        let end = start + report.duration_s;
        let mut rf = crate::results::output::ResultFile::new(
            report,
            experiment_id,
            process_index,
            self.environment(),
        );
        rf.start_unix_s = Some(start);
        rf.end_unix_s = Some(end);
        rf.started_at = Some(crate::base::timefmt::rfc3339(start));
        let groups = self.group_summaries();
        if !groups.is_empty() {
            if let Ok(v) = serde_json::to_value(groups) {
                rf.extra.insert("groups".into(), v);
            }
        }
        rf
    }
}
