//! `Energy`: a criterion [`Measurement`] whose value is joules, raw or baseline-adjusted.
//!
//! ```rust,ignore
//! use criterion::{criterion_group, criterion_main, Criterion};
//! fn energy() -> Criterion<lem::criterion::Energy> {
//!     Criterion::default().with_measurement(lem::criterion::Energy::from_env().expect("an energy source"))
//! }
//! fn bench(c: &mut Criterion<lem::criterion::Energy>) {
//!     c.bench_function("work", |b| b.iter(|| work()));
//! }
//! criterion_group! { name = benches; config = energy(); targets = bench }
//! criterion_main!(benches);
//! ```
//!
//! Why lem's own harness (`#[energy_bench]`) is usually the better tool: criterion's warm-up
//! is a fixed span of wall time and its iteration counts are estimated from wall time, not
//! from the measurement, so it neither waits for a GPU to settle nor sizes batches to span
//! the ~100 ms updates of an energy counter. Criterion batches can be far shorter than that;
//! each such batch is flagged (see [`Energy::below_resolution_batches`]). Use this
//! measurement for routines that run for a good fraction of a second per batch, or with
//! `iter_custom`.

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::Throughput;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::measure::meter::Meter;
use crate::measure::window::EnergyScope;

/// Joules per criterion batch, from an energy scope around the batch.
#[derive(Debug)]
pub struct Energy {
    meter: &'static Meter,
    adjusted: bool,
    below_resolution: AtomicU64,
}

impl Energy {
    /// Raw (gross) joules on `meter`'s devices.
    ///
    /// # Errors
    /// [`Error::NoDevice`] when the meter has no energy source.
    pub fn raw(meter: Meter) -> Result<Self> {
        Self::new(meter, false)
    }

    /// Baseline-adjusted (net) joules; needs a baseline for every device.
    ///
    /// # Errors
    /// [`Error::NoDevice`] without an energy source, [`Error::BaselineRequired`] without a
    /// baseline.
    pub fn adjusted(meter: Meter) -> Result<Self> {
        if meter.baselines().iter().any(|b| b.power_w.is_none()) {
            return Err(Error::BaselineRequired(
                "criterion adjusted energy needs an idle baseline for every device".into(),
            ));
        }
        Self::new(meter, true)
    }

    /// Raw joules on a meter built from the `LEM_*` environment variables.
    ///
    /// # Errors
    /// As [`Meter::from_env`] and [`Energy::raw`].
    pub fn from_env() -> Result<Self> {
        Self::raw(Meter::from_env()?)
    }

    fn new(meter: Meter, adjusted: bool) -> Result<Self> {
        if meter.devices().is_empty() {
            return Err(Error::NoDevice(
                "criterion energy measurement: no energy source (set LEM_DEVICE)".into(),
            ));
        }
        // Criterion keeps the measurement for the whole process and its intermediates borrow
        // the meter, so the meter lives as long as the process (one per bench binary).
        let meter: &'static Meter = Box::leak(Box::new(meter));
        Ok(Self {
            meter,
            adjusted,
            below_resolution: AtomicU64::new(0),
        })
    }

    /// Batches whose window was too short for the energy counter's resolution.
    pub fn below_resolution_batches(&self) -> u64 {
        self.below_resolution.load(Ordering::Relaxed)
    }

    /// Whether the devices are simulated.
    pub fn is_simulated(&self) -> bool {
        self.meter.is_simulated()
    }
}

impl Measurement for Energy {
    type Intermediate = Option<EnergyScope<'static>>;
    type Value = f64;

    fn start(&self) -> Self::Intermediate {
        self.meter.start("criterion").ok()
    }

    fn end(&self, i: Self::Intermediate) -> f64 {
        let Some(report) = i.and_then(|s| s.finish().ok()) else {
            return f64::NAN;
        };
        if report.energy.below_resolution {
            self.below_resolution.fetch_add(1, Ordering::Relaxed);
        }
        let v = if self.adjusted {
            report.energy.adjusted_j
        } else {
            report.energy.raw_j
        };
        // NaN (not zero) when the window could not be measured: criterion shows it as such.
        v.unwrap_or(f64::NAN)
    }

    fn add(&self, v1: &f64, v2: &f64) -> f64 {
        v1 + v2
    }

    fn zero(&self) -> f64 {
        0.0
    }

    fn to_f64(&self, value: &f64) -> f64 {
        *value
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &JoulesFormatter
    }
}

/// Formats joules as J, mJ, µJ or nJ; throughput as J per element or byte.
#[derive(Debug, Clone, Copy, Default)]
pub struct JoulesFormatter;

fn scale(typical: f64) -> (f64, usize) {
    let a = typical.abs();
    if a >= 1.0 || a == 0.0 || !a.is_finite() {
        (1.0, 0)
    } else if a >= 1e-3 {
        (1e3, 1)
    } else if a >= 1e-6 {
        (1e6, 2)
    } else {
        (1e9, 3)
    }
}

impl ValueFormatter for JoulesFormatter {
    fn scale_values(&self, typical_value: f64, values: &mut [f64]) -> &'static str {
        let (f, i) = scale(typical_value);
        for v in values.iter_mut() {
            *v *= f;
        }
        ["J", "mJ", "µJ", "nJ"][i]
    }

    fn scale_throughputs(
        &self,
        typical_value: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per = match throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => *n as f64,
            Throughput::Elements(n) => *n as f64,
            Throughput::Bits(n) => *n as f64,
            Throughput::ElementsAndBytes { elements, .. } => *elements as f64,
        };
        let per = per.max(1.0);
        let (f, i) = scale(typical_value / per);
        for v in values.iter_mut() {
            *v = *v / per * f;
        }
        match throughput {
            Throughput::Bytes(_) | Throughput::BytesDecimal(_) => {
                ["J/byte", "mJ/byte", "µJ/byte", "nJ/byte"][i]
            }
            Throughput::Bits(_) => ["J/bit", "mJ/bit", "µJ/bit", "nJ/bit"][i],
            _ => ["J/elem", "mJ/elem", "µJ/elem", "nJ/elem"][i],
        }
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "J"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatter_scales_to_readable_units() {
        let f = JoulesFormatter;
        let mut v = [0.0021, 0.0035];
        assert_eq!(f.scale_values(0.002, &mut v), "mJ");
        assert!((v[0] - 2.1).abs() < 1e-9);
        let mut v = [3.0];
        assert_eq!(f.scale_values(3.0, &mut v), "J");
        let mut v = [2e-6];
        assert_eq!(f.scale_values(2e-6, &mut v), "µJ");
        let mut v = [0.5];
        assert_eq!(
            f.scale_throughputs(0.5, &Throughput::Elements(1000), &mut v),
            "µJ/elem"
        );
        assert!((v[0] - 500.0).abs() < 1e-9);
        let mut v = [1.0];
        assert_eq!(f.scale_for_machines(&mut v), "J");
    }

    #[test]
    fn measurement_reports_joules_of_a_simulated_window() {
        use std::sync::Arc;
        let clock = Arc::new(crate::base::clock::ManualClock::new());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        std::fs::write(&p, r#"{"idle_w": 40}"#).unwrap();
        let meter = Meter::builder()
            .device(crate::device::DeviceSpec::Sim(p))
            .clock(clock.clone())
            .cache_dir(dir.path())
            .baseline_duration(std::time::Duration::from_secs(1))
            .build()
            .unwrap();
        let e = Energy::raw(meter).unwrap();
        let i = e.start();
        clock.advance_s(2.0);
        assert!((e.end(i) - 80.0).abs() < 1e-9);
        assert!(Energy::raw(
            Meter::builder()
                .device(crate::device::DeviceSpec::None)
                .build()
                .unwrap()
        )
        .is_err());
    }
}
