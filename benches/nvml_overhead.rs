//! What lem's NVML path costs: `start` + `finish` of a scope and one sampler round over 1 and
//! 8 GPUs of the fake driver (`tools/fake-nvml`), which answers at once: lem's own cost
//! plus the cost of crossing into a shared library, not the real driver's latency.
//!
//! Run with: `cargo bench --bench nvml_overhead`
//!
//! The driver is found through `LD_LIBRARY_PATH`, which the loader reads at start, so the
//! bench builds the fake, then runs itself once per GPU count with the variables set.

use criterion::Criterion;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lem::{BaselineMode, DeviceSpec, Meter};

const GPUS_VAR: &str = "LEM_BENCH_FAKE_GPUS";

fn child(gpus: u32) {
    let meter = match Meter::builder()
        .device(DeviceSpec::Nvml(None))
        .baseline_mode(BaselineMode::Off)
        // the sampler thread stays out of the way; rounds are benchmarked directly
        .interval(Duration::from_secs(10))
        .build()
    {
        Ok(m) => m,
        Err(e) => {
            eprintln!("nvml_overhead: the fake driver did not open: {e}");
            std::process::exit(1);
        }
    };
    assert_eq!(meter.devices().len(), gpus as usize, "fake GPUs opened");
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut g = c.benchmark_group("nvml_fake");
    g.bench_function(format!("start_finish/{gpus}_gpu"), |b| {
        b.iter(|| black_box(meter.start("bench").map(|s| s.finish())))
    });
    g.bench_function(format!("sample_round/{gpus}_gpu"), |b| {
        b.iter(|| meter.sample_now())
    });
    g.finish();
    c.final_summary();
}

fn fake_library(profile_dir: &Path) -> PathBuf {
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "-q", "-p", "fake-nvml", "--lib"]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let ok = build.status().map(|s| s.success()).unwrap_or(false);
    let lib = profile_dir.join("libfake_nvml.so");
    if !ok || !lib.exists() {
        eprintln!("nvml_overhead: could not build {}", lib.display());
        std::process::exit(1);
    }
    lib
}

fn main() {
    if let Ok(n) = std::env::var(GPUS_VAR) {
        child(n.parse().unwrap_or(1));
        return;
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // benches run from target/<profile>/deps/
    let Some(profile_dir) = exe.parent().and_then(Path::parent) else {
        eprintln!("nvml_overhead: cannot locate the target directory");
        std::process::exit(1);
    };
    let lib = fake_library(profile_dir);
    let dir = std::env::temp_dir().join(format!("lem-nvml-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let link = dir.join("libnvidia-ml.so.1");
    let _ = std::fs::remove_file(&link);
    if let Err(e) = std::os::unix::fs::symlink(&lib, &link) {
        eprintln!("nvml_overhead: {}: {e}", link.display());
        std::process::exit(1);
    }
    let mut failed = false;
    for gpus in [1, 8] {
        let scenario = dir.join(format!("{gpus}.json"));
        let json = format!(r#"{{"name": "Fake H100", "idle_w": 100, "count": {gpus}}}"#);
        if std::fs::write(&scenario, json).is_err() {
            failed = true;
            continue;
        }
        let st = Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .env(GPUS_VAR, gpus.to_string())
            .env("LD_LIBRARY_PATH", &dir)
            .env("LEM_FAKE_NVML_SCENARIO", &scenario)
            .env_remove("CUDA_VISIBLE_DEVICES")
            .status();
        failed |= !st.map(|s| s.success()).unwrap_or(false);
    }
    let _ = std::fs::remove_dir_all(&dir);
    if failed {
        std::process::exit(1);
    }
}
