//! Who is using a GPU: the processes a device lists and their SM-utilisation samples, as
//! NVML gives them (`nvmlDeviceGetComputeRunningProcesses_v3`, `…GraphicsRunningProcesses_v3`,
//! `nvmlDeviceGetProcessUtilization`), and why a device cannot say.

use std::fmt;

/// A process with a context on a device.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuProcess {
    /// Its pid as the driver sees it (the host's PID namespace).
    pub pid: u32,
    /// Device memory it uses, MiB, where the driver says.
    pub memory_mb: Option<f64>,
    /// Its command name where the device knows it (a simulated trace names it; NVML does not,
    /// lem reads `/proc/<pid>/comm`).
    pub command: Option<String>,
}

/// One per-process utilisation sample: the SM utilisation of `pid` over the driver's sampling
/// period that ended at `t_us`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessUtilSample {
    /// The process.
    pub pid: u32,
    /// SM (compute/3D) utilisation, percent of the device over the period.
    pub sm_pct: f64,
    /// When the period ended, µs in the device's time base (NVML: CPU time, Unix µs).
    pub t_us: u64,
}

/// The per-process samples newer than a timestamp, and the device's time at the read (in the
/// same time base), so that each sample can be placed on the meter's clock.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProcessSamples {
    /// The device's time at the read, µs.
    pub now_us: u64,
    /// The samples, in no particular order.
    pub samples: Vec<ProcessUtilSample>,
}

/// Why a device cannot say who used it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessUnavailableKind {
    /// This kind of device has no processes (a CPU package, a simulated GPU without process
    /// traces): attribution does not apply to it.
    NotApplicable,
    /// The driver answers NOT_SUPPORTED.
    NotSupported,
    /// The driver answers NO_PERMISSION.
    NoPermission,
    /// MIG is enabled: per-process utilisation is not available per MIG instance.
    Mig,
    /// Any other failure.
    Failed,
}

/// A device cannot list its processes or their utilisation, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessUnavailable {
    /// What kind of failure.
    pub kind: ProcessUnavailableKind,
    /// The reason, for a reader.
    pub reason: String,
}

impl ProcessUnavailable {
    /// A failure of `kind` with `reason`.
    pub fn new(kind: ProcessUnavailableKind, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }

    /// This kind of device has no processes.
    pub fn not_applicable() -> Self {
        Self::new(
            ProcessUnavailableKind::NotApplicable,
            "this device does not list GPU processes",
        )
    }

    /// The reason per-process utilisation is missing under MIG.
    pub fn mig() -> Self {
        Self::new(
            ProcessUnavailableKind::Mig,
            "MIG is enabled: per-process utilisation is not available per MIG instance",
        )
    }
}

impl fmt::Display for ProcessUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// What a process read answers.
pub type ProcessResult<T> = std::result::Result<T, ProcessUnavailable>;

/// The parent pid of `pid`, from `/proc/<pid>/stat`, where readable.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) may hold spaces and parentheses: fields follow the last ')'
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.next()?.parse().ok()
}
