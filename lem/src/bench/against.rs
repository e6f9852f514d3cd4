//! Each benchmark compared with an earlier run of itself, as criterion does: by default the
//! previous run (the result file this run replaces), or with `--baseline NAME` a baseline
//! saved by `--save-baseline NAME` (under `<output dir>/baselines/NAME/`). The change of the
//! energy per iteration (adjusted where both runs have it, else raw) and of the time per
//! iteration is printed under the benchmark's table and recorded as `bench.change`; a
//! regression fails the run only with `--fail-on-regression PCT` (or
//! `LEM_FAIL_ON_REGRESSION=PCT`).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::outcome::BenchStats;
use crate::results::compare::{compare_with, measurement_of, Comparison, Judge, Verdict};

/// What the run compares with and saves.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Against {
    /// `--baseline NAME`: compare with this saved baseline instead of the previous run.
    pub baseline: Option<String>,
    /// `--save-baseline NAME`: save this run's results as a baseline.
    pub save: Option<String>,
    /// Fail the run when a benchmark's energy or time regressed by more than this, %.
    pub fail_pct: Option<f64>,
    /// A significant change of at most this is `no change`, % (`--noise-threshold`).
    pub noise_pct: Option<f64>,
}

/// Where baseline `name` keeps the result `rel` (relative to the output directory).
pub(super) fn baseline_path(out_dir: &Path, name: &str, rel: &Path) -> PathBuf {
    out_dir.join("baselines").join(name).join(rel)
}

/// The earlier result to compare with and how it is called: `Ok(None)` without one (a first
/// run); an error naming a `--baseline` that has no saved result for this benchmark.
pub(super) fn reference(
    a: &Against,
    out_dir: &Path,
    rel: &Path,
    bench: &str,
) -> Result<Option<(Value, String)>, String> {
    let (path, label) = match &a.baseline {
        Some(n) => (baseline_path(out_dir, n, rel), format!("baseline `{n}`")),
        None => (out_dir.join(rel), "the previous run".to_string()),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(_) if a.baseline.is_none() => return Ok(None),
        Err(e) => {
            return Err(format!(
            "--baseline: no saved result for `{bench}` ({}: {e}); save one with --save-baseline",
            path.display()
        ))
        }
    };
    match serde_json::from_str(&text) {
        Ok(v) => Ok(Some((v, label))),
        Err(_) if a.baseline.is_none() => Ok(None),
        Err(e) => Err(format!("{}: not a bench result: {e}", path.display())),
    }
}

/// The change against `reference`: `bench.change` and the lines to print; `None` when the
/// two share no metric.
pub(super) fn change(
    reference: &Value,
    label: &str,
    stats: &BenchStats,
    judge: Judge,
) -> Option<(Value, Vec<String>)> {
    let old = measurement_of(reference)?;
    let now = serde_json::json!({ "bench": stats });
    let new = measurement_of(&now)?;
    let energy = [
        "bench.adjusted_energy_per_iter_j",
        "bench.energy_per_iter_j",
    ]
    .into_iter()
    .find(|m| old.metrics.contains_key(*m) && new.metrics.contains_key(*m))?;
    let mut out = serde_json::Map::new();
    out.insert("against".into(), Value::from(label));
    let mut lines = Vec::new();
    for (key, metric) in [("energy", energy), ("time", "bench.time_per_iter_s")] {
        let (Some(b), Some(n)) = (old.metrics.get(metric), new.metrics.get(metric)) else {
            continue;
        };
        let Some(c) = compare_with(&stats.name, metric, b, n, judge) else {
            continue;
        };
        lines.push(format!("  {key:<6} {} (against {label})", describe(&c)));
        out.insert(key.into(), serde_json::to_value(&c).unwrap_or(Value::Null));
    }
    (!lines.is_empty()).then_some((Value::Object(out), lines))
}

/// "−3.1 % [−4.0 %, −2.2 %] (p = 0.002) improved".
fn describe(c: &Comparison) -> String {
    let ci = c.ci_pct.map_or(String::from(" [no interval]"), |[lo, hi]| {
        format!(" [{lo:+.1} %, {hi:+.1} %]")
    });
    let p = c
        .p_value
        .map_or(String::new(), |p| format!(" (p = {p:.3})"));
    format!("{:+.1} %{ci}{p} {}", c.change_pct, c.verdict.as_str())
}

/// The largest significant regression recorded in `change`, %.
pub(super) fn regression_pct(change: &Value) -> Option<f64> {
    ["energy", "time"]
        .iter()
        .filter_map(|k| serde_json::from_value::<Comparison>(change.get(*k)?.clone()).ok())
        .filter(|c| c.verdict == Verdict::Regressed)
        .map(|c| c.change_pct)
        .reduce(f64::max)
}
