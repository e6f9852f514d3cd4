//! Every form of `#[energy_bench]`, with short settings, run as an ordinary binary.
//!
//! Run with: `LEM_DEVICE=sim:examples/scenarios/steady_300w.json LEM_BASELINE_DURATION_S=0.3 cargo run --release --example energy_bench_demo -- --bench`
//!
//! (`cargo bench` targets work the same way; see `benches/energy.rs`.) Arguments are
//! `cargo bench`'s: a name filter, `--exact`, `--list`, `--ignored`.

use lem::energy_bench;
use std::time::{Duration, Instant};

fn spin(d: Duration) -> u64 {
    let t = Instant::now();
    let mut x = 0u64;
    while t.elapsed() < d {
        x = std::hint::black_box(x.wrapping_add(1));
    }
    x
}

/// The plain form: the return value is black-boxed.
#[energy_bench(samples = 3, min_sample_s = 0.1)]
fn spin_1ms() -> u64 {
    spin(Duration::from_millis(1))
}

/// One benchmark per argument: `spin_ms/1` and `spin_ms/2`.
#[energy_bench(args = [1, 2], samples = 3, min_sample_s = 0.1, cv = 0.1)]
fn spin_ms(ms: u64) -> u64 {
    spin(Duration::from_millis(ms))
}

/// Setup, a sync hook and energy per unit.
#[energy_bench(
    units = "tokens",
    samples = 3,
    min_sample_s = 0.1,
    warmup = "fixed",
    warmup_iters = 3
)]
fn generate(b: &mut lem::Bencher) {
    let tokens_per_call = 16usize; // setup: not measured
    b.sync_with(|| {}); // a real GPU workload synchronises its device here
    b.iter(|| {
        spin(Duration::from_micros(500));
        tokens_per_call
    })
}

/// Only with `--ignored`.
#[energy_bench(ignore, name = "slow_spin", samples = 3, min_sample_s = 0.1)]
fn slow() -> u64 {
    spin(Duration::from_millis(5))
}

lem::main!();
