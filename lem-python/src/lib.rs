//! `lem._lem`: lem's meter, scopes and reports for Python. The sampler stays a Rust thread
//! that never takes the GIL; opening and closing windows, and measuring a baseline, release
//! it. A Rust panic surfaces as a Python exception (pyo3's `PanicException`).

mod report;

use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use report::Report;

create_exception!(
    _lem,
    LemError,
    PyException,
    "Base of every lem error: one line naming the setting, file or device and the problem."
);
create_exception!(
    _lem,
    ConfigError,
    LemError,
    "An invalid setting (device spec, interval, baseline mode, ...)."
);
create_exception!(
    _lem,
    DeviceError,
    LemError,
    "No device, or a device that cannot be opened or read."
);
create_exception!(
    _lem,
    BaselineError,
    LemError,
    "A required idle baseline could not be established."
);
create_exception!(
    _lem,
    FileError,
    LemError,
    "A file could not be read or written, or is not what lem expected."
);

mod group;

pub(crate) fn err(e: lem::Error) -> PyErr {
    let msg = e.to_string();
    match e {
        lem::Error::InvalidConfig { .. } | lem::Error::Scenario { .. } => ConfigError::new_err(msg),
        lem::Error::BaselineRequired(_) => BaselineError::new_err(msg),
        lem::Error::Io { .. } | lem::Error::BadFile { .. } | lem::Error::Json(_) => {
            FileError::new_err(msg)
        }
        lem::Error::NoDevice(_)
        | lem::Error::NotSupported { .. }
        | lem::Error::Device { .. }
        | lem::Error::DeviceLost { .. }
        | lem::Error::Nvml { .. }
        | lem::Error::RaplPermission { .. } => DeviceError::new_err(msg),
        _ => LemError::new_err(msg),
    }
}

/// A scope's report once it is finished, else the error that says to finish it first.
fn finished(report: &Mutex<Option<Report>>, name: &str) -> PyResult<Report> {
    lock(report).clone().ok_or_else(|| {
        LemError::new_err(format!(
            "scope `{name}` has no report yet: finish it (or leave its `with` block) first"
        ))
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A JSON text as Python objects (dicts, lists, floats, None), through Python's own parser.
pub(crate) fn json_to_py<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}

/// The sync callable: a Python callable, or `"torch"` for `torch.cuda.synchronize`.
fn resolve_sync(py: Python<'_>, sync: Option<Bound<'_, PyAny>>) -> PyResult<Option<Py<PyAny>>> {
    let Some(s) = sync else {
        return Ok(None);
    };
    if s.is_none() {
        return Ok(None);
    }
    if let Ok(name) = s.extract::<String>() {
        if name != "torch" {
            return Err(ConfigError::new_err(format!(
                "invalid sync: `{name}` (expected a callable, \"torch\" or None)"
            )));
        }
        let torch = py.import("torch").map_err(|e| {
            ConfigError::new_err(format!("invalid sync: \"torch\" needs PyTorch ({e})"))
        })?;
        let cuda = torch.getattr("cuda")?;
        if !cuda.call_method0("is_available")?.is_truthy()? {
            return Err(ConfigError::new_err(
                "invalid sync: \"torch\" needs CUDA, and torch.cuda.is_available() is False",
            ));
        }
        return Ok(Some(cuda.getattr("synchronize")?.unbind()));
    }
    if !s.is_callable() {
        return Err(ConfigError::new_err(
            "invalid sync: expected a callable, \"torch\" or None",
        ));
    }
    Ok(Some(s.unbind()))
}

fn call_sync(py: Python<'_>, sync: &Option<Py<PyAny>>) -> PyResult<()> {
    if let Some(s) = sync {
        s.call0(py)?;
    }
    Ok(())
}

/// The processes a scope is attributed to: one pid or an iterable of pids (their
/// descendants count too).
fn extract_pids(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
    let bad = |what: String| ConfigError::new_err(format!("invalid pids: {what}"));
    let not_a_pid = |x: &Bound<'_, PyAny>| {
        bad(match x.repr() {
            Ok(r) => format!("{r} is not a pid (a positive integer)"),
            Err(_) => "expected positive integers".into(),
        })
    };
    let pid = |x: &Bound<'_, PyAny>| match x.extract::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(not_a_pid(x)),
    };
    if obj.is_instance_of::<pyo3::types::PyInt>() {
        return Ok(vec![pid(obj)?]);
    }
    let iter = match obj.is_instance_of::<PyString>() {
        true => None,
        false => obj.try_iter().ok(),
    };
    let Some(iter) = iter else {
        let ty = obj
            .get_type()
            .name()
            .map_or_else(|_| "?".into(), |n| n.to_string());
        return Err(bad(format!(
            "expected a pid or an iterable of pids, got {ty}"
        )));
    };
    let mut out = Vec::new();
    for x in iter {
        out.push(pid(&x?)?);
    }
    if out.is_empty() {
        return Err(bad(
            "empty (name at least one pid, or leave pids out for the calling process)".into(),
        ));
    }
    Ok(out)
}

/// Devices, their idle baselines and a background sampler: what scopes measure with.
///
/// `Meter(device="auto", interval_ms=100, baseline="auto", baseline_duration_s=30.0,
/// cache_dir=None, sync=None, keep_timeseries=False)`. Building may measure the idle
/// baseline (keep the GPU idle); a cached one is reused for an hour.
#[pyclass(module = "lem._lem", frozen)]
struct Meter {
    inner: Arc<lem::Meter>,
    sync: Option<Py<PyAny>>,
    /// The `/metrics` endpoint, while it serves.
    metrics: Mutex<Option<lem::monitor::MetricsServer>>,
}

fn build(py: Python<'_>, b: lem::MeterBuilder) -> PyResult<Arc<lem::Meter>> {
    // the baseline may take its whole duration: let other Python threads run
    py.detach(move || b.build()).map(Arc::new).map_err(err)
}

#[pymethods]
impl Meter {
    #[new]
    #[pyo3(signature = (device="auto", interval_ms=100.0, baseline="auto", baseline_duration_s=30.0, cache_dir=None, sync=None, keep_timeseries=false, require_baseline=false, powercap_root=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        device: &str,
        interval_ms: f64,
        baseline: &str,
        baseline_duration_s: f64,
        cache_dir: Option<std::path::PathBuf>,
        sync: Option<Bound<'_, PyAny>>,
        keep_timeseries: bool,
        require_baseline: bool,
        powercap_root: Option<std::path::PathBuf>,
    ) -> PyResult<Self> {
        let spec = lem::DeviceSpec::parse_for("device", device).map_err(err)?;
        let interval =
            lem::parse_interval_ms("interval_ms", &interval_ms.to_string()).map_err(err)?;
        let mode = lem::BaselineMode::parse_for("baseline", baseline).map_err(err)?;
        let duration = lem::parse_seconds("baseline_duration_s", &baseline_duration_s.to_string())
            .map_err(err)?;
        let sync = resolve_sync(py, sync)?;
        let mut b = lem::Meter::builder()
            .device(spec)
            .interval(interval)
            .baseline_mode(mode)
            .baseline_duration(duration)
            .baseline_required(require_baseline)
            .keep_timeseries(keep_timeseries);
        if let Some(dir) = cache_dir {
            b = b.cache_dir(dir);
        }
        if let Some(root) = powercap_root {
            b = b.powercap_root(root);
        }
        Ok(Self {
            inner: build(py, b)?,
            sync,
            metrics: Mutex::new(None),
        })
    }

    /// A meter configured from `LEM_DEVICE`, `LEM_CACHE_DIR`, `LEM_BASELINE`,
    /// `LEM_BASELINE_DURATION_S` and `LEM_INTERVAL_MS`; `baseline` ("auto", "off", "force")
    /// overrides `LEM_BASELINE`.
    #[staticmethod]
    #[pyo3(signature = (sync=None, baseline=None))]
    fn from_env(
        py: Python<'_>,
        sync: Option<Bound<'_, PyAny>>,
        baseline: Option<&str>,
    ) -> PyResult<Self> {
        let sync = resolve_sync(py, sync)?;
        let mut b = lem::MeterBuilder::from_env().map_err(err)?;
        if let Some(mode) = baseline {
            b = b.baseline_mode(lem::BaselineMode::parse_for("baseline", mode).map_err(err)?);
        }
        Ok(Self {
            inner: build(py, b)?,
            sync,
            metrics: Mutex::new(None),
        })
    }

    /// A scope to use with `with`: the window opens on entry and closes on exit;
    /// `scope.report` then holds its report. `pids` (one pid or an iterable of pids): the
    /// processes the report's `attribution` gives the share of each shared GPU's active
    /// energy to, with their descendants; default the calling process.
    #[pyo3(signature = (name, pids=None))]
    fn scope(
        &self,
        py: Python<'_>,
        name: String,
        pids: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Scope> {
        let pids = match pids {
            Some(p) if !p.is_none() => Some(extract_pids(&p)?),
            _ => None,
        };
        Ok(Scope {
            meter: self.inner.clone(),
            sync: self.sync.as_ref().map(|s| s.clone_ref(py)),
            name,
            pids: Mutex::new(pids),
            window: Mutex::new(None),
            report: Mutex::new(None),
            started: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The group of shared windows named `name` (created on first use): its windows share
    /// the energy of the times they overlap; the result file lists it under `groups`.
    fn group(&self, py: Python<'_>, name: String) -> group::Group {
        group::Group {
            meter: self.inner.clone(),
            sync: self.sync.as_ref().map(|s| s.clone_ref(py)),
            name,
        }
    }

    /// Every group's summary so far, as a list of dicts.
    #[getter]
    fn groups<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text =
            serde_json::to_string(&self.inner.group_summaries()).map_err(|e| err(e.into()))?;
        json_to_py(py, &text)
    }

    /// Open a window now; close it with `finish()`. Windows may nest and overlap. `pids` as
    /// for `scope`.
    #[pyo3(signature = (name, pids=None))]
    fn start(
        &self,
        py: Python<'_>,
        name: String,
        pids: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Scope> {
        let s = self.scope(py, name, pids)?;
        s.open(py)?;
        Ok(s)
    }

    /// `measure(fn, *args, **kwargs)`: call `fn` inside a window; returns `(its result, report)`.
    /// If `fn` raises, the window is discarded and the exception propagates.
    #[pyo3(signature = (f, *args, **kwargs))]
    fn measure<'py>(
        &self,
        py: Python<'py>,
        f: Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<(Py<PyAny>, Report)> {
        let name: String = f
            .getattr("__name__")
            .and_then(|n| n.extract())
            .unwrap_or_else(|_| "measure".into());
        let s = self.start(py, name, None)?;
        match f.call(args, kwargs) {
            Ok(v) => {
                let r = s.finish(py)?;
                Ok((v.unbind(), r))
            }
            Err(e) => {
                s.discard();
                Err(e)
            }
        }
    }

    /// Write `report` as a result file at `path` (atomically), with its time series beside it
    /// when `timeseries` (needs `keep_timeseries=True`).
    #[pyo3(signature = (report, path, experiment_id, process_index=0, timeseries=false))]
    fn save(
        &self,
        py: Python<'_>,
        report: &Report,
        path: std::path::PathBuf,
        experiment_id: String,
        process_index: u32,
        timeseries: bool,
    ) -> PyResult<()> {
        let m = self.inner.clone();
        let r = report.inner.clone();
        py.detach(move || {
            let mut rf = m.result_file(r, experiment_id, process_index);
            m.save(&mut rf, &path, timeseries)
        })
        .map_err(err)
    }

    /// `serve_metrics(port, addr="127.0.0.1", processes=False, energy_buckets=None,
    /// duration_buckets=None)`: serve a Prometheus `/metrics` endpoint, as
    /// prometheus_client's `start_http_server` does, until `stop_metrics()` or the meter
    /// is gone: every device's energy since now (raw, above the idle baseline, with its
    /// bound), power, throttle time and readings, as `lem monitor` exports them, and
    /// histograms of the windows this meter closes, by name (`lem_window_energy_joules`,
    /// `lem_window_active_energy_joules`, `lem_window_duration_seconds`; a shared window
    /// counts its share). Loopback unless `addr` says otherwise; port 0 picks a free port.
    /// Returns the port.
    #[pyo3(signature = (port, addr="127.0.0.1", processes=false, energy_buckets=None, duration_buckets=None))]
    fn serve_metrics(
        &self,
        py: Python<'_>,
        port: u16,
        addr: &str,
        processes: bool,
        energy_buckets: Option<Vec<f64>>,
        duration_buckets: Option<Vec<f64>>,
    ) -> PyResult<u16> {
        let mut opts = lem::monitor::MetricsOptions {
            processes,
            ..Default::default()
        };
        let buckets = |name: &str, b: Vec<f64>| {
            lem::monitor::Buckets::new(&b)
                .map_err(|e| ConfigError::new_err(format!("invalid {name}: {e}")))
        };
        if let Some(b) = energy_buckets {
            opts.energy_buckets = buckets("energy_buckets", b)?;
        }
        if let Some(b) = duration_buckets {
            opts.duration_buckets = buckets("duration_buckets", b)?;
        }
        let listen = if addr.contains(':') {
            format!("[{addr}]:{port}")
        } else {
            format!("{addr}:{port}")
        };
        let m = self.inner.clone();
        let server = py
            .detach(move || m.serve_metrics_with(&listen, opts))
            .map_err(err)?;
        let port = server.addr().port();
        *lock(&self.metrics) = Some(server);
        Ok(port)
    }

    /// Stop serving `/metrics` (a no-op when not serving). The window histograms stay
    /// with the meter: it serves once.
    fn stop_metrics(&self, py: Python<'_>) {
        let server = lock(&self.metrics).take();
        py.detach(move || drop(server));
    }

    /// The measured devices, as dicts (index, kind, name, uuid, ...).
    #[getter]
    fn devices<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let infos: Vec<&lem::device::DeviceInfo> =
            self.inner.devices().iter().map(|d| d.info()).collect();
        let text = serde_json::to_string(&infos).map_err(|e| err(e.into()))?;
        json_to_py(py, &text)
    }

    /// The idle baseline of each device, as dicts.
    #[getter]
    fn baselines<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = serde_json::to_string(self.inner.baselines()).map_err(|e| err(e.into()))?;
        json_to_py(py, &text)
    }

    /// Notices from opening the devices and establishing the baseline.
    #[getter]
    fn notices(&self) -> Vec<String> {
        self.inner.notices().to_vec()
    }

    /// Whether any device is simulated.
    #[getter]
    fn simulated(&self) -> bool {
        self.inner.is_simulated()
    }

    /// The sampling interval, ms.
    #[getter]
    fn interval_ms(&self) -> f64 {
        self.inner.interval().as_secs_f64() * 1000.0
    }

    /// The environment around the meter's devices, as `lem env --json` prints it.
    fn environment<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = serde_json::to_string(&self.inner.environment()).map_err(|e| err(e.into()))?;
        json_to_py(py, &text)
    }

    fn __repr__(&self) -> String {
        format!(
            "<lem.Meter {} device(s), spec {}, interval {} ms{}>",
            self.inner.devices().len(),
            self.inner.spec(),
            self.inner.interval().as_millis(),
            if self.inner.is_simulated() {
                ", SIMULATED"
            } else {
                ""
            }
        )
    }
}

/// One measurement window. From `meter.scope(name)` (a context manager) or
/// `meter.start(name)` (already open; close it with `finish()`).
#[pyclass(module = "lem._lem", frozen)]
struct Scope {
    meter: Arc<lem::Meter>,
    sync: Option<Py<PyAny>>,
    name: String,
    /// The processes it is attributed to; `None`: the calling process.
    pids: Mutex<Option<Vec<u32>>>,
    window: Mutex<Option<lem::OpenWindow>>,
    report: Mutex<Option<Report>>,
    /// Set by the first start, atomically: a second start (another thread's included) is
    /// refused before it opens a window.
    started: std::sync::atomic::AtomicBool,
}

impl Scope {
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
            let name = self.name.clone();
            py.detach(move || m.open_window(name)).map_err(err)
        });
        match opened {
            Ok(w) => {
                if let Some(p) = lock(&self.pids).clone() {
                    self.meter.attribute_window(&w, p);
                }
                *lock(&self.window) = Some(w);
                Ok(())
            }
            Err(e) => {
                // nothing was opened: it may be started again
                self.started.store(false, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    fn discard(&self) {
        if let Some(w) = lock(&self.window).take() {
            self.meter.discard_window(w);
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        // a scope dropped while open: stop keeping samples for a window nobody will read
        self.discard();
    }
}

#[pymethods]
impl Scope {
    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().open(slf.py())?;
        Ok(slf)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        // the window is measured whether or not the body raised
        self.finish(py)?;
        Ok(false)
    }

    /// Close the window and return its report.
    fn finish(&self, py: Python<'_>) -> PyResult<Report> {
        let Some(w) = lock(&self.window).take() else {
            return Err(LemError::new_err(match lock(&self.report).is_some() {
                true => format!("scope `{}` was already finished", self.name),
                false => format!("scope `{}` was never started", self.name),
            }));
        };
        if let Err(e) = call_sync(py, &self.sync) {
            self.meter.discard_window(w);
            return Err(e);
        }
        let m = self.meter.clone();
        let r = py.detach(move || m.close_window(w)).map_err(err)?;
        let report = Report::new(r);
        *lock(&self.report) = Some(report.clone());
        Ok(report)
    }

    /// Attribute the scope to `pids` (one pid or an iterable of pids, with their
    /// descendants) instead: before it opens, or while it is open.
    fn attribute_to(&self, pids: Bound<'_, PyAny>) -> PyResult<()> {
        let pids = extract_pids(&pids)?;
        let window = lock(&self.window);
        match window.as_ref() {
            Some(w) => self.meter.attribute_window(w, pids.clone()),
            None if lock(&self.report).is_some() => {
                return Err(LemError::new_err(format!(
                    "scope `{}` was already finished: attribute it before it closes",
                    self.name
                )));
            }
            None => {}
        }
        *lock(&self.pids) = Some(pids);
        Ok(())
    }

    /// The pids the scope is attributed to; `None`: the calling process.
    #[getter]
    fn pids(&self) -> Option<Vec<u32>> {
        lock(&self.pids).clone()
    }

    /// The report, once the scope is finished.
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
        let state = if lock(&self.window).is_some() {
            "open"
        } else if lock(&self.report).is_some() {
            "finished"
        } else {
            "not started"
        };
        format!("<lem.Scope `{}` {state}>", self.name)
    }
}

/// The environment (host, OS, CPU, GPUs, driver, CUDA) for the devices `device` (default:
/// `LEM_DEVICE` or auto), as `lem env --json` prints it.
#[pyfunction]
#[pyo3(signature = (device=None))]
fn environment<'py>(py: Python<'py>, device: Option<&str>) -> PyResult<Bound<'py, PyAny>> {
    let spec = match device {
        Some(d) => lem::DeviceSpec::parse_for("device", d),
        None => lem::DeviceSpec::from_env(),
    }
    .map_err(err)?;
    let text = py
        .detach(move || {
            let clock: Arc<dyn lem::Clock> = Arc::new(lem::MonotonicClock::new());
            let opened = lem::device::open_devices(&spec, clock)?;
            serde_json::to_string(&lem::collect_environment(&opened.devices, None))
                .map_err(lem::Error::from)
        })
        .map_err(err)?;
    json_to_py(py, &text)
}

/// Probe each device of `device` (default: `LEM_DEVICE` or auto): the energy counter's and
/// the power reading's update periods and each sampler call's latency, `duration_s` per
/// phase. Results are cached in `cache_dir` (default: `LEM_CACHE_DIR` or the user's cache,
/// as `lem probe` does; give a meter's own `cache_dir` for that meter to use them) and
/// returned as dicts. Releases the GIL.
#[pyfunction]
#[pyo3(signature = (device=None, duration_s=5.0, cache_dir=None))]
fn probe<'py>(
    py: Python<'py>,
    device: Option<&str>,
    duration_s: f64,
    cache_dir: Option<std::path::PathBuf>,
) -> PyResult<Bound<'py, PyAny>> {
    let spec = match device {
        Some(d) => lem::DeviceSpec::parse_for("device", d),
        None => lem::DeviceSpec::from_env(),
    }
    .map_err(err)?;
    let duration = lem::parse_seconds("duration_s", &duration_s.to_string())
        .and_then(|d| lem::probe::validate_duration("duration_s", d))
        .map_err(err)?;
    let text = py
        .detach(move || {
            let clock: Arc<dyn lem::Clock> = Arc::new(lem::MonotonicClock::new());
            let opened = lem::device::open_devices(&spec, clock.clone())?;
            if opened.devices.is_empty() {
                return Err(lem::Error::NoDevice(format!("{spec}: nothing to probe")));
            }
            let results = lem::probe::probe_all(&opened.devices, &clock, duration);
            // where the meters that should use it look (`Meter(cache_dir=...)`)
            let dir = cache_dir.unwrap_or_else(lem::baseline::default_cache_dir);
            for r in &results {
                lem::probe::save(&dir, r)?;
            }
            serde_json::to_string(&results).map_err(lem::Error::from)
        })
        .map_err(err)?;
    json_to_py(py, &text)
}

#[pymodule]
fn _lem(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Meter>()?;
    m.add_class::<Scope>()?;
    m.add_class::<Report>()?;
    m.add_class::<group::Group>()?;
    m.add_class::<group::SharedScope>()?;
    m.add_function(wrap_pyfunction!(environment, m)?)?;
    m.add_function(wrap_pyfunction!(probe, m)?)?;
    m.add("LemError", py.get_type::<LemError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("DeviceError", py.get_type::<DeviceError>())?;
    m.add("BaselineError", py.get_type::<BaselineError>())?;
    m.add("FileError", py.get_type::<FileError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
