//! Generation with a KV cache: one batched prefill, then one position per decode step,
//! with only the sampled token ids crossing between device and host. Optionally measured:
//! each request is an energy scope with prefill and decode nested inside it, and the
//! meter's sync hook runs at every boundary so GPU work lands in the right window.

use burn::prelude::*;
use std::time::Instant;

use lem::{EnergyReport, Meter};

use crate::error::{Error, Result};
use crate::model::Model;
use crate::sampling::{next_tokens, Rng, Sampling};

/// How to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Tokens to generate per sequence (the first comes from prefill).
    pub max_new_tokens: usize,
    /// Greedy or random sampling.
    pub sampling: Sampling,
    /// A sequence stops after producing one of these.
    pub stop_tokens: Vec<u32>,
}

/// What one generation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Generated tokens per sequence (up to and including a stop token).
    pub tokens: Vec<Vec<u32>>,
    /// Prompt tokens over the batch.
    pub prompt_tokens: usize,
    /// Generated tokens over the batch.
    pub tokens_out: usize,
    /// Time to first token: prefill plus sampling the first token, s.
    pub ttft_s: f64,
    /// Each decode step's latency (inter-token latency), s.
    pub step_s: Vec<f64>,
}

/// A measured request: the generation and the energy of the request and its phases.
#[derive(Debug, Clone)]
pub struct RequestMeasurement {
    /// What was generated and how fast.
    pub generation: Generation,
    /// The whole request.
    pub request: EnergyReport,
    /// Prefill (the prompt and the first token).
    pub prefill: EnergyReport,
    /// Decode (every further token); `None` when only one token was generated.
    pub decode: Option<EnergyReport>,
}

fn check(
    model_vocab: usize,
    max_len: usize,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
) -> Result<usize> {
    let len = prompts.first().map_or(0, Vec::len);
    if prompts.is_empty() || len == 0 {
        return Err(Error::config(
            "prompt",
            "needs at least one sequence of at least one token",
        ));
    }
    if prompts.iter().any(|p| p.len() != len) {
        return Err(Error::config(
            "prompt",
            "every sequence of a batch must have the same length",
        ));
    }
    if opts.max_new_tokens == 0 {
        return Err(Error::config("gen-tokens", "must be at least 1"));
    }
    if len + opts.max_new_tokens > max_len {
        return Err(Error::config(
            "prompt-len + gen-tokens",
            format!(
                "{} exceeds the model's context of {max_len}",
                len + opts.max_new_tokens
            ),
        ));
    }
    if let Some(bad) = prompts
        .iter()
        .flatten()
        .find(|t| **t as usize >= model_vocab)
    {
        return Err(Error::config(
            "prompt",
            format!("token {bad} is outside the vocabulary of {model_vocab}"),
        ));
    }
    Ok(len)
}

fn ids_tensor<B: Backend>(ids: &[u32], batch: usize, device: &B::Device) -> Tensor<B, 2, Int> {
    let s = ids.len() / batch.max(1);
    let v: Vec<i64> = ids.iter().map(|&x| i64::from(x)).collect();
    Tensor::from_data(TensorData::new(v, [batch, s]), device)
}

fn scope<'m>(meter: Option<&'m Meter>, name: &'static str) -> Result<Option<lem::EnergyScope<'m>>> {
    Ok(match meter {
        Some(m) => Some(m.start(name)?),
        None => None,
    })
}

fn finish(s: Option<lem::EnergyScope<'_>>) -> Result<Option<EnergyReport>> {
    Ok(match s {
        Some(s) => Some(s.finish()?),
        None => None,
    })
}

type Reports = (
    Option<EnergyReport>,
    Option<EnergyReport>,
    Option<EnergyReport>,
);

fn run<B: Backend>(
    model: &Model<B>,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    rng: &mut Rng,
    meter: Option<&Meter>,
) -> Result<(Generation, Reports)> {
    let len = check(model.config.vocab_size, model.max_len(), prompts, opts)?;
    let batch = prompts.len();
    let device = model.device();
    let mut cache = model.new_cache(batch, len + opts.max_new_tokens);
    let flat: Vec<u32> = prompts.iter().flatten().copied().collect();
    let input = ids_tensor::<B>(&flat, batch, device);

    let request = scope(meter, "request")?;
    let prefill = scope(meter, "prefill")?;
    let t0 = Instant::now();
    let logits = model.forward(input, &mut cache, 0);
    // the token ids coming back to the host wait for the device: the only round-trip
    let mut next = next_tokens(logits, opts.sampling, rng);
    let ttft_s = t0.elapsed().as_secs_f64();
    let prefill_report = finish(prefill)?;

    let mut tokens: Vec<Vec<u32>> = next.iter().map(|&t| vec![t]).collect();
    let mut done: Vec<bool> = next.iter().map(|t| opts.stop_tokens.contains(t)).collect();
    let mut step_s = Vec::with_capacity(opts.max_new_tokens.saturating_sub(1));
    let decoding = opts.max_new_tokens > 1 && !done.iter().all(|d| *d);
    let decode = if decoding {
        scope(meter, "decode")?
    } else {
        None
    };
    if decoding {
        for step in 1..opts.max_new_tokens {
            let t = Instant::now();
            let input = ids_tensor::<B>(&next, batch, device);
            let logits = model.forward(input, &mut cache, len + step - 1);
            next = next_tokens(logits, opts.sampling, rng);
            step_s.push(t.elapsed().as_secs_f64());
            for (i, &tok) in next.iter().enumerate() {
                if !done[i] {
                    tokens[i].push(tok);
                    done[i] = opts.stop_tokens.contains(&tok);
                }
            }
            if done.iter().all(|d| *d) {
                break;
            }
        }
    }
    let decode_report = finish(decode)?;
    let request_report = finish(request)?;
    let tokens_out = tokens.iter().map(Vec::len).sum();
    Ok((
        Generation {
            tokens,
            prompt_tokens: batch * len,
            tokens_out,
            ttft_s,
            step_s,
        },
        (request_report, prefill_report, decode_report),
    ))
}

/// Generate without measuring (warmup, tests, demos).
///
/// # Errors
/// [`Error::InvalidConfig`] for empty or ragged prompts, out-of-vocabulary tokens, or a
/// length beyond the model's context.
pub fn generate<B: Backend>(
    model: &Model<B>,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    rng: &mut Rng,
) -> Result<Generation> {
    run(model, prompts, opts, rng, None).map(|(g, _)| g)
}

/// Generate one request, measured: a `request` scope with `prefill` and `decode` nested in
/// it. Give the meter the backend's sync as its hook (see [`crate::backend_sync`]).
///
/// # Errors
/// As [`generate`], and measurement errors.
pub fn measure_request<B: Backend>(
    meter: &Meter,
    model: &Model<B>,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    rng: &mut Rng,
) -> Result<RequestMeasurement> {
    let (generation, (request, prefill, decode)) = run(model, prompts, opts, rng, Some(meter))?;
    match (request, prefill) {
        (Some(request), Some(prefill)) => Ok(RequestMeasurement {
            generation,
            request,
            prefill,
            decode,
        }),
        _ => Err(Error::config(
            "meter",
            "a measured request produced no report",
        )),
    }
}
