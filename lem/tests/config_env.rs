//! `Meter::from_env` and the `LEM_*` variables. One test, run sequentially, because the
//! process environment is shared by every thread.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lem::{BaselineMethod, Meter, MeterBuilder};

fn set(k: &str, v: &str) {
    // SAFETY (edition 2021: safe fn): this test binary has a single test, so no other thread
    // reads the environment concurrently.
    std::env::set_var(k, v);
}

fn err_of(r: lem::Result<MeterBuilder>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn environment_variables_configure_the_meter_and_bad_values_name_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("s.json");
    std::fs::write(&scenario, r#"{"idle_w": 75, "name": "Env GPU"}"#).unwrap();
    for k in [
        "LEM_DEVICE",
        "LEM_CACHE_DIR",
        "LEM_BASELINE",
        "LEM_BASELINE_DURATION_S",
        "LEM_INTERVAL_MS",
        "LEM_OUTPUT_DIR",
    ] {
        std::env::remove_var(k);
    }

    for (k, v, want) in [
        ("LEM_DEVICE", "gpu0", "invalid LEM_DEVICE"),
        ("LEM_BASELINE", "sometimes", "invalid LEM_BASELINE"),
        (
            "LEM_BASELINE_DURATION_S",
            "-1",
            "invalid LEM_BASELINE_DURATION_S",
        ),
        (
            "LEM_BASELINE_DURATION_S",
            "abc",
            "invalid LEM_BASELINE_DURATION_S",
        ),
        ("LEM_INTERVAL_MS", "0.5", "invalid LEM_INTERVAL_MS"),
        ("LEM_INTERVAL_MS", "20000", "invalid LEM_INTERVAL_MS"),
        // checked before it becomes a duration: no overflow panic
        ("LEM_INTERVAL_MS", "1e23", "invalid LEM_INTERVAL_MS"),
        (
            "LEM_SENSING_FRACTION",
            "1.5",
            "invalid LEM_SENSING_FRACTION",
        ),
        ("LEM_SENSING_FRACTION", "0", "invalid LEM_SENSING_FRACTION"),
        ("LEM_SENSOR_PERIOD_MS", "-3", "invalid LEM_SENSOR_PERIOD_MS"),
    ] {
        set(k, v);
        let e = err_of(MeterBuilder::from_env());
        assert!(e.starts_with(want), "{k}={v}: {e}");
        std::env::remove_var(k);
    }

    set("LEM_DEVICE", &format!("sim:{}", scenario.display()));
    set("LEM_CACHE_DIR", dir.path().join("cache").to_str().unwrap());
    set("LEM_BASELINE_DURATION_S", "0.2");
    set("LEM_INTERVAL_MS", "20");
    set("LEM_SENSING_FRACTION", "0.5");
    set("LEM_SENSOR_PERIOD_MS", "50");
    let meter = Meter::from_env().unwrap();
    // the sensor override reaches the bounds, and says where it came from
    let s = &meter.sensors()[0];
    assert_eq!((s.sensing_fraction, s.period_s), (0.5, 0.05));
    assert!(s.source.starts_with("override"), "{}", s.source);
    let (_, r) = meter.measure("w", || ()).unwrap();
    assert_eq!(r.devices[0].energy.uncertainty.sensing_fraction, Some(0.5));
    std::env::remove_var("LEM_SENSING_FRACTION");
    std::env::remove_var("LEM_SENSOR_PERIOD_MS");
    assert_eq!(meter.devices().len(), 1);
    assert_eq!(meter.devices()[0].info().name, "Env GPU");
    assert_eq!(meter.interval().as_millis(), 20);
    assert_eq!(meter.baselines()[0].method, BaselineMethod::Fresh);
    let b = meter.baselines()[0].power_w.unwrap();
    assert!((b - 75.0).abs() < 0.05, "{b}");
    assert!(
        dir.path().join("cache").is_dir(),
        "the cache went to LEM_CACHE_DIR"
    );
    drop(meter);

    // second meter: the cached baseline is used; LEM_BASELINE=force re-measures; off disables
    let meter = Meter::from_env().unwrap();
    assert_eq!(meter.baselines()[0].method, BaselineMethod::Cached);
    drop(meter);
    set("LEM_BASELINE", "force");
    assert_eq!(
        Meter::from_env().unwrap().baselines()[0].method,
        BaselineMethod::Fresh
    );
    set("LEM_BASELINE", "off");
    assert_eq!(
        Meter::from_env().unwrap().baselines()[0].method,
        BaselineMethod::Disabled
    );

    set("LEM_DEVICE", "sim:/does/not/exist.json");
    let e = Meter::from_env().unwrap_err().to_string();
    assert!(e.contains("/does/not/exist.json"), "{e}");
}
