"""What a ticket is: its states, colours, actions and the configuration of the rules."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from ..calendar_store import CalendarCache

if TYPE_CHECKING:
    from ..settings import Settings

Status = Literal[
    "reported", "dispatched", "accepted", "scheduled", "resolved", "closed", "cancelled"
]
STATUSES: tuple[Status, ...] = (
    "reported",
    "dispatched",
    "accepted",
    "scheduled",
    "resolved",
    "closed",
    "cancelled",
)
OPEN_STATUSES: frozenset[str] = frozenset(
    {"reported", "dispatched", "accepted", "scheduled"}
)
Source = Literal["agent", "qr", "hotline", "admin"]
SOURCES: tuple[Source, ...] = ("agent", "qr", "hotline", "admin")
Priority = Literal["low", "normal", "high", "critical"]
PRIORITIES: tuple[Priority, ...] = ("low", "normal", "high", "critical")
PAUSE_REASONS = ("appointment", "parts", "school_closed")

COLOURS: dict[str, str] = {
    "reported": "red",
    "dispatched": "red",
    "accepted": "yellow",
    "scheduled": "yellow",
    "resolved": "green",
    "closed": "green",
    "cancelled": "grey",
}
"""The same mapping as the SQL function ``ticket_colour(status)``."""

SYSTEM_ACTOR = "system"
OFFLINE_FAULT = "offline"
OUTAGE_FAULT = "network_outage"


def colour_of(status: str) -> str:
    return COLOURS.get(status, "grey")


@dataclass(frozen=True)
class TicketConfig:
    """The tunable rules of the ticket service; defaults suit a school district."""

    accept_timeout: timedelta = timedelta(minutes=10)
    """A dispatched ticket not accepted in this time goes to the next engineer."""
    self_recover: bool = True
    """Close a fault ticket by itself when the fault clears before anyone accepted."""
    fault_cooldown: timedelta = timedelta(days=7)
    """A fault recurring this soon after its ticket was resolved reopens the ticket."""
    verify_after: timedelta = timedelta(days=7)
    """A fix without recurrence for this long is marked verified."""
    rating_window: timedelta = timedelta(days=3)
    """A resolved ticket left unrated this long closes by itself."""
    outage_window: timedelta = timedelta(minutes=10)
    """Devices lost within this window of each other count as one outage."""
    outage_min_devices: int = 3
    """This many devices of one school lost together make a network incident."""
    public_url: str = "http://127.0.0.1:8000"
    """Base of the links sent to reporters: ``{public_url}/t/<status token>``."""
    email_engineers: bool = False
    """Queue e-mail to engineers' addresses (needs an SMTP server)."""
    calendars: CalendarCache | None = field(default=None, compare=False)
    """A cache of school calendars for the SLA clocks; None loads them each time."""

    @classmethod
    def from_settings(cls, settings: Settings) -> TicketConfig:
        return cls(
            accept_timeout=timedelta(seconds=settings.ticket_accept_timeout_seconds),
            self_recover=settings.ticket_self_recover,
            fault_cooldown=timedelta(hours=settings.ticket_fault_cooldown_hours),
            verify_after=timedelta(hours=settings.ticket_fault_cooldown_hours),
            rating_window=timedelta(days=settings.ticket_rating_days),
            outage_window=timedelta(seconds=settings.ticket_outage_window_seconds),
            outage_min_devices=settings.ticket_outage_min_devices,
            public_url=settings.public_url.rstrip("/"),
            email_engineers=bool(settings.smtp_host),
            calendars=CalendarCache(),
        )


DEFAULT_CONFIG = TicketConfig()


@dataclass(frozen=True)
class Ticket:
    """One row of ``tickets`` as the services and the API see it."""

    id: int
    kind: str
    device_id: int | None
    school_id: int
    room_id: int | None
    source: str
    fault_code: str | None
    symptom: str | None
    severity: str
    title: str
    description: str
    priority: str
    status: str
    engineer_id: int | None
    dispatch_rule: str | None
    dispatch_reason: str
    reporter_name: str
    reporter_phone: str
    status_token: str
    me_too_count: int
    recurrence_count: int
    reopen_count: int
    parent_id: int | None
    merged_into: int | None
    visit_at: datetime | None
    resolution_code: str | None
    resolution_note: str
    parts: list[Any]
    self_recovered: bool
    verified: bool | None
    data: dict[str, Any]
    reported_at: datetime
    dispatched_at: datetime | None
    accepted_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    updated_at: datetime
    response_seconds: float | None
    response_service_seconds: float | None
    resolution_seconds: float | None
    resolution_service_seconds: float | None
    paused_seconds: float
    response_due_at: datetime | None
    resolution_due_at: datetime | None
    response_breached: bool
    resolution_breached: bool

    @property
    def colour(self) -> str:
        return colour_of(self.status)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def public(self) -> dict[str, Any]:
        """The ticket as JSON for staff, without the reporter's personal data."""
        out = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("reporter_name", "reporter_phone", "status_token")
        }
        out["colour"] = self.colour
        return out


TICKET_COLUMNS = tuple(f.name for f in fields(Ticket))
"""The columns selected to build a Ticket, in field order."""


@dataclass(frozen=True)
class TicketEvent:
    id: int
    ticket_id: int
    at: datetime
    actor: str
    kind: str
    from_status: str | None
    to_status: str | None
    note: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CreateOutcome:
    """What create_ticket did: a new ticket, or a "me too" on an open one."""

    ticket: Ticket
    created: bool
    """False when the report was added to an existing open ticket."""
