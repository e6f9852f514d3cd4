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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// The values of one metric on one side, with the bound of a single value.
#[derive(Debug, Clone, PartialEq)]
pub struct Values {
    /// The values (cycles, samples, or one).
    pub values: Vec<f64>,
    /// The uncertainty bound of a single value, where the input has one.
    pub bound: Option<f64>,
}

impl Values {
    fn mean(&self) -> f64 {
        self.values.iter().sum::<f64>() / self.values.len() as f64
    }

    /// Sample variance of the mean (s² / n); `None` for one value.
    fn var_of_mean(&self) -> Option<f64> {
        let n = self.values.len();
        if n < 2 {
            return None;
        }
        let m = self.mean();
        let ss: f64 = self.values.iter().map(|x| (x - m).powi(2)).sum();
        Some(ss / (n as f64 - 1.0) / n as f64)
    }

    /// The half-width this side adds to an interval of a difference where the other side is
    /// a single value: its Student-t 95 % half-width, or its bound.
    fn half_width(&self) -> Option<f64> {
        match self.var_of_mean() {
            Some(v) => Some(crate::results::stats::t_critical_95(self.values.len())? * v.sqrt()),
            None => self.bound,
        }
    }
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

/// One input measurement: its name and the values of each metric it has.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// The experiment id or the benchmark's name.
    pub name: String,
    /// What it is: `"bench"`, `"aggregate"` or `"result"`.
    pub kind: &'static str,
    /// Metric path → values.
    pub metrics: BTreeMap<String, Values>,
}

fn num(v: &Value, path: &str) -> Option<f64> {
    let ptr = format!("/{}", path.replace('.', "/"));
    v.pointer(&ptr)
        .and_then(Value::as_f64)
        .filter(|x| x.is_finite())
}

/// The metrics of a result file, an aggregate or a bench output (as JSON).
pub fn measurement_of(v: &Value) -> Option<Measurement> {
    if let Some(bench) = v.get("bench").filter(|b| b.get("per_sample").is_some()) {
        return bench_measurement(bench);
    }
    let name = v.get("experiment_id")?.as_str()?.to_string();
    let mut metrics = BTreeMap::new();
    let aggregated = v.get("aggregated").and_then(Value::as_bool) == Some(true);
    let cycles = v.pointer("/cycles/per_cycle").and_then(Value::as_array);
    let single = |path: &str, bound: Option<&str>| {
        num(v, path).map(|x| Values {
            values: vec![x],
            bound: bound.and_then(|b| num(v, b)),
        })
    };
    let per_cycle = |field: &str| -> Option<Values> {
        let xs: Option<Vec<f64>> = cycles?.iter().map(|c| c.get(field)?.as_f64()).collect();
        xs.filter(|x| !x.is_empty()).map(|values| Values {
            values,
            bound: None,
        })
    };
    let energy = [
        (
            "energy.adjusted_j",
            "adjusted_j",
            "energy.adjusted_uncertainty_j",
        ),
        ("energy.raw_j", "raw_j", "energy.uncertainty_j"),
        ("duration_s", "duration_s", ""),
    ];
    for (path, field, bound) in energy {
        let got = if aggregated && cycles.is_some_and(|c| c.len() > 1) {
            per_cycle(field)
        } else {
            single(path, (!bound.is_empty()).then_some(bound))
        };
        if let Some(x) = got {
            metrics.insert(path.to_string(), x);
        }
    }
    let llm = [
        (
            "metrics.energy_per_output_token_j",
            Some("metrics.energy_per_output_token_uncertainty_j"),
        ),
        ("metrics.ttft_ms", None),
        ("metrics.itl_ms.p50", None),
    ];
    for (path, bound) in llm {
        if let Some(x) = single(path, bound) {
            metrics.insert(path.to_string(), x);
        }
    }
    Some(Measurement {
        name,
        kind: if aggregated { "aggregate" } else { "result" },
        metrics,
    })
}

/// A bench output's per-iteration metrics over its samples (over its cycles' means with
/// more than one cycle, as the bench's own intervals are).
fn bench_measurement(b: &Value) -> Option<Measurement> {
    let name = b.get("name")?.as_str()?.to_string();
    let samples = b.get("per_sample")?.as_array()?;
    let mut groups: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for s in samples {
        let c = s.get("cycle").and_then(Value::as_u64).unwrap_or(0);
        groups.entry(c).or_default().push(s);
    }
    let per_iter = |s: &Value, field: &str| -> Option<f64> {
        let n = s.get("iterations")?.as_f64().filter(|n| *n > 0.0)?;
        Some(s.get(field)?.as_f64()? / n)
    };
    let mut metrics = BTreeMap::new();
    for (path, field) in [
        ("bench.adjusted_energy_per_iter_j", "adjusted_j"),
        ("bench.energy_per_iter_j", "raw_j"),
        ("bench.time_per_iter_s", "duration_s"),
    ] {
        let values: Vec<f64> = if groups.len() > 1 {
            groups
                .values()
                .filter_map(|g| {
                    let xs: Vec<f64> = g.iter().filter_map(|s| per_iter(s, field)).collect();
                    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
                })
                .collect()
        } else {
            samples.iter().filter_map(|s| per_iter(s, field)).collect()
        };
        if !values.is_empty() {
            metrics.insert(
                path.to_string(),
                Values {
                    values,
                    bound: None,
                },
            );
        }
    }
    Some(Measurement {
        name,
        kind: "bench",
        metrics,
    })
}

/// Read one input: a JSON file, or a directory of them (searched recursively; time-series
/// files skipped). Each measurement by name; within a directory an aggregate is preferred to
/// its process results, and a name seen twice otherwise is an error.
///
/// # Errors
/// [`Error::BadFile`] / [`Error::Io`] naming the file that cannot be read or is not a lem
/// result, and a directory holding none.
pub fn load(path: &Path) -> Result<BTreeMap<String, Measurement>> {
    let mut files = Vec::new();
    if path.is_dir() {
        collect(path, &mut files)?;
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut out: BTreeMap<String, Measurement> = BTreeMap::new();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| Error::Io {
            path: f.clone(),
            source: e,
        })?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| bad(f, &format!("not JSON: {e}")))?;
        let Some(m) = measurement_of(&v) else {
            if path.is_dir() {
                continue;
            }
            return Err(bad(f, "not a lem result, aggregate or bench output"));
        };
        match out.get(&m.name) {
            Some(seen) if seen.kind == "aggregate" && m.kind == "result" => {}
            Some(seen) if seen.kind == "result" && m.kind == "result" => {
                return Err(bad(
                    path,
                    &format!(
                        "`{}` has several process or cycle results and no aggregate: run `lem aggregate` on its raw directory, or compare the aggregates",
                        m.name
                    ),
                ));
            }
            Some(seen) if !(seen.kind == "result" && m.kind == "aggregate") => {
                return Err(bad(
                    f,
                    &format!("a second measurement named `{}` in this input", m.name),
                ));
            }
            _ => {
                out.insert(m.name.clone(), m);
            }
        }
    }
    if out.is_empty() {
        return Err(bad(path, "holds no lem result, aggregate or bench output"));
    }
    Ok(out)
}

fn bad(path: &Path, reason: &str) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            // saved bench baselines are inputs of their own, never part of the results
            if p.file_name().is_some_and(|n| n == "baselines") {
                continue;
            }
            collect(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "json")
            && !p.to_string_lossy().ends_with("_timeseries.json")
        {
            out.push(p);
        }
    }
    Ok(())
}

/// Pair the measurements of two inputs: by name, or, when each input holds exactly one
/// measurement, those two (a result compared with a result of another experiment id).
///
/// # Errors
/// [`Error::InvalidConfig`] when the two are of different kinds (a bench against a run),
/// two benchmarks differ in name, or two directories share no name.
pub fn pair<'a>(
    base: &'a BTreeMap<String, Measurement>,
    new: &'a BTreeMap<String, Measurement>,
) -> Result<Vec<(&'a Measurement, &'a Measurement)>> {
    let mismatch = |why: String| Error::config("compare", why);
    if let ([(_, b)], [(_, n)]) = (
        base.iter().collect::<Vec<_>>().as_slice(),
        new.iter().collect::<Vec<_>>().as_slice(),
    ) {
        if (b.kind == "bench") != (n.kind == "bench") {
            return Err(mismatch(format!(
                "BASE `{}` is a {} and NEW `{}` a {}: compare like with like",
                b.name, b.kind, n.name, n.kind
            )));
        }
        if b.kind == "bench" && b.name != n.name {
            return Err(mismatch(format!(
                "BASE is benchmark `{}` and NEW is benchmark `{}`",
                b.name, n.name
            )));
        }
        return Ok(vec![(*b, *n)]);
    }
    let pairs: Vec<_> = base
        .iter()
        .filter_map(|(k, b)| new.get(k).map(|n| (b, n)))
        .collect();
    if pairs.is_empty() {
        return Err(mismatch(
            "no experiment or benchmark of BASE has a namesake in NEW".into(),
        ));
    }
    Ok(pairs)
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
