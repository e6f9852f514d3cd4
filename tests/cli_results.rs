//! `lem aggregate`, `export`, `plot`, `show`, `baseline` and `env` end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_clean_error, stderr, stdout, Sandbox};

const GPU_A: &str = r#"{"name": "Sim A", "idle_w": 100}"#;
const GPU_B: &str = r#"{"name": "Sim B", "idle_w": 200}"#;

fn run(sb: &Sandbox, dev: &str, exp: &str, idx: &str, extra: &[&str]) {
    let mut args = vec![
        "run",
        "--device",
        dev,
        "--experiment-id",
        exp,
        "--process-index",
        idx,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sleep", "0.5"]);
    let o = sb.run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn proc_raw(sb: &Sandbox, exp: &str, i: u32) -> f64 {
    sb.json(&format!("results/raw/{exp}/process_{i}.json"))["energy"]["raw_j"]
        .as_f64()
        .unwrap()
}

#[test]
fn the_same_gpu_measured_by_two_processes_is_counted_once() {
    let sb = Sandbox::new();
    let a = sb.scenario("a.json", GPU_A);
    run(&sb, &a, "same", "0", &[]);
    run(&sb, &a, "same", "1", &[]);
    // sequential processes: no clock-skew allowance, so that they count as not overlapping
    let o = sb.run(&["aggregate", "--clock-skew-s", "0", "results/raw/same"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let agg = sb.json("results/aggregated/same.json");
    assert_eq!(agg["num_processes"], 2);
    assert_eq!(agg["devices"].as_array().unwrap().len(), 1);
    let total = agg["energy"]["raw_j"].as_f64().unwrap();
    let (p0, p1) = (proc_raw(&sb, "same", 0), proc_raw(&sb, "same", 1));
    assert!(
        (total - p0.max(p1)).abs() < 1e-9,
        "{total} vs {p0} and {p1}: counted once"
    );
    let warnings = agg["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("counted once")),
        "{warnings:?}"
    );
    // sequential processes did not overlap: a warning, and an error with --strict
    assert!(warnings
        .iter()
        .any(|w| w.as_str().unwrap().contains("overlap")));
    let o = sb.run(&[
        "aggregate",
        "--strict",
        "--clock-skew-s",
        "0",
        "results/raw/same",
        "--output",
        "strict-out",
    ]);
    assert_clean_error(&o, "--strict");
    assert!(!sb.path().join("strict-out/aggregated/same.json").exists());
}

#[test]
fn two_different_gpus_are_summed_and_incomplete_sets_are_flagged() {
    let sb = Sandbox::new();
    let a = sb.scenario("a.json", GPU_A);
    let b = sb.scenario("b.json", GPU_B);
    run(&sb, &a, "two", "0", &[]);
    run(&sb, &b, "two", "1", &[]);
    let o = sb.run(&["--json", "aggregate", "results/raw/two"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let agg: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let total = agg["energy"]["raw_j"].as_f64().unwrap();
    let sum = proc_raw(&sb, "two", 0) + proc_raw(&sb, "two", 1);
    assert!((total - sum).abs() < 1e-9);
    assert_eq!(agg["devices"].as_array().unwrap().len(), 2);
    assert_eq!(agg["cycles"]["n"], 1);
    assert!(agg["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains("at least 3")));

    run(&sb, &a, "gap", "0", &[]);
    run(&sb, &a, "gap", "2", &[]);
    let o = sb.run(&["--json", "aggregate", "results/raw/gap"]);
    let agg: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(agg["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains("missing [1]")));
}

#[test]
fn csv_export_has_the_header_and_the_values() {
    let sb = Sandbox::new();
    let a = sb.scenario("a.json", GPU_A);
    run(&sb, &a, "e1", "0", &[]);
    run(&sb, &a, "e2", "0", &["--no-baseline"]);
    let o = sb.run(&["export", "--csv", "out.csv", "results"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(sb.path().join("out.csv")).unwrap();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    assert!(header.len() < 60);
    for c in [
        "experiment_id",
        "energy_raw_j",
        "energy_adjusted_j",
        "energy_baseline_method",
        "env_gpu_name",
        "simulated",
    ] {
        assert!(header.contains(&c.to_string()), "{c}");
    }
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2, "one row per experiment");
    let e1 = rows
        .iter()
        .find(|r| &r[col("experiment_id")] == "e1")
        .unwrap();
    let raw: f64 = e1[col("energy_raw_j")].parse().unwrap();
    assert!((raw - proc_raw(&sb, "e1", 0)).abs() < 1e-9);
    assert_eq!(&e1[col("simulated")], "true");
    assert_eq!(&e1[col("env_gpu_name")], "Sim A");
    let e2 = rows
        .iter()
        .find(|r| &r[col("experiment_id")] == "e2")
        .unwrap();
    assert_eq!(
        &e2[col("energy_adjusted_j")],
        "",
        "unknown is an empty cell, not 0"
    );
    assert_eq!(&e2[col("tokens_out")], "");

    let o = sb.run(&[
        "export",
        "--per-process",
        "--csv",
        "pp.csv",
        "results/raw/e1",
        "results/raw/e2/process_0.json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(sb.path().join("pp.csv")).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(text.lines().nth(1).unwrap().starts_with("e1,0,"));
}

#[test]
fn plot_writes_an_svg_with_power_throttle_and_baseline() {
    let sb = Sandbox::new();
    let dev = sb.scenario(
        "t.json",
        r#"{"idle_w": 60, "segments": [
            {"start_s": 0.5, "end_s": 0.8, "power_w": 300, "throttle": ["sw_power_cap"]},
            {"start_s": 0.8, "end_s": 100, "power_w": 300}]}"#,
    );
    run(&sb, &dev, "p", "0", &["--timeseries"]);
    let o = sb.run(&["plot", "results/raw/p/process_0.json", "-o", "p.svg"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let svg = std::fs::read_to_string(sb.path().join("p.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("<polyline"), "a power line");
    assert!(
        svg.contains("time (s)") && svg.contains("power (W)"),
        "axes with units"
    );
    assert!(
        svg.contains("device 0 Sim GPU power") || svg.contains("device 0"),
        "series label"
    );
    assert!(svg.contains("throttled"), "throttle shading in the legend");
    assert!(svg.contains("idle baseline"), "baseline line");
    assert!(svg.contains("SIMULATED"));
    // the time-series file itself plots too
    let o = sb.run(&[
        "plot",
        "results/raw/p/process_0_timeseries.json",
        "-o",
        "ts.svg",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // a result without a time series is a clear error and no SVG
    run(&sb, &dev, "nots", "0", &[]);
    let o = sb.run(&["plot", "results/raw/nots/process_0.json", "-o", "n.svg"]);
    assert_clean_error(&o, "--timeseries");
    assert!(!sb.path().join("n.svg").exists());
}

#[test]
fn show_summarises_results_and_reads_any_3x_version() {
    let sb = Sandbox::new();
    let a = sb.scenario("a.json", GPU_A);
    run(&sb, &a, "s", "0", &[]);
    let o = sb.run(&["show", "results/raw/s/process_0.json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("energy") && out.contains("SIMULATED") && out.contains("Sim A"),
        "{out}"
    );

    // a newer 3.x file with unknown fields still reads
    let mut v = sb.json("results/raw/s/process_0.json");
    v["schema_version"] = "3.9".into();
    v["from_the_future"] = serde_json::json!({"x": 1});
    std::fs::write(sb.path().join("newer.json"), v.to_string()).unwrap();
    let o = sb.run(&["show", "newer.json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // another major version is a clear error
    v["schema_version"] = "4.0".into();
    std::fs::write(sb.path().join("v4.json"), v.to_string()).unwrap();
    let o = sb.run(&["show", "v4.json"]);
    assert_clean_error(&o, "schema version 4.0");
}

#[test]
fn show_displays_the_groups_of_shared_windows() {
    let sb = Sandbox::new();
    let a = sb.scenario("a.json", GPU_A);
    run(&sb, &a, "g", "0", &[]);
    let mut v = sb.json("results/raw/g/process_0.json");
    v["groups"] = serde_json::json!([{
        "name": "requests", "windows": 12, "open_windows": 0,
        "union_j": 480.0, "union_uncertainty_j": 2.5, "union_adjusted_j": 300.0,
        "shares_sum_j": 480.0, "shares_sum_relative_error": 0.0,
        "gaps_s": 0.75, "gaps_j": 45.0, "span_s": 9.0, "stretches": 24,
        "per_window_j": {"p50": 38.5, "p95": 61.0, "p99": 64.0},
        "per_weight_j": 0.125, "weight": 3840.0, "split": "weight"
    }]);
    std::fs::write(sb.path().join("groups.json"), v.to_string()).unwrap();
    let o = sb.run(&["show", "groups.json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for want in [
        "`requests`",
        "12 windows",
        "480.00",
        "gaps 0.750 s",
        "p95 61.00 J",
        "0.1250 J",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
}

#[test]
fn corrupted_result_files_are_clear_errors_everywhere() {
    let sb = Sandbox::new();
    let a = sb.scenario("a.json", GPU_A);
    run(&sb, &a, "c", "0", &[]);
    std::fs::write(
        sb.path().join("results/raw/c/process_1.json"),
        "{ \"schema_version\": \"3.0\", trunc",
    )
    .unwrap();
    let o = sb.run(&["show", "results/raw/c/process_1.json"]);
    assert_clean_error(&o, "process_1.json");
    let o = sb.run(&["aggregate", "results/raw/c"]);
    assert_clean_error(&o, "process_1.json");
    assert!(!sb.path().join("results/aggregated/c.json").exists());
    let o = sb.run(&["export", "--csv", "x.csv", "results/raw/c"]);
    assert_clean_error(&o, "process_1.json");
    assert!(!sb.path().join("x.csv").exists());
    let o = sb.run(&["aggregate", "no/such/dir"]);
    assert_clean_error(&o, "no/such/dir");
}

#[test]
fn baseline_subcommands_measure_show_and_clear() {
    let sb = Sandbox::new();
    let a = sb.scenario("a.json", GPU_A);
    let o = sb.run(&["baseline", "measure", "--device", &a, "--duration", "0.3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("100.0 W"), "{}", stdout(&o));
    let o = sb.run(&["baseline", "show"]);
    assert!(o.status.success());
    let err = stdout(&o);
    assert!(
        err.contains("Sim A") && err.contains("SIM-") && err.contains("expires in"),
        "{err}"
    );
    let o = sb.run(&["--json", "baseline", "show"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!((v[0]["power_w"].as_f64().unwrap() - 100.0).abs() < 0.5);
    let o = sb.run(&["baseline", "measure", "--device", &a]);
    assert!(stdout(&o).contains("cached"), "{}", stdout(&o));
    let o = sb.run(&["baseline", "clear"]);
    assert!(stdout(&o).contains("removed 1"));
    let o = sb.run(&["--json", "baseline", "show"]);
    assert_eq!(stdout(&o).trim(), "[]");
}

#[test]
fn env_prints_the_environment() {
    let sb = Sandbox::new();
    let a = sb.scenario("a.json", GPU_A);
    let o = sb.run(&["env", "--device", &a]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("Sim A | simulated"),
        "{}",
        stdout(&o)
    );
    let o = sb.run(&["--json", "env", "--device", &a]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["gpu_count"], 1);
    assert_eq!(v["simulated"], true);
    let o = sb.run(&["env", "--device", "none"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("no measured device"));
}

/// Rewrite one result file of the sandbox through `edit`.
fn edit(sb: &Sandbox, rel: &str, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v = sb.json(rel);
    f(&mut v);
    std::fs::write(sb.path().join(rel), v.to_string()).unwrap();
}

fn agg_json(sb: &Sandbox, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json", "aggregate"];
    all.extend_from_slice(args);
    let o = sb.run(&all);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

fn has_warning(agg: &serde_json::Value, needle: &str) -> bool {
    agg["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains(needle))
}

#[test]
fn interrupted_and_failed_cycles_are_left_out_unless_included() {
    let sb = Sandbox::new();
    let a = sb.scenario("a.json", GPU_A);
    run(&sb, &a, "fail", "0", &["--cycles", "3"]);
    edit(&sb, "results/raw/fail/process_0_cycle_1.json", |v| {
        v["interrupted"] = true.into();
    });
    edit(&sb, "results/raw/fail/process_0_cycle_2.json", |v| {
        v["command"]["exit_code"] = 2.into();
    });
    let raw0 = sb.json("results/raw/fail/process_0_cycle_0.json")["energy"]["raw_j"]
        .as_f64()
        .unwrap();
    let agg = agg_json(&sb, &["results/raw/fail"]);
    assert_eq!(agg["cycles"]["n"], 1, "{agg}");
    let excluded = agg["cycles"]["excluded"].as_array().unwrap();
    assert_eq!(excluded.len(), 2, "{excluded:?}");
    assert_eq!(excluded[0]["cycle"], 1);
    assert!(excluded[0]["reason"]
        .as_str()
        .unwrap()
        .contains("interrupted"));
    assert_eq!(excluded[1]["cycle"], 2);
    assert!(excluded[1]["reason"].as_str().unwrap().contains("exited 2"));
    assert!((agg["energy"]["raw_j"].as_f64().unwrap() - raw0).abs() < 1e-9);
    assert!(has_warning(&agg, "cycle 1 left out"), "{agg}");
    assert_eq!(agg["sources"].as_array().unwrap().len(), 1);

    let agg = agg_json(&sb, &["--include-failed", "results/raw/fail"]);
    assert_eq!(agg["cycles"]["n"], 3);
    assert!(agg["cycles"]["excluded"].as_array().unwrap().is_empty());
    assert!(has_warning(&agg, "cycle 2 is included although"), "{agg}");

    // nothing but failures: a clear error, unless included
    for c in [0, 1] {
        edit(
            &sb,
            &format!("results/raw/fail/process_0_cycle_{c}.json"),
            |v| {
                v["command"]["signal"] = 9.into();
                v["command"]["exit_code"] = serde_json::Value::Null;
                v["interrupted"] = false.into();
            },
        );
    }
    let o = sb.run(&["aggregate", "results/raw/fail"]);
    assert_clean_error(&o, "--include-failed");
}

#[test]
fn the_world_size_names_a_missing_highest_rank_and_ranks_missing_from_a_cycle() {
    let sb = Sandbox::new();
    let a = sb.scenario("a.json", GPU_A);
    // a world of 3 whose rank 2 never wrote: invisible to a 0..max check
    run(&sb, &a, "w", "0", &["--world-size", "3"]);
    let o = sb
        .cmd()
        .args(["run", "--device", &a, "--experiment-id", "w"])
        .args(["--process-index", "1", "--", "true"])
        .env("WORLD_SIZE", "3")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sb.json("results/raw/w/process_1.json")["world_size"], 3);
    let agg = agg_json(&sb, &["results/raw/w"]);
    assert!(
        has_warning(&agg, "(world size 3), missing [2]"),
        "{}",
        agg["warnings"]
    );
    let o = sb.run(&["aggregate", "--strict", "results/raw/w", "--output", "s"]);
    assert_clean_error(&o, "missing [2]");

    // rank 1 is in cycle 0 but not in cycle 1, and no world size was recorded
    run(&sb, &a, "x", "0", &["--cycles", "2"]);
    run(&sb, &a, "x", "1", &["--cycles", "2"]);
    std::fs::remove_file(sb.path().join("results/raw/x/process_1_cycle_1.json")).unwrap();
    let agg = agg_json(&sb, &["results/raw/x"]);
    assert!(
        has_warning(
            &agg,
            "process 1 has results in some cycles but none in cycle(s) [1]"
        ),
        "{}",
        agg["warnings"]
    );
    assert!(
        has_warning(&agg, "cycle 1: incomplete"),
        "{}",
        agg["warnings"]
    );

    // a bad world size is one line naming the flag or variable, before anything runs
    let o = sb.run(&["run", "--device", &a, "--world-size", "0", "--", "true"]);
    assert_clean_error(&o, "--world-size");
    let o = sb
        .cmd()
        .args([
            "run",
            "--device",
            &a,
            "--experiment-id",
            "bad",
            "--",
            "true",
        ])
        .env("SLURM_PROCID", "0")
        .env("SLURM_NTASKS", "many")
        .output()
        .unwrap();
    assert_clean_error(&o, "SLURM_NTASKS");
    assert!(!sb.path().join("results/raw/bad").exists());
}

#[test]
fn a_gpu_seen_from_two_containers_counts_once_and_rapl_ids_are_per_host() {
    let sb = Sandbox::new();
    let a = sb.scenario("a.json", GPU_A);
    run(&sb, &a, "ctr", "0", &[]);
    run(&sb, &a, "ctr", "1", &[]);
    let p1 = "results/raw/ctr/process_1.json";
    edit(&sb, p1, |v| {
        v["environment"]["hostname"] = "container-b".into()
    });
    let agg = agg_json(&sb, &["results/raw/ctr"]);
    assert_eq!(
        agg["devices"].as_array().unwrap().len(),
        1,
        "{}",
        agg["devices"]
    );
    let p0 = sb.json("results/raw/ctr/process_0.json");
    assert!(
        p0["environment"]["host_id"].as_str().is_some(),
        "host id recorded"
    );

    // RAPL ids repeat on every host: told apart by the host identity, not the hostname
    run(&sb, &a, "cpu", "0", &[]);
    run(&sb, &a, "cpu", "1", &[]);
    for (i, host) in [(0, "machine-aaaa"), (1, "machine-bbbb")] {
        edit(&sb, &format!("results/raw/cpu/process_{i}.json"), |v| {
            v["devices"][0]["uuid"] = "rapl-package-0".into();
            v["environment"]["host_id"] = host.into();
        });
    }
    let agg = agg_json(&sb, &["results/raw/cpu"]);
    assert_eq!(
        agg["devices"].as_array().unwrap().len(),
        2,
        "two hosts' packages"
    );
    edit(&sb, "results/raw/cpu/process_1.json", |v| {
        v["environment"]["host_id"] = "machine-aaaa".into();
        v["environment"]["hostname"] = "container-b".into();
    });
    let agg = agg_json(&sb, &["results/raw/cpu"]);
    assert_eq!(
        agg["devices"].as_array().unwrap().len(),
        1,
        "one host's package"
    );
}

#[test]
fn clock_skew_between_hosts_is_allowed_up_to_a_stated_bound() {
    let sb = Sandbox::new();
    let a = sb.scenario("a.json", GPU_A);
    let b = sb.scenario("b.json", GPU_B);
    run(&sb, &a, "skew", "0", &[]);
    run(&sb, &b, "skew", "1", &[]);
    // process 1's clock runs ahead: its window starts 0.5 s after process 0's ended
    let end0 = sb.json("results/raw/skew/process_0.json")["end_unix_s"]
        .as_f64()
        .unwrap();
    edit(&sb, "results/raw/skew/process_1.json", |v| {
        let d = v["end_unix_s"].as_f64().unwrap() - v["start_unix_s"].as_f64().unwrap();
        v["start_unix_s"] = (end0 + 0.5).into();
        v["end_unix_s"] = (end0 + 0.5 + d).into();
    });
    let o = sb.run(&["aggregate", "--strict", "results/raw/skew"]);
    assert!(o.status.success(), "within the default 1 s: {}", stderr(&o));
    assert!(stdout(&o).contains("1 s of clock skew"), "{}", stdout(&o));
    let agg = sb.json("results/aggregated/skew.json");
    assert_eq!(agg["clock_skew_allowance_s"], 1.0);
    let o = sb.run(&[
        "aggregate",
        "--strict",
        "--clock-skew-s",
        "0.2",
        "results/raw/skew",
    ]);
    assert_clean_error(&o, "0.2 s allowed for clock skew");
    let o = sb.run(&["aggregate", "--clock-skew-s=-1", "results/raw/skew"]);
    assert_clean_error(&o, "--clock-skew-s");
}

#[test]
fn each_benchmark_of_a_bench_run_is_its_own_row() {
    let sb = Sandbox::new();
    let a = sb.scenario("a.json", GPU_A);
    run(&sb, &a, "src", "0", &[]);
    // a bench run writes one result per benchmark, all with one experiment id and index 0
    let dir = sb.path().join("lem/raw/bench-1");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, raw) in [("small", 1.0), ("large", 50.0)] {
        let mut v = sb.json("results/raw/src/process_0.json");
        v["experiment_id"] = "bench-1".into();
        v["energy"]["raw_j"] = raw.into();
        v["devices"][0]["energy"]["raw_j"] = raw.into();
        v["bench"] = serde_json::json!({"name": name, "samples": 10,
            "energy_per_iter_j": {"mean": raw / 10.0}});
        std::fs::write(dir.join(format!("{name}.json")), v.to_string()).unwrap();
    }
    let o = sb.run(&["export", "--csv", "b.csv", "lem"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(sb.path().join("b.csv")).unwrap();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2, "{text}");
    for (name, raw) in [("small", "1.0"), ("large", "50.0")] {
        let r = rows.iter().find(|r| &r[col("bench_name")] == name).unwrap();
        assert_eq!(&r[col("experiment_id")], "bench-1");
        assert_eq!(&r[col("energy_raw_j")], raw, "{name}");
        assert!(!r[col("bench_energy_per_iter_raw_j")].is_empty());
    }
}

#[test]
fn two_thousand_processes_aggregate_quickly_with_each_warning_said_once() {
    let sb = Sandbox::new();
    let a = sb.scenario("a.json", GPU_A);
    run(&sb, &a, "src", "0", &[]);
    let base = sb.json("results/raw/src/process_0.json");
    let dir = sb.path().join("results/raw/big");
    std::fs::create_dir_all(&dir).unwrap();
    let n = 2000u32;
    for i in 0..n {
        let mut v = base.clone();
        v["experiment_id"] = "big".into();
        v["process_index"] = i.into();
        v["world_size"] = n.into();
        v["devices"][0]["uuid"] = format!("GPU-{i:05}").into();
        v["warnings"] = serde_json::json!([
            format!("device 0: below_resolution: the {:.1} ms window spans fewer than 3 energy-counter updates", 10.0 + f64::from(i) / 7.0),
            "a warning every process gives",
        ]);
        std::fs::write(dir.join(format!("process_{i}.json")), v.to_string()).unwrap();
    }
    let t = std::time::Instant::now();
    let agg = agg_json(&sb, &["results/raw/big"]);
    // generous for a debug build on a loaded machine; quadratic de-duplication took minutes
    assert!(t.elapsed().as_secs() < 120, "{:?}", t.elapsed());
    assert_eq!(agg["num_processes"], n);
    assert_eq!(agg["devices"].as_array().unwrap().len(), n as usize);
    let w: Vec<&str> = agg["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        w.len() < 10,
        "{} warnings, e.g. {:?}",
        w.len(),
        &w[..w.len().min(5)]
    );
    assert!(
        w.contains(&"processes 0-1999: a warning every process gives"),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|x| x.starts_with("2000 window(s) were shorter")),
        "{w:?}"
    );
}
