"""Type stubs for lem's Python API."""

from os import PathLike
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Literal,
    Optional,
    Tuple,
    TypeVar,
    Union,
)

T = TypeVar("T")

__version__: str

class LemError(Exception):
    """Base of every lem error: one line naming the setting, file or device."""

class ConfigError(LemError):
    """An invalid setting (device spec, interval, baseline mode, sync, scenario file)."""

class DeviceError(LemError):
    """No device, or a device that cannot be opened or read."""

class BaselineError(LemError):
    """A required idle baseline could not be established."""

class FileError(LemError):
    """A file could not be read or written, or is not what lem expected."""

class Report:
    """The report of one window (lem's schema-v3 report)."""

    @property
    def raw_j(self) -> Optional[float]: ...
    @property
    def adjusted_j(self) -> Optional[float]: ...
    @property
    def uncertainty_j(self) -> Optional[float]: ...
    @property
    def adjusted_uncertainty_j(self) -> Optional[float]: ...
    @property
    def baseline_power_w(self) -> Optional[float]: ...
    @property
    def method(self) -> Optional[str]: ...
    @property
    def duration_s(self) -> float: ...
    @property
    def start_s(self) -> float: ...
    @property
    def name(self) -> str: ...
    @property
    def throttle_detected(self) -> bool: ...
    @property
    def below_resolution(self) -> bool: ...
    @property
    def simulated(self) -> bool: ...
    @property
    def warnings(self) -> List[str]: ...
    @property
    def devices(self) -> List[Dict[str, Any]]: ...
    @property
    def attribution(self) -> Optional[Dict[str, Any]]:
        """Whose share of each shared GPU's active energy (lem's ``attribution`` block);
        ``None`` where no device lists its processes."""
    def device_energy(
        self,
    ) -> List[Tuple[int, Optional[float], Optional[float], Optional[float]]]: ...
    def to_dict(self) -> Dict[str, Any]: ...
    def to_json(self) -> str: ...

Pids = Union[int, Iterable[int]]

class Scope:
    """One measurement window: a context manager, or opened by ``Meter.start``."""

    def __enter__(self) -> "Scope": ...
    def __exit__(self, *exc: Any) -> bool: ...
    def finish(self) -> Report: ...
    def attribute_to(self, pids: Pids) -> None: ...
    @property
    def pids(self) -> Optional[List[int]]: ...
    @property
    def report(self) -> Report: ...
    @property
    def name(self) -> str: ...
    @property
    def active(self) -> bool: ...

SyncArg = Union[None, Literal["torch"], Callable[[], Any]]

class Meter:
    """Devices, their idle baselines and a background sampler."""

    def __init__(
        self,
        device: str = "auto",
        interval_ms: float = 100.0,
        baseline: Literal["auto", "off", "force"] = "auto",
        baseline_duration_s: float = 30.0,
        cache_dir: Optional[Union[str, PathLike[str]]] = None,
        sync: SyncArg = None,
        keep_timeseries: bool = False,
        require_baseline: bool = False,
        powercap_root: Optional[Union[str, PathLike[str]]] = None,
    ) -> None: ...
    @staticmethod
    def from_env(
        sync: SyncArg = None, baseline: Optional[Literal["auto", "off", "force"]] = None
    ) -> "Meter": ...
    def scope(self, name: str, pids: Optional[Pids] = None) -> Scope: ...
    def start(self, name: str, pids: Optional[Pids] = None) -> Scope: ...
    def measure(self, f: Callable[..., T], *args: Any, **kwargs: Any) -> Tuple[T, Report]: ...
    def save(
        self,
        report: Report,
        path: Union[str, PathLike[str]],
        experiment_id: str,
        process_index: int = 0,
        timeseries: bool = False,
    ) -> None: ...
    def environment(self) -> Dict[str, Any]: ...
    @property
    def devices(self) -> List[Dict[str, Any]]: ...
    @property
    def baselines(self) -> List[Dict[str, Any]]: ...
    @property
    def notices(self) -> List[str]: ...
    @property
    def simulated(self) -> bool: ...
    @property
    def interval_ms(self) -> float: ...

def environment(device: Optional[str] = None) -> Dict[str, Any]: ...
def probe(
    device: Optional[str] = None,
    duration_s: float = 5.0,
    cache_dir: Optional[Union[str, PathLike[str]]] = None,
) -> List[Dict[str, Any]]: ...
