"""A drop-in for Zeus's ``ZeusMonitor``, measured by lem.

Change one import line::

    # from zeus.monitor import ZeusMonitor
    from lem.compat.zeus import ZeusMonitor

and the script runs, with lem's baseline-adjusted energy, error bounds and warnings beside
Zeus's fields. Devices and settings come from lem's environment variables, as
``lem.Meter.from_env()`` reads them (``LEM_DEVICE=sim:FILE`` works too); ``gpu_indices``
picks among the GPUs that gives, in ``CUDA_VISIBLE_DEVICES`` order.

As in Zeus, construction is instant and the energy raw: no idle baseline is measured
unless ``LEM_BASELINE`` asks for one (``auto`` or ``force``).
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import lem


@dataclass
class Measurement:
    """Zeus's measurement of one window, plus lem's figures.

    ``time`` (s), ``gpu_energy`` (J per GPU index), ``cpu_energy`` (J per CPU package, or
    None), ``dram_energy`` (None: lem does not read DRAM domains) and ``total_energy`` (the
    GPUs' sum, as in Zeus) keep Zeus's meaning. lem adds ``gpu_energy_adjusted`` (net of each
    GPU's idle baseline; None where there is no baseline), ``gpu_energy_uncertainty`` (a
    bound on each GPU figure's error, J), ``warnings`` and the full ``report``.
    """

    time: float
    gpu_energy: Dict[int, float]
    cpu_energy: Optional[Dict[int, float]] = None
    dram_energy: Optional[Dict[int, float]] = None
    gpu_energy_adjusted: Dict[int, Optional[float]] = field(default_factory=dict)
    gpu_energy_uncertainty: Dict[int, Optional[float]] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    report: Optional["lem.Report"] = None

    @property
    def total_energy(self) -> float:
        """Energy of the measured GPUs, J (Zeus's definition: GPUs only)."""
        return sum(self.gpu_energy.values())

    @property
    def total_energy_uncertainty(self) -> Optional[float]:
        """A bound on ``total_energy``'s error, J; None if any GPU's bound is unknown."""
        us = list(self.gpu_energy_uncertainty.values())
        if any(u is None for u in us):
            return None
        return sum(us)


def _sync_function(sync_with: str, gpu_indices: List[int]):
    """A function that waits for every monitored GPU, as Zeus's sync does, or None where the
    framework is missing or sees no GPU. Resolved once: imports are not free."""
    if sync_with == "torch":
        try:
            import torch  # noqa: PLC0415
        except ImportError:
            return None
        if not torch.cuda.is_available():
            return None

        def sync_all() -> None:
            for i in gpu_indices:
                torch.cuda.synchronize(i)

        return sync_all
    try:
        import jax  # noqa: PLC0415
    except ImportError:
        return None
    devices = jax.devices()

    def sync_jax() -> None:
        for i in gpu_indices:
            if i < len(devices):
                jax.device_put(0.0, devices[i]).block_until_ready()

    return sync_jax


class ZeusMonitor:
    """Zeus's ``ZeusMonitor``: named measurement windows that may nest and overlap.

    ``gpu_indices`` picks GPUs among lem's devices (default: all of them);
    ``cpu_indices`` picks CPU packages when lem measures RAPL. ``approx_instant_energy`` is
    accepted and ignored: lem never reports a silent zero for a short window (it integrates
    the power samples and flags the window ``below_resolution`` in ``warnings``).
    ``log_file`` is accepted and ignored (save ``measurement.report`` with
    ``lem.Meter.save`` instead). ``sync_execution_with`` is ``"torch"`` or ``"jax"``.
    """

    def __init__(
        self,
        gpu_indices: Optional[List[int]] = None,
        cpu_indices: Optional[List[int]] = None,
        approx_instant_energy: bool = False,
        log_file: Optional[str] = None,
        sync_execution_with: str = "torch",
    ) -> None:
        if sync_execution_with not in ("torch", "jax"):
            raise ValueError(
                f"sync_execution_with must be 'torch' or 'jax', got {sync_execution_with!r}"
            )
        if approx_instant_energy:
            warnings.warn(
                "lem.compat.zeus: approx_instant_energy is ignored: lem integrates power "
                "samples for windows shorter than the energy counter's resolution and says so",
                stacklevel=2,
            )
        if log_file is not None:
            warnings.warn(
                "lem.compat.zeus: log_file is ignored; save measurement.report with lem.Meter.save",
                stacklevel=2,
            )
        self.sync_with = sync_execution_with
        # Zeus reports raw energy and starts at once: no baseline unless one is asked for
        baseline = None if os.environ.get("LEM_BASELINE", "").strip() else "off"
        self.meter = lem.Meter.from_env(baseline=baseline)
        devices = self.meter.devices
        gpus = [d["index"] for d in devices if d["kind"] != "rapl_cpu"]
        cpus = [d["index"] for d in devices if d["kind"] == "rapl_cpu"]
        self.gpu_indices = list(range(len(gpus))) if gpu_indices is None else list(gpu_indices)
        for i in self.gpu_indices:
            if not 0 <= i < len(gpus):
                raise ValueError(
                    f"gpu_indices: GPU {i} is not among the {len(gpus)} GPU(s) lem measures "
                    f"(LEM_DEVICE, CUDA_VISIBLE_DEVICES)"
                )
        # CPU packages beside GPUs: a second meter on RAPL (LEM_POWERCAP_ROOT where sysfs is
        # mounted elsewhere), whose windows open and close with the GPUs'
        self.cpu_meter = None
        if cpu_indices is not None and not cpus:
            self.cpu_meter = lem.Meter(
                device="rapl",
                baseline="off",
                interval_ms=self.meter.interval_ms,
                powercap_root=os.environ.get("LEM_POWERCAP_ROOT") or None,
            )
            cpus = [d["index"] for d in self.cpu_meter.devices]
        self.cpu_indices = list(range(len(cpus))) if cpu_indices is None else list(cpu_indices)
        for i in self.cpu_indices:
            if not 0 <= i < len(cpus):
                raise ValueError(f"cpu_indices: CPU package {i} is not measured by lem")
        self._gpu_device = {i: gpus[i] for i in self.gpu_indices}
        self._cpu_device = {i: cpus[i] for i in self.cpu_indices}
        self._all_simulated = all(d.get("simulated", False) for d in devices)
        self._sync = _sync_function(sync_execution_with, [gpus[i] for i in self.gpu_indices])
        self._cpu_windows: Dict[str, "lem.Scope"] = {}
        self._windows: Dict[str, "lem.Scope"] = {}
        self._lock = threading.Lock()

    def begin_window(self, key: str, sync_execution: bool = True) -> None:
        """Begin the measurement window ``key`` (unique among open windows)."""
        with self._lock:
            if key in self._windows:
                raise ValueError(f"Measurement window '{key}' already exists")
            # reserve the key before syncing, so a racing begin_window of the same key fails
            self._windows[key] = None  # type: ignore[assignment]
        try:
            if sync_execution:
                self._sync_gpus()
            scope = self.meter.start(key)
            cpu_scope = self.cpu_meter.start(key) if self.cpu_meter is not None else None
        except BaseException:
            with self._lock:
                self._windows.pop(key, None)
            raise
        with self._lock:
            self._windows[key] = scope
            if cpu_scope is not None:
                self._cpu_windows[key] = cpu_scope

    def _sync_gpus(self) -> None:
        """Wait for the monitored GPUs; as in Zeus, a sync that cannot run is an error (on
        simulated GPUs there is nothing to wait for)."""
        if not self.gpu_indices or self._all_simulated:
            return
        if self._sync is None:
            raise RuntimeError(
                f"sync_execution: cannot synchronize the GPUs with {self.sync_with!r} "
                f"(not installed, or it sees no GPU); pass sync_execution=False to skip"
            )
        self._sync()

    def end_window(
        self, key: str, sync_execution: bool = True, cancel: bool = False
    ) -> Measurement:
        """End the window ``key``; with ``cancel``, discard it and return an empty
        measurement."""
        with self._lock:
            scope = self._windows.get(key)
            if scope is None:
                raise ValueError(f"Measurement window '{key}' does not exist")
            del self._windows[key]
            cpu_scope = self._cpu_windows.pop(key, None)
        if sync_execution:
            self._sync_gpus()
        report = scope.finish()
        cpu_report = cpu_scope.finish() if cpu_scope is not None else None
        if cancel:
            # as Zeus: zero for every monitored index
            return Measurement(
                time=0.0,
                gpu_energy={i: 0.0 for i in self.gpu_indices},
                cpu_energy={i: 0.0 for i in self.cpu_indices} if self._cpu_device else None,
            )
        by_index = {e[0]: e for e in report.device_energy()}
        cpu_by_index = (
            by_index if cpu_report is None else {e[0]: e for e in cpu_report.device_energy()}
        )
        column = {"raw_j": 1, "adjusted_j": 2, "uncertainty_j": 3}

        def energy(device: int, key: str) -> Optional[float]:
            e = by_index.get(device)
            return None if e is None else e[column[key]]

        gpu = {}
        for i, dev in self._gpu_device.items():
            raw = energy(dev, "raw_j")
            # Zeus's fields are floats; an unmeasured GPU is NaN there, and said in warnings
            gpu[i] = float("nan") if raw is None else raw
        cpu = None
        if self._cpu_device:
            cpu = {}
            for i, dev in self._cpu_device.items():
                e = cpu_by_index.get(dev)
                raw = None if e is None else e[1]
                cpu[i] = float("nan") if raw is None else raw
        return Measurement(
            time=report.duration_s,
            gpu_energy=gpu,
            cpu_energy=cpu,
            dram_energy=None,
            gpu_energy_adjusted={
                i: energy(dev, "adjusted_j") for i, dev in self._gpu_device.items()
            },
            gpu_energy_uncertainty={
                i: energy(dev, "uncertainty_j") for i, dev in self._gpu_device.items()
            },
            warnings=report.warnings,
            report=report,
        )


__all__ = ["Measurement", "ZeusMonitor"]
