//! What a device is and what it answers: the [`EnergySource`] trait every source implements,
//! its static facts and its readings.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

use super::process::{GpuProcess, ProcessResult, ProcessSamples, ProcessUnavailable};
use super::sensor::SensorProfile;
use super::throttle_reasons::ThrottleReasons;
use crate::error::Result;

/// What kind of source a device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// An NVIDIA GPU read through NVML.
    NvmlGpu,
    /// A simulated GPU driven by a scenario file.
    SimulatedGpu,
    /// A CPU package read through RAPL (powercap sysfs).
    RaplCpu,
}

/// Which power reading a device's `power_w` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerSource {
    /// NVML's instantaneous power field (`NVML_FI_DEV_POWER_INSTANT`).
    Instant,
    /// `nvmlDeviceGetPowerUsage` where it is a 1-second average (Ampere and newer, GA100
    /// excepted).
    Averaged,
    /// `nvmlDeviceGetPowerUsage` where it is instantaneous (before Ampere, and GA100).
    Usage,
    /// Derived from energy-counter deltas between consecutive reads (RAPL).
    CounterDelta,
    /// The exact power of a simulated trace.
    Simulated,
}

/// Static facts about a device, read once when it is opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Position of this device in the meter's device list.
    pub index: u32,
    /// The kind of source.
    pub kind: DeviceKind,
    /// Product name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// A stable identifier (NVML UUID, `sim-...`, `rapl-...`): the baseline cache key and the
    /// key that stops aggregation counting one device twice.
    pub uuid: String,
    /// Index in NVML's own enumeration, for NVML devices.
    pub nvml_index: Option<u32>,
    /// PCI bus id, where known.
    pub pci_bus_id: Option<String>,
    /// CUDA compute capability ("9.0"), where known.
    pub compute_capability: Option<String>,
    /// Total memory in MiB, where known.
    pub memory_total_mb: Option<f64>,
    /// Enforced power limit in W, where known.
    pub power_limit_w: Option<f64>,
    /// MIG mode is enabled: NVML reports the whole GPU's energy, not a slice's.
    pub mig: bool,
    /// This device is simulated: its numbers come from a scenario file, not hardware.
    pub simulated: bool,
    /// The device has a cumulative energy counter.
    pub energy_counter: bool,
    /// How often the energy counter updates, in seconds (0 = continuously): the
    /// architecture's documented default, or what the device says.
    pub counter_update_s: f64,
    /// The energy counter's resolution, J (NVML counts mJ, RAPL µJ).
    #[serde(default)]
    pub counter_step_j: f64,
    /// Which power reading `power_w` is when nothing falls back.
    pub power_source: PowerSource,
    /// GPU architecture ("hopper"), where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// What the power sensor observes (period, fraction sensed, calibration).
    #[serde(default)]
    pub sensor: SensorProfile,
}

/// One reading of a device's instantaneous state; `None` where the device cannot say.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reading {
    /// Power in W.
    pub power_w: Option<f64>,
    /// Which reading `power_w` is (a device may fall back from one source to another).
    pub power_source: Option<PowerSource>,
    /// Memory in use in MiB (as nvidia-smi prints it).
    pub memory_used_mb: Option<f64>,
    /// GPU utilisation in percent.
    pub utilisation_pct: Option<f64>,
    /// Temperature in °C.
    pub temperature_c: Option<f64>,
    /// Clocks-event (throttle) reasons.
    pub throttle: Option<ThrottleReasons>,
    /// Fields the device supports that failed in this read (each counts in `failed_reads`).
    pub failed_fields: u32,
}

/// One reading of one device, timestamped on the meter's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Clock time in seconds.
    pub t_s: f64,
    /// Device index.
    pub device: u32,
    /// What was read.
    pub reading: Reading,
}

/// Cumulative throttle time from the device's own violation counters, per policy; `None`
/// where the device does not keep (or failed to read) that policy's counter.
///
/// The power policy counts the SW power cap only (NVML/DCGM alias it to that reason; the HW
/// power brake is not in it); the thermal policy counts SW and HW thermal slowdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Violations {
    /// Time throttled by the power policy (SW power cap), in ns.
    pub power_ns: Option<u64>,
    /// Time throttled by the thermal policy, in ns.
    pub thermal_ns: Option<u64>,
}

/// An energy and power source: a GPU, a simulated GPU or a CPU package.
///
/// Implementations are cheap to call from any thread; the sampler calls [`read`](Self::read)
/// every interval and a scope calls [`energy_j`](Self::energy_j) at its two ends.
pub trait EnergySource: Send + Sync + fmt::Debug {
    /// Static facts about the device.
    fn info(&self) -> &DeviceInfo;

    /// The cumulative energy counter, in joules since an arbitrary origin.
    ///
    /// # Errors
    /// [`Error::NotSupported`](crate::error::Error::NotSupported) when the device has no counter,
    /// a device error when the read fails.
    fn energy_j(&self) -> Result<f64>;

    /// The device's current power, memory, utilisation, temperature and throttle reasons.
    ///
    /// # Errors
    /// A device error when nothing could be read.
    fn read(&self) -> Result<Reading>;

    /// The power alone (cheaper than [`read`](Self::read) where the device can): read at
    /// both ends of every window.
    ///
    /// # Errors
    /// A device error when the power could not be read.
    fn power_reading(&self) -> Result<Reading> {
        self.read()
    }

    /// The temperature alone (cheaper than [`read`](Self::read)); `None` where unknown.
    fn temperature_c(&self) -> Option<f64> {
        self.read().ok().and_then(|r| r.temperature_c)
    }

    /// Cumulative throttle time from violation counters, where the device keeps them.
    fn violations(&self) -> Option<Violations> {
        None
    }

    /// The processes running on the device now (compute and graphics), with their memory.
    ///
    /// # Errors
    /// Why the device cannot list them; by default, that it has no processes.
    fn processes(&self) -> ProcessResult<Vec<GpuProcess>> {
        Err(ProcessUnavailable::not_applicable())
    }

    /// The per-process SM-utilisation samples newer than `since_us` (the device's time base,
    /// as in [`ProcessSamples`]; 0: every sample the driver still holds).
    ///
    /// # Errors
    /// Why the device cannot give them; by default, that it has no processes.
    fn process_utilisation(&self, since_us: u64) -> ProcessResult<ProcessSamples> {
        let _ = since_us;
        Err(ProcessUnavailable::not_applicable())
    }

    /// Driver version, where the device has a driver.
    fn driver_version(&self) -> Option<String> {
        None
    }

    /// CUDA driver version ("13.0"), where known.
    fn cuda_version(&self) -> Option<String> {
        None
    }

    /// The calls one sampler round makes on this device, by name (timed by `lem probe`).
    fn round_calls(&self) -> Vec<&'static str> {
        vec!["read", "energy_counter"]
    }

    /// Make one of [`round_calls`](Self::round_calls) once.
    ///
    /// # Errors
    /// The call's own error; [`Error::NotSupported`](crate::error::Error::NotSupported) for an
    /// unknown name.
    fn call(&self, name: &str) -> Result<()> {
        match name {
            "read" => self.read().map(|_| ()),
            "energy_counter" => self.energy_j().map(|_| ()),
            other => Err(crate::error::Error::NotSupported {
                device: self.info().name.clone(),
                what: format!("call `{other}`"),
            }),
        }
    }
}

/// A shared handle to a device.
pub type SharedDevice = Arc<dyn EnergySource>;
