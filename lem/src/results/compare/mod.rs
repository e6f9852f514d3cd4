//! Did a change cost energy? Two measurements of the same work (result files, aggregates with
//! their cycles, bench outputs, or directories of these) compared metric by metric: the
//! relative change, its 95 % confidence interval, a p-value and a verdict.
//!
//! **Statistics.** With several values a side (an aggregate's cycles, a bench's samples, or
//! with cycles the bench's cycle means), Welch's t on the difference of means (unequal
//! variances, Welch–Satterthwaite degrees of freedom, statrs's Student t). A side with one
//! value (a single run) has no spread to estimate: its own uncertainty bound (the bound
//! every lem energy figure carries) serves as its half of the interval, added to the other
//! side's (its Student-t half-width, or its bound), and no p-value is given
//! (`interval_from: "uncertainty"`). A metric without a bound on a single-valued side has no
//! interval at all: its verdict is `inconclusive`.
//!
//! **Verdicts** (every metric compared is one where less is better: energy, time), judged
//! as criterion judges time:
//! - `regressed` when the whole interval of the change lies above 0 and the change is
//!   beyond the noise threshold (`--noise-threshold`, 1 % by default, criterion's default);
//!   `improved` likewise below;
//! - `no change` when the change is significant but within the noise threshold (a run that
//!   took 0.2 % longer did cost 0.2 % more, but that is not a change anyone acts on), or when
//!   the interval lies within ±`margin` % (the `--threshold` when given, else 5 %);
//! - `inconclusive` when the interval is wider than that.
//!
//! The change and its interval are relative to the base's mean.

mod inputs;

use serde::{Deserialize, Serialize};

pub use inputs::{load, measurement_of, pair, Measurement, Values};

use crate::error::{Error, Result};

/// The equivalence margin of `no change` without a threshold, %.
pub const DEFAULT_MARGIN_PCT: f64 = 5.0;

/// The noise threshold without one given, %: criterion's default.
pub const DEFAULT_NOISE_PCT: f64 = 1.0;

/// How a change is judged: the thresholds of the verdicts, in percent of the base.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judge {
    /// An interval within ±this is `no change`.
    pub margin_pct: f64,
    /// A significant change of at most this is `no change`.
    pub noise_pct: f64,
}

impl Default for Judge {
    fn default() -> Self {
        Self {
            margin_pct: DEFAULT_MARGIN_PCT,
            noise_pct: DEFAULT_NOISE_PCT,
        }
    }
}

impl Judge {
    /// The verdict on a change of `change_pct` with the interval `ci_pct`.
    pub fn verdict(&self, change_pct: f64, ci_pct: Option<[f64; 2]>) -> Verdict {
        let beyond_noise = change_pct.abs() > self.noise_pct;
        match ci_pct {
            Some([lo, _]) if lo > 0.0 && beyond_noise => Verdict::Regressed,
            Some([_, hi]) if hi < 0.0 && beyond_noise => Verdict::Improved,
            Some([lo, hi]) if lo > 0.0 || hi < 0.0 => Verdict::NoChange,
            Some([lo, hi]) if lo >= -self.margin_pct && hi <= self.margin_pct => Verdict::NoChange,
            _ => Verdict::Inconclusive,
        }
    }
}

/// The verdict on one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Significantly lower.
    #[serde(rename = "improved")]
    Improved,
    /// Significantly higher.
    #[serde(rename = "regressed")]
    Regressed,
    /// Not significant, and the interval is within the margin.
    #[serde(rename = "no change")]
    NoChange,
    /// Not significant, and the interval is too wide to say there is no change.
    #[serde(rename = "inconclusive")]
    Inconclusive,
}

impl Verdict {
    /// As printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Improved => "improved",
            Self::Regressed => "regressed",
            Self::NoChange => "no change",
            Self::Inconclusive => "inconclusive",
        }
    }
}

/// Where the interval came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntervalFrom {
    /// Welch's t on the values of both sides.
    Samples,
    /// A single-valued side's own uncertainty bound.
    Uncertainty,
}

/// One metric of one measurement compared (the `--format json` contract).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The experiment or benchmark.
    pub name: String,
    /// The metric's JSON path in the input (`energy.adjusted_j`).
    pub metric: String,
    /// The base's mean.
    pub base: f64,
    /// The new mean.
    pub new: f64,
    /// (new − base) / base, %.
    pub change_pct: f64,
    /// 95 % confidence interval of the change, %; `null` without one.
    pub ci_pct: Option<[f64; 2]>,
    /// Welch's two-sided p-value; `null` where the interval comes from a bound.
    pub p_value: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
    /// Where the interval came from; `null` without one.
    pub interval_from: Option<IntervalFrom>,
    /// Values on each side (base, new).
    pub n: [usize; 2],
}

/// Compare `base` and `new` values of `metric` of `name`; `margin_pct` is the equivalence
/// margin of `no change`, the noise threshold the default one. `None` when a side has no
/// value or the base's mean is 0.
pub fn compare(
    name: &str,
    metric: &str,
    base: &Values,
    new: &Values,
    margin_pct: f64,
) -> Option<Comparison> {
    let judge = Judge {
        margin_pct,
        ..Judge::default()
    };
    compare_with(name, metric, base, new, judge)
}

/// [`compare`], judged by `judge`.
pub fn compare_with(
    name: &str,
    metric: &str,
    base: &Values,
    new: &Values,
    judge: Judge,
) -> Option<Comparison> {
    if base.values.is_empty() || new.values.is_empty() {
        return None;
    }
    let (mb, mn) = (base.mean(), new.mean());
    if mb == 0.0 || !mb.is_finite() || !mn.is_finite() {
        return None;
    }
    let d = mn - mb;
    let rel = |x: f64| x / mb.abs() * 100.0;
    let (interval, p_value, from) = match (base.var_of_mean(), new.var_of_mean()) {
        (Some(vb), Some(vn)) => {
            let (lo, hi, p) = welch(d, vb, vn, base.values.len(), new.values.len());
            (Some((lo, hi)), p, Some(IntervalFrom::Samples))
        }
        _ => match (base.half_width(), new.half_width()) {
            (Some(hb), Some(hn)) => (
                Some((d - hb - hn, d + hb + hn)),
                None,
                Some(IntervalFrom::Uncertainty),
            ),
            _ => (None, None, None),
        },
    };
    let ci_pct = interval.map(|(lo, hi)| [rel(lo), rel(hi)]);
    let verdict = judge.verdict(rel(d), ci_pct);
    Some(Comparison {
        name: name.to_string(),
        metric: metric.to_string(),
        base: mb,
        new: mn,
        change_pct: rel(d),
        ci_pct,
        p_value,
        verdict,
        interval_from: from,
        n: [base.values.len(), new.values.len()],
    })
}

/// Welch's t for a difference `d` of means with variances of the means `vb`, `vn`: the 95 %
/// interval of the difference and the two-sided p-value.
fn welch(d: f64, vb: f64, vn: f64, nb: usize, nn: usize) -> (f64, f64, Option<f64>) {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    let se = (vb + vn).sqrt();
    if se == 0.0 {
        // no spread on either side: the difference is what it is
        let p = if d == 0.0 { 1.0 } else { 0.0 };
        return (d, d, Some(p));
    }
    let df = (vb + vn).powi(2)
        / (vb * vb / (nb as f64 - 1.0) + vn * vn / (nn as f64 - 1.0)).max(f64::MIN_POSITIVE);
    let Ok(t) = StudentsT::new(0.0, 1.0, df) else {
        return (f64::NEG_INFINITY, f64::INFINITY, None);
    };
    let crit = t.inverse_cdf(0.975);
    let p = 2.0 * (1.0 - t.cdf((d / se).abs()));
    (d - crit * se, d + crit * se, Some(p.clamp(0.0, 1.0)))
}

/// Compare every paired measurement on `metrics` (empty: every metric both sides have).
///
/// # Errors
/// [`Error::InvalidConfig`] naming a requested metric that no pair has on both sides.
pub fn compare_all(
    pairs: &[(&Measurement, &Measurement)],
    metrics: &[String],
    judge: Judge,
) -> Result<Vec<Comparison>> {
    let mut out = Vec::new();
    for m in metrics {
        if !pairs
            .iter()
            .any(|(b, n)| b.metrics.contains_key(m) && n.metrics.contains_key(m))
        {
            return Err(Error::config(
                "--metric",
                format!("`{m}` is not in both inputs"),
            ));
        }
    }
    for (b, n) in pairs {
        let name = if b.name == n.name {
            b.name.clone()
        } else {
            format!("{} → {}", b.name, n.name)
        };
        for (metric, bv) in &b.metrics {
            if !metrics.is_empty() && !metrics.contains(metric) {
                continue;
            }
            let Some(nv) = n.metrics.get(metric) else {
                continue;
            };
            out.extend(compare_with(&name, metric, bv, nv, judge));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(v: &[f64]) -> Values {
        Values {
            values: v.to_vec(),
            bound: None,
        }
    }

    #[test]
    fn welch_matches_a_known_case() {
        // two groups of 5 with equal variance 2.5: means 3 and 8, d = 5, se = 1,
        // df = 8, t = 5: p = 0.00105, 95 % interval 5 ± 2.306
        let b = vals(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        let n = vals(&[6.0, 7.0, 8.0, 9.0, 10.0]);
        let c = compare("x", "m", &b, &n, 5.0).unwrap();
        assert!((c.change_pct - 5.0 / 3.0 * 100.0).abs() < 1e-9);
        let [lo, hi] = c.ci_pct.unwrap();
        assert!((lo - (5.0 - 2.306) / 3.0 * 100.0).abs() < 0.05, "{lo}");
        assert!((hi - (5.0 + 2.306) / 3.0 * 100.0).abs() < 0.05, "{hi}");
        assert!(
            (c.p_value.unwrap() - 0.00105).abs() < 2e-5,
            "{:?}",
            c.p_value
        );
        assert_eq!(c.verdict, Verdict::Regressed);
        assert_eq!(c.interval_from, Some(IntervalFrom::Samples));
    }

    #[test]
    fn verdicts_follow_the_interval_and_the_margin() {
        let b = vals(&[100.0, 101.0, 99.0, 100.0]);
        let same = vals(&[100.5, 99.5, 100.0, 100.2]);
        assert_eq!(
            compare("x", "m", &b, &same, 5.0).unwrap().verdict,
            Verdict::NoChange
        );
        let lower = vals(&[80.0, 81.0, 79.0, 80.0]);
        assert_eq!(
            compare("x", "m", &b, &lower, 5.0).unwrap().verdict,
            Verdict::Improved
        );
        let noisy = vals(&[60.0, 140.0, 90.0, 115.0]);
        assert_eq!(
            compare("x", "m", &b, &noisy, 5.0).unwrap().verdict,
            Verdict::Inconclusive
        );
    }

    #[test]
    fn a_single_value_uses_its_bound_and_without_one_is_inconclusive() {
        let b = Values {
            values: vec![100.0],
            bound: Some(2.0),
        };
        let n = Values {
            values: vec![110.0],
            bound: Some(3.0),
        };
        let c = compare("x", "energy.raw_j", &b, &n, 5.0).unwrap();
        assert_eq!(c.interval_from, Some(IntervalFrom::Uncertainty));
        assert_eq!(c.ci_pct, Some([5.0, 15.0]));
        assert_eq!(c.p_value, None);
        assert_eq!(c.verdict, Verdict::Regressed);
        let c = compare("x", "duration_s", &vals(&[1.0]), &vals(&[1.2]), 5.0).unwrap();
        assert_eq!((c.ci_pct, c.verdict), (None, Verdict::Inconclusive));
    }

    #[test]
    fn a_significant_change_within_the_noise_is_no_change() {
        // 0.2 % more with a tight interval: real, but within criterion's 1 % noise
        let b = vals(&[100.0, 100.01, 99.99, 100.0]);
        let n = vals(&[100.2, 100.21, 100.19, 100.2]);
        let c = compare("x", "m", &b, &n, 5.0).unwrap();
        assert!(c.ci_pct.unwrap()[0] > 0.0, "{:?}", c.ci_pct);
        assert_eq!(c.verdict, Verdict::NoChange);
        // with no noise threshold the same change is a regression
        let strict = Judge {
            noise_pct: 0.0,
            ..Judge::default()
        };
        let c = compare_with("x", "m", &b, &n, strict).unwrap();
        assert_eq!(c.verdict, Verdict::Regressed);
        // and 2 % beyond the 1 % noise is one with the default
        let m = vals(&[102.0, 102.01, 101.99, 102.0]);
        let c = compare("x", "m", &b, &m, 5.0).unwrap();
        assert_eq!(c.verdict, Verdict::Regressed);
        let c = compare("x", "m", &m, &b, 5.0).unwrap();
        assert_eq!(c.verdict, Verdict::Improved);
    }
}
