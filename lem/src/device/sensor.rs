//! What a device's power sensor actually observes: how often it publishes a new value, what
//! fraction of each period it senses, and how accurate it is said to be. The error bars are
//! computed from this profile, so every entry says where it comes from.
//!
//! NVIDIA documents none of this per architecture. The one published measurement is Yang,
//! Adamek and Armour, "Accurate and Convenient Energy Measurements for GPUs" (SC'24, arXiv
//! 2312.02741): on A100 and H100 the built-in sensor samples power for only 25 % of the
//! runtime (25 ms of every 100 ms). Whether the energy counter rests on the same sampling is
//! not documented; lem assumes it does (the cautious reading), and users can override the
//! profile (`LEM_SENSING_FRACTION`, `LEM_SENSOR_PERIOD_MS`, or
//! `lem::MeterBuilder::sensing_fraction`).

use serde::{Deserialize, Serialize};

/// A device's power sensor as lem models it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorProfile {
    /// How often the sensor publishes a new power value and counter update, s (0: it follows
    /// the power continuously).
    pub period_s: f64,
    /// The fraction of each period the sensor observes (1: all of it). A power change in the
    /// unobserved part is invisible to every NVML reading.
    pub sensing_fraction: f64,
    /// How long a power reading holds its value between refreshes, s (0: fresh at every
    /// read).
    #[serde(default)]
    pub refresh_s: f64,
    /// Where these figures come from, and whether they were measured or assumed.
    pub source: String,
    /// The sensor's documented calibration accuracy, ± % of the reading, where the vendor
    /// states one. It is not part of `uncertainty_j` (which bounds lem's own sampling), so it
    /// is reported separately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_pct: Option<f64>,
}

impl Default for SensorProfile {
    /// An ideal sensor: continuous, fully observed (simulated devices without a `sensor`
    /// block).
    fn default() -> Self {
        Self {
            period_s: 0.0,
            sensing_fraction: 1.0,
            refresh_s: 0.0,
            source: "ideal (simulated)".into(),
            calibration_pct: None,
        }
    }
}

/// The ±5 % NVIDIA states for the power readings of its data-centre GPUs (nvidia-smi's
/// documentation of `power.draw`).
const NVIDIA_CALIBRATION_PCT: f64 = 5.0;

impl SensorProfile {
    /// The profile of an NVIDIA GPU of architecture `arch` ("ampere", "hopper"...).
    pub fn nvidia(arch: Option<&str>) -> Self {
        let (fraction, source) = match arch {
            Some("ampere") | Some("hopper") => (
                0.25,
                "measured: 25 ms of every 100 ms on A100 and H100 (Yang et al., SC'24, arXiv 2312.02741)",
            ),
            Some("ada") | Some("blackwell") => (
                0.25,
                "assumed: as measured on A100/H100 (no published measurement for this architecture)",
            ),
            Some("kepler" | "maxwell" | "pascal" | "volta" | "turing") => (
                0.25,
                "assumed: as measured on A100/H100; older architectures are not published either way",
            ),
            _ => (
                0.25,
                "assumed: unknown architecture, taken as measured on A100/H100",
            ),
        };
        Self {
            period_s: 0.1,
            sensing_fraction: fraction,
            // the instant power field is refreshed once per sensor period (assumed)
            refresh_s: 0.1,
            source: source.into(),
            calibration_pct: Some(NVIDIA_CALIBRATION_PCT),
        }
    }

    /// RAPL: a model-based estimate updated about every millisecond, taken as fully
    /// observed (assumed; Intel documents no sampling gaps).
    pub fn rapl() -> Self {
        Self {
            period_s: 0.001,
            sensing_fraction: 1.0,
            refresh_s: 0.0,
            source: "assumed: RAPL updates about every 1 ms with no documented gaps".into(),
            calibration_pct: None,
        }
    }

    /// The unobserved share of each period, s.
    pub fn unobserved_s(&self) -> f64 {
        (1.0 - self.sensing_fraction).clamp(0.0, 1.0) * self.period_s
    }

    /// Check a user's override.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(self.sensing_fraction > 0.0 && self.sensing_fraction <= 1.0) {
            return Err(format!(
                "sensing fraction {} must be in (0, 1]",
                self.sensing_fraction
            ));
        }
        if !(self.period_s.is_finite() && (0.0..=10.0).contains(&self.period_s)) {
            return Err(format!(
                "sensor period {} s must be within 0 ..= 10 s",
                self.period_s
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a100_and_h100_are_measured_the_rest_assumed() {
        for a in ["ampere", "hopper"] {
            let p = SensorProfile::nvidia(Some(a));
            assert_eq!(p.sensing_fraction, 0.25);
            assert!(p.source.starts_with("measured"), "{}", p.source);
            assert!((p.unobserved_s() - 0.075).abs() < 1e-12);
        }
        for a in [Some("blackwell"), Some("volta"), None] {
            assert!(SensorProfile::nvidia(a).source.starts_with("assumed"));
        }
        assert_eq!(SensorProfile::default().unobserved_s(), 0.0);
        assert!(SensorProfile {
            sensing_fraction: 0.0,
            ..SensorProfile::default()
        }
        .validate()
        .is_err());
    }
}
