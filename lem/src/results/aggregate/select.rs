//! Which result files an aggregate combines: cycles whose command failed or was interrupted
//! are left out unless asked for.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::cycles::{cycle_of, Item};
use super::schema::ExcludedCycle;
use crate::error::{Error, Result};
use crate::results::output::ResultFile;

/// Why a result does not count as a clean run of its command: interrupted, a non-zero exit
/// or a fatal signal (`None` for a clean run, or a result with no command, such as a bench).
pub fn failure_of(r: &ResultFile) -> Option<String> {
    let i = r.process_index;
    if r.extra.get("interrupted").and_then(Value::as_bool) == Some(true) {
        return Some(format!("process {i} was interrupted"));
    }
    let cmd = r.extra.get("command")?;
    let code = cmd.get("exit_code").and_then(Value::as_i64);
    let signal = cmd.get("signal").and_then(Value::as_i64);
    match (code, signal) {
        (Some(0), _) | (None, None) => None,
        (Some(c), _) => Some(format!("process {i}: the command exited {c}")),
        (None, Some(s)) => Some(format!("process {i}: the command was killed by signal {s}")),
    }
}

/// Each cycle's failures, in cycle order (cycles without one are absent).
fn failures_by_cycle(items: &[Item<'_>]) -> BTreeMap<u64, Vec<String>> {
    let mut out: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (_, r) in items {
        if let Some(f) = failure_of(r) {
            out.entry(cycle_of(r)).or_default().push(f);
        }
    }
    out
}

/// Whether every cycle of these results failed or was interrupted (so that excluding them
/// would leave nothing).
pub fn every_cycle_failed(results: &[(PathBuf, ResultFile)]) -> bool {
    let items: Vec<Item<'_>> = results.iter().collect();
    let failed = failures_by_cycle(&items);
    !items.is_empty() && items.iter().all(|(_, r)| failed.contains_key(&cycle_of(r)))
}

/// Leave out the cycles in which any process failed or was interrupted (keep them with
/// `include_failed`); each is reported in `notes`.
///
/// # Errors
/// [`Error::BadFile`] naming `origin` when every cycle failed and `include_failed` is off.
pub(super) fn drop_failed_cycles<'a>(
    origin: &Path,
    items: Vec<Item<'a>>,
    include_failed: bool,
    notes: &mut Vec<String>,
) -> Result<(Vec<Item<'a>>, Vec<ExcludedCycle>)> {
    let failed = failures_by_cycle(&items);
    if failed.is_empty() {
        return Ok((items, Vec::new()));
    }
    let mut excluded = Vec::new();
    for (cycle, reasons) in &failed {
        let reason = reasons.join(", ");
        if include_failed {
            notes.push(format!(
                "cycle {cycle} is included although {reason} (--include-failed)"
            ));
        } else {
            notes.push(format!(
                "cycle {cycle} left out of the totals and statistics: {reason} (--include-failed keeps it)"
            ));
            excluded.push(ExcludedCycle {
                cycle: *cycle,
                reason,
            });
        }
    }
    if include_failed {
        return Ok((items, excluded));
    }
    let kept: Vec<Item<'a>> = items
        .into_iter()
        .filter(|(_, r)| !failed.contains_key(&cycle_of(r)))
        .collect();
    if kept.is_empty() {
        let all: Vec<&str> = excluded.iter().map(|e| e.reason.as_str()).collect();
        return Err(Error::BadFile {
            path: origin.to_path_buf(),
            reason: format!(
                "every cycle failed or was interrupted ({}): nothing to aggregate; --include-failed aggregates them anyway",
                all.join("; ")
            ),
        });
    }
    Ok((kept, excluded))
}
