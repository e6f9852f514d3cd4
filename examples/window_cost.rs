//! Opens `others` windows (ordinary, or shared windows of one group), then opens and closes
//! `n` more of the same kind on a simulated GPU, with the sampler idle (a 10 s interval) so
//! that the run is the same every time: run it twice under `valgrind --tool=callgrind` with
//! two values of `n`, and the difference of the instruction counts over the difference of
//! `n` is what one window costs, free of start-up (docs/BENCHMARKS.md).
//!
//! `cargo run --release --example window_cost -- ordinary|shared N OTHERS`

use std::time::Duration;

fn main() -> Result<(), lem::Error> {
    let mut args = std::env::args().skip(1);
    let shared = args.next().as_deref() == Some("shared");
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2000);
    let others: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/scenarios/steady_300w.json"
    );
    let m = lem::Meter::builder()
        .device(lem::DeviceSpec::Sim(scenario.into()))
        .baseline_mode(lem::BaselineMode::Off)
        .interval(Duration::from_secs(10))
        .build()?;
    if shared {
        let g = m.group("requests");
        let _open = (0..others)
            .map(|_| g.start("other"))
            .collect::<Result<Vec<_>, _>>()?;
        for _ in 0..n {
            let s = g.start("bench")?;
            s.add_weight(1.0)?;
            std::hint::black_box(s.finish()?);
        }
    } else {
        let _open = (0..others)
            .map(|_| m.start("other"))
            .collect::<Result<Vec<_>, _>>()?;
        for _ in 0..n {
            std::hint::black_box(m.start("bench")?.finish()?);
        }
    }
    Ok(())
}
