//! Memory that does not grow with the window: ten million simulated samples (10 ms apart on a
//! manual clock, no real waiting) through one meter, with a window open the whole time, two
//! more nested and overlapping it, and ten thousand short windows opened and closed on the
//! way, as a server's long-lived meter does. A counting allocator tracks the bytes live; they
//! are the same after ten thousand samples and after ten million.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lem::device::{Scenario, SimDevice};
use lem::{BaselineMode, ManualClock, Meter, SharedDevice};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

const INTERVAL_S: f64 = 0.01;

fn meter(clock: &Arc<ManualClock>) -> Meter {
    let scenario = Scenario::from_json(
        r#"{"name": "M", "idle_w": 60, "segments": [{"start_s": 1.0, "end_s": 1e9, "power_w": 250, "utilisation_pct": 80}]}"#,
        Path::new("trace.json"),
    )
    .unwrap();
    let devices: Vec<SharedDevice> = SimDevice::open_all(&scenario, clock.clone(), 0)
        .into_iter()
        .map(|d| Arc::new(d) as SharedDevice)
        .collect();
    Meter::builder()
        .devices(devices)
        .clock(clock.clone())
        .interval(Duration::from_secs_f64(INTERVAL_S))
        .baseline_mode(BaselineMode::Off)
        .build()
        .unwrap()
}

/// Take `n` sampling rounds, opening and closing a short window every `every` rounds.
fn rounds(meter: &Meter, clock: &ManualClock, n: u64, every: u64) {
    let mut short = None;
    for i in 0..n {
        clock.advance_s(INTERVAL_S);
        meter.sample_now();
        if i % every == 0 {
            match short.take() {
                None => short = Some(meter.open_window("short").unwrap()),
                Some(w) => {
                    let r = meter.close_window(w).unwrap();
                    assert!(r.energy.raw_j.is_some());
                }
            }
        }
    }
    if let Some(w) = short {
        meter.close_window(w).unwrap();
    }
}

fn flat(total: u64) {
    let clock = Arc::new(ManualClock::new());
    let meter = meter(&clock);
    let whole = meter.open_window("whole").unwrap();
    rounds(&meter, &clock, 500, 1000);
    let nested = meter.open_window("nested").unwrap();
    rounds(&meter, &clock, 500, 1000);
    let overlapping = meter.open_window("overlapping").unwrap();
    // every window's head is full and every buffer at its size: from here on, flat
    rounds(&meter, &clock, 9_000, 1000);
    let after_10k = live();
    rounds(&meter, &clock, total - 10_000, 1000);
    let after_all = live();
    let grown = after_all - after_10k;
    eprintln!("live bytes after 10 k samples: {after_10k}; after {total}: {after_all}");
    assert!(
        grown.abs() <= 1024,
        "memory grew by {grown} B from 10 k to {total} samples"
    );
    // and the windows still account every sample (a window opened right after a round
    // counts that round: it was taken at the window's start)
    let r = meter.close_window(nested).unwrap();
    assert_eq!(r.sampling.sample_count, total - 499);
    let r = meter.close_window(whole).unwrap();
    assert_eq!(r.sampling.sample_count, total);
    let expected = 250.0 * (r.duration_s - 1.0) + 60.0;
    let got = r.energy.raw_j.unwrap();
    assert!(
        (got - expected).abs() < 1e-4 * expected,
        "{got} vs {expected}"
    );
    let r = meter.close_window(overlapping).unwrap();
    assert_eq!(r.sampling.sample_count, total - 999);
    assert!(r.power.peak_w.is_some());
}

#[test]
fn memory_is_flat_over_ten_million_samples_with_windows_open_and_closing() {
    flat(10_000_000);
}
