//! Environment metadata: what ran where, so a number can be interpreted later.

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::device::SharedDevice;

/// One GPU (or other measured device) as the environment saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceEnv {
    /// Index in the meter.
    pub index: u32,
    /// Product name.
    pub name: String,
    /// Stable identifier.
    pub uuid: String,
    /// Kind of source.
    pub kind: crate::device::DeviceKind,
    /// Device memory, MB.
    pub memory_total_mb: Option<f64>,
    /// CUDA compute capability.
    pub compute_capability: Option<String>,
    /// Enforced power limit, W.
    pub power_limit_w: Option<f64>,
    /// PCI bus id.
    pub pci_bus_id: Option<String>,
    /// MIG mode enabled.
    pub mig: bool,
    /// Simulated.
    pub simulated: bool,
    /// Has an energy counter.
    pub energy_counter: bool,
    /// Which power reading samples are.
    pub power_source: crate::device::PowerSource,
    /// Temperature when the environment was read, °C.
    pub temperature_c: Option<f64>,
    /// The cached `lem probe` of this GPU model and driver, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeBrief>,
}

/// The parts of a cached probe worth showing beside a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeBrief {
    /// Median interval between energy-counter changes, ms.
    pub counter_update_ms: Option<f64>,
    /// Its 95th percentile, ms (what bounds use).
    pub counter_update_p95_ms: Option<f64>,
    /// Median interval between power-reading changes, ms; `None` when constant.
    pub power_update_ms: Option<f64>,
    /// When probed, RFC 3339.
    pub timestamp: String,
}

/// Where a measurement ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// lem's version.
    pub lem_version: String,
    /// Host name.
    pub hostname: Option<String>,
    /// The host's identity, shared by every container on it (a hash of the kernel's boot id,
    /// else of `/etc/machine-id`): aggregation tells RAPL domains of different hosts apart by it.
    #[serde(default)]
    pub host_id: Option<String>,
    /// OS name (from os-release).
    pub os: Option<String>,
    /// Kernel release.
    pub kernel: Option<String>,
    /// CPU model.
    pub cpu_model: Option<String>,
    /// Logical CPUs.
    pub cpu_count: Option<usize>,
    /// cpufreq governor of CPU 0.
    pub cpu_governor: Option<String>,
    /// Running inside a container.
    pub in_container: bool,
    /// Measured devices.
    pub gpus: Vec<DeviceEnv>,
    /// Number of measured GPUs (simulated included).
    pub gpu_count: usize,
    /// NVIDIA driver version.
    pub driver_version: Option<String>,
    /// CUDA driver version.
    pub cuda_version: Option<String>,
    /// `CUDA_VISIBLE_DEVICES` as set.
    pub cuda_visible_devices: Option<String>,
    /// Any device is simulated.
    pub simulated: bool,
    /// "H100 80GB | CUDA 13.0 | driver 580.x | 41 C".
    pub summary: String,
}

fn read_trim(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn os_release() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("model name") || l.starts_with("Model"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// Whether this process runs in a container (Docker, Podman, Kubernetes, containerd).
pub fn in_container() -> bool {
    if Path::new("/.dockerenv").exists() || Path::new("/run/.containerenv").exists() {
        return true;
    }
    if std::env::var_os("container").is_some()
        || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
    {
        return true;
    }
    std::fs::read_to_string("/proc/1/cgroup").is_ok_and(|c| {
        ["docker", "kubepods", "containerd", "libpod", "lxc"]
            .iter()
            .any(|k| c.contains(k))
    })
}

/// The one-line summary: device | CUDA | driver | temperature.
pub fn summary_line(gpus: &[DeviceEnv], cuda: Option<&str>, driver: Option<&str>) -> String {
    let mut parts = Vec::new();
    match gpus {
        [] => parts.push("no measured device".to_string()),
        [g] => parts.push(g.name.clone()),
        [g, ..] if gpus.iter().all(|x| x.name == g.name) => {
            parts.push(format!("{}x {}", gpus.len(), g.name));
        }
        _ => parts.push(
            gpus.iter()
                .map(|g| g.name.as_str())
                .collect::<Vec<_>>()
                .join(" + "),
        ),
    }
    if gpus.iter().any(|g| g.simulated) {
        parts.push("simulated".into());
    }
    if let Some(c) = cuda {
        parts.push(format!("CUDA {c}"));
    }
    if let Some(d) = driver {
        parts.push(format!("driver {d}"));
    }
    if let Some(t) = gpus.iter().filter_map(|g| g.temperature_c).reduce(f64::max) {
        parts.push(format!("{t:.0} C"));
    }
    parts.join(" | ")
}

/// Read the environment around `devices`, without probe results (the measuring layer
/// attaches those: `lem::collect_environment`).
pub fn collect(devices: &[SharedDevice]) -> Environment {
    let gpus: Vec<DeviceEnv> = devices
        .iter()
        .map(|d| {
            let i = d.info();
            DeviceEnv {
                index: i.index,
                name: i.name.clone(),
                uuid: i.uuid.clone(),
                kind: i.kind,
                memory_total_mb: i.memory_total_mb,
                compute_capability: i.compute_capability.clone(),
                power_limit_w: i.power_limit_w,
                pci_bus_id: i.pci_bus_id.clone(),
                mig: i.mig,
                simulated: i.simulated,
                energy_counter: i.energy_counter,
                power_source: i.power_source,
                temperature_c: d.temperature_c(),
                // attached by whoever knows the probe cache (`lem::collect_environment`)
                probe: None,
            }
        })
        .collect();
    let driver_version = devices.iter().find_map(|d| d.driver_version());
    let cuda_version = devices.iter().find_map(|d| d.cuda_version());
    let summary = summary_line(&gpus, cuda_version.as_deref(), driver_version.as_deref());
    Environment {
        lem_version: env!("CARGO_PKG_VERSION").to_string(),
        hostname: read_trim("/proc/sys/kernel/hostname")
            .or_else(|| read_trim("/etc/hostname"))
            .or_else(|| std::env::var("HOSTNAME").ok()),
        host_id: crate::device::host_identity(),
        os: os_release().or_else(|| Some(std::env::consts::OS.to_string())),
        kernel: read_trim("/proc/sys/kernel/osrelease"),
        cpu_model: cpu_model(),
        cpu_count: std::thread::available_parallelism().ok().map(|n| n.get()),
        cpu_governor: read_trim("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        in_container: in_container(),
        gpu_count: gpus
            .iter()
            .filter(|g| g.kind != crate::device::DeviceKind::RaplCpu)
            .count(),
        simulated: gpus.iter().any(|g| g.simulated),
        gpus,
        driver_version,
        cuda_version,
        cuda_visible_devices: std::env::var("CUDA_VISIBLE_DEVICES").ok(),
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::ManualClock;
    use crate::device::{Scenario, SimDevice};
    use std::sync::Arc;

    #[test]
    fn environment_of_simulated_devices_says_so() {
        let s = Scenario::from_json(
            r#"{"idle_w": 50, "count": 2, "name": "Sim H100"}"#,
            Path::new("x"),
        )
        .unwrap();
        let devs: Vec<SharedDevice> = SimDevice::open_all(&s, Arc::new(ManualClock::new()), 0)
            .into_iter()
            .map(|d| Arc::new(d) as SharedDevice)
            .collect();
        let e = collect(&devs);
        assert!(e.simulated);
        assert_eq!(e.gpu_count, 2);
        assert_eq!(
            e.summary,
            "2x Sim H100 | simulated | driver simulated | 35 C"
        );
        assert_eq!(e.lem_version, env!("CARGO_PKG_VERSION"));
        assert!(e.kernel.is_some());
    }
}
