//! With `--cycles`, the aggregate of a run: exactly one writer (process 0, after waiting a
//! bounded time for the other processes' results).

use std::path::Path;
use std::time::Duration;

use super::RunArgs;
use crate::signals;
use crate::ui::Ui;
use crate::Failure;

/// `--aggregate-wait-s`.
pub(super) fn aggregate_wait(a: &RunArgs) -> Result<Duration, Failure> {
    if a.aggregate_wait_s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    Ok(lem::parse_seconds(
        "--aggregate-wait-s",
        &a.aggregate_wait_s,
    )?)
}

/// One writer per experiment: process 0 waits (bounded) for the other processes' last
/// cycle and aggregates; the others leave it to process 0 or `lem aggregate`.
pub(super) fn aggregate_as_process_0(
    ui: &Ui,
    a: &RunArgs,
    output: &Path,
    exp_dir: &Path,
    (process_index, world_size): (u32, Option<u32>),
    last_cycle: u32,
) -> Result<(), Failure> {
    if process_index != 0 {
        ui.say(format!(
            "process {process_index}: process 0 writes the aggregate (or run `lem aggregate {}`)",
            exp_dir.display()
        ));
        return Ok(());
    }
    // an interrupted run does not keep the user waiting for the others
    if let Some(w) = world_size.filter(|w| *w > 1 && signals::received().is_none()) {
        let wait = aggregate_wait(a)?;
        ui.say(format!(
            "waiting up to {:.0} s for the results of processes 1..{}",
            wait.as_secs_f64(),
            w - 1
        ));
        let missing = lem::aggregate::wait_for_ranks(exp_dir, w, (last_cycle, true), wait);
        if !missing.is_empty() {
            ui.warn(format!(
                "aggregating without processes {missing:?} (no result after {:.0} s; `lem aggregate {}` later combines them)",
                wait.as_secs_f64(),
                exp_dir.display()
            ));
        }
    }
    aggregate_cycles(ui, output, exp_dir)
}

/// Aggregate the cycles just written and say what they add up to.
pub(super) fn aggregate_cycles(ui: &Ui, output: &Path, exp_dir: &Path) -> Result<(), Failure> {
    let results = lem::aggregate::load_dir(exp_dir)?;
    if lem::aggregate::every_cycle_failed(&results) {
        ui.warn(format!(
            "no aggregate: every cycle failed or was interrupted (`lem aggregate --include-failed {}` combines them anyway)",
            exp_dir.display()
        ));
        return Ok(());
    }
    let agg = lem::aggregate::aggregate(exp_dir, &results, false)?;
    let path = lem::aggregate::write_aggregate(output, &agg)?;
    if let Some(i) = &agg.cycles.energy_adjusted_j.or(agg.cycles.energy_raw_j) {
        let which = if agg.cycles.energy_adjusted_j.is_some() {
            "adjusted"
        } else {
            "raw"
        };
        let ci = match (i.ci95_low, i.ci95_high) {
            (Some(l), Some(h)) => format!(", 95% CI [{l:.2}, {h:.2}] J"),
            _ => String::new(),
        };
        ui.say(format!(
            "cycles: n={} {which} energy mean {:.2} J, std {}{ci}",
            agg.cycles.n,
            i.mean,
            i.std.map_or("-".into(), |s| format!("{s:.2} J"))
        ));
    }
    ui.say(format!("aggregate {}", path.display()));
    if ui.json {
        ui.json_out(&agg)?;
    }
    Ok(())
}
