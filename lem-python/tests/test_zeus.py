"""The Zeus drop-in on the window patterns of Zeus's own documentation."""

import time

import pytest


def close(joules, watts, seconds):
    """Exact up to the µs between the window's clock readings and its counter reads."""
    return joules == pytest.approx(watts * seconds, rel=1e-9, abs=watts * 0.002)

from lem.compat.zeus import Measurement, ZeusMonitor


@pytest.fixture
def gpus(scenario, monkeypatch):
    spec = scenario({"name": "Sim", "idle_w": 200.0, "count": 2})
    monkeypatch.setenv("LEM_DEVICE", spec)
    monkeypatch.setenv("LEM_BASELINE", "off")
    monkeypatch.setenv("LEM_INTERVAL_MS", "20")
    return spec


def test_epochs_and_steps_nested(gpus):
    monitor = ZeusMonitor(gpu_indices=[0])
    for _epoch in range(2):
        monitor.begin_window("epoch")
        steps = []
        for _ in range(3):
            monitor.begin_window("step")
            time.sleep(0.01)
            steps.append(monitor.end_window("step"))
        mes = monitor.end_window("epoch")
        assert isinstance(mes, Measurement)
        assert set(mes.gpu_energy) == {0}
        assert close(mes.total_energy, 200.0, mes.time)
        assert mes.time >= sum(s.time for s in steps)
        for s in steps:
            assert close(s.gpu_energy[0], 200.0, s.time)
            assert s.cpu_energy is None and s.dram_energy is None
            assert s.gpu_energy_uncertainty[0] is not None
            assert s.gpu_energy_adjusted[0] is None  # LEM_BASELINE=off


def test_all_gpus_by_default_and_overlapping_windows(gpus):
    monitor = ZeusMonitor()
    assert monitor.gpu_indices == [0, 1]
    monitor.begin_window("a")
    time.sleep(0.01)
    monitor.begin_window("b")
    time.sleep(0.01)
    a = monitor.end_window("a")
    time.sleep(0.01)
    b = monitor.end_window("b")
    for m in (a, b):
        assert set(m.gpu_energy) == {0, 1}
        assert close(m.total_energy, 2 * 200.0, m.time)
        assert m.total_energy_uncertainty is not None
        assert m.report.simulated is True


def test_zeus_errors_and_cancel(gpus):
    monitor = ZeusMonitor(gpu_indices=[1])
    monitor.begin_window("w")
    with pytest.raises(ValueError, match="already exists"):
        monitor.begin_window("w")
    with pytest.raises(ValueError, match="does not exist"):
        monitor.end_window("nope")
    cancelled = monitor.end_window("w", cancel=True)
    # as Zeus: 0.0 for every monitored GPU
    assert cancelled.time == 0.0 and cancelled.gpu_energy == {1: 0.0}
    with pytest.raises(ValueError, match="does not exist"):
        monitor.end_window("w")
    with pytest.raises(ValueError, match="gpu_indices"):
        ZeusMonitor(gpu_indices=[5])
    with pytest.raises(ValueError, match="sync_execution_with"):
        ZeusMonitor(sync_execution_with="tensorflow")


def test_ignored_arguments_say_so(gpus):
    with pytest.warns(UserWarning, match="approx_instant_energy"):
        ZeusMonitor(approx_instant_energy=True)
    with pytest.warns(UserWarning, match="log_file"):
        ZeusMonitor(log_file="zeus.csv")


def test_sync_execution_on_simulated_gpus_has_nothing_to_wait_for(gpus):
    monitor = ZeusMonitor(sync_execution_with="torch")
    monitor.begin_window("w", sync_execution=True)
    m = monitor.end_window("w", sync_execution=True)
    assert close(m.gpu_energy[0], 200.0, m.time)


def test_sync_covers_every_monitored_gpu_and_fails_loudly_without_a_framework(gpus):
    monitor = ZeusMonitor(gpu_indices=[0, 1])
    calls = []
    # a real GPU's sync: every monitored GPU, at both ends of the window
    monitor._all_simulated = False
    monitor._sync = lambda: calls.extend(monitor.gpu_indices)
    monitor.begin_window("w")
    monitor.end_window("w")
    assert calls == [0, 1, 0, 1]
    monitor.begin_window("quiet", sync_execution=False)
    monitor.end_window("quiet", sync_execution=False)
    assert calls == [0, 1, 0, 1]
    # without torch (or CUDA) a requested sync is an error, as in Zeus
    monitor._sync = None
    with pytest.raises(RuntimeError, match="synchronize"):
        monitor.begin_window("x")


def test_construction_is_instant_and_raw_unless_a_baseline_is_asked_for(scenario, monkeypatch):
    spec = scenario({"name": "Sim", "idle_w": 200.0})
    monkeypatch.setenv("LEM_DEVICE", spec)
    monkeypatch.setenv("LEM_BASELINE_DURATION_S", "5")
    t = time.monotonic()
    monitor = ZeusMonitor()
    assert time.monotonic() - t < 2.0, "no 5 s baseline on construction"
    assert all(b["method"] == "disabled" for b in monitor.meter.baselines)
    monkeypatch.setenv("LEM_BASELINE", "force")
    monkeypatch.setenv("LEM_BASELINE_DURATION_S", "0.2")
    assert ZeusMonitor().meter.baselines[0]["method"] == "fresh"


def test_cpu_indices_beside_gpus(gpus, tmp_path, monkeypatch):
    pkg = tmp_path / "powercap" / "intel-rapl:0"
    pkg.mkdir(parents=True)
    (pkg / "name").write_text("package-0\n")
    (pkg / "max_energy_range_uj").write_text("262143328850\n")
    (pkg / "energy_uj").write_text("1000000\n")
    monkeypatch.setenv("LEM_POWERCAP_ROOT", str(tmp_path / "powercap"))
    monitor = ZeusMonitor(gpu_indices=[0], cpu_indices=[0])
    monitor.begin_window("w")
    (pkg / "energy_uj").write_text("3000000\n")  # 2 J later
    m = monitor.end_window("w")
    assert set(m.gpu_energy) == {0} and set(m.cpu_energy) == {0}
    assert m.cpu_energy[0] == pytest.approx(2.0, abs=1e-6)
    assert close(m.gpu_energy[0], 200.0, m.time)
    cancelled = (monitor.begin_window("c"), monitor.end_window("c", cancel=True))[1]
    assert cancelled.cpu_energy == {0: 0.0}
    with pytest.raises(ValueError, match="cpu_indices"):
        ZeusMonitor(cpu_indices=[3])
