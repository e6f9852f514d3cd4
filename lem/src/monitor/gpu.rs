//! Every device's energy since the exporter started, its readings and throttle time, as
//! Prometheus metrics, advanced from the sampler's state and consecutive windows.
//!
//! **Energy.** Consecutive windows tile time (`Meter::rolling`), each accounted as any
//! window is (the counter's difference, or integration where there is none or it failed,
//! went backwards at a driver reset, or stood still), so `lem_gpu_energy_joules_total` is
//! their sum: it never goes backwards and absorbs a counter reset.
//!
//! **Its bound.** Where consecutive windows use the counter, their sum is one counter
//! difference: the staleness of the reads between them cancels, and what remains is the
//! staleness at the run's two ends (the larger of the first and the latest window's bound,
//! each of which covers one of its ends) plus every window's part-time sensing term.
//! Integrated windows' bounds add up. A window without a bound makes the bound unknown
//! (NaN), never a guess.
//!
//! **Active energy.** Each window's raw energy minus the idle baseline over it, added up
//! unfloored (a report floors its adjusted energy at 0; summed over thousands of windows
//! at idle that would turn noise into energy); at idle a window can come out a little below
//! its baseline, and a counter must not go backwards, so the exported counter holds at its
//! highest running sum until the sum passes it again (it reads high by at most the sum's
//! largest dip, which is within the baseline's noise).
//!
//! **A lost GPU.** From the round the sampler finds a device failing every read, its `up`
//! is 0 and its counters stop: no window touching that time adds anything, so nothing jumps
//! when it comes back.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::device::{Sample, ThrottleReasons};
use crate::measure::meter::Meter;
use crate::results::report::{DeviceReport, EnergyMethod, EnergyReport};

/// A metric's labels.
pub type Labels = Vec<(String, String)>;
type FCounter = Family<Labels, Counter<f64, AtomicU64>>;
type FGauge = Family<Labels, Gauge<f64, AtomicU64>>;

/// A process's series is dropped after it has not been seen for this long, s.
pub const PROCESS_GONE_S: f64 = 10.0;

/// The `reason` label of throttle time and the NVML reasons it stands for (`gpu_idle` is
/// not throttling and has none).
pub const THROTTLE_LABELS: &[(&str, ThrottleReasons)] = &[
    (
        "thermal",
        ThrottleReasons::SW_THERMAL.union(ThrottleReasons::HW_THERMAL),
    ),
    ("power_brake", ThrottleReasons::HW_POWER_BRAKE),
    ("power_cap", ThrottleReasons::SW_POWER_CAP),
    ("hw_slowdown", ThrottleReasons::HW_SLOWDOWN),
    ("sync_boost", ThrottleReasons::from_bits(0x10)),
    (
        "applications_clocks_setting",
        ThrottleReasons::from_bits(0x2),
    ),
    ("display_clock_setting", ThrottleReasons::from_bits(0x100)),
];

/// The GPU metric families, registered once.
#[derive(Debug, Clone, Default)]
pub struct GpuMetrics {
    energy: FCounter,
    active: FCounter,
    uncertainty: FGauge,
    power: FGauge,
    idle: FGauge,
    throttle: FCounter,
    temperature: FGauge,
    utilization: FGauge,
    memory: FGauge,
    up: FGauge,
    failed: Counter<f64, AtomicU64>,
    process: FCounter,
}

impl GpuMetrics {
    /// The families, registered in `registry` under the names of the contract.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry;
        r.register(
            "lem_gpu_energy_joules",
            "Raw energy since the monitor started (the counter, or integration where there is none)",
            m.energy.clone(),
        );
        r.register(
            "lem_gpu_active_energy_joules",
            "Energy above the idle baseline since the monitor started",
            m.active.clone(),
        );
        r.register(
            "lem_gpu_energy_uncertainty_joules",
            "The bound on lem_gpu_energy_joules_total",
            m.uncertainty.clone(),
        );
        r.register("lem_gpu_power_watts", "Current power", m.power.clone());
        r.register(
            "lem_gpu_idle_power_watts",
            "The idle baseline",
            m.idle.clone(),
        );
        r.register(
            "lem_gpu_throttle_seconds",
            "Time throttled, by reason",
            m.throttle.clone(),
        );
        r.register(
            "lem_gpu_temperature_celsius",
            "Temperature",
            m.temperature.clone(),
        );
        r.register(
            "lem_gpu_utilization_ratio",
            "Utilisation, from 0 to 1",
            m.utilization.clone(),
        );
        r.register(
            "lem_gpu_memory_used_bytes",
            "Memory in use",
            m.memory.clone(),
        );
        r.register(
            "lem_gpu_up",
            "1 while the GPU answers, 0 once it is lost",
            m.up.clone(),
        );
        r.register(
            "lem_sampler_failed_reads",
            "Failed driver reads",
            m.failed.clone(),
        );
        r.register(
            "lem_process_gpu_active_energy_joules",
            "Active energy attributed to a process by its share of SM utilisation (an estimate)",
            m.process.clone(),
        );
        m
    }
}

/// A run of consecutive counter windows: its bound's parts.
#[derive(Debug, Clone, Copy)]
struct CounterRun {
    first_j: f64,
    last_j: f64,
    part_time_j: f64,
}

impl CounterRun {
    fn bound(&self) -> f64 {
        self.first_j.max(self.last_j) + self.part_time_j
    }
}

/// One device's running state.
#[derive(Debug)]
struct Gpu {
    index: u32,
    labels: Labels,
    simulated: bool,
    active_sum: f64,
    active_shown: f64,
    /// The bounds of finished counter runs and integrated windows.
    bound_closed: f64,
    run: Option<CounterRun>,
    unbounded: bool,
    /// The device's latest sample: its time and throttle reasons.
    last: Option<(f64, ThrottleReasons)>,
    /// Down at the last update: the window after it is not counted either.
    was_down: bool,
}

/// A process's series: its running sum and what is shown, and when it was last seen.
#[derive(Debug, Default)]
struct ProcSeries {
    sum: f64,
    shown: f64,
    seen_s: f64,
}

/// Every device's state, updated from the sampler and consecutive windows.
#[derive(Debug)]
pub struct GpuState {
    metrics: GpuMetrics,
    gpus: Vec<Gpu>,
    /// The last sample time read from the sampler.
    after_s: f64,
    failed_seen: u64,
    procs: HashMap<Labels, ProcSeries>,
    buf: Vec<Sample>,
}

impl GpuState {
    /// The state of `meter`'s devices from `start_s` (meter clock) on, reported through
    /// `metrics`.
    pub fn new(meter: &Meter, metrics: GpuMetrics, start_s: f64) -> Self {
        let gpus: Vec<Gpu> = meter
            .devices()
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let info = d.info();
                let mut labels = vec![
                    ("gpu".to_string(), info.index.to_string()),
                    ("uuid".to_string(), info.uuid.clone()),
                    ("name".to_string(), info.name.clone()),
                ];
                if info.simulated {
                    labels.push(("simulated".into(), "true".into()));
                }
                if let Some(w) = meter.baselines().get(i).and_then(|b| b.power_w) {
                    metrics.idle.get_or_create(&labels).set(w);
                }
                metrics.up.get_or_create(&labels).set(1.0);
                Gpu {
                    index: info.index,
                    labels,
                    simulated: info.simulated,
                    active_sum: 0.0,
                    active_shown: 0.0,
                    bound_closed: 0.0,
                    run: None,
                    unbounded: false,
                    last: None,
                    was_down: false,
                }
            })
            .collect();
        Self {
            metrics,
            gpus,
            after_s: start_s,
            failed_seen: meter.failed_reads(),
            procs: HashMap::new(),
            buf: Vec::new(),
        }
    }

    /// Take the sampler's new samples (readings and throttle time) and the window that just
    /// ended, with each device's own span in it (by position).
    pub fn update(&mut self, meter: &Meter, window: &EnergyReport, spans_s: &[f64]) {
        self.buf.clear();
        meter.samples_after(self.after_s, &mut self.buf);
        if let Some(s) = self.buf.last() {
            self.after_s = s.t_s;
        }
        let failed = meter.failed_reads();
        self.metrics
            .failed
            .inc_by(failed.saturating_sub(self.failed_seen) as f64);
        self.failed_seen = failed;
        let max_gap_s = 3.0 * meter.interval().as_secs_f64();
        for (i, g) in self.gpus.iter_mut().enumerate() {
            let down = meter.device_down(i);
            let up = self.metrics.up.get_or_create(&g.labels);
            up.set(if down { 0.0 } else { 1.0 });
            if down {
                // nothing from the outage counts as throttled when it answers again
                g.last = None;
            } else {
                readings(&self.metrics, g, &self.buf, max_gap_s);
            }
            let counted = !down && !g.was_down;
            g.was_down = down;
            let d = window.devices.iter().find(|d| d.index == g.index);
            match (d, spans_s.get(i)) {
                (Some(d), Some(span)) if counted => energy(&self.metrics, g, d, *span),
                // a window not counted breaks the counter run: its ends no longer cancel
                _ => g.close_run(),
            }
        }
    }

    /// Every device down: the meter is gone, nothing answers any more.
    pub fn all_down(&self) {
        for g in &self.gpus {
            self.metrics.up.get_or_create(&g.labels).set(0.0);
        }
    }

    /// Add the per-process active energy of a window that recorded processes; series of
    /// processes not seen for [`PROCESS_GONE_S`] are dropped.
    pub fn update_processes(&mut self, window: &EnergyReport, now_s: f64) {
        let Some(a) = &window.attribution else {
            return;
        };
        for p in &a.processes {
            let Some(g) = self.gpus.iter().find(|g| g.index == p.device) else {
                continue;
            };
            if g.was_down {
                continue;
            }
            let mut labels = vec![
                ("gpu".to_string(), p.device.to_string()),
                ("pid".to_string(), p.pid.to_string()),
                ("command".to_string(), p.command.clone().unwrap_or_default()),
            ];
            if g.simulated {
                labels.push(("simulated".into(), "true".into()));
            }
            let s = self.procs.entry(labels.clone()).or_default();
            s.seen_s = now_s;
            s.sum += p.active_j.unwrap_or(0.0);
            let c = self.metrics.process.get_or_create(&labels);
            if s.sum > s.shown {
                c.inc_by(s.sum - s.shown);
                s.shown = s.sum;
            }
        }
        let process = &self.metrics.process;
        self.procs.retain(|labels, s| {
            let keep = now_s - s.seen_s <= PROCESS_GONE_S;
            if !keep {
                process.remove(labels);
            }
            keep
        });
    }
}

/// The device's latest readings and its throttle time from its new samples.
/// A sample's reasons hold until the next one, up to `max_gap_s`: a longer gap (reads
/// that failed) is not known to have been throttled, and is not counted.
fn readings(m: &GpuMetrics, g: &mut Gpu, samples: &[Sample], max_gap_s: f64) {
    let mut latest = None;
    for s in samples.iter().filter(|s| s.device == g.index) {
        if let Some((t, reasons)) = g.last.filter(|(t, _)| s.t_s - t <= max_gap_s) {
            let dt = (s.t_s - t).max(0.0);
            for (label, bits) in THROTTLE_LABELS {
                if reasons.intersects(*bits) {
                    let mut l = g.labels.clone();
                    l.push(("reason".into(), (*label).into()));
                    m.throttle.get_or_create(&l).inc_by(dt);
                }
            }
        }
        g.last = Some((s.t_s, s.reading.throttle.unwrap_or_default()));
        latest = Some(&s.reading);
    }
    let Some(r) = latest else {
        return;
    };
    let set = |f: &FGauge, v: Option<f64>| {
        if let Some(v) = v {
            f.get_or_create(&g.labels).set(v);
        }
    };
    set(&m.power, r.power_w);
    set(&m.temperature, r.temperature_c);
    set(&m.utilization, r.utilisation_pct.map(|p| p / 100.0));
    set(&m.memory, r.memory_used_mb.map(|mb| mb * 1024.0 * 1024.0));
}

impl Gpu {
    /// End the current run of counter windows: its bound is kept as it is.
    fn close_run(&mut self) {
        if let Some(run) = self.run.take() {
            self.bound_closed += run.bound();
        }
    }
}

/// Add one window's energy, active energy and bound; the device's own span in it lasted
/// `duration_s`.
fn energy(m: &GpuMetrics, g: &mut Gpu, d: &DeviceReport, duration_s: f64) {
    let e = &d.energy;
    let Some(raw) = e.raw_j else {
        g.close_run();
        return;
    };
    m.energy.get_or_create(&g.labels).inc_by(raw.max(0.0));
    match (e.method, e.uncertainty_j) {
        (_, None) => g.unbounded = true,
        (Some(EnergyMethod::EnergyCounter), Some(u)) => {
            let part = e.uncertainty.part_time_j.unwrap_or(0.0);
            let run = g.run.get_or_insert(CounterRun {
                first_j: u,
                last_j: u,
                part_time_j: 0.0,
            });
            run.last_j = u;
            run.part_time_j += part;
        }
        (_, Some(u)) => {
            g.close_run();
            g.bound_closed += u;
        }
    }
    let bound = if g.unbounded {
        f64::NAN
    } else {
        g.bound_closed + g.run.map_or(0.0, |r| r.bound())
    };
    m.uncertainty.get_or_create(&g.labels).set(bound);
    if let Some(b) = e.baseline_power_w {
        g.active_sum += raw - b * duration_s;
        let c = m.active.get_or_create(&g.labels);
        if g.active_sum > g.active_shown {
            c.inc_by(g.active_sum - g.active_shown);
            g.active_shown = g.active_sum;
        }
    }
}
