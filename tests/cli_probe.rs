//! `lem probe`, and the uncertainty it feeds, end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_clean_error, stderr, stdout, Sandbox};
use serde_json::Value;

#[test]
fn probe_through_the_fake_driver_is_cached_shown_and_used() {
    let sb = Sandbox::new();
    sb.scenario_file(
        "q.json",
        r#"{"name": "Fake Q80", "idle_w": 150, "counter_update_ms": 80}"#,
    );
    let o = sb.run_nvml(
        "q.json",
        &["probe", "--device", "nvml", "--duration", "1.5", "--json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let r = &v[0];
    let median = r["counter_update_ms"]["median"].as_f64().unwrap();
    assert!((median - 80.0).abs() / 80.0 < 0.1, "probed {median} ms");
    // 150 W for 80 ms
    let step = r["counter_step_mj"].as_f64().unwrap();
    assert!((step - 12_000.0).abs() < 200.0, "{step}");
    assert_eq!(r["power_constant"], true);
    let calls: Vec<&str> = r["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call"].as_str().unwrap())
        .collect();
    assert!(
        calls.contains(&"nvmlDeviceGetTotalEnergyConsumption"),
        "{calls:?}"
    );
    assert!(calls.contains(&"nvmlDeviceGetFieldValues(POWER_INSTANT)"));
    // cached per (name, driver), listed, shown by env
    assert!(sb
        .path()
        .join("cache/probe-Fake_Q80-580.95.05.json")
        .exists());
    let o = sb.run(&["probe", "--show"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("Fake Q80"), "{}", stdout(&o));
    let o = sb.run_nvml("q.json", &["env", "--device", "nvml"]);
    assert!(
        stdout(&o).contains("probe 0     energy counter every "),
        "{}",
        stdout(&o)
    );
    // and the bound of a later run uses it
    let o = sb.run_nvml(
        "q.json",
        &[
            "run",
            "--device",
            "nvml",
            "--no-baseline",
            "--experiment-id",
            "u",
            "--",
            "sleep",
            "0.5",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(" ± "), "{}", stderr(&o));
    let v = sb.json("results/raw/u/process_0.json");
    let u = &v["devices"][0]["energy"]["uncertainty"];
    assert!(u["counter_update_source"]
        .as_str()
        .unwrap()
        .starts_with("probed"));
    let period = u["counter_update_s"].as_f64().unwrap();
    assert!((period - 0.08).abs() < 0.01, "{period}");
    // bound = period × 150 W + 1 mJ
    let bound = v["energy"]["uncertainty_j"].as_f64().unwrap();
    assert!((bound - period * 150.0 - 0.001).abs() < 1e-6, "{bound}");
    assert_eq!(v["energy"]["uncertainty_method"], "counter_staleness");
    // the CSV carries it
    let csv = sb.path().join("u.csv");
    let o = sb.run(&["export", "--csv", csv.to_str().unwrap(), "results/raw/u"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut r = csv::Reader::from_path(&csv).unwrap();
    let h = r.headers().unwrap().clone();
    let row = r.records().next().unwrap().unwrap();
    let col = |n: &str| row[h.iter().position(|x| x == n).unwrap()].to_string();
    let got: f64 = col("energy_uncertainty_j").parse().unwrap();
    assert!((got - bound).abs() < 1e-9);
    assert_eq!(col("energy_uncertainty_method"), "counter_staleness");
}

#[test]
fn probe_a_simulated_device_and_reject_bad_input() {
    let sb = Sandbox::new();
    let dev = sb.scenario("s.json", r#"{"idle_w": 90, "counter_update_ms": 120}"#);
    let o = sb.run(&["probe", "--device", &dev, "--duration", "1.2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("[simulated]"), "{out}");
    assert!(out.contains("energy counter: changes every 1"), "{out}");
    assert!(out.contains("constant while probed"), "{out}");
    for (args, names) in [
        (
            vec!["probe", "--device", dev.as_str(), "--duration", "0"],
            "--duration",
        ),
        (
            vec!["probe", "--device", dev.as_str(), "--duration", "9999"],
            "--duration",
        ),
        (vec!["probe", "--device", "gpu9"], "--device"),
        (vec!["probe", "--device", "none"], "no device"),
    ] {
        let o = sb.run(&args);
        assert_clean_error(&o, names);
    }
}
