//! Pure descriptive statistics (no I/O).

use serde::{Deserialize, Serialize};

/// Mean, spread and extremes of a set of values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of values.
    pub n: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Population standard deviation (divides by n).
    pub std_pop: f64,
    /// Sample standard deviation (divides by n − 1); 0 for a single value.
    pub std: f64,
    /// Population coefficient of variation (std_pop / |mean|); `None` when the mean is 0.
    pub cv: Option<f64>,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Summary {
    /// Summarise `xs`; `None` when empty or when a value is not finite.
    pub fn of(xs: &[f64]) -> Option<Self> {
        if xs.is_empty() || xs.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let n = xs.len();
        let nf = n as f64;
        let mean = xs.iter().sum::<f64>() / nf;
        let ss: f64 = xs.iter().map(|x| (x - mean).powi(2)).sum();
        let std_pop = (ss / nf).sqrt();
        let std = if n > 1 { (ss / (nf - 1.0)).sqrt() } else { 0.0 };
        let cv = (mean != 0.0).then(|| std_pop / mean.abs());
        let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Self {
            n,
            mean,
            std_pop,
            std,
            cv,
            min,
            max,
        })
    }
}

/// Mean, spread and a 95 % confidence interval of repeated measurements (cycles, samples).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Number of values.
    pub n: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (n − 1); `null` for a single value.
    pub std: Option<f64>,
    /// Coefficient of variation (sample std / |mean|); `null` when undefined.
    pub cv: Option<f64>,
    /// Lower end of the 95 % confidence interval of the mean (Student t); `null` when n < 2.
    pub ci95_low: Option<f64>,
    /// Upper end of the 95 % confidence interval of the mean (Student t); `null` when n < 2.
    pub ci95_high: Option<f64>,
}

/// The two-sided 95 % Student t critical value for `n − 1` degrees of freedom.
pub fn t_critical_95(n: usize) -> Option<f64> {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    if n < 2 {
        return None;
    }
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64).ok()?;
    Some(t.inverse_cdf(0.975))
}

impl Interval {
    /// Mean, std, CV and the Student-t 95 % CI of `xs`; `None` when empty or not finite.
    pub fn of(xs: &[f64]) -> Option<Self> {
        let s = Summary::of(xs)?;
        let (std, lo, hi) = match t_critical_95(s.n) {
            Some(t) => {
                let half = t * s.std / (s.n as f64).sqrt();
                (Some(s.std), Some(s.mean - half), Some(s.mean + half))
            }
            None => (None, None, None),
        };
        Some(Self {
            n: s.n,
            mean: s.mean,
            std,
            cv: std.filter(|_| s.mean != 0.0).map(|sd| sd / s.mean.abs()),
            ci95_low: lo,
            ci95_high: hi,
        })
    }
}

/// The `p`-th percentile (0..=100) by linear interpolation between closest ranks.
pub fn percentile(xs: &[f64], p: f64) -> Option<f64> {
    if xs.is_empty() || !(0.0..=100.0).contains(&p) {
        return None;
    }
    let mut v: Vec<f64> = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = p / 100.0 * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    Some(v[lo] + (v[hi] - v[lo]) * (rank - lo as f64))
}

/// Each stretch between consecutive points that overlaps `[t0, t1]`: the two points and
/// the overlap `(lo, hi)`.
pub(crate) fn overlapping_gaps(
    points: &[(f64, f64)],
    t0: f64,
    t1: f64,
) -> impl Iterator<Item = ((f64, f64), (f64, f64), f64, f64)> + '_ {
    points.windows(2).filter_map(move |w| {
        let (a, b) = (w[0], w[1]);
        let (lo, hi) = (a.0.max(t0), b.0.min(t1));
        (hi > lo && b.0 > a.0).then_some((a, b, lo, hi))
    })
}

/// Integrate the piecewise-linear power curve through `points` (time-sorted `(t_s, W)`),
/// held constant before the first and after the last point, over `[t0, t1]`: joules from a
/// time series. `None` without points.
pub fn integrate(points: &[(f64, f64)], t0: f64, t1: f64) -> Option<f64> {
    let first = points.first()?;
    let last = points.last()?;
    if t1 <= t0 {
        return Some(0.0);
    }
    let mut total = 0.0;
    // held before the first point
    if t0 < first.0 {
        total += first.1 * (first.0.min(t1) - t0);
    }
    for (a, b, lo, hi) in overlapping_gaps(points, t0, t1) {
        let at = |t: f64| a.1 + (b.1 - a.1) * (t - a.0) / (b.0 - a.0);
        total += (at(lo) + at(hi)) / 2.0 * (hi - lo);
    }
    // held after the last point
    if t1 > last.0 {
        total += last.1 * (t1 - last.0.max(t0));
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let s = Summary::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert_eq!(s.mean, 5.0);
        assert_eq!(s.std_pop, 2.0);
        assert!((s.std - 2.138_089_935).abs() < 1e-6);
        assert_eq!(s.cv, Some(0.4));
        assert_eq!((s.min, s.max), (2.0, 9.0));
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[1.0, f64::NAN]).is_none());
        assert_eq!(Summary::of(&[0.0, 0.0]).unwrap().cv, None);
    }

    #[test]
    fn student_t_interval() {
        // t(0.975, 2) = 4.302653
        assert!((t_critical_95(3).unwrap() - 4.302_653).abs() < 1e-5);
        assert!((t_critical_95(30).unwrap() - 2.045_230).abs() < 1e-5);
        let i = Interval::of(&[10.0, 12.0, 14.0]).unwrap();
        assert_eq!(i.mean, 12.0);
        assert_eq!(i.std, Some(2.0));
        let half = 4.302_653 * 2.0 / 3f64.sqrt();
        assert!((i.ci95_low.unwrap() - (12.0 - half)).abs() < 1e-4);
        assert!((i.ci95_high.unwrap() - (12.0 + half)).abs() < 1e-4);
        assert!((i.cv.unwrap() - 2.0 / 12.0).abs() < 1e-12);
        let one = Interval::of(&[5.0]).unwrap();
        assert_eq!((one.std, one.ci95_low, one.ci95_high), (None, None, None));
    }

    #[test]
    fn percentiles() {
        let xs = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&xs, 50.0), Some(3.0));
        assert_eq!(percentile(&xs, 0.0), Some(1.0));
        assert_eq!(percentile(&xs, 100.0), Some(5.0));
        assert_eq!(percentile(&xs, 25.0), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0], 95.0), Some(1.95));
        assert!(percentile(&[], 50.0).is_none());
    }
}
