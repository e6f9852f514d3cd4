//! `lem._lem.Report`: one window's report, its fields as Python values.

use pyo3::prelude::*;

use crate::{err, json_to_py};

/// `(index, raw_j, adjusted_j, uncertainty_j)` of one device.
type DeviceEnergyRow = (u32, Option<f64>, Option<f64>, Option<f64>);

/// The report of one window: lem's schema-v3 report. Energy that could not be measured is
/// `None`, never `0.0`.
#[pyclass(module = "lem._lem", frozen)]
#[derive(Clone)]
pub(crate) struct Report {
    pub(crate) inner: lem::EnergyReport,
}

impl Report {
    pub(crate) fn new(inner: lem::EnergyReport) -> Self {
        Self { inner }
    }
}

#[pymethods]
impl Report {
    /// A shared window's share of its group's energy, J (`None` for other windows).
    #[getter]
    fn shared_j(&self) -> Option<f64> {
        self.inner.energy.shared.as_ref().and_then(|s| s.shared_j)
    }

    /// The bound on `shared_j`, J.
    #[getter]
    fn shared_uncertainty_j(&self) -> Option<f64> {
        self.inner
            .energy
            .shared
            .as_ref()
            .and_then(|s| s.shared_uncertainty_j)
    }

    /// A shared window's share of its group's adjusted energy, J.
    #[getter]
    fn shared_adjusted_j(&self) -> Option<f64> {
        self.inner
            .energy
            .shared
            .as_ref()
            .and_then(|s| s.shared_adjusted_j)
    }

    /// Gross energy, J.
    #[getter]
    fn raw_j(&self) -> Option<f64> {
        self.inner.energy.raw_j
    }
    /// Net energy (raw − baseline × duration, floored at 0), J.
    #[getter]
    fn adjusted_j(&self) -> Option<f64> {
        self.inner.energy.adjusted_j
    }
    /// A bound on |raw_j − true energy|, J.
    #[getter]
    fn uncertainty_j(&self) -> Option<f64> {
        self.inner.energy.uncertainty_j
    }
    /// A bound on |adjusted_j − true net energy|, J.
    #[getter]
    fn adjusted_uncertainty_j(&self) -> Option<f64> {
        self.inner.energy.adjusted_uncertainty_j
    }
    /// The idle baseline used, W.
    #[getter]
    fn baseline_power_w(&self) -> Option<f64> {
        self.inner.energy.baseline_power_w
    }
    /// `energy_counter`, `power_integration`, `mixed`, or None.
    #[getter]
    fn method(&self) -> Option<String> {
        self.inner.energy.method.map(|m| m.to_string())
    }
    /// Window length, s.
    #[getter]
    fn duration_s(&self) -> f64 {
        self.inner.duration_s
    }
    /// Window start, s since the meter was built.
    #[getter]
    fn start_s(&self) -> f64 {
        self.inner.start_s
    }
    /// The scope's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.name.clone()
    }
    /// A device slowed down (thermal, HW slowdown, power brake).
    #[getter]
    fn throttle_detected(&self) -> bool {
        self.inner.thermal.throttle_detected
    }
    /// The window was shorter than a few counter updates.
    #[getter]
    fn below_resolution(&self) -> bool {
        self.inner.energy.below_resolution
    }
    /// Whether a simulated device produced it.
    #[getter]
    fn simulated(&self) -> bool {
        self.inner.simulated
    }
    /// Everything to know before trusting the numbers.
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.inner.warnings.clone()
    }
    /// One dict per device (schema v3 keys).
    #[getter]
    fn devices<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = serde_json::to_string(&self.inner.devices).map_err(|e| err(e.into()))?;
        json_to_py(py, &text)
    }
    /// Whose share of each shared GPU's active energy, estimated from SM utilisation, as a
    /// dict (lem's `attribution` block: `method`, `processes`, `self_active_j`, ...); `None`
    /// where no device lists its processes.
    #[getter]
    fn attribution<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(a) = &self.inner.attribution else {
            return Ok(None);
        };
        let text = serde_json::to_string(a).map_err(|e| err(e.into()))?;
        json_to_py(py, &text).map(Some)
    }
    /// Per device: `(index, raw_j, adjusted_j, uncertainty_j)` (cheaper than `devices`).
    fn device_energy(&self) -> Vec<DeviceEnergyRow> {
        self.inner
            .devices
            .iter()
            .map(|d| {
                (
                    d.index,
                    d.energy.raw_j,
                    d.energy.adjusted_j,
                    d.energy.uncertainty_j,
                )
            })
            .collect()
    }
    /// The whole report as a dict, with the same keys as lem's JSON.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.to_json()?)
    }
    /// The report as lem's JSON text.
    fn to_json(&self) -> PyResult<String> {
        self.inner.to_json().map_err(err)
    }
    fn __repr__(&self) -> String {
        let e = |v: Option<f64>| v.map_or("None".into(), |j| format!("{j:.3}"));
        format!(
            "<lem.Report `{}` {:.3} s raw_j={} ± {} adjusted_j={}{}>",
            self.inner.name,
            self.inner.duration_s,
            e(self.inner.energy.raw_j),
            e(self.inner.energy.uncertainty_j),
            e(self.inner.energy.adjusted_j),
            if self.inner.simulated {
                " SIMULATED"
            } else {
                ""
            }
        )
    }
}
