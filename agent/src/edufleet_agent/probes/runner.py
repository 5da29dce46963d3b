"""Runs probes in worker threads, each under its own deadline.

A probe that raises is reported as failed; one that overruns its timeout is
reported as timed out and is not started again until its thread returns. The
other probes of the cycle are unaffected either way.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from dataclasses import dataclass, field

from edufleet_agent.probes.base import Metrics, Probe
from edufleet_protocol.models import MAX_METRICS, METRIC_NAME_PATTERN

log = logging.getLogger("edufleet.agent.probes")

_METRIC_NAME = re.compile(METRIC_NAME_PATTERN)


@dataclass
class Outcome:
    """The result of one probe in one cycle."""

    name: str
    ok: bool
    duration_s: float
    metrics: Metrics = field(default_factory=dict)
    error: str | None = None
    timed_out: bool = False


@dataclass
class _Slot:
    name: str
    probe: Probe
    timeout_s: float
    busy_since: float | None = None
    result: Metrics | None = None
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def clean_metrics(name: str, metrics: object) -> Metrics:
    """Keep only well-named metrics with finite scalar values."""
    if not isinstance(metrics, dict):
        raise TypeError(f"probe {name!r} returned {type(metrics).__name__}, not a dict")
    kept: Metrics = {}
    dropped = []
    for key, value in metrics.items():
        good_key = isinstance(key, str) and _METRIC_NAME.fullmatch(key) is not None
        good_value = isinstance(value, bool | int | str) or (
            isinstance(value, float) and math.isfinite(value)
        )
        if good_key and good_value and len(kept) < MAX_METRICS:
            kept[key] = value[:200] if isinstance(value, str) else value
        else:
            dropped.append(key)
    if dropped:
        log.warning(
            "probe %r: dropped %d metrics with bad names or values, e.g. %r",
            name,
            len(dropped),
            dropped[0],
        )
    return kept


class ProbeRunner:
    """Owns the probes of an agent and runs any subset of them at once."""

    def __init__(self, probes: list[tuple[str, Probe, float]]) -> None:
        self._slots = {
            name: _Slot(name, probe, timeout) for name, probe, timeout in probes
        }

    @property
    def names(self) -> list[str]:
        return list(self._slots)

    def run(self, names: list[str] | None = None) -> list[Outcome]:
        """Run the named probes (all when None) in parallel; wait for each
        until its deadline; return one outcome per probe in the given order."""
        chosen = [self._slots[n] for n in (names if names is not None else self.names)]
        started: list[tuple[_Slot, threading.Thread, float]] = []
        outcomes: dict[str, Outcome] = {}

        for slot in chosen:
            with slot.lock:
                busy_since = slot.busy_since
                if busy_since is None:
                    slot.busy_since = time.monotonic()
                    slot.result, slot.error = None, None
            if busy_since is not None:
                held = time.monotonic() - busy_since
                outcomes[slot.name] = Outcome(
                    slot.name,
                    ok=False,
                    duration_s=held,
                    error=f"still running after {held:.0f} s; not restarted",
                    timed_out=True,
                )
                continue
            thread = threading.Thread(
                target=self._work, args=(slot,), name=f"probe-{slot.name}", daemon=True
            )
            thread.start()
            started.append((slot, thread, time.monotonic()))

        for slot, thread, begun in started:
            thread.join(max(0.0, begun + slot.timeout_s - time.monotonic()))
            outcomes[slot.name] = self._outcome(slot, thread, begun)

        return [outcomes[slot.name] for slot in chosen]

    def _work(self, slot: _Slot) -> None:
        result: Metrics | None = None
        error: str | None = None
        try:
            result = clean_metrics(slot.name, slot.probe.collect())
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        with slot.lock:
            slot.result, slot.error = result, error
            slot.busy_since = None

    def _outcome(self, slot: _Slot, thread: threading.Thread, begun: float) -> Outcome:
        duration = time.monotonic() - begun
        with slot.lock:
            if thread.is_alive():
                log.warning(
                    "probe %r timed out after %.1f s; its readings are missing "
                    "from this cycle and it will not be restarted until it returns",
                    slot.name,
                    slot.timeout_s,
                )
                return Outcome(
                    slot.name,
                    ok=False,
                    duration_s=duration,
                    error=f"timed out after {slot.timeout_s:g} s",
                    timed_out=True,
                )
            if slot.error is not None:
                log.warning("probe %r failed: %s", slot.name, slot.error)
                return Outcome(
                    slot.name, ok=False, duration_s=duration, error=slot.error
                )
            return Outcome(
                slot.name, ok=True, duration_s=duration, metrics=slot.result or {}
            )
