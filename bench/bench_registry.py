"""Latency of the registry's list endpoints over a seeded province.

Creates a fresh database on the server named by EDUFLEET_DATABASE_URL (default
postgresql://postgres@127.0.0.1:5432/postgres), migrates it, seeds 3,000
schools with 100 devices each, starts the real server (``edufleet serve`` in a
subprocess on a free loopback port) and sends each list request N times from
a pool of threads, as a province admin. It prints p50/p99 per endpoint and,
as the baseline measured in the same run, ``GET /healthz``, with the ratio of
each p99 to the baseline's. ``GET /api/v1/regions`` (24 rows, no paging)
shows what authenticating a request costs on its own. It also prints the
top of each list query's plan (EXPLAIN) and the indexes it reads. The
database is dropped at the end.

    .venv/bin/python bench/bench_registry.py [--schools 3000]
        [--devices-per-school 100] [--requests 500] [--concurrency 8]
        [--existing URL]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

from edufleet_collector.accounts import Principal, create_token
from edufleet_collector.db.migrate import migrate
from edufleet_collector.registry.devices import DeviceFilters, device_list_query
from edufleet_collector.registry.pagination import Page, encode_cursor
from edufleet_collector.registry.schools import school_list_query
from edufleet_collector.registry.seed import seed_province, vacuum_registry

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_P99_MS = 50.0
PROVINCE = Principal(
    user_id=0,
    name="bench",
    role="province_admin",
    region_code=None,
    school_id=None,
    engineer_id=None,
    school_ids=None,
)


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def fresh_database(server: str) -> Iterator[str]:
    name = f"edufleet_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server, name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def database(server: str, existing: str | None) -> Iterator[str]:
    """The database to measure: one given (kept), else a fresh one (dropped)."""
    if existing is not None:
        yield existing
        return
    with fresh_database(server) as url:
        yield url


@contextmanager
def running_server(
    database_url: str, *, workers: int = 1, **settings: str
) -> Iterator[str]:
    """``edufleet serve`` on a free port; ``settings`` are extra EDUFLEET_* values."""
    port = free_port()
    env = dict(
        os.environ,
        EDUFLEET_DATABASE_URL=database_url,
        EDUFLEET_LOG_LEVEL="WARNING",
        EDUFLEET_ENVIRONMENT="development",
    )
    env.update({f"EDUFLEET_{name.upper()}": value for name, value in settings.items()})
    command = [sys.executable, "-m", "edufleet_collector.cli", "serve"]
    proc = subprocess.Popen(
        [*command, "--port", str(port), "--workers", str(workers)], env=env
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited with status {proc.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("the server did not answer /healthz within 30 s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Case:
    label: str
    urls: Callable[[random.Random], str]


@dataclass
class Result:
    label: str
    p50: float
    p99: float
    mean: float
    per_second: float
    items: float


def measure(
    client: httpx.Client, case: Case, requests: int, concurrency: int, seed: int
) -> Result:
    rng = random.Random(seed)
    urls = [case.urls(rng) for _ in range(requests)]
    for url in urls[:20]:
        client.get(url).raise_for_status()

    def one(url: str) -> tuple[float, int]:
        started = time.perf_counter()
        response = client.get(url)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        body = response.json()
        return elapsed * 1000, len(body["items"]) if "items" in body else 1

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        timings = list(pool.map(one, urls))
    wall = time.perf_counter() - started
    millis = sorted(t for t, _ in timings)
    return Result(
        label=case.label,
        p50=statistics.median(millis),
        p99=millis[min(len(millis) - 1, int(len(millis) * 0.99))],
        mean=statistics.fmean(millis),
        per_second=len(millis) / wall,
        items=statistics.fmean(n for _, n in timings),
    )


def plan_summary(conn: psycopg.Connection[Any], statement: Any, params: Any) -> str:
    """The plan's top node and every index it reads, from EXPLAIN (FORMAT JSON)."""
    row = conn.execute(
        psycopg.sql.SQL("EXPLAIN (FORMAT JSON) {}").format(statement), params
    ).fetchone()
    assert row is not None
    top = row[0][0]["Plan"]
    indexes: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        name = node.get("Index Name")
        if name and name not in indexes:
            indexes.append(name)
        for child in node.get("Plans", []):
            walk(child)

    walk(top)
    below = top.get("Plans", [{}])[0].get("Node Type", "")
    return f"{top['Node Type']} > {below}; indexes: {', '.join(indexes) or 'none'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schools", type=int, default=3000)
    parser.add_argument("--devices-per-school", type=int, default=100)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--workers", type=int, default=2, help="server processes (one per core)"
    )
    parser.add_argument(
        "--existing",
        metavar="URL",
        help="measure this database, already seeded by `edufleet seed`, "
        "instead of seeding a fresh one; it is not dropped",
    )
    args = parser.parse_args()
    server = os.environ.get("EDUFLEET_DATABASE_URL") or DEFAULT_SERVER

    with database(server, args.existing) as url:
        with psycopg.connect(url) as conn:
            if args.existing is None:
                migrate(conn)
                conn.commit()
                started = time.perf_counter()
                summary = seed_province(
                    conn,
                    schools=args.schools,
                    devices_per_school=args.devices_per_school,
                )
                seeded = time.perf_counter() - started
                vacuum_registry(conn)
                print(
                    f"seeded {summary.schools} schools, {summary.devices} devices, "
                    f"{summary.rooms} rooms in {seeded:.1f} s"
                )
            token = create_token(conn, user_name="province-admin", label="bench")
            bureau = create_token(conn, user_name="bureau-460100", label="bench")
            conn.commit()
            codes = [r[0] for r in conn.execute("SELECT code FROM schools")]
            serials = [
                r[0]
                for r in conn.execute(
                    "SELECT serial FROM devices TABLESAMPLE SYSTEM (1) LIMIT 500"
                )
            ]
            row = conn.execute("SELECT max(id), count(*) FROM devices").fetchone()
            max_id, devices = (int(row[0]), int(row[1])) if row else (1, 0)
        print(f"measuring {len(codes)} schools, {devices} devices")

        categories = ["desktop", "projector", "panel", "controller", "network"]
        cases = [
            Case("/healthz (baseline)", lambda r: "/healthz"),
            Case("/api/v1/regions (auth only)", lambda r: "/api/v1/regions"),
            Case("/api/v1/schools", lambda r: "/api/v1/schools"),
            Case(
                "/api/v1/schools?region=",
                lambda r: "/api/v1/schools?region=" + r.choice(["460100", "469027"]),
            ),
            Case(
                "/api/v1/devices?school=",
                lambda r: "/api/v1/devices?school=" + r.choice(codes),
            ),
            Case(
                "/api/v1/devices?category=",
                lambda r: "/api/v1/devices?category=" + r.choice(categories),
            ),
            Case(
                "/api/v1/devices?q=<serial>",
                lambda r: "/api/v1/devices?q=" + r.choice(serials)[2:9],
            ),
            Case(
                "/api/v1/devices?q=<brand>",
                lambda r: "/api/v1/devices?q=" + r.choice(["Seewo", "Epson", "H3C"]),
            ),
            Case(
                "/api/v1/devices?after=<deep>",
                lambda r: (
                    "/api/v1/devices?after=" + encode_cursor(r.randrange(1, max_id))
                ),
            ),
            Case(
                "/api/v1/devices?region=",
                lambda r: "/api/v1/devices?region=" + r.choice(["460106", "469002"]),
            ),
            Case("/api/v1/engineers", lambda r: "/api/v1/engineers"),
        ]
        bureau_case = Case(
            "/api/v1/devices (Haikou bureau)", lambda r: "/api/v1/devices"
        )

        with running_server(url, workers=args.workers) as base:
            results = []
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
                for n, case in enumerate(cases):
                    results.append(
                        measure(client, case, args.requests, args.concurrency, n)
                    )
            headers = {"Authorization": f"Bearer {bureau}"}
            with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
                results.append(
                    measure(client, bureau_case, args.requests, args.concurrency, 99)
                )

        print(
            f"\n{args.requests} requests per row, {args.concurrency} threads, "
            f"{args.workers} server process(es); target p99 < {TARGET_P99_MS:.0f} ms\n"
        )
        baseline = results[0]
        print(
            f"{'endpoint':<34} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} "
            f"{'req/s':>7} {'items':>6} {'p99/base':>9} {'ok':>3}"
        )
        for result in results:
            ok = "yes" if result.p99 < TARGET_P99_MS else "NO"
            print(
                f"{result.label:<34} {result.p50:8.1f} {result.p99:8.1f} "
                f"{result.mean:8.1f} {result.per_second:7.0f} {result.items:6.1f} "
                f"{result.p99 / baseline.p99:9.2f} {ok:>3}"
            )

        print("\nquery plans (EXPLAIN, province admin, 50 rows a page):")
        page = Page(limit=50)
        rng = random.Random(1)
        device_filters = {
            "devices?school=": DeviceFilters(school=rng.choice(codes)),
            "devices?category=": DeviceFilters(category="projector"),
            "devices?q=<serial>": DeviceFilters(q=rng.choice(serials)[2:9]),
            "devices?q=<brand>": DeviceFilters(q="Seewo"),
            "devices?region=": DeviceFilters(region="460106"),
        }
        with psycopg.connect(url) as conn:
            plans = {"schools": school_list_query(conn, PROVINCE, page=page)}
            for label, filters in device_filters.items():
                plans[label] = device_list_query(conn, PROVINCE, filters, page)
            deep = Page(limit=50, after=max_id - 1000)
            plans["devices?after=<deep>"] = device_list_query(
                conn, PROVINCE, DeviceFilters(), deep
            )
            for label, (statement, params) in plans.items():
                print(f"  {label:<22} {plan_summary(conn, statement, params)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
