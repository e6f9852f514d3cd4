//! The `lem::main!()` harness end to end: the demo bench binary's command line and output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

/// The demo bench binary, (re)built so it is never stale.
fn demo() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| common::example("energy_bench_demo"))
        .clone()
}

fn run(dir: &std::path::Path, args: &[&str]) -> Output {
    let scenario = dir.join("s.json");
    std::fs::write(
        &scenario,
        r#"{"idle_w": 50, "segments": [{"start_s": 0.25, "end_s": 100000, "power_w": 250}]}"#,
    )
    .unwrap();
    Command::new(demo())
        .args(args)
        .env("LEM_DEVICE", format!("sim:{}", scenario.display()))
        .env("LEM_BASELINE_DURATION_S", "0.2")
        .env("LEM_CACHE_DIR", dir.join("cache"))
        .env("LEM_OUTPUT_DIR", dir.join("out"))
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn list_prints_every_benchmark_like_libtest() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["--list", "--format", "terse"]);
    assert!(o.status.success());
    assert_eq!(
        out(&o).lines().collect::<Vec<_>>(),
        [
            "generate: benchmark",
            "slow_spin: benchmark",
            "spin_1ms: benchmark",
            "spin_ms/1: benchmark",
            "spin_ms/2: benchmark"
        ]
    );
}

#[test]
fn list_honours_the_name_filter_like_libtest() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["--list", "spin_ms"]);
    assert!(o.status.success());
    assert_eq!(
        out(&o).lines().collect::<Vec<_>>(),
        ["spin_ms/1: benchmark", "spin_ms/2: benchmark"]
    );
    let o = run(dir.path(), &["--list", "--exact", "spin_1ms"]);
    assert_eq!(out(&o).lines().collect::<Vec<_>>(), ["spin_1ms: benchmark"]);
}

#[test]
fn without_bench_every_benchmark_is_smoke_tested_once() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["--nocapture"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = out(&o);
    for n in ["generate", "spin_1ms", "spin_ms/1", "spin_ms/2"] {
        assert!(text.contains(&format!("Testing {n} ... ok")), "{text}");
    }
    assert!(
        !text.contains("slow_spin"),
        "ignored benchmarks are skipped"
    );
    assert!(
        !dir.path().join("out").exists(),
        "smoke runs write no results"
    );
}

#[test]
fn filter_exact_and_ignored_select_benchmarks() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["spin_ms"]);
    let t = out(&o);
    assert!(
        t.contains("Testing spin_ms/1")
            && t.contains("Testing spin_ms/2")
            && !t.contains("spin_1ms"),
        "{t}"
    );
    let o = run(dir.path(), &["--exact", "spin_ms/2"]);
    let t = out(&o);
    assert!(
        t.contains("Testing spin_ms/2") && !t.contains("spin_ms/1"),
        "{t}"
    );
    let o = run(dir.path(), &["--ignored"]);
    let t = out(&o);
    assert!(
        t.contains("Testing slow_spin ... ok") && !t.contains("spin_1ms"),
        "{t}"
    );
}

#[test]
fn bench_mode_measures_and_writes_results_with_the_stable_keys() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["--bench", "generate"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = out(&o);
    assert!(t.contains("energy/tokens (raw)"), "{t}");
    assert!(t.contains("SIMULATED"));
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out/generate.json")).unwrap(),
    )
    .unwrap();
    for p in [
        "/bench/name",
        "/bench/samples",
        "/bench/iterations_per_sample",
        "/bench/time_per_iter_s/mean",
        "/bench/time_per_iter_s/ci95_low",
        "/bench/time_per_iter_s/ci95_high",
        "/bench/energy_per_iter_j/mean",
        "/bench/energy_per_iter_j/std",
        "/bench/energy_per_iter_j/cv",
        "/bench/energy_per_iter_j/ci95_low",
        "/bench/energy_per_iter_j/ci95_high",
        "/bench/adjusted_energy_per_iter_j/mean",
        "/bench/adjusted_energy_per_iter_j/ci95_low",
        "/bench/adjusted_energy_per_iter_j/ci95_high",
        "/bench/energy_per_unit_j/mean",
        "/bench/energy_per_unit_j/ci95_low",
        "/bench/energy_per_unit_j/ci95_high",
        "/warmup/converged",
        "/warmup/iterations",
        "/warmup/final_cv",
        "/warmup/target_cv",
        "/energy/raw_j",
        "/devices/0/uuid",
        "/thermal/throttle_detected",
        "/environment/summary",
        "/schema_version",
        "/command/argv",
    ] {
        assert!(v.pointer(p).is_some_and(|x| !x.is_null()), "missing {p}");
    }
    assert_eq!(v["bench"]["name"], "generate");
    assert_eq!(v["bench"]["samples"], 3);
    assert_eq!(v["warmup"]["iterations"], 3, "fixed warmup of 3");
    assert_eq!(v["simulated"], true);
    let per_iter = v["bench"]["energy_per_iter_j"]["mean"].as_f64().unwrap();
    let per_unit = v["bench"]["energy_per_unit_j"]["mean"].as_f64().unwrap();
    assert!((per_unit * 16.0 - per_iter).abs() / per_iter < 1e-6);
    let csv = std::fs::read_to_string(dir.path().join("out/bench_summary.csv")).unwrap();
    assert!(csv.starts_with("bench_name,samples,iterations_per_sample"));
    assert!(csv.lines().nth(1).unwrap().starts_with("generate,3,"));
}

#[test]
fn the_summary_keeps_the_rows_of_benchmarks_a_later_run_did_not_select() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["--bench", "--exact", "spin_1ms"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(dir.path(), &["--bench", "--exact", "spin_ms/1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(dir.path().join("out/bench_summary.csv")).unwrap();
    let names: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(names, ["spin_1ms", "spin_ms/1"], "{csv}");
    // running one again replaces its row, never duplicates it
    let o = run(dir.path(), &["--bench", "--exact", "spin_1ms"]);
    assert!(o.status.success());
    let csv = std::fs::read_to_string(dir.path().join("out/bench_summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
}

fn run_at(dir: &std::path::Path, watts: u32, args: &[&str]) -> Output {
    let scenario = dir.join(format!("s{watts}.json"));
    std::fs::write(&scenario, format!(r#"{{"idle_w": {watts}}}"#)).unwrap();
    Command::new(demo())
        .args(args)
        .env("LEM_DEVICE", format!("sim:{}", scenario.display()))
        .env("LEM_BASELINE", "off")
        .env("LEM_CACHE_DIR", dir.join("cache"))
        .env("LEM_OUTPUT_DIR", dir.join("out"))
        .env_remove("LEM_FAIL_ON_REGRESSION")
        .output()
        .unwrap()
}

#[test]
fn a_saved_baseline_finds_a_changed_load_and_fails_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bench = ["--bench", "--exact", "spin_1ms"];
    let o = run_at(d, 250, &[&bench[..], &["--save-baseline", "main"]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(d.join("out/baselines/main/spin_1ms.json").is_file());
    // the same load again, compared with the previous run: the energy changes as the time
    // per iteration does (a spin loop varies with the machine's load), and within the 1 %
    // noise threshold that is no change
    let o = run_at(d, 250, &bench);
    let t = out(&o);
    assert!(t.contains("(against the previous run)"), "{t}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("out/spin_1ms.json")).unwrap())
            .unwrap();
    let c = &v["bench"]["change"];
    let (ce, ct) = (
        c["energy"]["change_pct"].as_f64().unwrap(),
        c["time"]["change_pct"].as_f64().unwrap(),
    );
    assert!((ce - ct).abs() < 2.0, "{ce} against {ct}: {c}");
    if ct.abs() < 0.9 {
        // within the noise: `no change` where the interval lies within ±5 %, else (three
        // samples on a busy machine can spread wider) `inconclusive`; never a verdict
        let ci = &c["energy"]["ci_pct"];
        let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
        let expected = if lo >= -5.0 && hi <= 5.0 {
            "no change"
        } else {
            "inconclusive"
        };
        assert_eq!(c["energy"]["verdict"], expected, "{c}");
    }
    // 400 W against 250 W (no baseline: raw energy): +60 % times the change in the time per
    // iteration, regressed, recorded, exit 0
    let o = run_at(d, 400, &[&bench[..], &["--baseline", "main"]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = out(&o);
    assert!(t.contains("regressed (against baseline `main`)"), "{t}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("out/spin_1ms.json")).unwrap())
            .unwrap();
    let change = &v["bench"]["change"];
    assert_eq!(change["against"], "baseline `main`");
    assert_eq!(change["energy"]["verdict"], "regressed", "{change}");
    let pct = change["energy"]["change_pct"].as_f64().unwrap();
    assert_eq!(change["energy"]["metric"], "bench.energy_per_iter_j");
    // the truth on a constant load: the power ratio times the ratio of the times per
    // iteration (a spin loop on a shared machine takes longer when the machine is busy)
    let t = &change["time"];
    let truth = 160.0 * t["new"].as_f64().unwrap() / t["base"].as_f64().unwrap() - 100.0;
    assert!((pct - truth).abs() < 3.0, "{pct} against {truth}: {change}");
    // asked to fail on a regression beyond 5 %: exit 1
    let o = run_at(
        d,
        300,
        &[
            &bench[..],
            &["--baseline", "main", "--fail-on-regression", "5"],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("regressed by more than 5 %"));
    // criterion's `--noise-threshold` (a fraction): a +60 % change within 90 % noise is none
    let o = run_at(
        d,
        400,
        &[
            &bench[..],
            &["--baseline", "main", "--noise-threshold", "0.9"],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", out(&o));
    let t = out(&o);
    assert!(t.contains("no change (against baseline `main`)"), "{t}");
    let o = run_at(
        d,
        400,
        &[&bench[..], &["--noise-threshold", "lots"]].concat(),
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--noise-threshold") && err.contains("lots"),
        "{err}"
    );
    // the bench directory (saved baselines inside it) against a baseline, with lem compare
    let o = Command::new(common::lem_bin())
        .args(["compare", "--format", "json"])
        .arg(d.join("out/baselines/main"))
        .arg(d.join("out"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "spin_1ms" && c["verdict"] == "regressed"));
    // a baseline never saved is a one-line error, and the measurement is still written
    std::fs::remove_file(d.join("out/spin_1ms.json")).unwrap();
    let o = run_at(d, 250, &[&bench[..], &["--baseline", "nope"]].concat());
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--baseline") && err.contains("nope"), "{err}");
    assert!(d.join("out/spin_1ms.json").is_file());
}
