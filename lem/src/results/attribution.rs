//! The results schema of per-process attribution: whose share of a shared GPU's active
//! energy a window's measured processes used (an estimate from SM utilisation, README "Whose
//! joules").

use serde::{Deserialize, Serialize};

/// How the active energy was shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributionMethod {
    /// In proportion to each process's SM utilisation integrated over the window.
    SmUtilizationShare,
    /// One process alone on each active device: it gets all of that device's active energy.
    Exclusive,
    /// Not attributed; `reason` says why.
    Unavailable,
}

impl std::fmt::Display for AttributionMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::SmUtilizationShare => "sm_utilization_share",
            Self::Exclusive => "exclusive",
            Self::Unavailable => "unavailable",
        })
    }
}

/// One process on one device over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessShare {
    /// Its pid (the driver's, i.e. the host's PID namespace).
    pub pid: u32,
    /// Its command name (`/proc/<pid>/comm`), where it could be read.
    pub command: Option<String>,
    /// The device (index in the report's `devices`).
    pub device: u32,
    /// One of the measured processes (the scope's, or a descendant of one).
    pub measured: bool,
    /// Its share of the device's integrated SM utilisation, 0..=1 (null when unavailable).
    pub sm_share: Option<f64>,
    /// Its share of the device's active energy, J (null when unavailable).
    pub active_j: Option<f64>,
    /// The bound on `active_j` from the utilisation sampling period and the energy bound, J.
    pub uncertainty_j: Option<f64>,
    /// SM utilisation integrated over the window, percent × s.
    pub sm_pct_s: f64,
    /// Peak device memory it used, MiB, where known.
    pub peak_memory_mb: Option<f64>,
}

/// Whose share of the window's active energy it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    /// How it was shared.
    pub method: AttributionMethod,
    /// Why it is unavailable (only with `method: unavailable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The pids the scope is attributed to (their descendants count too).
    pub measured_pids: Vec<u32>,
    /// One entry per process and device that ran during the window.
    pub processes: Vec<ProcessShare>,
    /// Raw minus the idle baseline over the window, summed over the attributed devices, J.
    pub active_j: Option<f64>,
    /// The idle part (baseline × duration), reported on its own and never split, J.
    pub idle_j: Option<f64>,
    /// The measured processes' share of the active energy, J.
    pub self_active_j: Option<f64>,
    /// Its bound (the utilisation sampling period and the energy bound), J.
    pub self_uncertainty_j: Option<f64>,
    /// The other processes' share, J.
    pub others_active_j: Option<f64>,
    /// Active energy with no process sample behind it, J.
    pub unattributed_active_j: Option<f64>,
    /// Time the window had no process sample behind it, summed over devices, s.
    pub unattributed_s: f64,
}

impl Attribution {
    /// The measured processes' fraction of the active energy, where known.
    pub fn self_share(&self) -> Option<f64> {
        match (self.self_active_j, self.active_j) {
            (Some(s), Some(a)) if a > 0.0 => Some(s / a),
            (Some(_), Some(_)) => Some(0.0),
            _ => None,
        }
    }
}
