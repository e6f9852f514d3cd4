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
    assert cancelled.time == 0.0 and cancelled.gpu_energy == {}
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


def test_sync_execution_without_torch_is_harmless(gpus):
    monitor = ZeusMonitor(sync_execution_with="torch")
    monitor.begin_window("w", sync_execution=True)
    m = monitor.end_window("w", sync_execution=True)
    assert close(m.gpu_energy[0], 200.0, m.time)
