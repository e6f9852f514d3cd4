//! One run's files in a raw experiment directory: which files a process already has there,
//! which files belong to the run being aggregated, and waiting for the other ranks.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cycles::{cycle_of, world_size_of, Item};
use super::schema::ExcludedFile;
use crate::error::{Error, Result};
use crate::results::output::ResultFile;

/// A new run identity: time, process and nanoseconds, unique enough to tell the runs of one
/// process index apart.
pub fn new_run_id() -> String {
    let now = crate::base::timefmt::unix_now_s();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}-{}-{nanos:08x}",
        crate::base::timefmt::compact_id(now),
        std::process::id()
    )
}

/// Whether `name` is a file that `lem run` writes for process `index`: `process_<i>.json`,
/// `process_<i>_cycle_<c>.json`, or the time series of either (`.json`, or its stream
/// `.jsonl`).
pub fn is_process_file(name: &str, index: u32) -> bool {
    let Some(rest) = name
        .strip_prefix(&format!("process_{index}"))
        .and_then(|r| {
            r.strip_suffix(".json")
                .or_else(|| r.strip_suffix("_timeseries.jsonl"))
        })
    else {
        return false;
    };
    let rest = rest.strip_suffix("_timeseries").unwrap_or(rest);
    rest.is_empty()
        || rest
            .strip_prefix("_cycle_")
            .is_some_and(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

/// The files process `index` already has in `dir` (none when `dir` does not exist), in
/// name order.
///
/// # Errors
/// [`Error::Io`] naming `dir` when it exists but cannot be read.
pub fn process_files(dir: &Path, index: u32) -> Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| is_process_file(n, index))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Wait up to `timeout` until each process 1..`world_size` has its result of cycle
/// `last_cycle` in `dir` (`process_<i>_cycle_<c>.json`, or `process_<i>.json` when `cycles`
/// is false); returns the processes still missing.
pub fn wait_for_ranks(
    dir: &Path,
    world_size: u32,
    (last_cycle, cycles): (u32, bool),
    timeout: Duration,
) -> Vec<u32> {
    let name = |i: u32| {
        if cycles {
            format!("process_{i}_cycle_{last_cycle}.json")
        } else {
            format!("process_{i}.json")
        }
    };
    let t = Instant::now();
    let mut missing: Vec<u32> = (1..world_size).collect();
    loop {
        missing.retain(|i| !dir.join(name(*i)).is_file());
        if missing.is_empty() || t.elapsed() >= timeout {
            return missing;
        }
        std::thread::sleep(Duration::from_millis(100).min(timeout));
    }
}

/// The run a result belongs to (`None` for a file from before runs were recorded) and the
/// cycles that run planned.
fn run_of(r: &ResultFile) -> (Option<&str>, Option<u64>) {
    let run = r.extra.get("run");
    (
        run.and_then(|v| v.get("id")).and_then(Value::as_str),
        run.and_then(|v| v.get("cycles")).and_then(Value::as_u64),
    )
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Keep only the files of the run being aggregated: per process index the latest run (by
/// start time), cycles below the number that run planned, and process indices below the
/// world size the newest file records (an earlier, larger run's higher ranks, which a new
/// run's `--overwrite` does not remove, are left out). The others are returned with their
/// reason.
pub(super) fn own_run<'a>(items: Vec<Item<'a>>) -> (Vec<Item<'a>>, Vec<ExcludedFile>) {
    let world = items
        .iter()
        .filter_map(|(_, r)| world_size_of(r).map(|w| (r.start_unix_s.unwrap_or(f64::MIN), w)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, w)| w);
    // per process index, each run's latest start
    let mut latest: BTreeMap<u32, BTreeMap<Option<&str>, f64>> = BTreeMap::new();
    for (_, r) in &items {
        let start = r.start_unix_s.unwrap_or(f64::MIN);
        let e = latest
            .entry(r.process_index)
            .or_default()
            .entry(run_of(r).0)
            .or_insert(f64::MIN);
        *e = e.max(start);
    }
    let chosen: BTreeMap<u32, Option<&str>> = latest
        .iter()
        .filter_map(|(i, runs)| {
            let best = runs
                .iter()
                .max_by(|a, b| a.1.total_cmp(b.1).then(a.0.cmp(b.0)))?;
            Some((*i, *best.0))
        })
        .collect();
    let several: BTreeSet<u32> = latest
        .iter()
        .filter(|(_, runs)| runs.len() > 1)
        .map(|(i, _)| *i)
        .collect();
    let mut kept = Vec::with_capacity(items.len());
    let mut excluded = Vec::new();
    for item in items {
        let (path, r) = item;
        let (run, planned) = run_of(r);
        let i = r.process_index;
        let reason = if let Some(w) = world.filter(|w| i >= *w) {
            Some(format!("process index {i} is outside the world size {w}"))
        } else if several.contains(&i) && chosen.get(&i) != Some(&run) {
            Some(format!(
                "from an earlier run of process {i} (run {}): only its latest run is aggregated",
                run.unwrap_or("not recorded")
            ))
        } else {
            planned.filter(|n| cycle_of(r) >= *n).map(|n| {
                format!(
                    "cycle {} is beyond the {n} cycle(s) its run planned",
                    cycle_of(r)
                )
            })
        };
        match reason {
            Some(reason) => excluded.push(ExcludedFile {
                file: file_name(path),
                reason,
            }),
            None => kept.push(item),
        }
    }
    (kept, excluded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_files_are_recognised_by_name() {
        for ok in [
            "process_3.json",
            "process_3_timeseries.json",
            "process_3_cycle_0.json",
            "process_3_cycle_12_timeseries.json",
            "process_3_timeseries.jsonl",
            "process_3_cycle_12_timeseries.jsonl",
        ] {
            assert!(is_process_file(ok, 3), "{ok}");
        }
        for not in [
            "process_30.json",
            "process_3_cycle_.json",
            "process_3_cycle_x.json",
            "process_3.json.tmp",
            "process_3.jsonl",
            "process_2.json",
        ] {
            assert!(!is_process_file(not, 3), "{not}");
        }
    }
}
