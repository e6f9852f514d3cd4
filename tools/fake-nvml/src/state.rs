//! The simulated driver: GPUs built from a lem scenario file, the clock, the fault schedule
//! and the call log.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use lem::device::{Reading, Scenario, SimDevice, ThrottleReasons};
use lem::ManualClock;

use crate::config::{self, Effect, Fault, FaultSpec, NvmlBlock};

/// The variable naming the scenario file; without it `nvmlInit_v2` answers DRIVER_NOT_LOADED.
pub const CONFIG_VAR: &str = "LEM_FAKE_NVML_SCENARIO";
/// The variable naming the call log (one line per call: `t_s function gpu return_code`).
pub const LOG_VAR: &str = "LEM_FAKE_NVML_LOG";

/// A handle given out to callers: `nvmlDevice_t` points at one of these.
#[derive(Debug)]
#[repr(C)]
pub struct Handle {
    /// The GPU (parent GPU for a MIG device).
    pub gpu: u32,
    /// `Some(i)`: the i-th MIG device of the GPU.
    pub mig: Option<u32>,
}

/// One simulated GPU as NVML shows it.
#[derive(Debug)]
pub struct Gpu {
    /// The trace.
    pub sim: SimDevice,
    /// Product name.
    pub name: String,
    /// `GPU-...`.
    pub uuid: String,
    /// PCI bus id.
    pub pci_bus_id: String,
    /// MIG mode enabled.
    pub mig: bool,
    /// UUIDs of its MIG devices.
    pub mig_uuids: Vec<String>,
    /// NVML architecture code.
    pub arch: u32,
    /// Compute capability.
    pub cc: (i32, i32),
    /// Energy counter answers.
    pub counter: bool,
    /// The instant power field answers.
    pub instant_field: bool,
    /// `nvmlDeviceGetPowerUsage` is a 1-s average.
    pub usage_averaged: bool,
    /// `nvmlDeviceGetCurrentClocksEventReasons` answers.
    pub clocks_new: bool,
    /// `nvmlDeviceGetCurrentClocksThrottleReasons` answers.
    pub clocks_old: bool,
    /// `nvmlDeviceGetTemperature` answers.
    pub temp_legacy: bool,
    /// `nvmlDeviceGetTemperatureV` answers.
    pub temp_v: bool,
    /// Reasons counted by the power policy (None: not supported).
    pub policy_power: Option<ThrottleReasons>,
    /// Reasons counted by the thermal policy.
    pub policy_thermal: Option<ThrottleReasons>,
    /// Counter value at the start, mJ (dropped at the first reset).
    pub counter_offset_mj: u64,
    /// When the counter first resets, if ever.
    pub first_reset_s: Option<f64>,
    /// Total memory, MiB.
    pub memory_total_mib: f64,
    /// Enforced power limit, W.
    pub power_limit_w: f64,
}

/// The whole fake driver.
#[derive(Debug)]
pub struct Fake {
    origin: Instant,
    /// The Unix time at `origin`, µs: NVML's CPU timestamps count from the epoch.
    origin_unix_us: u64,
    /// The GPUs, by NVML index.
    pub gpus: Vec<Gpu>,
    /// Every handle: one per GPU (index = GPU), then one per MIG device.
    pub handles: Box<[Handle]>,
    faults: Vec<Fault>,
    calls: Mutex<HashMap<(u32, &'static str), u64>>,
    log: Option<Mutex<File>>,
    /// The driver version string.
    pub driver_version: String,
    /// The CUDA driver version as NVML encodes it (13000 for 13.0).
    pub cuda_version: i32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A UUID in NVIDIA's format, stable for a scenario file and GPU index.
fn uuid_for(seed: &str, i: u32) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes().chain(i.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let g = h.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15;
    format!(
        "GPU-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xffff,
        g >> 48,
        g & 0xffff_ffff_ffff
    )
}

impl Fake {
    /// Read the scenario named by [`CONFIG_VAR`] (its error is one line naming the file).
    pub fn from_env() -> Result<Option<Self>, String> {
        let Some(path) = std::env::var_os(CONFIG_VAR) else {
            return Ok(None);
        };
        let path = Path::new(&path);
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let log = match std::env::var_os(LOG_VAR) {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&p)
                    .map_err(|e| format!("{}: {e}", Path::new(&p).display()))?,
            ),
            None => None,
        };
        Self::from_json(&text, path, log).map(Some)
    }

    /// Build the driver from scenario JSON.
    pub fn from_json(text: &str, path: &Path, log: Option<File>) -> Result<Self, String> {
        let bad = |e: String| format!("{}: invalid scenario: {e}", path.display());
        let scenario = Scenario::from_json(text, path).map_err(|e| e.to_string())?;
        let block: NvmlBlock = match &scenario.nvml {
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| bad(format!("nvml: {e}")))?,
            None => NvmlBlock::default(),
        };
        let specs: Vec<FaultSpec> = match &scenario.faults {
            Some(v) => {
                serde_json::from_value(v.clone()).map_err(|e| bad(format!("faults: {e}")))?
            }
            None => Vec::new(),
        };
        let faults = specs
            .iter()
            .enumerate()
            .map(|(i, f)| Fault::from_spec(i, f))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        if let Some(f) = faults
            .iter()
            .find(|f| f.gpu.is_some_and(|g| g >= scenario.count))
        {
            return Err(bad(format!(
                "a fault names GPU {:?}, but the scenario has {}",
                f.gpu, scenario.count
            )));
        }
        let seed = std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .display()
            .to_string()
            + text;
        let mut gpus = Vec::new();
        let mut handles = Vec::new();
        let mut mig_handles = Vec::new();
        for i in 0..scenario.count {
            let over = block.gpus.get(i as usize).cloned().unwrap_or_default();
            let at = format!("nvml.gpus[{i}]");
            let arch_name = over
                .architecture
                .as_deref()
                .or(block.architecture.as_deref())
                .unwrap_or("hopper");
            let (arch, cc_default) = config::architecture(arch_name)
                .ok_or_else(|| bad(format!("{at}: unknown architecture `{arch_name}`")))?;
            let cc_text = over
                .compute_capability
                .as_deref()
                .or(block.compute_capability.as_deref())
                .unwrap_or(cc_default);
            let cc = config::compute_capability(&at, cc_text).map_err(bad)?;
            let mut one = scenario.clone();
            one.count = 1;
            one.counter_resets_s.extend(
                faults
                    .iter()
                    .filter(|f| f.gpu.is_none_or(|g| g == i))
                    .filter_map(|f| f.reset_s),
            );
            let first_reset_s = one.counter_resets_s.iter().copied().reduce(f64::min);
            let clock = Arc::new(ManualClock::new());
            let sim = SimDevice::open_all(&one, clock, i)
                .into_iter()
                .next()
                .ok_or_else(|| bad("the scenario opened no device".to_string()))?;
            let (policy_power, policy_thermal) = match &block.violation_policies {
                Some(p) => (
                    p.power
                        .as_ref()
                        .map(|r| config::reasons("nvml.violation_policies.power", r))
                        .transpose()
                        .map_err(bad)?,
                    p.thermal
                        .as_ref()
                        .map(|r| config::reasons("nvml.violation_policies.thermal", r))
                        .transpose()
                        .map_err(bad)?,
                ),
                None if scenario.violation_counters => (
                    Some(ThrottleReasons::SW_POWER_CAP),
                    Some(ThrottleReasons::SW_THERMAL.union(ThrottleReasons::HW_THERMAL)),
                ),
                None => (None, None),
            };
            let clocks = block.clocks_event_reasons.as_deref().unwrap_or("both");
            if !["both", "new", "old", "none"].contains(&clocks) {
                return Err(bad(format!(
                    "nvml.clocks_event_reasons must be both, new, old or none, got `{clocks}`"
                )));
            }
            let temp = block.temperature_call.as_deref().unwrap_or("both");
            if !["both", "legacy", "v"].contains(&temp) {
                return Err(bad(format!(
                    "nvml.temperature_call must be both, legacy or v, got `{temp}`"
                )));
            }
            let mig_uuids = over.mig_devices.clone();
            for (k, _) in mig_uuids.iter().enumerate() {
                mig_handles.push(Handle {
                    gpu: i,
                    mig: Some(k as u32),
                });
            }
            handles.push(Handle { gpu: i, mig: None });
            gpus.push(Gpu {
                name: over.name.clone().unwrap_or_else(|| scenario.name.clone()),
                uuid: over.uuid.clone().unwrap_or_else(|| uuid_for(&seed, i)),
                pci_bus_id: over
                    .pci_bus_id
                    .clone()
                    .unwrap_or_else(|| format!("00000000:{:02X}:00.0", 0x18 + 0x10 * i)),
                mig: over.mig.unwrap_or(scenario.mig || !mig_uuids.is_empty()),
                mig_uuids,
                arch,
                cc,
                counter: block
                    .energy_counter
                    .unwrap_or(scenario.energy_counter && arch >= 5),
                instant_field: block.instant_power_field.unwrap_or(true),
                usage_averaged: block
                    .power_usage_averaged
                    .unwrap_or(arch >= 7 && cc != (8, 0)),
                clocks_new: clocks == "both" || clocks == "new",
                clocks_old: clocks == "both" || clocks == "old",
                temp_legacy: temp == "both" || temp == "legacy",
                temp_v: temp == "both" || temp == "v",
                policy_power,
                policy_thermal,
                counter_offset_mj: block.counter_offset_mj.unwrap_or(0),
                first_reset_s,
                memory_total_mib: scenario.memory_total_mb.unwrap_or(81_559.0),
                power_limit_w: scenario.power_limit_w.unwrap_or(700.0),
                sim,
            });
        }
        handles.extend(mig_handles);
        let cuda = block.cuda_version.as_deref().unwrap_or("13.0");
        let cuda_version = config::compute_capability("nvml.cuda_version", cuda)
            .map(|(a, b)| a * 1000 + b * 10)
            .map_err(|_| bad(format!("nvml.cuda_version `{cuda}` is not MAJOR.MINOR")))?;
        Ok(Self {
            origin: Instant::now(),
            origin_unix_us: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
            gpus,
            handles: handles.into_boxed_slice(),
            faults,
            calls: Mutex::new(HashMap::new()),
            log: log.map(Mutex::new),
            driver_version: block
                .driver_version
                .clone()
                .unwrap_or_else(|| "580.95.05".into()),
            cuda_version,
        })
    }

    /// The Unix time, µs, at which [`now`](Self::now) was 0.
    pub fn origin_unix_us(&self) -> u64 {
        self.origin_unix_us
    }

    /// Seconds since the driver was initialised.
    pub fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    /// The handle a caller holds, validated: it must point into `handles`.
    pub fn handle(&self, p: *const Handle) -> Option<&Handle> {
        let base = self.handles.as_ptr() as usize;
        let size = std::mem::size_of::<Handle>();
        let off = (p as usize).checked_sub(base)?;
        if off % size != 0 {
            return None;
        }
        self.handles.get(off / size)
    }

    /// The faults' verdict on a call: `Some(code)` to fail it. Latency faults sleep here.
    pub fn fault(&self, function: &'static str, gpu: Option<u32>, t: f64) -> Option<u32> {
        if self.faults.is_empty() {
            return None;
        }
        let n = {
            let mut calls = lock(&self.calls);
            let c = calls
                .entry((gpu.unwrap_or(u32::MAX), function))
                .or_insert(0);
            *c += 1;
            *c
        };
        for f in &self.faults {
            if f.gpu.is_some() && f.gpu != gpu {
                continue;
            }
            if f.function.as_deref().is_some_and(|name| name != function) {
                continue;
            }
            if !f.active(t, n) {
                continue;
            }
            match f.effect {
                Effect::Return(code) => return Some(code),
                Effect::Latency(s) => std::thread::sleep(std::time::Duration::from_secs_f64(s)),
                Effect::Frozen | Effect::Trace => {}
            }
        }
        None
    }

    /// Append one line to the call log.
    pub fn log(&self, function: &str, gpu: Option<u32>, t: f64, rc: u32) {
        if let Some(log) = &self.log {
            let gpu = gpu.map_or_else(|| "-".to_string(), |g| g.to_string());
            let line = format!("{t:.6}\t{function}\t{gpu}\t{rc}\n");
            let _ = lock(log).write_all(line.as_bytes());
        }
    }

    /// The energy counter of `gpu` at `t`, in mJ.
    pub fn counter_mj(&self, gpu: &Gpu, g: u32, t: f64) -> u64 {
        let frozen = self.faults.iter().find(|f| {
            f.effect == Effect::Frozen
                && f.gpu.is_none_or(|x| x == g)
                && t >= f.from_s
                && t < f.until_s
        });
        let t = frozen.map_or(t, |f| f.from_s);
        let j = gpu.sim.counter_at(t);
        let offset = match gpu.first_reset_s {
            Some(r) if r <= t => 0,
            _ => gpu.counter_offset_mj,
        };
        offset + (j * 1000.0).round().max(0.0) as u64
    }

    /// `nvmlDeviceGetPowerUsage` of `gpu` at `t`, in mW.
    pub fn power_usage_mw(gpu: &Gpu, t: f64) -> u32 {
        let w = if gpu.usage_averaged {
            let win = t.min(1.0);
            if win > 0.0 {
                (gpu.sim.sensed_until(t) - gpu.sim.sensed_until(t - win)) / win
            } else {
                gpu.sim.sensed_power_at(t)
            }
        } else {
            gpu.sim.sensed_power_at(t)
        };
        mw(w)
    }

    /// The instantaneous power field of `gpu` at `t`, in mW: what its sensor reads (stale
    /// between refreshes, sensed part-time, where the scenario's `sensor` block says so).
    pub fn power_instant_mw(gpu: &Gpu, t: f64) -> u32 {
        mw(gpu.sim.sensed_power_at(t))
    }

    /// Everything else the trace says at `t`.
    pub fn reading(gpu: &Gpu, t: f64) -> Reading {
        gpu.sim.reading_at(t)
    }

    /// Exact time the policy's reasons were active in `[0, t]`, ns.
    pub fn violation_ns(gpu: &Gpu, reasons: ThrottleReasons, t: f64) -> u64 {
        (gpu.sim.time_where(t, |r| r.intersects(reasons)) * 1e9).round() as u64
    }

    /// Microseconds since the Unix epoch (NVML's timestamps).
    pub fn unix_us() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
    }
}

fn mw(w: f64) -> u32 {
    (w * 1000.0).round().clamp(0.0, f64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn fake(json: &str) -> Result<Fake, String> {
        Fake::from_json(json, Path::new("f.json"), None)
    }

    #[test]
    fn defaults_follow_the_architecture() {
        let f = fake(r#"{"idle_w": 60, "count": 2}"#).unwrap();
        assert_eq!(f.gpus.len(), 2);
        let g = &f.gpus[0];
        assert_eq!(g.arch, 9);
        assert!(g.counter && g.instant_field && g.usage_averaged);
        assert!(
            g.uuid.starts_with("GPU-") && g.uuid.len() == 40,
            "{}",
            g.uuid
        );
        assert_ne!(f.gpus[0].uuid, f.gpus[1].uuid);
        let a100 = fake(r#"{"idle_w": 60, "nvml": {"architecture": "ampere"}}"#).unwrap();
        assert!(
            !a100.gpus[0].usage_averaged,
            "GA100's power usage is instantaneous"
        );
        let pascal = fake(r#"{"idle_w": 60, "nvml": {"architecture": "pascal"}}"#).unwrap();
        assert!(!pascal.gpus[0].counter, "no energy counter before Volta");
    }

    #[test]
    fn counter_and_power_follow_the_trace() {
        let f = fake(
            r#"{"idle_w": 100, "segments": [{"start_s": 1, "end_s": 2, "power_w": 300}],
                "nvml": {"counter_offset_mj": 5000000}}"#,
        )
        .unwrap();
        let g = &f.gpus[0];
        assert_eq!(f.counter_mj(g, 0, 2.0), 5_000_000 + 400_000);
        assert_eq!(Fake::power_instant_mw(g, 1.5), 300_000);
        // the 1 s average at 1.5 s: half idle, half load
        assert_eq!(Fake::power_usage_mw(g, 1.5), 200_000);
    }

    #[test]
    fn frozen_and_reset_counters() {
        let f = fake(
            r#"{"idle_w": 100, "nvml": {"counter_offset_mj": 1000},
                "faults": [{"gpu": 0, "counter_frozen_from_s": 1.0, "until_s": 2.0},
                           {"gpu": 0, "counter_reset_s": 3.0}]}"#,
        )
        .unwrap();
        let g = &f.gpus[0];
        assert_eq!(f.counter_mj(g, 0, 1.5), 1000 + 100_000);
        assert_eq!(f.counter_mj(g, 0, 2.5), 1000 + 250_000);
        assert_eq!(f.counter_mj(g, 0, 3.5), 50_000);
    }

    #[test]
    fn handles_are_checked() {
        let f = fake(r#"{"idle_w": 1, "count": 2}"#).unwrap();
        let h1 = &f.handles[1] as *const Handle;
        assert_eq!(f.handle(h1).map(|h| h.gpu), Some(1));
        assert!(f.handle(std::ptr::null()).is_none());
        assert!(f.handle((h1 as usize + 1) as *const Handle).is_none());
    }

    #[test]
    fn bad_extras_name_the_file() {
        for (json, want) in [
            (
                r#"{"idle_w": 1, "nvml": {"architecture": "fermi2"}}"#,
                "unknown architecture",
            ),
            (r#"{"idle_w": 1, "nvml": {"colour": 1}}"#, "unknown field"),
            (
                r#"{"idle_w": 1, "faults": [{"gpu": 3, "return": "UNKNOWN"}]}"#,
                "names GPU",
            ),
            (
                r#"{"idle_w": 1, "nvml": {"clocks_event_reasons": "maybe"}}"#,
                "clocks_event_reasons",
            ),
        ] {
            let e = fake(json).unwrap_err();
            assert!(e.starts_with("f.json: invalid scenario:"), "{e}");
            assert!(e.contains(want), "{e} should mention {want}");
        }
    }
}
