"""Size and latency of the QR landing page under 100 concurrent clients.

Creates a fresh database on the server named by EDUFLEET_DATABASE_URL (default
postgresql://postgres@127.0.0.1:5432/postgres), migrates it, seeds a small
province, starts the real server (``edufleet serve`` in a subprocess on a free
loopback port, rate limits raised out of the way) and loads it with ``wrk``
when installed (``apt-get install wrk``), else with an asyncio/httpx load
generator. Each request asks for ``/r/<code>`` of a random device, gzip
accepted. It prints the page's bytes over the wire (gzip) and uncompressed,
p50/p99 of the landing page and of ``GET /healthz`` measured the same way in
the same run, and their ratio: once saturated (every client sends its next
request as soon as the last is answered) and once paced (each client waits
about ``--pause`` seconds between requests, as people scanning labels do).
The database is dropped at the end.

    .venv/bin/python bench/bench_qr.py [--seconds 10] [--concurrency 100]
        [--schools 100] [--devices-per-school 30] [--tool auto|wrk|python]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from bench_registry import fresh_database, running_server
from edufleet_collector.db.migrate import migrate
from edufleet_collector.registry.seed import seed_province

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
SIZE_LIMIT = 30 * 1024


@dataclass(frozen=True)
class Latency:
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float


def page_size(url: str) -> tuple[int, int]:
    """Bytes of one answer on the wire (gzip) and uncompressed."""
    with (
        httpx.Client(headers={"accept-encoding": "gzip"}) as client,
        client.stream("GET", url) as answer,
    ):
        wire = b"".join(answer.iter_raw())
        if answer.headers.get("content-encoding") != "gzip":
            raise SystemExit(f"{url} was not gzip-encoded")
    return len(wire), len(gzip.decompress(wire))


_WRK_LINE = re.compile(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def load_with_wrk(
    base: str,
    paths: list[str],
    seconds: int,
    concurrency: int,
    *,
    pause: float = 0.0,
) -> Latency:
    """wrk's closed loop; with ``pause``, each connection waits about that long
    (uniformly 0.5-1.5 times it) between an answer and its next request."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        listed = ",".join(f'"{p}"' for p in paths)
        script.write(
            f"paths = {{{listed}}}\n"
            "request = function()\n"
            "  return wrk.format('GET', paths[math.random(#paths)], "
            "{['Accept-Encoding'] = 'gzip'})\n"
            "end\n"
        )
        if pause > 0:
            # Drawn between half and one and a half times the pause, so the
            # connections do not fall into step and arrive as one burst.
            low, high = int(pause * 500), int(pause * 1500)
            script.write(
                f"delay = function()\n  return math.random({low}, {high})\nend\n"
            )
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{concurrency}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                script.name,
                base,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        Path(script.name).unlink()
    if os.environ.get("BENCH_QR_DEBUG"):
        print(out, file=sys.stderr)
    found = {m[1]: float(m[2]) * _UNITS[m[3]] for m in _WRK_LINE.finditer(out)}
    total = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Latency(
        requests=int(total[1]) if total else 0,
        errors=int(errors[1]) if errors else 0,
        p50_ms=found["50"],
        p99_ms=found["99"],
    )


def load_with_python(
    base: str,
    paths: list[str],
    seconds: int,
    concurrency: int,
    *,
    pause: float = 0.0,
) -> Latency:
    """Each client sends a request, waits for the answer, then ``pause`` seconds."""

    async def run() -> tuple[list[float], int]:
        times: list[float] = []
        errors = 0
        stop = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(
            base_url=base, limits=limits, headers={"accept-encoding": "gzip"}
        ) as client:

            async def worker() -> None:
                nonlocal errors
                while time.monotonic() < stop:
                    start = time.perf_counter()
                    answer = await client.get(random.choice(paths))
                    times.append((time.perf_counter() - start) * 1000)
                    errors += answer.status_code != 200
                    if pause:
                        await asyncio.sleep(pause * random.uniform(0.5, 1.5))

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return times, errors

    times, errors = asyncio.run(run())
    times.sort()
    return Latency(
        requests=len(times),
        errors=errors,
        p50_ms=statistics.median(times),
        p99_ms=times[int(len(times) * 0.99) - 1],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--workers", type=int, default=2, help="server processes (one per core)"
    )
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--schools", type=int, default=100)
    parser.add_argument("--devices-per-school", type=int, default=30)
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument(
        "--pause",
        type=float,
        default=1.0,
        help="seconds each client waits between requests in the paced run",
    )
    args = parser.parse_args()
    tool = args.tool
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "python"
    load = load_with_wrk if tool == "wrk" else load_with_python

    server = os.environ.get("EDUFLEET_DATABASE_URL") or DEFAULT_SERVER
    with (
        fresh_database(server) as url,
        tempfile.TemporaryDirectory() as uploads,
    ):
        with psycopg.connect(url) as conn:
            migrate(conn)
            seed_province(
                conn, schools=args.schools, devices_per_school=args.devices_per_school
            )
            codes = [
                row[0]
                for row in conn.execute(
                    "SELECT dc.code FROM device_codes dc "
                    "JOIN devices d ON d.id = dc.device_id "
                    "WHERE dc.retired_at IS NULL AND d.status <> 'retired' "
                    "ORDER BY random() LIMIT 500"
                )
            ]
        paths = [f"/r/{code}" for code in codes]
        with running_server(
            url,
            upload_dir=uploads,
            qr_rate_per_minute="100000000",
            db_pool_max_size="20",
        ) as base:
            wire, plain = page_size(base + paths[0])
            load(base, paths[:20], 2, 10)
            page = load(base, paths, args.seconds, args.concurrency)
            health = load(base, ["/healthz"], args.seconds, args.concurrency)
            paced_page = load(
                base, paths, args.seconds, args.concurrency, pause=args.pause
            )
            paced_health = load(
                base, ["/healthz"], args.seconds, args.concurrency, pause=args.pause
            )

    print(f"load tool: {tool}, {args.concurrency} clients, {args.seconds} s each")
    print(
        f"landing page: {wire:,} bytes over the wire (gzip), {plain:,} uncompressed; "
        f"limit {SIZE_LIMIT:,}: {'ok' if wire < SIZE_LIMIT else 'OVER'}"
    )
    runs = (
        ("saturated", page, health),
        (
            f"paced ({args.pause:g} s between a client's requests)",
            paced_page,
            paced_health,
        ),
    )
    for title, landing, baseline in runs:
        print(f"{title}:")
        for name, figures in (("GET /r/<code>", landing), ("GET /healthz", baseline)):
            print(
                f"  {name:14} requests {figures.requests:7,}  errors "
                f"{figures.errors:5,}  p50 {figures.p50_ms:7.2f} ms  "
                f"p99 {figures.p99_ms:7.2f} ms"
            )
        print(
            f"  ratio to /healthz: p50 x{landing.p50_ms / baseline.p50_ms:.2f}, "
            f"p99 x{landing.p99_ms / baseline.p99_ms:.2f}; p99 <= 100 ms: "
            f"{'ok' if landing.p99_ms <= 100 else 'missed'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
