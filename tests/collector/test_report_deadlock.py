"""A teacher's report that PostgreSQL picks as a deadlock victim is retried.

Ingest dispatching several faults in one transaction holds engineers' rows
and then takes devices' rows; a QR report takes its device's row and then
the engineer's. When the two cross, PostgreSQL aborts one of them. The
report must still become a ticket, not an error page.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

from webseed import report, running_server, seed_world, web_settings


def waiting_on_a_lock(url: str, besides: int) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND pid <> %s AND datname = current_database()",
            [besides],
        ).fetchone()
        return bool(row and row[0])


def test_a_report_chosen_as_a_deadlock_victim_still_becomes_a_ticket(
    conn: psycopg.Connection[Any], database_url: str, settings: Any, tmp_path: Path
) -> None:
    world = seed_world(conn)
    device = world.devices["HK01-PJ-001"]
    answers: list[httpx.Response] = []
    with (
        running_server(web_settings(settings, tmp_path)) as base,
        psycopg.connect(database_url) as ingest_like,
    ):
        # This transaction waits long before checking for deadlocks, so the
        # web request, which waits first, is the one PostgreSQL aborts.
        ingest_like.execute("SET deadlock_timeout = '20s'")
        pid = ingest_like.info.backend_pid
        ingest_like.execute(
            "SELECT 1 FROM engineers WHERE id = %s FOR NO KEY UPDATE",
            [world.engineers["wang"]],
        )

        def teacher() -> None:
            with httpx.Client(base_url=base, timeout=60) as client:
                answers.append(report(client, world.codes["HK01-PJ-001"]))

        thread = threading.Thread(target=teacher)
        thread.start()
        deadline = time.monotonic() + 20
        while not waiting_on_a_lock(database_url, pid):
            assert time.monotonic() < deadline, "the report never waited for the lock"
            time.sleep(0.05)
        # The report holds the device and waits for the engineer: take the
        # device too, and the two transactions deadlock.
        ingest_like.execute(
            "SELECT 1 FROM devices WHERE id = %s FOR NO KEY UPDATE", [device]
        )
        ingest_like.commit()
        thread.join(60)

    assert [a.status_code for a in answers] == [303]
    tickets = conn.execute(
        "SELECT count(*) FROM tickets WHERE device_id = %s AND source = 'qr'", [device]
    ).fetchone()
    assert tickets == (1,)
