//! One experiment's cycles: per cycle, the processes checked (complete, distinct,
//! overlapping) and each physical device counted once.

use super::schema::{AggregateDevice, CycleRow};
use crate::results::output::ResultFile;
use std::collections::{BTreeMap, BTreeSet};

/// One result file and where it was read from.
pub(super) type Item<'a> = &'a (std::path::PathBuf, ResultFile);

/// One physical device: (host identity, id) for an id unique only within its host (a RAPL
/// domain), ("", UUID) for a GPU, whose UUID is unique wherever it is seen from (two
/// containers on one node sharing a GPU see the same UUID under different hostnames).
pub(super) type DeviceKey = (String, String);

/// The key of device `uuid` as seen by result `r`.
pub(super) fn device_key(r: &ResultFile, uuid: &str) -> DeviceKey {
    if crate::device::is_host_local_id(uuid) {
        let host = r
            .environment
            .as_ref()
            .and_then(|e| e.host_id.clone())
            .unwrap_or_else(|| host_of(r));
        (host, uuid.to_string())
    } else {
        (String::new(), uuid.to_string())
    }
}

/// One physical device in one cycle, from the process whose window saw the most of it.
#[derive(Debug, Clone)]
struct SeenDevice {
    host: String,
    name: String,
    raw_j: Option<f64>,
    adjusted_j: Option<f64>,
    measured_by: Vec<u32>,
    uncertainty_j: Option<f64>,
    adjusted_uncertainty_j: Option<f64>,
}

/// Every cycle combined.
#[derive(Debug, Default)]
pub(super) struct Cycles {
    /// One row per cycle, in cycle order.
    pub rows: Vec<CycleRow>,
    /// Each physical device, summed over cycles.
    pub devices: BTreeMap<DeviceKey, AggregateDevice>,
    /// Every process index seen.
    pub process_indices: BTreeSet<u32>,
    /// The distinct energy methods seen.
    pub methods: BTreeSet<String>,
}

pub(super) fn cycle_of(r: &ResultFile) -> u64 {
    r.extra
        .get("cycle")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

pub(super) fn host_of(r: &ResultFile) -> String {
    r.environment
        .as_ref()
        .and_then(|e| e.hostname.clone())
        .unwrap_or_else(|| "unknown-host".into())
}

/// The sum, unknown if any part is; `None` for no parts.
pub(super) fn sum_all(it: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut any = false;
    let mut total = 0.0;
    for v in it {
        total += v?;
        any = true;
    }
    any.then_some(total)
}

/// The world size recorded in a result file (`lem run --world-size` or the launcher's).
pub(super) fn world_size_of(r: &ResultFile) -> Option<u32> {
    r.extra
        .get("world_size")
        .and_then(serde_json::Value::as_u64)
        .and_then(|w| u32::try_from(w).ok())
}

/// The world size the results recorded: the largest, with a problem when they disagree.
fn recorded_world_size(results: &[Item<'_>], problems: &mut Vec<String>) -> Option<u32> {
    let sizes: BTreeSet<u32> = results
        .iter()
        .filter_map(|(_, r)| world_size_of(r))
        .collect();
    if sizes.len() > 1 {
        problems.push(format!(
            "the processes disagree on the world size: {sizes:?}"
        ));
    }
    sizes.last().copied()
}

/// Processes present in some cycles but not in others.
fn check_across_cycles(by_cycle: &BTreeMap<u64, Vec<&ResultFile>>, problems: &mut Vec<String>) {
    if by_cycle.len() < 2 {
        return;
    }
    let mut cycles_of: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    for (cycle, procs) in by_cycle {
        for r in procs {
            cycles_of.entry(r.process_index).or_default().insert(*cycle);
        }
    }
    for (i, seen) in cycles_of {
        let absent: Vec<u64> = by_cycle
            .keys()
            .filter(|c| !seen.contains(c))
            .copied()
            .collect();
        if !absent.is_empty() {
            problems.push(format!(
                "process {i} has results in some cycles but none in cycle(s) {absent:?}"
            ));
        }
    }
}

/// Combine the results cycle by cycle; what looks wrong goes to `problems`.
pub(super) fn combine(
    results: &[Item<'_>],
    clock_skew_s: f64,
    problems: &mut Vec<String>,
) -> Cycles {
    let mut by_cycle: BTreeMap<u64, Vec<&ResultFile>> = BTreeMap::new();
    for (_, r) in results {
        by_cycle.entry(cycle_of(r)).or_default().push(r);
    }
    let world = recorded_world_size(results, problems);
    // expected indices: 0..world size, else 0..the highest index seen in any cycle
    let expected = world.unwrap_or_else(|| {
        results
            .iter()
            .map(|(_, r)| r.process_index.saturating_add(1))
            .max()
            .unwrap_or(0)
    });
    check_across_cycles(&by_cycle, problems);
    let mut out = Cycles::default();
    for (cycle, procs) in &by_cycle {
        let label = if by_cycle.len() > 1 {
            format!("cycle {cycle}: ")
        } else {
            String::new()
        };
        out.process_indices.extend(check_processes(
            &label,
            procs,
            (expected, world.is_some()),
            clock_skew_s,
            problems,
        ));
        let span = span_of(procs);
        let seen = seen_devices(procs, &mut out.methods);
        for ((_, uuid), d) in &seen {
            if d.measured_by.len() > 1 {
                problems.push(format!(
                    "{label}device {uuid} on {} was measured by processes {:?}: counted once",
                    d.host, d.measured_by
                ));
            }
        }
        let row = cycle_row(*cycle, procs, &seen, span);
        add_to_devices(&mut out.devices, seen);
        out.rows.push(row);
    }
    out
}

/// The distinct process indices of one cycle; duplicates, gaps in 0..N−1 (N the world
/// size when `known`, else one more than the highest index of any cycle), indices outside
/// it and processes that did not overlap in time are problems.
fn check_processes(
    label: &str,
    procs: &[&ResultFile],
    (n, known): (u32, bool),
    clock_skew_s: f64,
    problems: &mut Vec<String>,
) -> BTreeSet<u32> {
    let mut idx: Vec<u32> = procs.iter().map(|r| r.process_index).collect();
    idx.sort_unstable();
    let distinct: BTreeSet<u32> = idx.iter().copied().collect();
    if distinct.len() != idx.len() {
        let dup: BTreeSet<u32> = idx
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        problems.push(format!("{label}duplicate process indices {dup:?}"));
    }
    let missing: Vec<u32> = (0..n).filter(|i| !distinct.contains(i)).collect();
    let basis = if known {
        format!(" (world size {n})")
    } else {
        String::new()
    };
    if !missing.is_empty() {
        problems.push(format!(
            "{label}incomplete: process indices should be 0..{}{basis}, missing {missing:?}",
            n.saturating_sub(1)
        ));
    }
    let outside: Vec<u32> = distinct.range(n..).copied().collect();
    if !outside.is_empty() {
        problems.push(format!(
            "{label}process indices {outside:?} are outside the world size {n}"
        ));
    }
    // processes of one cycle run together: their windows must overlap
    let starts: Vec<f64> = procs.iter().filter_map(|r| r.start_unix_s).collect();
    let ends: Vec<f64> = procs.iter().filter_map(|r| r.end_unix_s).collect();
    if procs.len() > 1 && starts.len() == procs.len() && ends.len() == procs.len() {
        let latest_start = starts.iter().copied().fold(f64::MIN, f64::max);
        let earliest_end = ends.iter().copied().fold(f64::MAX, f64::min);
        if latest_start > earliest_end + clock_skew_s {
            problems.push(format!(
                "{label}processes did not overlap in time (one ended {:.3} s before another started, more than the {clock_skew_s} s allowed for clock skew between hosts): they may not belong to one run",
                latest_start - earliest_end
            ));
        }
    }
    distinct
}

/// A cycle's time span: first start to last end where every process has them, else its
/// longest window.
fn span_of(procs: &[&ResultFile]) -> f64 {
    let starts: Vec<f64> = procs.iter().filter_map(|r| r.start_unix_s).collect();
    let ends: Vec<f64> = procs.iter().filter_map(|r| r.end_unix_s).collect();
    match (
        starts.iter().copied().reduce(f64::min),
        ends.iter().copied().reduce(f64::max),
    ) {
        (Some(s), Some(e)) if starts.len() == procs.len() => e - s,
        _ => procs
            .iter()
            .map(|r| r.report.duration_s)
            .fold(0.0, f64::max),
    }
}

/// Each physical device of a cycle once: the process whose window saw the most of it.
fn seen_devices(
    procs: &[&ResultFile],
    methods: &mut BTreeSet<String>,
) -> BTreeMap<DeviceKey, SeenDevice> {
    let mut seen: BTreeMap<DeviceKey, SeenDevice> = BTreeMap::new();
    for r in procs {
        for d in &r.report.devices {
            if let Some(m) = d.energy.method {
                methods.insert(format!("{m:?}"));
            }
            let e = seen
                .entry(device_key(r, &d.uuid))
                .or_insert_with(|| SeenDevice {
                    host: host_of(r),
                    name: d.name.clone(),
                    raw_j: d.energy.raw_j,
                    adjusted_j: d.energy.adjusted_j,
                    measured_by: Vec::new(),
                    uncertainty_j: d.energy.uncertainty_j,
                    adjusted_uncertainty_j: d.energy.adjusted_uncertainty_j,
                });
            if !e.measured_by.is_empty() && d.energy.raw_j.unwrap_or(0.0) > e.raw_j.unwrap_or(0.0) {
                e.raw_j = d.energy.raw_j;
                e.adjusted_j = d.energy.adjusted_j;
                e.uncertainty_j = d.energy.uncertainty_j;
                e.adjusted_uncertainty_j = d.energy.adjusted_uncertainty_j;
            }
            e.measured_by.push(r.process_index);
        }
    }
    seen
}

/// One cycle's totals over its distinct devices.
fn cycle_row(
    cycle: u64,
    procs: &[&ResultFile],
    seen: &BTreeMap<DeviceKey, SeenDevice>,
    span: f64,
) -> CycleRow {
    let raw = sum_all(seen.values().map(|v| v.raw_j));
    let adjusted = sum_all(seen.values().map(|v| v.adjusted_j));
    CycleRow {
        cycle,
        num_processes: procs.len(),
        raw_j: raw,
        adjusted_j: adjusted,
        uncertainty_j: raw.and(sum_all(seen.values().map(|v| v.uncertainty_j))),
        adjusted_uncertainty_j: adjusted
            .and(sum_all(seen.values().map(|v| v.adjusted_uncertainty_j))),
        duration_s: span,
        start_temp_c: procs
            .iter()
            .flat_map(|r| {
                r.report
                    .devices
                    .iter()
                    .filter_map(|d| d.temperature.start_c)
            })
            .reduce(f64::max),
        throttle_duration_s: longest(procs, |r| r.report.thermal.throttle_duration_s),
        thermal_duration_s: longest(procs, |r| r.report.thermal.thermal_duration_s),
        power_duration_s: longest(procs, |r| r.report.thermal.power_duration_s),
    }
}

/// The largest of `f` over the processes of a cycle.
fn longest(procs: &[&ResultFile], f: impl Fn(&ResultFile) -> f64) -> Option<f64> {
    procs.iter().map(|r| f(r)).reduce(f64::max)
}

/// Add a cycle's devices to the experiment's totals.
fn add_to_devices(
    devices: &mut BTreeMap<DeviceKey, AggregateDevice>,
    seen: BTreeMap<DeviceKey, SeenDevice>,
) {
    for (key, s) in seen {
        let d = devices
            .entry(key.clone())
            .or_insert_with(|| AggregateDevice {
                host: s.host,
                uuid: key.1,
                name: s.name,
                raw_j: Some(0.0),
                adjusted_j: Some(0.0),
                measured_by: Vec::new(),
            });
        d.raw_j = d.raw_j.zip(s.raw_j).map(|(x, y)| x + y);
        d.adjusted_j = d.adjusted_j.zip(s.adjusted_j).map(|(x, y)| x + y);
        d.measured_by.extend(s.measured_by);
    }
    for d in devices.values_mut() {
        d.measured_by.sort_unstable();
        d.measured_by.dedup();
    }
}
