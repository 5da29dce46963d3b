"""The probe interface, its options base class and its registration record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

# A reading: metric name (see the protocol's metric-name pattern) -> value.
Scalar = bool | int | float | str
Metrics = dict[str, Scalar]


class Probe(Protocol):
    """Something that reads one aspect of the device. One method."""

    def collect(self) -> Metrics:
        """Read now and return metrics; raise on failure, the runner reports it."""
        ...


class ProbeOptions(BaseModel):
    """Options every probe has; a probe's own options subclass this."""

    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, frozen=True, defer_build=True
    )

    enabled: bool | None = None  # None: the probe's default
    interval_s: Annotated[float, Field(ge=0.1, le=86400)] | None = None
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0

    def peripherals(self) -> list[tuple[str, str, str]]:
        """``(device_id, kind, address)`` of the peripherals this probe watches."""
        return []


@dataclass(frozen=True)
class ProbeContext:
    """What a probe may know about the agent that runs it."""

    device_id: str
    collector_host: str | None = None
    collector_port: int | None = None
    sys_root: Path = Path("/")  # where /proc and /sys are; a fixture tree in tests


Options = TypeVar("Options", bound=ProbeOptions)


@dataclass(frozen=True)
class ProbeSpec(Generic[Options]):
    """How a probe is registered: its name, default on/off, options and factory."""

    name: str
    default_enabled: bool
    options: type[Options]
    factory: Callable[[Options, ProbeContext], Probe]
    summary: str = ""

    def create(self, options: ProbeOptions, context: ProbeContext) -> Probe:
        """Build the probe from options validated by ``self.options``."""
        if not isinstance(options, self.options):
            raise TypeError(
                f"probe {self.name!r} needs {self.options.__name__}, "
                f"got {type(options).__name__}"
            )
        return self.factory(options, context)


AnySpec = ProbeSpec[Any]


def label(value: str) -> str:
    """Make ``value`` safe inside a metric label ``name[label]``."""
    cleaned = "".join(
        ch for ch in value if ch not in "[]" and ord(ch) >= 0x20 and ch != "\x7f"
    )
    return cleaned[:200] or "_"
