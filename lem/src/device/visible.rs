//! `CUDA_VISIBLE_DEVICES`, read as CUDA reads it, against the GPUs NVML enumerates.

use crate::error::{Error, Result};

/// A GPU NVML enumerates, as `CUDA_VISIBLE_DEVICES` resolution sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VisibleEntry {
    /// NVML index.
    pub nvml_index: u32,
    /// NVML UUID ("GPU-..."); `None` when it could not be read.
    pub uuid: Option<String>,
    /// Product name, where readable.
    pub name: Option<String>,
    /// Why this GPU cannot be used (NO_PERMISSION, GPU_IS_LOST...), if it cannot.
    pub problem: Option<String>,
}

/// The outcome of resolving `CUDA_VISIBLE_DEVICES`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Visible {
    /// NVML indices of the visible GPUs, in CUDA's order.
    pub indices: Vec<u32>,
    /// Notices: ignored entries, MIG devices measured as their parent GPU, index order.
    pub notices: Vec<String>,
    /// GPUs reached through a MIG entry (measured whole).
    pub mig_parents: Vec<u32>,
    /// The GPUs are of more than one model, so CUDA's default order (fastest first) may
    /// differ from NVML's (PCI bus) order.
    pub mixed_models: bool,
}

/// Resolve `CUDA_VISIBLE_DEVICES` against NVML's GPUs.
///
/// CUDA's rules: unset means every GPU; an empty value means none; entries are indices,
/// full or prefix `GPU-` UUIDs (the `GPU-` may be left out), MIG device UUIDs (`MIG-<uuid>`,
/// resolved through `mig_parent` to the parent GPU's UUID, and the older
/// `MIG-GPU-<uuid>/<gi>/<ci>`); the list ends at the first entry that matches no GPU.
/// Indices are NVML (PCI bus) order: with mixed GPU models and `CUDA_DEVICE_ORDER` other
/// than `PCI_BUS_ID` (`cuda_device_order`), CUDA may number them differently, and a notice
/// says so.
///
/// # Errors
/// [`Error::InvalidConfig`] naming `CUDA_VISIBLE_DEVICES` when a UUID prefix is ambiguous.
pub fn resolve_visible_devices(
    cuda_visible_devices: Option<&str>,
    cuda_device_order: Option<&str>,
    all: &[VisibleEntry],
    mig_parent: &dyn Fn(&str) -> Option<String>,
) -> Result<Visible> {
    let mut names: Vec<&str> = all.iter().filter_map(|e| e.name.as_deref()).collect();
    names.sort_unstable();
    names.dedup();
    let mut out = Visible {
        mixed_models: names.len() > 1,
        ..Visible::default()
    };
    let Some(value) = cuda_visible_devices else {
        out.indices = all.iter().map(|e| e.nvml_index).collect();
        return Ok(out);
    };
    let mut used_index = false;
    for raw in value.split(',') {
        let entry = raw.trim();
        if entry.is_empty() {
            break;
        }
        let via_mig = entry.starts_with("MIG-");
        used_index |= entry.parse::<u32>().is_ok();
        let found = lookup(entry, all, mig_parent)?;
        match found {
            Some(i) if via_mig => {
                if !out.mig_parents.contains(&i) {
                    out.notices.push(format!(
                        "CUDA_VISIBLE_DEVICES entry `{entry}` is a MIG device of GPU {i}: NVML cannot measure a MIG slice's energy, so lem measures the whole GPU (flagged mig)"
                    ));
                    out.mig_parents.push(i);
                }
                if !out.indices.contains(&i) {
                    out.indices.push(i);
                }
            }
            Some(i) if out.indices.contains(&i) => {
                out.notices.push(format!(
                    "CUDA_VISIBLE_DEVICES lists `{entry}` twice; like CUDA, lem ignores it and every entry after it"
                ));
                break;
            }
            Some(i) => out.indices.push(i),
            None => {
                let what = if via_mig { "MIG device" } else { "GPU" };
                out.notices.push(format!(
                    "CUDA_VISIBLE_DEVICES entry `{entry}` matches no {what}; like CUDA, lem ignores it and every entry after it"
                ));
                break;
            }
        }
    }
    if used_index && out.mixed_models && cuda_device_order != Some("PCI_BUS_ID") {
        out.notices.push(mixed_order_notice(&names));
    }
    Ok(out)
}

/// The NVML index one `CUDA_VISIBLE_DEVICES` entry names: an index, a (prefix of a) GPU
/// UUID, or a MIG device (its parent GPU).
fn lookup(
    entry: &str,
    all: &[VisibleEntry],
    mig_parent: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<u32>> {
    let by_uuid = |want: &str| -> Result<Option<u32>> {
        let hits: Vec<&VisibleEntry> = all
            .iter()
            .filter(|e| e.uuid.as_deref().is_some_and(|u| u.starts_with(want)))
            .collect();
        if hits.len() > 1 {
            return Err(Error::config(
                "CUDA_VISIBLE_DEVICES",
                format!(
                    "`{entry}` matches {} GPUs; give more of the UUID",
                    hits.len()
                ),
            ));
        }
        Ok(hits.first().map(|e| e.nvml_index))
    };
    if let Ok(i) = entry.parse::<u32>() {
        Ok(all.iter().find(|e| e.nvml_index == i).map(|e| e.nvml_index))
    } else if let Some(rest) = entry.strip_prefix("MIG-") {
        if let Some(old) = rest.strip_prefix("GPU-") {
            // MIG-GPU-<uuid>/<gi>/<ci>: the parent's UUID is in the name.
            let uuid = old.split('/').next().unwrap_or(old);
            by_uuid(&format!("GPU-{uuid}"))
        } else {
            match mig_parent(entry) {
                Some(parent) => by_uuid(&parent),
                None => Ok(None),
            }
        }
    } else if entry.starts_with("GPU-") {
        by_uuid(entry)
    } else {
        by_uuid(&format!("GPU-{entry}"))
    }
}

/// The warning for GPU indices on a node with mixed models.
pub(crate) fn mixed_order_notice(names: &[&str]) -> String {
    format!(
        "this node has mixed GPU models ({}) and CUDA_DEVICE_ORDER is not PCI_BUS_ID: CUDA numbers GPUs fastest first, NVML by PCI bus, so GPU indices may not match; set CUDA_DEVICE_ORDER=PCI_BUS_ID or use GPU UUIDs",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpus() -> Vec<VisibleEntry> {
        let e = |i: u32, uuid: &str| VisibleEntry {
            nvml_index: i,
            uuid: Some(uuid.into()),
            name: Some("H100".into()),
            problem: None,
        };
        vec![
            e(0, "GPU-aaaa1111"),
            e(1, "GPU-bbbb2222"),
            e(2, "GPU-bbbc3333"),
        ]
    }

    fn no_mig(_: &str) -> Option<String> {
        None
    }

    fn resolve(cvd: Option<&str>) -> Result<Visible> {
        resolve_visible_devices(cvd, None, &gpus(), &no_mig)
    }

    #[test]
    fn unset_means_all_and_empty_means_none() {
        assert_eq!(resolve(None).unwrap().indices, vec![0, 1, 2]);
        assert!(resolve(Some("")).unwrap().indices.is_empty());
    }

    #[test]
    fn indices_and_uuids_in_cuda_order() {
        let v = resolve(Some("2,0")).unwrap();
        assert_eq!(v.indices, vec![2, 0]);
        assert!(v.notices.is_empty());
        assert_eq!(
            resolve(Some("GPU-bbbb2222, 0")).unwrap().indices,
            vec![1, 0]
        );
        assert_eq!(resolve(Some("bbbc")).unwrap().indices, vec![2]);
        assert_eq!(resolve(Some("GPU-aaaa")).unwrap().indices, vec![0]);
    }

    #[test]
    fn invalid_entry_ends_the_list_like_cuda() {
        let v = resolve(Some("1,7,0")).unwrap();
        assert_eq!(v.indices, vec![1]);
        assert!(v.notices[0].contains("`7` matches no GPU"));
        let v = resolve(Some("0,1,0,2")).unwrap();
        assert_eq!(v.indices, vec![0, 1]);
        assert!(v.notices[0].contains("twice"));
    }

    #[test]
    fn ambiguous_uuid_prefix_is_an_error_naming_the_variable() {
        let e = resolve(Some("GPU-bbb")).unwrap_err();
        assert!(e.to_string().contains("CUDA_VISIBLE_DEVICES"));
    }

    #[test]
    fn mig_entries_resolve_to_their_parent_once() {
        let parent = |m: &str| (m == "MIG-1234" || m == "MIG-5678").then(|| "GPU-bbbb2222".into());
        let v = resolve_visible_devices(Some("MIG-1234,MIG-5678"), None, &gpus(), &parent).unwrap();
        assert_eq!(v.indices, vec![1]);
        assert_eq!(v.mig_parents, vec![1]);
        assert_eq!(v.notices.len(), 1, "{:?}", v.notices);
        assert!(v.notices[0].contains("MIG"));
        // the older form carries the parent's UUID
        let v = resolve(Some("MIG-GPU-aaaa1111/1/0")).unwrap();
        assert_eq!(v.indices, vec![0]);
        assert_eq!(v.mig_parents, vec![0]);
        // an unknown MIG device ends the list
        let v = resolve(Some("MIG-9999,0")).unwrap();
        assert!(v.indices.is_empty());
        assert!(v.notices[0].contains("matches no MIG device"));
    }

    #[test]
    fn mixed_models_with_indices_warn_unless_pci_bus_order() {
        let mut all = gpus();
        all[2].name = Some("A100".into());
        let v = resolve_visible_devices(Some("0,2"), None, &all, &no_mig).unwrap();
        assert!(v.mixed_models);
        assert!(v.notices.iter().any(|n| n.contains("CUDA_DEVICE_ORDER")));
        let v = resolve_visible_devices(Some("0,2"), Some("PCI_BUS_ID"), &all, &no_mig).unwrap();
        assert!(v.notices.is_empty());
        let v = resolve_visible_devices(Some("GPU-aaaa1111"), None, &all, &no_mig).unwrap();
        assert!(v.notices.is_empty(), "UUIDs are unambiguous");
    }

    #[test]
    fn unreadable_gpus_are_reachable_by_index_only() {
        let mut all = gpus();
        all[1].uuid = None;
        all[1].problem = Some("NO_PERMISSION".into());
        assert_eq!(
            resolve_visible_devices(Some("1"), None, &all, &no_mig)
                .unwrap()
                .indices,
            vec![1]
        );
        let v = resolve_visible_devices(Some("GPU-bbbb2222"), None, &all, &no_mig).unwrap();
        assert!(v.indices.is_empty());
    }
}
