"""Drills across the whole system; see conftest.py for their scale."""

from __future__ import annotations

import concurrent.futures
import contextlib
import statistics
import time

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.drill]

FAULTS_PER_HOUR = 60.0


def _counts(stack, since_tickets: int = 0) -> dict[str, int]:
    return {
        "telemetry": stack.scalar("SELECT count(*) FROM telemetry"),
        "faults": stack.scalar("SELECT count(*) FROM fault_events"),
        "tickets": stack.scalar("SELECT count(*) FROM tickets"),
        "notifications": stack.scalar("SELECT count(*) FROM notifications"),
        "rejected": stack.scalar("SELECT count(*) FROM rejected_messages"),
    }


def _line(name: str, report, counts: dict[str, int], extra: str = "") -> str:
    return (
        f"drill {name}: sent {report.telemetry} telemetry + {report.events} events, "
        f"arrived {counts['telemetry']} telemetry + {counts['faults']} fault events; "
        f"tickets {counts['tickets']}, notifications {counts['notifications']}, "
        f"rejected {counts['rejected']}" + (f"; {extra}" if extra else "")
    )


def _run_and_break(stack, scale, breaker) -> tuple[object, dict[str, int]]:
    stack.start_collector()
    stack.simulate(
        devices=scale.devices,
        interval=scale.interval,
        duration=scale.duration,
        fault_rate=FAULTS_PER_HOUR,
    )
    # Break things mid-stream: once telemetry flows, a third of the way in.
    stack.wait_for(
        lambda: stack.scalar("SELECT count(*) FROM telemetry") > 0, 90, "telemetry"
    )
    time.sleep(scale.duration / 4)
    stack.assert_running()
    breaker()
    report = stack.finish_simulation(timeout=scale.duration * 4 + 60)
    _wait_arrivals(stack, report)
    return report, _counts(stack)


def _wait_arrivals(stack, report) -> None:
    stack.wait_count("SELECT count(*) FROM telemetry", report.telemetry)
    stack.wait_count("SELECT count(*) FROM fault_events", report.events)


def _assert_nothing_lost(report, counts) -> None:
    assert report.refused == 0
    assert report.dropped == 0, "the simulator dropped messages before sending"
    assert counts["telemetry"] == report.telemetry
    assert counts["faults"] == report.events
    assert counts["rejected"] == 0


def test_drill_broker_restart(stack, scale, record):
    def restart_broker() -> None:
        stack.broker.stop()
        time.sleep(5)
        stack.broker.start()

    report, counts = _run_and_break(stack, scale, restart_broker)
    record(_line("broker restart", report, counts))
    _assert_nothing_lost(report, counts)


def test_drill_postgres_restart(stack, scale, record):
    def restart_postgres() -> None:
        stack.pg.stop()
        time.sleep(5)
        stack.pg.start()

    report, counts = _run_and_break(stack, scale, restart_postgres)
    stack.assert_running()
    record(_line("PostgreSQL restart", report, counts))
    _assert_nothing_lost(report, counts)


def test_drill_kill_ingest_and_worker(stack, scale, record):
    def kill_both() -> None:
        stack.kill("ingest")
        stack.kill("worker")
        time.sleep(2)
        stack.start("ingest", "ingest", "--metrics-port", "0")
        stack.start("worker", "worker")

    report, counts = _run_and_break(stack, scale, kill_both)
    duplicates = stack.scalar(
        "SELECT count(*) FROM (SELECT idempotency_key FROM notifications "
        "GROUP BY 1 HAVING count(*) > 1) d"
    )
    open_twice = stack.scalar(
        "SELECT count(*) FROM (SELECT device_id, fault_code FROM tickets "
        "WHERE status NOT IN ('resolved', 'closed', 'cancelled') "
        "GROUP BY 1, 2 HAVING count(*) > 1) d"
    )
    record(
        _line(
            "kill -9 ingest and worker", report, counts, f"{open_twice} doubled tickets"
        )
    )
    _assert_nothing_lost(report, counts)
    assert duplicates == 0
    assert open_twice == 0


def test_drill_web_and_worker_under_ingest_load(stack, scale, record):
    stack.start_collector()
    stack.simulate(
        devices=scale.devices,
        interval=scale.interval,
        duration=scale.duration,
        fault_rate=FAULTS_PER_HOUR,
    )
    base = stack.env["EDUFLEET_PUBLIC_URL"]
    code = stack.scalar("SELECT count(*) FROM device_codes")
    assert code > 0
    label = None
    import psycopg

    with psycopg.connect(stack.database_url) as conn:
        label = conn.execute(
            "SELECT code FROM device_codes WHERE retired_at IS NULL LIMIT 1"
        ).fetchone()[0]

    stack.wait_for(
        lambda: (
            httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            if _up(base)
            else False
        ),
        60,
        "the web server",
    )
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + scale.duration * 0.6

    def hit(path: str) -> float:
        started = time.perf_counter()
        response = httpx.get(f"{base}{path}", timeout=10)
        response.raise_for_status()
        return time.perf_counter() - started

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        while time.monotonic() < deadline:
            futures = [pool.submit(hit, p) for p in (f"/r/{label}", "/healthz") * 8]
            for future in futures:
                try:
                    latencies.append(future.result())
                except httpx.HTTPError:
                    errors += 1

    report = stack.finish_simulation(timeout=scale.duration * 4 + 60)
    _wait_arrivals(stack, report)
    counts = _counts(stack)
    latencies.sort()
    p99 = (
        latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else float("nan")
    )
    median = statistics.median(latencies) * 1000 if latencies else float("nan")
    record(
        _line(
            "web under ingest load",
            report,
            counts,
            f"{len(latencies)} page loads, p50 {median:.0f} ms, p99 {p99:.0f} ms, "
            f"{errors} errors",
        )
    )
    _assert_nothing_lost(report, counts)
    assert errors == 0


def _up(base: str) -> bool:
    try:
        httpx.get(f"{base}/healthz", timeout=2)
    except httpx.HTTPError:
        return False
    return True


AGENT_CONFIG = """
[agent]
device_id = "{uid}"
state_dir = "{state}"
credentials_file = "{state}/none.json"
queue_quota_mb = 0.05
interval_s = 0.2
log_level = "info"

[mqtt]
url = "{url}"
will_delay_s = 5
backoff_initial_s = 0.5
backoff_cap_s = 2

[probes.host]
enabled = true

[probes.reachability]
enabled = false

[probes.process]
enabled = true
interval_s = 0.5
names = ["efmarker"]
"""


def test_drill_agent_exhausts_its_disk_quota(stack, record, tmp_path):
    import shutil
    import subprocess
    import sys

    stack.start("ingest", "ingest", "--metrics-port", "0")
    stack.wait_for(
        lambda: "subscribed" in stack.log("ingest"), 60, "ingest to subscribe"
    )
    uid = "drill-agent-01"
    device_id = stack.scalar(
        "INSERT INTO devices (uid, asset_tag, category, school_id) "
        "SELECT %s, 'DRILL-AGENT-01', 'desktop', min(id) FROM schools RETURNING id",
        uid,
    )
    marker = tmp_path / "efmarker"
    shutil.copy("/bin/sleep", marker)
    state = tmp_path / "state"
    state.mkdir()
    config = tmp_path / "agent.toml"
    config.write_text(AGENT_CONFIG.format(uid=uid, state=state, url=stack.broker.url))

    stack.broker.stop()
    running = subprocess.Popen([str(marker), "1000"])
    agent_log = open(tmp_path / "agent.log", "wb")  # noqa: SIM115
    agent = subprocess.Popen(
        [sys.executable, "-m", "edufleet_agent.cli", "run", "--config", str(config)],
        env=stack.env,
        stdout=agent_log,
        stderr=subprocess.STDOUT,
    )
    toggles = 4
    try:
        time.sleep(3)
        for _ in range(toggles):
            running.kill()
            running.wait()
            time.sleep(2.5)  # two failed checks open PROCESS_NOT_RUNNING
            running = subprocess.Popen([str(marker), "1000"])
            time.sleep(2.5)  # two good checks clear it
        time.sleep(8)  # telemetry keeps coming while the broker is away
        log_text = (tmp_path / "agent.log").read_text(errors="replace")
        thinned = "reached its quota" in log_text
        assert agent.poll() is None, log_text[-3000:]

        stack.broker.start()
        expected = 2 * toggles
        faults = stack.wait_count(
            "SELECT count(*) FROM fault_events "
            f"WHERE device_id = {device_id} AND code = 'PROCESS_NOT_RUNNING'",
            expected,
        )
        telemetry = stack.scalar(
            "SELECT count(*) FROM telemetry WHERE device_id = %s", device_id
        )
        generated = stack.scalar(
            "SELECT max(seq) FROM telemetry WHERE device_id = %s", device_id
        )
        order = stack.scalar(
            "SELECT count(*) FROM (SELECT action, lag(action) OVER (ORDER BY seq) "
            f"AS prev FROM fault_events WHERE device_id = {device_id}) e "
            "WHERE action = prev"
        )
    finally:
        agent.terminate()
        agent.wait(20)
        running.kill()
        agent_log.close()
    sleeping = (
        "SELECT count(*) FROM device_state "
        f"WHERE device_id = {device_id} AND state = 'sleeping'"
    )
    # Under load ingest may still be working through the backlog.
    with contextlib.suppress(AssertionError):
        stack.wait_for(lambda: stack.scalar(sleeping) == 1, 60, "the sleeping state")
    state_now = stack.scalar(sleeping)

    record(
        f"drill agent disk quota: {expected} fault events raised offline, {faults} "
        f"arrived (in order: {order == 0}); telemetry thinned to {telemetry} of "
        f"the last sequence number {generated}; quota hit: {thinned}"
    )
    assert thinned, "the queue never reached its quota; the drill tested nothing"
    assert faults == expected
    assert order == 0, "fault events arrived out of order"
    assert 0 < telemetry < generated
    assert state_now == 1, "a graceful stop did not leave the device sleeping"
