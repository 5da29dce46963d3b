"""SLA clocks, computed from a ticket's event log and pauses.

Response runs from reported to the first acceptance. Resolution runs while the
ticket is open (reported to resolved, and again from a reopening), and stops
during pauses. Both are measured in wall-clock seconds and in service seconds
of the school's calendar. Targets come from the policy of the ticket's
priority in the nearest region that has one, and are counted in the policy's
measure. Because the figures are recomputed from the log, a changed policy,
priority or calendar applies to the whole history and no time is lost.

The figures are stored on the ticket after every change (for the walls) and
the escalation timers are re-armed from them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg.types.json import Jsonb

from ..calendar_store import CalendarCache, load_school_calendar
from ..calendars import Calendar
from ..db import Conn
from ..errors import NotFound
from .model import OPEN_STATUSES, Ticket, TicketEvent
from .store import list_events, load_ticket, update_ticket

Interval = tuple[datetime, datetime]
SLA_TIMER_KINDS = (
    "response_warn",
    "response_breach",
    "resolution_warn",
    "resolution_breach",
)


@dataclass(frozen=True)
class SlaPolicy:
    id: int | None
    region_code: str | None
    priority: str
    response_seconds: int
    resolution_seconds: int
    measure: str
    warn_ratio: float


FALLBACK_POLICY = SlaPolicy(None, None, "normal", 3600, 16 * 3600, "service", 0.8)
"""Used only when the sla_policies table has no row for a priority at all."""


@dataclass(frozen=True)
class Clock:
    """One SLA clock of a ticket."""

    wall_seconds: float
    service_seconds: float
    target_seconds: int
    measure: str
    running: bool
    due_at: datetime | None
    warn_at: datetime | None

    @property
    def elapsed(self) -> float:
        """Elapsed time in the policy's measure."""
        return self.service_seconds if self.measure == "service" else self.wall_seconds

    @property
    def breached(self) -> bool:
        return self.elapsed > self.target_seconds

    @property
    def used_ratio(self) -> float:
        return self.elapsed / self.target_seconds


@dataclass(frozen=True)
class SlaFigures:
    policy: SlaPolicy
    response: Clock
    resolution: Clock
    paused_seconds: float
    accepted: bool


def policy_for(conn: Conn, school_id: int, priority: str) -> SlaPolicy:
    """The policy of the nearest region above the school, else the default one."""
    row = conn.execute(
        """
        SELECT p.id, p.region_code, p.priority, p.response_seconds,
               p.resolution_seconds, p.measure, p.warn_ratio
        FROM sla_policies p
        JOIN schools s ON s.id = %(school)s
        LEFT JOIN region_ancestors(s.region_code) a ON a.code = p.region_code
        WHERE p.priority = %(priority)s
          AND (p.region_code IS NULL OR a.code IS NOT NULL)
        ORDER BY a.depth NULLS LAST
        LIMIT 1
        """,
        {"school": school_id, "priority": priority},
    ).fetchone()
    if row is None:
        return FALLBACK_POLICY
    return SlaPolicy(
        id=int(row[0]),
        region_code=row[1],
        priority=str(row[2]),
        response_seconds=int(row[3]),
        resolution_seconds=int(row[4]),
        measure=str(row[5]),
        warn_ratio=float(row[6]),
    )


def load_pauses(
    conn: Conn, ticket_id: int, now: datetime
) -> tuple[list[Interval], bool]:
    """The ticket's pauses as intervals, and whether one is in force at ``now``.

    An open pause lasts until its planned end (a visit) or until now.
    """
    rows = conn.execute(
        "SELECT started_at, ends_at, ended_at FROM ticket_pauses "
        "WHERE ticket_id = %s ORDER BY started_at",
        [ticket_id],
    ).fetchall()
    found = []
    paused_now = False
    for started, planned, ended in rows:
        if ended is None and (planned is None or planned > now):
            paused_now = True
        end = ended if ended is not None else now
        if planned is not None:
            end = min(end, planned)
        if end > started:
            found.append((started, end))
    return found, paused_now


def open_intervals(
    events: Sequence[TicketEvent], reported_at: datetime, now: datetime
) -> list[Interval]:
    """The spans in which the ticket was open, from the status changes in its log."""
    spans: list[Interval] = []
    start: datetime | None = reported_at
    for event in events:
        if event.to_status is None or event.at < reported_at:
            continue
        is_open = event.to_status in OPEN_STATUSES
        if is_open and start is None:
            start = event.at
        elif not is_open and start is not None:
            spans.append((start, event.at))
            start = None
    if start is not None and now > start:
        spans.append((start, now))
    return spans


def first_acceptance(events: Sequence[TicketEvent]) -> datetime | None:
    for event in events:
        if event.to_status == "accepted":
            return event.at
    return None


def subtract(spans: Sequence[Interval], holes: Sequence[Interval]) -> list[Interval]:
    """``spans`` minus ``holes``; both lists of [start, end) intervals."""
    result = []
    for lo, hi in spans:
        pieces = [(lo, hi)]
        for h_lo, h_hi in holes:
            next_pieces = []
            for p_lo, p_hi in pieces:
                if h_hi <= p_lo or h_lo >= p_hi:
                    next_pieces.append((p_lo, p_hi))
                    continue
                if p_lo < h_lo:
                    next_pieces.append((p_lo, h_lo))
                if h_hi < p_hi:
                    next_pieces.append((h_hi, p_hi))
            pieces = next_pieces
        result.extend(pieces)
    return result


def _moment_reaching(
    pieces: Sequence[Interval],
    amount: float,
    measure: Callable[[datetime, datetime], float],
    advance: Callable[[datetime, float], datetime],
    resume_from: datetime | None,
) -> datetime | None:
    """When the clock made of ``pieces`` reaches ``amount``, or will if it runs on."""
    total = 0.0
    for lo, hi in pieces:
        part = measure(lo, hi)
        if total + part >= amount:
            return advance(lo, amount - total)
        total += part
    if resume_from is None:
        return None
    return advance(resume_from, amount - total)


def _clock(
    pieces: Sequence[Interval],
    *,
    target: int,
    measure_name: str,
    warn_ratio: float,
    calendar: Calendar,
    running_at: datetime | None,
) -> Clock:
    wall = sum((hi - lo).total_seconds() for lo, hi in pieces)
    service = sum(calendar.service_seconds(lo, hi) for lo, hi in pieces)

    def wall_measure(lo: datetime, hi: datetime) -> float:
        return (hi - lo).total_seconds()

    def wall_advance(start: datetime, seconds: float) -> datetime:
        return start + timedelta(seconds=seconds)

    measure: Callable[[datetime, datetime], float] = wall_measure
    advance: Callable[[datetime, float], datetime] = wall_advance
    if measure_name == "service":
        measure, advance = calendar.service_seconds, calendar.add_service_seconds
    try:
        due = _moment_reaching(pieces, target, measure, advance, running_at)
        warn = _moment_reaching(
            pieces, target * warn_ratio, measure, advance, running_at
        )
    except ValueError:
        due = warn = None
    return Clock(
        wall_seconds=wall,
        service_seconds=service,
        target_seconds=target,
        measure=measure_name,
        running=running_at is not None,
        due_at=due,
        warn_at=warn,
    )


def compute_figures(
    *,
    events: Sequence[TicketEvent],
    pauses: Sequence[Interval],
    reported_at: datetime,
    status: str,
    policy: SlaPolicy,
    calendar: Calendar,
    now: datetime,
    paused_now: bool = False,
) -> SlaFigures:
    """The SLA figures of a ticket from its log; pure, so tests can feed it directly."""
    accepted_at = first_acceptance(events)
    spans = open_intervals(events, reported_at, now)
    is_open = status in OPEN_STATUSES

    response_end = accepted_at
    if response_end is None:
        response_end = spans[0][1] if spans and not is_open else now
    response_pieces = (
        [(reported_at, response_end)] if response_end > reported_at else []
    )
    response = _clock(
        response_pieces,
        target=policy.response_seconds,
        measure_name=policy.measure,
        warn_ratio=policy.warn_ratio,
        calendar=calendar,
        running_at=now if accepted_at is None and is_open else None,
    )

    resolution_pieces = subtract(spans, pauses)
    resolution = _clock(
        resolution_pieces,
        target=policy.resolution_seconds,
        measure_name=policy.measure,
        warn_ratio=policy.warn_ratio,
        calendar=calendar,
        running_at=now if is_open and not paused_now else None,
    )
    open_wall = sum((hi - lo).total_seconds() for lo, hi in spans)
    return SlaFigures(
        policy=policy,
        response=response,
        resolution=resolution,
        paused_seconds=open_wall - resolution.wall_seconds,
        accepted=accepted_at is not None,
    )


def figures_for(
    conn: Conn,
    ticket: Ticket,
    now: datetime,
    *,
    calendars: CalendarCache | None = None,
) -> SlaFigures:
    """The ticket's SLA figures as of ``now``; ``calendars`` saves reloading them."""
    pauses, paused_now = load_pauses(conn, ticket.id, now)
    if calendars is not None:
        calendar = calendars.get(conn, ticket.school_id)
    else:
        calendar = load_school_calendar(conn, ticket.school_id)
    return compute_figures(
        events=list_events(conn, ticket.id),
        pauses=pauses,
        reported_at=ticket.reported_at,
        status=ticket.status,
        policy=policy_for(conn, ticket.school_id, ticket.priority),
        calendar=calendar,
        now=now,
        paused_now=paused_now,
    )


def sla_figures(conn: Conn, ticket_id: int, now: datetime) -> SlaFigures:
    """The SLA figures of a ticket as of ``now``."""
    return figures_for(conn, load_ticket(conn, ticket_id), now)


def sla_columns(figures: SlaFigures) -> dict[str, object]:
    """The ticket columns that store the figures, for the walls to aggregate."""
    response, resolution = figures.response, figures.resolution
    return {
        "sla_policy_id": figures.policy.id,
        "sla_measure": figures.policy.measure,
        "response_target_seconds": figures.policy.response_seconds,
        "resolution_target_seconds": figures.policy.resolution_seconds,
        "response_seconds": response.wall_seconds,
        "response_service_seconds": response.service_seconds,
        "resolution_seconds": resolution.wall_seconds,
        "resolution_service_seconds": resolution.service_seconds,
        "paused_seconds": figures.paused_seconds,
        "response_due_at": response.due_at,
        "resolution_due_at": resolution.due_at,
        "response_breached": response.breached,
        "resolution_breached": resolution.breached,
    }


def initial_figures(
    conn: Conn,
    *,
    school_id: int,
    priority: str,
    reported_at: datetime,
    calendars: CalendarCache | None = None,
) -> SlaFigures:
    """The figures of a ticket reported just now, before it has any history."""
    calendar = (
        calendars.get(conn, school_id)
        if calendars is not None
        else load_school_calendar(conn, school_id)
    )
    return compute_figures(
        events=[],
        pauses=[],
        reported_at=reported_at,
        status="reported",
        policy=policy_for(conn, school_id, priority),
        calendar=calendar,
        now=reported_at,
    )


def refresh_sla(
    conn: Conn,
    ticket: Ticket,
    now: datetime,
    *,
    calendars: CalendarCache | None = None,
) -> Ticket:
    """Store the ticket's SLA figures on its row and re-arm its SLA timers."""
    figures = figures_for(conn, ticket, now, calendars=calendars)
    updated = update_ticket(
        conn,
        ticket.id,
        sla_columns(figures),
        ticket.updated_at if ticket.updated_at > now else now,
    )
    arm_sla_timers(conn, updated, figures, now)
    return updated


def arm_sla_timers(
    conn: Conn,
    ticket: Ticket,
    figures: SlaFigures,
    now: datetime,
    *,
    fresh: bool = False,
) -> None:
    """Set each SLA timer to the clock's next warning or breach, or cancel it.

    A kind that has fired once for the ticket is not armed again. ``fresh``
    says the ticket was just created and has no SLA timers yet.
    """
    pending: dict[str, datetime] = {}
    fired: set[str] = set()
    rows = (
        []
        if fresh
        else conn.execute(
            "SELECT kind, due_at, fired_at IS NOT NULL FROM ticket_timers "
            "WHERE ticket_id = %s AND kind = ANY(%s) AND cancelled_at IS NULL",
            [ticket.id, list(SLA_TIMER_KINDS)],
        ).fetchall()
    )
    for kind, due_at, has_fired in rows:
        if has_fired:
            fired.add(str(kind))
        else:
            pending[str(kind)] = due_at
    response, resolution = figures.response, figures.resolution
    wanted: dict[str, datetime | None] = {
        "response_warn": response.warn_at if response.running else None,
        "response_breach": response.due_at if response.running else None,
        "resolution_warn": resolution.warn_at if resolution.running else None,
        "resolution_breach": resolution.due_at if resolution.running else None,
    }
    if ticket.parent_id is not None or ticket.merged_into is not None:
        wanted = dict.fromkeys(wanted)
    cancel = [
        kind
        for kind, due in wanted.items()
        if kind in pending and (due is None or kind in fired)
    ]
    arm = [
        (kind, due)
        for kind, due in wanted.items()
        if due is not None and kind not in fired and pending.get(kind) != due
    ]
    if cancel:
        cancel_timers(conn, ticket.id, now, cancel)
    if arm:
        conn.execute(
            """
            INSERT INTO ticket_timers (ticket_id, kind, due_at, created_at)
            SELECT %s, kind, due_at, %s
            FROM unnest(%s::text[], %s::timestamptz[]) AS w(kind, due_at)
            ON CONFLICT (ticket_id, kind)
                WHERE fired_at IS NULL AND cancelled_at IS NULL
            DO UPDATE SET due_at = EXCLUDED.due_at
            """,
            [ticket.id, now, [k for k, _ in arm], [d for _, d in arm]],
        )


def set_timer(
    conn: Conn,
    ticket_id: int,
    kind: str,
    due_at: datetime,
    now: datetime,
    *,
    data: dict[str, object] | None = None,
) -> None:
    """Create the ticket's pending timer of ``kind``, or move it to ``due_at``."""
    conn.execute(
        """
        INSERT INTO ticket_timers (ticket_id, kind, due_at, created_at, data)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (ticket_id, kind) WHERE fired_at IS NULL AND cancelled_at IS NULL
        DO UPDATE SET due_at = EXCLUDED.due_at, data = EXCLUDED.data
        """,
        [ticket_id, kind, due_at, now, Jsonb(data or {})],
    )


def cancel_timers(
    conn: Conn, ticket_id: int, now: datetime, kinds: Sequence[str] | None = None
) -> None:
    if kinds is None:
        conn.execute(
            "UPDATE ticket_timers SET cancelled_at = %s WHERE ticket_id = %s "
            "AND fired_at IS NULL AND cancelled_at IS NULL",
            [now, ticket_id],
        )
        return
    conn.execute(
        "UPDATE ticket_timers SET cancelled_at = %s WHERE ticket_id = %s "
        "AND kind = ANY(%s) AND fired_at IS NULL AND cancelled_at IS NULL",
        [now, ticket_id, list(kinds)],
    )


def ensure_ticket(conn: Conn, ticket_id: int) -> None:
    if (
        conn.execute("SELECT 1 FROM tickets WHERE id = %s", [ticket_id]).fetchone()
        is None
    ):
        raise NotFound(f"ticket {ticket_id} does not exist")
