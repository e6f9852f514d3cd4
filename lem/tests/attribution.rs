//! Per-process attribution on simulated GPUs with a manual clock: each share is checked
//! exactly against the scenario's process traces, and the parts add up to the active energy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lem::attribution::{Attribution, AttributionMethod};
use lem::device::{Scenario, SimDevice};
use lem::{BaselineMode, EnergyReport, ManualClock, Meter, SharedDevice};

/// A pid no Linux host has (pid_max is at most 2^22): someone else's process.
const OTHER: u32 = 4_194_400;
const OTHER2: u32 = 4_194_401;

struct Rig {
    clock: Arc<ManualClock>,
    meter: Meter,
    _cache: tempfile::TempDir,
}

/// Idle 60 W, 260 W from 1.5 s; the 1 s baseline runs first (idle). `procs` is the
/// scenario's `processes` block, `extra` more top-level keys.
fn rig(procs: &str, extra: &str, mode: BaselineMode) -> Rig {
    let json = format!(
        r#"{{"idle_w": 60, {extra} "segments": [{{"start_s": 1.5, "end_s": 1000, "power_w": 260}}],
            "processes": {procs}}}"#
    );
    let clock = Arc::new(ManualClock::new());
    let s = Scenario::from_json(&json, Path::new("procs.json")).unwrap();
    let devices: Vec<SharedDevice> = SimDevice::open_all(&s, clock.clone(), 0)
        .into_iter()
        .map(|d| Arc::new(d) as SharedDevice)
        .collect();
    let cache = tempfile::tempdir().unwrap();
    let meter = Meter::builder()
        .devices(devices)
        .clock(clock.clone())
        .baseline_mode(mode)
        .baseline_duration(Duration::from_secs(1))
        .cache_dir(cache.path())
        .build()
        .unwrap();
    Rig {
        clock,
        meter,
        _cache: cache,
    }
}

impl Rig {
    fn run(&self, s: f64) {
        for _ in 0..(s / 0.1).round() as usize {
            self.clock.advance_s(0.1);
            self.meter.sample_now();
        }
    }

    /// A window over [3, 7] s of device time (the meter's origin is after the 1 s
    /// baseline), attributed to the calling process (or `pids`).
    fn window(&self, pids: Option<Vec<u32>>) -> EnergyReport {
        self.run(2.0 - self.meter.elapsed_s());
        let scope = match pids {
            Some(p) => self.meter.start_for("w", p).unwrap(),
            None => self.meter.start("w").unwrap(),
        };
        self.run(4.0);
        scope.finish().unwrap()
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

fn list(procs: &[(&str, f64, f64, f64)]) -> String {
    let items: Vec<String> = procs
        .iter()
        .map(|(pid, sm, a, b)| {
            format!(
                r#"{{"pid": {pid}, "command": "job", "segments": [{{"start_s": {a}, "end_s": {b}, "sm_pct": {sm}, "memory_mb": 1000}}]}}"#
            )
        })
        .collect();
    format!(r#"{{"sample_ms": 200, "list": [{}]}}"#, items.join(","))
}

/// The parts add up to the active energy, which is raw minus the baseline.
fn sums_add_up(r: &EnergyReport, a: &Attribution) {
    let active = a.active_j.unwrap();
    let parts =
        a.self_active_j.unwrap() + a.others_active_j.unwrap() + a.unattributed_active_j.unwrap();
    assert!(close(parts, active), "{parts} vs {active}");
    let per_process: f64 = a.processes.iter().map(|p| p.active_j.unwrap()).sum();
    assert!(
        close(per_process + a.unattributed_active_j.unwrap(), active),
        "{per_process} + unattributed vs {active}"
    );
    assert!(close(active, r.energy.adjusted_j.unwrap()));
    assert!(close(a.idle_j.unwrap() + active, r.energy.raw_j.unwrap()));
    // 200 W above idle over the 4 s window
    assert!((active - 800.0).abs() < 1e-6, "{active}");
}

fn attribution(r: &EnergyReport) -> &Attribution {
    r.attribution.as_ref().expect("attribution")
}

#[test]
fn two_processes_share_by_integrated_sm_utilisation() {
    let r = rig(
        &list(&[
            ("\"self\"", 60.0, 0.0, 100.0),
            (&OTHER.to_string(), 20.0, 0.0, 100.0),
        ]),
        "",
        BaselineMode::Force,
    )
    .window(None);
    let a = attribution(&r);
    assert_eq!(a.method, AttributionMethod::SmUtilizationShare);
    sums_add_up(&r, a);
    let active = a.active_j.unwrap();
    assert!(close(a.self_active_j.unwrap(), 0.75 * active));
    assert!(close(a.others_active_j.unwrap(), 0.25 * active));
    assert!(close(a.unattributed_active_j.unwrap(), 0.0));
    let me = a.processes.iter().find(|p| p.measured).unwrap();
    assert_eq!(me.pid, std::process::id());
    assert!(close(me.sm_share.unwrap(), 0.75));
    assert!(close(me.sm_pct_s, 60.0 * 4.0));
    assert_eq!(me.peak_memory_mb, Some(1000.0));
    assert!(a.self_uncertainty_j.is_some());
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("other processes used the GPU")
                && w.contains(&format!("pid {OTHER} (job)"))),
        "{:?}",
        r.warnings
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["attribution"]["method"], "sm_utilization_share");
    for key in [
        "self_active_j",
        "self_uncertainty_j",
        "others_active_j",
        "unattributed_active_j",
    ] {
        assert!(json["attribution"][key].is_number(), "{key}");
    }
    for key in ["pid", "command", "device", "sm_share", "active_j"] {
        assert!(!json["attribution"]["processes"][0][key].is_null(), "{key}");
    }
}

#[test]
fn three_processes_share_by_integrated_sm_utilisation() {
    let r = rig(
        &list(&[
            ("\"self\"", 50.0, 0.0, 100.0),
            (&OTHER.to_string(), 30.0, 0.0, 100.0),
            (&OTHER2.to_string(), 20.0, 0.0, 100.0),
        ]),
        "",
        BaselineMode::Force,
    )
    .window(None);
    let a = attribution(&r);
    sums_add_up(&r, a);
    let active = a.active_j.unwrap();
    assert!(close(a.self_active_j.unwrap(), 0.5 * active));
    let o2 = a.processes.iter().find(|p| p.pid == OTHER2).unwrap();
    assert!(close(o2.active_j.unwrap(), 0.2 * active));
    assert!(close(o2.sm_share.unwrap(), 0.2));
}

#[test]
fn a_process_that_starts_and_ends_inside_the_window_gets_its_integral_share() {
    let r = rig(
        &list(&[
            ("\"self\"", 60.0, 3.0, 4.0),
            (&OTHER.to_string(), 40.0, 0.0, 100.0),
        ]),
        "",
        BaselineMode::Force,
    )
    .window(None);
    let a = attribution(&r);
    sums_add_up(&r, a);
    // self: 60 % for 1 s; other: 40 % for the window's 4 s
    let share = 60.0 / (60.0 + 160.0);
    assert!(close(a.self_active_j.unwrap(), share * a.active_j.unwrap()));
    let me = a.processes.iter().find(|p| p.measured).unwrap();
    assert!(close(me.sm_pct_s, 60.0));
}

#[test]
fn a_process_alone_gets_all_the_active_energy() {
    let r = rig(
        &list(&[("\"self\"", 70.0, 0.0, 100.0)]),
        "",
        BaselineMode::Force,
    )
    .window(None);
    let a = attribution(&r);
    assert_eq!(a.method, AttributionMethod::Exclusive);
    sums_add_up(&r, a);
    assert!(close(a.self_active_j.unwrap(), a.active_j.unwrap()));
    assert!(!r.warnings.iter().any(|w| w.contains("other processes")));
}

#[test]
fn activity_with_no_process_sample_behind_it_is_unattributed() {
    // the process stops at 5 s, half-way through the window
    let r = rig(
        &list(&[("\"self\"", 70.0, 0.0, 5.0)]),
        "",
        BaselineMode::Force,
    )
    .window(None);
    let a = attribution(&r);
    sums_add_up(&r, a);
    let active = a.active_j.unwrap();
    assert!(
        close(a.unattributed_active_j.unwrap(), 0.5 * active),
        "{a:?}"
    );
    assert!(close(a.self_active_j.unwrap(), 0.5 * active));
    assert!(close(a.unattributed_s, 2.0));
}

#[test]
fn a_scope_can_name_the_processes_it_is_attributed_to() {
    let r = rig(
        &list(&[
            ("\"self\"", 60.0, 0.0, 100.0),
            (&OTHER.to_string(), 20.0, 0.0, 100.0),
        ]),
        "",
        BaselineMode::Force,
    )
    .window(Some(vec![OTHER]));
    let a = attribution(&r);
    assert_eq!(a.measured_pids, vec![OTHER]);
    assert!(close(a.self_active_j.unwrap(), 0.25 * a.active_j.unwrap()));
    assert!(r
        .warnings
        .iter()
        .any(|w| w.contains(&format!("pid {}", std::process::id()))));
}

fn unavailable(procs: &str, extra: &str, mode: BaselineMode, reason: &str, warns: bool) {
    let r = rig(procs, extra, mode).window(None);
    let a = attribution(&r);
    assert_eq!(a.method, AttributionMethod::Unavailable);
    let why = a.reason.as_deref().unwrap();
    assert!(why.contains(reason), "{why}");
    assert!(a.self_active_j.is_none() && a.active_j.is_none());
    assert_eq!(
        r.warnings
            .iter()
            .any(|w| w.contains("other processes used the GPU")),
        warns,
        "{:?}",
        r.warnings
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["attribution"]["method"], "unavailable");
    assert!(json["attribution"]["reason"].is_string());
}

const SHARED: &[(&str, f64, f64, f64)] = &[
    ("\"self\"", 60.0, 0.0, 100.0),
    ("4194400", 20.0, 0.0, 100.0),
];

#[test]
fn mig_is_unavailable_and_still_warns() {
    unavailable(
        &list(SHARED),
        r#""mig": true,"#,
        BaselineMode::Force,
        "MIG",
        true,
    );
}

#[test]
fn not_supported_is_unavailable_and_still_warns() {
    let procs = list(SHARED).replacen("{", r#"{"support": "not_supported", "#, 1);
    unavailable(&procs, "", BaselineMode::Force, "NOT_SUPPORTED", true);
}

#[test]
fn no_permission_is_unavailable() {
    let procs = list(SHARED).replacen("{", r#"{"support": "no_permission", "#, 1);
    unavailable(&procs, "", BaselineMode::Force, "NO_PERMISSION", false);
}

#[test]
fn pids_not_visible_here_are_unavailable_and_still_warn() {
    let procs = list(&[("4194400", 60.0, 0.0, 100.0), ("4194401", 20.0, 0.0, 100.0)]);
    unavailable(&procs, "", BaselineMode::Force, "PID namespace", true);
}

#[test]
fn no_idle_baseline_is_unavailable() {
    unavailable(
        &list(SHARED),
        "",
        BaselineMode::Off,
        "no idle baseline",
        true,
    );
}

#[test]
fn devices_without_process_traces_have_no_attribution() {
    let clock = Arc::new(ManualClock::new());
    let s = Scenario::from_json(r#"{"idle_w": 60}"#, Path::new("x.json")).unwrap();
    let devices: Vec<SharedDevice> = SimDevice::open_all(&s, clock.clone(), 0)
        .into_iter()
        .map(|d| Arc::new(d) as SharedDevice)
        .collect();
    let meter = Meter::builder()
        .devices(devices)
        .clock(clock.clone())
        .baseline_mode(BaselineMode::Off)
        .build()
        .unwrap();
    let scope = meter.start("w").unwrap();
    clock.advance_s(1.0);
    meter.sample_now();
    let r = scope.finish().unwrap();
    assert!(r.attribution.is_none());
    assert!(serde_json::to_value(&r)
        .unwrap()
        .get("attribution")
        .is_none());
}

#[test]
fn process_traces_are_validated_with_one_line_errors() {
    let cases = [
        (
            r#"{"list": [{"pid": "parent", "segments": []}]}"#,
            "must be a number, \"self\" or \"child\"",
        ),
        (r#"{"support": "maybe"}"#, "processes.support"),
        (
            r#"{"list": [{"pid": 1, "device": 3, "segments": []}]}"#,
            "device is 3",
        ),
        (
            r#"{"list": [{"pid": 1, "segments": [{"start_s": 0, "end_s": 1, "sm_pct": 120}]}]}"#,
            "sm_pct must be within",
        ),
    ];
    for (procs, want) in cases {
        let json = format!(r#"{{"idle_w": 10, "processes": {procs}}}"#);
        let e = Scenario::from_json(&json, Path::new("p.json"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("p.json: invalid scenario:") && e.contains(want),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }
}
