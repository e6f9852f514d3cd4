//! Shared windows from Python: `meter.group(name)`, its scopes (context managers) and their
//! weights. The shares of a group add up to the energy of the union of its windows.

use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::{call_sync, err, finished, json_to_py, lock, LemError, Report};

/// A group of windows that share energy where they overlap: over each stretch between two of
/// the group's boundaries, the stretch's energy is divided among the windows open in it
/// (equally, or its active part by the weight each reported in it).
#[pyclass(module = "lem._lem", frozen)]
pub(crate) struct Group {
    pub(crate) meter: Arc<lem::Meter>,
    pub(crate) sync: Option<Py<PyAny>>,
    pub(crate) name: String,
}

#[pymethods]
impl Group {
    /// A shared scope to use with `with`: it joins the group on entry and leaves on exit;
    /// `scope.report` then holds its report, with `shared_j` beside `raw_j`.
    fn scope(&self, py: Python<'_>, name: String) -> SharedScope {
        SharedScope {
            meter: self.meter.clone(),
            sync: self.sync.as_ref().map(|s| s.clone_ref(py)),
            group: self.name.clone(),
            name,
            window: Mutex::new(None),
            report: Mutex::new(None),
            started: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Open a shared window now; close it with `finish()`.
    fn start(&self, py: Python<'_>, name: String) -> PyResult<SharedScope> {
        let s = self.scope(py, name);
        s.open(py)?;
        Ok(s)
    }

    /// The group so far, as a dict: `windows`, `union_j`, `union_uncertainty_j`,
    /// `shares_sum_j`, `gaps_s`, `per_window_j` (p50, p95, p99), `per_weight_j`...
    fn summary<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let s = self.meter.group(&self.name).summary();
        let text = serde_json::to_string(&s).map_err(|e| err(lem::Error::from(e)))?;
        json_to_py(py, &text)
    }

    /// The group's name.
    #[getter]
    fn name(&self) -> String {
        self.name.clone()
    }

    fn __repr__(&self) -> String {
        format!("<lem.Group `{}`>", self.name)
    }
}

/// One shared window. From `group.scope(name)` (a context manager) or `group.start(name)`
/// (already open; close it with `finish()`).
#[pyclass(module = "lem._lem", frozen)]
pub(crate) struct SharedScope {
    meter: Arc<lem::Meter>,
    sync: Option<Py<PyAny>>,
    group: String,
    name: String,
    window: Mutex<Option<lem::SharedWindow>>,
    report: Mutex<Option<Report>>,
    started: std::sync::atomic::AtomicBool,
}

impl SharedScope {
    fn open(&self, py: Python<'_>) -> PyResult<()> {
        use std::sync::atomic::Ordering;
        if self.started.swap(true, Ordering::SeqCst) {
            return Err(LemError::new_err(format!(
                "scope `{}` was already started",
                self.name
            )));
        }
        let opened = call_sync(py, &self.sync).and_then(|()| {
            let m = self.meter.clone();
            let (group, name) = (self.group.clone(), self.name.clone());
            py.detach(move || m.open_shared(&group, name)).map_err(err)
        });
        match opened {
            Ok(w) => {
                *lock(&self.window) = Some(w);
                Ok(())
            }
            Err(e) => {
                self.started.store(false, Ordering::SeqCst);
                Err(e)
            }
        }
    }
}

impl Drop for SharedScope {
    fn drop(&mut self) {
        if let Some(w) = lock(&self.window).take() {
            self.meter.discard_shared(w);
        }
    }
}

#[pymethods]
impl SharedScope {
    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().open(slf.py())?;
        Ok(slf)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.finish(py)?;
        Ok(false)
    }

    /// Report `units` of progress (tokens...) made since the group's last boundary.
    fn add_weight(&self, units: f64) -> PyResult<()> {
        match lock(&self.window).as_ref() {
            Some(w) => w.add_weight(units).map_err(err),
            None => Err(LemError::new_err(format!(
                "scope `{}` is not open",
                self.name
            ))),
        }
    }

    /// Leave the group and return the report (`shared_j` beside `raw_j`).
    fn finish(&self, py: Python<'_>) -> PyResult<Report> {
        let Some(w) = lock(&self.window).take() else {
            return Err(LemError::new_err(match lock(&self.report).is_some() {
                true => format!("scope `{}` was already finished", self.name),
                false => format!("scope `{}` was never started", self.name),
            }));
        };
        if let Err(e) = call_sync(py, &self.sync) {
            self.meter.discard_shared(w);
            return Err(e);
        }
        let m = self.meter.clone();
        let r = py.detach(move || m.close_shared(w)).map_err(err)?;
        let report = Report::new(r);
        *lock(&self.report) = Some(report.clone());
        Ok(report)
    }

    /// The report, once finished.
    #[getter]
    fn report(&self) -> PyResult<Report> {
        finished(&self.report, &self.name)
    }

    /// The scope's name.
    #[getter]
    fn name(&self) -> String {
        self.name.clone()
    }

    /// Whether the window is open.
    #[getter]
    fn active(&self) -> bool {
        lock(&self.window).is_some()
    }

    fn __repr__(&self) -> String {
        format!("<lem.SharedScope `{}` of `{}`>", self.name, self.group)
    }
}
