"""Tickets: lifecycle, dispatch, SLA clocks, escalation timers and notifications.

The public entry points are in ``service`` (create, transition, queue, status
view, rating), ``faults`` (agent faults and connectivity from ingest) and
``sla`` (``sla_figures``). Every ticket change, from any source, goes through
them.
"""

from .model import (
    COLOURS,
    OPEN_STATUSES,
    PRIORITIES,
    SOURCES,
    STATUSES,
    Ticket,
    TicketConfig,
    TicketEvent,
    colour_of,
)

__all__ = [
    "COLOURS",
    "OPEN_STATUSES",
    "PRIORITIES",
    "SOURCES",
    "STATUSES",
    "Ticket",
    "TicketConfig",
    "TicketEvent",
    "colour_of",
]
