import os
import signal
import subprocess
import sys
import time

import httpx

from procs import free_port


def test_serve_with_two_workers_answers_from_both_processes(database_url, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    env = dict(os.environ, EDUFLEET_DATABASE_URL=database_url)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "edufleet_collector.cli", "serve"),
                *("--port", str(port), "--workers", "2"),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert status is not None and status.status_code == 200, log.read_text()
        while log.read_text().count("Started server process") < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
