//! NVIDIA GPUs through NVML. `libnvidia-ml.so.1` is loaded at run time, so this builds on
//! any machine; on a machine without the driver, opening fails with a clear error.
//!
//! What a GPU supports (energy counter, instant power field, temperature and clocks-event
//! calls, each violation policy) is decided when it is opened, from several reads; a call
//! that is supported and then fails counts as a failed read, and a GPU that answers
//! `GPU_IS_LOST` is reported lost, never extrapolated.

use std::sync::OnceLock;

mod processes;
mod support;

use support::*;

use nvml_wrapper::enum_wrappers::device::{PerformancePolicy, TemperatureSensor};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};

use super::sensor::SensorProfile;
use super::source::{DeviceInfo, DeviceKind, EnergySource, PowerSource, Reading, Violations};
use super::throttle_reasons::ThrottleReasons;
use super::visible::VisibleEntry;
use crate::error::{Error, Result};

const MIB: f64 = 1024.0 * 1024.0;

/// NVML is initialised once per process and kept for its lifetime: devices borrow it, and
/// shutting NVML down while a sampler thread might still read would be unsound.
static NVML: OnceLock<std::result::Result<Nvml, String>> = OnceLock::new();

/// The process-wide NVML handle.
///
/// # Errors
/// [`Error::NoDevice`] when the NVML library cannot be loaded or initialised; the message
/// carries the loader's or the driver's reason.
pub(crate) fn nvml() -> Result<&'static Nvml> {
    NVML.get_or_init(|| Nvml::init().map_err(|e| describe_init_error(&e)))
        .as_ref()
        .map_err(|reason| Error::NoDevice(format!("nvml: {reason}")))
}

fn describe_init_error(e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(inner) => format!(
            "NVML (libnvidia-ml.so.1, part of the NVIDIA driver) could not be loaded: {inner}"
        ),
        NvmlError::FailedToLoadSymbol(s) => {
            format!("the NVML library lacks {s}: is libnvidia-ml.so.1 an NVIDIA driver's?")
        }
        NvmlError::DriverNotLoaded => "the NVIDIA driver is not loaded".into(),
        NvmlError::NoPermission => "no permission to use NVML".into(),
        NvmlError::LibRmVersionMismatch => {
            "the NVML library and the loaded kernel driver differ in version (reboot or reload the driver after an upgrade)".into()
        }
        other => format!("NVML initialisation failed ({other})"),
    }
}

/// Every GPU NVML enumerates, with the reason a GPU cannot be used where one fails (the
/// count can include GPUs this process may not open).
///
/// # Errors
/// When NVML cannot be loaded or the GPUs cannot be counted.
pub(crate) fn enumerate() -> Result<Vec<VisibleEntry>> {
    let nvml = nvml()?;
    let n = nvml
        .device_count()
        .map_err(|e| Error::nvml("device count", e))?;
    let mut out = Vec::new();
    for i in 0..n {
        let mut entry = VisibleEntry {
            nvml_index: i,
            uuid: None,
            name: None,
            problem: None,
        };
        match nvml.device_by_index(i) {
            Ok(d) => {
                entry.name = d.name().ok();
                match d.uuid() {
                    Ok(u) => entry.uuid = Some(u),
                    Err(e) => {
                        entry.problem = Some(format!("its UUID read failed: {}", describe(&e)))
                    }
                }
            }
            Err(e) => entry.problem = Some(describe(&e)),
        }
        out.push(entry);
    }
    Ok(out)
}

/// The UUID of the GPU that owns MIG device `mig_uuid`, if NVML knows it.
pub(crate) fn mig_parent_uuid(mig_uuid: &str) -> Option<String> {
    let nvml = nvml().ok()?;
    let mig = nvml.device_by_uuid(mig_uuid).ok()?;
    mig.mig_parent_device().ok()?.uuid().ok()
}

/// One NVIDIA GPU read through NVML.
#[derive(Debug)]
pub struct NvmlDevice {
    info: DeviceInfo,
    /// What went wrong while opening it that the user should hear about.
    notices: Vec<String>,
    dev: Device<'static>,
    nvml: &'static Nvml,
    support: Support,
    driver: Option<String>,
    cuda: Option<String>,
}

impl NvmlDevice {
    /// Open the GPU with NVML index `nvml_index` as lem device number `index`.
    ///
    /// # Errors
    /// When NVML cannot be loaded, or the GPU's handle or UUID cannot be read.
    pub fn open(nvml_index: u32, index: u32) -> Result<Self> {
        let nvml = nvml()?;
        let gpu = format!("GPU {nvml_index}");
        let dev = nvml
            .device_by_index(nvml_index)
            .map_err(|e| Error::nvml(gpu.clone(), e))?;
        let uuid = dev
            .uuid()
            .map_err(|e| Error::nvml(format!("{gpu} uuid"), e))?;
        let name = dev.name().unwrap_or_else(|_| format!("NVIDIA {gpu}"));
        let cc = decide(|| dev.cuda_compute_capability());
        let arch = decide(|| dev.architecture());
        let mut notices = Vec::new();
        // A counter that only failed transiently at open is kept: each window tries it again
        // (and integrates, saying so, while it keeps failing).
        let energy_counter = match decide_or_why(|| dev.total_energy_consumption()) {
            Ok(found) => found.is_some(),
            Err(why) => {
                notices.push(format!(
                    "{gpu}: the energy counter failed {OPEN_TRIES} times at open ({why}); lem keeps trying it at every window and integrates power while it fails"
                ));
                true
            }
        };
        let instant = decide(|| instant_power(&dev)).is_some();
        let usage_averaged = usage_is_averaged(arch.as_ref(), cc.as_ref());
        let support = Support::of(nvml, &dev, instant, usage_averaged);
        let mig = match dev.mig_mode() {
            Ok(m) => m.current == 1,
            Err(e) if definitive(&e) => false,
            Err(e) => {
                notices.push(format!(
                    "{gpu}: its MIG mode could not be read ({}); if MIG is on, NVML reports the whole GPU's energy, not a slice's",
                    describe(&e)
                ));
                false
            }
        };
        let info = DeviceInfo {
            index,
            kind: DeviceKind::NvmlGpu,
            name,
            uuid,
            nvml_index: Some(nvml_index),
            pci_bus_id: dev.pci_info().ok().map(|p| p.bus_id),
            compute_capability: cc.map(|c| format!("{}.{}", c.major, c.minor)),
            memory_total_mb: dev.memory_info().ok().map(|m| m.total as f64 / MIB),
            power_limit_w: dev
                .enforced_power_limit()
                .ok()
                .map(|mw| f64::from(mw) / 1000.0),
            mig,
            simulated: false,
            energy_counter,
            // About 100 ms on A100/H100 (MEASUREMENT.md); lem flags windows shorter than a few.
            counter_update_s: 0.1,
            counter_step_j: 0.001,
            power_source: if instant {
                PowerSource::Instant
            } else if usage_averaged {
                PowerSource::Averaged
            } else {
                PowerSource::Usage
            },
            architecture: arch.as_ref().and_then(arch_name).map(str::to_string),
            sensor: SensorProfile::nvidia(arch.as_ref().and_then(arch_name)),
        };
        let driver = nvml.sys_driver_version().ok();
        let cuda = nvml.sys_cuda_driver_version().ok().map(|v| {
            format!(
                "{}.{}",
                nvml_wrapper::cuda_driver_version_major(v),
                nvml_wrapper::cuda_driver_version_minor(v)
            )
        });
        Ok(Self {
            info,
            notices,
            dev,
            nvml,
            support,
            driver,
            cuda,
        })
    }

    /// What went wrong while opening it that the user should hear about.
    pub fn open_notices(&self) -> &[String] {
        &self.notices
    }

    fn lost(&self, what: &str) -> Error {
        Error::DeviceLost {
            device: format!("device {} ({})", self.info.index, self.info.name),
            reason: format!("{what}: GPU_IS_LOST"),
        }
    }

    fn usage_source(&self) -> PowerSource {
        if self.support.usage_averaged {
            PowerSource::Averaged
        } else {
            PowerSource::Usage
        }
    }
}

impl EnergySource for NvmlDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn energy_j(&self) -> Result<f64> {
        if !self.info.energy_counter {
            return Err(Error::NotSupported {
                device: self.info.name.clone(),
                what: "energy counter (needs Volta or newer)".into(),
            });
        }
        match self.dev.total_energy_consumption() {
            Ok(mj) => Ok(mj as f64 / 1000.0),
            Err(NvmlError::GpuLost) => Err(self.lost("energy counter")),
            Err(e) => Err(Error::nvml(format!("{} energy counter", self.info.name), e)),
        }
    }

    fn read(&self) -> Result<Reading> {
        let s = &self.support;
        let mut r = Reading::default();
        let mut lost = false;
        let mut fail = |e: &NvmlError, r: &mut Reading| {
            lost |= matches!(e, NvmlError::GpuLost);
            r.failed_fields += 1;
        };
        if s.instant {
            match instant_power(&self.dev) {
                Ok(w) => {
                    r.power_w = Some(w);
                    r.power_source = Some(PowerSource::Instant);
                }
                Err(e) => fail(&e, &mut r),
            }
        }
        if r.power_w.is_none() && s.usage {
            match self.dev.power_usage() {
                Ok(mw) => {
                    r.power_w = Some(f64::from(mw) / 1000.0);
                    r.power_source = Some(self.usage_source());
                }
                Err(e) => fail(&e, &mut r),
            }
        }
        if s.memory {
            match self.dev.memory_info() {
                Ok(m) => r.memory_used_mb = Some(m.used as f64 / MIB),
                Err(e) => fail(&e, &mut r),
            }
        }
        if s.utilisation {
            match self.dev.utilization_rates() {
                Ok(u) => r.utilisation_pct = Some(f64::from(u.gpu)),
                Err(e) => fail(&e, &mut r),
            }
        }
        match self.read_temperature() {
            Ok(t) => r.temperature_c = t,
            Err(e) => fail(&e, &mut r),
        }
        match self.read_clocks() {
            Ok(c) => r.throttle = c,
            Err(e) => fail(&e, &mut r),
        }
        if lost {
            return Err(self.lost("read"));
        }
        Ok(r)
    }

    fn temperature_c(&self) -> Option<f64> {
        self.read_temperature().ok().flatten()
    }

    fn power_reading(&self) -> Result<Reading> {
        let mut r = Reading::default();
        if self.support.instant {
            match instant_power(&self.dev) {
                Ok(w) => {
                    r.power_w = Some(w);
                    r.power_source = Some(PowerSource::Instant);
                    return Ok(r);
                }
                Err(NvmlError::GpuLost) => return Err(self.lost("power")),
                Err(_) => r.failed_fields += 1,
            }
        }
        if self.support.usage {
            match self.dev.power_usage() {
                Ok(mw) => {
                    r.power_w = Some(f64::from(mw) / 1000.0);
                    r.power_source = Some(self.usage_source());
                }
                Err(NvmlError::GpuLost) => return Err(self.lost("power")),
                Err(_) => r.failed_fields += 1,
            }
        }
        if r.power_w.is_none() {
            return Err(Error::Device {
                device: format!("device {} ({})", self.info.index, self.info.name),
                reason: "power read failed".into(),
            });
        }
        Ok(r)
    }

    fn violations(&self) -> Option<Violations> {
        let s = &self.support;
        if !s.violations_power && !s.violations_thermal {
            return None;
        }
        let read = |on: bool, p| {
            on.then(|| self.dev.violation_status(p).ok().map(|v| v.violation_time))
                .flatten()
        };
        Some(Violations {
            power_ns: read(s.violations_power, PerformancePolicy::Power),
            thermal_ns: read(s.violations_thermal, PerformancePolicy::Thermal),
        })
    }

    fn processes(
        &self,
    ) -> crate::device::process::ProcessResult<Vec<crate::device::process::GpuProcess>> {
        self.running_processes()
    }

    fn process_utilisation(
        &self,
        since_us: u64,
    ) -> crate::device::process::ProcessResult<crate::device::process::ProcessSamples> {
        self.utilisation_samples(since_us)
    }

    fn driver_version(&self) -> Option<String> {
        self.driver.clone()
    }

    fn round_calls(&self) -> Vec<&'static str> {
        let s = &self.support;
        let mut v = Vec::new();
        if self.info.energy_counter {
            v.push("nvmlDeviceGetTotalEnergyConsumption");
        }
        if s.instant {
            v.push("nvmlDeviceGetFieldValues(POWER_INSTANT)");
        }
        if s.usage {
            v.push("nvmlDeviceGetPowerUsage");
        }
        if s.memory {
            v.push("nvmlDeviceGetMemoryInfo_v2");
        }
        if s.utilisation {
            v.push("nvmlDeviceGetUtilizationRates");
        }
        match s.temperature {
            TempCall::Legacy => v.push("nvmlDeviceGetTemperature"),
            TempCall::Versioned => v.push("nvmlDeviceGetTemperatureV"),
            TempCall::None => {}
        }
        match s.clocks {
            ClocksCall::EventReasons => v.push("nvmlDeviceGetCurrentClocksEventReasons"),
            ClocksCall::ThrottleReasons => v.push("nvmlDeviceGetCurrentClocksThrottleReasons"),
            ClocksCall::None => {}
        }
        if s.violations_power || s.violations_thermal {
            v.push("nvmlDeviceGetViolationStatus");
        }
        v
    }

    fn call(&self, name: &str) -> Result<()> {
        let ctx = |e: NvmlError| Error::nvml(format!("{} {name}", self.info.name), e);
        match name {
            "nvmlDeviceGetTotalEnergyConsumption" => {
                self.dev.total_energy_consumption().map(drop).map_err(ctx)
            }
            "nvmlDeviceGetFieldValues(POWER_INSTANT)" => {
                instant_power(&self.dev).map(drop).map_err(ctx)
            }
            "nvmlDeviceGetPowerUsage" => self.dev.power_usage().map(drop).map_err(ctx),
            "nvmlDeviceGetMemoryInfo_v2" => self.dev.memory_info().map(drop).map_err(ctx),
            "nvmlDeviceGetUtilizationRates" => self.dev.utilization_rates().map(drop).map_err(ctx),
            "nvmlDeviceGetTemperature" | "nvmlDeviceGetTemperatureV" => {
                self.read_temperature().map(drop).map_err(ctx)
            }
            "nvmlDeviceGetCurrentClocksEventReasons"
            | "nvmlDeviceGetCurrentClocksThrottleReasons" => {
                self.read_clocks().map(drop).map_err(ctx)
            }
            "nvmlDeviceGetViolationStatus" => self
                .dev
                .violation_status(if self.support.violations_power {
                    PerformancePolicy::Power
                } else {
                    PerformancePolicy::Thermal
                })
                .map(drop)
                .map_err(ctx),
            other => Err(Error::NotSupported {
                device: self.info.name.clone(),
                what: format!("call `{other}`"),
            }),
        }
    }

    fn cuda_version(&self) -> Option<String> {
        self.cuda.clone()
    }
}

impl NvmlDevice {
    fn read_temperature(&self) -> std::result::Result<Option<f64>, NvmlError> {
        match self.support.temperature {
            TempCall::Legacy => self
                .dev
                .temperature(TemperatureSensor::Gpu)
                .map(|t| Some(f64::from(t))),
            TempCall::Versioned => temperature_v(self.nvml, &self.dev).map(Some),
            TempCall::None => Ok(None),
        }
    }

    fn read_clocks(&self) -> std::result::Result<Option<ThrottleReasons>, NvmlError> {
        match self.support.clocks {
            ClocksCall::EventReasons => {
                event_reasons(self.nvml, &self.dev).map(|b| Some(ThrottleReasons::from_bits(b)))
            }
            ClocksCall::ThrottleReasons => self
                .dev
                .current_throttle_reasons()
                .map(|r| Some(ThrottleReasons::from_bits(r.bits()))),
            ClocksCall::None => Ok(None),
        }
    }
}
