//! The scenario extras the fake reads beside lem's own scenario format: the `nvml` block
//! (how the driver and each GPU behave) and `faults` (what goes wrong, and when).

use serde::Deserialize;

use lem::device::ThrottleReasons;

/// NVML return codes by name (`NO_PERMISSION` or `NVML_ERROR_NO_PERMISSION`).
pub const RETURN_CODES: &[(&str, u32)] = &[
    ("SUCCESS", 0),
    ("UNINITIALIZED", 1),
    ("INVALID_ARGUMENT", 2),
    ("NOT_SUPPORTED", 3),
    ("NO_PERMISSION", 4),
    ("ALREADY_INITIALIZED", 5),
    ("NOT_FOUND", 6),
    ("INSUFFICIENT_SIZE", 7),
    ("INSUFFICIENT_POWER", 8),
    ("DRIVER_NOT_LOADED", 9),
    ("TIMEOUT", 10),
    ("IRQ_ISSUE", 11),
    ("LIBRARY_NOT_FOUND", 12),
    ("FUNCTION_NOT_FOUND", 13),
    ("CORRUPTED_INFOROM", 14),
    ("GPU_IS_LOST", 15),
    ("RESET_REQUIRED", 16),
    ("OPERATING_SYSTEM", 17),
    ("LIB_RM_VERSION_MISMATCH", 18),
    ("IN_USE", 19),
    ("MEMORY", 20),
    ("NO_DATA", 21),
    ("ARGUMENT_VERSION_MISMATCH", 25),
    ("NOT_READY", 27),
    ("GPU_NOT_FOUND", 28),
    ("INVALID_STATE", 29),
    ("UNKNOWN", 999),
];

/// Every function the fake exports (a fault's `function` must be one of them, or `*`).
pub const FUNCTIONS: &[&str] = &[
    "nvmlInit",
    "nvmlInit_v2",
    "nvmlInitWithFlags",
    "nvmlShutdown",
    "nvmlErrorString",
    "nvmlSystemGetDriverVersion",
    "nvmlSystemGetNVMLVersion",
    "nvmlSystemGetCudaDriverVersion",
    "nvmlSystemGetCudaDriverVersion_v2",
    "nvmlDeviceGetCount_v2",
    "nvmlDeviceGetHandleByIndex_v2",
    "nvmlDeviceGetHandleByUUID",
    "nvmlDeviceGetName",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetPciInfo_v3",
    "nvmlDeviceGetCudaComputeCapability",
    "nvmlDeviceGetArchitecture",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetMemoryInfo_v2",
    "nvmlDeviceGetEnforcedPowerLimit",
    "nvmlDeviceGetMigMode",
    "nvmlDeviceIsMigDeviceHandle",
    "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
    "nvmlDeviceGetTotalEnergyConsumption",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetFieldValues",
    "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetTemperature",
    "nvmlDeviceGetTemperatureV",
    "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlDeviceGetCurrentClocksThrottleReasons",
    "nvmlDeviceGetViolationStatus",
    "nvmlDeviceGetComputeRunningProcesses_v3",
    "nvmlDeviceGetGraphicsRunningProcesses_v3",
    "nvmlDeviceGetProcessUtilization",
];

/// The return code named `name`.
pub fn return_code(name: &str) -> Option<u32> {
    let bare = name.strip_prefix("NVML_ERROR_").unwrap_or(name);
    let bare = if name == "NVML_SUCCESS" {
        "SUCCESS"
    } else {
        bare
    };
    RETURN_CODES
        .iter()
        .find(|(n, _)| *n == bare)
        .map(|(_, c)| *c)
}

/// The `nvml` block: driver-wide facts and per-architecture behaviour, with per-GPU overrides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmlBlock {
    /// `kepler` .. `blackwell`; default `hopper`.
    pub architecture: Option<String>,
    /// "9.0"; default from the architecture ("8.0", GA100, for `ampere`).
    pub compute_capability: Option<String>,
    /// `nvmlDeviceGetTotalEnergyConsumption` answers; default: the scenario's `energy_counter`
    /// on Volta and newer.
    pub energy_counter: Option<bool>,
    /// The instantaneous power field (`NVML_FI_DEV_POWER_INSTANT`) answers; default true.
    pub instant_power_field: Option<bool>,
    /// `nvmlDeviceGetPowerUsage` is a 1-second average (Ampere and newer except GA100, the
    /// default) rather than instantaneous.
    pub power_usage_averaged: Option<bool>,
    /// Which clocks-event symbol answers: `both` (default), `new`
    /// (`nvmlDeviceGetCurrentClocksEventReasons`), `old` (`...ClocksThrottleReasons`), `none`.
    /// The other one returns FUNCTION_NOT_FOUND.
    pub clocks_event_reasons: Option<String>,
    /// Which temperature call answers: `both` (default), `legacy`
    /// (`nvmlDeviceGetTemperature`), `v` (`nvmlDeviceGetTemperatureV`).
    pub temperature_call: Option<String>,
    /// The reasons each violation policy counts; a policy left out (or `null`) answers
    /// NOT_SUPPORTED. Default: with the scenario's `violation_counters`, power counts
    /// `sw_power_cap` and thermal counts `sw_thermal_slowdown` and `hw_thermal_slowdown`.
    pub violation_policies: Option<ViolationPolicies>,
    /// Default "580.95.05".
    pub driver_version: Option<String>,
    /// The CUDA driver version, "13.0" by default.
    pub cuda_version: Option<String>,
    /// The energy counter's value when the scenario starts, in mJ (energy since the driver
    /// loaded); default 0. Lost at a counter reset.
    pub counter_offset_mj: Option<u64>,
    /// Per-GPU overrides, by NVML index.
    #[serde(default)]
    pub gpus: Vec<GpuOverride>,
}

/// Violation-counter policies and the clocks-event reasons each counts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViolationPolicies {
    /// `NVML_PERF_POLICY_POWER`.
    pub power: Option<Vec<String>>,
    /// `NVML_PERF_POLICY_THERMAL`.
    pub thermal: Option<Vec<String>>,
}

/// What differs for one GPU.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuOverride {
    /// Product name.
    pub name: Option<String>,
    /// `GPU-...` UUID.
    pub uuid: Option<String>,
    /// `00000000:18:00.0`.
    pub pci_bus_id: Option<String>,
    /// MIG mode enabled.
    pub mig: Option<bool>,
    /// UUIDs of this GPU's MIG devices (`MIG-...`).
    #[serde(default)]
    pub mig_devices: Vec<String>,
    /// Architecture of this GPU.
    pub architecture: Option<String>,
    /// Compute capability of this GPU.
    pub compute_capability: Option<String>,
}

/// One fault, as written in the scenario.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// The GPU (NVML index); every GPU when absent.
    pub gpu: Option<u32>,
    /// The function; every function when absent or `*`.
    pub function: Option<String>,
    /// Return this code.
    #[serde(rename = "return")]
    pub ret: Option<String>,
    /// Active from this time (s since init).
    pub from_s: Option<f64>,
    /// Active until this time.
    pub until_s: Option<f64>,
    /// Active only after this many calls succeeded.
    pub after_calls: Option<u64>,
    /// Active for the first this-many calls only (a feature flaky at start-up).
    pub first_calls: Option<u64>,
    /// Active on every k-th call only.
    pub every: Option<u64>,
    /// Add this much latency to the call.
    pub latency_ms: Option<f64>,
    /// The GPU falls off the bus at this time: every call on it returns GPU_IS_LOST.
    pub lost_from_s: Option<f64>,
    /// The energy counter stops moving at this time (until `until_s`, then catches up).
    pub counter_frozen_from_s: Option<f64>,
    /// The energy counter resets to zero at this time (a driver reload).
    pub counter_reset_s: Option<f64>,
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Effect {
    /// Return this code instead of answering.
    Return(u32),
    /// Answer, after this many seconds.
    Latency(f64),
    /// The counter reads its value at `from`.
    Frozen,
    /// Applied to the trace (a counter reset); nothing at call time.
    Trace,
}

/// A validated fault.
#[derive(Debug, Clone)]
pub struct Fault {
    /// GPU it applies to (None: all).
    pub gpu: Option<u32>,
    /// Function it applies to (None: all).
    pub function: Option<String>,
    /// What it does.
    pub effect: Effect,
    /// Active from (s).
    pub from_s: f64,
    /// Active until (s).
    pub until_s: f64,
    /// Calls that pass first.
    pub after_calls: u64,
    /// Active up to this call number.
    pub first_calls: u64,
    /// Every k-th call.
    pub every: u64,
    /// For counter resets: when.
    pub reset_s: Option<f64>,
}

impl Fault {
    /// Validate a spec; `i` is its position for messages.
    pub fn from_spec(i: usize, f: &FaultSpec) -> Result<Self, String> {
        let at = format!("faults[{i}]");
        let effects = [
            f.ret.is_some(),
            f.latency_ms.is_some(),
            f.lost_from_s.is_some(),
            f.counter_frozen_from_s.is_some(),
            f.counter_reset_s.is_some(),
        ];
        if effects.iter().filter(|b| **b).count() != 1 {
            return Err(format!(
                "{at}: give exactly one of return, latency_ms, lost_from_s, counter_frozen_from_s, counter_reset_s"
            ));
        }
        let function = match f.function.as_deref() {
            None | Some("*") => None,
            Some(name) if FUNCTIONS.contains(&name) => Some(name.to_string()),
            Some(name) => {
                return Err(format!(
                    "{at}: unknown function `{name}` (the fake exports: {})",
                    FUNCTIONS.join(", ")
                ))
            }
        };
        let time = |v: Option<f64>, what: &str| -> Result<Option<f64>, String> {
            match v {
                Some(x) if !(x.is_finite() && x >= 0.0) => Err(format!(
                    "{at}: {what} must be a finite number >= 0, got {x}"
                )),
                other => Ok(other),
            }
        };
        let mut from_s = time(f.from_s, "from_s")?.unwrap_or(0.0);
        let until_s = time(f.until_s, "until_s")?.unwrap_or(f64::INFINITY);
        let mut reset_s = None;
        let effect = if let Some(name) = &f.ret {
            Effect::Return(return_code(name).ok_or_else(|| {
                let names: Vec<&str> = RETURN_CODES.iter().map(|(n, _)| *n).collect();
                format!(
                    "{at}: unknown return code `{name}` (valid: {})",
                    names.join(", ")
                )
            })?)
        } else if let Some(ms) = f.latency_ms {
            if !(ms.is_finite() && ms >= 0.0) {
                return Err(format!("{at}: latency_ms must be >= 0, got {ms}"));
            }
            Effect::Latency(ms / 1000.0)
        } else if let Some(t) = time(f.lost_from_s, "lost_from_s")? {
            from_s = t;
            Effect::Return(15)
        } else if let Some(t) = time(f.counter_frozen_from_s, "counter_frozen_from_s")? {
            from_s = t;
            Effect::Frozen
        } else {
            reset_s = time(f.counter_reset_s, "counter_reset_s")?;
            Effect::Trace
        };
        if until_s <= from_s {
            return Err(format!(
                "{at}: until_s ({until_s}) must be after the start ({from_s})"
            ));
        }
        if f.every == Some(0) {
            return Err(format!("{at}: every must be >= 1"));
        }
        if matches!(effect, Effect::Frozen) && function.is_some() {
            return Err(format!(
                "{at}: counter_frozen_from_s applies to the energy counter; leave out `function`"
            ));
        }
        Ok(Self {
            gpu: f.gpu,
            function,
            effect,
            from_s,
            until_s,
            after_calls: f.after_calls.unwrap_or(0),
            first_calls: f.first_calls.unwrap_or(u64::MAX),
            every: f.every.unwrap_or(1),
            reset_s,
        })
    }

    /// Whether the fault is active for call number `n` (1-based) at `t`.
    pub fn active(&self, t: f64, n: u64) -> bool {
        t >= self.from_s
            && t < self.until_s
            && n > self.after_calls
            && n <= self.first_calls
            && n.is_multiple_of(self.every)
    }
}

/// `(NVML architecture code, default compute capability)` of an architecture name.
pub fn architecture(name: &str) -> Option<(u32, &'static str)> {
    Some(match name {
        "kepler" => (2, "3.7"),
        "maxwell" => (3, "5.2"),
        "pascal" => (4, "6.0"),
        "volta" => (5, "7.0"),
        "turing" => (6, "7.5"),
        "ampere" => (7, "8.0"),
        "ada" => (8, "8.9"),
        "hopper" => (9, "9.0"),
        "blackwell" => (10, "10.0"),
        _ => return None,
    })
}

/// The union of named reasons.
pub fn reasons(at: &str, names: &[String]) -> Result<ThrottleReasons, String> {
    names.iter().try_fold(ThrottleReasons::NONE, |acc, n| {
        ThrottleReasons::from_name(n)
            .map(|r| acc.union(r))
            .ok_or_else(|| format!("{at}: unknown clocks-event reason `{n}`"))
    })
}

/// A `major.minor` compute capability.
pub fn compute_capability(at: &str, s: &str) -> Result<(i32, i32), String> {
    let bad = || format!("{at}: compute_capability `{s}` is not MAJOR.MINOR");
    let (a, b) = s.split_once('.').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn fault(json: &str) -> Result<Fault, String> {
        let spec: FaultSpec = serde_json::from_str(json).map_err(|e| e.to_string())?;
        Fault::from_spec(0, &spec)
    }

    #[test]
    fn return_codes_by_either_name() {
        assert_eq!(return_code("NO_PERMISSION"), Some(4));
        assert_eq!(return_code("NVML_ERROR_GPU_IS_LOST"), Some(15));
        assert_eq!(return_code("NVML_SUCCESS"), Some(0));
        assert_eq!(return_code("NOPE"), None);
    }

    #[test]
    fn faults_validate_and_schedule() {
        let f = fault(r#"{"gpu": 1, "function": "nvmlDeviceGetPowerUsage", "return": "UNKNOWN", "every": 3, "after_calls": 2}"#).unwrap();
        let hits: Vec<u64> = (1..=12).filter(|n| f.active(0.0, *n)).collect();
        assert_eq!(hits, vec![3, 6, 9, 12]);
        let f = fault(r#"{"return": "UNKNOWN", "first_calls": 2}"#).unwrap();
        let hits: Vec<u64> = (1..=5).filter(|n| f.active(0.0, *n)).collect();
        assert_eq!(hits, vec![1, 2]);
        let f = fault(r#"{"return": "TIMEOUT", "from_s": 1.0, "until_s": 2.0}"#).unwrap();
        assert!(!f.active(0.5, 1) && f.active(1.5, 1) && !f.active(2.0, 1));
        let f = fault(r#"{"gpu": 0, "lost_from_s": 1.5}"#).unwrap();
        assert_eq!(f.effect, Effect::Return(15));
        assert!(f.active(1.6, 1) && !f.active(1.4, 1));
        for (bad, want) in [
            (r#"{"gpu": 0}"#, "exactly one"),
            (r#"{"return": "X"}"#, "unknown return code `X`"),
            (
                r#"{"function": "nvmlFoo", "return": "UNKNOWN"}"#,
                "unknown function",
            ),
            (r#"{"return": "UNKNOWN", "every": 0}"#, "every must be"),
            (
                r#"{"return": "UNKNOWN", "from_s": 2, "until_s": 1}"#,
                "until_s",
            ),
            (r#"{"return": "UNKNOWN", "colour": 1}"#, "unknown field"),
        ] {
            let e = fault(bad).unwrap_err();
            assert!(e.contains(want), "{e} should mention {want}");
        }
    }
}
