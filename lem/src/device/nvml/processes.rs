//! Who is using an NVIDIA GPU: its running compute and graphics processes
//! (`nvmlDeviceGetComputeRunningProcesses_v3`, `…GraphicsRunningProcesses_v3`) and their
//! SM-utilisation samples (`nvmlDeviceGetProcessUtilization`, with the last-seen timestamp).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;

use super::NvmlDevice;
use crate::device::process::{
    GpuProcess, ProcessResult, ProcessSamples, ProcessUnavailable, ProcessUnavailableKind,
    ProcessUtilSample,
};

/// An NVML failure of a process call as the reason attribution is unavailable.
fn unavailable(call: &str, e: &NvmlError) -> ProcessUnavailable {
    let (kind, why) = match e {
        NvmlError::NotSupported => (ProcessUnavailableKind::NotSupported, "NOT_SUPPORTED"),
        NvmlError::NoPermission => (ProcessUnavailableKind::NoPermission, "NO_PERMISSION"),
        NvmlError::FailedToLoadSymbol(_) => (
            ProcessUnavailableKind::NotSupported,
            "the driver lacks the call",
        ),
        _ => (ProcessUnavailableKind::Failed, "failed"),
    };
    ProcessUnavailable::new(kind, format!("{call}: {why} ({e})"))
}

impl NvmlDevice {
    /// Compute and graphics processes, one entry per pid (the larger memory of the two).
    pub(super) fn running_processes(&self) -> ProcessResult<Vec<GpuProcess>> {
        let compute = self
            .dev
            .running_compute_processes()
            .map_err(|e| unavailable("nvmlDeviceGetComputeRunningProcesses_v3", &e))?;
        // a GPU without graphics contexts may answer NOT_SUPPORTED here: compute is enough
        let graphics = self.dev.running_graphics_processes().unwrap_or_default();
        let mut by_pid: BTreeMap<u32, Option<f64>> = BTreeMap::new();
        for p in compute.into_iter().chain(graphics) {
            let mb = match p.used_gpu_memory {
                UsedGpuMemory::Used(b) => Some(b as f64 / super::MIB),
                UsedGpuMemory::Unavailable => None,
            };
            let e = by_pid.entry(p.pid).or_insert(None);
            *e = match (*e, mb) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(by_pid
            .into_iter()
            .map(|(pid, memory_mb)| GpuProcess {
                pid,
                memory_mb,
                command: None,
            })
            .collect())
    }

    /// The SM-utilisation samples newer than `since_us` (Unix µs, NVML's CPU timestamps).
    pub(super) fn utilisation_samples(&self, since_us: u64) -> ProcessResult<ProcessSamples> {
        if self.info.mig {
            return Err(ProcessUnavailable::mig());
        }
        let samples = match self.dev.process_utilization_stats(since_us) {
            Ok(s) => s,
            // no sample newer than the timestamp
            Err(NvmlError::NotFound) => Vec::new(),
            Err(e) => return Err(unavailable("nvmlDeviceGetProcessUtilization", &e)),
        };
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Ok(ProcessSamples {
            now_us,
            samples: samples
                .into_iter()
                .map(|s| ProcessUtilSample {
                    pid: s.pid,
                    sm_pct: f64::from(s.sm_util),
                    t_us: s.timestamp,
                })
                .collect(),
        })
    }
}
