//! Energy benchmarks with `#[energy_bench]`.
//!
//! Run with: `cargo bench --bench energy` (set `LEM_DEVICE`, e.g.
//! `LEM_DEVICE=sim:examples/scenarios/steady_300w.json`, on a machine without a GPU).
//! Results: `target/lem/<name>.json` and `target/lem/bench_summary.csv`.

use lem::energy_bench;

fn matmul(n: usize) -> f32 {
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 5) as f32).collect();
    let mut c = vec![0f32; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            for j in 0..n {
                c[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    c.iter().sum()
}

/// A 128x128 matmul with short samples: the one CI runs.
#[energy_bench(samples = 5, min_sample_s = 0.2)]
fn matmul_128() -> f32 {
    matmul(128)
}

/// Matmuls of several sizes, with the default settings (10 samples of at least 1 s).
#[energy_bench(args = [64, 256])]
fn matmul_n(n: usize) -> f32 {
    matmul(n)
}

lem::main!();

/// Energy per generated token of the reference transformer on the CPU: one call generates
/// 32 tokens after a 64-token prompt (batch 1) and returns how many tokens it produced.
#[energy_bench(args = ["tiny", "small"], units = "tokens", samples = 5, min_sample_s = 2.0)]
fn llm_generate(b: &mut lem::Bencher, preset: &'static str) {
    use lem_burn::generate::{generate, GenerateOptions};
    use lem_burn::sampling::{Rng, Sampling};
    let Some(cfg) = lem_burn::ModelConfig::preset(preset) else {
        return;
    };
    let device = Default::default();
    let model = lem_burn::Model::<lem_burn::Cpu>::random(&cfg, 0, 96, &device);
    let prompts = vec![lem_burn::tokenizer::ByteTokenizer.prompt_of_len("energy ", 64)];
    let opts = GenerateOptions {
        max_new_tokens: 32,
        sampling: Sampling::Greedy,
        stop_tokens: vec![],
    };
    b.sync_with(lem_burn::backend_sync::<lem_burn::Cpu>(device));
    b.iter(|| generate(&model, &prompts, &opts, &mut Rng::new(0)).map_or(0, |g| g.tokens_out))
}
