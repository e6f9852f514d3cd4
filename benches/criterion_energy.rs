//! criterion with lem's joules as the measurement.
//!
//! Run with: `cargo bench --bench criterion_energy` (needs an energy source: `LEM_DEVICE`,
//! e.g. `LEM_DEVICE=sim:examples/scenarios/steady_300w.json` without a GPU). Criterion's
//! warm-up is fixed wall time; `benches/energy.rs` (lem's own harness) waits for convergence.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;

fn work() -> u64 {
    (0..200_000u64).fold(0, |a, x| a.wrapping_mul(31).wrapping_add(x))
}

fn bench(c: &mut Criterion<lem::criterion::Energy>) {
    c.bench_function("fold_200k/energy", |b| b.iter(|| black_box(work())));
}

fn config() -> Criterion<lem::criterion::Energy> {
    let energy = match lem::criterion::Energy::from_env() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("criterion_energy: no energy measurement ({e}); set LEM_DEVICE");
            std::process::exit(0);
        }
    };
    if energy.is_simulated() {
        eprintln!("criterion_energy: SIMULATED device: the joules below are not measurements");
    }
    Criterion::default()
        .with_measurement(energy)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench
}
criterion_main!(benches);
