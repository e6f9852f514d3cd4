//! What `lem compare` compares: the metrics of result files, aggregates (with their cycles)
//! and bench outputs, read from files or directories and paired by name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};

/// The values of one metric on one side, with the bound of a single value.
#[derive(Debug, Clone, PartialEq)]
pub struct Values {
    /// The values (cycles, samples, or one).
    pub values: Vec<f64>,
    /// The uncertainty bound of a single value, where the input has one.
    pub bound: Option<f64>,
}

impl Values {
    pub(super) fn mean(&self) -> f64 {
        self.values.iter().sum::<f64>() / self.values.len() as f64
    }

    /// Sample variance of the mean (s² / n); `None` for one value.
    pub(super) fn var_of_mean(&self) -> Option<f64> {
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
    pub(super) fn half_width(&self) -> Option<f64> {
        match self.var_of_mean() {
            Some(v) => Some(crate::results::stats::t_critical_95(self.values.len())? * v.sqrt()),
            None => self.bound,
        }
    }
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
