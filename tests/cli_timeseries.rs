//! `lem run --timeseries` killed mid-run: the stream written as it was sampled survives,
//! holding every sample up to its last flush, and `lem show` / `lem plot` read it and say it
//! is partial.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{stderr, stdout, Sandbox};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn a_killed_run_leaves_its_samples_up_to_the_last_flush_and_they_read_back_as_partial() {
    let sb = Sandbox::new();
    let dev = sb.scenario("two.json", r#"{"idle_w": 120, "count": 2}"#);
    let mut child = sb
        .cmd()
        .args([
            "run",
            "--device",
            &dev,
            "--experiment-id",
            "k",
            "--timeseries",
            "--interval-ms",
            "10",
            "--",
            "sleep",
            "30",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stream = sb.results().join("raw/k/process_0_timeseries.jsonl");
    // the stream's name is known before the run: wait for it (after the baseline)
    let t = Instant::now();
    while !stream.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no stream at {}",
            stream.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(3));
    let killed_at = unix_now();
    child.kill().unwrap(); // SIGKILL: nothing of lem runs after it
    child.wait().unwrap();

    let text = std::fs::read_to_string(&stream).unwrap();
    let mut lines = text.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["format"], "lem-timeseries-stream");
    assert_eq!(header["experiment_id"], "k");
    assert_eq!(header["columns"][0], "t_s");
    assert_eq!(header["units"]["power_w"], "W");
    let origin = header["origin_unix_s"].as_f64().unwrap();
    let start = header["start_s"].as_f64().unwrap();
    let mut rows: Vec<Vec<serde_json::Value>> = Vec::new();
    for l in lines {
        match serde_json::from_str::<Vec<serde_json::Value>>(l) {
            Ok(r) => rows.push(r),
            // only a torn last line may fail to parse; never a trailer after a kill
            Err(_) => assert!(!text.ends_with('\n') && text.ends_with(l), "bad line {l}"),
        }
    }
    assert!(!text.contains("\"end\""), "a killed stream has no end mark");
    let t_first = rows.first().unwrap()[0].as_f64().unwrap();
    let t_last = rows.last().unwrap()[0].as_f64().unwrap();
    // every sample up to the last flush (at most a second, plus scheduling on a busy host)
    let lag = killed_at - (origin + t_last);
    assert!(
        (-0.05..2.0).contains(&lag),
        "the last sample is {lag:.3} s before the kill"
    );
    assert!(t_first >= start - 1e-6);
    let expected = 2.0 * (t_last - t_first) / 0.01;
    let n = rows.len() as f64;
    assert!(
        n >= 0.5 * expected && n <= 1.1 * expected + 4.0,
        "{n} samples over {:.2} s on 2 devices at 10 ms",
        t_last - t_first
    );
    assert!(rows
        .iter()
        .all(|r| r.len() == 7 && r[2].as_f64() == Some(120.0)));

    let o = sb.run(&["show", stream.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("PARTIAL"), "{out}");
    assert!(out.contains(&format!("{} samples", rows.len())), "{out}");
    let svg = sb.path().join("killed.svg");
    let o = sb.run(&[
        "plot",
        stream.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("partial"), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&svg).unwrap().contains("(partial)"));
}

#[test]
fn a_finished_run_converts_its_stream_and_keeps_only_the_timeseries_file() {
    let sb = Sandbox::new();
    let dev = sb.scenario("one.json", r#"{"idle_w": 80}"#);
    let o = sb.run(&[
        "run",
        "--device",
        &dev,
        "--experiment-id",
        "f",
        "--timeseries",
        "--cycles",
        "2",
        "--interval-ms",
        "20",
        "--",
        "sleep",
        "0.5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let files = sb.files();
    assert!(
        files.iter().all(|f| !f.ends_with(".jsonl")),
        "the stream is removed once converted: {files:?}"
    );
    for c in 0..2 {
        let ts = sb.json(&format!(
            "results/raw/f/process_0_cycle_{c}_timeseries.json"
        ));
        let n = ts["sample_count"].as_u64().unwrap();
        assert_eq!(ts["samples"].as_array().unwrap().len() as u64, n);
        assert!(n >= 10, "{n}");
        let t0 = ts["samples"][0]["t_s"].as_f64().unwrap();
        assert!(
            (0.0..0.1).contains(&t0),
            "times since the window's start: {t0}"
        );
    }
    let o = sb.run(&[
        "show",
        sb.results()
            .join("raw/f/process_0_cycle_1_timeseries.json")
            .to_str()
            .unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("PARTIAL"), "{}", stdout(&o));
}
