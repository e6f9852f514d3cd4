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
