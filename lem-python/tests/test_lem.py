"""lem's Python API on simulated devices: exact energies, windows, errors, threads."""

import json
import threading
import time

import pytest

import lem

# A simulated GPU at a constant 250 W: every window's energy is exactly 250 W × its length.
CONSTANT = {"name": "Sim 250 W", "idle_w": 250.0}


def meter(spec, **kw):
    kw.setdefault("baseline", "off")
    kw.setdefault("interval_ms", 20)
    return lem.Meter(device=spec, **kw)


def exact(report, watts=250.0, devices=1):
    # The trace is exact; the window's clock readings and the counter reads are a few µs
    # apart (more if the thread is preempted between them): allow 2 ms of power.
    truth = watts * devices * report.duration_s
    assert report.raw_j == pytest.approx(truth, rel=1e-9, abs=watts * devices * 0.002)


def test_scope_start_and_measure_give_exact_energy(scenario):
    m = meter(scenario(CONSTANT))
    with m.scope("prefill") as s:
        time.sleep(0.05)
    r = s.report
    assert isinstance(r, lem.Report)
    assert r.name == "prefill"
    assert r.duration_s >= 0.05
    exact(r)
    assert r.simulated is True
    assert r.method == "energy_counter"
    assert r.throttle_detected is False
    # an exact counter: only the smallest step a counter shows (a bound is never 0 J)
    assert r.uncertainty_j == pytest.approx(0.001, abs=1e-9)
    assert r.adjusted_j is None  # no baseline: not a zero
    assert r.baseline_power_w is None
    assert isinstance(r.warnings, list)
    assert r.devices[0]["name"] == "Sim 250 W"

    s2 = m.start("request")
    time.sleep(0.02)
    r2 = s2.finish()
    exact(r2)

    value, r3 = m.measure(lambda a, b=1: a + b, 2, b=3)
    assert value == 5
    exact(r3)


def test_baseline_adjusted_energy(scenario):
    m = meter(scenario(CONSTANT), baseline="force", baseline_duration_s=0.2)
    assert m.baselines[0]["power_w"] == pytest.approx(250.0, rel=1e-4)
    with m.scope("w") as s:
        time.sleep(0.03)
    r = s.report
    exact(r)
    assert r.baseline_power_w == pytest.approx(250.0, rel=1e-4)
    # everything the device drew was idle power
    assert r.adjusted_j == pytest.approx(0.0, abs=250.0 * 0.002)
    assert r.adjusted_uncertainty_j is not None


def test_nested_and_overlapping_windows(scenario):
    m = meter(scenario(CONSTANT))
    outer = m.start("outer")
    time.sleep(0.02)
    a = m.start("a")
    time.sleep(0.02)
    b = m.start("b")
    time.sleep(0.02)
    ra = a.finish()  # a closes before b: overlapping, not nested
    time.sleep(0.02)
    rb = b.finish()
    ro = outer.finish()
    for r in (ra, rb, ro):
        exact(r)
    assert ro.duration_s > ra.duration_s and ro.duration_s > rb.duration_s
    assert ra.start_s < rb.start_s < ra.start_s + ra.duration_s < rb.start_s + rb.duration_s


def test_sync_runs_at_both_ends_of_every_window(scenario):
    calls = []
    m = meter(scenario(CONSTANT), sync=lambda: calls.append(time.monotonic()))
    with m.scope("w"):
        calls.append("body")
    assert len(calls) == 3 and calls[1] == "body"
    m.start("x").finish()
    m.measure(lambda: None)
    assert len(calls) == 7
    # a failing sync propagates its exception
    def boom():
        raise RuntimeError("sync failed")

    m2 = meter(scenario(CONSTANT, "b.json"), sync=boom)
    with pytest.raises(RuntimeError, match="sync failed"):
        m2.start("x")


def test_to_dict_is_the_rust_report(scenario, tmp_path):
    m = meter(scenario({"idle_w": 100, "count": 2}))
    s = m.start("w")
    time.sleep(0.02)
    r = s.finish()
    d = r.to_dict()
    assert d == json.loads(r.to_json())
    assert d["schema_version"].startswith("3")
    assert d["energy"]["raw_j"] == r.raw_j
    assert d["energy"]["uncertainty_method"] == "counter_staleness"
    assert [x["index"] for x in d["devices"]] == [0, 1]
    # and equal to what the Rust side writes to a result file
    path = tmp_path / "results" / "raw" / "e1" / "process_0.json"
    m.save(r, str(path), experiment_id="e1", process_index=0)
    saved = json.loads(path.read_text())
    for key in ("energy", "devices", "thermal", "sampling", "duration_s", "warnings"):
        assert saved[key] == d[key], key
    assert saved["experiment_id"] == "e1"


def test_unmeasured_energy_is_none(scenario):
    m = lem.Meter(device="none", baseline="off")
    with m.scope("w") as s:
        pass
    r = s.report
    assert r.raw_j is None and r.adjusted_j is None and r.uncertainty_j is None
    assert r.method is None
    assert any("not measured" in w for w in r.warnings)


@pytest.mark.parametrize(
    "kwargs, err, text",
    [
        ({"device": "gpu9"}, lem.ConfigError, "device"),
        ({"device": "auto", "interval_ms": 0}, lem.ConfigError, "interval_ms"),
        ({"device": "auto", "interval_ms": 20000}, lem.ConfigError, "interval_ms"),
        ({"device": "auto", "interval_ms": 1e23}, lem.ConfigError, "interval_ms"),
        ({"device": "auto", "baseline_duration_s": 1e23}, lem.ConfigError, "baseline_duration_s"),
        ({"device": "auto", "baseline": "sometimes"}, lem.ConfigError, "baseline"),
        ({"device": "auto", "baseline_duration_s": -1}, lem.ConfigError, "baseline_duration_s"),
        ({"device": "auto", "sync": 3}, lem.ConfigError, "sync"),
        ({"device": "auto", "sync": "jax"}, lem.ConfigError, "sync"),
        ({"device": "sim:/no/such/file.json"}, lem.FileError, "/no/such/file.json"),
        ({"device": "nvml"}, lem.DeviceError, "nvml"),
        ({"device": "none", "baseline": "auto", "baseline_duration_s": 0.1}, None, None),
    ],
)
def test_every_error_type(kwargs, err, text):
    if err is None:
        lem.Meter(**kwargs)  # no device is not an error
        return
    with pytest.raises(err, match=text) as e:
        lem.Meter(**kwargs)
    assert isinstance(e.value, lem.LemError)
    assert "\n" not in str(e.value)


def test_sync_torch_needs_torch_with_cuda(scenario):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        pytest.skip("CUDA present: sync='torch' is valid here")
    with pytest.raises(lem.ConfigError, match="torch"):
        lem.Meter(device=scenario(CONSTANT), baseline="off", sync="torch")


def test_required_baseline_and_probe(scenario, tmp_path):
    with pytest.raises(lem.BaselineError, match="baseline"):
        lem.Meter(device="none", require_baseline=True)
    spec = scenario({"idle_w": 80, "counter_update_ms": 100}, "q.json")
    (r,) = lem.probe(spec, duration_s=0.6)
    assert r["counter_update_ms"]["median"] == pytest.approx(100, rel=0.1)
    assert r["power_constant"] is True
    assert list((tmp_path / "cache").glob("probe-*.json"))
    # a meter's own cache directory: the probe goes where that meter looks
    own = tmp_path / "own"
    lem.probe(spec, duration_s=0.6, cache_dir=own)
    assert list(own.glob("probe-*.json"))
    with pytest.raises(lem.ConfigError, match="duration_s"):
        lem.probe(spec, duration_s=0)
    with pytest.raises(lem.DeviceError, match="nothing to probe"):
        lem.probe("none")


def test_bad_scenario_and_required_baseline_errors(scenario, monkeypatch):
    bad = scenario({"idle_w": -5}, "bad.json")
    with pytest.raises(lem.ConfigError, match="idle_w"):
        meter(bad)
    monkeypatch.setenv("LEM_DEVICE", "none")
    monkeypatch.setenv("LEM_BASELINE", "auto")
    m = lem.Meter.from_env()
    assert m.devices == []


def test_scope_misuse_is_a_clear_error(scenario):
    m = meter(scenario(CONSTANT))
    s = m.scope("w")
    with pytest.raises(lem.LemError, match="no report yet"):
        s.report
    with pytest.raises(lem.LemError, match="never started"):
        s.finish()
    s = m.start("w")
    s.finish()
    with pytest.raises(lem.LemError, match="already finished"):
        s.finish()
    with pytest.raises(lem.LemError, match="already started"):
        s.__enter__()


def test_a_raising_function_discards_its_window(scenario):
    m = meter(scenario(CONSTANT))

    def fails():
        raise KeyError("inner")

    with pytest.raises(KeyError):
        m.measure(fails)
    # the body raising inside `with` still measures the window, and the error propagates
    with pytest.raises(ValueError):
        with m.scope("w") as s:
            raise ValueError("body")
    exact(s.report)


def test_scopes_from_several_threads(scenario):
    m = meter(scenario(CONSTANT))
    reports, errors = [], []

    def worker(k):
        try:
            for i in range(20):
                with m.scope(f"t{k}-{i}") as s:
                    time.sleep(0.001)
                reports.append(s.report)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(reports) == 160
    for r in reports:
        exact(r)


def test_one_scope_entered_from_two_threads_opens_one_window(scenario):
    m = meter(scenario(CONSTANT))
    for _ in range(50):
        s = m.scope("shared")
        barrier = threading.Barrier(2)
        outcomes = []

        def enter():
            barrier.wait()
            try:
                s.__enter__()
                outcomes.append("opened")
            except lem.LemError as e:
                outcomes.append(str(e))

        threads = [threading.Thread(target=enter) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert outcomes.count("opened") == 1, outcomes
        assert any("already started" in o for o in outcomes), outcomes
        exact(s.finish())


def test_environment_and_metadata(scenario, monkeypatch):
    spec = scenario(CONSTANT)
    env = lem.environment(spec)
    assert env["simulated"] is True
    assert env["gpus"][0]["name"] == "Sim 250 W"
    monkeypatch.setenv("LEM_DEVICE", spec)
    assert lem.environment()["gpu_count"] == 1
    m = meter(spec)
    assert m.environment()["gpus"][0]["uuid"] == m.devices[0]["uuid"]
    assert m.simulated is True
    assert m.interval_ms == pytest.approx(20)
    assert any("simulated" in n for n in m.notices)
    assert "SIMULATED" in repr(m)
