"""The host probe: CPU, load, memory, swap, disks, temperatures, battery, uptime."""

from __future__ import annotations

import logging
import os
import time

import psutil
from pydantic import Field

from edufleet_agent.probes.base import (
    Metrics,
    ProbeOptions,
    ProbeSpec,
    label,
)

log = logging.getLogger("edufleet.agent.probes.host")

# File systems that are not disks a person can fill.
SKIPPED_FSTYPES = frozenset(
    {
        "squashfs",
        "tmpfs",
        "devtmpfs",
        "overlay",
        "iso9660",
        "udf",
        "proc",
        "sysfs",
        "cgroup",
        "cgroup2",
        "autofs",
        "nsfs",
        "tracefs",
        "ramfs",
        "fuse.portal",
    }
)


class HostOptions(ProbeOptions):
    # Mount points to watch; empty means every real disk.
    mounts: list[str] = Field(default_factory=list, max_length=64)
    skip_fstypes: list[str] = Field(default_factory=list, max_length=64)
    temperatures: bool = True
    battery: bool = True


class HostProbe:
    def __init__(self, options: HostOptions) -> None:
        self.options = options
        self._skip = SKIPPED_FSTYPES | set(options.skip_fstypes)
        psutil.cpu_percent(interval=None)  # the first call only sets the baseline
        self._first = True

    def collect(self) -> Metrics:
        # Right after the baseline the figure means nothing; measure briefly.
        cpu = psutil.cpu_percent(interval=0.3 if self._first else None)
        self._first = False
        metrics: Metrics = {"host.cpu_pct": round(cpu, 1)}
        metrics.update(self._load())
        metrics.update(self._memory())
        metrics.update(self._disks())
        if self.options.temperatures:
            metrics.update(_temperatures())
        if self.options.battery:
            metrics.update(_battery())
        boot = psutil.boot_time()
        metrics["host.boot_time"] = int(boot)
        metrics["host.uptime_s"] = int(max(0.0, time.time() - boot))
        return metrics

    def _load(self) -> Metrics:
        try:
            one, five, fifteen = psutil.getloadavg()
        except (OSError, AttributeError):
            return {}
        return {
            "host.load1": round(one, 2),
            "host.load5": round(five, 2),
            "host.load15": round(fifteen, 2),
        }

    def _memory(self) -> Metrics:
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        return {
            "host.mem_pct": round(memory.percent, 1),
            "host.mem_available_bytes": int(memory.available),
            "host.swap_pct": round(swap.percent, 1),
        }

    def _disks(self) -> Metrics:
        metrics: Metrics = {}
        for mount in self._mounts():
            try:
                usage = psutil.disk_usage(mount)
            except OSError as exc:
                log.debug("cannot read usage of %r: %s", mount, exc)
                continue
            metrics[f"host.disk_pct[{label(mount)}]"] = round(usage.percent, 1)
            metrics[f"host.disk_free_bytes[{label(mount)}]"] = int(usage.free)
        return metrics

    def _mounts(self) -> list[str]:
        if self.options.mounts:
            return list(self.options.mounts)
        return mounted_disks(self._skip)


def mounted_disks(skip: frozenset[str] | set[str] = SKIPPED_FSTYPES) -> list[str]:
    """Mount points of real disks, one per device."""
    seen: set[str] = set()
    mounts = []
    for part in psutil.disk_partitions(all=False):
        if part.fstype in skip or part.device in seen:
            continue
        if os.name == "nt" and "cdrom" in part.opts:
            continue
        seen.add(part.device)
        mounts.append(part.mountpoint)
    return mounts


def _temperatures() -> Metrics:
    reader = getattr(psutil, "sensors_temperatures", None)
    if reader is None:
        return {}
    try:
        chips = reader()
    except (OSError, RuntimeError) as exc:
        log.debug("no temperatures: %s", exc)
        return {}
    metrics: Metrics = {}
    for chip, entries in chips.items():
        readings = [entry.current for entry in entries if entry.current is not None]
        if readings:
            metrics[f"host.temp_c[{label(chip)}]"] = round(max(readings), 1)
    return metrics


def _battery() -> Metrics:
    reader = getattr(psutil, "sensors_battery", None)
    if reader is None:
        return {}
    try:
        battery = reader()
    except (OSError, RuntimeError) as exc:
        log.debug("no battery reading: %s", exc)
        return {}
    if battery is None:
        return {}
    metrics: Metrics = {"host.battery_pct": round(battery.percent, 1)}
    if battery.power_plugged is not None:
        metrics["host.battery_plugged"] = bool(battery.power_plugged)
    return metrics


SPEC = ProbeSpec(
    name="host",
    default_enabled=True,
    options=HostOptions,
    factory=lambda options, context: HostProbe(options),
    summary="CPU, load, memory, swap, disk use per mount, temperatures, battery",
)
