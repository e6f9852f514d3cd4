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
//! such a batch is measured as every window below the counter's resolution is (integrated
//! where power is sampled at least twice per counter update, else the counter's difference:
//! chosen by the sampling, never by what the counter did, so short batches are not biased
//! upward), and counted. Use this measurement for routines that run for a good fraction of a second per
//! batch, or with `iter_custom`.
//!
//! A batch whose window could not be measured (a failed driver read with no power samples to
//! fall back on) cannot be given to criterion as NaN: criterion stops the whole run on a NaN.
//! It gets the power of the last measured batch (of the same benchmark: criterion runs one
//! benchmark's batches back to back) times its own length instead, is counted, and said on
//! stderr at once; the counts ([`Energy::tally`]) are printed when the
//! measurement is dropped at the end of its criterion group. If the very first batch cannot
//! be measured there is nothing to stand in for it: the counts so far are printed and the
//! bench stops with a one-line error.

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::Throughput;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::measure::meter::Meter;
use crate::measure::window::EnergyScope;

/// Joules per criterion batch, from an energy scope around the batch.
#[derive(Debug)]
pub struct Energy {
    meter: &'static Meter,
    adjusted: bool,
    tally: Arc<Tally>,
}

/// What happened to the batches of one [`Energy`] measurement, shared: keep the handle from
/// [`Energy::tally`] before handing the measurement to criterion to read it afterwards.
#[derive(Debug)]
pub struct Tally {
    batches: AtomicU64,
    below_resolution: AtomicU64,
    substituted: AtomicU64,
    /// The power of the last measured batch at or above the counter's resolution, and of the
    /// last measured batch of any length, W, as f64 bits (for a stand-in); NaN before one.
    last_fine_bits: AtomicU64,
    last_power_bits: AtomicU64,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            batches: AtomicU64::new(0),
            below_resolution: AtomicU64::new(0),
            substituted: AtomicU64::new(0),
            last_fine_bits: AtomicU64::new(f64::NAN.to_bits()),
            last_power_bits: AtomicU64::new(f64::NAN.to_bits()),
        }
    }
}

impl Tally {
    /// Batches measured or stood in for.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Batches shorter than the energy counter's resolution (integrated, and coarse).
    pub fn below_resolution(&self) -> u64 {
        self.below_resolution.load(Ordering::Relaxed)
    }

    /// Batches that could not be measured and were given the last measured batch's power
    /// times their length: not measurements.
    pub fn substituted(&self) -> u64 {
        self.substituted.load(Ordering::Relaxed)
    }

    /// The last measured batch's power (raw or adjusted, as measured), W: of one at or above
    /// the counter's resolution where there is one (a short batch's counter can read 0 J);
    /// `None` before the first.
    fn last_power_w(&self) -> Option<f64> {
        [&self.last_fine_bits, &self.last_power_bits]
            .into_iter()
            .map(|b| f64::from_bits(b.load(Ordering::Relaxed)))
            .find(|p| p.is_finite())
    }

    fn add_measured(&self, joules: f64, seconds: f64, below: bool) {
        if seconds > 0.0 {
            let p = (joules / seconds).to_bits();
            self.last_power_bits.store(p, Ordering::Relaxed);
            if !below {
                self.last_fine_bits.store(p, Ordering::Relaxed);
            }
        }
    }

    /// The line printed at the end of a group; `None` when every batch was measured at or
    /// above the counter's resolution.
    pub fn summary(&self) -> Option<String> {
        let (n, below, sub) = (self.batches(), self.below_resolution(), self.substituted());
        if below == 0 && sub == 0 {
            return None;
        }
        let mut parts = Vec::new();
        if below > 0 {
            parts.push(format!(
                "{below} of {n} batches were shorter than the energy counter's resolution (measured by integrating power samples; lengthen batches for finer figures)"
            ));
        }
        if sub > 0 {
            parts.push(format!(
                "{sub} of {n} batches could not be measured and carry the last measured batch's power times their length: criterion's statistics include these stand-ins"
            ));
        }
        Some(format!("lem: criterion energy: {}", parts.join("; ")))
    }
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
            tally: Arc::new(Tally::default()),
        })
    }

    /// Batches whose window was too short for the energy counter's resolution.
    pub fn below_resolution_batches(&self) -> u64 {
        self.tally.below_resolution()
    }

    /// The shared counts of this measurement's batches; keep it before handing the
    /// measurement to criterion, read it after.
    pub fn tally(&self) -> Arc<Tally> {
        Arc::clone(&self.tally)
    }

    /// The value of a batch that could not be measured: the last measured batch's power
    /// times its length, said on stderr; `None` before any batch was measured.
    fn stand_in(&self, seconds: Option<f64>, why: &str) -> Option<f64> {
        let p = self.tally.last_power_w()?;
        let s = seconds?;
        let n = self.tally.substituted.fetch_add(1, Ordering::Relaxed) + 1;
        eprintln!(
            "lem: warning: criterion energy: a batch could not be measured ({why}); it carries the last measured batch's power ({p:.1} W) times its length ({n} so far)"
        );
        Some(p * s)
    }

    /// Whether the devices are simulated.
    pub fn is_simulated(&self) -> bool {
        self.meter.is_simulated()
    }
}

impl Drop for Energy {
    fn drop(&mut self) {
        if let Some(line) = self.tally.summary() {
            eprintln!("{line}");
        }
    }
}

impl Measurement for Energy {
    /// The open scope (or why none opened) and the clock time it started.
    type Intermediate = (std::result::Result<EnergyScope<'static>, String>, f64);
    type Value = f64;

    fn start(&self) -> Self::Intermediate {
        let t0 = self.meter.clock().now().as_secs_f64();
        (self.meter.start("criterion").map_err(|e| e.to_string()), t0)
    }

    fn end(&self, (scope, t0): Self::Intermediate) -> f64 {
        self.tally.batches.fetch_add(1, Ordering::Relaxed);
        let elapsed = (self.meter.clock().now().as_secs_f64() - t0).max(0.0);
        let report = scope.and_then(|s| s.finish().map_err(|e| e.to_string()));
        let measured = match &report {
            Ok(r) => {
                let v = if self.adjusted {
                    r.energy.adjusted_j
                } else {
                    r.energy.raw_j
                };
                v.filter(|v| v.is_finite())
                    .map(|v| (v, r.duration_s, r.energy.below_resolution))
                    .ok_or_else(|| {
                        r.warnings
                            .last()
                            .cloned()
                            .unwrap_or_else(|| "no energy reading".into())
                    })
            }
            Err(e) => Err(e.clone()),
        };
        match measured {
            Ok((v, seconds, below)) => {
                if below {
                    self.tally.below_resolution.fetch_add(1, Ordering::Relaxed);
                }
                self.tally.add_measured(v, seconds, below);
                v
            }
            Err(why) => {
                if let Some(v) = self.stand_in(Some(elapsed), &why) {
                    return v;
                }
                // Nothing to stand in for it, and criterion aborts on NaN: say what was
                // counted, then stop with one line.
                if let Some(line) = self.tally.summary() {
                    eprintln!("{line}");
                }
                eprintln!(
                    "lem: error: criterion energy: the first batch could not be measured ({why}); no energy source answers"
                );
                std::process::exit(1);
            }
        }
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
        let tally = e.tally();
        assert_eq!((tally.batches(), tally.substituted()), (1, 0));
        assert!(Energy::raw(
            Meter::builder()
                .device(crate::device::DeviceSpec::None)
                .build()
                .unwrap()
        )
        .is_err());
    }

    /// A simulated device whose reads fail while `broken` is set.
    #[derive(Debug)]
    struct Flaky {
        inner: crate::device::SimDevice,
        broken: std::sync::atomic::AtomicBool,
    }

    impl crate::device::EnergySource for Flaky {
        fn info(&self) -> &crate::device::DeviceInfo {
            self.inner.info()
        }
        fn energy_j(&self) -> Result<f64> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(Error::config("device", "read failed"));
            }
            self.inner.energy_j()
        }
        fn read(&self) -> Result<crate::device::Reading> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(Error::config("device", "read failed"));
            }
            self.inner.read()
        }
    }

    #[test]
    fn a_batch_that_cannot_be_measured_gets_a_stand_in_and_is_counted() {
        let clock = Arc::new(crate::base::clock::ManualClock::new());
        let scenario = crate::device::Scenario::from_json(
            r#"{"idle_w": 50, "counter_update_ms": 100}"#,
            std::path::Path::new("s.json"),
        )
        .unwrap();
        let flaky = Arc::new(Flaky {
            inner: crate::device::SimDevice::open_all(&scenario, clock.clone(), 0).remove(0),
            broken: std::sync::atomic::AtomicBool::new(false),
        });
        let devices: Vec<crate::device::SharedDevice> = vec![flaky.clone()];
        let meter = Meter::builder()
            .devices(devices)
            .clock(clock.clone())
            .baseline_mode(crate::measure::baseline::BaselineMode::Off)
            .build()
            .unwrap();
        let e = Energy::raw(meter).unwrap();
        let tally = e.tally();
        // a long batch, then a short one (below the counter's 3 updates), then a failed one
        let i = e.start();
        clock.advance_s(1.0);
        assert!((e.end(i) - 50.0).abs() < 1e-6);
        let i = e.start();
        clock.advance_s(0.05);
        let short = e.end(i);
        // sampled no faster than the counter updates: the counter's difference, 0 J or one
        // 5 J update
        assert!(short == 0.0 || (short - 5.0).abs() < 1e-6, "{short}");
        let i = e.start();
        flaky.broken.store(true, Ordering::SeqCst);
        clock.advance_s(2.0);
        let v = e.end(i);
        assert!(v.is_finite(), "criterion aborts on NaN");
        assert!((v - 100.0).abs() < 1.0, "50 W times 2 s, got {v}");
        assert_eq!(
            (
                tally.batches(),
                tally.below_resolution(),
                tally.substituted()
            ),
            (3, 1, 1)
        );
        let line = tally.summary().unwrap();
        assert!(line.contains("1 of 3 batches were shorter"), "{line}");
        assert!(
            line.contains("1 of 3 batches could not be measured"),
            "{line}"
        );
    }
}
