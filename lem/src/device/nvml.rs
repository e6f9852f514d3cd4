//! NVIDIA GPUs through NVML. `libnvidia-ml.so.1` is loaded at run time, so this builds on
//! any machine; on a machine without the driver, opening fails with a clear error.

use std::sync::OnceLock;

use nvml_wrapper::enum_wrappers::device::{PerformancePolicy, TemperatureSensor};
use nvml_wrapper::enums::device::SampleValue;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::device::FieldValueSample;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::{Device, Nvml};

use super::{
    DeviceInfo, DeviceKind, EnergySource, PowerSource, Reading, ThrottleReasons, Violations,
};
use crate::error::{Error, Result};

/// `NVML_FI_DEV_POWER_INSTANT`: the instantaneous power field (recent drivers).
const FI_POWER_INSTANT: u32 = nvml_wrapper::sys_exports::field_id::NVML_FI_DEV_POWER_INSTANT;

/// NVML is initialised once per process and kept for its lifetime: devices borrow it, and
/// shutting NVML down while a sampler thread might still read would be unsound.
static NVML: OnceLock<std::result::Result<Nvml, String>> = OnceLock::new();

/// The process-wide NVML handle.
///
/// # Errors
/// [`Error::NoDevice`] when the NVML library cannot be loaded or initialised.
pub(crate) fn nvml() -> Result<&'static Nvml> {
    NVML.get_or_init(|| Nvml::init().map_err(|e| describe_init_error(&e)))
        .as_ref()
        .map_err(|reason| Error::NoDevice(format!("nvml: {reason}")))
}

fn describe_init_error(e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(_) => {
            "NVML (libnvidia-ml.so.1, part of the NVIDIA driver) could not be loaded".into()
        }
        NvmlError::DriverNotLoaded => "the NVIDIA driver is not loaded".into(),
        NvmlError::NoPermission => "no permission to use NVML".into(),
        other => format!("NVML initialisation failed ({other})"),
    }
}

/// A device NVML enumerates, as `CUDA_VISIBLE_DEVICES` resolution sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisibleEntry {
    /// NVML index.
    pub nvml_index: u32,
    /// NVML UUID ("GPU-...").
    pub uuid: String,
}

/// Resolve `CUDA_VISIBLE_DEVICES` against NVML's devices: the NVML indices the process may
/// use, in CUDA's order, plus notices for entries that were not honoured.
///
/// Follows CUDA's rules: unset means every device; an empty value means none; entries are
/// indices or (prefixes of) UUIDs; the list ends at the first entry that matches no device.
/// Indices are taken as NVML (PCI bus) order: set `CUDA_DEVICE_ORDER=PCI_BUS_ID` when your
/// GPUs differ, so that CUDA numbers them the same way.
///
/// # Errors
/// [`Error::InvalidConfig`] naming `CUDA_VISIBLE_DEVICES` when an entry is ambiguous.
pub fn resolve_visible_devices(
    cuda_visible_devices: Option<&str>,
    all: &[VisibleEntry],
) -> Result<(Vec<u32>, Vec<String>)> {
    let Some(value) = cuda_visible_devices else {
        return Ok((all.iter().map(|e| e.nvml_index).collect(), Vec::new()));
    };
    let mut out = Vec::new();
    let mut notices = Vec::new();
    for raw in value.split(',') {
        let entry = raw.trim();
        if entry.is_empty() {
            break;
        }
        let found = if let Ok(i) = entry.parse::<u32>() {
            all.iter().find(|e| e.nvml_index == i).map(|e| e.nvml_index)
        } else if entry.starts_with("MIG-") {
            notices.push(format!(
                "CUDA_VISIBLE_DEVICES entry {entry} is a MIG instance: NVML cannot measure a MIG slice's energy"
            ));
            None
        } else {
            let want = if entry.starts_with("GPU-") {
                entry.to_string()
            } else {
                format!("GPU-{entry}")
            };
            let hits: Vec<&VisibleEntry> =
                all.iter().filter(|e| e.uuid.starts_with(&want)).collect();
            if hits.len() > 1 {
                return Err(Error::config(
                    "CUDA_VISIBLE_DEVICES",
                    format!(
                        "`{entry}` matches {} GPUs; give more of the UUID",
                        hits.len()
                    ),
                ));
            }
            hits.first().map(|e| e.nvml_index)
        };
        match found {
            Some(i) if out.contains(&i) => {
                notices.push(format!(
                    "CUDA_VISIBLE_DEVICES lists `{entry}` twice; ignoring the rest"
                ));
                break;
            }
            Some(i) => out.push(i),
            None => {
                notices.push(format!(
                    "CUDA_VISIBLE_DEVICES entry `{entry}` matches no GPU; like CUDA, lem ignores it and every entry after it"
                ));
                break;
            }
        }
    }
    Ok((out, notices))
}

/// One NVIDIA GPU read through NVML.
#[derive(Debug)]
pub struct NvmlDevice {
    info: DeviceInfo,
    dev: Device<'static>,
    nvml: &'static Nvml,
    use_event_reasons: bool,
    violations: bool,
    driver: Option<String>,
    cuda: Option<String>,
}

impl NvmlDevice {
    /// Every GPU NVML sees, as `(nvml_index, uuid)`.
    ///
    /// # Errors
    /// When NVML cannot be loaded or enumerated.
    pub fn enumerate() -> Result<Vec<VisibleEntry>> {
        let nvml = nvml()?;
        let n = nvml
            .device_count()
            .map_err(|e| Error::nvml("device count", e))?;
        let mut out = Vec::new();
        for i in 0..n {
            let d = nvml
                .device_by_index(i)
                .map_err(|e| Error::nvml(format!("GPU {i}"), e))?;
            let uuid = d
                .uuid()
                .map_err(|e| Error::nvml(format!("GPU {i} uuid"), e))?;
            out.push(VisibleEntry {
                nvml_index: i,
                uuid,
            });
        }
        Ok(out)
    }

    /// Open the GPU with NVML index `nvml_index` as lem device number `index`.
    ///
    /// # Errors
    /// When NVML cannot be loaded or the device cannot be opened.
    pub fn open(nvml_index: u32, index: u32) -> Result<Self> {
        let nvml = nvml()?;
        let dev = nvml
            .device_by_index(nvml_index)
            .map_err(|e| Error::nvml(format!("GPU {nvml_index}"), e))?;
        let name = dev
            .name()
            .unwrap_or_else(|_| format!("NVIDIA GPU {nvml_index}"));
        let uuid = dev
            .uuid()
            .map_err(|e| Error::nvml(format!("GPU {nvml_index} uuid"), e))?;
        let energy_counter = dev.total_energy_consumption().is_ok();
        let instant = read_instant_power(&dev).is_some();
        let mig = dev.mig_mode().map(|m| m.current == 1).unwrap_or(false);
        let use_event_reasons = nvml.lib().nvmlDeviceGetCurrentClocksEventReasons.is_ok();
        let violations = dev.violation_status(PerformancePolicy::Power).is_ok()
            && dev.violation_status(PerformancePolicy::Thermal).is_ok();
        let info = DeviceInfo {
            index,
            kind: DeviceKind::NvmlGpu,
            name,
            uuid,
            nvml_index: Some(nvml_index),
            pci_bus_id: dev.pci_info().ok().map(|p| p.bus_id),
            compute_capability: dev
                .cuda_compute_capability()
                .ok()
                .map(|c| format!("{}.{}", c.major, c.minor)),
            memory_total_mb: dev.memory_info().ok().map(|m| m.total as f64 / 1e6),
            power_limit_w: dev
                .enforced_power_limit()
                .ok()
                .map(|mw| f64::from(mw) / 1000.0),
            mig,
            simulated: false,
            energy_counter,
            // About 100 ms on A100/H100 (MEASUREMENT.md); lem flags windows shorter than a few.
            counter_update_s: 0.1,
            power_source: if instant {
                PowerSource::Instant
            } else {
                PowerSource::Averaged
            },
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
            dev,
            nvml,
            use_event_reasons,
            violations,
            driver,
            cuda,
        })
    }

    fn throttle(&self) -> Option<ThrottleReasons> {
        if self.use_event_reasons {
            if let Ok(f) = self
                .nvml
                .lib()
                .nvmlDeviceGetCurrentClocksEventReasons
                .as_ref()
            {
                let mut bits: std::os::raw::c_ulonglong = 0;
                // SAFETY: `f` is the symbol NVML exports with this signature; the handle is
                // valid for the process lifetime (NVML is never shut down) and `bits` is a
                // live, writable u64.
                let rc = unsafe { f(self.dev.handle(), &mut bits) };
                if nvml_wrapper::error::nvml_try(rc).is_ok() {
                    return Some(ThrottleReasons::from_bits(bits));
                }
            }
        }
        self.dev
            .current_throttle_reasons()
            .ok()
            .map(|r| ThrottleReasons::from_bits(r.bits()))
    }
}

fn read_instant_power(dev: &Device<'_>) -> Option<f64> {
    let vals = dev.field_values_for(&[FieldId(FI_POWER_INSTANT)]).ok()?;
    let sample: &FieldValueSample = vals.first()?.as_ref().ok()?;
    let mw = match sample.value.as_ref().ok()? {
        SampleValue::U32(v) => f64::from(*v),
        SampleValue::U64(v) => *v as f64,
        SampleValue::I64(v) => *v as f64,
        SampleValue::F64(v) => *v,
    };
    (mw > 0.0).then_some(mw / 1000.0)
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
        self.dev
            .total_energy_consumption()
            .map(|mj| mj as f64 / 1000.0)
            .map_err(|e| Error::nvml(format!("{} energy counter", self.info.name), e))
    }

    fn read(&self) -> Result<Reading> {
        let power_w = match self.info.power_source {
            PowerSource::Instant => read_instant_power(&self.dev),
            _ => None,
        }
        .or_else(|| self.dev.power_usage().ok().map(|mw| f64::from(mw) / 1000.0));
        let r = Reading {
            power_w,
            memory_used_mb: self.dev.memory_info().ok().map(|m| m.used as f64 / 1e6),
            utilisation_pct: self.dev.utilization_rates().ok().map(|u| f64::from(u.gpu)),
            temperature_c: self.temperature_c(),
            throttle: self.throttle(),
        };
        if r.power_w.is_none() && r.temperature_c.is_none() && r.memory_used_mb.is_none() {
            return Err(Error::Device {
                device: self.info.name.clone(),
                reason: "every NVML read failed".into(),
            });
        }
        Ok(r)
    }

    fn temperature_c(&self) -> Option<f64> {
        self.dev
            .temperature(TemperatureSensor::Gpu)
            .ok()
            .map(f64::from)
    }

    fn violations(&self) -> Option<Violations> {
        if !self.violations {
            return None;
        }
        let p = self.dev.violation_status(PerformancePolicy::Power).ok()?;
        let t = self.dev.violation_status(PerformancePolicy::Thermal).ok()?;
        Some(Violations {
            power_ns: p.violation_time,
            thermal_ns: t.violation_time,
        })
    }

    fn driver_version(&self) -> Option<String> {
        self.driver.clone()
    }

    fn cuda_version(&self) -> Option<String> {
        self.cuda.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpus() -> Vec<VisibleEntry> {
        vec![
            VisibleEntry {
                nvml_index: 0,
                uuid: "GPU-aaaa1111".into(),
            },
            VisibleEntry {
                nvml_index: 1,
                uuid: "GPU-bbbb2222".into(),
            },
            VisibleEntry {
                nvml_index: 2,
                uuid: "GPU-bbbc3333".into(),
            },
        ]
    }

    #[test]
    fn unset_means_all_and_empty_means_none() {
        assert_eq!(
            resolve_visible_devices(None, &gpus()).unwrap().0,
            vec![0, 1, 2]
        );
        assert!(resolve_visible_devices(Some(""), &gpus())
            .unwrap()
            .0
            .is_empty());
    }

    #[test]
    fn indices_and_uuids_in_cuda_order() {
        let (v, n) = resolve_visible_devices(Some("2,0"), &gpus()).unwrap();
        assert_eq!(v, vec![2, 0]);
        assert!(n.is_empty());
        let (v, _) = resolve_visible_devices(Some("GPU-bbbb2222, 0"), &gpus()).unwrap();
        assert_eq!(v, vec![1, 0]);
        let (v, _) = resolve_visible_devices(Some("bbbc"), &gpus()).unwrap();
        assert_eq!(v, vec![2]);
    }

    #[test]
    fn invalid_entry_ends_the_list_like_cuda() {
        let (v, n) = resolve_visible_devices(Some("1,7,0"), &gpus()).unwrap();
        assert_eq!(v, vec![1]);
        assert!(n[0].contains("`7` matches no GPU"));
    }

    #[test]
    fn ambiguous_uuid_prefix_is_an_error_naming_the_variable() {
        let e = resolve_visible_devices(Some("GPU-bbb"), &gpus()).unwrap_err();
        assert!(e.to_string().contains("CUDA_VISIBLE_DEVICES"));
    }

    #[test]
    fn mig_entries_are_explained() {
        let (v, n) = resolve_visible_devices(Some("MIG-1234"), &gpus()).unwrap();
        assert!(v.is_empty());
        assert!(n[0].contains("MIG"));
    }
}
