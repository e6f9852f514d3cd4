//! Serving a meter's metrics: the exporter that advances the GPU metrics on every sampler
//! round, and `Meter::serve_metrics`, which runs it on a thread of its own beside the
//! endpoint and counts the windows the application closes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use prometheus_client::registry::Registry;

use super::gpu::{GpuMetrics, GpuState};
use super::http::MetricsServer;
use super::windows::{Buckets, WindowMetrics};
use crate::error::{Error, Result};
use crate::measure::meter::Meter;
use crate::measure::rolling::Rolling;

/// Where metrics are served unless told otherwise: loopback only, on a port clear of
/// node_exporter (9100) and the DCGM exporter (9400).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9477";

/// How long the windows that attribute energy to processes are, s: long enough to hold
/// several of the driver's per-process samples (about 1/6 s apart) and process reads.
pub const PROCESS_WINDOW_S: f64 = 2.0;

/// What [`Meter::serve_metrics_with`] exports.
#[derive(Debug, Clone)]
pub struct MetricsOptions {
    /// Bucket bounds of the window energy histograms, J.
    pub energy_buckets: Buckets,
    /// Bucket bounds of the window duration histogram, s.
    pub duration_buckets: Buckets,
    /// Export per-process active energy (`lem_process_gpu_active_energy_joules_total`).
    pub processes: bool,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        Self {
            energy_buckets: Buckets::default_energy(),
            duration_buckets: Buckets::default_duration(),
            processes: false,
        }
    }
}

/// Advances the GPU metrics: one window per sampler round (and with processes one every
/// [`PROCESS_WINDOW_S`]).
#[derive(Debug)]
pub struct Exporter {
    state: GpuState,
    rolling: Rolling,
    processes: Option<Rolling>,
}

impl Exporter {
    /// Start exporting `meter`'s devices through `metrics`.
    pub fn new(meter: &Meter, metrics: GpuMetrics, processes: bool) -> Self {
        let rolling = meter.rolling("lem-monitor", false);
        Self {
            state: GpuState::new(meter, metrics, rolling.start_clock_s()),
            rolling,
            processes: processes.then(|| meter.rolling("lem-monitor/processes", true)),
        }
    }

    /// End the current window (and the processes' window when it is due) and update the
    /// metrics from it and the sampler's new samples.
    pub fn tick(&mut self, meter: &Meter) {
        let (report, spans) = meter.roll(&mut self.rolling);
        self.state.update(meter, &report, &spans);
        let now = meter.clock().now().as_secs_f64();
        if let Some(p) = &mut self.processes {
            if now - p.start_clock_s() >= PROCESS_WINDOW_S {
                let (report, _) = meter.roll(p);
                self.state.update_processes(&report, now);
            }
        }
    }

    /// Stop: the open windows are discarded.
    pub fn stop(self, meter: &Meter) {
        meter.stop_rolling(self.rolling);
        if let Some(p) = self.processes {
            meter.stop_rolling(p);
        }
    }
}

impl Meter {
    /// Serve this meter's metrics on `addr` (`host:port`; port 0 picks a free one, see
    /// [`MetricsServer::addr`]) with the default options: every device's energy, readings
    /// and throttle time as `lem monitor` exports them, and histograms of the windows the
    /// application closes, by name. Serving stops when the handle is dropped.
    ///
    /// # Errors
    /// As [`serve_metrics_with`](Self::serve_metrics_with).
    pub fn serve_metrics(self: &Arc<Self>, addr: &str) -> Result<MetricsServer> {
        self.serve_metrics_with(addr, MetricsOptions::default())
    }

    /// [`serve_metrics`](Self::serve_metrics) with options.
    ///
    /// # Errors
    /// [`Error::Listen`] naming `addr`; [`Error::InvalidConfig`] when this meter already
    /// serves its metrics.
    pub fn serve_metrics_with(
        self: &Arc<Self>,
        addr: &str,
        opts: MetricsOptions,
    ) -> Result<MetricsServer> {
        let mut registry = Registry::default();
        let gpu = GpuMetrics::register(&mut registry);
        let windows =
            WindowMetrics::register(&mut registry, &opts.energy_buckets, &opts.duration_buckets);
        let mut server = MetricsServer::start(addr, Arc::new(registry))?;
        if !self.set_window_observer(Box::new(move |r| windows.observe(r))) {
            return Err(Error::config(
                "serve_metrics",
                "this meter already serves its metrics (or has a window observer)",
            ));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (meter, stop) = (Arc::downgrade(self), Arc::clone(&stop));
            let exporter = Exporter::new(self, gpu, opts.processes);
            let interval = self.interval();
            std::thread::Builder::new()
                .name("lem-exporter".into())
                .spawn(move || export(&meter, exporter, interval, &stop))
                .map_err(|e| Error::Listen {
                    addr: addr.to_string(),
                    reason: format!("cannot start the exporter's thread: {e}"),
                })?
        };
        server.on_stop = Some(Box::new(move || {
            stop.store(true, Ordering::Release);
            thread.thread().unpark();
            let _ = thread.join();
        }));
        Ok(server)
    }
}

/// The exporter's thread: a tick every `interval` while the meter lives and nobody stops it.
fn export(meter: &Weak<Meter>, mut ex: Exporter, interval: Duration, stop: &AtomicBool) {
    loop {
        std::thread::park_timeout(interval);
        let Some(m) = meter.upgrade() else {
            ex.state.all_down();
            return;
        };
        if stop.load(Ordering::Acquire) {
            ex.stop(&m);
            return;
        }
        ex.tick(&m);
    }
}
