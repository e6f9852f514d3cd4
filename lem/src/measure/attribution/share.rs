//! A closed window's attribution: each device's active energy (raw minus the idle baseline
//! over the window) shared among its processes in proportion to their integrated SM
//! utilisation; the idle part on its own; the active energy of time no process sample covers
//! `unattributed`. The parts add up to the active energy by construction.

use super::{DeviceProcs, ProcAcc, WindowProcs};
use crate::results::attribution::{Attribution, AttributionMethod, ProcessShare};
use crate::results::report::DeviceReport;

/// How many other processes a warning names.
const NAMED_IN_WARNING: usize = 5;

/// One device's split, J.
#[derive(Debug, Default)]
struct Split {
    active: f64,
    idle: f64,
    self_j: f64,
    self_err: Option<f64>,
    unattributed: f64,
    uncovered_s: f64,
    exclusive: bool,
}

/// The attribution of window `w` (lasting `duration_s`) over its device reports, or `None`
/// where no device lists processes; the warning about other processes goes to `warnings`.
pub fn attribute(
    w: &WindowProcs,
    reports: &[DeviceReport],
    duration_s: f64,
    warnings: &mut Vec<String>,
) -> Option<Attribution> {
    if w.devices.iter().all(Option::is_none) {
        return None;
    }
    let mut processes = Vec::new();
    let mut reasons = Vec::new();
    for (i, dp) in w.devices.iter().enumerate() {
        let Some(dp) = dp else { continue };
        let device = reports.get(i).map_or(i as u32, |r| r.index);
        for (pid, acc) in &dp.procs {
            processes.push(ProcessShare {
                pid: *pid,
                command: acc.command.clone(),
                device,
                measured: measured(*pid, acc, &w.targets),
                sm_share: None,
                active_j: None,
                uncertainty_j: None,
                sm_pct_s: acc.sm_pct_s,
                peak_memory_mb: acc.peak_memory_mb,
            });
        }
        if let Some(why) = unavailable(dp, reports.get(i), !w.targets.is_empty()) {
            reasons.push(format!("device {device}: {why}"));
        }
    }
    warn_others(&processes, warnings);
    let mut out = Attribution {
        method: AttributionMethod::Unavailable,
        reason: None,
        measured_pids: w.targets.clone(),
        processes,
        active_j: None,
        idle_j: None,
        self_active_j: None,
        self_uncertainty_j: None,
        others_active_j: None,
        unattributed_active_j: None,
        unattributed_s: 0.0,
    };
    if !reasons.is_empty() {
        out.reason = Some(reasons.join("; "));
        return Some(out);
    }
    let mut total = Split {
        self_err: Some(0.0),
        exclusive: true,
        ..Split::default()
    };
    let mut any_process = false;
    for (i, dp) in w.devices.iter().enumerate() {
        let (Some(dp), Some(r)) = (dp, reports.get(i)) else {
            continue;
        };
        let s = split(dp, r, duration_s, &w.targets, &mut out.processes);
        any_process |= !dp.procs.is_empty();
        total.active += s.active;
        total.idle += s.idle;
        total.self_j += s.self_j;
        total.self_err = total.self_err.zip(s.self_err).map(|(a, b)| a + b);
        total.unattributed += s.unattributed;
        total.uncovered_s += s.uncovered_s;
        total.exclusive &= s.exclusive || dp.procs.is_empty();
    }
    out.method = if any_process && total.exclusive {
        AttributionMethod::Exclusive
    } else {
        AttributionMethod::SmUtilizationShare
    };
    out.active_j = Some(total.active);
    out.idle_j = Some(total.idle);
    out.self_active_j = Some(total.self_j);
    out.self_uncertainty_j = total.self_err;
    // the rest of the attributed part, so that the three add up to the active energy
    out.others_active_j = Some(total.active - total.unattributed - total.self_j);
    out.unattributed_active_j = Some(total.unattributed);
    out.unattributed_s = total.uncovered_s;
    Some(out)
}

/// Whether `pid` is one of `targets` or descends from one.
fn measured(pid: u32, acc: &ProcAcc, targets: &[u32]) -> bool {
    targets.contains(&pid) || acc.ancestors.iter().any(|a| targets.contains(a))
}

/// Why device `dp` cannot be attributed, if it cannot. With `targets` (pids to recognise as
/// measured), a driver listing no process visible here makes that impossible; without, the
/// shares need no pid recognised (the live exporter's windows).
fn unavailable(dp: &DeviceProcs, r: Option<&DeviceReport>, targets: bool) -> Option<String> {
    if let Some(e) = &dp.unavailable {
        return Some(e.reason.clone());
    }
    if targets && !dp.procs.is_empty() && dp.procs.values().all(|p| !p.visible) {
        return Some(format!(
            "none of the {} process(es) the driver lists is visible here: lem runs in a PID namespace without the host's (a container?), so no process can be recognised as measured",
            dp.procs.len()
        ));
    }
    let r = r?;
    if r.energy.baseline_power_w.is_none() {
        return Some("no idle baseline".into());
    }
    if r.energy.adjusted_j.is_none() {
        return Some("the device's energy is unknown".into());
    }
    None
}

/// Warn when processes other than the measured ones used the GPU during the window.
fn warn_others(processes: &[ProcessShare], warnings: &mut Vec<String>) {
    let others: Vec<&ProcessShare> = processes.iter().filter(|p| !p.measured).collect();
    if others.is_empty() {
        return;
    }
    let named: Vec<String> = others
        .iter()
        .take(NAMED_IN_WARNING)
        .map(|p| match &p.command {
            Some(c) => format!("pid {} ({c}) on device {}", p.pid, p.device),
            None => format!("pid {} on device {}", p.pid, p.device),
        })
        .collect();
    let more = others.len().saturating_sub(NAMED_IN_WARNING);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    warnings.push(format!(
        "other processes used the GPU during this window: {}{more}; the device's energy includes theirs (see attribution)",
        named.join(", ")
    ));
}

/// Share device `dp`'s active energy (report `r`) among its processes, filling their
/// entries in `shares`.
fn split(
    dp: &DeviceProcs,
    r: &DeviceReport,
    duration_s: f64,
    targets: &[u32],
    shares: &mut [ProcessShare],
) -> Split {
    let raw = r.energy.raw_j.unwrap_or(0.0);
    let active = r.energy.adjusted_j.unwrap_or(0.0);
    let energy_err = r.energy.adjusted_uncertainty_j;
    let total: f64 = dp.procs.values().map(|p| p.sm_pct_s).sum();
    let total_err: f64 = dp.procs.values().map(|p| p.sm_err_pct_s).sum();
    let uncovered_s = (duration_s - dp.covered_s).max(0.0);
    // activity with no process sample behind it: the uncovered time's part of the active
    // energy (all of it when no process had any SM activity)
    let unattributed = if total > 0.0 && duration_s > 0.0 {
        active * (uncovered_s / duration_s)
    } else {
        active
    };
    let attributable = active - unattributed;
    let (self_u, self_e) = dp
        .procs
        .iter()
        .filter(|(pid, p)| measured(**pid, p, targets))
        .fold((0.0, 0.0), |(u, e), (_, p)| {
            (u + p.sm_pct_s, e + p.sm_err_pct_s)
        });
    let share_of = |u: f64| if total > 0.0 { u / total } else { 0.0 };
    let bound = |u: f64, e: f64| -> Option<f64> {
        let s = share_of(u);
        let ds = share_bound(u, e, total - u, total_err - e);
        energy_err.map(|de| attributable * ds + s * de)
    };
    let device = r.index;
    for p in shares.iter_mut().filter(|p| p.device == device) {
        let Some(acc) = dp.procs.get(&p.pid) else {
            continue;
        };
        let s = share_of(acc.sm_pct_s);
        p.sm_share = Some(s);
        p.active_j = Some(attributable * s);
        p.uncertainty_j = bound(acc.sm_pct_s, acc.sm_err_pct_s);
    }
    let active_procs = dp.procs.values().filter(|p| p.sm_pct_s > 0.0).count();
    Split {
        active,
        idle: raw - active,
        self_j: attributable * share_of(self_u),
        self_err: bound(self_u, self_e),
        unattributed,
        uncovered_s,
        exclusive: dp.procs.len() == 1 && active_procs == 1,
    }
}

/// How far the share `u / (u + o)` can move when `u` and `o` are each off by up to `du`, `do_`.
fn share_bound(u: f64, du: f64, o: f64, do_: f64) -> f64 {
    let s = |a: f64, b: f64| if a + b > 0.0 { a / (a + b) } else { 0.0 };
    let mid = s(u, o);
    let hi = s(u + du, (o - do_).max(0.0));
    let lo = s((u - du).max(0.0), o + do_);
    (hi - mid).max(mid - lo).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_bound_is_the_largest_move_either_way() {
        assert_eq!(share_bound(60.0, 0.0, 20.0, 0.0), 0.0);
        // 60±6 vs 20±2: hi 66/84, lo 54/76
        let b = share_bound(60.0, 6.0, 20.0, 2.0);
        assert!((b - (0.75 - 54.0 / 76.0)).abs() < 1e-12, "{b}");
    }
}
