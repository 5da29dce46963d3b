"""Probes: one module per probe, each exporting ``SPEC``.

``builtin_specs()`` lists the shipped probes; a caller may add its own specs
to the mapping it passes to the config loader and the runner.
"""

from __future__ import annotations

from edufleet_agent.probes import host, http, pjlink, process, reachability
from edufleet_agent.probes.base import (
    AnySpec,
    Metrics,
    Probe,
    ProbeContext,
    ProbeOptions,
    ProbeSpec,
)

__all__ = [
    "AnySpec",
    "Metrics",
    "Probe",
    "ProbeContext",
    "ProbeOptions",
    "ProbeSpec",
    "builtin_specs",
]


def builtin_specs() -> dict[str, AnySpec]:
    """The shipped probes by name, in the order they run."""
    specs: list[AnySpec] = [
        host.SPEC,
        process.SPEC,
        reachability.SPEC,
        pjlink.SPEC,
        http.SPEC,
    ]
    return {spec.name: spec for spec in specs}
