//! The time series' writer runs on its own thread: a sampling round hands its samples over
//! and returns, even when the writer cannot write at all (its file is a pipe nobody reads).
//! Rounds that find the hand-over full are counted as dropped, never waited for.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use lem::device::{Scenario, SimDevice};
use lem::{BaselineMode, ManualClock, Meter, SharedDevice};

const GPUS: u32 = 8;
const ROUNDS: usize = 20_000;

fn meter(clock: &Arc<ManualClock>, keep: bool) -> Meter {
    let s = Scenario::from_json(
        &format!(r#"{{"idle_w": 90, "count": {GPUS}}}"#),
        Path::new("t.json"),
    )
    .unwrap();
    let devices: Vec<SharedDevice> = SimDevice::open_all(&s, clock.clone(), 0)
        .into_iter()
        .map(|d| Arc::new(d) as SharedDevice)
        .collect();
    Meter::builder()
        .devices(devices)
        .clock(clock.clone())
        .baseline_mode(BaselineMode::Off)
        .interval(Duration::from_millis(10))
        .keep_timeseries(keep)
        .build()
        .unwrap()
}

fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn sampling_rounds_never_wait_for_a_blocked_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("blocked.jsonl");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // the reader opens the pipe, then reads nothing until told to
    let (go, wait) = mpsc::channel::<()>();
    let f = fifo.clone();
    let reader = std::thread::spawn(move || {
        let mut r = std::fs::File::open(&f).unwrap();
        wait.recv().unwrap();
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        s
    });
    let clock = Arc::new(ManualClock::new());
    let m = Arc::new(meter(&clock, false));
    m.record_timeseries(&fifo, "blocked").unwrap();
    // the writer is a thread of its own (it names itself once it runs)
    let t = Instant::now();
    while !thread_names().iter().any(|n| n == "lem-timeseries") {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{:?}",
            thread_names()
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    // the rounds run on a thread of their own so that a round stuck on the writer fails the
    // test instead of hanging it
    let (done, finished) = mpsc::channel();
    let (m2, c2) = (m.clone(), clock.clone());
    std::thread::spawn(move || {
        let mut slowest = Duration::ZERO;
        let t = Instant::now();
        for _ in 0..ROUNDS {
            c2.advance_s(0.01);
            let r = Instant::now();
            m2.sample_now();
            slowest = slowest.max(r.elapsed());
        }
        done.send((t.elapsed(), slowest)).unwrap();
    });
    let (total, slowest) = finished
        .recv_timeout(Duration::from_secs(120))
        .expect("sampling rounds blocked on the time-series writer");
    eprintln!("{ROUNDS} rounds in {total:?}, the slowest {slowest:?}");
    // the pipe holds ~64 KiB: the writer has been stuck since the first few hundred rounds
    assert!(
        slowest < Duration::from_millis(500),
        "a round took {slowest:?}"
    );

    go.send(()).unwrap();
    let written = m.stop_timeseries().unwrap();
    assert_eq!(written.as_deref(), Some(fifo.as_path()));
    let text = reader.join().unwrap();
    let last = text.lines().last().unwrap();
    let end: serde_json::Value = serde_json::from_str(last).unwrap();
    let count = end["end"]["sample_count"].as_u64().unwrap();
    let dropped = end["end"]["dropped_rounds"].as_u64().unwrap();
    assert_eq!(end["end"]["complete"], true);
    assert!(dropped > 0, "the writer was blocked: rounds were dropped");
    assert_eq!(
        count + dropped * u64::from(GPUS),
        ROUNDS as u64 * u64::from(GPUS)
    );
    assert_eq!(
        text.lines().count() as u64,
        count + 2,
        "header, samples, end"
    );
}

#[test]
fn keep_timeseries_streams_to_a_temporary_file_removed_with_the_meter() {
    let clock = Arc::new(ManualClock::new());
    let m = meter(&clock, true);
    let path = m.timeseries_stream().unwrap();
    assert!(path.starts_with(std::env::temp_dir()), "{}", path.display());
    let scope = m.start("w").unwrap();
    for _ in 0..50 {
        clock.advance_s(0.01);
        m.sample_now();
    }
    let rep = scope.finish().unwrap();
    let ts = m.timeseries(&rep);
    assert_eq!(ts.len(), 50 * GPUS as usize);
    assert!(path.exists());
    drop(m);
    assert!(!path.exists(), "removed with the meter");
}
