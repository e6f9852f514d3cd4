//! What lem costs: `start` + `finish` of an `EnergyScope` (and of a shared window with
//! 1,000 others of its group open), and one sampler round.
//!
//! Run with: `cargo bench --bench scope_overhead`
//!
//! On the simulated device this is lem's own overhead; on NVML (benchmarked when a GPU is
//! visible) it includes the driver calls that read the energy counter at both ends.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use lem::{BaselineMode, DeviceSpec, Meter};

fn scenario() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios/steady_300w.json")
}

fn meter(spec: DeviceSpec) -> Option<Meter> {
    Meter::builder()
        .device(spec)
        .baseline_mode(BaselineMode::Off)
        .interval(Duration::from_millis(100))
        .build()
        .ok()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("scope");
    if let Some(m) = meter(DeviceSpec::Sim(scenario())) {
        g.bench_function("start_finish/simulated", |b| {
            b.iter(|| black_box(m.start("bench").map(|s| s.finish())))
        });
        g.bench_function("sample_round/simulated", |b| b.iter(|| m.sample_now()));
    }
    if let Some(m) = meter(DeviceSpec::Sim(scenario())) {
        // a shared window with 1,000 others of its group open, against an ordinary window
        // with 1,000 ordinary windows open: what the share's bookkeeping adds
        let others: Vec<_> = (0..1000).filter_map(|_| m.start("other").ok()).collect();
        g.bench_function("start_finish/1000_open/simulated", |b| {
            b.iter(|| black_box(m.start("bench").map(|s| s.finish())))
        });
        drop(others);
        let group = m.group("requests");
        let open: Vec<_> = (0..1000)
            .filter_map(|_| group.start("other").ok())
            .collect();
        g.bench_function("shared_start_finish/1000_open/simulated", |b| {
            b.iter(|| {
                black_box(group.start("bench").map(|s| {
                    let _ = s.add_weight(1.0);
                    s.finish()
                }))
            })
        });
        drop(open);
    }
    if let Some(m) = meter(DeviceSpec::Nvml(None)) {
        g.bench_function("start_finish/nvml", |b| {
            b.iter(|| black_box(m.start("bench").map(|s| s.finish())))
        });
        g.bench_function("sample_round/nvml", |b| b.iter(|| m.sample_now()));
    } else {
        eprintln!("scope_overhead: no NVML GPU visible, skipping the nvml benchmarks");
    }
    if let Some(m) = meter(DeviceSpec::None) {
        g.bench_function("start_finish/no_device", |b| {
            b.iter(|| black_box(m.start("bench").map(|s| s.finish())))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
