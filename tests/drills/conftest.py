"""Failure drills: the whole system as processes, one part broken per drill.

``make drills`` runs them at a few thousand devices; ``pytest -m drill
tests/drills`` runs them small (a few hundred devices, the defaults below).
Each drill prints one line: what was sent, what arrived, and the tickets,
telemetry and notifications counted.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from stack import Stack

RESULTS: list[str] = []


@dataclass(frozen=True)
class Scale:
    devices: int
    interval: float
    duration: float

    @property
    def rate(self) -> float:
        return self.devices / self.interval


@pytest.fixture(scope="session")
def scale() -> Scale:
    return Scale(
        devices=int(os.environ.get("EDUFLEET_DRILL_DEVICES", "300")),
        interval=float(os.environ.get("EDUFLEET_DRILL_INTERVAL", "2")),
        duration=float(os.environ.get("EDUFLEET_DRILL_SECONDS", "24")),
    )


@pytest.fixture
def stack(scale: Scale) -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="edufleet-drill-"))
    system = Stack(root)
    try:
        per_school = 50
        system.prepare(
            schools=max(2, -(-scale.devices * 2 // per_school)),
            devices_per_school=per_school,
        )
        yield system
    finally:
        system.close()


@pytest.fixture
def record():
    def _record(line: str) -> None:
        RESULTS.append(line)
        print(line)

    return _record


def pytest_terminal_summary(terminalreporter):  # type: ignore[no-untyped-def]
    if RESULTS:
        terminalreporter.section("drills")
        for line in RESULTS:
            terminalreporter.write_line(line)
