"""Sub-commands of ``edufleet``. Each module has ``register(subparsers)``."""

from __future__ import annotations

from types import ModuleType

from . import (
    accounts,
    backup,
    broker,
    db,
    demo,
    enroll_tokens,
    grafana,
    ingest,
    labels,
    ledger,
    seed,
    serve,
    simulate,
    tickets,
    worker,
)

COMMAND_MODULES: list[ModuleType] = [
    db,
    serve,
    accounts,
    backup,
    demo,
    labels,
    ledger,
    ingest,
    broker,
    enroll_tokens,
    seed,
    worker,
    tickets,
    simulate,
    grafana,
]
