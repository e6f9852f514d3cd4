//! Measure the energy of a closure with lem.
//!
//! Run with: `cargo run --release --example measure_closure`
//!
//! The device comes from `LEM_DEVICE` (default `auto`: NVML, else RAPL, else none). With no
//! energy source, try a simulated GPU:
//! `LEM_DEVICE=sim:examples/scenarios/steady_300w.json LEM_BASELINE_DURATION_S=0.3 cargo run --release --example measure_closure`

use std::time::{Duration, Instant};

fn busy_work(d: Duration) -> u64 {
    let t = Instant::now();
    let mut x: u64 = 1;
    while t.elapsed() < d {
        for i in 0..10_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
    }
    x
}

fn joules(j: Option<f64>) -> String {
    j.map_or_else(|| "not measured".to_string(), |j| format!("{j:.2} J"))
}

fn main() -> Result<(), lem::Error> {
    // The five lines that measure a closure:
    let meter = lem::Meter::from_env()?;
    let (value, report) = meter.measure("busy_work", || busy_work(Duration::from_secs(2)))?;
    println!(
        "energy: {} raw, {} adjusted over {:.2} s",
        joules(report.energy.raw_j),
        joules(report.energy.adjusted_j),
        report.duration_s
    );

    println!("(result {value:#x})");
    println!("environment: {}", meter.environment().summary);
    for w in &report.warnings {
        println!("warning: {w}");
    }
    if report.simulated {
        println!("note: simulated device: these numbers are not measurements");
    }
    println!("{}", report.to_json()?);
    Ok(())
}
