//! One hour of 8 GPUs sampled at 100 Hz (2.88 M samples) written as a time-series stream by
//! lem's writer thread, then read back by `lem plot` and `lem show` in bounded memory: the
//! peak resident memory of each (`wait4` on that child) stays far below the file's size.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Sandbox;
use lem::device::{Reading, Sample};
use lem::timeseries::writer::StreamWriter;
use lem::timeseries::{StreamDevice, StreamHeader};
use std::time::Instant;

const GPUS: u32 = 8;
const ROUNDS: u32 = 3600 * 100;
/// Peak resident memory allowed to `lem plot` on the 2.88 M-sample file, MiB: its samples
/// alone would take more than 180 MiB in memory (and the file is about 150 MB).
const PEAK_LIMIT_MIB: f64 = 40.0;

/// Run `lem ARGS` in the sandbox; its exit code, stdout, stderr and peak resident memory
/// (MiB, from `wait4` on that child alone).
fn run_measured(sb: &Sandbox, args: &[&str]) -> (i32, String, String, f64) {
    let out = sb.path().join("out.txt");
    let err = sb.path().join("err.txt");
    // reaped below by wait4, which also gives its peak memory
    #[allow(clippy::zombie_processes)]
    let child = sb
        .cmd()
        .args(args)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let mut status: libc::c_int = 0;
    // SAFETY: wait4 on our own child, writing into the zeroed rusage it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut u) };
    assert_eq!(rc, pid);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (
        code,
        std::fs::read_to_string(out).unwrap(),
        std::fs::read_to_string(err).unwrap(),
        u.ru_maxrss as f64 / 1024.0, // KiB on Linux
    )
}

fn write_hour(path: &std::path::Path) -> (u64, f64) {
    let devices = (0..GPUS)
        .map(|i| StreamDevice {
            index: i,
            uuid: format!("SIM-{i}"),
            name: "Simulated GPU".into(),
            baseline_power_w: Some(60.0),
        })
        .collect();
    let header = StreamHeader::new("hour", 10.0, true, (0.0, 1.7e9), devices);
    let w = StreamWriter::create(path, &header, 0.0).unwrap();
    let tx = w.sender();
    let t = Instant::now();
    for r in 0..ROUNDS {
        let t_s = f64::from(r) * 0.01;
        let round = (0..GPUS)
            .map(|d| Sample {
                t_s,
                device: d,
                reading: Reading {
                    power_w: Some(200.0 + f64::from((r + d * 37) % 200)),
                    memory_used_mb: Some(40_000.0),
                    temperature_c: Some(60.0 + f64::from(d)),
                    utilisation_pct: Some(f64::from(r % 101)),
                    throttle: Some(lem::device::ThrottleReasons::from_bits(if r % 5000 < 50 {
                        0x40
                    } else {
                        0
                    })),
                    ..Reading::default()
                },
            })
            .collect();
        tx.send_round_waiting(round).unwrap();
    }
    drop(tx);
    let n = w.finish().unwrap();
    (n, t.elapsed().as_secs_f64())
}

#[test]
fn an_hour_of_8_gpus_at_100_hz_is_written_and_plotted_in_bounded_memory() {
    let sb = Sandbox::new();
    let stream = sb.path().join("hour_timeseries.jsonl");
    let (n, write_s) = write_hour(&stream);
    assert_eq!(n, u64::from(GPUS * ROUNDS));
    let bytes = std::fs::metadata(&stream).unwrap().len();
    eprintln!(
        "wrote {n} samples ({:.0} MB) in {write_s:.1} s: {:.2} M samples/s",
        bytes as f64 / 1e6,
        n as f64 / write_s / 1e6
    );

    let svg = sb.path().join("hour.svg");
    let t = Instant::now();
    let (code, _, err, peak) = run_measured(
        &sb,
        &[
            "plot",
            stream.to_str().unwrap(),
            "-o",
            svg.to_str().unwrap(),
        ],
    );
    let plot_s = t.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{err}");
    eprintln!(
        "lem plot read {n} samples in {plot_s:.1} s ({:.2} M samples/s), peak RSS {peak:.1} MiB",
        n as f64 / plot_s / 1e6
    );
    assert!(
        peak < PEAK_LIMIT_MIB,
        "lem plot peaked at {peak:.1} MiB on a {:.0} MB file",
        bytes as f64 / 1e6
    );
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg_text.len() < 4_000_000,
        "decimated: {} bytes",
        svg_text.len()
    );
    assert!(!svg_text.contains("(partial)"));

    let (code, out, err, peak) = run_measured(&sb, &["show", stream.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2880000 samples"), "{out}");
    assert!(!out.contains("PARTIAL"), "{out}");
    eprintln!("lem show: peak RSS {peak:.1} MiB");
    assert!(peak < PEAK_LIMIT_MIB, "lem show peaked at {peak:.1} MiB");
}
