//! `lem run` end to end on simulated devices.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_clean_error, stderr, stdout, Sandbox};

const CONSTANT: &str = r#"{"name": "Sim 250 W", "idle_w": 250.0}"#;

fn process0(sb: &Sandbox, exp: &str) -> serde_json::Value {
    sb.json(&format!("results/raw/{exp}/process_0.json"))
}

#[test]
fn constant_power_run_then_cached_then_forced_baseline() {
    let sb = Sandbox::new();
    let dev = sb.scenario("c.json", CONSTANT);
    let o = sb.run(&[
        "run",
        "--device",
        &dev,
        "--experiment-id",
        "a",
        "--",
        "sleep",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = process0(&sb, "a");
    let d = v["duration_s"].as_f64().unwrap();
    let raw = v["energy"]["raw_j"].as_f64().unwrap();
    assert!((2.0..3.0).contains(&d), "{d}");
    assert!(
        (raw - 250.0 * d).abs() / (250.0 * d) < 0.02,
        "{raw} vs {}",
        250.0 * d
    );
    let b = v["energy"]["baseline_power_w"].as_f64().unwrap();
    assert!((b - 250.0).abs() < 1.0, "{b}");
    let adj = v["energy"]["adjusted_j"].as_f64().unwrap();
    assert!((adj - (raw - b * d).max(0.0)).abs() < 1e-6);
    assert_eq!(v["energy"]["baseline_method"], "fresh");
    assert_eq!(v["simulated"], true);
    assert_eq!(v["experiment_id"], "a");
    assert_eq!(v["process_index"], 0);
    assert_eq!(v["command"]["argv"], serde_json::json!(["sleep", "2"]));
    assert_eq!(v["command"]["exit_code"], 0);
    assert_eq!(v["interrupted"], false);
    assert!(v["environment"]["summary"]
        .as_str()
        .unwrap()
        .contains("simulated"));
    assert!(v["schema_version"].as_str().unwrap().starts_with('3'));
    let err = stderr(&o);
    assert!(err.contains("SIMULATED"), "{err}");
    assert!(err.contains("raw "), "{err}");

    let o = sb.run(&[
        "run",
        "--device",
        &dev,
        "--experiment-id",
        "b",
        "--",
        "sleep",
        "0.2",
    ]);
    assert!(o.status.success());
    let v = process0(&sb, "b");
    assert_eq!(v["energy"]["baseline_method"], "cached");
    assert!(v["energy"]["baseline_cache_age_s"].as_f64().unwrap() >= 0.0);

    let o = sb.run(&[
        "run",
        "--device",
        &dev,
        "--experiment-id",
        "c",
        "--force-baseline",
        "--",
        "true",
    ]);
    assert!(o.status.success());
    assert_eq!(process0(&sb, "c")["energy"]["baseline_method"], "fresh");
}

#[test]
fn throttle_inside_the_run_is_detected_and_warned() {
    let sb = Sandbox::new();
    // baseline 0.3 s, then the run; thermal throttle from 1.0 to 1.6 s since open
    let dev = sb.scenario(
        "t.json",
        r#"{"idle_w": 60, "segments": [
            {"start_s": 0.5, "end_s": 1.0, "power_w": 300},
            {"start_s": 1.0, "end_s": 1.6, "power_w": 280, "throttle": ["sw_thermal_slowdown"]},
            {"start_s": 1.6, "end_s": 100, "power_w": 300}]}"#,
    );
    let o = sb.run(&[
        "run",
        "--device",
        &dev,
        "--experiment-id",
        "t",
        "--",
        "sleep",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = process0(&sb, "t");
    assert_eq!(v["thermal"]["throttle_detected"], true);
    let th = v["thermal"]["thermal_duration_s"].as_f64().unwrap();
    assert!((th - 0.6).abs() <= 0.1, "{th}");
    assert!(!v["thermal"]["events"].as_array().unwrap().is_empty());
    let err = stderr(&o);
    assert!(err.contains("warning: throttling detected"), "{err}");
}

#[test]
fn exit_codes_pass_through_and_failing_commands_still_write_results() {
    let sb = Sandbox::new();
    let dev = sb.scenario("c.json", CONSTANT);
    let o = sb.run(&[
        "run",
        "--device",
        &dev,
        "--experiment-id",
        "ok",
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let o = sb.run(&[
        "run",
        "--device",
        &dev,
        "--experiment-id",
        "three",
        "--",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3));
    let v = process0(&sb, "three");
    assert_eq!(v["command"]["exit_code"], 3);
    assert_eq!(v["command"]["argv"][0], "sh");
    let o = sb.run(&[
        "run",
        "--device",
        &dev,
        "--experiment-id",
        "killed",
        "--",
        "sh",
        "-c",
        "kill -9 $$",
    ]);
    assert_eq!(o.status.code(), Some(128 + 9));
    let v = process0(&sb, "killed");
    assert_eq!(v["command"]["signal"], 9);
    assert!(v["command"]["exit_code"].is_null());
}

#[test]
fn timeseries_sample_count_is_within_10_percent_of_expected() {
    let sb = Sandbox::new();
    let dev = sb.scenario("c.json", CONSTANT);
    let o = sb.run(&[
        "run",
        "--device",
        &dev,
        "--experiment-id",
        "ts",
        "--timeseries",
        "--interval-ms",
        "50",
        "--",
        "sleep",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = process0(&sb, "ts");
    assert_eq!(v["timeseries_file"], "process_0_timeseries.json");
    let ts = sb.json("results/raw/ts/process_0_timeseries.json");
    let n = ts["sample_count"].as_f64().unwrap();
    let expected = v["duration_s"].as_f64().unwrap() / 0.05;
    assert!((n - expected).abs() <= 0.1 * expected, "{n} vs {expected}");
    assert_eq!(ts["samples"].as_array().unwrap().len() as f64, n);
    assert_eq!(ts["interval_ms"], 50.0);
    assert!(ts["samples"][0]["power_w"].as_f64().is_some());
}

#[test]
fn cycles_write_one_result_each_and_an_aggregate_with_a_confidence_interval() {
    let sb = Sandbox::new();
    let dev = sb.scenario("c.json", r#"{"idle_w": 100}"#);
    let o = sb.run(&[
        "run",
        "--device",
        &dev,
        "--experiment-id",
        "cyc",
        "--no-baseline",
        "--cycles",
        "3",
        "--cycle-gap-s",
        "0.1",
        "--",
        "sleep",
        "0.3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let files = sb.files();
    let results: Vec<&String> = files
        .iter()
        .filter(|f| f.starts_with("results/raw/cyc/"))
        .collect();
    assert_eq!(results.len(), 3, "{files:?}");
    let agg = sb.json("results/aggregated/cyc.json");
    assert_eq!(agg["cycles"]["n"], 3);
    let raw = &agg["cycles"]["energy_raw_j"];
    let mean = raw["mean"].as_f64().unwrap();
    assert!((mean - 30.0).abs() < 3.0, "{mean}");
    assert!(
        raw["ci95_low"].as_f64().unwrap() <= mean && mean <= raw["ci95_high"].as_f64().unwrap()
    );
    assert!(
        agg["energy"]["adjusted_j"].is_null(),
        "no baseline: no adjusted energy"
    );
    assert!(stderr(&o).contains("cycles: n=3"));
}

#[test]
fn json_mode_prints_the_result_on_stdout() {
    let sb = Sandbox::new();
    let dev = sb.scenario("c.json", CONSTANT);
    let o = sb.run(&[
        "--json",
        "--quiet",
        "run",
        "--device",
        &dev,
        "--experiment-id",
        "j",
        "--",
        "true",
    ]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["experiment_id"], "j");
    assert!(stderr(&o).is_empty(), "quiet: {}", stderr(&o));
}

#[test]
fn process_index_comes_from_rank_variables() {
    let sb = Sandbox::new();
    let dev = sb.scenario("c.json", CONSTANT);
    let o = sb
        .cmd()
        .args(["run", "--device", &dev, "--", "true"])
        .env("RANK", "2")
        .env("LEM_EXPERIMENT_ID", "ranked")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        sb.json("results/raw/ranked/process_2.json")["process_index"],
        2
    );
}

/// Whether process `pid` has a child (scanning /proc, no external tools).
#[cfg(target_os = "linux")]
fn has_child(pid: u32) -> bool {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return false;
    };
    rd.flatten().any(|e| {
        std::fs::read_to_string(e.path().join("stat")).is_ok_and(|stat| {
            // the parent pid is the 2nd field after the `(comm)` field
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(|p| p == pid.to_string()))
                .unwrap_or(false)
        })
    })
}

#[cfg(target_os = "linux")]
#[test]
fn sigterm_is_forwarded_and_the_result_is_marked_interrupted() {
    use std::time::{Duration, Instant};
    let sb = Sandbox::new();
    let dev = sb.scenario("c.json", CONSTANT);
    let mut child = sb
        .cmd()
        .args([
            "run",
            "--device",
            &dev,
            "--experiment-id",
            "int",
            "--no-baseline",
            "--",
            "sleep",
            "30",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // wait until lem has started the command (its scope is open once `sleep` runs)
    let t = Instant::now();
    loop {
        if has_child(child.id()) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "sleep never started");
        std::thread::yield_now();
    }
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(128 + 15));
    let v = sb.json("results/raw/int/process_0.json");
    assert_eq!(v["interrupted"], true);
    assert_eq!(v["command"]["signal"], 15);
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn bad_input_is_one_clear_line_and_leaves_no_files() {
    let sb = Sandbox::new();
    let dev = sb.scenario("c.json", CONSTANT);
    let bad = sb.scenario(
        "bad.json",
        r#"{"idle_w": 60, "segments": [{"start_s": 2, "end_s": 1, "power_w": 5}]}"#,
    );

    let o = sb.run(&["run", "--device", &bad, "--", "true"]);
    assert_clean_error(&o, "bad.json");
    assert_eq!(o.status.code(), Some(125));

    let o = sb.run(&["run", "--device", "gpu7", "--", "true"]);
    assert_clean_error(&o, "--device");

    let o = sb.run(&["run", "--device", &dev]);
    assert_clean_error(&o, "no command");

    let o = sb.run(&["run", "--device", &dev, "--", "/no/such/command-xyz"]);
    assert_clean_error(&o, "not found");
    assert_eq!(o.status.code(), Some(127));

    std::fs::write(sb.path().join("a-file"), "x").unwrap();
    let o = sb.run(&[
        "run",
        "--device",
        &dev,
        "--output",
        "a-file/sub",
        "--",
        "true",
    ]);
    assert_clean_error(&o, "--output");

    let o = sb.run(&["run", "--device", &dev, "--interval-ms", "0", "--", "true"]);
    assert_clean_error(&o, "--interval-ms");

    let o = sb.run(&["run", "--bogus-flag", "--", "true"]);
    assert_clean_error(&o, "--bogus-flag");

    let leftovers: Vec<String> = sb
        .files()
        .into_iter()
        .filter(|f| f.ends_with(".json") || f.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn require_baseline_fails_cleanly_without_a_device_and_passes_with_one() {
    let sb = Sandbox::new();
    let o = sb.run(&[
        "run",
        "--device",
        "none",
        "--require-baseline",
        "--",
        "true",
    ]);
    assert_clean_error(&o, "baseline required");
    let dev = sb.scenario("c.json", CONSTANT);
    let o = sb.run(&[
        "run",
        "--device",
        &dev,
        "--require-baseline",
        "--experiment-id",
        "rb",
        "--",
        "true",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(process0(&sb, "rb")["energy"]["baseline_method"], "fresh");
    let o = sb.run(&[
        "run",
        "--device",
        &dev,
        "--require-baseline",
        "--no-baseline",
        "--",
        "true",
    ]);
    assert_clean_error(&o, "--no-baseline");
}

#[test]
fn cycles_start_after_a_seeded_random_delay_within_the_sensor_period() {
    let sb = Sandbox::new();
    let dev = sb.scenario(
        "s.json",
        r#"{"idle_w": 100, "sensor": {"period_ms": 100, "sensing_duty": 0.25}}"#,
    );
    let delays = |exp: &str| -> Vec<f64> {
        let o = sb.run(&[
            "run",
            "--device",
            &dev,
            "--experiment-id",
            exp,
            "--no-baseline",
            "--cycles",
            "3",
            "--seed",
            "5",
            "--",
            "true",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        (0..3)
            .map(|c| {
                let v = sb.json(&format!("results/raw/{exp}/process_0_cycle_{c}.json"));
                assert_eq!(v["start_delay"]["seed"], 5);
                v["start_delay"]["delay_s"].as_f64().unwrap()
            })
            .collect()
    };
    let first = delays("d1");
    assert!(first.iter().all(|d| (0.0..0.1).contains(d)), "{first:?}");
    assert!(first.windows(2).any(|w| w[0] != w[1]), "{first:?}");
    assert_eq!(first, delays("d2"), "the seed repeats the delays");
}

#[test]
fn a_command_gone_after_the_first_cycle_fails_cleanly_after_aggregating_that_cycle() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let dev = sb.scenario("c.json", r#"{"idle_w": 100}"#);
    // the command deletes itself: cycle 2 cannot be spawned
    let job = sb.path().join("job.sh");
    std::fs::write(&job, "#!/bin/sh\nrm -f \"$0\"\n").unwrap();
    std::fs::set_permissions(&job, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = sb.run(&[
        "run",
        "--device",
        &dev,
        "--experiment-id",
        "gone",
        "--no-baseline",
        "--cycles",
        "3",
        "--",
        "./job.sh",
    ]);
    assert_clean_error(&o, "cycle 2/3: command `./job.sh` not found");
    assert_eq!(o.status.code(), Some(127));
    let agg = sb.json("results/aggregated/gone.json");
    assert_eq!(agg["cycles"]["n"], 1);
    assert_eq!(
        sb.json("results/raw/gone/process_0_cycle_0.json")["command"]["exit_code"],
        0
    );
    assert!(!sb
        .path()
        .join("results/raw/gone/process_0_cycle_1.json")
        .exists());
}

#[test]
fn a_second_run_with_the_same_id_is_refused_unless_overwrite() {
    let sb = Sandbox::new();
    let dev = sb.scenario("c.json", CONSTANT);
    let run = |extra: &[&str], cmd: &[&str]| {
        let mut args = vec!["run", "--device", &dev, "--experiment-id", "same"];
        args.extend_from_slice(extra);
        args.push("--");
        args.extend_from_slice(cmd);
        sb.run(&args)
    };
    let o = run(&["--no-baseline", "--cycles", "5"], &["true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let raw = sb.path().join("results/raw/same");
    let keep = |c: u32| std::fs::read(raw.join(format!("process_0_cycle_{c}.json"))).unwrap();
    let (old3, old4) = (keep(3), keep(4));
    // refused before the command runs
    let o = run(&["--no-baseline", "--cycles", "3"], &["touch", "ran"]);
    assert_clean_error(&o, "results/raw/same");
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("--overwrite"), "{}", stderr(&o));
    assert!(!sb.path().join("ran").exists(), "the command must not run");
    // --overwrite replaces this process's earlier files
    let o = run(
        &["--no-baseline", "--cycles", "3", "--overwrite"],
        &["true"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let names: Vec<String> = sb
        .files()
        .into_iter()
        .filter(|f| f.starts_with("results/raw/same/"))
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let v = sb.json("results/raw/same/process_0_cycle_2.json");
    assert_eq!(v["run"]["cycles"], 3);
    assert!(v["run"]["id"].as_str().is_some());
    assert_eq!(sb.json("results/aggregated/same.json")["cycles"]["n"], 3);
    // files of another run that find their way back in are not aggregated
    std::fs::write(raw.join("process_0_cycle_3.json"), old3).unwrap();
    std::fs::write(raw.join("process_0_cycle_4.json"), old4).unwrap();
    let o = sb.run(&["--json", "aggregate", "results/raw/same"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let agg: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(agg["cycles"]["n"], 3, "{agg}");
    let ex = agg["excluded_files"].as_array().unwrap();
    assert_eq!(ex.len(), 2, "{ex:?}");
    assert_eq!(ex[0]["file"], "process_0_cycle_3.json");
    assert!(ex[0]["reason"].as_str().unwrap().contains("earlier run"));
    assert_eq!(agg["sources"].as_array().unwrap().len(), 3);
}

#[test]
fn only_process_0_writes_the_aggregate_after_waiting_for_the_others() {
    let sb = Sandbox::new();
    let dev = sb.scenario("c.json", CONSTANT);
    let run = |exp: &str, idx: &str, wait: &str| {
        sb.run(&[
            "run",
            "--device",
            &dev,
            "--experiment-id",
            exp,
            "--no-baseline",
            "--cycles",
            "2",
            "--world-size",
            "2",
            "--process-index",
            idx,
            "--aggregate-wait-s",
            wait,
            "--",
            "true",
        ])
    };
    let o = run("one", "1", "5");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("process 0 writes the aggregate"),
        "{}",
        stderr(&o)
    );
    assert!(!sb.path().join("results/aggregated/one.json").exists());
    let o = run("one", "0", "5");
    assert!(o.status.success(), "{}", stderr(&o));
    let agg = sb.json("results/aggregated/one.json");
    assert_eq!(agg["num_processes"], 2);
    // process 1 never comes: process 0 gives up after the wait and says who is missing
    let o = run("alone", "0", "0.3");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("without processes [1]"),
        "{}",
        stderr(&o)
    );
    let agg = sb.json("results/aggregated/alone.json");
    assert!(agg["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains("missing [1]")));
}

#[test]
fn a_smaller_rerun_leaves_the_earlier_runs_higher_ranks_out() {
    let sb = Sandbox::new();
    let dev = sb.scenario("c.json", CONSTANT);
    let run = |world: &str, idx: &str, extra: &[&str]| {
        let mut args = vec![
            "run",
            "--device",
            &dev,
            "--experiment-id",
            "shrink",
            "--no-baseline",
            "--cycles",
            "2",
            "--world-size",
            world,
            "--process-index",
            idx,
            "--aggregate-wait-s",
            "0",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "true"]);
        let o = sb.run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    for i in ["1", "2", "3", "4", "0"] {
        run("5", i, &[]);
    }
    // the same experiment again with 3 processes: each replaces only its own files
    for i in ["1", "2", "0"] {
        run("3", i, &["--overwrite"]);
    }
    let agg = sb.json("results/aggregated/shrink.json");
    assert_eq!(agg["num_processes"], 3, "{agg}");
    let excluded = agg["excluded_files"].as_array().unwrap();
    assert_eq!(
        excluded.len(),
        4,
        "ranks 3 and 4, two cycles each: {excluded:?}"
    );
    assert!(excluded.iter().all(|e| e["reason"]
        .as_str()
        .unwrap()
        .contains("outside the world size 3")));
}

#[test]
fn the_world_size_comes_from_the_launcher_that_gave_the_index() {
    let sb = Sandbox::new();
    let dev = sb.scenario("c.json", CONSTANT);
    let world = |exp: &str, env: &[(&str, &str)]| {
        let mut c = sb.cmd();
        c.args([
            "run",
            "--device",
            &dev,
            "--experiment-id",
            exp,
            "--no-baseline",
        ])
        .args(["--", "true"]);
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let idx = env
            .iter()
            .find(|(k, _)| k.contains("RANK") || k.contains("INDEX") || k.contains("PROCID"))
            .map_or("0", |(_, v)| v);
        sb.json(&format!("results/raw/{exp}/process_{idx}.json"))["world_size"].clone()
    };
    // torchrun's pair
    assert_eq!(world("a", &[("RANK", "1"), ("WORLD_SIZE", "4")]), 4);
    // an index from lem's own variable is not paired with another launcher's size
    assert!(world("b", &[("LEM_PROCESS_INDEX", "1"), ("WORLD_SIZE", "4")]).is_null());
    assert_eq!(
        world("c", &[("LEM_PROCESS_INDEX", "1"), ("LEM_WORLD_SIZE", "2")]),
        2
    );
    // inside a Slurm step, the step's own task count wins over the job's
    assert_eq!(
        world(
            "d",
            &[
                ("SLURM_PROCID", "0"),
                ("SLURM_NTASKS", "8"),
                ("SLURM_STEP_NUM_TASKS", "1")
            ]
        ),
        1
    );
}

#[test]
fn cycles_wait_for_the_devices_to_cool_and_say_when_they_gave_up() {
    let sb = Sandbox::new();
    // idle at 40 °C while the baseline is measured, 90 °C from 0.6 s to 2.2 s
    let dev = sb.scenario(
        "hot.json",
        r#"{"idle_w": 60, "idle_temperature_c": 40, "segments": [
            {"start_s": 0.6, "end_s": 2.2, "power_w": 300, "temperature_c": 90}]}"#,
    );
    let run = |id: &str, timeout: &str| {
        sb.run(&[
            "run",
            "--device",
            &dev,
            "--experiment-id",
            id,
            "--force-baseline",
            "--cycles",
            "2",
            "--cooldown",
            "5",
            "--cooldown-timeout-s",
            timeout,
            "--",
            "sleep",
            "0.6",
        ])
    };
    let o = run("cool", "30");
    assert!(o.status.success(), "{}", stderr(&o));
    let c1 = sb.json("results/raw/cool/process_0_cycle_1.json");
    let waited = c1["cooldown"]["waited_s"].as_f64().unwrap();
    assert!(waited > 0.3, "cycle 1 started hot and waited {waited} s");
    assert_eq!(c1["cooldown"]["reached"], true);
    assert!(
        c1["thermal"]["max_temp_c"].as_f64().unwrap() < 50.0,
        "{}",
        c1["thermal"]
    );
    let o = run("warm", "0.1");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("cooldown timed out"), "{}", stderr(&o));
    let c1 = sb.json("results/raw/warm/process_0_cycle_1.json");
    assert_eq!(c1["cooldown"]["reached"], false);
    let o = sb.run(&["run", "--device", &dev, "--cooldown=-1", "--", "true"]);
    assert_clean_error(&o, "--cooldown");
}
