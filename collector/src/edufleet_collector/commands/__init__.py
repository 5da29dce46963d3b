"""Sub-commands of ``edufleet``. Each module has ``register(subparsers)``."""

from __future__ import annotations

from types import ModuleType

from . import accounts, backup, db, demo, ingest, labels, ledger, serve
from . import broker, enroll_tokens

COMMAND_MODULES: list[ModuleType] = [
    db,
    serve,
    accounts,
    backup,
    demo,
    labels,
    ledger,
    ingest,
]
