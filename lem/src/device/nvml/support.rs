//! What an NVML GPU answers, decided once at open (each call tried a few times), and the
//! raw calls nvml-wrapper does not wrap the way lem needs.

use nvml_wrapper::enum_wrappers::device::{PerformancePolicy, TemperatureSensor};
use nvml_wrapper::enums::device::{DeviceArchitecture, SampleValue};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::structs::device::{CudaComputeCapability, FieldId};
use nvml_wrapper::{Device, Nvml};

/// `NVML_FI_DEV_POWER_INSTANT`: the instantaneous power field (recent drivers).
pub(super) const FI_POWER_INSTANT: u32 =
    nvml_wrapper::sys_exports::field_id::NVML_FI_DEV_POWER_INSTANT;

/// How many reads decide, at open, whether a feature answers (a transient failure is not
/// "unsupported"; NOT_SUPPORTED or a missing symbol is).
pub(super) const OPEN_TRIES: usize = 5;

/// Whether an error says "this will never work here" rather than "not this time".
pub(super) fn definitive(e: &NvmlError) -> bool {
    matches!(
        e,
        NvmlError::NotSupported
            | NvmlError::FunctionNotFound
            | NvmlError::FailedToLoadSymbol(_)
            | NvmlError::NoPermission
            | NvmlError::InvalidArg
            | NvmlError::GpuLost
    )
}

/// Try `f` up to [`OPEN_TRIES`] times; `Some(value)` at the first success, `None` when it
/// failed definitively or every time.
pub(super) fn decide<T>(mut f: impl FnMut() -> std::result::Result<T, NvmlError>) -> Option<T> {
    for _ in 0..OPEN_TRIES {
        match f() {
            Ok(v) => return Some(v),
            Err(e) if definitive(&e) => return None,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
    None
}

/// Like [`decide`], but telling a definitive "no" (`Ok(None)`) from failures that never
/// cleared (`Err`): a feature that only failed transiently must not be switched off for the
/// device's life in silence.
pub(super) fn decide_or_why<T>(
    mut f: impl FnMut() -> std::result::Result<T, NvmlError>,
) -> std::result::Result<Option<T>, String> {
    let mut last = String::new();
    for _ in 0..OPEN_TRIES {
        match f() {
            Ok(v) => return Ok(Some(v)),
            Err(e) if definitive(&e) => return Ok(None),
            Err(e) => last = describe(&e),
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(last)
}

pub(super) fn describe(e: &NvmlError) -> String {
    match e {
        NvmlError::NoPermission => "NO_PERMISSION (another job's GPU, or a cgroup)".into(),
        NvmlError::GpuLost => "GPU_IS_LOST (fallen off the bus)".into(),
        NvmlError::NotFound => "NOT_FOUND".into(),
        other => other.to_string(),
    }
}

/// Which temperature call answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TempCall {
    Legacy,
    Versioned,
    None,
}

/// Which clocks-event reasons call answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClocksCall {
    EventReasons,
    ThrottleReasons,
    None,
}

/// What a GPU answers, decided at open.
#[derive(Debug, Clone, Copy)]
pub(super) struct Support {
    pub(super) instant: bool,
    pub(super) usage: bool,
    pub(super) usage_averaged: bool,
    pub(super) memory: bool,
    pub(super) utilisation: bool,
    pub(super) temperature: TempCall,
    pub(super) clocks: ClocksCall,
    pub(super) violations_power: bool,
    pub(super) violations_thermal: bool,
}

pub(super) fn arch_name(a: &DeviceArchitecture) -> Option<&'static str> {
    Some(match a {
        DeviceArchitecture::Kepler => "kepler",
        DeviceArchitecture::Maxwell => "maxwell",
        DeviceArchitecture::Pascal => "pascal",
        DeviceArchitecture::Volta => "volta",
        DeviceArchitecture::Turing => "turing",
        DeviceArchitecture::Ampere => "ampere",
        DeviceArchitecture::Ada => "ada",
        DeviceArchitecture::Hopper => "hopper",
        DeviceArchitecture::Blackwell => "blackwell",
        _ => return None,
    })
}

/// Whether `nvmlDeviceGetPowerUsage` is a 1-second average: on Ampere and newer, GA100
/// (8.0) excepted. Unknown architecture: assume the common modern case, and say "averaged"
/// (the cautious label).
pub(super) fn usage_is_averaged(
    arch: Option<&DeviceArchitecture>,
    cc: Option<&CudaComputeCapability>,
) -> bool {
    match (arch, cc) {
        (Some(a), Some(c)) => {
            let before_ampere = matches!(
                a,
                DeviceArchitecture::Kepler
                    | DeviceArchitecture::Maxwell
                    | DeviceArchitecture::Pascal
                    | DeviceArchitecture::Volta
                    | DeviceArchitecture::Turing
            );
            let ga100 = c.major == 8 && c.minor == 0;
            !(before_ampere || ga100)
        }
        _ => true,
    }
}

impl Support {
    /// Which calls this GPU answers (each tried a few times: a transient failure at open
    /// must not turn a feature off for the device's life).
    pub(super) fn of(nvml: &Nvml, dev: &Device<'_>, instant: bool, usage_averaged: bool) -> Self {
        let temperature = if decide(|| dev.temperature(TemperatureSensor::Gpu)).is_some() {
            TempCall::Legacy
        } else if decide(|| temperature_v(nvml, dev)).is_some() {
            TempCall::Versioned
        } else {
            TempCall::None
        };
        let clocks = if decide(|| event_reasons(nvml, dev)).is_some() {
            ClocksCall::EventReasons
        } else if decide(|| dev.current_throttle_reasons()).is_some() {
            ClocksCall::ThrottleReasons
        } else {
            ClocksCall::None
        };
        Support {
            instant,
            usage: decide(|| dev.power_usage()).is_some(),
            usage_averaged,
            memory: decide(|| dev.memory_info()).is_some(),
            utilisation: decide(|| dev.utilization_rates()).is_some(),
            temperature,
            clocks,
            violations_power: decide(|| dev.violation_status(PerformancePolicy::Power)).is_some(),
            violations_thermal: decide(|| dev.violation_status(PerformancePolicy::Thermal))
                .is_some(),
        }
    }
}

pub(super) fn instant_power(dev: &Device<'_>) -> std::result::Result<f64, NvmlError> {
    let vals = dev.field_values_for(&[FieldId(FI_POWER_INSTANT)])?;
    let sample = vals.into_iter().next().ok_or(NvmlError::NotSupported)??;
    let mw = match sample.value? {
        SampleValue::U32(v) => f64::from(v),
        SampleValue::U64(v) => v as f64,
        SampleValue::I64(v) => v as f64,
        SampleValue::F64(v) => v,
    };
    if mw > 0.0 && mw.is_finite() {
        Ok(mw / 1000.0)
    } else {
        Err(NvmlError::Unknown)
    }
}

/// `nvmlDeviceGetCurrentClocksEventReasons` (newer drivers; nvml-wrapper calls the older
/// name).
pub(super) fn event_reasons(nvml: &Nvml, dev: &Device<'_>) -> std::result::Result<u64, NvmlError> {
    let f = nvml
        .lib()
        .nvmlDeviceGetCurrentClocksEventReasons
        .as_ref()
        .map_err(|e| NvmlError::FailedToLoadSymbol(e.to_string()))?;
    let mut bits: std::os::raw::c_ulonglong = 0;
    // SAFETY: `f` is the symbol NVML exports with this signature; the handle is valid for the
    // process lifetime (NVML is never shut down) and `bits` is a live, writable u64.
    let rc = unsafe { f(dev.handle(), &mut bits) };
    nvml_wrapper::error::nvml_try(rc).map(|()| bits)
}

/// `nvmlDeviceGetTemperatureV` (drivers that dropped the legacy call).
pub(super) fn temperature_v(nvml: &Nvml, dev: &Device<'_>) -> std::result::Result<f64, NvmlError> {
    use nvml_wrapper_sys::bindings::nvmlTemperature_t;
    let f = nvml
        .lib()
        .nvmlDeviceGetTemperatureV
        .as_ref()
        .map_err(|e| NvmlError::FailedToLoadSymbol(e.to_string()))?;
    let mut t = nvmlTemperature_t {
        version: (std::mem::size_of::<nvmlTemperature_t>() | (1 << 24)) as u32,
        sensorType: 0, // NVML_TEMPERATURE_GPU
        temperature: 0,
    };
    // SAFETY: `f` has this signature in nvml.h; the handle is valid for the process lifetime
    // and `t` is a live, writable struct stamped with its version as NVML requires.
    let rc = unsafe { f(dev.handle(), &mut t) };
    nvml_wrapper::error::nvml_try(rc).map(|()| f64::from(t.temperature))
}
