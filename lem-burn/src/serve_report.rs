//! The result sections of a served run ([`crate::serve`]): `workload`, `metrics` as
//! distributions over requests, and `requests`, each request's shared window.

use serde_json::{json, Value};

use lem::GroupSummary;

use burn::prelude::Backend;
use lem::Meter;

use crate::error::Result;
use crate::generate::GenerateOptions;
use crate::model::Model;
use crate::serve::{serve, Arrivals, Request, Served};
use crate::workload::WorkloadInfo;

/// p50, p95 and p99 of `xs`; `null` when empty.
fn pcts(xs: &[f64]) -> Value {
    let p = |q: f64| lem::stats::percentile(xs, q);
    if xs.is_empty() {
        return Value::Null;
    }
    json!({ "p50": p(50.0), "p95": p(95.0), "p99": p(99.0),
            "mean": lem::stats::Summary::of(xs).map(|s| s.mean) })
}

/// Whether the requests' shares add up to the group's union energy, to 1e-9 relative;
/// `None` when either is unknown.
pub fn shares_add_up(union_j: Option<f64>, shares_sum_j: Option<f64>) -> Option<bool> {
    let (u, s) = (union_j?, shares_sum_j?);
    Some((u - s).abs() <= 1e-9 * u.abs().max(1e-12))
}

/// The most requests running at once, from their windows (`null` unmeasured).
fn peak_batch(served: &[Served]) -> Option<usize> {
    let mut edges: Vec<(f64, i64)> = Vec::with_capacity(2 * served.len());
    for s in served {
        let r = s.report.as_ref()?;
        edges.push((r.start_s, 1));
        edges.push((r.start_s + r.duration_s, -1));
    }
    // at equal times, a leaving request leaves before the next joins
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut open = 0i64;
    let mut peak = 0i64;
    for (_, d) in edges {
        open += d;
        peak = peak.max(open);
    }
    usize::try_from(peak).ok()
}

/// `workload`, `metrics` and `requests` of a served run; `group` is the `requests` group.
pub fn sections(
    info: &WorkloadInfo,
    arrivals: &Arrivals,
    served: &[Served],
    wall_s: f64,
    group: Option<&GroupSummary>,
) -> (Value, Value, Value) {
    let tokens_out: usize = served.iter().map(|s| s.tokens.len()).sum();
    let prompt_tokens: usize = served.iter().map(|s| s.prompt_tokens).sum();
    let shared = |s: &Served| {
        s.report
            .as_ref()
            .and_then(|r| r.energy.shared.as_ref()?.shared_j)
    };
    let per_request: Vec<f64> = served.iter().filter_map(shared).collect();
    let per_token: Vec<f64> = served
        .iter()
        .filter_map(|s| shared(s).map(|j| j / s.tokens.len().max(1) as f64))
        .collect();
    let ttft: Vec<f64> = served.iter().map(|s| s.ttft_s * 1e3).collect();
    let itl: Vec<f64> = served
        .iter()
        .flat_map(|s| s.itl_s.iter().map(|x| x * 1e3))
        .collect();
    let shares_sum: Option<f64> =
        (per_request.len() == served.len() && !served.is_empty()).then(|| per_request.iter().sum());
    let union_j = group.and_then(|g| g.union_j);
    let workload = json!({
        "mode": "server",
        "arrivals": arrivals.describe(),
        "model": info.model,
        "backend": info.backend,
        "threads": info.threads,
        "dtype": info.dtype,
        "batch": peak_batch(served),
        "prompt_len": info.prompt_len,
        "gen_tokens": info.gen_tokens,
        "requests": info.requests,
        "seed": info.seed,
        "params": info.params,
        "weights": info.weights,
        "sampling": info.sampling,
        "prompt_tokens": prompt_tokens,
        "tokens_out": tokens_out,
    });
    let metrics = json!({
        "energy_per_request_j": pcts(&per_request),
        "energy_per_output_token_j": pcts(&per_token),
        "ttft_ms": pcts(&ttft),
        "itl_ms": pcts(&itl),
        "tokens_per_s": (wall_s > 0.0).then(|| tokens_out as f64 / wall_s),
        "wall_s": wall_s,
        "union_j": union_j,
        "shares_sum_j": shares_sum,
        "shares_add_up": shares_add_up(union_j, shares_sum),
    });
    let requests: Vec<Value> = served
        .iter()
        .map(|s| {
            let r = s.report.as_ref();
            json!({
                "name": r.map(|r| r.name.clone()),
                "arrival_s": s.arrival_s,
                "start_s": r.map(|r| r.start_s),
                "duration_s": r.map(|r| r.duration_s),
                "prompt_tokens": s.prompt_tokens,
                "tokens_out": s.tokens.len(),
                "ttft_ms": s.ttft_s * 1e3,
                "energy": r.map(|r| json!({
                    "raw_j": r.energy.raw_j,
                    "uncertainty_j": r.energy.uncertainty_j,
                    "adjusted_j": r.energy.adjusted_j,
                    "shared_j": r.energy.shared.as_ref().and_then(|e| e.shared_j),
                    "shared_uncertainty_j": r.energy.shared.as_ref().and_then(|e| e.shared_uncertainty_j),
                    "shared_adjusted_j": r.energy.shared.as_ref().and_then(|e| e.shared_adjusted_j),
                })),
            })
        })
        .collect();
    (workload, metrics, Value::Array(requests))
}

fn ms3(v: &Value) -> String {
    let f = |k: &str| v[k].as_f64().map_or("-".into(), |x| format!("{x:.2}"));
    format!("p50 {} p95 {} p99 {} ms", f("p50"), f("p95"), f("p99"))
}

fn j3(v: &Value) -> String {
    let f = |k: &str| v[k].as_f64().map_or("-".into(), |x| format!("{x:.4}"));
    format!("p50 {} p95 {} p99 {} J", f("p50"), f("p95"), f("p99"))
}

/// The human summary of a served run's `metrics`: distributions over requests, and the
/// union energy beside the sum of the shares.
pub fn table(metrics: &Value) -> Vec<String> {
    let m = metrics;
    let j = |k: &str| {
        m[k].as_f64()
            .map_or("not measured".into(), |x| format!("{x:.6} J"))
    };
    let check = match m["shares_add_up"].as_bool() {
        Some(true) => "equal (checked)",
        Some(false) => "DIFFER",
        None => "not measured",
    };
    vec![
        format!("  TTFT          {}", ms3(&m["ttft_ms"])),
        format!("  ITL           {}", ms3(&m["itl_ms"])),
        format!(
            "  throughput    {:.1} tok/s over {:.3} s",
            m["tokens_per_s"].as_f64().unwrap_or(0.0),
            m["wall_s"].as_f64().unwrap_or(0.0)
        ),
        format!("  J/request     {}", j3(&m["energy_per_request_j"])),
        format!("  J/token       {}", j3(&m["energy_per_output_token_j"])),
        format!(
            "  group         union {} | shares summed {} | {check}",
            j("union_j"),
            j("shares_sum_j")
        ),
    ]
}

/// A measured served run: `info.requests` requests of `prompt` arriving as `arrivals` says
/// (seeded by `info.seed`; request `i` samples with seed `info.seed + 1 + i`), served as a
/// continuous batch, each a shared window of the meter's group `requests`. Returns
/// `workload`, `metrics`, `requests` and warnings (one when the shares do not add up).
///
/// # Errors
/// As [`serve`].
pub fn measure<B: Backend>(
    meter: &Meter,
    model: &Model<B>,
    prompt: &[u32],
    opts: &GenerateOptions,
    arrivals: &Arrivals,
    info: &WorkloadInfo,
) -> Result<(Value, Value, Value, Vec<String>)> {
    let reqs: Vec<Request> = arrivals
        .times(info.requests, info.seed)
        .into_iter()
        .enumerate()
        .map(|(i, arrival_s)| Request {
            prompt: prompt.to_vec(),
            arrival_s,
            seed: info.seed.wrapping_add(1 + i as u64),
        })
        .collect();
    let group = meter.group("requests");
    let t0 = std::time::Instant::now();
    let served = serve(model, &reqs, opts, Some(&group))?;
    let wall_s = t0.elapsed().as_secs_f64();
    let summary = group.summary();
    let (workload, metrics, requests) = sections(info, arrivals, &served, wall_s, Some(&summary));
    let mut warnings = Vec::new();
    if metrics["shares_add_up"] == Value::Bool(false) {
        warnings.push(format!(
            "the requests' shares ({} J) do not add up to the group's union energy ({} J)",
            metrics["shares_sum_j"], metrics["union_j"]
        ));
    }
    Ok((workload, metrics, requests, warnings))
}
