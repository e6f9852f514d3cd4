//! The background sampler: a named thread that reads every device at a fixed interval on
//! the monotonic clock, keeps the samples that open scopes still need, and hands each round
//! to the time-series writer (its own thread) when a time series is recorded.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::accounting::stream::WindowStream;
use super::attribution::ProcessTracker;
use crate::base::clock::Clock;
use crate::device::{Sample, SharedDevice};
use crate::error::{Error, Result};
use crate::results::timeseries::writer::StreamSender;

/// Shortest allowed sampling interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(1);
/// Longest allowed sampling interval.
pub const MAX_INTERVAL: Duration = Duration::from_secs(10);
/// Default sampling interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);

/// Check a sampling interval; `field` names the option in the error.
///
/// # Errors
/// [`Error::InvalidConfig`] when outside 1 ms ..= 10 s.
pub fn validate_interval(field: &str, d: Duration) -> Result<Duration> {
    if d < MIN_INTERVAL || d > MAX_INTERVAL {
        return Err(Error::config(
            field,
            format!(
                "{} ms is outside 1 ms ..= 10000 ms",
                d.as_secs_f64() * 1000.0
            ),
        ));
    }
    Ok(d)
}

/// History kept before the oldest open scope (beyond two intervals), s: covers a counter
/// update period (≤ 1 s) and a 1-second power average.
pub const LOOKBACK_S: f64 = 2.0;

#[derive(Debug, Default)]
struct Buffer {
    samples: VecDeque<Sample>,
    /// Clock times of completed sampling rounds still in `samples`' time range.
    rounds: VecDeque<f64>,
    failed_reads: u64,
    total_rounds: u64,
    /// Keep every sample an open window needs until it closes, and account it then (the
    /// reference the folded accounting is tested against; memory grows with the window).
    retain_windows: bool,
    /// How long samples stay here before open windows fold them, s (at least the margin
    /// below).
    tail_s: f64,
    /// Open windows by id, each with what it folded of the samples that left (opening and
    /// closing one is O(log n) in the open windows).
    active: std::collections::BTreeMap<u64, WindowStream>,
    /// Windows being opened (their devices still being read): (id, start time). Nothing
    /// from their look-back on leaves the buffer until they are registered, however slow
    /// the reads at their start.
    opening: Vec<(u64, f64)>,
    /// Per device (by position): since when, and why, it has failed every read (cleared by
    /// the next good read).
    down: Vec<Option<(f64, String)>>,
}

#[derive(Debug, Default)]
struct Control {
    stop: bool,
    exited: bool,
}

/// State shared between the sampler thread, the meter and its scopes.
#[derive(Debug)]
pub(crate) struct Shared {
    buf: Mutex<Buffer>,
    ctl: Mutex<Control>,
    cv: Condvar,
    devices: Vec<SharedDevice>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    /// Where each round's samples go to be written (the time series), if anywhere: handed
    /// over without waiting; the writer runs on its own thread.
    stream: Mutex<Option<StreamSender>>,
    /// Who used the devices: process reads folded into the open windows (`attribution`).
    procs: Mutex<ProcessTracker>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The protected data stays consistent even if a holder panicked (every update is a push
    // or a counter increment), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Read every device once and store the results.
    pub(crate) fn sample_round(&self) {
        let mut got: [Option<Sample>; 16] = [None; 16];
        let mut extra: Vec<Sample> = Vec::new();
        // Allocated only when a device fails.
        let mut down: Vec<(usize, f64, String)> = Vec::new();
        let mut failed = 0;
        for (i, d) in self.devices.iter().enumerate() {
            let t_s = self.clock.now().as_secs_f64();
            match d.read() {
                Ok(reading) => {
                    failed += u64::from(reading.failed_fields);
                    let nothing = reading.failed_fields > 0
                        && reading.power_w.is_none()
                        && reading.temperature_c.is_none()
                        && reading.memory_used_mb.is_none()
                        && reading.throttle.is_none();
                    if nothing {
                        down.push((i, t_s, "every read failed".into()));
                        continue;
                    }
                    let s = Sample {
                        t_s,
                        device: d.info().index,
                        reading,
                    };
                    if i < got.len() {
                        got[i] = Some(s);
                    } else {
                        extra.push(s);
                    }
                }
                Err(e) => {
                    failed += 1;
                    down.push((i, t_s, e.to_string()));
                }
            }
        }
        let round_t = self.clock.now().as_secs_f64();
        if let Some(tx) = lock(&self.stream).as_ref() {
            tx.send_round(got.iter().flatten().chain(&extra).copied().collect());
        }
        let mut b = lock(&self.buf);
        if b.down.len() < self.devices.len() {
            b.down.resize(self.devices.len(), None);
        }
        for (i, s) in got.iter().enumerate() {
            if s.is_some() {
                b.down[i] = None;
            }
        }
        for s in &extra {
            if let Some(i) = self.devices.iter().position(|d| d.info().index == s.device) {
                b.down[i] = None;
            }
        }
        for (i, t, why) in down {
            if b.down[i].is_none() {
                b.down[i] = Some((t, why));
            }
        }
        b.samples.extend(got.iter().flatten().copied());
        b.samples.extend(extra);
        b.failed_reads += failed;
        b.total_rounds += 1;
        b.rounds.push_back(round_t);
        self.prune(&mut b, round_t);
        drop(b);
        let mut procs = lock(&self.procs);
        if procs.due(round_t) {
            procs.read(&self.devices, &|| self.clock.now().as_secs_f64());
        }
    }

    /// The process reads of the open windows.
    pub(crate) fn processes(&self) -> MutexGuard<'_, ProcessTracker> {
        lock(&self.procs)
    }

    /// The sampled devices.
    pub(crate) fn devices(&self) -> &[SharedDevice] {
        &self.devices
    }

    /// Let samples older than the buffer's span (the last `tail_s`, at least a little
    /// history: the state at a window's left edge, and the power during the counter update
    /// period and the 1 s power average before it) go, each folded into the open windows.
    fn prune(&self, b: &mut Buffer, round_t: f64) {
        let margin = 2.0 * self.interval.as_secs_f64() + LOOKBACK_S;
        let mut horizon = round_t - margin.max(b.tail_s);
        for (_, t0) in &b.opening {
            horizon = horizon.min(t0 - margin);
        }
        if b.retain_windows {
            for w in b.active.values() {
                horizon = horizon.min(w.t0 - margin);
                for d in &w.devices {
                    horizon = horizon.min(d.from);
                }
            }
        }
        let Buffer {
            samples,
            rounds,
            active,
            ..
        } = b;
        while samples.len() > 1 && samples.front().is_some_and(|s| s.t_s < horizon) {
            let Some(s) = samples.pop_front() else { break };
            if !active.is_empty() {
                let position = self.position(s.device);
                for w in active.values_mut() {
                    w.take(position, &s);
                }
            }
        }
        while let Some(t) = rounds.front().copied().filter(|t| *t < horizon) {
            rounds.pop_front();
            for w in active.values_mut() {
                w.take_round(t);
            }
        }
    }

    /// A device's position among the sampled devices, from its index.
    fn position(&self, device: u32) -> usize {
        self.devices
            .iter()
            .position(|d| d.info().index == device)
            .unwrap_or(usize::MAX)
    }

    /// Hold back what a window that starts at `t0` will need while its devices are read.
    pub(crate) fn opening(&self, id: u64, t0: f64) {
        lock(&self.buf).opening.push((id, t0));
    }

    /// Open window `w`: the samples it reads start with each device's last one before
    /// `w.t0 - w.lookback_s` (at most [`LOOKBACK_S`]).
    pub(crate) fn register(&self, mut w: WindowStream) {
        let mut b = lock(&self.buf);
        b.opening.retain(|(i, _)| *i != w.id);
        self.place(&b.samples, &mut w);
        b.active.insert(w.id, w);
    }

    /// Where each device's samples start for `w`: its last sample before `w`'s look-back.
    fn place(&self, samples: &VecDeque<Sample>, w: &mut WindowStream) {
        let from = w.t0 - w.lookback_s.clamp(0.0, LOOKBACK_S);
        let first_inside = samples.partition_point(|s| s.t_s < from);
        for (i, d) in w.devices.iter_mut().enumerate() {
            let idx = w_index(&self.devices, i);
            d.from = samples
                .range(..first_inside)
                .rev()
                .find(|s| Some(s.device) == idx)
                .map_or(from, |s| s.t_s);
        }
    }

    /// Cut the open window `next.id` where `next` starts and go on with it as `next`, under
    /// one lock: the part that ends at `t1` is returned, with what it folded, and its samples
    /// still in the buffer (at or before `t1`, from each device's start) are put in
    /// `samples`, emptied first. Nothing is added to or removed from the open windows (a
    /// group's stretches, one after another, cost a lookup each); `None`, with `next`
    /// registered, when no window `next.id` was open.
    pub(crate) fn cut(
        &self,
        mut next: WindowStream,
        t1: f64,
        samples: &mut Vec<Sample>,
    ) -> Option<WindowStream> {
        samples.clear();
        let mut guard = lock(&self.buf);
        let b = &mut *guard;
        self.place(&b.samples, &mut next);
        let Some(slot) = b.active.get_mut(&next.id) else {
            b.active.insert(next.id, next);
            return None;
        };
        let old = std::mem::replace(slot, next);
        let from = old
            .devices
            .iter()
            .map(|d| d.from)
            .fold(f64::INFINITY, f64::min);
        let first = b.samples.partition_point(|s| s.t_s < from);
        for s in b.samples.range(first..).filter(|s| s.t_s <= t1) {
            let from = old.devices.get(self.position(s.device)).map(|d| d.from);
            if from.is_some_and(|f| s.t_s >= f) {
                samples.push(*s);
            }
        }
        Some(old)
    }

    pub(crate) fn unregister(&self, id: u64) {
        lock(&self.buf).active.remove(&id);
    }

    /// Close window `id` at `t1`: what it folded, and its samples still here, taken and the
    /// window unregistered under one lock (no round can fold or drop any in between).
    pub(crate) fn close(&self, id: u64, t1: f64) -> Option<Closed> {
        let mut b = lock(&self.buf);
        let w = b.active.remove(&id)?;
        let mut peak = w.peak;
        let mut samples = Vec::new();
        for s in b.samples.iter().filter(|s| s.t_s <= t1) {
            let from = w.devices.get(self.position(s.device)).map(|d| d.from);
            if from.is_some_and(|f| s.t_s >= f) {
                samples.push(*s);
            }
            if s.t_s >= w.t0 {
                peak.push(s.device, s.reading.power_w);
            }
        }
        let inside = b.rounds.iter().filter(|t| **t >= w.t0 && **t <= t1).count();
        Some(Closed {
            rounds: w.rounds + inside as u64,
            failed_reads: b.failed_reads,
            peak_w: peak.finish(),
            samples,
            stream: w,
        })
    }

    #[cfg(test)]
    /// Samples of every device from just before `from_s` (the last one per device before it)
    /// up to `to_s`, with the number of rounds inside the window and failed reads so far.
    pub(crate) fn window(&self, from_s: f64, to_s: f64) -> (Vec<Sample>, u64, u64) {
        self.window_with_lookback(from_s, to_s, 0.0)
    }

    #[cfg(test)]
    /// [`window`](Self::window), with every sample from `lookback_s` (≤ [`LOOKBACK_S`])
    /// before `from_s` as well; rounds still count from `from_s`.
    pub(crate) fn window_with_lookback(
        &self,
        from_s: f64,
        to_s: f64,
        lookback_s: f64,
    ) -> (Vec<Sample>, u64, u64) {
        self.collect(&lock(&self.buf), from_s, to_s, lookback_s)
    }

    #[cfg(test)]
    fn collect(
        &self,
        b: &Buffer,
        from_s: f64,
        to_s: f64,
        lookback_s: f64,
    ) -> (Vec<Sample>, u64, u64) {
        let first_inside = b
            .samples
            .partition_point(|s| s.t_s < from_s - lookback_s.clamp(0.0, LOOKBACK_S));
        let mut out: Vec<Sample> = Vec::new();
        // the last sample of each device before the window
        for d in &self.devices {
            let idx = d.info().index;
            if let Some(s) = b
                .samples
                .range(..first_inside)
                .rev()
                .find(|s| s.device == idx)
            {
                out.push(*s);
            }
        }
        out.extend(
            b.samples
                .range(first_inside..)
                .take_while(|s| s.t_s <= to_s),
        );
        let rounds = b
            .rounds
            .iter()
            .filter(|t| **t >= from_s && **t <= to_s)
            .count() as u64;
        (out, rounds, b.failed_reads)
    }

    /// Append every sample taken after `after_s` that is still in the buffer (its last few
    /// seconds) to `out`, in time order.
    pub(crate) fn samples_after(&self, after_s: f64, out: &mut Vec<Sample>) {
        let b = lock(&self.buf);
        let first = b.samples.partition_point(|s| s.t_s <= after_s);
        out.extend(b.samples.range(first..));
    }

    /// Since when, and why, device `i` (by position) has failed every read, if it has.
    pub(crate) fn down_since(&self, i: usize) -> Option<(f64, String)> {
        lock(&self.buf).down.get(i).cloned().flatten()
    }

    /// Send every round from now on to `stream` (or nowhere).
    pub(crate) fn set_stream(&self, stream: Option<StreamSender>) {
        *lock(&self.stream) = stream;
    }

    /// Keep every sample of open windows until they close (see `Buffer::retain_windows`).
    pub(crate) fn set_retain_windows(&self, retain: bool) {
        lock(&self.buf).retain_windows = retain;
    }

    /// Keep samples this long before folding them into open windows, s.
    pub(crate) fn set_tail_s(&self, tail_s: f64) {
        lock(&self.buf).tail_s = tail_s;
    }

    pub(crate) fn failed_reads(&self) -> u64 {
        lock(&self.buf).failed_reads
    }
}

/// The index of the device at `position`.
fn w_index(devices: &[SharedDevice], position: usize) -> Option<u32> {
    devices.get(position).map(|d| d.info().index)
}

/// A closed window: what it folded, and its samples that had not left the buffer yet.
#[derive(Debug)]
pub(crate) struct Closed {
    /// The window's samples still in the buffer, up to its end, in the order taken.
    pub samples: Vec<Sample>,
    /// Sampling rounds inside the window.
    pub rounds: u64,
    /// Failed reads so far (the meter's whole life).
    pub failed_reads: u64,
    /// The highest total power of a round inside the window in which every device answered.
    pub peak_w: Option<f64>,
    pub stream: WindowStream,
}

/// A background sampling thread; dropping it stops the thread (waiting at most about one
/// interval plus a second, never forever).
#[derive(Debug)]
pub(crate) struct Sampler {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Create the sampler; with a real-time clock and at least one device, start its thread.
    pub(crate) fn start(
        devices: Vec<SharedDevice>,
        clock: Arc<dyn Clock>,
        interval: Duration,
    ) -> Result<Self> {
        let spawn = clock.is_real_time() && !devices.is_empty();
        let shared = Arc::new(Shared {
            buf: Mutex::new(Buffer::default()),
            ctl: Mutex::new(Control::default()),
            cv: Condvar::new(),
            devices,
            clock,
            interval,
            stream: Mutex::new(None),
            procs: Mutex::new(ProcessTracker::default()),
        });
        let handle = if spawn {
            let s = shared.clone();
            Some(
                std::thread::Builder::new()
                    .name("lem-sampler".into())
                    .spawn(move || run(&s))
                    .map_err(|e| Error::Device {
                        device: "sampler".into(),
                        reason: format!("cannot start the sampler thread: {e}"),
                    })?,
            )
        } else {
            None
        };
        Ok(Self { shared, handle })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Whether a background thread samples on its own.
    pub(crate) fn is_running(&self) -> bool {
        self.handle.is_some()
    }

    fn stop(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        let mut ctl = lock(&self.shared.ctl);
        ctl.stop = true;
        self.shared.cv.notify_all();
        // A device read can hang (a GPU falling off the bus); do not hang with it.
        let limit = self.shared.interval + Duration::from_secs(1);
        let (ctl, _) = self
            .shared
            .cv
            .wait_timeout_while(ctl, limit, |c| !c.exited)
            .unwrap_or_else(|p| p.into_inner());
        let exited = ctl.exited;
        drop(ctl);
        if exited {
            let _ = handle.join();
        }
        // otherwise the thread is detached; it exits at its next wake-up.
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(s: &Shared) {
    let mut next = Instant::now();
    loop {
        s.sample_round();
        next += s.interval;
        let now = Instant::now();
        if next < now {
            // Fell behind (a slow read): skip the missed slots instead of bursting.
            next = now;
        }
        let ctl = lock(&s.ctl);
        let wait = next.saturating_duration_since(Instant::now());
        let (mut ctl, _) =
            s.cv.wait_timeout_while(ctl, wait, |c| !c.stop)
                .unwrap_or_else(|p| p.into_inner());
        if ctl.stop {
            ctl.exited = true;
            s.cv.notify_all();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::{ManualClock, MonotonicClock};
    use crate::device::{Scenario, SimDevice};
    use std::path::Path;

    fn sim(clock: Arc<dyn Clock>, count: u32) -> Vec<SharedDevice> {
        let s = Scenario::from_json(
            &format!(r#"{{"idle_w": 50, "count": {count}}}"#),
            Path::new("t.json"),
        )
        .unwrap();
        SimDevice::open_all(&s, clock, 0)
            .into_iter()
            .map(|d| Arc::new(d) as SharedDevice)
            .collect()
    }

    #[test]
    fn interval_bounds() {
        assert!(validate_interval("LEM_INTERVAL_MS", Duration::from_micros(500)).is_err());
        assert!(validate_interval("x", Duration::from_secs(11)).is_err());
        assert!(validate_interval("x", Duration::from_millis(1)).is_ok());
        let e = validate_interval("LEM_INTERVAL_MS", Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("LEM_INTERVAL_MS"));
    }

    /// An open window over `n` devices (indices 0..n) from `t0`.
    fn open(id: u64, t0: f64, n: u32) -> WindowStream {
        use crate::measure::accounting::stream::DeviceStream;
        WindowStream {
            id,
            t0,
            lookback_s: 0.0,
            devices: (0..n)
                .map(|i| DeviceStream::new(i, t0, None, 0.0, 1.2))
                .collect(),
            rounds: 0,
            peak: crate::measure::accounting::fold::TotalPeak::new(n as usize),
        }
    }

    #[test]
    fn open_windows_fold_what_leaves_and_the_buffer_keeps_only_its_span() {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
        let devices = sim(clock.clone(), 1);
        let s = Sampler::start(devices, clock.clone(), Duration::from_millis(100)).unwrap();
        let sh = s.shared();
        let tick = |n: usize| {
            for _ in 0..n {
                clock.sleep(Duration::from_millis(100));
                sh.sample_round();
            }
        };
        sh.register(open(1, 0.0, 1));
        sh.register(open(2, 0.0, 1));
        tick(1000);
        // however long a window is open, the buffer holds its span (2 s + two intervals)
        let kept = sh.window(0.0, 1000.0).0.len();
        assert!(kept <= 24, "{kept}");
        sh.unregister(1);
        // the other window counted every round and kept only its head raw
        let c = sh.close(2, 100.05).unwrap();
        assert_eq!(c.rounds, 1000);
        assert!(c.samples.len() <= 24, "{}", c.samples.len());
        let d = &c.stream.devices[0];
        assert!(!d.is_whole());
        assert!(d.head().len() <= 14, "{}", d.head().len());
        assert!(sh.close(2, 100.05).is_none(), "and it is unregistered");
        assert!(lock(&sh.buf).active.is_empty());
    }

    #[test]
    fn manual_rounds_keep_what_open_scopes_need() {
        let clock = Arc::new(ManualClock::new());
        let s = Sampler::start(sim(clock.clone(), 2), clock.clone(), DEFAULT_INTERVAL).unwrap();
        assert!(!s.is_running(), "no thread on a manual clock");
        let sh = s.shared();
        for _ in 0..10 {
            sh.sample_round();
            clock.advance_s(0.1);
        }
        sh.register(open(1, 1.0, 2));
        for _ in 0..10 {
            sh.sample_round();
            clock.advance_s(0.1);
        }
        let (w, rounds, failed) = sh.window(1.0, 1.95);
        assert_eq!(failed, 0);
        assert_eq!(rounds, 10);
        // 10 rounds × 2 devices inside, plus the last sample of each device before 1.0
        assert_eq!(w.len(), 22);
        sh.unregister(1);
        for _ in 0..40 {
            clock.advance_s(0.1);
            sh.sample_round();
        }
        // with no scope open, only the lookback (2 s + two intervals) is kept: 23 rounds
        let (w, _, _) = sh.window(0.0, 100.0);
        assert!(
            w.len() <= 2 * 24,
            "pruned when no scope is open: {}",
            w.len()
        );
        assert!(w.len() >= 2 * 20, "the lookback is kept: {}", w.len());
    }

    #[test]
    fn thread_samples_at_the_interval_and_stops_promptly() {
        let clock: Arc<dyn Clock> = Arc::new(MonotonicClock::new());
        let interval = Duration::from_millis(5);
        let mut s = Sampler::start(sim(clock.clone(), 1), clock.clone(), interval).unwrap();
        assert!(s.is_running());
        s.shared().register(open(7, 0.0, 1));
        // wait (on a condition, not a fixed sleep) until 40 rounds have been taken
        let started = Instant::now();
        while lock(&s.shared().buf).total_rounds < 40 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sampler stalled"
            );
            std::thread::yield_now();
        }
        let elapsed = clock.now().as_secs_f64();
        let (w, rounds, _) = s.shared().window(0.0, elapsed);
        let expected = elapsed / interval.as_secs_f64();
        assert!(
            rounds as f64 <= expected + 2.0,
            "{rounds} rounds in {elapsed} s"
        );
        assert!(w.len() as u64 >= rounds);
        let t = Instant::now();
        s.stop();
        assert!(t.elapsed() < interval + Duration::from_millis(500));
        assert!(lock(&s.shared().ctl).exited);
    }
}
