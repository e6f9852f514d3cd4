//! CPU package energy through RAPL (Linux powercap sysfs).
//!
//! `energy_uj` is a wrapping counter: it restarts from zero after `max_energy_range_uj`.
//! lem keeps the number of wraps it has seen, so the counter it reports is monotonic as long
//! as it is read more often than the wrap period (minutes to hours; the sampler reads it
//! every interval). Since Linux 5.10 `energy_uj` is readable by root only.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::sensor::SensorProfile;
use super::source::{DeviceInfo, DeviceKind, EnergySource, PowerSource, Reading};
use crate::base::clock::Clock;
use crate::error::{Error, Result};

/// Where the kernel exposes powercap.
pub const DEFAULT_POWERCAP_ROOT: &str = "/sys/class/powercap";

/// Where a host's identity is read from, in order: the kernel's boot id (every container on a
/// host sees the same one, and no two hosts share it; it changes at a reboot, which no run
/// spans), else the machine id (a file of the OS image: a container image copied to many
/// nodes can carry the same one everywhere, so it is only the fallback).
pub const HOST_ID_SOURCES: [&str; 2] = ["/proc/sys/kernel/random/boot_id", "/etc/machine-id"];

/// The identity of the host RAPL domains belong to: a hash of the first readable, non-empty
/// file of `sources` (the id itself is not recorded), prefixed by where it came from
/// (`machine-` or `boot-`); `None` when none can be read. RAPL ids (`rapl-package-0`) repeat
/// on every host, so aggregation tells hosts apart with this.
pub fn host_identity_from(sources: &[&str]) -> Option<String> {
    sources.iter().find_map(|p| {
        let id = std::fs::read_to_string(p).ok()?;
        let id = id.trim();
        if id.is_empty() {
            return None;
        }
        let kind = if p.contains("boot_id") {
            "boot"
        } else {
            "machine"
        };
        let h = crate::base::seeded::fnv1a(format!("lem-host:{id}").as_bytes());
        Some(format!("{kind}-{h:016x}"))
    })
}

/// [`host_identity_from`] the [`HOST_ID_SOURCES`].
pub fn host_identity() -> Option<String> {
    host_identity_from(&HOST_ID_SOURCES)
}

/// Whether a device id is only unique within its host (a RAPL domain), so that identifying
/// the physical device also needs the host's identity.
pub fn is_host_local_id(uuid: &str) -> bool {
    uuid.starts_with("rapl-")
}

#[derive(Debug, Default)]
struct State {
    last_raw_uj: Option<u64>,
    wrapped_uj: u64,
    /// Counter (µJ, unwrapped) and time (s) at the sampler's previous read.
    last_read: Option<(u64, f64)>,
}

/// One RAPL package domain (`intel-rapl:N`).
#[derive(Debug)]
pub struct RaplDomain {
    info: DeviceInfo,
    energy_path: PathBuf,
    max_range_uj: u64,
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
}

fn read_error(path: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        Error::RaplPermission {
            path: path.to_path_buf(),
        }
    } else {
        Error::io(path, e)
    }
}

fn read_trimmed(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| read_error(path, e))
}

fn read_u64(path: &Path) -> Result<u64> {
    let s = read_trimmed(path)?;
    s.parse().map_err(|_| Error::BadFile {
        path: path.to_path_buf(),
        reason: format!("expected an integer, found `{s}`"),
    })
}

impl RaplDomain {
    /// Find every package domain under `root` (normally [`DEFAULT_POWERCAP_ROOT`]), numbering
    /// them from `first_index`.
    ///
    /// # Errors
    /// [`Error::NoDevice`] when there is no package domain, [`Error::RaplPermission`] when
    /// the counters exist but are unreadable, [`Error::Io`] for other read failures.
    pub fn discover(root: &Path, clock: Arc<dyn Clock>, first_index: u32) -> Result<Vec<Self>> {
        let entries = std::fs::read_dir(root).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NoDevice(format!("RAPL: {} does not exist", root.display()))
            } else {
                Error::io(root, e)
            }
        })?;
        let mut dirs: Vec<(u32, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                // Package domains are `intel-rapl:N`; `intel-rapl:N:M` are their sub-domains.
                let n = name.strip_prefix("intel-rapl:")?.parse::<u32>().ok()?;
                Some((n, e.path()))
            })
            .collect();
        dirs.sort();
        if dirs.is_empty() {
            return Err(Error::NoDevice(format!(
                "RAPL: no intel-rapl package domain under {}",
                root.display()
            )));
        }
        let mut out = Vec::new();
        for (i, (n, dir)) in dirs.into_iter().enumerate() {
            let label = read_trimmed(&dir.join("name")).unwrap_or_else(|_| format!("package-{n}"));
            let max_range_uj = read_u64(&dir.join("max_energy_range_uj"))?;
            let energy_path = dir.join("energy_uj");
            read_u64(&energy_path)?;
            let index = first_index + u32::try_from(i).unwrap_or(u32::MAX - first_index);
            out.push(Self {
                info: DeviceInfo {
                    index,
                    kind: DeviceKind::RaplCpu,
                    name: format!("CPU {label} (RAPL)"),
                    uuid: format!("rapl-{label}"),
                    nvml_index: None,
                    pci_bus_id: None,
                    compute_capability: None,
                    memory_total_mb: None,
                    power_limit_w: None,
                    mig: false,
                    simulated: false,
                    energy_counter: true,
                    counter_update_s: 0.001,
                    counter_step_j: 1e-6,
                    power_source: PowerSource::CounterDelta,
                    architecture: None,
                    sensor: SensorProfile::rapl(),
                },
                energy_path,
                max_range_uj,
                state: Mutex::new(State::default()),
                clock: clock.clone(),
            });
        }
        Ok(out)
    }

    /// The unwrapped counter in µJ.
    fn counter_uj(&self, st: &mut State) -> Result<u64> {
        let raw = read_u64(&self.energy_path)?;
        if let Some(last) = st.last_raw_uj {
            if raw < last {
                st.wrapped_uj = st.wrapped_uj.saturating_add(self.max_range_uj);
            }
        }
        st.last_raw_uj = Some(raw);
        Ok(st.wrapped_uj.saturating_add(raw))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another reader panicked mid-read; the state is a few
        // integers that are always consistent, so keep using it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl EnergySource for RaplDomain {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn energy_j(&self) -> Result<f64> {
        let mut st = self.lock();
        Ok(self.counter_uj(&mut st)? as f64 / 1e6)
    }

    fn read(&self) -> Result<Reading> {
        let mut st = self.lock();
        let now_uj = self.counter_uj(&mut st)?;
        let t = self.clock.now().as_secs_f64();
        let power_w = st.last_read.and_then(|(uj, t0)| {
            let dt = t - t0;
            (dt > 0.0).then(|| now_uj.saturating_sub(uj) as f64 / 1e6 / dt)
        });
        st.last_read = Some((now_uj, t));
        Ok(Reading {
            power_w,
            power_source: power_w.map(|_| PowerSource::CounterDelta),
            ..Reading::default()
        })
    }

    fn temperature_c(&self) -> Option<f64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::clock::ManualClock;

    fn fake_tree(max: u64, energy: u64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("intel-rapl:0");
        std::fs::create_dir_all(pkg.join("intel-rapl:0:0")).unwrap();
        std::fs::create_dir_all(dir.path().join("intel-rapl:0:0")).unwrap();
        std::fs::write(pkg.join("name"), "package-0\n").unwrap();
        std::fs::write(pkg.join("max_energy_range_uj"), format!("{max}\n")).unwrap();
        std::fs::write(pkg.join("energy_uj"), format!("{energy}\n")).unwrap();
        dir
    }

    fn set(dir: &tempfile::TempDir, energy: u64) {
        let p = dir.path().join("intel-rapl:0/energy_uj");
        std::fs::write(p, format!("{energy}\n")).unwrap();
    }

    #[test]
    fn host_identity_is_the_first_readable_id_hashed() {
        let d = tempfile::tempdir().unwrap();
        let mid = d.path().join("machine-id");
        let boot = d.path().join("boot_id");
        std::fs::write(&boot, "b0\n").unwrap();
        let (m, b) = (mid.to_str().unwrap(), boot.to_str().unwrap());
        // the boot id first: the kernel's, the same in every container of a host
        std::fs::write(&mid, "abc123\n").unwrap();
        let from_boot = host_identity_from(&[b, m]).unwrap();
        assert!(from_boot.starts_with("boot-"), "{from_boot}");
        assert_eq!(HOST_ID_SOURCES[0], "/proc/sys/kernel/random/boot_id");
        std::fs::write(&boot, "\n").unwrap();
        let a = host_identity_from(&[b, m]).unwrap();
        assert!(
            a.starts_with("machine-") && !a.contains("abc123"),
            "empty is skipped: {a}"
        );
        std::fs::write(&mid, "abc124").unwrap();
        assert_ne!(host_identity_from(&[b, m]).unwrap(), a);
        assert_eq!(host_identity_from(&["/no/such/file"]), None);
    }

    #[test]
    fn finds_packages_not_subdomains() {
        let dir = fake_tree(1_000_000, 5);
        let clock = Arc::new(ManualClock::new());
        let d = RaplDomain::discover(dir.path(), clock, 0).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].info().name, "CPU package-0 (RAPL)");
        assert_eq!(d[0].info().uuid, "rapl-package-0");
    }

    #[test]
    fn counter_unwraps_and_power_comes_from_deltas() {
        let dir = fake_tree(1_000_000, 900_000);
        let clock = Arc::new(ManualClock::new());
        let d = RaplDomain::discover(dir.path(), clock.clone(), 0)
            .unwrap()
            .remove(0);
        assert!(
            d.read().unwrap().power_w.is_none(),
            "first read has no delta"
        );
        let e0 = d.energy_j().unwrap();
        // 0.3 J later the counter wrapped: 900_000 + 300_000 - 1_000_000 = 200_000.
        clock.advance_s(0.5);
        set(&dir, 200_000);
        let r = d.read().unwrap();
        assert!((r.power_w.unwrap() - 0.6).abs() < 1e-9, "{r:?}");
        let e1 = d.energy_j().unwrap();
        assert!((e1 - e0 - 0.3).abs() < 1e-9);
        // a second wrap
        set(&dir, 100_000);
        let e2 = d.energy_j().unwrap();
        assert!((e2 - e0 - 1.2).abs() < 1e-9);
    }

    #[test]
    fn missing_tree_is_no_device() {
        let clock = Arc::new(ManualClock::new());
        let e = RaplDomain::discover(Path::new("/nonexistent/powercap"), clock, 0).unwrap_err();
        assert!(matches!(e, Error::NoDevice(_)), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn permission_denied_mentions_root_and_linux_5_10() {
        use std::os::unix::fs::PermissionsExt;
        let dir = fake_tree(1_000_000, 5);
        let f = dir.path().join("intel-rapl:0/energy_uj");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o000)).unwrap();
        if std::fs::read(&f).is_ok() {
            // Running as root: file permissions do not apply, so check the mapping directly.
            let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
            let msg = read_error(&f, denied).to_string();
            assert!(msg.contains("energy_uj") && msg.contains("root") && msg.contains("5.10"));
            return;
        }
        let clock = Arc::new(ManualClock::new());
        let e = RaplDomain::discover(dir.path(), clock, 0).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::RaplPermission { .. }));
        assert!(msg.contains("root") && msg.contains("5.10"), "{msg}");
    }
}
