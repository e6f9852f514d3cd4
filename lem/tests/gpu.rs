//! Checks on a real NVIDIA GPU. Ignored by default (CI has no GPU) but always compiled:
//! run with `cargo test -p lem --test gpu -- --ignored --nocapture` on a GPU machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use lem::device::{open_devices, DeviceSpec};
use lem::{BaselineMode, Meter, MonotonicClock};

#[test]
#[ignore = "requires an NVIDIA GPU"]
fn nvml_opens_visible_gpus_with_sane_facts() {
    let opened = open_devices(
        &DeviceSpec::Nvml(None),
        std::sync::Arc::new(MonotonicClock::new()),
    )
    .unwrap();
    assert!(!opened.devices.is_empty());
    for d in &opened.devices {
        let i = d.info();
        println!("{i:#?}");
        assert!(i.uuid.starts_with("GPU-"), "{}", i.uuid);
        assert!(!i.simulated);
        let r = d.read().unwrap();
        println!("reading: {r:?}");
        assert!(r.power_w.unwrap() > 1.0);
        assert!(r.temperature_c.unwrap() > 0.0);
        assert!(r.throttle.is_some(), "clocks-event reasons readable");
        if i.energy_counter {
            let a = d.energy_j().unwrap();
            std::thread::sleep(Duration::from_millis(300));
            let b = d.energy_j().unwrap();
            assert!(b > a, "energy counter moves: {a} -> {b}");
        }
        println!("violations: {:?}", d.violations());
    }
    println!("notices: {:?}", opened.notices);
    println!(
        "driver {:?}, cuda {:?}",
        opened.devices[0].driver_version(),
        opened.devices[0].cuda_version()
    );
}

#[test]
#[ignore = "requires an NVIDIA GPU"]
fn counter_and_integrated_samples_agree_over_a_5_second_window() {
    let meter = Meter::builder()
        .device(DeviceSpec::Nvml(None))
        .baseline_mode(BaselineMode::Force)
        .baseline_duration(Duration::from_secs(3))
        .keep_timeseries(true)
        .build()
        .unwrap();
    println!("{}", meter.environment().summary);
    println!("baselines: {:?}", meter.baselines());
    let scope = meter.start("idle-5s").unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let rep = scope.finish().unwrap();
    println!("{}", rep.to_json().unwrap());
    let ts = meter.timeseries(&rep);
    for d in &rep.devices {
        let pts: Vec<(f64, f64)> = ts
            .iter()
            .filter(|s| s.device == d.index)
            .filter_map(|s| s.reading.power_w.map(|p| (s.t_s, p)))
            .collect();
        let integrated = lem::stats::integrate(&pts, 0.0, rep.duration_s).unwrap();
        let counter = d.energy.raw_j.unwrap();
        let diff = (integrated - counter).abs() / counter;
        println!(
            "device {}: counter {counter:.2} J, integrated {integrated:.2} J, differ {:.2} %",
            d.index,
            diff * 100.0
        );
        assert!(
            diff < 0.10,
            "counter and integration disagree by {:.1} %",
            diff * 100.0
        );
    }
    let expected = rep.sampling.expected_sample_count as f64;
    assert!((rep.sampling.sample_count as f64 - expected).abs() <= 0.1 * expected + 1.0);
}

/// Which NVML calls this driver answers, the energy counter's update period and smallest
/// step, and each per-round call's latency: the facts the fake driver's defaults follow
/// (docs/BENCHMARKS.md). Prints a report; fails only if no GPU answers at all.
#[test]
#[ignore = "requires an NVIDIA GPU"]
fn driver_answers_and_counter_update_period() {
    use nvml_wrapper::enum_wrappers::device::{PerformancePolicy, TemperatureSensor};
    use nvml_wrapper::structs::device::FieldId;
    let nvml = nvml_wrapper::Nvml::init().unwrap();
    println!("driver {:?}", nvml.sys_driver_version());
    let dev = nvml.device_by_index(0).unwrap();
    println!(
        "name {:?} arch {:?} cc {:?}",
        dev.name(),
        dev.architecture(),
        dev.cuda_compute_capability()
    );
    let lib = nvml.lib();
    let handle = unsafe { dev.handle() };
    let mut bits: std::os::raw::c_ulonglong = 0;
    let new_reasons = lib
        .nvmlDeviceGetCurrentClocksEventReasons
        .as_ref()
        .map(|f| unsafe { f(handle, &mut bits) });
    println!("nvmlDeviceGetCurrentClocksEventReasons: {new_reasons:?} bits {bits:#x}");
    println!(
        "nvmlDeviceGetCurrentClocksThrottleReasons: {:?}",
        dev.current_throttle_reasons()
    );
    println!(
        "nvmlDeviceGetTemperature: {:?}",
        dev.temperature(TemperatureSensor::Gpu)
    );
    let mut t = nvml_wrapper_sys::bindings::nvmlTemperature_t {
        version: (std::mem::size_of::<nvml_wrapper_sys::bindings::nvmlTemperature_t>() | (1 << 24))
            as u32,
        sensorType: 0,
        temperature: 0,
    };
    let tv = lib
        .nvmlDeviceGetTemperatureV
        .as_ref()
        .map(|f| unsafe { f(handle, &mut t) });
    println!("nvmlDeviceGetTemperatureV: {tv:?} -> {} C", t.temperature);
    for (name, id) in [("POWER_AVERAGE (185)", 185), ("POWER_INSTANT (186)", 186)] {
        let v = dev.field_values_for(&[FieldId(id)]);
        println!("field {name}: {v:?}");
    }
    println!("nvmlDeviceGetPowerUsage: {:?} mW", dev.power_usage());
    for p in [PerformancePolicy::Power, PerformancePolicy::Thermal] {
        println!("violation {p:?}: {:?}", dev.violation_status(p));
    }
    // the counter's update period: poll at ~1 ms for 3 s
    let start = Instant::now();
    let mut last = dev.total_energy_consumption().unwrap();
    let mut changes: Vec<(f64, u64)> = Vec::new();
    while start.elapsed() < Duration::from_secs(3) {
        let e = dev.total_energy_consumption().unwrap();
        if e != last {
            changes.push((start.elapsed().as_secs_f64(), e - last));
            last = e;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let mut periods: Vec<f64> = changes
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * 1e3)
        .collect();
    periods.sort_by(f64::total_cmp);
    let pct = |v: &[f64], q: f64| {
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .copied()
    };
    println!(
        "energy counter: {} updates in 3 s, period median {:?} ms p95 {:?} ms, smallest step {:?} mJ",
        changes.len(),
        pct(&periods, 0.5),
        pct(&periods, 0.95),
        changes.iter().map(|c| c.1).min()
    );
    // each call a sampler round makes, 200 times
    let time = |name: &str, f: &mut dyn FnMut()| {
        let mut us: Vec<f64> = (0..200)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        us.sort_by(f64::total_cmp);
        println!(
            "latency {name}: median {:.1} us, p95 {:.1} us",
            us[100], us[190]
        );
    };
    time("total_energy_consumption", &mut || {
        drop(dev.total_energy_consumption())
    });
    time("field POWER_INSTANT", &mut || {
        drop(dev.field_values_for(&[FieldId(186)]))
    });
    time("power_usage", &mut || drop(dev.power_usage()));
    time("memory_info", &mut || drop(dev.memory_info()));
    time("utilization_rates", &mut || drop(dev.utilization_rates()));
    time("temperature", &mut || {
        drop(dev.temperature(TemperatureSensor::Gpu))
    });
    time("clocks event reasons", &mut || {
        drop(dev.current_throttle_reasons())
    });
    time("violation_status(Power)", &mut || {
        drop(dev.violation_status(PerformancePolicy::Power))
    });
    assert!(!changes.is_empty(), "the energy counter never moved");
}
