"""Agent faults through ingest to the tickets service: one ticket per problem."""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
import pytest
from ingest_support import (
    Fleet,
    fault,
    ingest_thread,
    publisher,
    scalar,
    seed_fleet,
    state,
    wait_for,
)


@pytest.fixture
def ingest_settings(settings: Any, private_broker: Any) -> Any:
    return settings.model_copy(
        update={"mqtt_url": private_broker.url, "ingest_batch_ms": 50}
    )


def tickets(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT device_id, fault_code, status, recurrence_count, reopen_count "
            "FROM tickets WHERE kind = 'device' ORDER BY id"
        ).fetchall()


def handled(url: str) -> int:
    return int(scalar(url, "SELECT count(*) FROM fault_events"))


def test_a_flapping_fault_stays_one_ticket_through_redelivery_and_recovery(
    conn: psycopg.Connection[Any], database_url: str, ingest_settings: Any
) -> None:
    fleet = seed_fleet(conn, pcs=1)
    pc = fleet.uids[0]
    with ingest_thread(ingest_settings), publisher(ingest_settings.mqtt_url) as pub:
        pub.send([fault(pc, 1), fault(pc, 1)])  # the second is a redelivery
        wait_for(lambda: handled(database_url) == 1, what="the first fault")
        pub.send([fault(pc, 2)])
        wait_for(lambda: handled(database_url) == 2, what="the recurrence")
        pub.send([fault(pc, 3, action="cleared")])
        wait_for(lambda: handled(database_url) == 3, what="the recovery")
        pub.send([fault(pc, 4)])
        wait_for(lambda: handled(database_url) == 4, what="the fault coming back")

    assert tickets(database_url) == [(fleet.ids[pc], "DISK_FULL", "reported", 2, 1)]
    outcomes = conn.execute(
        "SELECT seq, outcome FROM fault_events ORDER BY seq"
    ).fetchall()
    assert outcomes == [
        (1, "created"),
        (2, "recurrence"),
        (3, "self_recovered"),
        (4, "reopened"),
    ]


def test_a_fault_about_an_unknown_peripheral_is_rejected_not_lost(
    conn: psycopg.Connection[Any], database_url: str, ingest_settings: Any
) -> None:
    fleet = seed_fleet(conn, pcs=2)
    pc, projector = fleet.uids
    with ingest_thread(ingest_settings), publisher(ingest_settings.mqtt_url) as pub:
        pub.send(
            [fault(pc, 1, subject="no-such-projector"), fault(pc, 2, subject=projector)]
        )
        wait_for(lambda: handled(database_url) == 1, what="the known subject")
        wait_for(
            lambda: scalar(database_url, "SELECT count(*) FROM rejected_messages") == 1,
            what="the rejection",
        )

    assert tickets(database_url) == [
        (fleet.ids[projector], "DISK_FULL", "reported", 0, 0)
    ]
    assert (
        scalar(database_url, "SELECT reason FROM rejected_messages")
        == "unknown_subject"
    )


def test_a_school_losing_many_devices_at_once_gets_one_network_incident(
    conn: psycopg.Connection[Any], database_url: str, ingest_settings: Any
) -> None:
    fleet: Fleet = seed_fleet(conn, pcs=0, controllers=6)
    with ingest_thread(ingest_settings), publisher(ingest_settings.mqtt_url) as pub:
        pub.send([state(u, "online") for u in fleet.uids])
        wait_for(
            lambda: scalar(database_url, "SELECT count(*) FROM device_state") == 6,
            what="every controller online",
        )
        pub.send([state(u, "lost") for u in fleet.uids])
        wait_for(
            lambda: (
                scalar(
                    database_url,
                    "SELECT count(*) FROM tickets "
                    "WHERE kind = 'device' AND parent_id IS NOT NULL",
                )
                == 6
            ),
            what="six device tickets under the incident",
        )

    incidents = conn.execute(
        "SELECT count(*) FROM tickets WHERE kind = 'incident'"
    ).fetchone()
    assert incidents == (1,)
    dispatched_alone = conn.execute(
        "SELECT count(*) FROM tickets WHERE kind = 'device' AND parent_id IS NULL"
    ).fetchone()
    assert dispatched_alone == (0,)


def test_three_ingest_processes_racing_on_one_fault_make_one_ticket(
    conn: psycopg.Connection[Any], database_url: str, ingest_settings: Any
) -> None:
    fleet = seed_fleet(conn, pcs=1, controllers=0)
    pc = fleet.uids[0]
    flood = [fault(pc, seq) for seq in range(1, 301)]
    with contextlib.ExitStack() as stack:
        racers = [
            stack.enter_context(
                ingest_thread(ingest_settings, client_id=name, batch_size=5)
            )
            for name in ("race-a", "race-b", "race-c")
        ]
        pub = stack.enter_context(publisher(ingest_settings.mqtt_url))
        pub.send(flood)
        wait_for(lambda: handled(database_url) == 300, what="all 300 events")

    assert all(racer.committed > 0 for racer in racers)
    assert tickets(database_url) == [(fleet.ids[pc], "DISK_FULL", "reported", 299, 0)]
    outcomes = conn.execute(
        "SELECT outcome, count(*) FROM fault_events GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert outcomes == [("created", 1), ("recurrence", 299)]


def test_a_fault_overtakes_a_telemetry_backlog(
    conn: psycopg.Connection[Any], database_url: str, ingest_settings: Any
) -> None:
    """Ingest catching up after an outage turns a fault into a ticket first.

    The broker queues events on ingest's control session, apart from the
    telemetry backlog, and the writer takes control messages first.
    """
    from ingest_support import telemetry

    fleet = seed_fleet(conn, pcs=20)
    settings = ingest_settings.model_copy(update={"ingest_batch_size": 500})
    with ingest_thread(settings, client_id="lanes"):
        pass  # the sessions exist: the broker queues for them from now on
    backlog = [telemetry(u, seq) for seq in range(1, 1001) for u in fleet.uids]
    with publisher(settings.mqtt_url) as pub:
        pub.send(backlog, timeout=120)
        pub.send([fault(fleet.uids[0], 1)])

    def stored() -> int:
        return int(scalar(database_url, "SELECT count(*) FROM telemetry"))

    with ingest_thread(settings, client_id="lanes"):
        wait_for(lambda: handled(database_url) == 1, 30, "the fault")
        stored_before_the_ticket = stored()
        wait_for(lambda: stored() == len(backlog), 120, "the whole backlog")

    assert tickets(database_url) == [
        (fleet.ids[fleet.uids[0]], "DISK_FULL", "reported", 0, 0)
    ]
    assert stored_before_the_ticket < len(backlog) / 2
