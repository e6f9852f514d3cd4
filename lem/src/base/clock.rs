//! Monotonic clocks: the real one, and a manual one for deterministic tests and simulations.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonic time source shared by a meter, its sampler and simulated devices.
///
/// `now` is the time since the clock's own epoch. `sleep` waits on this clock: the real clock
/// sleeps the thread, the manual clock advances itself, so code that "waits" (the idle
/// baseline) runs instantly and exactly in tests.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Time elapsed since this clock's epoch.
    fn now(&self) -> Duration;
    /// Wait `d` on this clock.
    fn sleep(&self, d: Duration);
    /// Whether this clock follows real time (a background sampler needs one).
    fn is_real_time(&self) -> bool {
        true
    }
}

/// Run `f` and the moment it happened on `clock`, s: the middle of the call (a read's
/// moment is somewhere inside it).
pub fn at_middle<T>(clock: &dyn Clock, f: impl FnOnce() -> T) -> (T, f64) {
    let before = clock.now().as_secs_f64();
    let out = f();
    (out, (before + clock.now().as_secs_f64()) / 2.0)
}

/// The system's monotonic clock (`std::time::Instant`).
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    epoch: Instant,
}

impl MonotonicClock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// A clock that only moves when told to: exact, deterministic time for tests and
/// simulated runs.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    /// A manual clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Move the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let n = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(n, Ordering::SeqCst);
    }

    /// Move the clock forward by `s` seconds (negative or non-finite values are ignored).
    pub fn advance_s(&self, s: f64) {
        if s.is_finite() && s > 0.0 {
            self.advance(Duration::from_secs_f64(s));
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
    fn sleep(&self, d: Duration) {
        self.advance(d);
    }
    fn is_real_time(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new();
        assert_eq!(c.now(), Duration::ZERO);
        c.advance_s(1.5);
        c.sleep(Duration::from_millis(500));
        assert_eq!(c.now(), Duration::from_secs(2));
        c.advance_s(-3.0);
        assert_eq!(c.now(), Duration::from_secs(2));
        assert!(!c.is_real_time());
    }

    #[test]
    fn monotonic_clock_never_goes_back() {
        let c = MonotonicClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
        assert!(c.is_real_time());
    }
}
