//! Histograms of the windows an application closes, by window name: a server that wraps
//! each request in a scope exports joules per request.
//!
//! A shared window (one of a group that divides the energy of overlapping requests)
//! counts its share (`shared_j`), so the histogram's sum over a group's windows is the
//! energy the GPU used for them, not a multiple of it; an ordinary window counts its raw
//! energy. A window whose energy could not be measured is left out of the energy histograms
//! (never counted as 0) and still counted in the duration histogram.

use std::sync::Arc;

use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::gpu::Labels;
use crate::results::report::EnergyReport;

/// Bucket upper bounds, shared by every series of a family.
#[derive(Debug, Clone)]
pub struct Buckets(Arc<[f64]>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

impl Buckets {
    /// Check and keep `bounds`: finite, increasing.
    ///
    /// # Errors
    /// A message naming the first bad bound.
    pub fn new(bounds: &[f64]) -> Result<Self, String> {
        if bounds.is_empty() {
            return Err("no bucket bounds".into());
        }
        for w in bounds.windows(2) {
            if w[1] <= w[0] {
                return Err(format!(
                    "bucket bounds must increase ({} then {})",
                    w[0], w[1]
                ));
            }
        }
        if let Some(b) = bounds.iter().find(|b| !b.is_finite()) {
            return Err(format!("bucket bound {b} is not finite"));
        }
        Ok(Self(bounds.into()))
    }

    /// Joules per request: 0.1 J to about 52 kJ, doubling.
    pub fn default_energy() -> Self {
        Self(exponential_buckets(0.1, 2.0, 20).collect())
    }

    /// Seconds per request: 5 ms to about 45 min, doubling.
    pub fn default_duration() -> Self {
        Self(exponential_buckets(0.005, 2.0, 20).collect())
    }
}

type FHist = Family<Labels, Histogram, Buckets>;

/// The window histograms.
#[derive(Debug, Clone)]
pub struct WindowMetrics {
    energy: FHist,
    active: FHist,
    duration: FHist,
}

impl WindowMetrics {
    /// The families, registered in `registry`, with these buckets.
    pub fn register(registry: &mut Registry, energy: &Buckets, duration: &Buckets) -> Self {
        let m = Self {
            energy: Family::new_with_constructor(energy.clone()),
            active: Family::new_with_constructor(energy.clone()),
            duration: Family::new_with_constructor(duration.clone()),
        };
        registry.register(
            "lem_window_energy_joules",
            "Energy of each window, by name (a shared window's share)",
            m.energy.clone(),
        );
        registry.register(
            "lem_window_active_energy_joules",
            "Energy above the idle baseline of each window, by name (a shared window's share)",
            m.active.clone(),
        );
        registry.register(
            "lem_window_duration_seconds",
            "Duration of each window, by name",
            m.duration.clone(),
        );
        m
    }

    /// Count one closed window.
    pub fn observe(&self, r: &EnergyReport) {
        let mut labels = vec![("name".to_string(), r.name.clone())];
        if r.simulated {
            labels.push(("simulated".into(), "true".into()));
        }
        let (raw, active) = match &r.energy.shared {
            Some(s) => (s.shared_j, s.shared_adjusted_j),
            None => (r.energy.raw_j, r.energy.adjusted_j),
        };
        if let Some(j) = raw {
            self.energy.get_or_create(&labels).observe(j);
        }
        if let Some(j) = active {
            self.active.get_or_create(&labels).observe(j);
        }
        self.duration.get_or_create(&labels).observe(r.duration_s);
    }
}
