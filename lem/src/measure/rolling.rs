//! Windows that tile time: each ends at the device reads that start the next, so nothing
//! falls between them and their energies add up to the energy since the first one started.
//! The live exporter (`lem monitor`, `Meter::serve_metrics`) advances one on every round of
//! the sampler.

use super::meter::Meter;
use super::window::{edge_time, OpenWindow};
use crate::results::report::EnergyReport;

/// Consecutive windows on one meter ([`Meter::rolling`]).
#[derive(Debug)]
pub struct Rolling {
    stretch: OpenWindow,
    name: String,
    processes: bool,
}

impl Rolling {
    /// When the current window started, seconds on the meter's clock.
    pub fn start_clock_s(&self) -> f64 {
        self.stretch.t0
    }
}

impl Meter {
    /// Start consecutive windows named `name`, reading the devices once. With `processes`,
    /// each window also records who used the devices (no pid counts as measured).
    pub fn rolling(&self, name: &str, processes: bool) -> Rolling {
        let (ends, _) = self.read_ends();
        let now = self.clock.now().as_secs_f64();
        let t = edge_time(&ends, now);
        let stretch = self.window_from(&ends, t, name.to_string());
        if processes {
            self.track_processes(&stretch);
        }
        Rolling {
            stretch,
            name: name.to_string(),
            processes,
        }
    }

    /// End the current window of `r` at one read of the devices, which also starts the
    /// next: the ended window's report, and each device's own span (from its read at the
    /// window's start to its read at the end: these tile time per device, while the
    /// report's duration runs from the first device's read to the last one's).
    pub fn roll(&self, r: &mut Rolling) -> (EnergyReport, Vec<f64>) {
        let now = self.clock.now().as_secs_f64();
        let (ends, failed) = self.read_ends();
        let t = edge_time(&ends, now);
        let next = self.window_from(&ends, t, r.name.clone());
        if r.processes {
            self.track_processes(&next);
        }
        let prev = std::mem::replace(&mut r.stretch, next);
        let spans = prev
            .starts
            .iter()
            .zip(&ends)
            .map(|(s, e)| (e.t_s - s.t_s).max(0.0))
            .collect();
        (self.finish_with_ends(&prev, t, ends, failed), spans)
    }

    /// End `r` without a report.
    pub fn stop_rolling(&self, r: Rolling) {
        self.discard_window(r.stretch);
    }

    /// The sampler's samples taken after `after_s` still in its buffer (its last few
    /// seconds), appended to `out` in time order: no driver call.
    pub fn samples_after(&self, after_s: f64, out: &mut Vec<crate::device::Sample>) {
        self.sampler.shared().samples_after(after_s, out);
    }

    /// Whether device `i` (by position) has failed every read since some time.
    pub fn device_down(&self, i: usize) -> bool {
        self.sampler.shared().down_since(i).is_some()
    }

    /// Failed driver reads since the meter started.
    pub fn failed_reads(&self) -> u64 {
        self.sampler.shared().failed_reads()
    }

    fn track_processes(&self, w: &OpenWindow) {
        self.sampler
            .shared()
            .processes()
            .open(w.id, w.t0, Vec::new(), self.devices.len());
    }
}
