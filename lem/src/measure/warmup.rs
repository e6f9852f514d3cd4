//! Warmup until the per-iteration latency settles: the rolling-window coefficient of
//! variation (population std / mean over the last `window` latencies) must drop below a
//! target, and the window must show no trend. Non-convergence is reported, never an error.
//!
//! The trend test: a latency falling steadily (3.3 % per iteration, say) has a small CV over
//! a short window yet is still moving. Over the window the least-squares slope is tested
//! against the scatter around the line (Student's t, window − 2 degrees of freedom, 95 %);
//! a significant slope whose change across the window exceeds half the target CV keeps the
//! warmup going. A slope too small to matter (under half the target across the window) does
//! not, so a routine with a tiny steady drift still converges.
//!
//! This lives in lem rather than in criterion because criterion's warm-up is a fixed span of
//! wall time and its iteration count is estimated from wall time: it cannot wait for a GPU's
//! clocks, caches and allocator to settle.

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How warmup ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarmupMode {
    /// Until the rolling CV is below the target (or `max_iters`).
    Converge,
    /// A fixed number of iterations.
    Fixed,
}

/// Warmup settings. Defaults: converge, CV 5 %, window 5, at least 5, at most 50 iterations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WarmupConfig {
    /// Converge or fixed.
    pub mode: WarmupMode,
    /// Target coefficient of variation.
    pub cv_threshold: f64,
    /// Rolling window length.
    pub window: usize,
    /// Iterations before convergence is checked.
    pub min_iters: usize,
    /// Give up after this many iterations.
    pub max_iters: usize,
    /// Iterations in fixed mode.
    pub fixed_iters: usize,
}

impl Default for WarmupConfig {
    fn default() -> Self {
        Self {
            mode: WarmupMode::Converge,
            cv_threshold: 0.05,
            window: 5,
            min_iters: 5,
            max_iters: 50,
            fixed_iters: 5,
        }
    }
}

impl WarmupConfig {
    /// Check the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the option.
    pub fn validate(&self) -> Result<()> {
        if !(self.cv_threshold.is_finite() && self.cv_threshold > 0.0) {
            return Err(Error::config(
                "cv",
                format!("must be > 0, got {}", self.cv_threshold),
            ));
        }
        if self.window < 2 {
            return Err(Error::config("window", "must be at least 2"));
        }
        if self.max_iters < self.min_iters.max(self.window) {
            return Err(Error::config(
                "max_warmup",
                format!(
                    "must be at least min_warmup and window ({}), got {}",
                    self.min_iters.max(self.window),
                    self.max_iters
                ),
            ));
        }
        Ok(())
    }
}

/// What warmup did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmupResult {
    /// The CV target was met (always true in fixed mode).
    pub converged: bool,
    /// Iterations run.
    pub iterations: usize,
    /// CV of the last window (of all iterations when fewer); `null` with one iteration.
    pub final_cv: Option<f64>,
    /// The target CV.
    pub target_cv: f64,
    /// Converge or fixed.
    pub mode: WarmupMode,
    /// Every iteration's latency, s.
    pub latencies_s: Vec<f64>,
    /// The last window's least-squares slope as a fraction of its mean latency per
    /// iteration (negative: getting faster); `null` with fewer than 3 iterations.
    #[serde(default)]
    pub final_trend: Option<f64>,
}

/// Population CV of the last `window` values; `None` with fewer values or a zero mean.
pub fn rolling_cv(xs: &[f64], window: usize) -> Option<f64> {
    if window == 0 || xs.len() < window {
        return None;
    }
    crate::results::stats::Summary::of(&xs[xs.len() - window..]).and_then(|s| s.cv)
}

/// The least-squares slope of the last `window` values per step, relative to their mean,
/// and its t statistic against the scatter around the line (infinite for a perfect line
/// with a slope). `None` with fewer than 3 values or a zero mean.
pub fn trend(xs: &[f64], window: usize) -> Option<(f64, f64)> {
    if window < 3 || xs.len() < window {
        return None;
    }
    let ys = &xs[xs.len() - window..];
    let n = window as f64;
    let mx = (n - 1.0) / 2.0;
    let my = ys.iter().sum::<f64>() / n;
    if my == 0.0 || !my.is_finite() {
        return None;
    }
    let sxx: f64 = (0..window).map(|i| (i as f64 - mx).powi(2)).sum();
    let sxy: f64 = ys
        .iter()
        .enumerate()
        .map(|(i, y)| (i as f64 - mx) * (y - my))
        .sum();
    let slope = sxy / sxx;
    let rss: f64 = ys
        .iter()
        .enumerate()
        .map(|(i, y)| (y - my - slope * (i as f64 - mx)).powi(2))
        .sum();
    let se = (rss / (n - 2.0) / sxx).sqrt();
    let t = if se > 0.0 {
        slope / se
    } else if slope == 0.0 {
        0.0
    } else {
        f64::INFINITY * slope.signum()
    };
    Some((slope / my, t))
}

/// Whether the last `window` values still move: a slope significant at 95 % whose change
/// across the window is more than half of `cv_threshold`.
pub fn still_moving(xs: &[f64], window: usize, cv_threshold: f64) -> bool {
    let Some((rel_slope, t)) = trend(xs, window) else {
        return false;
    };
    let critical = crate::results::stats::t_critical_95(window - 1).unwrap_or(f64::INFINITY);
    t.abs() > critical && rel_slope.abs() * (window - 1) as f64 > cv_threshold / 2.0
}

/// The warmup state machine: feed it latencies, it says when to stop.
#[derive(Debug, Clone)]
pub struct Warmup {
    cfg: WarmupConfig,
    latencies: Vec<f64>,
    done: Option<bool>,
}

impl Warmup {
    /// Start a warmup.
    pub fn new(cfg: WarmupConfig) -> Self {
        Self {
            cfg,
            latencies: Vec::with_capacity(cfg.max_iters.min(1024)),
            done: None,
        }
    }

    /// Record one iteration's latency; returns true when warmup is over.
    pub fn push(&mut self, latency_s: f64) -> bool {
        if self.done.is_some() {
            return true;
        }
        self.latencies.push(latency_s);
        let n = self.latencies.len();
        match self.cfg.mode {
            WarmupMode::Fixed => {
                if n >= self.cfg.fixed_iters {
                    self.done = Some(true);
                }
            }
            WarmupMode::Converge => {
                let cv = rolling_cv(&self.latencies, self.cfg.window);
                let settled = cv.is_some_and(|c| c < self.cfg.cv_threshold)
                    && !still_moving(&self.latencies, self.cfg.window, self.cfg.cv_threshold);
                if n >= self.cfg.min_iters && settled {
                    self.done = Some(true);
                } else if n >= self.cfg.max_iters {
                    self.done = Some(false);
                }
            }
        }
        self.done.is_some()
    }

    /// The current rolling CV.
    pub fn current_cv(&self) -> Option<f64> {
        rolling_cv(&self.latencies, self.cfg.window)
    }

    /// Iterations so far.
    pub fn iterations(&self) -> usize {
        self.latencies.len()
    }

    /// The outcome (call when [`push`](Self::push) returned true, or to stop early).
    /// With fewer iterations than the window (a short fixed warmup), `final_cv` is the CV
    /// of all of them.
    pub fn finish(self) -> WarmupResult {
        let n = self.latencies.len();
        let final_cv = self
            .current_cv()
            .or_else(|| (n >= 2).then(|| rolling_cv(&self.latencies, n)).flatten());
        WarmupResult {
            converged: self.done.unwrap_or(false),
            iterations: self.latencies.len(),
            final_cv,
            target_cv: self.cfg.cv_threshold,
            mode: self.cfg.mode,
            final_trend: trend(&self.latencies, self.cfg.window.min(n)).map(|t| t.0),
            latencies_s: self.latencies,
        }
    }
}

/// Run `f` until warmed up; `sync` runs after each call so asynchronous (GPU) work is
/// timed to its end. `on_iter` sees (iteration, current CV) for progress display.
pub fn warm_up<T>(
    cfg: WarmupConfig,
    mut f: impl FnMut() -> T,
    sync: &dyn Fn(),
    mut on_iter: impl FnMut(usize, Option<f64>),
) -> WarmupResult {
    let mut w = Warmup::new(cfg);
    loop {
        let t = Instant::now();
        std::hint::black_box(f());
        sync();
        let done = w.push(t.elapsed().as_secs_f64());
        on_iter(w.iterations(), w.current_cv());
        if done {
            return w.finish();
        }
    }
}

/// Mean latency of the last window (or all) of a warmup, as a `Duration`.
pub fn typical_latency(r: &WarmupResult, window: usize) -> Duration {
    let xs = &r.latencies_s;
    let tail = &xs[xs.len().saturating_sub(window.max(1))..];
    let mean = if tail.is_empty() {
        0.0
    } else {
        tail.iter().sum::<f64>() / tail.len() as f64
    };
    Duration::from_secs_f64(mean.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_latency_converges_once_the_window_is_full() {
        let mut w = Warmup::new(WarmupConfig::default());
        let mut n = 0;
        while !w.push(0.010) {
            n += 1;
        }
        let r = w.finish();
        assert!(r.converged);
        assert_eq!(r.iterations, 5);
        assert_eq!(n, 4);
        assert_eq!(r.final_cv, Some(0.0));
    }

    #[test]
    fn a_slow_start_is_waited_out() {
        // cold iterations are slow, then it settles
        let lat = [
            0.1, 0.05, 0.03, 0.02, 0.011, 0.010, 0.010, 0.0101, 0.0099, 0.010, 0.010,
        ];
        let mut w = Warmup::new(WarmupConfig::default());
        let mut i = 0;
        while !w.push(lat[i]) {
            i += 1;
        }
        let r = w.finish();
        assert!(r.converged);
        assert!(r.iterations >= 9, "{}", r.iterations);
        assert!(r.final_cv.unwrap() < 0.05);
    }

    #[test]
    fn a_latency_still_falling_steadily_is_not_converged() {
        // 3.3 % faster every iteration: the population CV over 5 is about 4.6 %, under the
        // 5 % target, but the latency is still moving
        let lat: Vec<f64> = (0..12).map(|i| 0.010 * 0.967f64.powi(i)).collect();
        assert!(rolling_cv(&lat[..5], 5).unwrap() < 0.05);
        let mut w = Warmup::new(WarmupConfig {
            max_iters: 12,
            ..WarmupConfig::default()
        });
        let mut i = 0;
        while !w.push(lat[i]) {
            i += 1;
        }
        let r = w.finish();
        assert!(!r.converged, "converged after {} iterations", r.iterations);
        assert!(r.final_trend.unwrap() < -0.03, "{:?}", r.final_trend);
        // then it settles, with noise: converged
        let mut w = Warmup::new(WarmupConfig::default());
        let noisy = [0.0100, 0.0102, 0.0099, 0.0101, 0.0100, 0.0098, 0.0101];
        let mut i = 0;
        while !w.push(noisy[i]) {
            i += 1;
        }
        assert!(w.finish().converged);
    }

    #[test]
    fn a_tiny_steady_drift_still_converges() {
        // 0.1 % per iteration: significant (a perfect line) but far under half the target
        let mut w = Warmup::new(WarmupConfig::default());
        let mut i = 0;
        while !w.push(0.010 * (1.0 - 0.001 * f64::from(i))) {
            i += 1;
        }
        assert_eq!(w.finish().iterations, 5);
    }

    #[test]
    fn noise_does_not_converge_and_says_so() {
        let mut w = Warmup::new(WarmupConfig {
            max_iters: 20,
            ..WarmupConfig::default()
        });
        let mut i = 0u32;
        while !w.push(if i.is_multiple_of(2) { 0.01 } else { 0.03 }) {
            i += 1;
        }
        let r = w.finish();
        assert!(!r.converged);
        assert_eq!(r.iterations, 20);
        assert!(r.final_cv.unwrap() > 0.4);
    }

    #[test]
    fn fixed_mode_runs_exactly_n() {
        let cfg = WarmupConfig {
            mode: WarmupMode::Fixed,
            fixed_iters: 3,
            ..WarmupConfig::default()
        };
        let r = warm_up(cfg, || 1, &|| {}, |_, _| {});
        assert!(r.converged);
        assert_eq!(r.iterations, 3);
    }

    #[test]
    fn rolling_cv_is_the_population_cv_of_the_tail() {
        assert_eq!(rolling_cv(&[1.0, 2.0], 3), None);
        let cv = rolling_cv(&[100.0, 2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0], 8).unwrap();
        assert!((cv - 0.4).abs() < 1e-12);
    }

    #[test]
    fn invalid_settings_name_the_option() {
        let e = WarmupConfig {
            cv_threshold: 0.0,
            ..WarmupConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("cv"));
        let e = WarmupConfig {
            max_iters: 2,
            ..WarmupConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("max_warmup"));
    }
}
