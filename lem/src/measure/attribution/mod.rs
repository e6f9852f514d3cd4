//! Who used the GPU during a window: the processes each device lists and their per-process
//! SM-utilisation samples, read at a slower cadence than the power (the driver buffers the
//! samples with timestamps, so nothing is lost between reads) and folded into every open
//! window as they arrive: per process the integrated SM utilisation, its bound, its peak
//! memory and command; per device the time covered by process samples. Memory grows with
//! the processes, never with the samples. `share` turns that into the window's attribution.

pub mod scope;
pub mod share;

use std::collections::{BTreeMap, HashMap};

use crate::device::{ProcessUnavailable, ProcessUnavailableKind, ProcessUtilSample, SharedDevice};

/// How often processes are read while a window is open, s. The driver keeps per-process
/// samples with their timestamps (NVML: a buffer of several seconds, read with the last-seen
/// timestamp), so a slower cadence than the power sampler loses no sample; the process list
/// (peak memory, who was there) is as fine as this, and every window reads once more at
/// its close.
pub const PROCESS_READ_S: f64 = 0.5;

/// The driver's per-process sampling period assumed until two samples of one process show
/// it, s (about 1/6 s on many products).
pub const DEFAULT_PROCESS_PERIOD_S: f64 = 1.0 / 6.0;

/// Samples of one process at most this many periods apart cover the time between them.
const CONTIGUOUS: f64 = 1.5;

/// How deep a process's ancestry is followed.
const MAX_ANCESTRY: usize = 64;

/// One process on one device over one window.
#[derive(Debug, Clone, Default)]
pub struct ProcAcc {
    /// SM utilisation integrated over the window, percent × s.
    pub sm_pct_s: f64,
    /// The bound on `sm_pct_s` from samples that straddle the window's edges, percent × s.
    pub sm_err_pct_s: f64,
    /// Peak device memory, MiB.
    pub peak_memory_mb: Option<f64>,
    /// Command name.
    pub command: Option<String>,
    /// Its ancestors when first seen (parent first), for descendants of the measured pids.
    pub ancestors: Vec<u32>,
    /// `/proc/<pid>` existed when it was first seen (its pid is in this PID namespace).
    pub visible: bool,
    /// Its last sample inside the window: (end, SM %).
    pub last: Option<(f64, f64)>,
}

/// One device over one window.
#[derive(Debug, Clone, Default)]
pub struct DeviceProcs {
    /// The processes, by pid.
    pub procs: BTreeMap<u32, ProcAcc>,
    /// Time inside the window covered by some process sample, s.
    pub covered_s: f64,
    /// The end of the covered time so far (samples come in time order).
    covered_until: f64,
    /// Why the device could not say (the first reason met).
    pub unavailable: Option<ProcessUnavailable>,
    /// The device's per-process sampling period, s.
    pub period_s: f64,
}

/// What one open window folded of the process reads.
#[derive(Debug, Clone)]
pub struct WindowProcs {
    pub t0: f64,
    /// The window's end once it is closing (`INFINITY` before).
    pub t1: f64,
    /// The pids it is attributed to (and their descendants).
    pub targets: Vec<u32>,
    /// Per device (by position); `None` for a device that lists no processes.
    pub devices: Vec<Option<DeviceProcs>>,
}

/// Per device: where the last read left off.
#[derive(Debug, Clone, Default)]
struct DeviceState {
    /// The newest sample timestamp seen (the next read asks for newer ones), device µs.
    since_us: u64,
    /// Each process's last sample end, meter clock s (to know what its next one covers).
    last_t: HashMap<u32, f64>,
    /// The shortest gap seen between two samples of one process, s.
    period_s: Option<f64>,
    /// The device lists no processes at all (a CPU, a simulated GPU without traces).
    not_applicable: bool,
}

/// The process reads shared by every open window.
#[derive(Debug, Default)]
pub struct ProcessTracker {
    devices: Vec<DeviceState>,
    /// The open windows, by id: opening and closing one is O(log n) in the open windows.
    windows: BTreeMap<u64, WindowProcs>,
    last_read_s: Option<f64>,
}

/// A sample placed on the meter's clock: it covers `(a, b]` at `sm` percent.
#[derive(Debug, Clone, Copy)]
struct Span {
    pid: u32,
    a: f64,
    b: f64,
    sm: f64,
}

impl ProcessTracker {
    /// Start folding for window `id` from `t0`, attributed to `targets`.
    pub fn open(&mut self, id: u64, t0: f64, targets: Vec<u32>, n_devices: usize) {
        if self.devices.len() < n_devices {
            self.devices.resize(n_devices, DeviceState::default());
        }
        let devices = self
            .devices
            .iter()
            .map(|d| (!d.not_applicable).then(DeviceProcs::default))
            .collect();
        self.windows.insert(
            id,
            WindowProcs {
                t0,
                t1: f64::INFINITY,
                targets,
                devices,
            },
        );
    }

    /// Attribute window `id` to `targets` instead.
    pub fn set_targets(&mut self, id: u64, targets: Vec<u32>) {
        if let Some(w) = self.windows.get_mut(&id) {
            w.targets = targets;
        }
    }

    /// Stop folding for window `id`.
    pub fn forget(&mut self, id: u64) {
        self.windows.remove(&id);
    }

    /// Whether a read is due at `now` (a window is open and the cadence has passed).
    pub fn due(&self, now: f64) -> bool {
        !self.windows.is_empty()
            && self.devices.iter().any(|d| !d.not_applicable)
            && self
                .last_read_s
                .is_none_or(|t| now - t >= PROCESS_READ_S - 1e-9)
    }

    /// Read every device's processes and samples at `now` (meter clock s, taken around the
    /// reads) and fold them into the open windows.
    pub fn read(&mut self, devices: &[SharedDevice], now: &dyn Fn() -> f64) {
        if self.devices.len() < devices.len() {
            self.devices.resize(devices.len(), DeviceState::default());
        }
        for (i, d) in devices.iter().enumerate() {
            if self.devices[i].not_applicable {
                continue;
            }
            let listed = d.processes();
            let t_r = now();
            let util = d.process_utilisation(self.devices[i].since_us);
            let na = |e: Option<&ProcessUnavailable>| {
                e.is_some_and(|e| e.kind == ProcessUnavailableKind::NotApplicable)
            };
            if na(listed.as_ref().err()) && na(util.as_ref().err()) {
                self.devices[i].not_applicable = true;
                for w in self.windows.values_mut() {
                    w.devices[i] = None;
                }
                continue;
            }
            let spans = match &util {
                Ok(batch) => {
                    let st = &mut self.devices[i];
                    let mut samples = batch.samples.clone();
                    samples.sort_by_key(|s| (s.t_us, s.pid));
                    st.since_us = samples
                        .last()
                        .map_or(st.since_us, |s| s.t_us.max(st.since_us));
                    let at =
                        |s: &ProcessUtilSample| t_r - (batch.now_us as f64 - s.t_us as f64) / 1e6;
                    place(st, &samples, &at, t_r)
                }
                Err(_) => Vec::new(),
            };
            let period = self.devices[i].period_s.unwrap_or(DEFAULT_PROCESS_PERIOD_S);
            for w in self.windows.values_mut() {
                let Some(dp) = w.devices.get_mut(i).and_then(Option::as_mut) else {
                    continue;
                };
                dp.period_s = period;
                match &listed {
                    Ok(list) => {
                        for p in list {
                            let acc = entry(dp, p.pid, p.command.as_deref());
                            // the name can change after it was first seen (a fork that then
                            // runs another program)
                            if let Some(c) = comm(p.pid) {
                                acc.command = Some(c);
                            }
                            if let Some(m) = p.memory_mb {
                                acc.peak_memory_mb =
                                    Some(acc.peak_memory_mb.map_or(m, |x| x.max(m)));
                            }
                        }
                    }
                    Err(e) => {
                        dp.unavailable.get_or_insert_with(|| e.clone());
                    }
                }
                if let Err(e) = &util {
                    dp.unavailable.get_or_insert_with(|| e.clone());
                }
                fold(dp, w.t0, w.t1, &spans);
            }
        }
        self.last_read_s = Some(now());
    }

    /// Take window `id` out, closing at `t1`: read once more up to its end, then extend each
    /// process whose samples reach the end by its last value over the period the driver has
    /// not published yet (bounded by 0..100 %).
    pub fn close(
        &mut self,
        id: u64,
        t1: f64,
        devices: &[SharedDevice],
        now: &dyn Fn() -> f64,
    ) -> Option<WindowProcs> {
        self.windows.get_mut(&id)?.t1 = t1;
        self.read(devices, now);
        let mut w = self.windows.remove(&id)?;
        for dp in w.devices.iter_mut().flatten() {
            finish_tail(dp, w.t0, t1);
        }
        Some(w)
    }
}

/// Place sorted samples on the meter's clock: each covers the time since the process's
/// previous sample, at most one driver period (learnt from the shortest gap).
fn place(
    st: &mut DeviceState,
    samples: &[ProcessUtilSample],
    at: &dyn Fn(&ProcessUtilSample) -> f64,
    t_r: f64,
) -> Vec<Span> {
    let mut prev: HashMap<u32, f64> = samples
        .iter()
        .filter_map(|s| st.last_t.get(&s.pid).map(|t| (s.pid, *t)))
        .collect();
    for s in samples {
        let t = at(s);
        if let Some(prev) = st.last_t.get(&s.pid) {
            let gap = t - prev;
            if gap > 1e-6 {
                st.period_s = Some(st.period_s.map_or(gap, |p| p.min(gap)));
            }
        }
        st.last_t.insert(s.pid, t);
    }
    // rewind and place each sample with the period now known
    let period = st.period_s.unwrap_or(DEFAULT_PROCESS_PERIOD_S);
    let spans = samples
        .iter()
        .map(|s| {
            let b = at(s);
            // a sample covers the time since the process's previous one when that is about
            // a period ago (timestamps placed read by read jitter by microseconds); after a
            // longer gap, one period
            let a = match prev.insert(s.pid, b) {
                Some(p) if b - p <= CONTIGUOUS * period => p,
                _ => b - period,
            };
            Span {
                pid: s.pid,
                a,
                b,
                sm: s.sm_pct,
            }
        })
        .collect();
    st.last_t.retain(|_, t| *t >= t_r - 30.0);
    spans
}

/// The process `pid`'s entry, made (with its command and ancestry) when first seen.
fn entry<'a>(dp: &'a mut DeviceProcs, pid: u32, command: Option<&str>) -> &'a mut ProcAcc {
    dp.procs.entry(pid).or_insert_with(|| ProcAcc {
        command: comm(pid).or_else(|| command.map(str::to_string)),
        ancestors: ancestry(pid),
        visible: std::path::Path::new(&format!("/proc/{pid}")).exists(),
        ..ProcAcc::default()
    })
}

/// `pid`'s command name from `/proc/<pid>/comm`, where readable.
fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_string())
}

/// `pid`'s ancestors, parent first, as far as `/proc` shows them.
fn ancestry(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut p = pid;
    while out.len() < MAX_ANCESTRY {
        match crate::device::parent_of(p) {
            Some(q) if q != 0 && q != p => {
                out.push(q);
                p = q;
            }
            _ => break,
        }
    }
    out
}

/// Fold placed samples into one device of one window over `[t0, t1]`.
fn fold(dp: &mut DeviceProcs, t0: f64, t1: f64, spans: &[Span]) {
    for s in spans {
        let (a, b) = (s.a.max(t0), s.b.min(t1));
        let overlap = b - a;
        if overlap <= 0.0 {
            continue;
        }
        let width = s.b - s.a;
        let acc = entry(dp, s.pid, None);
        let estimate = s.sm * overlap;
        acc.sm_pct_s += estimate;
        acc.sm_err_pct_s += edge_bound(s.sm, width, overlap, estimate);
        if s.b <= t1 {
            acc.last = Some((s.b, s.sm));
        }
        let from = a.max(dp.covered_until.max(t0));
        dp.covered_s += (b - from).max(0.0);
        dp.covered_until = dp.covered_until.max(b);
    }
}

/// The bound on the part of a sample (`sm` % over `width` s) inside the window
/// (`overlap` s of it), estimated as `estimate`: anywhere from all its activity outside to
/// all inside, within 0..100 % at each instant.
fn edge_bound(sm: f64, width: f64, overlap: f64, estimate: f64) -> f64 {
    if overlap >= width - 1e-12 {
        return 0.0;
    }
    let total = sm * width;
    let upper = total.min(100.0 * overlap);
    let lower = (total - 100.0 * (width - overlap)).max(0.0);
    (upper - estimate).max(estimate - lower)
}

/// The window's last stretch, which the driver has not sampled yet: each process whose last
/// sample ends within a period of `t1` is taken to go on at that value, with the stretch's
/// whole 0..100 % range as its bound.
fn finish_tail(dp: &mut DeviceProcs, t0: f64, t1: f64) {
    let period = dp.period_s;
    let mut reach = dp.covered_until.max(t0);
    for acc in dp.procs.values_mut() {
        let Some((b, sm)) = acc.last else { continue };
        let gap = t1 - b;
        if gap > 1e-12 && gap <= period + 1e-9 {
            let estimate = sm * gap;
            acc.sm_pct_s += estimate;
            acc.sm_err_pct_s += estimate.max(100.0 * gap - estimate);
            reach = reach.max(t1);
        }
    }
    if reach > dp.covered_until.max(t0) {
        dp.covered_s += reach - dp.covered_until.max(t0);
        dp.covered_until = reach;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_straddling_sample_is_bounded_by_where_its_activity_could_have_been() {
        // 50 % over 0.2 s, 0.05 s of it inside: 0..0.05×100 inside, estimate 2.5
        let e = 50.0 * 0.05;
        assert!((edge_bound(50.0, 0.2, 0.05, e) - 2.5).abs() < 1e-12);
        assert_eq!(edge_bound(50.0, 0.2, 0.2, 10.0), 0.0);
    }

    #[test]
    fn samples_fold_clipped_to_the_window_and_cover_it_once() {
        let mut dp = DeviceProcs {
            period_s: 0.2,
            ..DeviceProcs::default()
        };
        let spans = [
            Span {
                pid: 1,
                a: 0.8,
                b: 1.0,
                sm: 40.0,
            },
            Span {
                pid: 2,
                a: 0.8,
                b: 1.0,
                sm: 20.0,
            },
            Span {
                pid: 1,
                a: 1.0,
                b: 1.2,
                sm: 40.0,
            },
            Span {
                pid: 2,
                a: 1.0,
                b: 1.2,
                sm: 20.0,
            },
        ];
        fold(&mut dp, 0.9, f64::INFINITY, &spans);
        assert!((dp.procs[&1].sm_pct_s - 40.0 * 0.3).abs() < 1e-9);
        assert!((dp.procs[&2].sm_pct_s - 20.0 * 0.3).abs() < 1e-9);
        assert!((dp.covered_s - 0.3).abs() < 1e-9);
        finish_tail(&mut dp, 0.9, 1.25);
        assert!((dp.procs[&1].sm_pct_s - 40.0 * 0.35).abs() < 1e-9);
        assert!((dp.covered_s - 0.35).abs() < 1e-9);
    }
}
