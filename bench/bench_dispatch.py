"""Time a fault report becoming a dispatched ticket with its notification queued.

Creates a fresh database on the server named by EDUFLEET_DATABASE_URL (default
postgresql://postgres@127.0.0.1:5432/postgres), migrates it, seeds a province
with ``seed_province``, starts ``edufleet serve`` on a loopback port, and has
50 threads report faults concurrently with ``POST /api/v1/tickets`` (each a
new ticket: dedup, dispatch, SLA figures, timers, outbox row, commit). As the
baseline in the same run, the same threads call ``GET /healthz`` (one pooled
query). Prints p50/p99 of both and their ratio, and checks that every report
was dispatched with its notification queued.

    .venv/bin/python bench/bench_dispatch.py [--reports 1000] [--threads 50]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable

import httpx
import psycopg

from bench_registry import running_server, with_database
from edufleet_collector.accounts import create_token, create_user
from edufleet_collector.db.migrate import migrate
from edufleet_collector.registry.seed import seed_province

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _hammer(
    total: int,
    call: Callable[[httpx.Client, int], None],
    base: str,
    tokens: list[str],
    think: float = 0.0,
) -> tuple[list[float], float]:
    """Run ``total`` calls over one client per token; latencies (ms), wall seconds.

    Each client waits a random 0.5-1.5 x ``think`` seconds between its calls,
    as a person does between reports; 0 sends the next call at once.
    """
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(total))
    threads = len(tokens)
    start_line = threading.Barrier(threads + 1)

    def worker(token: str) -> None:
        rng = random.Random(token)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            client.get("/healthz")
            start_line.wait()
            if think:
                # Reporters do not start in step: each begins at its own moment.
                time.sleep(think * rng.uniform(0.0, 1.0))
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                started = time.perf_counter()
                call(client, n)
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    latencies.append(elapsed)
                if think:
                    time.sleep(think * rng.uniform(0.5, 1.5))

    pool = [threading.Thread(target=worker, args=(t,)) for t in tokens]
    for t in pool:
        t.start()
    start_line.wait()
    began = time.perf_counter()
    for t in pool:
        t.join()
    return latencies, time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--schools", type=int, default=300)
    parser.add_argument("--devices-per-school", type=int, default=20)
    parser.add_argument("--pool-size", type=int, default=45)
    parser.add_argument(
        "--workers", type=int, default=2, help="server processes (one per core)"
    )
    parser.add_argument(
        "--think",
        type=float,
        default=5.0,
        help="seconds each reporter waits between reports (0: back to back)",
    )
    parser.add_argument(
        "--saturate",
        type=int,
        default=300,
        help="reports sent back to back afterwards, to show the ceiling (0: skip)",
    )
    args = parser.parse_args()

    server = os.environ.get("EDUFLEET_DATABASE_URL") or DEFAULT_SERVER
    name = f"edufleet_bench_dispatch_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(server, name)
    servers = contextlib.ExitStack()
    try:
        with psycopg.connect(url) as conn:
            migrate(conn)
            summary = seed_province(
                conn, schools=args.schools, devices_per_school=args.devices_per_school
            )
            conn.execute(
                "INSERT INTO notification_channels (audience, kind, target) VALUES "
                "('engineers', 'webhook', 'http://127.0.0.1:9/engineers')"
            )
            # Every report should find an engineer: lift the load limit.
            conn.execute("UPDATE engineers SET max_open_tickets = 10000")
            create_user(conn, name="bench-hotline", role="province_admin")
            # One token per reporter thread, as 50 operators would have.
            tokens = [
                create_token(conn, user_name="bench-hotline")
                for _ in range(args.threads)
            ]
            devices = [
                int(r[0])
                for r in conn.execute("SELECT id FROM devices ORDER BY id").fetchall()
            ]
            # One device of every school, reported first so that the server
            # has every school's calendar cached, as it has in steady state.
            firsts = [
                int(r[0])
                for r in conn.execute(
                    "SELECT DISTINCT ON (school_id) id FROM devices "
                    "ORDER BY school_id, id"
                ).fetchall()
            ]
            conn.commit()
        print(
            f"seeded {summary.schools} schools, {summary.devices} devices, "
            f"{summary.engineers} engineers"
        )
        if len(devices) < args.reports:
            print("more reports than devices: some reports become 'me too'")
        first_set = set(firsts)
        devices = [d for d in devices if d not in first_set]
        random.Random(1).shuffle(devices)
        devices = firsts + devices

        base = servers.enter_context(
            running_server(
                url,
                workers=args.workers,
                environment="test",
                log_level="ERROR",
                db_pool_max_size=str(args.pool_size),
            )
        )
        failures: list[str] = []
        device_index = itertools.count()

        def report(client: httpx.Client, n: int) -> None:
            response = client.post(
                "/api/v1/tickets",
                json={
                    "device_id": devices[next(device_index) % len(devices)],
                    "source": "qr",
                    "description": "bench",
                    "reporter_phone": "13800000000",
                },
            )
            if response.status_code != 201:
                failures.append(f"{response.status_code} {response.text[:200]}")

        def health(client: httpx.Client, n: int) -> None:
            client.get("/healthz")

        _hammer(min(200, args.reports), health, base, tokens)  # warm-up
        _hammer(len(firsts), report, base, tokens)  # warm-up: one per school
        base_lat, base_wall = _hammer(args.reports, health, base, tokens, args.think)
        lat, wall = _hammer(args.reports, report, base, tokens, args.think)
        saturated: list[float] = []
        if args.saturate:
            saturated, sat_wall = _hammer(args.saturate, report, base, tokens, 0.0)

        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE status = 'dispatched'), "
                "count(*) FILTER (WHERE EXISTS (SELECT 1 FROM notifications n "
                "WHERE n.ticket_id = t.id)) FROM tickets t"
            ).fetchone()
        assert row is not None
        tickets, dispatched, notified = (int(v) for v in row)

        p50, p99 = _percentile(lat, 0.5), _percentile(lat, 0.99)
        b50, b99 = _percentile(base_lat, 0.5), _percentile(base_lat, 0.99)
        print(
            f"{args.threads} concurrent reporters, {args.reports} requests per run, "
            f"{args.think:g} s think time between a reporter's requests"
        )
        print(
            f"baseline GET /healthz:     p50 {b50:7.1f} ms  p99 {b99:7.1f} ms  "
            f"{args.reports / base_wall:7.0f} req/s"
        )
        print(
            f"POST /api/v1/tickets:      p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  "
            f"{args.reports / wall:7.0f} req/s  (mean {statistics.mean(lat):.1f} ms)"
        )
        print(
            f"ratio report/baseline:     p50 {p50 / b50:5.1f}x  p99 {p99 / b99:5.1f}x"
        )
        print(
            f"tickets: {tickets} created, {dispatched} dispatched, "
            f"{notified} with a notification queued; {len(failures)} failed requests"
        )
        print(f"target p99 <= 200 ms: {'met' if p99 <= 200 else 'NOT met'}")
        if saturated:
            print(
                f"back to back (no think time), {args.saturate} reports: "
                f"p50 {_percentile(saturated, 0.5):.1f} ms  "
                f"p99 {_percentile(saturated, 0.99):.1f} ms  "
                f"{args.saturate / sat_wall:.0f} req/s (the machine's ceiling)"
            )
        if failures:
            print("first failure:", failures[0])
        return 0 if not failures else 1
    finally:
        servers.close()
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
