//! The background sampler: a named thread that reads every device at a fixed interval on
//! the monotonic clock, keeps the samples that open scopes still need, and hands each round
//! to the time-series writer (its own thread) when a time series is recorded.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
    /// Open scopes: (id, start time).
    active: Vec<(u64, f64)>,
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
        // Keep what open scopes need (plus a little before their start: the state at the
        // window's left edge, and the power during the counter update period and the 1 s
        // power average before it) or, with none open, only that much history.
        let margin = 2.0 * self.interval.as_secs_f64() + LOOKBACK_S;
        let horizon = match b.active.iter().map(|(_, s)| *s).reduce(f64::min) {
            Some(oldest) => oldest - margin,
            None => round_t - margin,
        };
        while b.samples.len() > 1 && b.samples.front().is_some_and(|s| s.t_s < horizon) {
            b.samples.pop_front();
        }
        while b.rounds.front().is_some_and(|t| *t < horizon) {
            b.rounds.pop_front();
        }
    }

    pub(crate) fn register(&self, id: u64, start_s: f64) {
        lock(&self.buf).active.push((id, start_s));
    }

    pub(crate) fn unregister(&self, id: u64) {
        lock(&self.buf).active.retain(|(i, _)| *i != id);
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

    /// Close window `id`: its samples (as [`window_with_lookback`](Self::window_with_lookback))
    /// read and the window unregistered under one lock, so that no sampling round can prune
    /// the window's early samples between the two.
    pub(crate) fn close(
        &self,
        id: u64,
        from_s: f64,
        to_s: f64,
        lookback_s: f64,
    ) -> (Vec<Sample>, u64, u64) {
        let mut b = lock(&self.buf);
        let out = self.collect(&b, from_s, to_s, lookback_s);
        b.active.retain(|(i, _)| *i != id);
        out
    }

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

    /// Since when, and why, device `i` (by position) has failed every read, if it has.
    pub(crate) fn down_since(&self, i: usize) -> Option<(f64, String)> {
        lock(&self.buf).down.get(i).cloned().flatten()
    }

    /// Send every round from now on to `stream` (or nowhere).
    pub(crate) fn set_stream(&self, stream: Option<StreamSender>) {
        *lock(&self.stream) = stream;
    }

    pub(crate) fn failed_reads(&self) -> u64 {
        lock(&self.buf).failed_reads
    }
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

    #[test]
    fn closing_reads_the_window_before_a_round_can_prune_it() {
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
        sh.register(1, 0.0);
        sh.register(2, 0.0);
        tick(100);
        // unregistered first, a round in between prunes everything older than ~2 s
        sh.unregister(1);
        let (kept, _, _) = sh.window(0.0, 10.0);
        assert!(kept.len() >= 100, "{}", kept.len());
        sh.unregister(2);
        tick(1);
        let (pruned, _, _) = sh.window(0.0, 10.1);
        assert!(
            pruned.len() < 30,
            "a round after unregistering prunes: {}",
            pruned.len()
        );
        // close() reads and unregisters under one lock: nothing can run in between
        sh.register(3, 10.1);
        tick(100);
        let (closed, _, _) = sh.close(3, 10.1, 20.1, 0.0);
        tick(1);
        assert!(closed.len() >= 100, "{}", closed.len());
        assert!(sh.window(10.1, 20.1).0.len() < 30, "and it is unregistered");
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
        sh.register(1, 1.0);
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
        s.shared().register(7, 0.0);
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
