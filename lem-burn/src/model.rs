//! A Llama-style decoder-only transformer: token embedding, RMSNorm, rotary position
//! embeddings, grouped-query attention with a KV cache, SwiGLU MLP, final norm, LM head.

use burn::module::Param;
use burn::nn::{Embedding, Linear, RmsNorm, RmsNormConfig};
use burn::prelude::*;
use burn::tensor::activation::{silu, softmax};

use crate::cache::{KvCache, LayerCache};
use crate::config::ModelConfig;
use crate::rope::{Rope, RopeWindow};

/// `x @ W (+ b)` for a linear layer, as one 2-D matmul over all tokens: burn's 3-D linear
/// broadcasts the weight per batch entry, which on some backends copies it on every call.
fn apply<B: Backend>(l: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, s, d] = x.dims();
    let w = l.weight.val();
    let out = w.dims()[1];
    let y = product(x.reshape([b * s, d]), w);
    let y = match &l.bias {
        Some(bias) => y + bias.val().reshape([1, out]),
        None => y,
    };
    y.reshape([b, s, out])
}

/// `x @ w`, through the CPU backend's own path where it applies (see [`crate::cpu`]).
fn product<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    match crate::cpu::matmul(&x, &w) {
        Some(y) => y,
        None => x.matmul(w),
    }
}

/// SwiGLU feed-forward block.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// Gate projection.
    pub gate: Linear<B>,
    /// Up projection.
    pub up: Linear<B>,
    /// Down projection.
    pub down: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        apply(
            &self.down,
            silu(apply(&self.gate, x.clone())) * apply(&self.up, x),
        )
    }
}

/// Grouped-query self-attention.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// Query projection.
    pub q: Linear<B>,
    /// Key projection.
    pub k: Linear<B>,
    /// Value projection.
    pub v: Linear<B>,
    /// Output projection.
    pub o: Linear<B>,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

impl<B: Backend> Attention<B> {
    /// Attention from its four projections.
    pub fn new(q: Linear<B>, k: Linear<B>, v: Linear<B>, o: Linear<B>, c: &ModelConfig) -> Self {
        Self {
            q,
            k,
            v,
            o,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim(),
        }
    }

    fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &Rotations<B>,
        cache: &mut LayerCache<B>,
        pos: usize,
        bias: Option<&Tensor<B, 2>>,
    ) -> Tensor<B, 3> {
        let [b, s, _] = x.dims();
        let (h, kv, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let g = h / kv;
        let t = pos + s;
        // Projections stay in their own layout, [b, s, heads * hd]; no per-head copies.
        let q = rope.q.apply(apply(&self.q, x.clone()));
        let k = rope
            .k
            .apply(apply(&self.k, x.clone()))
            .reshape([b, s, kv, hd])
            .swap_dims(1, 2);
        let v = apply(&self.v, x).reshape([b, s, kv, hd]).swap_dims(1, 2);
        // keys and values of positions 0..t, [b, kv, t, hd]: views of the cache
        let (keys, values) = cache.append(k, v, pos);
        // Grouped-query attention without copying the cache: the g query heads that share a
        // kv head form the rows of one score block, [b, kv, g*s, t], row = head * s + position
        // (for one position a free reshape; for several, per-head products on a strided view).
        let scores = if s == 1 {
            q.reshape([b, kv, g, hd]).matmul(keys.swap_dims(2, 3))
        } else {
            q.reshape([b, s, kv, g, hd])
                .permute([0, 2, 3, 1, 4])
                .matmul(keys.unsqueeze_dim::<5>(2).swap_dims(3, 4))
                .reshape([b, kv, g * s, t])
        };
        let scores = scores * (1.0 / (hd as f64).sqrt());
        let scores = match bias {
            Some(bias) => {
                (scores.reshape([b * h, s * t]) + bias.clone()).reshape([b, kv, g * s, t])
            }
            None => scores,
        };
        let attn = softmax(scores, 3);
        let out = attn
            .matmul(values)
            .reshape([b, h, s, hd])
            .swap_dims(1, 2)
            .reshape([b, s, h * hd]);
        apply(&self.o, out)
    }
}

impl<B: Backend> Attention<B> {
    /// One new position per row, each row at its own position with its own cache: the
    /// projections run batched over the rows, the rotation, cache and attention per row
    /// (exactly as [`Attention::forward`] for that row alone).
    fn forward_rows(
        &self,
        x: Tensor<B, 3>,
        rows: &mut [(&mut LayerCache<B>, &Rotations<B>, usize)],
    ) -> Tensor<B, 3> {
        let b = x.dims()[0];
        let q = apply(&self.q, x.clone());
        let k = apply(&self.k, x.clone());
        let v = apply(&self.v, x);
        let outs: Vec<Tensor<B, 3>> = rows
            .iter_mut()
            .enumerate()
            .map(|(i, (cache, rope, pos))| {
                let row = |t: &Tensor<B, 3>| t.clone().slice(s![i..i + 1, .., ..]);
                self.attend(row(&q), row(&k), row(&v), rope, cache, *pos)
            })
            .collect();
        debug_assert_eq!(outs.len(), b);
        apply(&self.o, Tensor::cat(outs, 0))
    }

    /// Attention of one row's one new position (`[1, 1, width]` projections) before the
    /// output projection.
    fn attend(
        &self,
        q: Tensor<B, 3>,
        k: Tensor<B, 3>,
        v: Tensor<B, 3>,
        rope: &Rotations<B>,
        cache: &mut LayerCache<B>,
        pos: usize,
    ) -> Tensor<B, 3> {
        let (h, kv, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let g = h / kv;
        let q = rope.q.apply(q);
        let k = rope.k.apply(k).reshape([1, 1, kv, hd]).swap_dims(1, 2);
        let v = v.reshape([1, 1, kv, hd]).swap_dims(1, 2);
        let (keys, values) = cache.append(k, v, pos);
        let scores = q.reshape([1, kv, g, hd]).matmul(keys.swap_dims(2, 3));
        let attn = softmax(scores * (1.0 / (hd as f64).sqrt()), 3);
        attn.matmul(values)
            .reshape([1, h, 1, hd])
            .swap_dims(1, 2)
            .reshape([1, 1, h * hd])
    }
}

/// The rotary windows of one forward pass, for the query and the key heads.
struct Rotations<B: Backend> {
    q: RopeWindow<B>,
    k: RopeWindow<B>,
}

/// One transformer block.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// Norm before attention.
    pub attn_norm: RmsNorm<B>,
    /// Attention.
    pub attn: Attention<B>,
    /// Norm before the MLP.
    pub mlp_norm: RmsNorm<B>,
    /// MLP.
    pub mlp: Mlp<B>,
}

/// The transformer's parameters.
#[derive(Module, Debug)]
pub struct Transformer<B: Backend> {
    /// Token embedding, `[vocab, d_model]`.
    pub embed: Embedding<B>,
    /// Blocks.
    pub blocks: Vec<Block<B>>,
    /// Final norm.
    pub norm: RmsNorm<B>,
    /// LM head (absent when tied to the embedding).
    pub lm_head: Option<Linear<B>>,
}

/// A model ready to run: parameters, rotary tables and configuration.
#[derive(Debug)]
pub struct Model<B: Backend> {
    /// Parameters.
    pub net: Transformer<B>,
    /// Dimensions.
    pub config: ModelConfig,
    rope: Rope<B>,
    device: B::Device,
}

/// Host-side weights from a seeded generator: the same seed gives the same model on every
/// backend and in every thread (burn's backend RNGs are neither).
struct WeightRng(u64);

impl WeightRng {
    fn next_u64(&mut self) -> u64 {
        // SplitMix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-k, k).
    fn uniform(&mut self, n: usize, k: f32) -> Vec<f32> {
        (0..n)
            .map(|_| ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * k)
            .collect()
    }

    fn tensor<B: Backend>(
        &mut self,
        shape: [usize; 2],
        k: f32,
        device: &B::Device,
    ) -> Tensor<B, 2> {
        let data = self.uniform(shape[0] * shape[1], k);
        Tensor::from_data(TensorData::new(data, shape), device)
    }
}

/// A bias-free linear layer with weights from U(-1/sqrt(i), 1/sqrt(i)).
fn linear<B: Backend>(rng: &mut WeightRng, i: usize, o: usize, device: &B::Device) -> Linear<B> {
    let w = rng.tensor([i, o], 1.0 / (i as f32).sqrt(), device);
    Linear {
        weight: Param::from_tensor(w),
        bias: None,
    }
}

/// A linear layer as [`linear`], with a bias from the same range when `bias`.
fn linear_b<B: Backend>(
    rng: &mut WeightRng,
    i: usize,
    o: usize,
    bias: bool,
    device: &B::Device,
) -> Linear<B> {
    let mut l = linear(rng, i, o, device);
    if bias {
        let b = rng.uniform(o, 1.0 / (i as f32).sqrt());
        l.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(b, [o]),
            device,
        )));
    }
    l
}

fn rms<B: Backend>(d: usize, eps: f64, device: &B::Device) -> RmsNorm<B> {
    RmsNormConfig::new(d).with_epsilon(eps).init(device)
}

impl<B: Backend> Model<B> {
    /// A model with random weights drawn from `seed` (compute and energy depend on shapes,
    /// not on weight values). `max_len` bounds the rotary tables (and so the context).
    pub fn random(config: &ModelConfig, seed: u64, max_len: usize, device: &B::Device) -> Self {
        let mut rng = WeightRng(seed);
        let c = config;
        let hd = c.head_dim();
        let (ab, mb) = (c.attention_bias, c.mlp_bias);
        let blocks = (0..c.n_layers)
            .map(|_| Block {
                attn_norm: rms(c.d_model, c.norm_eps, device),
                attn: Attention {
                    q: linear_b(&mut rng, c.d_model, c.n_heads * hd, ab, device),
                    k: linear_b(&mut rng, c.d_model, c.n_kv_heads * hd, ab, device),
                    v: linear_b(&mut rng, c.d_model, c.n_kv_heads * hd, ab, device),
                    o: linear_b(&mut rng, c.n_heads * hd, c.d_model, ab, device),
                    n_heads: c.n_heads,
                    n_kv_heads: c.n_kv_heads,
                    head_dim: hd,
                },
                mlp_norm: rms(c.d_model, c.norm_eps, device),
                mlp: Mlp {
                    gate: linear_b(&mut rng, c.d_model, c.ffn_hidden, mb, device),
                    up: linear_b(&mut rng, c.d_model, c.ffn_hidden, mb, device),
                    down: linear_b(&mut rng, c.ffn_hidden, c.d_model, mb, device),
                },
            })
            .collect();
        let net = Transformer {
            embed: Embedding {
                // U(-√3, √3): unit variance, like the N(0, 1) of burn's default
                weight: Param::from_tensor(rng.tensor(
                    [c.vocab_size, c.d_model],
                    3f32.sqrt(),
                    device,
                )),
            },
            blocks,
            norm: rms(c.d_model, c.norm_eps, device),
            lm_head: (!c.tie_embeddings).then(|| linear(&mut rng, c.d_model, c.vocab_size, device)),
        };
        Self::from_parts(net, config.clone(), max_len, device)
    }

    /// A model from parameters (loaded weights).
    pub fn from_parts(
        net: Transformer<B>,
        config: ModelConfig,
        max_len: usize,
        device: &B::Device,
    ) -> Self {
        let max_len = max_len.min(config.max_seq_len).max(1);
        let rope = Rope::from_inv_freqs(&config.inv_freqs(), max_len, device);
        Self {
            net,
            config,
            rope,
            device: device.clone(),
        }
    }

    /// The device the model lives on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Parameters the model actually holds.
    pub fn num_params(&self) -> usize {
        self.net.num_params()
    }

    /// Longest context the rotary tables cover.
    pub fn max_len(&self) -> usize {
        self.rope.max_len()
    }

    /// An empty cache for `batch` sequences of up to `capacity` positions.
    pub fn new_cache(&self, batch: usize, capacity: usize) -> KvCache<B> {
        KvCache::new(
            self.config.n_layers,
            batch,
            self.config.n_kv_heads,
            capacity.min(self.max_len()),
            self.config.head_dim(),
            &self.device,
        )
    }

    /// The causal mask for `s` new positions after `pos` cached ones as an additive bias,
    /// `[1, s * (pos + s)]`: 0 where a position may attend, -inf where it may not. Added to
    /// scores laid out `[b * heads, s * (pos + s)]`, it gives exactly what masking with -inf
    /// would (`x + 0 == x`, `x + -inf == -inf`) with one contiguous add. `None` for a single
    /// position.
    fn causal_bias(&self, s: usize, pos: usize) -> Option<Tensor<B, 2>> {
        if s <= 1 {
            return None;
        }
        let t = pos + s;
        let bias: Vec<f32> = (0..s)
            .flat_map(|i| (0..t).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 }))
            .collect();
        Some(Tensor::from_data(
            TensorData::new(bias, [1, s * t]),
            &self.device,
        ))
    }

    /// One decode step of sequences in separate caches, each at its own position: row `i`
    /// of `tokens` (`[rows, 1]`) runs at `positions[i]` against `caches[i]` (a cache of one
    /// sequence). The weights' products run batched over the rows; each row's result is
    /// what [`Model::forward`] gives for it alone. Returns `[rows, vocab]` logits.
    ///
    /// # Panics
    /// When the rows, caches and positions differ in number, or a position is beyond its
    /// cache or the rotary tables (a caller bug).
    pub fn forward_rows(
        &self,
        tokens: Tensor<B, 2, Int>,
        caches: &mut [&mut KvCache<B>],
        positions: &[usize],
    ) -> Tensor<B, 2> {
        let [b, _] = tokens.dims();
        assert!(
            caches.len() == b && positions.len() == b,
            "{b} rows, {} caches, {} positions",
            caches.len(),
            positions.len()
        );
        let ropes: Vec<Rotations<B>> = positions
            .iter()
            .map(|&pos| Rotations {
                q: self.rope.window(pos, 1, self.config.n_heads),
                k: self.rope.window(pos, 1, self.config.n_kv_heads),
            })
            .collect();
        let mut x = self.net.embed.forward(tokens);
        for (l, block) in self.net.blocks.iter().enumerate() {
            let mut rows: Vec<_> = caches
                .iter_mut()
                .zip(&ropes)
                .zip(positions)
                .map(|((c, r), &p)| (&mut c.layers[l], r, p))
                .collect();
            let h = block
                .attn
                .forward_rows(block.attn_norm.forward(x.clone()), &mut rows);
            x = x + h;
            let h = block.mlp.forward(block.mlp_norm.forward(x.clone()));
            x = x + h;
        }
        self.head(x.reshape([b, self.config.d_model]))
    }

    fn head(&self, last: Tensor<B, 2>) -> Tensor<B, 2> {
        let last = self.net.norm.forward(last);
        match &self.net.lm_head {
            Some(head) => product(last, head.weight.val()),
            None => last.matmul(self.net.embed.weight.val().transpose()),
        }
    }

    /// Run `tokens` (`[batch, s]`) at positions `pos..pos+s`, reading and extending `cache`;
    /// returns the logits of the last position, `[batch, vocab]`.
    ///
    /// # Panics
    /// When `pos + s` exceeds the cache or the rotary tables (a caller bug: generation
    /// checks lengths before running).
    pub fn forward(
        &self,
        tokens: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
        pos: usize,
    ) -> Tensor<B, 2> {
        let [b, s] = tokens.dims();
        let bias = self.causal_bias(s, pos);
        let rope = Rotations {
            q: self.rope.window(pos, s, self.config.n_heads),
            k: self.rope.window(pos, s, self.config.n_kv_heads),
        };
        let mut x = self.net.embed.forward(tokens);
        for (block, layer) in self.net.blocks.iter().zip(cache.layers.iter_mut()) {
            let h = block.attn.forward(
                block.attn_norm.forward(x.clone()),
                &rope,
                layer,
                pos,
                bias.as_ref(),
            );
            x = x + h;
            let h = block.mlp.forward(block.mlp_norm.forward(x.clone()));
            x = x + h;
        }
        let d = self.config.d_model;
        self.head(x.slice(s![.., s - 1..s, ..]).reshape([b, d]))
    }
}
