//! `lem compare` on the simulated device, against known truths: the same load twice is no
//! change, 300 W against 330 W is a 10 % regression, single runs use their bounds, and bad
//! input is a one-line error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_clean_error, stderr, Sandbox};
use lem::compare::{compare, IntervalFrom, Values, Verdict};

/// Run `sleep 0.25` under lem on a constant `watts` load, `cycles` times, as experiment `id`.
fn measure(sb: &Sandbox, id: &str, watts: f64, cycles: &str) {
    let dev = sb.scenario(&format!("{id}.json"), &format!(r#"{{"idle_w": {watts}}}"#));
    let o = sb.run(&[
        "run",
        "--device",
        &dev,
        "--experiment-id",
        id,
        "--no-baseline",
        "--cycles",
        cycles,
        "--",
        "sleep",
        "0.25",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(o)))
}

fn find<'a>(v: &'a serde_json::Value, metric: &str) -> &'a serde_json::Value {
    v["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["metric"] == metric)
        .unwrap_or_else(|| panic!("no {metric} in {v}"))
}

#[test]
fn three_hundred_watts_against_three_hundred_and_thirty_is_a_ten_percent_regression() {
    let sb = Sandbox::new();
    measure(&sb, "base", 300.0, "4");
    measure(&sb, "new", 330.0, "4");
    let agg = |id: &str| format!("results/aggregated/{id}.json");
    let o = sb.run(&["compare", &agg("base"), &agg("new"), "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    let raw = find(&v, "energy.raw_j");
    assert_eq!(raw["verdict"], "regressed");
    assert_eq!(raw["interval_from"], "samples");
    let (lo, hi) = (
        raw["ci_pct"][0].as_f64().unwrap(),
        raw["ci_pct"][1].as_f64().unwrap(),
    );
    // the truth: 10 % more power, over cycles whose lengths (a real `sleep`) differ a little
    // between the runs; on a constant load the energy ratio is exactly the power ratio times
    // the ratio of the mean cycle lengths
    let d = find(&v, "duration_s");
    let truth = 110.0 * d["new"].as_f64().unwrap() / d["base"].as_f64().unwrap() - 100.0;
    assert!((truth - 10.0).abs() < 3.0, "{truth}");
    let change = raw["change_pct"].as_f64().unwrap();
    // (each device's span differs from the window's by its read times: tens of µs on a busy
    // machine, a few hundredths of a point of a 0.25 s cycle)
    assert!((change - truth).abs() < 0.1, "{change} against {truth}");
    assert!(
        lo <= truth && truth <= hi,
        "{truth:+.2} % inside [{lo}, {hi}]"
    );
    assert!(raw["p_value"].as_f64().unwrap() < 0.05);
    for k in ["name", "base", "new", "change_pct"] {
        assert!(!raw[k].is_null(), "{k}");
    }
    // with a threshold below the regression: exit 1, and markdown for a pull request
    let o = sb.run(&[
        "compare",
        &agg("base"),
        &agg("new"),
        "--threshold",
        "5",
        "--format",
        "markdown",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(md.starts_with("| name | metric |"), "{md}");
    assert!(
        md.contains("`energy.raw_j`") && md.contains("**regressed**"),
        "{md}"
    );
    // a threshold above it: not a failure
    let o = sb.run(&["compare", &agg("base"), &agg("new"), "--threshold", "20"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // the same load twice: on a constant load the energy follows the time exactly (a real
    // `sleep` varies a little between runs, more on a busy machine), so the energy's verdict
    // is the duration's, and within the 1 % noise threshold it is `no change`
    measure(&sb, "again", 300.0, "4");
    let o = sb.run(&[
        "compare",
        &agg("base"),
        &agg("again"),
        "--threshold",
        "20",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    let (e, d) = (find(&v, "energy.raw_j"), find(&v, "duration_s"));
    let (ce, cd) = (
        e["change_pct"].as_f64().unwrap(),
        d["change_pct"].as_f64().unwrap(),
    );
    // (each device's span differs from the window's by its read times: tens of µs when busy)
    assert!((ce - cd).abs() < 0.1, "{ce} against {cd}: {v}");
    if cd.abs() < 0.9 {
        assert_eq!(e["verdict"], "no change", "{v}");
    }
    // a noise threshold above the 10 % change: significant, but within the noise
    let o = sb.run(&[
        "compare",
        &agg("base"),
        &agg("new"),
        "--noise-threshold",
        "15",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(find(&json(&o), "energy.raw_j")["verdict"], "no change");
}

#[test]
fn single_runs_are_compared_with_their_own_bounds() {
    let sb = Sandbox::new();
    measure(&sb, "one", 300.0, "1");
    measure(&sb, "two", 330.0, "1");
    let raw = |id: &str| format!("results/raw/{id}/process_0.json");
    let o = sb.run(&["compare", &raw("one"), &raw("two"), "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    let e = find(&v, "energy.raw_j");
    assert_eq!(e["interval_from"], "uncertainty");
    assert!(e["p_value"].is_null());
    assert_eq!(e["name"], "one → two");
    // the table says where such an interval comes from
    let o = sb.run(&["compare", &raw("one"), &raw("two")]);
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("own uncertainty bounds"), "{t}");
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let sb = Sandbox::new();
    measure(&sb, "one", 300.0, "1");
    let raw = "results/raw/one/process_0.json";
    let o = sb.run(&["compare", raw, "missing.json"]);
    assert_clean_error(&o, "missing.json");
    assert_eq!(o.status.code(), Some(125));
    // a benchmark against a run
    let bench = sb.path().join("bench.json");
    std::fs::write(
        &bench,
        r#"{"experiment_id": "bench-x", "bench": {"name": "decode", "per_sample": [
            {"cycle": 0, "iterations": 10, "duration_s": 1.0, "raw_j": 100.0}]}}"#,
    )
    .unwrap();
    let o = sb.run(&["compare", raw, bench.to_str().unwrap()]);
    assert_clean_error(&o, "compare like with like");
    assert_eq!(o.status.code(), Some(125));
    let o = sb.run(&["compare", raw, raw, "--metric", "metrics.nope"]);
    assert_clean_error(&o, "metrics.nope");
}

/// The same distribution on both sides, 40 times: Welch's interval excludes 0 upward in
/// about 2.5 % of comparisons; at most 5 % may be called regressed.
#[test]
fn the_same_load_compared_forty_times_is_rarely_called_regressed() {
    // SplitMix64, uniform in [lo, hi)
    let mut state = 0xc0de_u64;
    let mut uniform = |lo: f64, hi: f64| {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        lo + (hi - lo) * (z >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut regressed = 0;
    for _ in 0..40 {
        let mut side = || Values {
            values: (0..5).map(|_| 100.0 + uniform(-3.0, 3.0)).collect(),
            bound: None,
        };
        let (b, n) = (side(), side());
        let c = compare("x", "energy.raw_j", &b, &n, 5.0).unwrap();
        assert_eq!(c.interval_from, Some(IntervalFrom::Samples));
        regressed += usize::from(c.verdict == Verdict::Regressed);
    }
    assert!(regressed <= 2, "{regressed} of 40 flagged regressed");
}

#[test]
fn directories_are_matched_by_experiment_and_llm_metrics_are_compared() {
    let sb = Sandbox::new();
    // the same experiment id in two output directories, and one only in the base
    for (out, watts) in [("a", 300.0), ("b", 330.0)] {
        let dev = sb.scenario(&format!("{out}.json"), &format!(r#"{{"idle_w": {watts}}}"#));
        for id in ["decode", &format!("only-{out}")] {
            let o = sb.run(&[
                "run",
                "--device",
                &dev,
                "--experiment-id",
                id,
                "--output",
                out,
                "--no-baseline",
                "--cycles",
                "3",
                "--",
                "sleep",
                "0.2",
            ]);
            assert!(o.status.success(), "{}", stderr(&o));
        }
    }
    let o = sb.run(&[
        "compare",
        "a/aggregated",
        "b/aggregated",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    let names: std::collections::BTreeSet<&str> = v["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["decode"]);
    assert_eq!(find(&v, "energy.raw_j")["verdict"], "regressed");
    // two directories with nothing in common: one line
    std::fs::create_dir_all(sb.path().join("c")).unwrap();
    std::fs::copy(
        sb.path().join("b/aggregated/only-b.json"),
        sb.path().join("c/only-b.json"),
    )
    .unwrap();
    let o = sb.run(&["compare", "a/aggregated", "c"]);
    assert_clean_error(&o, "namesake");

    // llm_energy results: energy per output token (with its bound), TTFT and ITL p50
    let llm = |name: &str, per_token: f64| {
        let p = sb.path().join(name);
        std::fs::write(
            &p,
            format!(
                r#"{{"experiment_id": "{name}", "energy": {{"raw_j": 100.0, "uncertainty_j": 1.0}},
                "duration_s": 2.0, "metrics": {{"energy_per_output_token_j": {per_token},
                "energy_per_output_token_uncertainty_j": 0.01, "ttft_ms": 50.0,
                "itl_ms": {{"p50": 12.0}}}}}}"#
            ),
        )
        .unwrap();
        p.to_str().unwrap().to_string()
    };
    let (b, n) = (llm("llm-base", 1.0), llm("llm-new", 1.2));
    let o = sb.run(&["compare", &b, &n, "--format", "json"]);
    let v = json(&o);
    let t = find(&v, "metrics.energy_per_output_token_j");
    assert_eq!(t["verdict"], "regressed");
    assert_eq!(t["interval_from"], "uncertainty");
    assert!((t["change_pct"].as_f64().unwrap() - 20.0).abs() < 1e-9);
    assert_eq!(find(&v, "metrics.ttft_ms")["verdict"], "inconclusive");
    assert_eq!(find(&v, "metrics.itl_ms.p50")["base"], 12.0);
}
