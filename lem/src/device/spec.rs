//! The device spec string used everywhere (library, CLI, benches, example):
//! `auto`, `nvml`, `nvml:0,2`, `rapl`, `sim:PATH`, `none`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::nvml::NvmlDevice;
use super::rapl::{RaplDomain, DEFAULT_POWERCAP_ROOT};
use super::scenario::Scenario;
use super::sim::SimDevice;
use super::source::{EnergySource, SharedDevice};
use crate::base::clock::Clock;
use crate::error::{Error, Result};

/// Which devices to measure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// NVML if it sees a GPU, else RAPL if readable, else nothing (with a notice).
    #[default]
    Auto,
    /// NVML GPUs: all visible ones, or these positions in the visible list
    /// (`CUDA_VISIBLE_DEVICES` order).
    Nvml(Option<Vec<u32>>),
    /// CPU packages through RAPL.
    Rapl,
    /// Simulated GPUs from a scenario file.
    Sim(PathBuf),
    /// Measure no device (timing only).
    None,
}

impl DeviceSpec {
    /// Parse a spec; `field` names where it came from (`LEM_DEVICE`, `--device`) in errors.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming `field` and listing the valid forms.
    pub fn parse_for(field: &str, s: &str) -> Result<Self> {
        let s = s.trim();
        let bad = |why: String| {
            Error::config(
                field,
                format!("{why} (expected auto, nvml, nvml:0,2, rapl, sim:PATH or none)"),
            )
        };
        match s {
            "auto" => return Ok(Self::Auto),
            "nvml" => return Ok(Self::Nvml(None)),
            "rapl" => return Ok(Self::Rapl),
            "none" => return Ok(Self::None),
            _ => {}
        }
        if let Some(list) = s.strip_prefix("nvml:") {
            let mut idx = Vec::new();
            for part in list.split(',') {
                let n = part
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| bad(format!("`{s}`: `{part}` is not a GPU index")))?;
                if idx.contains(&n) {
                    return Err(bad(format!("`{s}` lists GPU {n} twice")));
                }
                idx.push(n);
            }
            return Ok(Self::Nvml(Some(idx)));
        }
        if let Some(path) = s.strip_prefix("sim:") {
            if path.is_empty() {
                return Err(bad("`sim:` needs a scenario file path".into()));
            }
            return Ok(Self::Sim(PathBuf::from(path)));
        }
        Err(bad(format!("unknown device spec `{s}`")))
    }
}

impl DeviceSpec {
    /// `LEM_DEVICE`, or `auto` when unset or empty.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming `LEM_DEVICE`.
    pub fn from_env() -> Result<Self> {
        match std::env::var("LEM_DEVICE") {
            Ok(v) if !v.trim().is_empty() => Self::parse_for("LEM_DEVICE", &v),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(Self::Auto),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(Error::config("LEM_DEVICE", "not valid UTF-8"))
            }
        }
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse_for("device spec", s)
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Nvml(None) => f.write_str("nvml"),
            Self::Nvml(Some(v)) => {
                let list: Vec<String> = v.iter().map(u32::to_string).collect();
                write!(f, "nvml:{}", list.join(","))
            }
            Self::Rapl => f.write_str("rapl"),
            Self::Sim(p) => write!(f, "sim:{}", p.display()),
            Self::None => f.write_str("none"),
        }
    }
}

/// The devices a spec opened, with notices worth telling the user.
#[derive(Debug, Default)]
pub struct OpenedDevices {
    /// The devices, indexed from 0.
    pub devices: Vec<SharedDevice>,
    /// Human-readable notices (no GPU found, MIG, ignored `CUDA_VISIBLE_DEVICES` entries...).
    pub notices: Vec<String>,
}

fn open_nvml(indices: Option<&[u32]>) -> Result<OpenedDevices> {
    let all = super::nvml::enumerate()?;
    let cvd = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let order = std::env::var("CUDA_DEVICE_ORDER").ok();
    let visible = super::visible::resolve_visible_devices(
        cvd.as_deref(),
        order.as_deref(),
        &all,
        &super::nvml::mig_parent_uuid,
    )?;
    let mut notices = visible.notices;
    let explicit = indices.is_some();
    let chosen: Vec<u32> = match indices {
        None => visible.indices,
        Some(want) => {
            if visible.mixed_models && cvd.is_none() && order.as_deref() != Some("PCI_BUS_ID") {
                let mut names: Vec<&str> = all.iter().filter_map(|e| e.name.as_deref()).collect();
                names.sort_unstable();
                names.dedup();
                notices.push(super::visible::mixed_order_notice(&names));
            }
            want.iter()
                .map(|&i| {
                    visible.indices.get(i as usize).copied().ok_or_else(|| {
                        Error::NoDevice(format!(
                            "nvml:{i}: only {} GPU(s) visible to this process",
                            visible.indices.len()
                        ))
                    })
                })
                .collect::<Result<_>>()?
        }
    };
    // A GPU asked for by position, or the only one visible, must open; among several, one
    // that cannot be opened (another job's GPU, a lost GPU) is skipped with a notice.
    let must_open = explicit || chosen.len() == 1;
    let mut devices: Vec<SharedDevice> = Vec::new();
    let mut skipped = Vec::new();
    for nvml_index in chosen {
        let entry = all.iter().find(|e| e.nvml_index == nvml_index);
        let label = match entry.and_then(|e| e.name.as_deref()) {
            Some(n) => format!("GPU {nvml_index} ({n})"),
            None => format!("GPU {nvml_index}"),
        };
        let opened = match entry.and_then(|e| e.problem.clone()) {
            Some(problem) => Err(problem),
            None => {
                let index = u32::try_from(devices.len()).unwrap_or(u32::MAX);
                NvmlDevice::open(nvml_index, index).map_err(|e| e.to_string())
            }
        };
        match opened {
            Ok(d) => {
                notices.extend(d.open_notices().iter().cloned());
                if d.info().mig {
                    notices.push(format!(
                        "{} (GPU {nvml_index}) is in MIG mode: NVML reports the whole GPU's energy, not a slice's",
                        d.info().name
                    ));
                }
                devices.push(Arc::new(d));
            }
            Err(problem) if must_open => {
                return Err(Error::NoDevice(format!(
                    "nvml: {label} cannot be measured: {problem}"
                )));
            }
            Err(problem) => {
                notices.push(format!(
                    "nvml: skipped {label}: {problem}; the other GPUs are measured"
                ));
                skipped.push(format!("{label}: {problem}"));
            }
        }
    }
    if devices.is_empty() && !skipped.is_empty() {
        return Err(Error::NoDevice(format!(
            "nvml: no visible GPU could be opened ({})",
            skipped.join("; ")
        )));
    }
    Ok(OpenedDevices { devices, notices })
}

fn open_rapl(root: &Path, clock: Arc<dyn Clock>) -> Result<OpenedDevices> {
    let devices = RaplDomain::discover(root, clock, 0)?
        .into_iter()
        .map(|d| Arc::new(d) as SharedDevice)
        .collect();
    Ok(OpenedDevices {
        devices,
        notices: Vec::new(),
    })
}

/// Open the devices a spec names.
///
/// # Errors
/// When an explicitly named source cannot be opened (`nvml` without a driver, `rapl` without
/// permission, a bad scenario file). `auto` never fails for lack of a device: it returns none,
/// with a notice saying why.
pub fn open_devices(spec: &DeviceSpec, clock: Arc<dyn Clock>) -> Result<OpenedDevices> {
    open_devices_with_powercap(spec, clock, Path::new(DEFAULT_POWERCAP_ROOT))
}

/// [`open_devices`] with the powercap sysfs root injected (for tests on a fake tree).
///
/// # Errors
/// As [`open_devices`].
pub fn open_devices_with_powercap(
    spec: &DeviceSpec,
    clock: Arc<dyn Clock>,
    powercap_root: &Path,
) -> Result<OpenedDevices> {
    match spec {
        DeviceSpec::None => Ok(OpenedDevices::default()),
        DeviceSpec::Sim(path) => {
            let scenario = Scenario::from_file(path)?;
            let devices = SimDevice::open_all(&scenario, clock, 0)
                .into_iter()
                .map(|d| Arc::new(d) as SharedDevice)
                .collect();
            Ok(OpenedDevices {
                devices,
                notices: vec![format!(
                    "simulated device from {}: numbers are not measurements",
                    path.display()
                )],
            })
        }
        DeviceSpec::Nvml(idx) => {
            let opened = open_nvml(idx.as_deref())?;
            if opened.devices.is_empty() {
                return Err(Error::NoDevice(
                    "nvml: no GPU visible to this process (check CUDA_VISIBLE_DEVICES)".into(),
                ));
            }
            Ok(opened)
        }
        DeviceSpec::Rapl => open_rapl(powercap_root, clock),
        DeviceSpec::Auto => {
            let nvml_err = match open_nvml(None) {
                Ok(o) if !o.devices.is_empty() => return Ok(o),
                Ok(_) => "NVML sees no GPU visible to this process".to_string(),
                Err(e) => e.to_string(),
            };
            // Never a silent switch: whatever `auto` falls back to, the notice (and so every
            // result's warnings) says that no GPU was measured and why.
            let rapl_err = match open_rapl(powercap_root, clock) {
                Ok(mut o) => {
                    o.notices.insert(
                        0,
                        format!(
                            "device auto: no GPU measured ({nvml_err}); measuring CPU packages through RAPL instead"
                        ),
                    );
                    return Ok(o);
                }
                Err(e) => e.to_string(),
            };
            Ok(OpenedDevices {
                devices: Vec::new(),
                notices: vec![format!(
                    "device auto: no energy source found, energy will not be measured (no GPU: {nvml_err}; no RAPL: {rapl_err})"
                )],
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::ManualClock;

    #[test]
    fn parses_every_form_and_round_trips() {
        for s in [
            "auto",
            "nvml",
            "nvml:0,2",
            "rapl",
            "sim:/tmp/x.json",
            "none",
        ] {
            let spec: DeviceSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
        assert_eq!(
            DeviceSpec::parse_for("X", " nvml:1 ").unwrap(),
            DeviceSpec::Nvml(Some(vec![1]))
        );
    }

    #[test]
    fn bad_specs_name_the_field() {
        for s in ["gpu", "nvml:", "nvml:a", "nvml:1,1", "sim:", ""] {
            let e = DeviceSpec::parse_for("LEM_DEVICE", s)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("invalid LEM_DEVICE:"), "{e}");
            assert!(e.contains("expected auto"), "{e}");
        }
    }

    #[test]
    fn sim_spec_opens_every_device_of_the_scenario() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        std::fs::write(&p, r#"{"idle_w": 50, "count": 2}"#).unwrap();
        let clock = Arc::new(ManualClock::new());
        let o = open_devices(&DeviceSpec::Sim(p), clock).unwrap();
        assert_eq!(o.devices.len(), 2);
        assert!(o.devices.iter().all(|d| d.info().simulated));
        assert!(o.notices[0].contains("simulated"));
    }

    #[test]
    fn the_same_file_is_the_same_gpu_and_another_file_another() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
        std::fs::write(&a, r#"{"idle_w": 50}"#).unwrap();
        std::fs::write(&b, r#"{"idle_w": 50}"#).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
        let uuid = |p: &Path| {
            open_devices(&DeviceSpec::Sim(p.to_path_buf()), clock.clone())
                .unwrap()
                .devices[0]
                .info()
                .uuid
                .clone()
        };
        assert_eq!(uuid(&a), uuid(&a));
        assert_eq!(uuid(&a), uuid(&dir.path().join(".").join("a.json")));
        assert_ne!(uuid(&a), uuid(&b));
    }

    #[test]
    fn missing_scenario_names_the_file() {
        let clock = Arc::new(ManualClock::new());
        let e = open_devices(&DeviceSpec::Sim("/no/such.json".into()), clock).unwrap_err();
        assert!(e.to_string().contains("/no/such.json"));
    }

    #[test]
    fn auto_falling_back_to_rapl_says_no_gpu_was_measured_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("intel-rapl:0");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(pkg.join("name"), "package-0\n").unwrap();
        std::fs::write(pkg.join("max_energy_range_uj"), "262143328850\n").unwrap();
        std::fs::write(pkg.join("energy_uj"), "1000\n").unwrap();
        let clock = Arc::new(ManualClock::new());
        let o = open_devices_with_powercap(&DeviceSpec::Auto, clock, dir.path()).unwrap();
        if o.devices
            .iter()
            .any(|d| d.info().kind == crate::device::DeviceKind::NvmlGpu)
        {
            return; // a real GPU here: auto rightly took it
        }
        assert_eq!(o.devices.len(), 1);
        assert!(
            o.notices[0].contains("no GPU measured") && o.notices[0].contains("RAPL"),
            "{:?}",
            o.notices
        );
        // the reason NVML was not used travels with it
        assert!(o.notices[0].contains("nvml"), "{:?}", o.notices);
    }

    #[test]
    fn rapl_spec_uses_the_injected_root() {
        let clock = Arc::new(ManualClock::new());
        let dir = tempfile::tempdir().unwrap();
        let e = open_devices_with_powercap(&DeviceSpec::Rapl, clock, dir.path()).unwrap_err();
        assert!(matches!(e, Error::NoDevice(_)));
    }
}
