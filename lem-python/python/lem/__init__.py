"""lem: measure the energy of GPU workloads (LLM inference first) the way a careful
experimenter would — from Python.

    import lem
    meter = lem.Meter(device="auto", sync="torch")
    with meter.scope("prefill") as s:
        run_prefill()
    print(s.report.raw_j, "±", s.report.uncertainty_j, "J")

Every report carries gross (``raw_j``) and baseline-adjusted (``adjusted_j``) energy, an
error bound on each, throttling and warnings. Energy that could not be measured is ``None``,
never ``0.0``. A simulated device (``device="sim:FILE"``) is labelled ``simulated``.
"""

from ._lem import (
    BaselineError,
    ConfigError,
    DeviceError,
    FileError,
    Group,
    LemError,
    Meter,
    Report,
    Scope,
    SharedScope,
    __version__,
    environment,
    probe,
)

__all__ = [
    "BaselineError",
    "ConfigError",
    "DeviceError",
    "FileError",
    "Group",
    "LemError",
    "Meter",
    "Report",
    "Scope",
    "SharedScope",
    "__version__",
    "environment",
    "probe",
]
