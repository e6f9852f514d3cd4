//! The energy-benchmark runtime behind `#[energy_bench]` and `lem::main!()`.
//!
//! For each benchmark: warm up until the rolling CV of per-iteration latency is below the
//! target (or a fixed count), size each measured sample so it spans at least `min_sample_s`
//! (many energy-counter updates), then measure `samples` samples, each an [`EnergyScope`]
//! around N iterations, and report per-iteration statistics with 95 % confidence intervals.
//!
//! [`EnergyScope`]: crate::measure::window::EnergyScope

mod against;
mod bencher;
mod harness;
mod outcome;
mod plan;
mod progress;
mod sizing;
mod summary;
mod thermal;

pub use bencher::{run_one, Bencher};
pub use harness::{run_main, run_with, BenchDef, HarnessArgs};
pub use outcome::{BenchOutcome, BenchStats, SampleRecord};
pub use plan::{BenchOptions, ThrottlePolicy};
