//! `examples/llm_energy.rs` end to end on the tiny preset with a simulated device.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

fn example() -> PathBuf {
    common::example("llm_energy")
}

#[test]
fn tiny_preset_on_a_simulated_gpu_writes_a_consistent_result() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("gpu.json");
    // idle during the 0.2 s baseline, busy afterwards
    std::fs::write(
        &scenario,
        r#"{"name": "Sim L4", "idle_w": 30, "segments": [{"start_s": 0.2, "end_s": 1e6, "power_w": 72}]}"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = Command::new(example())
        .args([
            "--model",
            "tiny",
            "--batch",
            "2",
            "--prompt-len",
            "16",
            "--gen-tokens",
            "12",
            "--requests",
            "2",
        ])
        .args(["--experiment-id", "tiny-sim", "--timeseries"])
        .arg("--device")
        .arg(format!("sim:{}", scenario.display()))
        .arg("--output")
        .arg(&out)
        .env("LEM_BASELINE_DURATION_S", "0.2")
        .env("LEM_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stderr}\n{stdout}");
    assert!(stdout.contains("SIMULATED"), "{stdout}");
    assert!(stdout.contains("J/token"), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("raw/tiny-sim/process_0.json")).unwrap(),
    )
    .unwrap();
    for p in [
        "/workload/model",
        "/workload/backend",
        "/workload/batch",
        "/workload/prompt_len",
        "/workload/tokens_out",
        "/metrics/ttft_ms",
        "/metrics/itl_ms/p50",
        "/metrics/itl_ms/p95",
        "/metrics/itl_ms/p99",
        "/metrics/tokens_per_s",
        "/metrics/energy_per_output_token_j",
        "/metrics/energy_per_output_token_raw_j",
        "/phases/prefill/energy/raw_j",
        "/phases/prefill/energy/adjusted_j",
        "/phases/decode/energy/raw_j",
        "/phases/decode/energy/adjusted_j",
        "/phases/prefill/duration_s",
        "/phases/decode/duration_s",
        "/energy/raw_j",
        "/energy/adjusted_j",
        "/devices/0/uuid",
        "/thermal/throttle_detected",
        "/warmup/converged",
        "/environment/summary",
        "/schema_version",
    ] {
        assert!(v.pointer(p).is_some_and(|x| !x.is_null()), "missing {p}");
    }
    assert_eq!(v["workload"]["model"], "tiny");
    assert_eq!(v["workload"]["backend"], "cpu");
    assert_eq!(v["workload"]["batch"], 2);
    assert_eq!(v["workload"]["tokens_out"], 2 * 12 * 2);
    assert_eq!(v["simulated"], true);
    let f = |p: &str| v.pointer(p).and_then(serde_json::Value::as_f64).unwrap();
    let (pre_raw, dec_raw) = (
        f("/phases/prefill/energy/raw_j"),
        f("/phases/decode/energy/raw_j"),
    );
    let (pre_adj, dec_adj) = (
        f("/phases/prefill/energy/adjusted_j"),
        f("/phases/decode/energy/adjusted_j"),
    );
    let req_raw = f("/phases/request/energy/raw_j");
    assert!(
        pre_raw + dec_raw <= req_raw + 1e-9,
        "phases within the requests"
    );
    assert!(
        req_raw <= f("/energy/raw_j") + 1e-9,
        "requests within the run"
    );
    let tokens = f("/workload/tokens_out");
    assert!((f("/metrics/energy_per_output_token_j") - (pre_adj + dec_adj) / tokens).abs() < 1e-12);
    assert!(
        (f("/metrics/energy_per_output_token_raw_j") - (pre_raw + dec_raw) / tokens).abs() < 1e-12
    );
    // the simulated GPU draws a constant 72 W during the run: raw energy is 72 W × time
    let d = f("/phases/decode/duration_s");
    assert!(
        (dec_raw - 72.0 * d).abs() <= 0.02 * 72.0 * d + 1e-6,
        "{dec_raw} vs {}",
        72.0 * d
    );
    assert!(out.join("raw/tiny-sim/process_0_timeseries.json").exists());
}

/// Runs the example with `args` (and `extra`, for paths), asserts it failed, returns stderr.
fn failure(args: &[&str], extra: &[&std::path::Path]) -> String {
    let o = Command::new(example())
        .args(args)
        .args(extra)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{args:?} succeeded: {err}");
    err
}

#[test]
fn bad_flags_are_one_line_errors() {
    let err = failure(&["--model", "huge", "--device", "none"], &[]);
    assert!(err.contains("invalid --model `huge`"), "{err}");
    assert!(!err.contains("panicked"));
    let err = failure(
        &["--dtype", "f16", "--backend", "cpu", "--device", "none"],
        &[],
    );
    assert!(err.contains("--dtype f16"), "{err}");
    let err = failure(
        &["--model", "tiny", "--threads", "0", "--device", "none"],
        &[],
    );
    assert!(err.contains("invalid --threads"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // an unwritable results root is reported before any work is done
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a-file"), "x").unwrap();
    let err = failure(
        &["--model", "tiny", "--device", "none", "--output"],
        &[&dir.path().join("a-file/sub")],
    );
    assert!(err.contains("invalid --output"), "{err}");
    assert!(!err.contains("warmup"), "failed before warming up: {err}");
    for bad in ["foo", "poisson:0", "poisson:-3", "poisson:x"] {
        let err = failure(
            &["--model", "tiny", "--device", "none", "--arrivals", bad],
            &[],
        );
        assert!(err.contains("invalid --arrivals"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn server_mode_reports_requests_as_shares_that_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("gpu.json");
    std::fs::write(
        &scenario,
        r#"{"name": "Sim L4", "idle_w": 30, "segments": [{"start_s": 0.2, "end_s": 1e6, "power_w": 72}]}"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = Command::new(example())
        .args(["--model", "tiny", "--prompt-len", "8", "--gen-tokens", "6"])
        .args(["--requests", "5", "--arrivals", "poisson:200"])
        .args(["--experiment-id", "served"])
        .arg("--device")
        .arg(format!("sim:{}", scenario.display()))
        .arg("--output")
        .arg(&out)
        .env("LEM_BASELINE_DURATION_S", "0.2")
        .env("LEM_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stderr}\n{stdout}");
    assert!(stdout.contains("equal (checked)"), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("raw/served/process_0.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(v["workload"]["arrivals"], "poisson:200");
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "warmup requests are in no group");
    let g = &groups[0];
    for k in [
        "name",
        "windows",
        "union_j",
        "union_uncertainty_j",
        "shares_sum_j",
        "gaps_s",
        "per_window_j",
        "per_weight_j",
    ] {
        assert!(g.get(k).is_some(), "groups[0] lacks {k}");
    }
    assert_eq!(g["name"], "requests");
    assert_eq!(g["windows"], 5);
    let reqs = v["requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 5);
    let mut shares = 0.0;
    for r in reqs {
        for p in [
            "/start_s",
            "/duration_s",
            "/energy/raw_j",
            "/energy/shared_uncertainty_j",
        ] {
            assert!(r.pointer(p).is_some_and(|x| !x.is_null()), "missing {p}");
        }
        shares += r["energy"]["shared_j"].as_f64().unwrap();
        assert_eq!(r["tokens_out"], 6);
    }
    let union = g["union_j"].as_f64().unwrap();
    assert!(
        (shares - union).abs() <= 1e-9 * union,
        "{shares} vs {union}"
    );
    assert_eq!(v["metrics"]["shares_add_up"], true);
    for m in [
        "energy_per_request_j",
        "energy_per_output_token_j",
        "ttft_ms",
        "itl_ms",
    ] {
        for p in ["p50", "p95", "p99"] {
            assert!(v["metrics"][m][p].is_number(), "metrics.{m}.{p}");
        }
    }
}

#[test]
fn json_mode_prints_only_json_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(example())
        .args(["--model", "tiny", "--batch", "1", "--prompt-len", "8"])
        .args([
            "--gen-tokens",
            "4",
            "--requests",
            "1",
            "--device",
            "none",
            "--json",
            "--threads",
            "3",
        ])
        .arg("--output")
        .arg(dir.path().join("out"))
        .env("LEM_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: stdout is not JSON:\n{stdout}"));
    assert_eq!(v["workload"]["model"], "tiny");
    assert_eq!(
        v["workload"]["threads"], 3,
        "the run reports the threads it ran on"
    );
    assert!(
        stderr.contains("J/token"),
        "the table moved to stderr: {stderr}"
    );
}

#[test]
fn decode_steps_shorter_than_a_part_time_sensor_are_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("gpu.json");
    std::fs::write(
        &scenario,
        r#"{"idle_w": 60, "sensor": {"period_ms": 100, "sensing_duty": 0.25}}"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = Command::new(example())
        .args([
            "--model",
            "tiny",
            "--prompt-len",
            "8",
            "--gen-tokens",
            "6",
            "--requests",
            "1",
            "--experiment-id",
            "alias",
            "--no-baseline",
        ])
        .arg("--device")
        .arg(format!("sim:{}", scenario.display()))
        .arg("--output")
        .arg(&out)
        .env("LEM_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("raw/alias/process_0.json")).unwrap(),
    )
    .unwrap();
    let warned = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap_or("").contains("decode step"));
    assert!(warned, "{}", v["warnings"]);
}
