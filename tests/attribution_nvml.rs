//! Per-process attribution end to end: `lem run` through the fake NVML driver
//! (`tools/fake-nvml`, loaded as `libnvidia-ml.so.1`) and through `sim:` with the same
//! scenario, each checked against the scenario's process traces, and the two paths against
//! each other. `"child"` in a trace is the command `lem run` spawned.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{stderr, stdout, Sandbox};
use serde_json::Value;

const OTHER: u32 = 4_194_400;
const OTHER2: u32 = 4_194_401;

/// Idle 60 W, 300 W from 0.9 s (after the 0.3 s forced baseline, inside the window), with `procs` as its
/// process list (200 ms samples) and `extra` top-level keys.
fn scenario(procs: &[(String, f64, f64, f64)], extra: &str, support: &str) -> String {
    let list: Vec<String> = procs
        .iter()
        .map(|(pid, sm, a, b)| {
            format!(
                r#"{{"pid": {pid}, "segments": [{{"start_s": {a}, "end_s": {b}, "sm_pct": {sm}, "memory_mb": 512}}]}}"#
            )
        })
        .collect();
    format!(
        r#"{{"name": "Shared", "idle_w": 60, {extra} "segments": [{{"start_s": 0.9, "end_s": 1e5, "power_w": 300}}],
            "processes": {{"sample_ms": 200, "support": "{support}", "list": [{}]}}}}"#,
        list.join(",")
    )
}

fn p(pid: &str, sm: f64, a: f64, b: f64) -> (String, f64, f64, f64) {
    (pid.to_string(), sm, a, b)
}

/// Run `lem run -- sleep 1.2` over `json` with `sim:` and with the fake driver: the two
/// result files and the two standard outputs.
fn both(name: &str, json: &str) -> Vec<(Value, String)> {
    let sb = Sandbox::new();
    let file = format!("{name}.json");
    let dev = sb.scenario(&file, json);
    let mut out = Vec::new();
    for nvml in [false, true] {
        let exp = format!("{name}-{}", if nvml { "nvml" } else { "sim" });
        let mut c = if nvml { sb.nvml_cmd(&file) } else { sb.cmd() };
        let device = if nvml {
            "nvml".to_string()
        } else {
            dev.clone()
        };
        let o = c
            .args([
                "run",
                "--device",
                &device,
                "--experiment-id",
                &exp,
                "--force-baseline",
            ])
            .args(["--", "sleep", "1.2"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let v = sb.json(&format!("results/raw/{exp}/process_0.json"));
        // the CSV carries the measured command's share
        let csv = sb.path().join(format!("{exp}.csv"));
        let e = sb.run(&[
            "export",
            "--per-process",
            "--csv",
            csv.to_str().unwrap(),
            &format!("results/raw/{exp}"),
        ]);
        assert!(e.status.success(), "{}", stderr(&e));
        let text = std::fs::read_to_string(&csv).unwrap();
        let mut lines = text.lines();
        let h: Vec<&str> = lines.next().unwrap().split(',').collect();
        let row: Vec<&str> = lines.next().unwrap().split(',').collect();
        let cell = |c: &str| row[h.iter().position(|x| *x == c).unwrap()].to_string();
        let a = &v["attribution"];
        match a["self_active_j"].as_f64() {
            Some(x) => {
                assert!(close(cell("attributed_active_j").parse().unwrap(), x));
                let share: f64 = cell("attributed_share").parse().unwrap();
                assert!(close(share * f(a, "active_j"), x));
            }
            None => assert_eq!(cell("attributed_active_j"), ""),
        }
        out.push((v, format!("{}{}", stdout(&o), stderr(&o))));
    }
    out
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

/// The parts add up to the active energy (raw minus baseline) and the processes' parts to
/// the attributed part.
fn sums_add_up(v: &Value) {
    let a = &v["attribution"];
    let active = f(a, "active_j");
    let parts = f(a, "self_active_j") + f(a, "others_active_j") + f(a, "unattributed_active_j");
    assert!(close(parts, active), "{parts} vs {active}");
    let procs: f64 = a["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| f(p, "active_j"))
        .sum();
    assert!(close(procs + f(a, "unattributed_active_j"), active));
    assert!(close(active, v["energy"]["adjusted_j"].as_f64().unwrap()));
    assert!(close(
        active + f(a, "idle_j"),
        v["energy"]["raw_j"].as_f64().unwrap()
    ));
}

fn process(v: &Value, pid: u32) -> &Value {
    v["attribution"]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} missing in {v}"))
}

fn measured(v: &Value) -> &Value {
    v["attribution"]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["measured"] == true)
        .unwrap_or_else(|| panic!("no measured process in {v}"))
}

fn warns_of(v: &Value, pid: u32) -> bool {
    v["warnings"].as_array().unwrap().iter().any(|w| {
        let w = w.as_str().unwrap();
        w.contains("other processes used the GPU") && w.contains(&format!("pid {pid}"))
    })
}

/// Both paths: the same method, shares and parts (the energies differ by the windows'
/// few-ms difference in length only).
fn equivalent(runs: &[(Value, String)]) {
    let (s, n) = (&runs[0].0["attribution"], &runs[1].0["attribution"]);
    assert_eq!(s["method"], n["method"]);
    assert_eq!(s["reason"].is_null(), n["reason"].is_null());
    let pids = |a: &Value| -> Vec<(bool, u64)> {
        let mut v: Vec<(bool, u64)> = a["processes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["measured"].as_bool().unwrap(),
                    if p["measured"] == true {
                        0
                    } else {
                        p["pid"].as_u64().unwrap()
                    },
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(pids(s), pids(n));
    for a in [s, n] {
        if let Some(share) = a["processes"][0]["sm_share"].as_f64() {
            let other = n["processes"][0]["sm_share"].as_f64().unwrap();
            assert!((share - other).abs() < 0.02, "{share} vs {other}");
        }
    }
}

#[test]
fn two_processes_share_the_active_energy_by_sm_utilisation() {
    let json = scenario(
        &[
            p("\"child\"", 60.0, 0.0, 1e5),
            p(&OTHER.to_string(), 20.0, 0.0, 1e5),
        ],
        "",
        "supported",
    );
    let runs = both("two", &json);
    for (v, out) in &runs {
        let a = &v["attribution"];
        assert_eq!(a["method"], "sm_utilization_share", "{a}");
        sums_add_up(v);
        // both run the whole window: 60 / (60 + 20), whatever the window's timing
        assert!(close(f(a, "self_active_j"), 0.75 * f(a, "active_j")), "{a}");
        assert!(close(f(a, "unattributed_active_j"), 0.0), "{a}");
        let me = measured(v);
        assert_eq!(me["command"], "sleep");
        assert_eq!(me["peak_memory_mb"], 512.0);
        assert!(close(f(me, "sm_share"), 0.75));
        assert!(a["self_uncertainty_j"].is_number());
        assert!(warns_of(v, OTHER), "{}", v["warnings"]);
        assert!(
            out.contains("this command: ")
                && out.contains("(75.0 %, estimated from SM utilisation)"),
            "{out}"
        );
    }
    equivalent(&runs);
}

#[test]
fn three_processes_share_the_active_energy_by_sm_utilisation() {
    let json = scenario(
        &[
            p("\"child\"", 50.0, 0.0, 1e5),
            p(&OTHER.to_string(), 30.0, 0.0, 1e5),
            p(&OTHER2.to_string(), 20.0, 0.0, 1e5),
        ],
        "",
        "supported",
    );
    let runs = both("three", &json);
    for (v, _) in &runs {
        sums_add_up(v);
        let a = &v["attribution"];
        assert!(close(f(a, "self_active_j"), 0.5 * f(a, "active_j")), "{a}");
        assert!(close(f(process(v, OTHER2), "sm_share"), 0.2));
        assert!(close(f(a, "others_active_j"), 0.5 * f(a, "active_j")));
    }
    equivalent(&runs);
}

#[test]
fn a_process_inside_the_window_gets_its_integral_share() {
    // the other process runs 50 % over [0.8, 1.2) s of the trace, inside the window
    let json = scenario(
        &[
            p("\"child\"", 50.0, 0.0, 1e5),
            p(&OTHER.to_string(), 50.0, 0.8, 1.2),
        ],
        "",
        "supported",
    );
    let runs = both("inside", &json);
    for (v, _) in &runs {
        sums_add_up(v);
        let a = &v["attribution"];
        let other = process(v, OTHER);
        // to the microseconds a sample's timestamp moves when placed on lem's clock
        assert!(
            (f(other, "sm_pct_s") - 50.0 * 0.4).abs() < 50.0 * 1e-4,
            "{other}"
        );
        let mine = f(measured(v), "sm_pct_s");
        // the command ran 50 % over the whole window, to within one sample at each edge
        let d = f(v, "duration_s");
        assert!(
            (mine - 50.0 * d).abs() <= 50.0 * 0.2 + 1e-6,
            "{mine} vs {}",
            50.0 * d
        );
        let share = mine / (mine + f(other, "sm_pct_s"));
        assert!(
            close(f(a, "self_active_j"), share * f(a, "active_j")),
            "{a}"
        );
    }
    equivalent(&runs);
}

#[test]
fn a_process_alone_gets_all_of_the_active_energy() {
    let json = scenario(&[p("\"child\"", 80.0, 0.0, 1e5)], "", "supported");
    let runs = both("alone", &json);
    for (v, out) in &runs {
        let a = &v["attribution"];
        assert_eq!(a["method"], "exclusive");
        sums_add_up(v);
        assert!(close(f(a, "self_active_j"), f(a, "active_j")), "{a}");
        assert!(!v["warnings"].to_string().contains("other processes"));
        assert!(
            out.contains("(100.0 %, estimated from SM utilisation)"),
            "{out}"
        );
    }
    equivalent(&runs);
}

fn unavailable(name: &str, json: &str, reason: &str, warns: bool) {
    let runs = both(name, json);
    for (v, out) in &runs {
        let a = &v["attribution"];
        assert_eq!(a["method"], "unavailable", "{a}");
        assert!(a["reason"].as_str().unwrap().contains(reason), "{a}");
        assert!(a["self_active_j"].is_null());
        assert_eq!(warns_of(v, OTHER), warns, "{}", v["warnings"]);
        assert!(out.contains("this command: share unavailable ("), "{out}");
    }
    equivalent(&runs);
}

#[test]
fn mig_is_unavailable_and_still_warns_of_other_processes() {
    let json = scenario(
        &[
            p("\"child\"", 60.0, 0.0, 1e5),
            p(&OTHER.to_string(), 20.0, 0.0, 1e5),
        ],
        r#""mig": true,"#,
        "supported",
    );
    unavailable("mig", &json, "MIG", true);
}

#[test]
fn not_supported_is_unavailable_and_still_warns_of_other_processes() {
    let json = scenario(
        &[
            p("\"child\"", 60.0, 0.0, 1e5),
            p(&OTHER.to_string(), 20.0, 0.0, 1e5),
        ],
        "",
        "not_supported",
    );
    unavailable("notsup", &json, "NOT_SUPPORTED", true);
}

#[test]
fn no_permission_is_unavailable() {
    let json = scenario(
        &[
            p("\"child\"", 60.0, 0.0, 1e5),
            p(&OTHER.to_string(), 20.0, 0.0, 1e5),
        ],
        "",
        "no_permission",
    );
    unavailable("noperm", &json, "NO_PERMISSION", false);
}

#[test]
fn pids_from_another_pid_namespace_are_unavailable_and_still_warn() {
    // the driver lists only pids this namespace cannot see (the command never appears)
    let json = scenario(
        &[
            p(&OTHER.to_string(), 60.0, 0.0, 1e5),
            p(&OTHER2.to_string(), 20.0, 0.0, 1e5),
        ],
        "",
        "supported",
    );
    unavailable("container", &json, "PID namespace", true);
}
