//! Choosing the next token: greedy on the device (only the token ids come back to the host),
//! or temperature / top-k / top-p sampling with a seeded generator on the host.

use burn::prelude::*;

/// How to pick the next token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// The most likely token.
    Greedy,
    /// Sample from softmax(logits / temperature), restricted to the `top_k` most likely
    /// tokens (0: no limit) and to the smallest set whose probability reaches `top_p`.
    Random {
        /// Softmax temperature (> 0).
        temperature: f32,
        /// Keep only the k most likely tokens; 0 keeps all.
        top_k: usize,
        /// Nucleus threshold in (0, 1].
        top_p: f32,
    },
}

/// A small, seeded generator (xoshiro256**) for reproducible sampling.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self {
            s: [next(), next(), next(), next()],
        }
    }

    fn next_u64(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Sample one token from one row of logits (host side).
pub fn sample_row(
    logits: &[f32],
    temperature: f32,
    top_k: usize,
    top_p: f32,
    rng: &mut Rng,
) -> usize {
    let t = temperature.max(1e-6);
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if top_k > 0 {
        idx.truncate(top_k.min(idx.len()));
    }
    let max = idx.first().map_or(0.0, |&i| logits[i]);
    let weights: Vec<f64> = idx
        .iter()
        .map(|&i| f64::from((logits[i] - max) / t).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    // nucleus: the smallest prefix whose probability reaches top_p
    let mut keep = weights.len();
    if top_p < 1.0 {
        let mut acc = 0.0;
        for (n, w) in weights.iter().enumerate() {
            acc += w / total;
            if acc >= f64::from(top_p) {
                keep = n + 1;
                break;
            }
        }
    }
    let kept: f64 = weights[..keep].iter().sum();
    let mut r = rng.uniform() * kept;
    for (n, w) in weights[..keep].iter().enumerate() {
        if r < *w {
            return idx[n];
        }
        r -= w;
    }
    idx[keep.saturating_sub(1)]
}

/// Pick the next token of every sequence from `[batch, vocab]` logits.
pub fn next_tokens<B: Backend>(
    logits: Tensor<B, 2>,
    sampling: Sampling,
    rng: &mut Rng,
) -> Vec<u32> {
    match sampling {
        Sampling::Greedy => logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .unwrap_or_default()
            .into_iter()
            .map(|x| u32::try_from(x).unwrap_or(0))
            .collect(),
        Sampling::Random {
            temperature,
            top_k,
            top_p,
        } => {
            let [_, vocab] = logits.dims();
            let flat = logits
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap_or_default();
            flat.chunks(vocab.max(1))
                .map(|row| sample_row(row, temperature, top_k, top_p, rng) as u32)
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_sampling_is_reproducible_and_respects_top_k() {
        let logits = [0.0f32, 3.0, 1.0, 2.9, -5.0];
        let draw = |seed| {
            let mut r = Rng::new(seed);
            (0..50)
                .map(|_| sample_row(&logits, 1.0, 2, 1.0, &mut r))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(9), draw(9));
        assert!(
            draw(9).iter().all(|&t| t == 1 || t == 3),
            "top_k = 2 keeps tokens 1 and 3"
        );
        assert!(draw(9).contains(&1) && draw(9).contains(&3));
    }

    #[test]
    fn tiny_top_p_and_temperature_become_greedy() {
        let logits = [0.0f32, 3.0, 1.0, 2.9];
        let mut r = Rng::new(1);
        for _ in 0..20 {
            assert_eq!(sample_row(&logits, 1.0, 0, 0.01, &mut r), 1);
            assert_eq!(sample_row(&logits, 1e-4, 0, 1.0, &mut r), 1);
        }
    }

    #[test]
    fn uniform_is_in_range() {
        let mut r = Rng::new(0);
        assert!((0..1000)
            .map(|_| r.uniform())
            .all(|u| (0.0..1.0).contains(&u)));
    }
}
