//! Folds: the sums, extremes and counts the accounting takes over a window's points, fed one
//! point at a time in time order. Each mirrors a function that takes the whole slice
//! (`stats::integrate`, `uncertainty::integration_bound`, `one_way_steps`, `largest_gap`,
//! `throttle_from_samples`, the total peak) operation for operation and in the same order,
//! so a window folded while its samples arrive gets the same numbers, to the last bit, as the
//! slice at its close. The window's end may be unknown while folding (`f64::INFINITY`): every
//! point folded before the end is known lies well before it, where the end changes nothing.

use crate::device::ThrottleReasons;
use crate::results::report::ThrottleEvent;

/// The averaging window of `nvmlDeviceGetPowerUsage` on Ampere and newer, s.
pub const POWER_AVERAGE_S: f64 = 1.0;

/// A power point: (clock s, W).
pub(crate) type Point = (f64, f64);

/// Power changes seen around a window, W (and W² for the sum of squares).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Steps {
    pub rises: f64,
    pub falls: f64,
    pub squares: f64,
}

impl Steps {
    /// Count the change from `a` to `b`.
    pub(crate) fn add(&mut self, a: Point, b: Point) {
        let d = b.1 - a.1;
        if d > 0.0 {
            self.rises += d;
        } else {
            self.falls -= d;
        }
        self.squares += d * d;
    }
}

/// The changes between consecutive points inside `[from, to]`, with the nearest point on
/// each side (as `one_way_steps` over `points_near(points, from, to)`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepsFold {
    from: f64,
    to: f64,
    /// The last point before `from`.
    before: Option<Point>,
    /// The last point counted.
    prev: Option<Point>,
    /// The first point after `to` was counted: nothing more is.
    done: bool,
    pub steps: Steps,
}

impl StepsFold {
    pub(crate) fn new(from: f64, to: f64) -> Self {
        Self {
            from,
            to,
            before: None,
            prev: None,
            done: false,
            steps: Steps::default(),
        }
    }

    /// The end of the range, once known.
    pub(crate) fn set_to(&mut self, to: f64) {
        self.to = to;
    }

    pub(crate) fn push(&mut self, p: Point) {
        if self.done {
            return;
        }
        if p.0 < self.from {
            self.before = Some(p);
            return;
        }
        if let Some(q) = self.prev.or(self.before) {
            self.steps.add(q, p);
        }
        self.prev = Some(p);
        if p.0 > self.to {
            self.done = true;
        }
    }
}

/// Everything the accounting takes from one sequence of power points over `[t0, t1]`: the
/// trapezoid integral (held before the first and after the last point), the integration
/// bound, the extremes, the changes inside, the count and the largest gap.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PointFold {
    t0: f64,
    t1: f64,
    first: Option<Point>,
    last: Option<Point>,
    count: usize,
    /// `integrate`'s running total, without the stretch held after the last point.
    integral: f64,
    /// `integration_bound`'s gap terms.
    gaps: f64,
    min: f64,
    max: f64,
    peak: Option<f64>,
    inside: StepsFold,
    gap_from: f64,
    largest_gap: f64,
}

impl PointFold {
    pub(crate) fn new(t0: f64, t1: f64) -> Self {
        Self {
            t0,
            t1,
            first: None,
            last: None,
            count: 0,
            integral: 0.0,
            gaps: 0.0,
            min: f64::MAX,
            max: f64::MIN,
            peak: None,
            inside: StepsFold::new(t0, t1),
            gap_from: t0,
            largest_gap: 0.0,
        }
    }

    /// The window's end, once known (before the points near it are pushed).
    pub(crate) fn set_t1(&mut self, t1: f64) {
        self.t1 = t1;
        self.inside.set_to(t1);
    }

    pub(crate) fn push(&mut self, p: Point) {
        let (t0, t1) = (self.t0, self.t1);
        self.count += 1;
        self.min = self.min.min(p.1);
        self.max = self.max.max(p.1);
        self.peak = Some(self.peak.map_or(p.1, |m| m.max(p.1)));
        match self.last {
            None => {
                self.first = Some(p);
                if t0 < p.0 {
                    self.integral += p.1 * (p.0.min(t1) - t0);
                }
            }
            Some(a) => {
                let b = p;
                let (lo, hi) = (a.0.max(t0), b.0.min(t1));
                if hi > lo && b.0 > a.0 {
                    let at = |t: f64| a.1 + (b.1 - a.1) * (t - a.0) / (b.0 - a.0);
                    self.integral += (at(lo) + at(hi)) / 2.0 * (hi - lo);
                    let dp = (b.1 - a.1).abs();
                    let whole = lo == a.0 && hi == b.0;
                    self.gaps += if whole {
                        dp * (hi - lo) / 2.0
                    } else {
                        dp * (hi - lo)
                    };
                }
            }
        }
        self.last = Some(p);
        self.inside.push(p);
        if p.0 >= t0 && p.0 <= t1 {
            self.largest_gap = self.largest_gap.max(p.0 - self.gap_from);
            self.gap_from = p.0;
        }
    }

    /// How many points were pushed.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// The highest power pushed.
    pub(crate) fn peak(&self) -> Option<f64> {
        self.peak
    }

    /// The changes between consecutive points inside `[t0, t1]`.
    pub(crate) fn inside_steps(&self) -> Steps {
        self.inside.steps
    }

    /// `integrate(points, t0, t1)`.
    pub(crate) fn integrated(&self) -> Option<f64> {
        self.first?;
        let last = self.last?;
        if self.t1 <= self.t0 {
            return Some(0.0);
        }
        let mut total = self.integral;
        if self.t1 > last.0 {
            total += last.1 * (self.t1 - last.0.max(self.t0));
        }
        Some(total)
    }

    /// `integration_bound(points, t0, t1)`.
    pub(crate) fn bound(&self) -> f64 {
        let (Some(first), Some(last)) = (self.first, self.last) else {
            return 0.0;
        };
        let (t0, t1) = (self.t0, self.t1);
        let mut bound = self.gaps;
        let range = (self.max - self.min).max(0.0);
        if t0 < first.0 {
            bound += range * (first.0.min(t1) - t0);
        }
        if t1 > last.0 {
            bound += range * (t1 - last.0.max(t0));
        }
        bound
    }

    /// `largest_gap(points, t0, t1)`.
    pub(crate) fn largest_gap(&self) -> f64 {
        self.largest_gap.max(self.t1 - self.gap_from)
    }
}

/// Throttle time from sampled reasons, each held until the next sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SampledThrottle {
    /// Time slowed down (thermal, HW slowdown, power brake), s.
    pub slowdown: f64,
    /// Time thermally throttled, s.
    pub thermal: f64,
    /// Time at the power cap or braked, s.
    pub power: f64,
    /// Time braked while not at the power cap (what the power counter misses), s.
    pub brake_without_cap: f64,
    /// Every throttling reason seen.
    pub seen: ThrottleReasons,
    /// Intervals with any throttling reason (these grow with throttle events, not samples).
    pub events: Vec<ThrottleEvent>,
}

/// [`SampledThrottle`] over `[t0, t1]`, fed one sampled reason at a time.
#[derive(Debug, Clone)]
pub(crate) struct ThrottleFold {
    device: u32,
    t0: f64,
    t1: f64,
    prev: Option<(f64, ThrottleReasons)>,
    out: SampledThrottle,
}

impl ThrottleFold {
    pub(crate) fn new(device: u32, t0: f64, t1: f64) -> Self {
        Self {
            device,
            t0,
            t1,
            prev: None,
            out: SampledThrottle::default(),
        }
    }

    pub(crate) fn push(&mut self, item: (f64, ThrottleReasons)) {
        if let Some(p) = self.prev {
            self.span(p, item.0);
        }
        self.prev = Some(item);
    }

    /// The totals, the last reason held until `t1`.
    pub(crate) fn finish(mut self, t1: f64) -> SampledThrottle {
        self.t1 = t1;
        if let Some(p) = self.prev {
            self.span(p, t1);
        }
        self.out
    }

    /// Reason `r`, sampled at `t`, held until `next`.
    fn span(&mut self, (t, r): (f64, ThrottleReasons), next: f64) {
        let (t0, out) = (self.t0, &mut self.out);
        let start = t.max(t0);
        let end = next.min(self.t1);
        if end <= start {
            return;
        }
        let r = r.throttling_only();
        if r.is_empty() {
            return;
        }
        let dt = end - start;
        if r.is_slowdown() {
            out.slowdown += dt;
        }
        if r.is_thermal() {
            out.thermal += dt;
        }
        if r.is_power() {
            out.power += dt;
        }
        if r.contains(ThrottleReasons::HW_POWER_BRAKE) && !r.contains(ThrottleReasons::SW_POWER_CAP)
        {
            out.brake_without_cap += dt;
        }
        out.seen = out.seen.union(r);
        let (s_rel, e_rel) = (start - t0, end - t0);
        match out.events.last_mut() {
            Some(ev) if (ev.end_s - s_rel).abs() < 1e-12 => {
                ev.end_s = e_rel;
                ev.reasons = ev.reasons.union(r);
            }
            _ => out.events.push(ThrottleEvent {
                device: self.device,
                start_s: s_rel,
                end_s: e_rel,
                reasons: r,
            }),
        }
    }
}

/// The highest total power of one sampling round, over rounds in which all `n` devices
/// answered; samples arrive round by round, devices in order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TotalPeak {
    n: usize,
    best: Option<f64>,
    sum: f64,
    seen: usize,
    last: Option<u32>,
}

impl TotalPeak {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            n,
            best: None,
            sum: 0.0,
            seen: 0,
            last: None,
        }
    }

    pub(crate) fn push(&mut self, device: u32, power_w: Option<f64>) {
        if self.last.is_some_and(|l| device <= l) {
            self.close();
            (self.sum, self.seen) = (0.0, 0);
        }
        if let Some(p) = power_w {
            self.sum += p;
            self.seen += 1;
        }
        self.last = Some(device);
    }

    fn close(&mut self) {
        if self.seen == self.n && self.n > 0 {
            self.best = Some(self.best.map_or(self.sum, |b| b.max(self.sum)));
        }
    }

    pub(crate) fn finish(mut self) -> Option<f64> {
        self.close();
        self.best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::stats::integrate;

    /// A random walk of power points, with repeated values and close times.
    fn points(seed: u64, n: usize) -> Vec<Point> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut t, mut p) = (0.0, 100.0);
        (0..n)
            .map(|_| {
                t += 0.001 + next() * 0.2;
                if next() < 0.6 {
                    p = (p + (next() - 0.5) * 80.0).max(0.0);
                }
                (t, p)
            })
            .collect()
    }

    #[test]
    fn the_point_fold_matches_the_slice_functions_to_the_bit() {
        use super::super::uncertainty::integration_bound;
        for seed in 0..200 {
            let pts = points(seed, (seed % 40) as usize);
            let end = pts.last().map_or(1.0, |p| p.0);
            for (t0, t1) in [(0.0, end + 1.0), (0.3, end * 0.7), (end * 0.5, end * 0.5)] {
                let mut f = PointFold::new(t0, t1);
                pts.iter().for_each(|p| f.push(*p));
                assert_eq!(f.integrated(), integrate(&pts, t0, t1), "{seed}");
                assert_eq!(f.bound(), integration_bound(&pts, t0, t1), "{seed}");
                assert_eq!(f.count(), pts.len());
                // the same, the end known only after most points
                let mut g = PointFold::new(t0, f64::INFINITY);
                let split = pts.partition_point(|p| p.0 < t1 - 0.5);
                pts[..split].iter().for_each(|p| g.push(*p));
                g.set_t1(t1);
                pts[split..].iter().for_each(|p| g.push(*p));
                assert_eq!(g.integrated(), f.integrated(), "{seed}");
                assert_eq!(g.bound(), f.bound(), "{seed}");
                assert_eq!(g.inside_steps(), f.inside_steps(), "{seed}");
                assert_eq!(g.largest_gap(), f.largest_gap(), "{seed}");
            }
        }
    }

    #[test]
    fn the_steps_fold_counts_the_neighbours_of_the_range() {
        let pts = [(0.0, 1.0), (1.0, 5.0), (2.0, 3.0), (3.0, 9.0), (4.0, 0.0)];
        let mut f = StepsFold::new(1.5, 2.5);
        pts.iter().for_each(|p| f.push(*p));
        // (1, 5) → (2, 3) → (3, 9)
        assert_eq!(f.steps.rises, 6.0);
        assert_eq!(f.steps.falls, 2.0);
        assert_eq!(f.steps.squares, 40.0);
    }

    #[test]
    fn the_total_peak_counts_complete_rounds_only() {
        let mut t = TotalPeak::new(2);
        for (d, p) in [(0, Some(1.0)), (1, Some(2.0)), (0, Some(10.0)), (1, None)] {
            t.push(d, p);
        }
        assert_eq!(t.finish(), Some(3.0));
    }
}
