#![doc = include_str!("../../README.md")]
#![warn(missing_docs)]

// The library is layered; each layer imports only from the layers below it (checked by
// `tests/layers.rs`; ARCHITECTURE.md draws it):
//
//   bench, criterion, args,     front doors: benchmark harness, criterion, shared CLI flags,
//   monitor                     the Prometheus exporter
//   measure                     meter, windows, sampler, baseline, probe, warmup, accounting
//   results                     report schema, result files, environment, aggregate, export
//   device                      NVML, simulated and RAPL sources; spec; throttle reasons
//   base, error                 clocks, time formatting, the on-disk cache, atomic writes
//
// The folders are private; what users need is re-exported below, with short paths.

mod base;
pub mod device;
mod error;
mod measure;
mod results;

#[cfg(feature = "args")]
pub mod args;
#[cfg(feature = "bench")]
pub mod bench;
#[cfg(feature = "criterion")]
#[path = "bench/criterion.rs"]
pub mod criterion;
/// The live exporter: a Prometheus `/metrics` endpoint (`lem monitor`,
/// [`Meter::serve_metrics`]).
#[cfg(feature = "monitor")]
pub mod monitor;

pub use base::cache::default_cache_dir;
pub use base::clock::{Clock, ManualClock, MonotonicClock};
pub use device::{DeviceSpec, EnergySource, SharedDevice};
pub use error::{Error, Result};
pub use measure::baseline::{Baseline, BaselineConfig, BaselineMode};
pub use measure::builder::{parse_interval_ms, parse_seconds, MeterBuilder};
pub use measure::group::{SharedScope, SharedWindow, WindowGroup};
pub use measure::meter::{Meter, SyncHook, WindowObserver};
pub use measure::probe::collect_environment;
pub use measure::rolling::Rolling;
pub use measure::window::{EnergyScope, OpenWindow};
pub use results::env::Environment;
pub use results::group::GroupSummary;
pub use results::output::{ResultFile, Timeseries};
pub use results::report::{BaselineMethod, EnergyMethod, EnergyReport, SCHEMA_VERSION};

/// The idle baseline: its settings and its per-device cache (`lem baseline`).
pub mod baseline {
    pub use crate::base::cache::default_cache_dir;
    pub use crate::measure::baseline::{
        cache_path, clear_cache, list_cache, read_cache, write_cache, Baseline, BaselineConfig,
        BaselineMode, CacheEntry, DEFAULT_DURATION, DEFAULT_TTL,
    };
    pub use crate::results::report::BaselineMethod;
}
pub use measure::cooldown;
pub use measure::probe;
pub use measure::warmup;
#[cfg(feature = "plot")]
pub use results::plot;
pub use results::{
    aggregate, attribution, compare, env, export, group, output, report, stats, timeseries,
};

#[cfg(feature = "bench")]
pub use bench::{BenchOptions, Bencher};

/// Turns a function into an energy benchmark, run by [`main!`] under `cargo bench`.
///
/// In a bench target with `harness = false` (and `lem` with its default `bench` feature):
///
/// ```rust,ignore
/// use lem::energy_bench;
///
/// // The plain form: the return value is black-boxed.
/// #[energy_bench]
/// fn matmul_256() -> f32 {
///     let a = vec![1.0f32; 256 * 256];
///     (0..256).map(|i| a[i * 256..(i + 1) * 256].iter().sum::<f32>()).sum()
/// }
///
/// // One benchmark per argument: `decode/1`, `decode/8`, `decode/32`.
/// #[energy_bench(args = [1, 8, 32], cv = 0.03, samples = 20)]
/// fn decode(batch: usize) -> usize {
///     batch * 2
/// }
///
/// // Setup outside the measurement, a sync hook, and energy per unit: the routine returns
/// // how many units (here tokens) one call produced.
/// #[energy_bench(units = "tokens")]
/// fn generate(b: &mut lem::Bencher) {
///     let model = setup();                 // not measured
///     let device = model.device();         // the sync hook takes what it needs by value
///     b.sync_with(move || device.sync());  // GPU work is asynchronous
///     b.iter(|| model.generate(64))        // returns the number of tokens
/// }
///
/// lem::main!();
/// ```
///
/// Options (all optional): `cv` (target coefficient of variation of warmup latency, 0.05),
/// `window` (5), `min_warmup` (5), `max_warmup` (50), `warmup = "converge" | "fixed"` with
/// `warmup_iters`, `samples` (10), `min_sample_s` (1.0: each sample runs the function as
/// many times as it takes to last this long, so that it spans many energy-counter updates),
/// `max_uncertainty` (a fraction, e.g. `0.01`: samples are sized, before any is measured,
/// from the bound's model so that the reported figure's bound is under that fraction of it,
/// or a warning says why no length can; without it the bound is only reported),
/// `max_time_s` (600: limit on one benchmark's measuring time), `cooldown_c` and
/// `cooldown_timeout_s` (wait before each sample until every device is within that many °C
/// of its idle temperature, at most 300 s), `on_throttle = "continue" | "discard" | "abort"`,
/// `cycles` (1: with more, the intervals are over the cycles' means) and `cycle_gap_s`, `units`, `device` (a device spec overriding `LEM_DEVICE`),
/// `ignore`, `name`. An unknown or repeated option, a wrong value type, an `async fn`, a
/// method, or `args` without a parameter is a compile error pointing at the offending token.
///
/// **Synchronise GPU work** with `b.sync_with(...)`: it runs after every warmup iteration
/// and at both ends of every sample.
///
/// Results: a table per benchmark, `<LEM_OUTPUT_DIR or target/lem>/<name>.json` (schema v3,
/// with `bench.*` and `warmup.*` statistics) and a `bench_summary.csv` for the run.
/// The function stays callable from ordinary code.
#[cfg(feature = "bench")]
pub use lem_macros::energy_bench;

/// The entry point of a bench target: `lem::main!();` runs every `#[energy_bench]`
/// benchmark linked into it, with `cargo bench`'s arguments.
#[cfg(feature = "bench")]
#[macro_export]
macro_rules! main {
    () => {
        fn main() {
            ::std::process::exit($crate::__private::run_main());
        }
    };
}

/// What the code generated by `#[energy_bench]` needs. Not a public API.
#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod __private {
    pub use crate::bench::run_main;
    pub use crate::bench::BenchDef;
    pub use crate::bench::BenchOptions;
    pub use crate::bench::ThrottlePolicy;
    pub use crate::measure::warmup::WarmupMode;
    pub use inventory;
}
