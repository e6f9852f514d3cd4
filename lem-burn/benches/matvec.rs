//! Batch-1 decode's products on the CPU: one activation row times every weight matrix of a
//! preset, through burn's `matmul` (Flex → `gemm`) and through `lem_burn::cpu::matmul`
//! (the model's path), alternating, 21 passes each, medians, on the CPU pool's threads. Prints milliseconds per pass
//! (one decode step's worth of weight reads) and the weight bytes read per second.
//!
//! `cargo bench -p lem-burn --bench matvec [-- PRESET]` (default `small`; threads: rayon's,
//! `RAYON_NUM_THREADS=1` for one).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use burn::prelude::*;
use lem_burn::{Cpu, ModelConfig};

fn main() {
    // as the model runs: on the CPU pool's own threads (rayon's default size, or
    // RAYON_NUM_THREADS)
    let pool = rayon::ThreadPoolBuilder::new()
        .build()
        .expect("a CPU thread pool");
    pool.install(run);
}

fn run() {
    let preset = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "small".into());
    let c = ModelConfig::preset(&preset).expect("a preset: tiny, small or llama-1b");
    let dev = Default::default();
    let hd = c.head_dim();
    let layer = [
        (c.d_model, c.n_heads * hd),
        (c.d_model, c.n_kv_heads * hd),
        (c.d_model, c.n_kv_heads * hd),
        (c.n_heads * hd, c.d_model),
        (c.d_model, c.ffn_hidden),
        (c.d_model, c.ffn_hidden),
        (c.ffn_hidden, c.d_model),
    ];
    let mut shapes: Vec<(usize, usize)> = (0..c.n_layers).flat_map(|_| layer).collect();
    shapes.push((c.d_model, c.vocab_size));
    let mut rng = lem_burn::sampling::Rng::new(1);
    let mut values = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| ((rng.uniform() - 0.5) * 0.05) as f32)
            .collect()
    };
    let weights: Vec<Tensor<Cpu, 2>> = shapes
        .iter()
        .map(|&(k, n)| Tensor::from_data(TensorData::new(values(k * n), [k, n]), &dev))
        .collect();
    let inputs: Vec<Tensor<Cpu, 2>> = shapes
        .iter()
        .map(|&(k, _)| Tensor::from_data(TensorData::new(values(k), [1, k]), &dev))
        .collect();
    let bytes: usize = shapes.iter().map(|&(k, n)| k * n * 4).sum();
    let pass = |ours: bool| {
        let t = Instant::now();
        for (x, w) in inputs.iter().zip(&weights) {
            let y = if ours {
                lem_burn::cpu::matmul(x, w).expect("the CPU path applies")
            } else {
                x.clone().matmul(w.clone())
            };
            std::hint::black_box(y);
        }
        t.elapsed().as_secs_f64() * 1e3
    };
    let (mut burn, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..21 {
        burn.push(pass(false));
        ours.push(pass(true));
    }
    println!(
        "{preset}: {} products, {:.0} MB of weights, {} threads",
        shapes.len(),
        bytes as f64 / 1e6,
        rayon::current_num_threads()
    );
    for (name, mut v) in [
        ("burn matmul (gemm)", burn),
        ("lem_burn::cpu::matmul", ours),
    ] {
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        println!(
            "  {name:<22} median {median:6.2} ms  (best {:6.2})  {:5.1} GB/s",
            v[0],
            bytes as f64 / (median / 1e3) / 1e9
        );
    }
}
