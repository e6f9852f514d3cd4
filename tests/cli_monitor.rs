//! `lem monitor` end to end: the metrics of the contract on a simulated device and through
//! the fake NVML driver (a lost GPU, a counter reset, throttle time by reason, processes),
//! checked against the scenarios' known power; the endpoint's formats, 404, a port in use.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::monitor::{Metrics, Monitor};
use common::{assert_clean_error, Sandbox};

fn monitor_cmd(mut c: Command, device: &str, extra: &[&str]) -> Command {
    c.args([
        "monitor",
        "--device",
        device,
        "--listen",
        "127.0.0.1:0",
        "--interval-ms",
        "20",
    ])
    .args(extra);
    c
}

fn sleep_s(s: f64) {
    std::thread::sleep(Duration::from_secs_f64(s));
}

/// Scrape, wait `span` s, scrape again: the two scrapes and the time between them.
fn two_scrapes(m: &Monitor, span: f64) -> (Metrics, Metrics, f64) {
    let t0 = Instant::now();
    let a = m.scrape();
    sleep_s(span);
    let dt = t0.elapsed().as_secs_f64();
    let b = m.scrape();
    (a, b, dt)
}

const GPU0: &[(&str, &str)] = &[("gpu", "0")];

#[test]
fn a_300_w_device_serves_its_energy_power_and_baseline() {
    let sb = Sandbox::new();
    // idle 60 W (the baseline's 0.3 s), 300 W from 1 s on
    let dev = sb.scenario(
        "s.json",
        r#"{"name": "Sim 300", "idle_w": 60, "segments": [{"start_s": 1.0, "end_s": 1e5, "power_w": 300, "memory_used_mb": 1024, "utilisation_pct": 75, "temperature_c": 61}]}"#,
    );
    let m = Monitor::start(monitor_cmd(sb.cmd(), &dev, &["--force-baseline"]));
    sleep_s(1.5);
    let (a, b, dt) = two_scrapes(&m, 4.0);
    let e = |x: &Metrics, n: &str| x.get(n, GPU0).unwrap_or_else(|| panic!("no {n}"));
    let watts = (e(&b, "lem_gpu_energy_joules_total") - e(&a, "lem_gpu_energy_joules_total")) / dt;
    // a scrape sees the windows ended up to a round (20 ms) before it, more on a busy machine
    assert!((watts - 300.0).abs() < 300.0 * 0.04, "{watts} W");
    let active = (e(&b, "lem_gpu_active_energy_joules_total")
        - e(&a, "lem_gpu_active_energy_joules_total"))
        / dt;
    assert!((active - 240.0).abs() < 240.0 * 0.04, "{active} W");
    assert!((e(&b, "lem_gpu_idle_power_watts") - 60.0).abs() < 0.5);
    assert_eq!(e(&b, "lem_gpu_power_watts"), 300.0);
    assert_eq!(e(&b, "lem_gpu_up"), 1.0);
    assert_eq!(e(&b, "lem_gpu_utilization_ratio"), 0.75);
    assert_eq!(e(&b, "lem_gpu_memory_used_bytes"), 1024.0 * 1024.0 * 1024.0);
    assert_eq!(e(&b, "lem_gpu_temperature_celsius"), 61.0);
    let u = e(&b, "lem_gpu_energy_uncertainty_joules");
    assert!(
        u > 0.0 && u < 0.01 * e(&b, "lem_gpu_energy_joules_total"),
        "{u}"
    );
    // every GPU series is labelled simulated, with its uuid and name
    let (_, series) = b.series("lem_gpu_power_watts")[0];
    let key = b.series("lem_gpu_power_watts")[0].0;
    assert!(series > 0.0);
    for l in [
        "gpu=\"0\"",
        "uuid=\"SIM-",
        "name=\"Sim 300\"",
        "simulated=\"true\"",
    ] {
        assert!(key.contains(l), "{key} lacks {l}");
    }
    // the text exposition 0.0.4 by default, OpenMetrics when asked for
    let (code, kind, body) = m.get("/metrics", None);
    assert_eq!(
        (code, kind.as_str()),
        (200, "text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        body.contains("# TYPE lem_gpu_energy_joules_total counter"),
        "{body}"
    );
    assert!(!body.contains("# EOF"));
    let (code, kind, body) = m.get(
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert_eq!(code, 200);
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(body.contains("# TYPE lem_gpu_energy_joules counter") && body.ends_with("# EOF\n"));
    // any other path: 404
    assert_eq!(m.get("/", None).0, 404);
    assert_eq!(m.get("/metricsx", None).0, 404);
    // a port in use: one line naming it, exit 125
    let o = sb
        .cmd()
        .args([
            "monitor",
            "--device",
            &dev,
            "--no-baseline",
            "--listen",
            &m.addr,
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert_clean_error(&o, &m.addr);
    // SIGTERM ends it cleanly
    assert!(m.terminate().success());
}

#[test]
fn counters_never_go_backwards_and_restart_from_zero() {
    let sb = Sandbox::new();
    let dev = sb.scenario(
        "s.json",
        r#"{"idle_w": 100, "segments": [{"start_s": 0.5, "end_s": 0.9, "power_w": 400}, {"start_s": 0.9, "end_s": 1.3, "power_w": 90}, {"start_s": 1.3, "end_s": 1e5, "power_w": 250}]}"#,
    );
    let m = Monitor::start(monitor_cmd(sb.cmd(), &dev, &["--force-baseline"]));
    let mut last = (0.0, 0.0);
    for _ in 0..15 {
        let s = m.scrape();
        let now = (
            s.get("lem_gpu_energy_joules_total", GPU0).unwrap_or(0.0),
            s.get("lem_gpu_active_energy_joules_total", GPU0)
                .unwrap_or(0.0),
        );
        assert!(now.0 >= last.0 && now.1 >= last.1, "{last:?} then {now:?}");
        last = now;
        sleep_s(0.1);
    }
    drop(m);
    // a restart starts again from 0
    let m = Monitor::start(monitor_cmd(sb.cmd(), &dev, &["--no-baseline"]));
    let e = m
        .scrape()
        .get("lem_gpu_energy_joules_total", GPU0)
        .unwrap_or(0.0);
    assert!(e < last.0, "{e} after a restart, {} before", last.0);
}

#[test]
fn a_lost_gpu_goes_down_and_its_counters_stop() {
    let sb = Sandbox::new();
    sb.scenario_file(
        "lost.json",
        r#"{"name": "Fake", "idle_w": 100, "count": 2, "segments": [{"start_s": 0.3, "end_s": 1e5, "power_w": 300}],
            "faults": [{"gpu": 1, "lost_from_s": 1.5}]}"#,
    );
    let m = Monitor::start(monitor_cmd(
        sb.nvml_cmd("lost.json"),
        "nvml",
        &["--no-baseline"],
    ));
    let before = m.scrape();
    assert_eq!(before.get("lem_gpu_up", &[("gpu", "1")]), Some(1.0));
    sleep_s(2.0);
    let (a, b, dt) = two_scrapes(&m, 2.0);
    let g1 = &[("gpu", "1")];
    assert_eq!(b.get("lem_gpu_up", g1), Some(0.0));
    assert_eq!(b.get("lem_gpu_up", GPU0), Some(1.0));
    let e1 = |x: &Metrics| x.get("lem_gpu_energy_joules_total", g1).unwrap();
    assert_eq!(e1(&a), e1(&b), "a lost GPU's counter stops");
    // it counted until it was lost, and nothing after (at most 100 W to 0.3 s, then 300 W
    // to 1.5 s, from the driver's start)
    assert!(e1(&b) <= 100.0 * 0.3 + 300.0 * 1.2 + 1.0, "{}", e1(&b));
    let e0 = |x: &Metrics| x.get("lem_gpu_energy_joules_total", GPU0).unwrap();
    let w0 = (e0(&b) - e0(&a)) / dt;
    assert!((w0 - 300.0).abs() < 300.0 * 0.1, "{w0}");
    assert!(b.get("lem_sampler_failed_reads_total", &[]).unwrap() > 0.0);
}

#[test]
fn a_driver_counter_reset_is_absorbed() {
    let sb = Sandbox::new();
    sb.scenario_file(
        "reset.json",
        r#"{"idle_w": 200, "nvml": {"counter_offset_mj": 987654321}, "faults": [{"counter_reset_s": 1.5}]}"#,
    );
    let m = Monitor::start(monitor_cmd(
        sb.nvml_cmd("reset.json"),
        "nvml",
        &["--no-baseline"],
    ));
    // the series appears with the first window
    let mut first = None;
    while first.is_none() {
        first = m.scrape().get("lem_gpu_energy_joules_total", GPU0);
    }
    let t0 = Instant::now();
    let first = first.unwrap();
    let mut last = first;
    while t0.elapsed() < Duration::from_secs(3) {
        let e = m.scrape().get("lem_gpu_energy_joules_total", GPU0).unwrap();
        assert!(e >= last, "{last} then {e}");
        last = e;
        sleep_s(0.1);
    }
    let dt = t0.elapsed().as_secs_f64();
    // neither the counter's fall (about 987 kJ) nor a gap: 200 W across the reset
    let watts = (last - first) / dt;
    assert!((watts - 200.0).abs() < 200.0 * 0.05, "{watts} W");
}

#[test]
fn throttle_time_is_counted_by_reason() {
    let sb = Sandbox::new();
    sb.scenario_file(
        "throttle.json",
        r#"{"idle_w": 100, "segments": [
            {"start_s": 0.5, "end_s": 1.5, "power_w": 600, "throttle": ["sw_power_cap"]},
            {"start_s": 1.5, "end_s": 2.0, "power_w": 300, "throttle": ["hw_power_brake_slowdown"]},
            {"start_s": 2.0, "end_s": 2.75, "power_w": 300, "throttle": ["hw_thermal_slowdown"]},
            {"start_s": 2.75, "end_s": 1e5, "power_w": 300}]}"#,
    );
    let m = Monitor::start(monitor_cmd(
        sb.nvml_cmd("throttle.json"),
        "nvml",
        &["--no-baseline"],
    ));
    sleep_s(3.5);
    let s = m.scrape();
    let r = |reason: &str| {
        s.get(
            "lem_gpu_throttle_seconds_total",
            &[("gpu", "0"), ("reason", reason)],
        )
        .unwrap_or(0.0)
    };
    // each to within two sampling rounds and the driver's timing
    for (reason, truth) in [("power_cap", 1.0), ("power_brake", 0.5), ("thermal", 0.75)] {
        assert!(
            (r(reason) - truth).abs() < 0.1,
            "{reason}: {} s, not {truth}",
            r(reason)
        );
    }
    assert_eq!(r("hw_slowdown"), 0.0);
}

#[test]
fn processes_get_their_share_of_the_active_energy() {
    let sb = Sandbox::new();
    // idle 60 W; 300 W from 1 s, shared 3:1 by two processes
    let dev = sb.scenario(
        "p.json",
        r#"{"name": "Shared", "idle_w": 60, "segments": [{"start_s": 1.0, "end_s": 1e5, "power_w": 300}],
            "processes": {"sample_ms": 200, "list": [
              {"pid": 4194400, "command": "decode", "segments": [{"start_s": 0.0, "end_s": 1e5, "sm_pct": 60, "memory_mb": 512}]},
              {"pid": 4194401, "command": "train", "segments": [{"start_s": 0.0, "end_s": 1e5, "sm_pct": 20, "memory_mb": 512}]}]}}"#,
    );
    let m = Monitor::start(monitor_cmd(
        sb.cmd(),
        &dev,
        &["--force-baseline", "--processes"],
    ));
    sleep_s(1.5);
    let (a, b, dt) = two_scrapes(&m, 6.0);
    let p = |x: &Metrics, pid: &str| {
        x.get(
            "lem_process_gpu_active_energy_joules_total",
            &[("pid", pid)],
        )
        .unwrap_or(0.0)
    };
    let decode = (p(&b, "4194400") - p(&a, "4194400")) / dt;
    let train = (p(&b, "4194401") - p(&a, "4194401")) / dt;
    // 240 W of active power, 3:1, updated every 2 s: within one window of the truth
    assert!((decode - 180.0).abs() < 180.0 * 0.4, "{decode} W");
    assert!((train - 60.0).abs() < 60.0 * 0.4, "{train} W");
    assert!((decode / train - 3.0).abs() < 0.1, "{decode} / {train}");
    let key = b.series("lem_process_gpu_active_energy_joules_total")[0].0;
    assert!(
        key.contains("command=\"decode\"") || key.contains("command=\"train\""),
        "{key}"
    );
}

#[test]
fn power_that_wanders_around_the_baseline_adds_no_active_energy() {
    let sb = Sandbox::new();
    // idle 60 W (the baseline), then 50 W and 70 W in turn every 50 ms: 60 W on average
    let segs: Vec<String> = (0..200)
        .map(|i| {
            let a = 1.0 + 0.05 * f64::from(i);
            let w = if i % 2 == 0 { 50 } else { 70 };
            format!(
                r#"{{"start_s": {a:.2}, "end_s": {:.2}, "power_w": {w}}}"#,
                a + 0.05
            )
        })
        .collect();
    let dev = sb.scenario(
        "w.json",
        &format!(r#"{{"idle_w": 60, "segments": [{}]}}"#, segs.join(",")),
    );
    let m = Monitor::start(monitor_cmd(sb.cmd(), &dev, &["--force-baseline"]));
    sleep_s(1.2);
    let (a, b, dt) = two_scrapes(&m, 3.0);
    let e = |x: &Metrics, n: &str| x.get(n, GPU0).unwrap();
    let raw = (e(&b, "lem_gpu_energy_joules_total") - e(&a, "lem_gpu_energy_joules_total")) / dt;
    assert!((raw - 60.0).abs() < 6.0, "{raw} W");
    // each window's raw minus baseline, summed unfloored: the ±10 W cancel (flooring each
    // 20 ms window at 0 would count about 5 W, 15 J over these 3 s)
    let active =
        e(&b, "lem_gpu_active_energy_joules_total") - e(&a, "lem_gpu_active_energy_joules_total");
    assert!(
        active < 1.5,
        "{active} J of active energy at the baseline's power"
    );
}

#[test]
fn scrapes_make_no_driver_call() {
    let sb = Sandbox::new();
    sb.scenario_file("f.json", r#"{"idle_w": 100, "count": 2}"#);
    let log = sb.path().join("calls.log");
    let mut c = sb.nvml_cmd("f.json");
    c.env("LEM_FAKE_NVML_LOG", &log);
    let m = Monitor::start(monitor_cmd(c, "nvml", &["--no-baseline"]));
    let calls = || std::fs::read_to_string(&log).unwrap().lines().count();
    sleep_s(1.0);
    // two equal spans: one scraped as fast as one client can, one left alone
    let l1 = calls();
    let t = Instant::now();
    let mut scrapes = 0;
    while t.elapsed() < Duration::from_secs(2) {
        assert_eq!(m.get("/metrics", None).0, 200);
        scrapes += 1;
    }
    let l2 = calls();
    sleep_s(t.elapsed().as_secs_f64());
    let l3 = calls();
    let (scraped, quiet) = (l2 - l1, l3 - l2);
    assert!(scrapes >= 100, "{scrapes} scrapes");
    // the sampler's and the exporter's rounds only: about as many calls either way, not
    // one more per scrape
    assert!(
        scraped as f64 <= 1.3 * quiet as f64 + 20.0,
        "{scraped} driver calls during {scrapes} scrapes, {quiet} without"
    );
}

#[test]
fn the_default_address_is_loopback_and_a_bad_one_is_a_one_line_error() {
    assert!(lem::monitor::DEFAULT_LISTEN.starts_with("127.0.0.1:"));
    let port = lem::monitor::DEFAULT_LISTEN.rsplit(':').next().unwrap();
    assert!(port != "9100" && port != "9400", "{port}");
    let sb = Sandbox::new();
    let dev = sb.scenario("s.json", r#"{"idle_w": 100}"#);
    let o = sb
        .cmd()
        .args([
            "monitor",
            "--device",
            &dev,
            "--no-baseline",
            "--listen",
            "nowhere",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert_clean_error(&o, "nowhere");
}

#[test]
fn every_gpu_of_several_gets_its_own_span_above_the_baseline() {
    let sb = Sandbox::new();
    // four GPUs, the last one slow to answer its energy counter (5 ms): a round's reads of
    // the four spread over more than 5 ms, so the windows' span (first read to last) is
    // longer than each device's own (its read to its read)
    sb.scenario_file(
        "four.json",
        r#"{"name": "Fake", "idle_w": 100, "count": 4, "segments": [{"start_s": 0.6, "end_s": 1e5, "power_w": 300}],
            "faults": [{"gpu": 3, "function": "nvmlDeviceGetTotalEnergyConsumption", "latency_ms": 5}]}"#,
    );
    let m = Monitor::start(monitor_cmd(
        sb.nvml_cmd("four.json"),
        "nvml",
        &["--force-baseline"],
    ));
    sleep_s(1.0);
    let (a, b, dt) = two_scrapes(&m, 3.0);
    for gpu in ["0", "1", "2", "3"] {
        let g = &[("gpu", gpu)];
        let e = |x: &Metrics| x.get("lem_gpu_active_energy_joules_total", g).unwrap();
        let idle = b.get("lem_gpu_idle_power_watts", g).unwrap();
        assert!((idle - 100.0).abs() < 2.0, "gpu {gpu}: idle {idle} W");
        let active = (e(&b) - e(&a)) / dt;
        // the baseline over each device's own span: 200 W (over the windows' span it read
        // about 13 W low here)
        assert!(
            (active - 200.0).abs() < 200.0 * 0.04,
            "gpu {gpu}: {active} W"
        );
    }
}

#[test]
fn time_a_gpu_did_not_answer_is_not_counted_as_throttled() {
    let sb = Sandbox::new();
    // throttled (HW slowdown) all along; every call on it fails from 1.0 s to 2.0 s
    sb.scenario_file(
        "gap.json",
        r#"{"idle_w": 100, "segments": [{"start_s": 0.0, "end_s": 1e5, "power_w": 300, "throttle": ["hw_slowdown"]}],
            "faults": [{"gpu": 0, "return": "NVML_ERROR_UNKNOWN", "from_s": 1.0, "until_s": 2.0}]}"#,
    );
    let t0 = Instant::now();
    let m = Monitor::start(monitor_cmd(
        sb.nvml_cmd("gap.json"),
        "nvml",
        &["--no-baseline"],
    ));
    sleep_s(3.0);
    let s = m.scrape();
    let elapsed = t0.elapsed().as_secs_f64();
    let slow = s
        .get(
            "lem_gpu_throttle_seconds_total",
            &[("gpu", "0"), ("reason", "hw_slowdown")],
        )
        .unwrap();
    // the time it answered, at most: everything but the second it did not (its samples
    // then carry no reasons, and a gap between samples longer than three rounds is not
    // counted either)
    assert!(
        slow <= elapsed - 1.0 + 0.1,
        "{slow} s throttled in {elapsed} s"
    );
    assert!(
        slow >= elapsed - 1.0 - 0.8,
        "{slow} s throttled in {elapsed} s"
    );
}
