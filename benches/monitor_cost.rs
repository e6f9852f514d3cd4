//! What `lem monitor` costs: its CPU time per second of running with 1 and 8 GPUs of the
//! fake driver (`tools/fake-nvml`, which answers at once: lem's own cost, not the real
//! driver's latency), at the default 100 ms interval and at 10 ms, and the latency of a
//! scrape of `/metrics`.
//!
//! Run with: `cargo bench --bench monitor_cost` (it builds the `lem` binary and the fake
//! driver in the bench's profile, and prints a markdown table).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// CPU seconds the process `pid` has used (user + system), from `/proc/<pid>/stat`.
fn cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the fields after the command name, which is in parentheses
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

fn scrape(addr: &str) -> Option<Duration> {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut body = Vec::new();
    s.read_to_end(&mut body).ok()?;
    let ok = body.starts_with(b"HTTP/1.1 200") || body.starts_with(b"HTTP/1.0 200");
    ok.then(|| t.elapsed())
}

fn build(profile_dir: &Path) -> Option<()> {
    let mut c = Command::new(env!("CARGO"));
    c.args([
        "build",
        "-q",
        "-p",
        "lem",
        "-p",
        "fake-nvml",
        "--features",
        "lem/cli",
        "--bin",
        "lem",
        "--lib",
    ]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        c.arg("--release");
    }
    c.status().ok()?.success().then_some(())
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `lem monitor` over `gpus` fake GPUs sampled every `interval_ms`: the child and the
/// address it serves on.
fn start(bin: &Path, dir: &Path, gpus: u32, interval_ms: u32) -> Option<(Running, String)> {
    let scenario = dir.join(format!("{gpus}.json"));
    std::fs::write(
        &scenario,
        format!(r#"{{"name": "Fake H100", "idle_w": 100, "count": {gpus}, "segments": [{{"start_s": 0.0, "end_s": 1e6, "power_w": 400}}]}}"#),
    )
    .ok()?;
    let mut child = Command::new(bin)
        .args([
            "monitor",
            "--device",
            "nvml",
            "--no-baseline",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--interval-ms", &interval_ms.to_string()])
        .env("LD_LIBRARY_PATH", dir)
        .env("LEM_FAKE_NVML_SCENARIO", &scenario)
        .env_remove("CUDA_VISIBLE_DEVICES")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let err = child.stderr.take()?;
    let running = Running(child);
    let mut lines = BufReader::new(err).lines();
    let addr = loop {
        let line = lines.next()?.ok()?;
        if let Some(rest) = line.split("serving http://").nth(1) {
            break rest.split('/').next()?.to_string();
        }
    };
    // keep draining its stderr so that it never blocks on a full pipe
    std::thread::spawn(move || for _ in lines {});
    Some((running, addr))
}

fn measure(bin: &Path, dir: &Path, gpus: u32, interval_ms: u32) -> Option<String> {
    let (m, addr) = start(bin, dir, gpus, interval_ms)?;
    let pid = m.0.id();
    std::thread::sleep(Duration::from_secs(2));
    let (c0, t0) = (cpu_s(pid)?, Instant::now());
    std::thread::sleep(Duration::from_secs(20));
    let per_s = (cpu_s(pid)? - c0) / t0.elapsed().as_secs_f64();
    let mut lat: Vec<f64> = (0..500)
        .filter_map(|_| scrape(&addr))
        .map(|d| d.as_secs_f64() * 1e6)
        .collect();
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p) as usize).copied();
    Some(format!(
        "| {gpus} | {interval_ms} ms | {:.2} % | {:.0} µs | {:.0} µs | {} |",
        per_s * 100.0,
        q(0.5)?,
        q(0.99)?,
        lat.len()
    ))
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it without: nothing then
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let Some(profile_dir) = exe.parent().and_then(Path::parent).map(PathBuf::from) else {
        eprintln!("monitor_cost: cannot locate the target directory");
        std::process::exit(1);
    };
    if build(&profile_dir).is_none() {
        eprintln!("monitor_cost: building lem and fake-nvml failed");
        std::process::exit(1);
    }
    let dir = std::env::temp_dir().join(format!("lem-monitor-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let link = dir.join("libnvidia-ml.so.1");
    let _ = std::fs::remove_file(&link);
    if let Err(e) = std::os::unix::fs::symlink(profile_dir.join("libfake_nvml.so"), &link) {
        eprintln!("monitor_cost: {}: {e}", link.display());
        std::process::exit(1);
    }
    let bin = profile_dir.join("lem");
    println!("| GPUs | interval | CPU (of one core) | scrape p50 | scrape p99 | scrapes |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut failed = false;
    for (gpus, interval) in [(1, 100), (8, 100), (1, 10), (8, 10)] {
        match measure(&bin, &dir, gpus, interval) {
            Some(row) => println!("{row}"),
            None => {
                eprintln!("monitor_cost: {gpus} GPUs at {interval} ms failed");
                failed = true;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if failed {
        std::process::exit(1);
    }
}
