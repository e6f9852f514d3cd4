//! `lem monitor` scraped by a real Prometheus server (Debian's `prometheus` package, which
//! `.ci/run` installs when absent), on loopback: the stored series of a simulated 300 W
//! device give 300 W from their slope and from `rate()`, and 240 W above its 60 W idle
//! baseline; `promtool check metrics` passes on the exposition.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::monitor::{get, Monitor};
use common::Sandbox;

/// Debian's `prometheus` (or `LEM_PROMETHEUS`), and `promtool` beside it.
fn tool(name: &str) -> String {
    let var = format!("LEM_{}", name.to_uppercase());
    if let Ok(p) = std::env::var(&var) {
        return p;
    }
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{name}` is not installed: install Debian's prometheus package (`.ci/run` does) or set {var}"
    );
    name.to_string()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query's result.
fn query(prom: &str, q: &str) -> serde_json::Value {
    let (code, _, body) = get(prom, &format!("/api/v1/query?query={}", encode(q)), None);
    assert_eq!(code, 200, "{q}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{q}: {body}");
    v["data"]["result"].clone()
}

fn value(r: &serde_json::Value) -> f64 {
    r[0]["value"][1].as_str().unwrap().parse().unwrap()
}

#[test]
fn prometheus_stores_the_power_of_a_300_w_device() {
    let (prometheus, promtool) = (tool("prometheus"), tool("promtool"));
    let sb = Sandbox::new();
    let dev = sb.scenario(
        "s.json",
        r#"{"name": "Sim 300", "idle_w": 60, "segments": [{"start_s": 0.5, "end_s": 1e5, "power_w": 300}]}"#,
    );
    let mut c = sb.cmd();
    c.args([
        "monitor",
        "--device",
        &dev,
        "--listen",
        "127.0.0.1:0",
        "--interval-ms",
        "20",
        "--force-baseline",
    ]);
    let m = Monitor::start(c);
    // promtool's lint of the exposition, in Prometheus's own format
    std::thread::sleep(Duration::from_millis(300));
    let (_, _, body) = m.get("/metrics", None);
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let o = check.wait_with_output().unwrap();
    assert!(
        o.status.success() && o.stdout.is_empty() && o.stderr.is_empty(),
        "promtool: {}{}\n{body}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // Prometheus on loopback, scraping every second
    let dir = sb.path();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: lem\n    static_configs:\n      - targets: ['{}']\n",
            m.addr
        ),
    )
    .unwrap();
    let prom = format!("127.0.0.1:{}", free_port());
    let _server = Killed(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // until it has stored 12 s of scrapes (it starts scraping a few seconds after it
    // listens), so that every range below is covered
    let t0 = Instant::now();
    while std::net::TcpStream::connect(&prom).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "prometheus did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    loop {
        let n = query(
            &prom,
            "count_over_time(lem_gpu_energy_joules_total{gpu=\"0\"}[12s])",
        );
        if n.as_array().is_some_and(|a| !a.is_empty()) && value(&n) >= 12.0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "no 12 s of scrapes: {n}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let up = query(&prom, "up{job=\"lem\"}");
    assert_eq!(value(&up), 1.0, "{up}");
    // the slope of the stored series
    let stored = query(&prom, "lem_gpu_energy_joules_total{gpu=\"0\"}[10s]");
    let pts = stored[0]["values"].as_array().unwrap();
    assert!(pts.len() >= 8, "{stored}");
    let p = |i: usize| {
        (
            pts[i][0].as_f64().unwrap(),
            pts[i][1].as_str().unwrap().parse::<f64>().unwrap(),
        )
    };
    let ((t0, e0), (t1, e1)) = (p(0), p(pts.len() - 1));
    let slope = (e1 - e0) / (t1 - t0);
    assert!((slope - 300.0).abs() < 3.0, "{slope} W from {stored}");
    assert_eq!(stored[0]["metric"]["simulated"], "true");
    // rate()
    let r = value(&query(
        &prom,
        "rate(lem_gpu_energy_joules_total{gpu=\"0\"}[10s])",
    ));
    assert!((r - 300.0).abs() < 3.0, "rate: {r} W; {stored}");
    let a = value(&query(
        &prom,
        "rate(lem_gpu_active_energy_joules_total{gpu=\"0\"}[10s])",
    ));
    let idle = value(&query(&prom, "lem_gpu_idle_power_watts{gpu=\"0\"}"));
    assert!((idle - 60.0).abs() < 0.6, "idle {idle} W");
    assert!((a - (300.0 - idle)).abs() < 2.4, "active rate: {a} W");
}
