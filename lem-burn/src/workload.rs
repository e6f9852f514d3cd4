//! Turning measured requests into the `workload`, `metrics` and `phases` sections of a
//! result (schema v3).

use serde_json::{json, Value};

use crate::generate::RequestMeasurement;

/// What was run.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadInfo {
    /// Model (preset) name.
    pub model: String,
    /// `cpu` or `cuda`.
    pub backend: String,
    /// CPU threads (the CPU backend).
    pub threads: Option<usize>,
    /// `f32`, `f16`, `bf16`.
    pub dtype: String,
    /// Sequences per request.
    pub batch: usize,
    /// Prompt tokens per sequence.
    pub prompt_len: usize,
    /// Tokens to generate per sequence.
    pub gen_tokens: usize,
    /// Requests per cycle.
    pub requests: usize,
    /// Seed.
    pub seed: u64,
    /// Parameters of the model.
    pub params: usize,
    /// `random` or the weights directory.
    pub weights: String,
    /// Sampling, in words.
    pub sampling: String,
}

fn sum(it: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut total = 0.0;
    let mut any = false;
    for v in it {
        total += v?;
        any = true;
    }
    any.then_some(total)
}

fn div(a: Option<f64>, b: f64) -> Option<f64> {
    a.filter(|_| b > 0.0).map(|a| a / b)
}

/// The host process's peak resident memory (VmHWM), MB.
pub fn host_peak_memory_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb / 1000.0)
}

/// `workload`, `metrics` and `phases` for the requests of one run.
pub fn sections(info: &WorkloadInfo, reqs: &[RequestMeasurement]) -> (Value, Value, Value) {
    let tokens_out: usize = reqs.iter().map(|r| r.generation.tokens_out).sum();
    let prompt_tokens: usize = reqs.iter().map(|r| r.generation.prompt_tokens).sum();
    let first_tokens: usize = reqs.iter().map(|r| r.generation.tokens.len()).sum();
    let decode_tokens = tokens_out.saturating_sub(first_tokens);
    let prefill_raw = sum(reqs.iter().map(|r| r.prefill.energy.raw_j));
    let prefill_adj = sum(reqs.iter().map(|r| r.prefill.energy.adjusted_j));
    let decode_raw = sum(reqs
        .iter()
        .map(|r| r.decode.as_ref().map_or(Some(0.0), |d| d.energy.raw_j)));
    let decode_adj = sum(reqs
        .iter()
        .map(|r| r.decode.as_ref().map_or(Some(0.0), |d| d.energy.adjusted_j)));
    let request_raw = sum(reqs.iter().map(|r| r.request.energy.raw_j));
    let request_adj = sum(reqs.iter().map(|r| r.request.energy.adjusted_j));
    // bounds of separate windows add
    let prefill_u = sum(reqs.iter().map(|r| r.prefill.energy.uncertainty_j));
    let prefill_adj_u = sum(reqs.iter().map(|r| r.prefill.energy.adjusted_uncertainty_j));
    let decode_u = sum(reqs.iter().map(|r| {
        r.decode
            .as_ref()
            .map_or(Some(0.0), |d| d.energy.uncertainty_j)
    }));
    let decode_adj_u = sum(reqs.iter().map(|r| {
        r.decode
            .as_ref()
            .map_or(Some(0.0), |d| d.energy.adjusted_uncertainty_j)
    }));
    let request_u = sum(reqs.iter().map(|r| r.request.energy.uncertainty_j));
    let request_adj_u = sum(reqs.iter().map(|r| r.request.energy.adjusted_uncertainty_j));
    let prefill_s: f64 = reqs.iter().map(|r| r.prefill.duration_s).sum();
    let decode_s: f64 = reqs
        .iter()
        .map(|r| r.decode.as_ref().map_or(0.0, |d| d.duration_s))
        .sum();
    let request_s: f64 = reqs.iter().map(|r| r.request.duration_s).sum();
    let ttft: Vec<f64> = reqs.iter().map(|r| r.generation.ttft_s * 1e3).collect();
    let itl: Vec<f64> = reqs
        .iter()
        .flat_map(|r| r.generation.step_s.iter().map(|s| s * 1e3))
        .collect();
    let pct = |p: f64| lem::stats::percentile(&itl, p);
    let gpu_peak = reqs
        .iter()
        .flat_map(|r| {
            r.request
                .devices
                .iter()
                .filter_map(|d| d.memory.peak_used_mb)
        })
        .reduce(f64::max);
    let (peak, peak_source) = match gpu_peak {
        Some(p) => (Some(p), "device"),
        None => (host_peak_memory_mb(), "host_process"),
    };
    let both = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a + b);
    let workload = json!({
        "model": info.model,
        "backend": info.backend,
        "threads": info.threads,
        "dtype": info.dtype,
        "batch": info.batch,
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
        "ttft_ms": lem::stats::Summary::of(&ttft).map(|s| s.mean),
        "itl_ms": { "p50": pct(50.0), "p95": pct(95.0), "p99": pct(99.0),
                    "mean": lem::stats::Summary::of(&itl).map(|s| s.mean) },
        "tokens_per_s": div(Some(tokens_out as f64), request_s),
        "prefill_tokens_per_s": div(Some(prompt_tokens as f64), prefill_s),
        "decode_tokens_per_s": div(Some(decode_tokens as f64), decode_s),
        "energy_per_output_token_j": div(both(prefill_adj, decode_adj), tokens_out as f64),
        "energy_per_output_token_raw_j": div(both(prefill_raw, decode_raw), tokens_out as f64),
        "energy_per_output_token_uncertainty_j": div(both(prefill_adj_u, decode_adj_u), tokens_out as f64),
        "energy_per_output_token_raw_uncertainty_j": div(both(prefill_u, decode_u), tokens_out as f64),
        "energy_per_prompt_token_prefill_j": div(prefill_adj, prompt_tokens as f64),
        "energy_per_prompt_token_prefill_raw_j": div(prefill_raw, prompt_tokens as f64),
        "peak_memory_mb": peak,
        "peak_memory_source": peak_source,
    });
    let start =
        |f: &dyn Fn(&RequestMeasurement) -> Option<f64>| reqs.iter().filter_map(f).reduce(f64::min);
    // every request's window of each phase, [start_s, end_s] since the meter's start
    let spans = |f: &dyn Fn(&RequestMeasurement) -> Option<(f64, f64)>| -> Vec<[f64; 2]> {
        reqs.iter().filter_map(f).map(|(s, d)| [s, s + d]).collect()
    };
    let phases = json!({
        "request": { "energy": { "raw_j": request_raw, "adjusted_j": request_adj,
                                 "uncertainty_j": request_u, "adjusted_uncertainty_j": request_adj_u },
                     "duration_s": request_s, "count": reqs.len(),
                     "start_s": start(&|r| Some(r.request.start_s)),
                     "intervals": spans(&|r| Some((r.request.start_s, r.request.duration_s))) },
        "prefill": { "energy": { "raw_j": prefill_raw, "adjusted_j": prefill_adj,
                                 "uncertainty_j": prefill_u, "adjusted_uncertainty_j": prefill_adj_u },
                     "duration_s": prefill_s, "count": reqs.len(),
                     "start_s": start(&|r| Some(r.prefill.start_s)),
                     "intervals": spans(&|r| Some((r.prefill.start_s, r.prefill.duration_s))) },
        "decode": { "energy": { "raw_j": decode_raw, "adjusted_j": decode_adj,
                                "uncertainty_j": decode_u, "adjusted_uncertainty_j": decode_adj_u },
                    "duration_s": decode_s, "count": reqs.iter().filter(|r| r.decode.is_some()).count(),
                    "start_s": start(&|r| r.decode.as_ref().map(|d| d.start_s)),
                    "intervals": spans(&|r| r.decode.as_ref().map(|d| (d.start_s, d.duration_s))) },
    });
    (workload, metrics, phases)
}

/// Relative uncertainty above which a phase's energy deserves a warning.
pub const MAX_RELATIVE_UNCERTAINTY: f64 = 0.05;

/// Warnings for phases whose energy bound exceeds [`MAX_RELATIVE_UNCERTAINTY`] of the
/// energy, each saying what would reduce it.
pub fn uncertainty_warnings(phases: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for phase in ["prefill", "decode", "request"] {
        let e = &phases[phase]["energy"];
        let (Some(j), Some(u)) = (e["raw_j"].as_f64(), e["uncertainty_j"].as_f64()) else {
            continue;
        };
        if j > 0.0 && u / j > MAX_RELATIVE_UNCERTAINTY {
            out.push(format!(
                "{phase} energy is uncertain by ±{:.1} % (±{u:.3} J of {j:.3} J), above {:.0} %: measure more requests (--requests), longer generations (--gen-tokens) or a larger batch (--batch) so each window spans many energy-counter updates",
                u / j * 100.0,
                MAX_RELATIVE_UNCERTAINTY * 100.0
            ));
        }
    }
    out
}
