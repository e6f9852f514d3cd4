//! Shared windows on simulated devices with a manual clock: shares against hand-computed
//! truths, exact sums over many overlapping windows, gaps, threads, and the result file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lem::device::{EnergySource, Reading, Scenario, SimDevice, Violations};
use lem::{BaselineMode, EnergyReport, ManualClock, Meter, SharedDevice};

struct Rig {
    clock: Arc<ManualClock>,
    meter: Meter,
    _cache: tempfile::TempDir,
}

/// Idle 100 W, then 300 W from t = 1 s (after the 1 s baseline) on.
const CONSTANT: &str = r#"{"idle_w": 100, "segments": [
    {"start_s": 1.0, "end_s": 100000.0, "power_w": 300}]}"#;

fn rig(json: &str, mode: BaselineMode) -> Rig {
    let clock = Arc::new(ManualClock::new());
    let s = Scenario::from_json(json, Path::new("test.json")).unwrap();
    let devices: Vec<SharedDevice> = SimDevice::open_all(&s, clock.clone(), 0)
        .into_iter()
        .map(|d| Arc::new(d) as SharedDevice)
        .collect();
    let cache = tempfile::tempdir().unwrap();
    let meter = Meter::builder()
        .devices(devices)
        .clock(clock.clone())
        .baseline_mode(mode)
        .baseline_duration(Duration::from_secs(1))
        .cache_dir(cache.path())
        .build()
        .unwrap();
    Rig {
        clock,
        meter,
        _cache: cache,
    }
}

impl Rig {
    /// Move the clock to `t` s, sampling every 0.1 s on the way.
    fn to(&self, t: f64) {
        loop {
            let now = self.clock.now_s();
            if now >= t - 2e-9 {
                break;
            }
            self.clock.advance_s((t - now).min(0.1));
            self.meter.sample_now();
        }
    }
}

trait Now {
    fn now_s(&self) -> f64;
}

impl Now for ManualClock {
    fn now_s(&self) -> f64 {
        lem::Clock::now(self).as_secs_f64()
    }
}

fn shared(r: &EnergyReport) -> f64 {
    r.energy.shared.as_ref().unwrap().shared_j.unwrap()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs()
}

#[test]
fn two_windows_overlapping_half_their_lengths_share_as_computed() {
    let r = rig(CONSTANT, BaselineMode::Force);
    let g = r.meter.group("requests");
    r.to(2.0);
    let a = g.start("a").unwrap();
    r.to(4.0);
    let b = g.start("b").unwrap();
    r.to(6.0);
    let ra = a.finish().unwrap();
    r.to(8.0);
    let rb = b.finish().unwrap();
    // 300 W: a alone 2 s (600 J), both 2 s (600 J, 300 each), b alone 2 s (600 J)
    for rep in [&ra, &rb] {
        assert!(close(shared(rep), 900.0, 0.002), "{}", shared(rep));
        assert!(close(rep.energy.raw_j.unwrap(), 1200.0, 0.002));
        let s = rep.energy.shared.as_ref().unwrap();
        // active 200 W: 400 alone + 400 / 2
        assert!(close(s.shared_adjusted_j.unwrap(), 600.0, 0.005), "{s:?}");
        assert!(s.shared_uncertainty_j.unwrap() >= 0.0);
        assert_eq!(s.shared_group, "requests");
    }
    let sum = g.summary();
    assert_eq!(sum.windows, 2);
    assert!(close(sum.union_j.unwrap(), 1800.0, 0.002));
    assert!(close(
        sum.shares_sum_j.unwrap(),
        sum.union_j.unwrap(),
        1e-12
    ));
    assert!(close(
        shared(&ra) + shared(&rb),
        sum.union_j.unwrap(),
        1e-12
    ));
    assert_eq!(sum.gaps_s, 0.0);
    assert_eq!(sum.split, "equal");
    assert_eq!(sum.per_weight_j, None);
    let p = sum.per_window_j.unwrap();
    assert!(close(p.p50, 900.0, 0.002));
}

/// Two windows over the same 4 s at 300 W (idle 100 W): active 800 J, idle 400 J.
fn weighted(wa: f64, wb: f64) -> (f64, f64, f64) {
    let r = rig(CONSTANT, BaselineMode::Force);
    let g = r.meter.group("requests");
    r.to(2.0);
    let a = g.start("a").unwrap();
    let b = g.start("b").unwrap();
    r.to(4.0);
    a.add_weight(wa).unwrap();
    b.add_weight(wb).unwrap();
    r.to(6.0);
    let ra = a.finish().unwrap();
    let rb = b.finish().unwrap();
    let s = g.summary();
    (shared(&ra), shared(&rb), s.per_weight_j.unwrap())
}

#[test]
fn weights_move_the_shares_as_computed() {
    // idle halves (200 each), active by weight
    let (a, b, per) = weighted(3.0, 1.0);
    assert!(close(a, 200.0 + 600.0, 0.005), "{a}");
    assert!(close(b, 200.0 + 200.0, 0.005), "{b}");
    assert!(close(per, 1200.0 / 4.0, 0.005));
    let (a, b, _) = weighted(1.0, 1.0);
    assert!(close(a, 600.0, 0.005) && close(b, 600.0, 0.005), "{a} {b}");
    let (a, b, _) = weighted(1.0, 0.0);
    assert!(close(a, 1000.0, 0.005) && close(b, 200.0, 0.005), "{a} {b}");
}

#[test]
fn a_negative_weight_is_refused() {
    let r = rig(CONSTANT, BaselineMode::Off);
    let g = r.meter.group("requests");
    let a = g.start("a").unwrap();
    let e = a.add_weight(-1.0).unwrap_err().to_string();
    assert!(e.contains("weight"), "{e}");
    assert!(a.add_weight(f64::NAN).is_err());
    a.finish().unwrap();
}

#[test]
fn gaps_are_reported_not_dropped() {
    let r = rig(CONSTANT, BaselineMode::Off);
    let g = r.meter.group("requests");
    r.to(2.0);
    let a = g.start("a").unwrap();
    r.to(3.0);
    a.finish().unwrap();
    r.to(5.0);
    let b = g.start("b").unwrap();
    r.to(6.0);
    b.finish().unwrap();
    let s = g.summary();
    assert!(close(s.gaps_s, 2.0, 1e-9), "{}", s.gaps_s);
    assert!(close(s.gaps_j.unwrap(), 600.0, 0.002));
    assert!(close(s.union_j.unwrap(), 600.0, 0.002));
    assert!(close(s.span_s, 4.0, 1e-9));
}

/// A small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

const VARYING: &str = r#"{"idle_w": 80, "segments": [
    {"start_s": 1.0, "end_s": 3.0, "power_w": 300},
    {"start_s": 3.0, "end_s": 5.0, "power_w": 150},
    {"start_s": 5.0, "end_s": 100000.0, "power_w": 420}]}"#;

#[test]
fn a_thousand_random_windows_add_up_to_the_union() {
    let r = rig(VARYING, BaselineMode::Force);
    let g = r.meter.group("requests");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // (time, open?, index)
    let mut events: Vec<(f64, bool, usize)> = Vec::new();
    for i in 0..1000 {
        let t0 = 2.0 + 20.0 * rng.next();
        let len = 0.01 + 2.0 * rng.next();
        events.push((t0, true, i));
        events.push((t0 + len, false, i));
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut open: Vec<Option<lem::SharedScope<'_>>> = (0..1000).map(|_| None).collect();
    let mut shares = 0.0;
    for (t, opening, i) in events {
        r.to(t);
        if opening {
            let s = g.start(format!("r{i}")).unwrap();
            if i % 3 == 0 {
                s.add_weight(1.0 + (i % 7) as f64).unwrap();
            }
            open[i] = Some(s);
        } else {
            let rep = open[i].take().unwrap().finish().unwrap();
            assert!(shared(&rep) <= rep.energy.raw_j.unwrap() * (1.0 + 1e-9) + 1e-9);
            shares += shared(&rep);
        }
    }
    let s = g.summary();
    let union = s.union_j.unwrap();
    assert_eq!(s.windows, 1000);
    assert!(
        ((shares - union) / union).abs() <= 1e-9,
        "{shares} vs {union}"
    );
    assert!(s.shares_sum_relative_error.unwrap() <= 1e-9);
    assert!(s.gaps_s >= 0.0 && s.span_s > 0.0);
}

#[test]
fn windows_from_eight_threads_add_up() {
    let r = rig(CONSTANT, BaselineMode::Off);
    let g = r.meter.group("requests");
    r.to(2.0);
    let totals: Vec<f64> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|k| {
                let g = g.clone();
                let clock = r.clock.clone();
                sc.spawn(move || {
                    let mut sum = 0.0;
                    for i in 0..25 {
                        let s = g.start(format!("t{k}-{i}")).unwrap();
                        s.add_weight(1.0).unwrap();
                        clock.advance_s(0.001 * (1 + (k + i) % 5) as f64);
                        sum += shared(&s.finish().unwrap());
                    }
                    sum
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let s = g.summary();
    assert_eq!(s.windows, 200);
    assert_eq!(s.open_windows, 0);
    let union = s.union_j.unwrap();
    let shares: f64 = totals.iter().sum();
    assert!(
        ((shares - union) / union).abs() <= 1e-9,
        "{shares} vs {union}"
    );
}

#[test]
fn the_result_file_lists_the_groups() {
    let r = rig(CONSTANT, BaselineMode::Off);
    let whole = r.meter.start("run").unwrap();
    let g = r.meter.group("requests");
    r.to(2.0);
    let a = g.start("a").unwrap();
    a.add_weight(10.0).unwrap();
    r.to(3.0);
    let ra = a.finish().unwrap();
    // the same name gives the same group
    assert_eq!(r.meter.group("requests").summary().windows, 1);
    let rep = whole.finish().unwrap();
    let v = serde_json::to_value(r.meter.result_file(rep, "e", 0)).unwrap();
    let g0 = &v["groups"][0];
    assert_eq!(g0["name"], "requests");
    assert_eq!(g0["windows"], 1);
    for k in [
        "union_j",
        "union_uncertainty_j",
        "shares_sum_j",
        "gaps_s",
        "per_window_j",
    ] {
        assert!(!g0[k].is_null(), "{k}: {g0}");
    }
    assert!(g0["per_window_j"]["p99"].is_number());
    assert!(close(g0["per_weight_j"].as_f64().unwrap(), 30.0, 0.002));
    // the shared window's report names its share beside raw_j
    let w = serde_json::to_value(&ra).unwrap();
    assert!(w["energy"]["shared_j"].is_number());
    assert!(w["energy"]["shared_uncertainty_j"].is_number());
    assert!(w["energy"]["raw_j"].is_number());
    // and reads back
    let back: EnergyReport = serde_json::from_value(w).unwrap();
    assert_eq!(back, ra);
    // an ordinary report has no share, before and after a round trip
    let plain = r.meter.measure("plain", || r.to(4.0)).unwrap().1;
    let pv = serde_json::to_value(&plain).unwrap();
    assert!(pv["energy"].get("shared_j").is_none());
    let back: EnergyReport = serde_json::from_value(pv).unwrap();
    assert_eq!(back.energy.shared, None);
}

#[test]
fn a_meter_without_groups_writes_no_groups_key() {
    let r = rig(CONSTANT, BaselineMode::Off);
    let rep = r.meter.measure("run", || r.to(2.0)).unwrap().1;
    let v = serde_json::to_value(r.meter.result_file(rep, "e", 0)).unwrap();
    assert!(v.get("groups").is_none());
}

/// A power trace that changes every 0.37 s (100 to 460 W) for 100 s, with `extra` keys.
fn wandering(extra: &str) -> String {
    let segments: Vec<String> = (0..270)
        .map(|i| {
            let p = 100.0 + f64::from((i * 7919) % 37) * 10.0;
            format!(
                r#"{{"start_s": {:.2}, "end_s": {:.2}, "power_w": {p}}}"#,
                f64::from(i) * 0.37,
                f64::from(i + 1) * 0.37
            )
        })
        .collect();
    format!(
        r#"{{"idle_w": 90, "power_limit_w": 700, {extra} "segments": [{}]}}"#,
        segments.join(",")
    )
}

/// A window alone in its group is its group's only stretch while it is open: the stretch is
/// cut at the window's own reads and accounted from the sampler's buffer (and, for a window
/// longer than the buffer holds, from what the group's stream folded), the window from its
/// own stream. Both must give the same energy, adjusted energy and bound for
/// every way energy is measured (to rounding).
#[test]
fn a_window_alone_in_its_group_shares_exactly_its_own_energy() {
    let cases = [
        // a counter read at both ends; 0.25 s is below its resolution, sampled too sparsely
        // to integrate instead
        (r#""counter_update_ms": 100,"#, "counter"),
        // no counter: integrated samples
        (r#""energy_counter": false,"#, "integration"),
        // a slow counter sampled densely: short windows are integrated, long ones counted
        (r#""counter_update_ms": 500,"#, "mixed"),
        // a part-time, slowly refreshed sensor: changes seen late and partly
        (
            r#""sensor": {"period_ms": 100, "sensing_duty": 0.25, "power_refresh_ms": 200},"#,
            "part-time sensor",
        ),
    ];
    for (extra, what) in cases {
        let r = rig(&wandering(extra), BaselineMode::Force);
        let g = r.meter.group("alone");
        let mut t = 1.5;
        let mut methods = Vec::new();
        // short windows (their samples all still in the buffer) and long ones (folded as
        // they leave it), with gaps between them
        for len in [0.25, 0.41, 1.2, 3.3, 12.0, 0.05, 25.0] {
            r.to(t);
            let w = g.start("w").unwrap();
            r.to(t + len);
            let rep = w.finish().unwrap();
            let s = rep.energy.shared.clone().unwrap();
            let e = &rep.energy;
            let ctx = format!("{what}, {len} s: {e:?}");
            // the share is a difference of the group's running sums (a few kJ): equal to
            // their rounding
            let same = |a: Option<f64>, b: Option<f64>| {
                a.zip(b).is_some_and(|(a, b)| (a - b).abs() <= 1e-9)
            };
            assert!(e.raw_j.is_some_and(|j| j >= 0.0), "{ctx}");
            assert!(same(s.shared_j, e.raw_j), "{ctx}");
            assert!(same(s.shared_uncertainty_j, e.uncertainty_j), "{ctx}");
            assert!(same(s.shared_adjusted_j, e.adjusted_j), "{ctx}");
            methods.push(rep.devices[0].energy.method);
            t += len + 0.77;
        }
        let sum = g.summary();
        assert_eq!(sum.windows, 7, "{what}");
        assert!(sum.gaps_s > 6.0 * 0.77 - 1e-6, "{what}: {sum:?}");
        let counted = methods
            .iter()
            .filter(|m| **m == Some(lem::EnergyMethod::EnergyCounter))
            .count();
        match what {
            "counter" | "part-time sensor" => assert_eq!(counted, 7, "{what}: {methods:?}"),
            "integration" => assert_eq!(counted, 0, "{what}: {methods:?}"),
            _ => assert!((1..7).contains(&counted), "{what}: {methods:?}"),
        }
    }
}

/// A simulated GPU that counts the calls made on it.
#[derive(Debug)]
struct Counted {
    inner: SimDevice,
    calls: Arc<std::sync::atomic::AtomicU64>,
}

impl Counted {
    fn count(&self) {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl EnergySource for Counted {
    fn info(&self) -> &lem::device::DeviceInfo {
        self.inner.info()
    }
    fn energy_j(&self) -> lem::Result<f64> {
        self.count();
        self.inner.energy_j()
    }
    fn read(&self) -> lem::Result<Reading> {
        self.count();
        self.inner.read()
    }
    fn power_reading(&self) -> lem::Result<Reading> {
        self.count();
        self.inner.power_reading()
    }
    fn temperature_c(&self) -> Option<f64> {
        self.count();
        self.inner.temperature_c()
    }
    fn violations(&self) -> Option<Violations> {
        self.count();
        self.inner.violations()
    }
}

/// A shared window's boundaries are read once, for the window and the group's stretches
/// together: opening and closing shared windows, alone or overlapping, calls the devices
/// exactly as often as ordinary windows do.
#[test]
fn a_shared_window_reads_the_devices_exactly_as_often_as_an_ordinary_one() {
    let clock = Arc::new(ManualClock::new());
    let s = Scenario::from_json(
        r#"{"idle_w": 100, "count": 2, "violation_counters": true}"#,
        Path::new("t.json"),
    )
    .unwrap();
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let devices: Vec<SharedDevice> = SimDevice::open_all(&s, clock.clone(), 0)
        .into_iter()
        .map(|inner| {
            Arc::new(Counted {
                inner,
                calls: calls.clone(),
            }) as SharedDevice
        })
        .collect();
    let meter = Meter::builder()
        .devices(devices)
        .clock(clock.clone())
        .baseline_mode(BaselineMode::Off)
        .build()
        .unwrap();
    let now = || calls.load(std::sync::atomic::Ordering::Relaxed);
    let tick = || clock.advance_s(0.01);
    // no sampler runs on a manual clock: every call below is a window's
    let before = now();
    let ordinary: Vec<_> = (0..20).map(|_| meter.start("o").unwrap()).collect();
    tick();
    for w in ordinary {
        w.finish().unwrap();
        tick();
    }
    let ordinary_calls = now() - before;
    assert!(ordinary_calls > 0);
    let g = meter.group("requests");
    let before = now();
    let shared: Vec<_> = (0..20).map(|_| g.start("s").unwrap()).collect();
    tick();
    for w in shared {
        w.add_weight(3.0).unwrap();
        w.finish().unwrap();
        tick();
    }
    assert_eq!(now() - before, ordinary_calls);
    // and alone, one after another (gaps between them)
    let before = now();
    for _ in 0..20 {
        let w = g.start("s").unwrap();
        tick();
        w.finish().unwrap();
        tick();
    }
    assert_eq!(now() - before, ordinary_calls);
    assert_eq!(g.summary().windows, 40);
}

/// Power that wanders around the idle baseline (90 and 110 W, 100 W idle) draws no energy
/// above it on the whole; cut into 35 ms stretches, about half of them read below the
/// baseline and half above. The group's adjusted union is the stretches' adjusted energy
/// summed and floored once: at most one 0.1 s cycle's imbalance (0.5 J). Each window's
/// adjusted share is floored once too, as an ordinary window's adjusted energy is, so the
/// shares keep only the bias of windows as short as these (about 1 %); floored per stretch
/// they came to about 5 % of the raw energy, and the union to about 70 J.
#[test]
fn power_wandering_around_the_baseline_adds_no_active_energy_to_the_shares() {
    let segments: Vec<String> = (0..2000)
        .map(|i| {
            let p = if i % 2 == 0 { 110 } else { 90 };
            format!(
                r#"{{"start_s": {:.2}, "end_s": {:.2}, "power_w": {p}}}"#,
                1.0 + f64::from(i) * 0.05,
                1.0 + f64::from(i + 1) * 0.05
            )
        })
        .collect();
    let json = format!(r#"{{"idle_w": 100, "segments": [{}]}}"#, segments.join(","));
    for weighted in [false, true] {
        let r = rig(&json, BaselineMode::Force);
        let g = r.meter.group("requests");
        r.to(1.0);
        // overlapping windows opening and closing every 0.035 s: about one boundary per
        // 50 ms power segment, at every phase of it
        let mut open = std::collections::VecDeque::new();
        let mut reports = Vec::new();
        let mut t = 1.0;
        for _ in 0..400 {
            t += 0.035;
            r.to(t);
            let w = g.start("w").unwrap();
            if weighted {
                w.add_weight(1.0 + f64::from(reports.len() as u32 % 3))
                    .unwrap();
            }
            open.push_back(w);
            if open.len() > 4 {
                reports.push(open.pop_front().unwrap().finish().unwrap());
            }
        }
        r.to(t + 0.035);
        reports.extend(open.into_iter().map(|w| w.finish().unwrap()));
        let sum = g.summary();
        let union = sum.union_j.unwrap();
        let adjusted: f64 = reports
            .iter()
            .map(|r| r.energy.shared.as_ref().unwrap().shared_adjusted_j.unwrap())
            .sum();
        assert!(union > 1000.0, "{sum:?}");
        assert!(
            adjusted < 0.02 * union,
            "weighted {weighted}: {adjusted} J of {union} J"
        );
        assert!(
            sum.union_adjusted_j.unwrap() <= 0.5 + 1e-6,
            "weighted {weighted}: {sum:?}"
        );
        // the raw shares still add up
        assert!(close(sum.shares_sum_j.unwrap(), union, 1e-9));
    }
}
