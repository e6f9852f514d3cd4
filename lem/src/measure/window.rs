//! Windows: the `EnergyScope` guard and the `OpenWindow` it holds, what is read at each end,
//! and closing a window into a report (accounting each device, then the totals).

use std::borrow::Cow;
use std::sync::atomic::Ordering;

use crate::base::clock::at_middle;

use super::accounting::fold::TotalPeak;
use super::accounting::stream::{DeviceClose, DeviceStream, Folded, WindowStream};
use super::accounting::throttle::thermal_summary;
use super::accounting::{account, account_folded, DeviceWindow};
use super::attribution::share::attribute;
use super::baseline::BaselineMode;
use super::meter::Meter;
use super::sampler::Closed;
use crate::device::{Reading, Sample, Violations};
use crate::error::{Error, Result};
use crate::results::report::{
    combine_methods, BaselineMethod, DeviceReport, EnergyMethod, EnergyReport, EnergySummary,
    SamplingSummary, ThrottleEvent, TotalPower, SCHEMA_VERSION,
};

/// What was read from one device at a window's start.
#[derive(Debug, Clone, Copy)]
pub(super) struct DeviceStart {
    /// When this device's counter was read, clock s: its window starts here.
    pub(super) t_s: f64,
    pub(super) e0: Option<f64>,
    /// The counter read at the start failed.
    pub(super) e0_failed: bool,
    pub(super) temp0: Option<f64>,
    pub(super) viol0: Option<Violations>,
    pub(super) edge0: Option<Reading>,
}

impl Meter {
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
        // The window starts before the first device is read; each device's own span starts
        // at its own counter read, so that energy, duration and baseline cover one span.
        let t0 = self.clock.now().as_secs_f64();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shared = self.sampler.shared();
        // slow reads at the start (a GPU that takes seconds to answer) must not let the
        // sampler drop what the window needs before it is registered
        shared.opening(id, t0);
        for d in &self.devices {
            let info = d.info();
            let (e0, t_s) = at_middle(self.clock.as_ref(), || {
                if info.energy_counter {
                    d.energy_j().ok()
                } else {
                    None
                }
            });
            let e0_failed = info.energy_counter && e0.is_none();
            failed_here += u64::from(e0_failed);
            starts.push(DeviceStart {
                t_s,
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
        // the window starts at the first device's read, so that a single device's span and
        // the window's are one
        let t0 = starts.iter().map(|s| s.t_s).reduce(f64::min).unwrap_or(t0);
        shared.register(self.window_stream(id, t0, &starts));
        shared
            .processes()
            .open(id, t0, vec![std::process::id()], self.devices.len());
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
        let report = self.close_window_unobserved(window)?;
        self.observe(&report);
        Ok(report)
    }

    /// [`close_window`](Self::close_window) without telling the window observer.
    pub(super) fn close_window_unobserved(&self, window: OpenWindow) -> Result<EnergyReport> {
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
            self.sampler.shared().processes().forget(window.id);
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

    /// Close `scope` (after the sync hook) and account every device over it.
    pub(super) fn finish_scope(&self, scope: &OpenWindow) -> EnergyReport {
        if let Some(s) = &self.sync {
            s();
        }
        let t1 = self.clock.now().as_secs_f64();
        let (ends, failed_at_end) = self.read_ends();
        self.finish_with_ends(scope, t1, ends, failed_at_end)
    }

    /// Account `scope` up to the end readings `ends` (read at about `t1`).
    pub(super) fn finish_with_ends(
        &self,
        scope: &OpenWindow,
        t1: f64,
        ends: Vec<DeviceEnd>,
        failed_at_end: u64,
    ) -> EnergyReport {
        // the window ends at the last device's read
        let t1 = edge_time(&ends, t1);
        let closed = self.sampler.shared().close(scope.id, t1);
        let procs = self.close_processes(scope.id, t1);
        let (rounds, failed_total, peak_w) = closed
            .as_ref()
            .map_or((0, self.sampler.shared().failed_reads(), None), |c| {
                (c.rounds, c.failed_reads, c.peak_w)
            });
        let t0 = scope.t0;
        let duration = (t1 - t0).max(0.0);

        let mut warnings: Vec<String> = self.notices.clone();
        let (devices, events) = self.account_devices(scope, t1, &ends, closed, &mut warnings);
        let energy = self.energy_summary(&devices, &mut warnings);
        let attribution = procs.and_then(|p| attribute(&p, &devices, duration, &mut warnings));
        let thermal = thermal_summary(&devices, events);
        let sampling = self.sampling_summary(
            duration,
            rounds,
            failed_total.saturating_sub(scope.failed0) + scope.failed_here + failed_at_end,
            &mut warnings,
        );
        // each device's mean over its own span, summed: the devices' spans differ by their
        // read times, so the total energy over the union of spans would read low
        let device_means: Option<f64> = devices.iter().map(|d| d.power.mean_w).sum();
        let power = TotalPower {
            mean_w: energy
                .raw_j
                .and(device_means.filter(|_| !devices.is_empty())),
            peak_w,
        };
        EnergyReport {
            schema_version: SCHEMA_VERSION.to_string(),
            name: scope.name.to_string(),
            start_s: t0 - self.origin_s,
            duration_s: duration,
            simulated: self.is_simulated(),
            energy,
            power,
            devices,
            thermal,
            sampling,
            warnings,
            attribution,
        }
    }

    /// What window `id`, starting at `t0`, keeps of its samples as they are taken.
    pub(super) fn window_stream(&self, id: u64, t0: f64, starts: &[DeviceStart]) -> WindowStream {
        let interval = self.interval.as_secs_f64();
        let average = crate::measure::accounting::POWER_AVERAGE_S;
        // Samples from a little before the window too: the counter's staleness at the start
        // depends on the power during the update period before it.
        let lookback_s =
            self.counter_updates.iter().map(|c| c.0).fold(0.0, f64::max) + interval + average;
        let mut w = WindowStream {
            id,
            t0,
            lookback_s,
            devices: Vec::with_capacity(self.devices.len()),
            rounds: 0,
            peak: TotalPeak::new(self.devices.len()),
        };
        self.restart_stream(&mut w, t0, starts);
        w
    }

    /// Make `w` (a window's stream from an earlier window) the stream of a window starting at
    /// `t0` (`starts`), keeping its id and its memory.
    pub(super) fn restart_stream(&self, w: &mut WindowStream, t0: f64, starts: &[DeviceStart]) {
        // the first moments after the start stay raw: the power average's range and the
        // nearest readings
        let head_s =
            crate::measure::accounting::POWER_AVERAGE_S + 2.0 * self.interval.as_secs_f64();
        w.t0 = t0;
        w.rounds = 0;
        w.peak = TotalPeak::new(self.devices.len());
        w.devices.clear();
        w.devices
            .extend(
                self.devices
                    .iter()
                    .zip(starts)
                    .zip(&self.sensors)
                    .map(|((d, st), sensor)| {
                        let index = d.info().index;
                        DeviceStream::new(index, st.t_s, st.edge0.as_ref(), sensor.period_s, head_s)
                    }),
            );
    }

    /// Read every device at the window's end: the counter (or the power, for devices
    /// without one), the edge power and the violation counters; and how many reads failed.
    pub(super) fn read_ends(&self) -> (Vec<DeviceEnd>, u64) {
        let mut failed = 0;
        let ends = self
            .devices
            .iter()
            .map(|d| {
                let mut end = DeviceEnd::default();
                if d.info().energy_counter {
                    let (read, t_s) = at_middle(self.clock.as_ref(), || d.energy_j());
                    match read {
                        Ok(e) => end.e1 = Some(e),
                        Err(e) => end.failure = Some(e),
                    }
                    end.t_s = t_s;
                    match d.power_reading() {
                        Ok(r) => end.edge = Some(r),
                        Err(_) => failed += 1,
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
                    end.t_s = self.clock.now().as_secs_f64();
                }
                failed += u64::from(end.failure.is_some());
                end.violations = d.violations();
                end
            })
            .collect();
        (ends, failed)
    }

    /// Account each device over `[scope.t0, t1]`: the device reports and throttle events;
    /// their warnings go to `warnings`.
    fn account_devices(
        &self,
        scope: &OpenWindow,
        t1: f64,
        ends: &[DeviceEnd],
        closed: Option<Closed>,
        warnings: &mut Vec<String>,
    ) -> (Vec<DeviceReport>, Vec<ThrottleEvent>) {
        let mut devices = Vec::with_capacity(self.devices.len());
        let mut events = Vec::new();
        let parts = self.each_device(scope, t1, ends, closed, |w, folded| match folded {
            None => account(w),
            Some(f) => account_folded(w, f),
        });
        for (rep, ev, warn) in parts {
            devices.push(rep);
            events.extend(ev);
            warnings.extend(warn);
        }
        (devices, events)
    }

    /// Each device over `[scope.t0, t1]` as `f` accounts it, given the device's window and,
    /// for a window whose middle was folded as it was sampled, the folded sums.
    pub(super) fn each_device<R>(
        &self,
        scope: &OpenWindow,
        t1: f64,
        ends: &[DeviceEnd],
        closed: Option<Closed>,
        mut f: impl FnMut(&DeviceWindow<'_>, Option<Folded>) -> R,
    ) -> Vec<R> {
        let mut out = Vec::with_capacity(self.devices.len());
        let (samples, mut streams) = match closed {
            Some(c) => (c.samples, c.stream.devices.into_iter().map(Some).collect()),
            None => (Vec::new(), Vec::new()),
        };
        let mut mine = Vec::new();
        for (i, (start, end)) in scope.starts.iter().zip(ends).enumerate() {
            let stream: Option<DeviceStream> = streams.get_mut(i).and_then(Option::take);
            out.push(self.device_window(i, start, end, t1, stream, &samples, &mut mine, &mut f));
        }
        out
    }

    /// Device `i`'s part of a window (or of a group's stretch) from its reads `start` to its
    /// reads `end` (the window ending at `t1`), handed to `f` as the accounting sees it: its
    /// samples at hand raw (`stream`'s head, then this device's of `samples`, gathered in
    /// `mine`), whether it was lost, and what `stream` folded when the window outgrew them.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn device_window<R>(
        &self,
        i: usize,
        start: &DeviceStart,
        end: &DeviceEnd,
        t1: f64,
        stream: Option<DeviceStream>,
        samples: &[Sample],
        mine: &mut Vec<Sample>,
        f: impl FnOnce(&DeviceWindow<'_>, Option<Folded>) -> R,
    ) -> R {
        let info = self.devices[i].info();
        // the samples at hand raw: the window's head, then those still in the buffer
        mine.clear();
        mine.extend_from_slice(stream.as_ref().map_or(&[][..], |s| s.head()));
        mine.extend(samples.iter().filter(|s| s.device == info.index));
        // A device that fails at the window's end is lost for this window if the sampler
        // has seen it failing since some earlier time, or it says it is lost; a single
        // failed read with good samples around it is transient (integration covers it).
        let lost = end.failure.as_ref().and_then(|e| {
            self.sampler
                .shared()
                .down_since(i)
                .or_else(|| matches!(e, Error::DeviceLost { .. }).then(|| (t1, e.to_string())))
        });
        let b = self.baselines.get(i);
        let w = DeviceWindow {
            info,
            // this device's own span: from its counter read at the start to the one at the
            // end (energy, duration and baseline subtraction all cover it)
            t0: start.t_s,
            t1: end.t_s,
            e0: start.e0,
            e1: end.e1,
            temp0: start.temp0,
            violations: start.viol0.zip(end.violations),
            samples: mine,
            edges: start.edge0.zip(end.edge),
            lost,
            interval_s: self.interval.as_secs_f64(),
            counter_update: &self.counter_updates[i],
            baseline_uncertainty_w: b.and_then(|b| {
                // its age at the meter's start (cached) plus the meter's time since
                let age = b.cache_age_s.unwrap_or(0.0) + (end.t_s - self.origin_s);
                b.uncertainty_w(self.counter_updates[i].0, age)
            }),
            counter_failed: (start.e0_failed, info.energy_counter && end.e1.is_none()),
            baseline_w: b.and_then(|b| b.power_w),
            baseline_method: b.map_or(BaselineMethod::Unavailable, |b| b.method),
            sensor: &self.sensors[i],
        };
        let folded = stream.filter(|s| !s.is_whole()).map(|stream| {
            let tail = &mine[stream.head().len()..];
            stream.finish(
                tail,
                DeviceClose {
                    t1: end.t_s,
                    edges: w.edges.is_some(),
                    edge1: end.edge.as_ref(),
                    lost_at: w.lost.as_ref().map(|l| l.0),
                },
            )
        });
        f(&w, folded)
    }

    /// The window's energy over all devices: totals (unknown if any part is), the method
    /// they share, and the baseline they were adjusted with.
    fn energy_summary(
        &self,
        devices: &[DeviceReport],
        warnings: &mut Vec<String>,
    ) -> EnergySummary {
        let all = |f: &dyn Fn(&DeviceReport) -> Option<f64>| -> Option<f64> {
            if devices.is_empty() {
                return None;
            }
            devices.iter().map(f).sum::<Option<f64>>()
        };
        let raw_j = all(&|d| d.energy.raw_j);
        let adjusted_j = all(&|d| d.energy.adjusted_j);
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
        EnergySummary {
            raw_j,
            adjusted_j,
            baseline_power_w: all(&|d| d.energy.baseline_power_w),
            baseline_method,
            baseline_timestamp: oldest.and_then(|b| b.timestamp.clone()),
            baseline_cache_age_s: self
                .baselines
                .iter()
                .filter_map(|b| b.cache_age_s)
                .reduce(f64::max),
            method,
            uncertainty_j: raw_j.and(all(&|d| d.energy.uncertainty_j)),
            adjusted_uncertainty_j: adjusted_j.and(all(&|d| d.energy.adjusted_uncertainty_j)),
            uncertainty_method: combine_methods(
                devices.iter().map(|d| d.energy.uncertainty_method),
            ),
            below_resolution: devices.iter().any(|d| d.energy.below_resolution),
            shared: None,
        }
    }

    /// Sampling rounds against the expected number (with a warning when the sampler fell
    /// behind) and failed reads.
    fn sampling_summary(
        &self,
        duration: f64,
        rounds: u64,
        failed_reads: u64,
        warnings: &mut Vec<String>,
    ) -> SamplingSummary {
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
        SamplingSummary {
            interval_ms: interval_s * 1000.0,
            sample_count: rounds,
            expected_sample_count: expected,
            failed_reads,
        }
    }
}

/// What was read from one device at a window's end.
#[derive(Debug, Default)]
pub(super) struct DeviceEnd {
    /// When this device's counter was read at the end, clock s: its window ends here.
    pub(super) t_s: f64,
    pub(super) e1: Option<f64>,
    pub(super) violations: Option<Violations>,
    pub(super) edge: Option<Reading>,
    pub(super) failure: Option<Error>,
}

/// An open window that does not borrow its meter ([`Meter::open_window`]). Dropping it
/// without [`Meter::close_window`] or [`Meter::discard_window`] leaves its samples kept
/// until the meter is dropped.
#[derive(Debug)]
#[must_use = "an open window is measured only when closed with Meter::close_window"]
pub struct OpenWindow {
    pub(super) meter_id: u64,
    pub(super) id: u64,
    pub(super) name: Cow<'static, str>,
    pub(super) t0: f64,
    pub(super) failed0: u64,
    /// Reads that failed at the window's start (not the sampler's).
    pub(super) failed_here: u64,
    pub(super) starts: Vec<DeviceStart>,
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
    pub(super) meter: &'m Meter,
    /// `None` once finished.
    pub(super) window: Option<OpenWindow>,
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

/// The time of the last device read of `ends` (`now` without devices): where a window
/// those reads end, ends.
pub(super) fn edge_time(ends: &[DeviceEnd], now: f64) -> f64 {
    ends.iter().map(|e| e.t_s).reduce(f64::max).unwrap_or(now)
}
