//! `Meter::serve_metrics`: the windows an application closes, counted by name (their sums
//! are the reports' sums), shared windows by their shares, and fifty scrapers in parallel
//! that neither fail nor stall the sampler.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::monitor::{get, Metrics};
use lem::{BaselineMode, DeviceSpec, Meter};

fn meter(dir: &std::path::Path, interval_ms: u64) -> Arc<Meter> {
    let scenario = dir.join("s.json");
    // idle 60 W for the 0.3 s baseline, then 300 W
    std::fs::write(
        &scenario,
        r#"{"name": "Sim 300", "idle_w": 60, "segments": [{"start_s": 0.5, "end_s": 1e5, "power_w": 300}]}"#,
    )
    .unwrap();
    let spec = format!("sim:{}", scenario.display());
    Arc::new(
        Meter::builder()
            .device(DeviceSpec::parse_for("device", &spec).unwrap())
            .interval(Duration::from_millis(interval_ms))
            .baseline_mode(BaselineMode::Force)
            .baseline_duration(Duration::from_millis(300))
            .cache_dir(dir.join("cache"))
            .build()
            .unwrap(),
    )
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn windows_are_counted_by_name_and_their_sums_are_the_reports() {
    let dir = tempfile::tempdir().unwrap();
    let m = meter(dir.path(), 20);
    let server = m.serve_metrics("127.0.0.1:0").unwrap();
    let addr = server.addr().to_string();
    std::thread::sleep(Duration::from_millis(300));
    let mut requests = Vec::new();
    for ms in [50, 120, 80, 200] {
        let (_, r) = m
            .measure("request", || std::thread::sleep(Duration::from_millis(ms)))
            .unwrap();
        requests.push(r);
    }
    // three overlapping requests of a group: each counts its share
    let g = m.group("batch");
    let a = g.start("shared").unwrap();
    std::thread::sleep(Duration::from_millis(60));
    let b = g.start("shared").unwrap();
    std::thread::sleep(Duration::from_millis(60));
    let c = g.start("shared").unwrap();
    std::thread::sleep(Duration::from_millis(60));
    let shared = vec![
        a.finish().unwrap(),
        b.finish().unwrap(),
        c.finish().unwrap(),
    ];
    let (code, _, body) = get(&addr, "/metrics", None);
    assert_eq!(code, 200);
    let s = Metrics::parse(&body);
    let req = &[("name", "request"), ("simulated", "true")];
    let sum = |f: fn(&lem::EnergyReport) -> f64, rs: &[lem::EnergyReport]| -> f64 {
        rs.iter().map(f).sum()
    };
    let raw = sum(|r| r.energy.raw_j.unwrap(), &requests);
    let got = s.get("lem_window_energy_joules_sum", req).unwrap();
    assert!(close(got, raw), "{got} against {raw}");
    assert_eq!(s.get("lem_window_energy_joules_count", req), Some(4.0));
    let adj = sum(|r| r.energy.adjusted_j.unwrap(), &requests);
    let got = s.get("lem_window_active_energy_joules_sum", req).unwrap();
    assert!(close(got, adj), "{got} against {adj}");
    let dur = sum(|r| r.duration_s, &requests);
    let got = s.get("lem_window_duration_seconds_sum", req).unwrap();
    assert!(close(got, dur), "{got} against {dur}");
    // the buckets hold every window: +Inf is the count
    assert_eq!(
        s.get(
            "lem_window_energy_joules_bucket",
            &[("name", "request"), ("le", "+Inf")]
        ),
        Some(4.0)
    );
    let sh = &[("name", "shared")];
    let shares = sum(
        |r| r.energy.shared.as_ref().unwrap().shared_j.unwrap(),
        &shared,
    );
    let got = s.get("lem_window_energy_joules_sum", sh).unwrap();
    assert!(close(got, shares), "{got} against {shares}");
    // and the shares add up to the group's union, not three times the overlap
    let union = g.summary().union_j.unwrap();
    assert!((got - union).abs() < 1e-6 * union, "{got} against {union}");
    // the GPU metrics beside them
    assert!(
        s.get("lem_gpu_energy_joules_total", &[("gpu", "0")])
            .unwrap()
            > 0.0
    );
    assert_eq!(get(&addr, "/other", None).0, 404);
    // one endpoint per meter
    let again = m.serve_metrics("127.0.0.1:0");
    assert!(
        matches!(again, Err(lem::Error::InvalidConfig { .. })),
        "{again:?}"
    );
    // stopping it closes the port (tiny_http's accept thread lets it go as it ends)
    server.stop();
    let t = Instant::now();
    while std::net::TcpStream::connect(&addr).is_ok() {
        assert!(t.elapsed() < Duration::from_secs(5), "{addr} still open");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fifty_parallel_scrapes_for_ten_seconds_neither_fail_nor_stall_the_sampler() {
    let dir = tempfile::tempdir().unwrap();
    let m = meter(dir.path(), 100);
    let server = m.serve_metrics("127.0.0.1:0").unwrap();
    let addr = server.addr().to_string();
    // the GPU series appear with the first window, a round after the start
    std::thread::sleep(Duration::from_millis(300));
    let scope = m.start("under scrapes").unwrap();
    let t0 = Instant::now();
    let scrapers: Vec<_> = (0..50)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while t0.elapsed() < Duration::from_secs(10) {
                    let (code, _, body) = get(&addr, "/metrics", None);
                    assert_eq!(code, 200);
                    assert!(body.contains("lem_gpu_energy_joules_total"));
                    n += 1;
                }
                n
            })
        })
        .collect();
    let scrapes: u32 = scrapers.into_iter().map(|h| h.join().unwrap()).sum();
    let r = scope.finish().unwrap();
    let (n, expected) = (r.sampling.sample_count, r.sampling.expected_sample_count);
    assert!(scrapes >= 50, "{scrapes}");
    assert!(
        (n as f64 - expected as f64).abs() <= 0.01 * expected as f64,
        "{n} samples, {expected} expected, under {scrapes} scrapes"
    );
}
