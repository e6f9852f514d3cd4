//! What lem's NVML path costs: `start` + `finish` of a scope and one sampler round over 1 and
//! 8 GPUs of the fake driver (`tools/fake-nvml`), which answers at once: lem's own cost
//! plus the cost of crossing into a shared library, not the real driver's latency. Then the
//! same GPUs shared by 10 processes each: a sampler round that reads who is there (the
//! running processes and their SM-utilisation samples, as it does every 0.5 s while a
//! window is open) against one that does not.
//!
//! Run with: `cargo bench --bench nvml_overhead`
//!
//! The driver is found through `LD_LIBRARY_PATH`, which the loader reads at start, so the
//! bench builds the fake, then runs itself once per GPU count and scenario with the
//! variables set.

use criterion::Criterion;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lem::{BaselineMode, DeviceSpec, ManualClock, Meter};

const GPUS_VAR: &str = "LEM_BENCH_FAKE_GPUS";
/// Set (to the processes per GPU) for the run over the scenario with process traces.
const PROCS_VAR: &str = "LEM_BENCH_FAKE_PROCS";
/// Processes per GPU in the shared scenario: the bench itself and 9 others.
const PROCS_PER_GPU: usize = 10;
/// The shared scenario's per-process sampling period, ms. With rounds [`PAUSE`] apart, each
/// read finds about 3 new samples per process: what a read every 0.5 s finds from a driver
/// that samples every 1/6 s.
const SAMPLE_MS: u32 = 1;
/// Real time between two rounds with process reads (not measured).
const PAUSE: Duration = Duration::from_millis(3);

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

/// One sampler round with and without process reads over `gpus` GPUs shared by
/// [`PROCS_PER_GPU`] processes each. A manual clock makes every round of the first bench
/// due for a process read (the sampler reads every 0.5 s of its clock).
fn child_processes(gpus: u32) {
    let clock = Arc::new(ManualClock::new());
    let meter = match Meter::builder()
        .device(DeviceSpec::Nvml(None))
        .baseline_mode(BaselineMode::Off)
        .clock(clock.clone())
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
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    let mut g = c.benchmark_group("nvml_fake");
    let procs = PROCS_PER_GPU;
    // a window stays open: process reads happen only then
    let window = meter.start("bench");
    g.bench_function(
        format!("sample_round_with_process_reads/{gpus}_gpu_{procs}_procs"),
        |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    // the driver publishes new per-process samples meanwhile
                    std::thread::sleep(PAUSE);
                    clock.advance_s(1.0);
                    let t = Instant::now();
                    meter.sample_now();
                    spent += t.elapsed();
                }
                spent
            })
        },
    );
    // the clock stands still now: no process read is due
    g.bench_function(
        format!("sample_round_no_process_read/{gpus}_gpu_{procs}_procs"),
        |b| b.iter(|| meter.sample_now()),
    );
    g.finish();
    c.final_summary();
    drop(window);
}

/// `gpus` fake GPUs, each shared by the bench (`"self"`) and the `others`.
fn shared_scenario(gpus: u32, others: &[u32]) -> String {
    let trace = |pid: String, d: u32, sm: u32| {
        format!(
            r#"{{"pid": {pid}, "device": {d}, "segments": [{{"start_s": 0, "end_s": 1e6, "sm_pct": {sm}, "memory_mb": 1024}}]}}"#
        )
    };
    let mut list = Vec::new();
    for d in 0..gpus {
        list.push(trace("\"self\"".into(), d, 40));
        list.extend(others.iter().map(|p| trace(p.to_string(), d, 5)));
    }
    format!(
        r#"{{"name": "Fake H100", "idle_w": 100, "count": {gpus},
            "processes": {{"sample_ms": {SAMPLE_MS}, "list": [{}]}}}}"#,
        list.join(",")
    )
}

/// Processes that live while the bench runs: the other users of the shared GPUs (their
/// `/proc` entries are read as a real neighbour's would be).
fn spawn_others(n: usize) -> Vec<Child> {
    (0..n)
        .filter_map(|_| Command::new("sleep").arg("600").spawn().ok())
        .collect()
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
        let gpus = n.parse().unwrap_or(1);
        if std::env::var_os(PROCS_VAR).is_some() {
            child_processes(gpus);
        } else {
            child(gpus);
        }
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
    let mut others = spawn_others(PROCS_PER_GPU - 1);
    let pids: Vec<u32> = others.iter().map(Child::id).collect();
    let mut failed = pids.len() != PROCS_PER_GPU - 1;
    for (gpus, shared) in [(1, false), (8, false), (1, true), (8, true)] {
        let scenario = dir.join(format!("{gpus}-{shared}.json"));
        let json = if shared {
            shared_scenario(gpus, &pids)
        } else {
            format!(r#"{{"name": "Fake H100", "idle_w": 100, "count": {gpus}}}"#)
        };
        if failed || std::fs::write(&scenario, json).is_err() {
            failed = true;
            continue;
        }
        let mut cmd = Command::new(&exe);
        cmd.args(std::env::args_os().skip(1))
            .env(GPUS_VAR, gpus.to_string())
            .env("LD_LIBRARY_PATH", &dir)
            .env("LEM_FAKE_NVML_SCENARIO", &scenario)
            .env_remove("CUDA_VISIBLE_DEVICES");
        if shared {
            cmd.env(PROCS_VAR, PROCS_PER_GPU.to_string());
        } else {
            cmd.env_remove(PROCS_VAR);
        }
        failed |= !cmd.status().map(|s| s.success()).unwrap_or(false);
    }
    for c in &mut others {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
    if failed {
        std::process::exit(1);
    }
}
