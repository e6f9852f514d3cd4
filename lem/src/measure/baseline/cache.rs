//! The per-device baseline cache: one JSON file per device UUID, written atomically, read
//! back only for the device it belongs to.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::base::cache::{ensure_private_dir, file_safe, write_atomic};
use crate::error::{Error, Result};

/// The cache file format this lem writes and reads.
pub(crate) const CACHE_FORMAT: u32 = 1;

/// What the cache file of one device holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheEntry {
    /// Cache format version.
    pub lem_baseline: u32,
    /// Device UUID (the file is ignored if it does not match).
    pub uuid: String,
    /// Device name.
    pub device_name: String,
    /// Idle power, W.
    pub power_w: f64,
    /// When measured, Unix s.
    pub timestamp_unix_s: f64,
    /// When measured, RFC 3339.
    pub timestamp: String,
    /// Measurement length, s.
    pub duration_s: f64,
    /// Power samples taken.
    pub sample_count: u64,
    /// Coefficient of variation of the samples.
    pub power_cv: Option<f64>,
    /// Mean utilisation, %.
    pub mean_utilisation_pct: Option<f64>,
    /// Mean temperature, °C.
    #[serde(default)]
    pub idle_temperature_c: Option<f64>,
    /// Simulated device.
    pub simulated: bool,
}

/// The cache file of the device with `uuid`.
pub fn cache_path(dir: &Path, uuid: &str) -> PathBuf {
    dir.join(format!("baseline-{}.json", file_safe(uuid)))
}

/// Read one cache file. `Ok(None)` when there is none; `Err(warning)` when it is corrupted
/// or belongs to another device.
pub fn read_cache(path: &Path, uuid: &str) -> std::result::Result<Option<CacheEntry>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("ignoring baseline cache {}: {e}", path.display())),
    };
    let entry: CacheEntry = serde_json::from_str(&text).map_err(|e| {
        format!(
            "ignoring corrupted baseline cache {} ({e}); measuring again",
            path.display()
        )
    })?;
    if entry.uuid != uuid || entry.lem_baseline != CACHE_FORMAT {
        return Err(format!(
            "ignoring baseline cache {}: it belongs to {} (format {}), not {uuid}; measuring again",
            path.display(),
            entry.uuid,
            entry.lem_baseline
        ));
    }
    if !(entry.power_w.is_finite() && entry.power_w >= 0.0 && entry.timestamp_unix_s.is_finite()) {
        return Err(format!(
            "ignoring corrupted baseline cache {}: invalid values; measuring again",
            path.display()
        ));
    }
    Ok(Some(entry))
}

/// Write one cache entry atomically (temp file + rename: racing writers never leave a
/// half-written file, the last rename wins).
///
/// # Errors
/// [`Error::Io`] naming the directory or file.
pub fn write_cache(dir: &Path, entry: &CacheEntry) -> Result<PathBuf> {
    ensure_private_dir(dir)?;
    let path = cache_path(dir, &entry.uuid);
    let json = serde_json::to_vec_pretty(entry)?;
    write_atomic(&path, &json)?;
    Ok(path)
}

/// Every cache file in `dir`, parsed (errors as text).
pub fn list_cache(dir: &Path) -> Vec<(PathBuf, std::result::Result<CacheEntry, String>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, std::result::Result<CacheEntry, String>)> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("baseline-") && n.ends_with(".json"))
        })
        .map(|p| {
            let r = std::fs::read_to_string(&p)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str::<CacheEntry>(&t).map_err(|e| e.to_string()));
            (p, r)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Delete every cache file in `dir`; returns how many were removed.
///
/// # Errors
/// [`Error::Io`] naming the file that could not be removed.
pub fn clear_cache(dir: &Path) -> Result<usize> {
    let mut n = 0;
    for (p, _) in list_cache(dir) {
        std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::base::timefmt::rfc3339;

    #[test]
    fn racing_writers_never_leave_a_torn_cache_file() {
        let dir = tempfile::tempdir().unwrap();
        let entry = |w: f64| CacheEntry {
            lem_baseline: CACHE_FORMAT,
            uuid: "GPU-race".into(),
            device_name: "x".into(),
            power_w: w,
            timestamp_unix_s: 0.0,
            timestamp: rfc3339(0.0),
            duration_s: 30.0,
            sample_count: 300,
            power_cv: Some(0.01),
            mean_utilisation_pct: Some(0.0),
            idle_temperature_c: None,
            simulated: false,
        };
        std::thread::scope(|s| {
            for t in 0..8 {
                let d = dir.path();
                s.spawn(move || {
                    for i in 0..20 {
                        write_cache(d, &entry(f64::from(t * 100 + i))).unwrap();
                    }
                });
            }
            // a reader during the race only ever sees a complete file
            for _ in 0..200 {
                if let Err(e) = read_cache(&cache_path(dir.path(), "GPU-race"), "GPU-race") {
                    panic!("torn read: {e}");
                }
            }
        });
        let last = read_cache(&cache_path(dir.path(), "GPU-race"), "GPU-race")
            .unwrap()
            .unwrap();
        assert!(last.power_w >= 0.0);
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files left behind");
    }

    #[cfg(unix)]
    #[test]
    fn cache_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/lem");
        let entry = CacheEntry {
            lem_baseline: CACHE_FORMAT,
            uuid: "GPU-x/y".into(),
            device_name: "x".into(),
            power_w: 1.0,
            timestamp_unix_s: 0.0,
            timestamp: rfc3339(0.0),
            duration_s: 1.0,
            sample_count: 1,
            power_cv: None,
            mean_utilisation_pct: None,
            idle_temperature_c: None,
            simulated: true,
        };
        let p = write_cache(&sub, &entry).unwrap();
        assert_eq!(p.file_name().unwrap(), "baseline-GPU-x_y.json");
        let mode = std::fs::metadata(&sub).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(list_cache(&sub).len(), 1);
        assert_eq!(clear_cache(&sub).unwrap(), 1);
        assert!(list_cache(&sub).is_empty());
    }
}
