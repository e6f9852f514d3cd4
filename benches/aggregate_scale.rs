//! Aggregating a large experiment: 4,096 process result files of one cycle (4,096 distinct
//! GPUs), each with a below-resolution warning of its own window length and a warning every
//! process gives, read from disk and combined.
//!
//! Run with: `cargo bench -p lem-suite --bench aggregate_scale`
//!
//! The files are made from one real result of a simulated GPU (labelled simulated in each);
//! only lem's own reading and combining is timed, no device is read.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lem::{BaselineMode, DeviceSpec, Meter};

const PROCESSES: u32 = 4096;

fn scenario() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios/steady_300w.json")
}

/// Write the experiment's files into `dir`; `None` when the simulated device cannot open.
fn write_files(dir: &Path) -> Option<()> {
    let meter = Meter::builder()
        .device(DeviceSpec::Sim(scenario()))
        .baseline_mode(BaselineMode::Off)
        .interval(Duration::from_millis(100))
        .build()
        .ok()?;
    let report = meter.start("w").ok()?.finish().ok()?;
    let base = serde_json::to_value(meter.result_file(report, "scale", 0)).ok()?;
    for i in 0..PROCESSES {
        let mut v = base.clone();
        v["process_index"] = i.into();
        v["world_size"] = PROCESSES.into();
        v["devices"][0]["uuid"] = format!("SIM-GPU-{i:05}").into();
        v["warnings"] = serde_json::json!([
            format!(
                "device 0: below_resolution: the {:.1} ms window spans fewer than 3 energy-counter updates",
                10.0 + f64::from(i) / 7.0
            ),
            "a warning every process gives",
        ]);
        std::fs::write(dir.join(format!("process_{i}.json")), v.to_string()).ok()?;
    }
    Some(())
}

fn bench(c: &mut Criterion) {
    let Ok(tmp) = tempfile::tempdir() else {
        return;
    };
    if write_files(tmp.path()).is_none() {
        eprintln!("aggregate_scale: could not write the result files; skipped");
        return;
    }
    let mut g = c.benchmark_group("aggregate");
    g.sample_size(10);
    g.bench_function("4096_process_files", |b| {
        b.iter(|| black_box(lem::aggregate::aggregate_dir(tmp.path(), false)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
