//! A continuous-batching server: requests arrive over time (a seeded Poisson process),
//! each joins the running batch at the next decode step and leaves it when done. Every
//! sequence has its own KV cache slot and its own positions, so its tokens do not depend on
//! what else is in the batch. Measured, each request is a shared window of a group (see
//! [`lem::WindowGroup`]) weighted by the tokens it processed, so the requests' energies add
//! up to the energy of the union of their lifetimes instead of counting overlaps twice.

use burn::prelude::*;
use std::time::{Duration, Instant};

use lem::{EnergyReport, SharedScope, WindowGroup};

use crate::cache::KvCache;
use crate::error::{Error, Result};
use crate::generate::GenerateOptions;
use crate::model::Model;
use crate::sampling::{next_tokens, Rng};

/// How requests arrive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrivals {
    /// A Poisson process of `rate` requests per second.
    Poisson {
        /// Requests per second, > 0.
        rate: f64,
    },
}

impl Arrivals {
    /// Parse `poisson:RATE` (requests per second, > 0).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming `--arrivals` for anything else.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::config("--arrivals", format!("`{s}`: {why}"));
        let rate = s
            .strip_prefix("poisson:")
            .ok_or_else(|| bad("expected poisson:RATE (requests per second)"))?;
        let rate: f64 = rate
            .trim()
            .parse()
            .map_err(|_| bad("RATE is not a number"))?;
        if !(rate.is_finite() && rate > 0.0) {
            return Err(bad(
                "RATE must be a finite number of requests per second > 0",
            ));
        }
        Ok(Self::Poisson { rate })
    }

    /// `n` arrival times (seconds from the start, ascending) drawn from `seed`.
    pub fn times(&self, n: usize, seed: u64) -> Vec<f64> {
        let Self::Poisson { rate } = *self;
        let mut rng = Rng::new(seed);
        let mut t = 0.0;
        (0..n)
            .map(|_| {
                // exponential gaps: -ln(1 - U) / rate, U in [0, 1)
                t += -(1.0 - rng.uniform()).ln() / rate;
                t
            })
            .collect()
    }

    /// The arrivals as the result file's `workload.arrivals`.
    pub fn describe(&self) -> String {
        let Self::Poisson { rate } = *self;
        format!("poisson:{rate}")
    }
}

/// One request to serve.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Prompt tokens.
    pub prompt: Vec<u32>,
    /// Arrival, seconds after the server starts.
    pub arrival_s: f64,
    /// Seed of this request's own sampler (its tokens do not depend on the others').
    pub seed: u64,
}

/// A served request.
#[derive(Debug, Clone)]
pub struct Served {
    /// Generated tokens (up to and including a stop token).
    pub tokens: Vec<u32>,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Arrival, s after the start.
    pub arrival_s: f64,
    /// From arrival to the first token (queueing, prefill and sampling), s.
    pub ttft_s: f64,
    /// Between consecutive tokens of this request, s.
    pub itl_s: Vec<f64>,
    /// The request's shared window, when measured.
    pub report: Option<EnergyReport>,
}

/// A sequence in the running batch: its cache slot, position and progress.
struct Slot<'m, B: Backend> {
    index: usize,
    cache: KvCache<B>,
    pos: usize,
    next: u32,
    rng: Rng,
    served: Served,
    last_token: Instant,
    scope: Option<SharedScope<'m>>,
}

fn ids<B: Backend>(ids: &[u32], device: &B::Device) -> Tensor<B, 2, Int> {
    let v: Vec<i64> = ids.iter().map(|&x| i64::from(x)).collect();
    Tensor::from_data(TensorData::new(v, [1, ids.len()]), device)
}

fn check<B: Backend>(model: &Model<B>, reqs: &[Request], opts: &GenerateOptions) -> Result<()> {
    if opts.max_new_tokens == 0 {
        return Err(Error::config("gen-tokens", "must be at least 1"));
    }
    for r in reqs {
        if r.prompt.is_empty() {
            return Err(Error::config("prompt", "needs at least one token"));
        }
        if r.prompt.len() + opts.max_new_tokens > model.max_len() {
            return Err(Error::config(
                "prompt-len + gen-tokens",
                format!(
                    "{} exceeds the model's context of {}",
                    r.prompt.len() + opts.max_new_tokens,
                    model.max_len()
                ),
            ));
        }
        if let Some(bad) = r
            .prompt
            .iter()
            .find(|t| **t as usize >= model.config.vocab_size)
        {
            return Err(Error::config(
                "prompt",
                format!("token {bad} is outside the vocabulary"),
            ));
        }
        if !(r.arrival_s.is_finite() && r.arrival_s >= 0.0) {
            return Err(Error::config("arrivals", "times must be finite and >= 0"));
        }
    }
    Ok(())
}

/// Admit a request into the batch: open its shared window, run its prefill in its own
/// slot, sample its first token.
fn admit<'m, B: Backend>(
    model: &Model<B>,
    index: usize,
    r: &Request,
    opts: &GenerateOptions,
    group: Option<&WindowGroup<'m>>,
    start: Instant,
) -> Result<Slot<'m, B>> {
    let scope = match group {
        Some(g) => Some(g.start(format!("request-{index}"))?),
        None => None,
    };
    let len = r.prompt.len();
    let mut cache = model.new_cache(1, len + opts.max_new_tokens);
    let mut rng = Rng::new(r.seed);
    let logits = model.forward(ids::<B>(&r.prompt, model.device()), &mut cache, 0);
    let next = next_tokens(logits, opts.sampling, &mut rng)
        .first()
        .copied()
        .unwrap_or(0);
    if let Some(s) = &scope {
        s.add_weight(len as f64)?;
    }
    let now = Instant::now();
    Ok(Slot {
        index,
        cache,
        pos: len,
        next,
        rng,
        served: Served {
            tokens: vec![next],
            prompt_tokens: len,
            arrival_s: r.arrival_s,
            ttft_s: (now.duration_since(start).as_secs_f64() - r.arrival_s).max(0.0),
            itl_s: Vec::new(),
            report: None,
        },
        last_token: now,
        scope,
    })
}

/// One decode step of the running sequences, batched: each its last token at its own
/// position in its own cache slot.
fn decode<B: Backend>(
    model: &Model<B>,
    slots: &mut [&mut Slot<'_, B>],
    opts: &GenerateOptions,
) -> Result<()> {
    if slots.is_empty() {
        return Ok(());
    }
    let last: Vec<i64> = slots.iter().map(|s| i64::from(s.next)).collect();
    let tokens = Tensor::from_data(TensorData::new(last, [slots.len(), 1]), model.device());
    let positions: Vec<usize> = slots.iter().map(|s| s.pos).collect();
    let logits = {
        let mut caches: Vec<&mut KvCache<B>> = slots.iter_mut().map(|s| &mut s.cache).collect();
        model.forward_rows(tokens, &mut caches, &positions)
    };
    let vocab = logits.dims()[1];
    for (i, slot) in slots.iter_mut().enumerate() {
        // each row samples with its own request's generator
        let row = logits.clone().slice(s![i..i + 1, 0..vocab]);
        slot.next = next_tokens(row, opts.sampling, &mut slot.rng)
            .first()
            .copied()
            .unwrap_or(0);
    }
    let now = Instant::now();
    for slot in slots.iter_mut() {
        slot.pos += 1;
        slot.served
            .itl_s
            .push(now.duration_since(slot.last_token).as_secs_f64());
        slot.last_token = now;
        slot.served.tokens.push(slot.next);
        if let Some(s) = &slot.scope {
            s.add_weight(1.0)?;
        }
    }
    Ok(())
}

fn finished(slot: &Slot<'_, impl Backend>, opts: &GenerateOptions) -> bool {
    slot.served.tokens.len() >= opts.max_new_tokens
        || slot
            .served
            .tokens
            .last()
            .is_some_and(|t| opts.stop_tokens.contains(t))
}

/// Serve `reqs` (in order of arrival) as a continuous batch: at each step, requests that
/// have arrived join (prefill and first token), then every running sequence decodes one
/// token; a sequence leaves when it has `max_new_tokens` tokens or produced a stop token.
/// With `group`, each request is a shared window named `request-<i>` in it, weighted by
/// the tokens it processed (its prompt at prefill, one per decode step). Returns the
/// requests in their input order.
///
/// # Errors
/// [`Error::InvalidConfig`] for empty prompts, out-of-vocabulary tokens, lengths beyond
/// the context or bad arrival times; measurement errors.
pub fn serve<B: Backend>(
    model: &Model<B>,
    reqs: &[Request],
    opts: &GenerateOptions,
    group: Option<&WindowGroup<'_>>,
) -> Result<Vec<Served>> {
    check(model, reqs, opts)?;
    let start = Instant::now();
    let mut waiting = reqs.iter().enumerate().peekable();
    let mut running: Vec<Slot<'_, B>> = Vec::new();
    let mut done: Vec<(usize, Served)> = Vec::with_capacity(reqs.len());
    loop {
        if running.is_empty() {
            match waiting.peek() {
                None => break,
                Some((_, r)) => {
                    // idle until the next arrival (the group reports the gap)
                    let at = Duration::from_secs_f64(r.arrival_s);
                    if let Some(wait) = at.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
        }
        let now = start.elapsed().as_secs_f64();
        while let Some((i, r)) = waiting.next_if(|(_, r)| r.arrival_s <= now) {
            running.push(admit(model, i, r, opts, group, start)?);
        }
        let mut step: Vec<&mut Slot<'_, B>> =
            running.iter_mut().filter(|s| !finished(s, opts)).collect();
        decode(model, &mut step, opts)?;
        let (leaving, staying): (Vec<_>, Vec<_>) =
            running.into_iter().partition(|s| finished(s, opts));
        running = staying;
        for mut slot in leaving {
            if let Some(s) = slot.scope.take() {
                slot.served.report = Some(s.finish()?);
            }
            done.push((slot.index, slot.served));
        }
    }
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, s)| s).collect())
}
