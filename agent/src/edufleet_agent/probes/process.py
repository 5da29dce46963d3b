"""The process probe: named programs that must be running."""

from __future__ import annotations

import os
from typing import Annotated

import psutil
from pydantic import Field, StringConstraints

from edufleet_agent.probes.base import (
    Metrics,
    ProbeOptions,
    ProbeSpec,
    label,
)


class ProcessOptions(ProbeOptions):
    # Process names as the OS shows them ("teaching.exe", "sshd").
    names: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = (
        Field(default_factory=list, max_length=64)
    )


def count_running(wanted: list[str], running: list[str]) -> dict[str, int]:
    """How many of ``running`` match each wanted name, ignoring case on Windows."""
    fold = str.lower if os.name == "nt" else str
    tally = {name: 0 for name in wanted}
    lookup = {fold(name): name for name in wanted}
    for candidate in running:
        key = lookup.get(fold(candidate))
        if key is not None:
            tally[key] += 1
    return tally


class ProcessProbe:
    def __init__(self, options: ProcessOptions) -> None:
        self.names = list(options.names)

    def collect(self) -> Metrics:
        running = []
        for proc in psutil.process_iter(["name"]):
            name = proc.info.get("name")
            if name:
                running.append(name)
        counts = count_running(self.names, running)
        return {f"process.count[{label(name)}]": n for name, n in counts.items()}


SPEC = ProbeSpec(
    name="process",
    default_enabled=False,
    options=ProcessOptions,
    factory=lambda options, context: ProcessProbe(options),
    summary="named processes that must be running",
)
