"""Measure the agent's resident memory and CPU while it runs.

Starts ``edufleet-agent run`` against the broker named by EDUFLEET_MQTT_URL
(default mqtt://127.0.0.1:1883, anonymous) with only the host probe at a 30 s
interval and a subscriber in this process standing in for ingest. It samples
the agent from outside with psutil once a second and prints maximum and
average RSS and average CPU as a percentage of one core.
The baseline, measured in the same run, is an idle ``python -c`` process.
Targets: RSS at most 40 MB, CPU at most 1 % of one core.

    .venv/bin/python bench/bench_agent_footprint.py [--seconds 300] [--interval 30]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

RSS_TARGET_MB = 40.0
CPU_TARGET_PCT = 1.0
MB = 1024 * 1024


def write_config(folder: Path, device_id: str, url: str, interval: float) -> Path:
    path = folder / "agent.toml"
    path.write_text(
        f"""\
[agent]
device_id = "{device_id}"
state_dir = "{folder}"
credentials_file = "{folder}/agent.json"
interval_s = {interval}
log_level = "warning"

[mqtt]
url = "{url}"

[probes.host]
enabled = true

[probes.reachability]
enabled = false
"""
    )
    return path


def baseline_rss() -> int:
    """RSS of a bare, idle Python interpreter."""
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(1.0)
        return int(psutil.Process(idle.pid).memory_info().rss)
    finally:
        idle.kill()
        idle.wait()


def consumer(url: str, device_id: str) -> tuple[mqtt.Client, list[int]]:
    """A subscriber to the device's topics, as ingest would be; counts messages."""
    parts = urlsplit(url)
    received = [0]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def count(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        received[0] += 1

    client.on_message = count
    client.on_connect = lambda c, *args: c.subscribe(
        f"edufleet/v1/{device_id}/#", qos=1
    )
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    return client, received


def measure(seconds: float, url: str, interval: float) -> int:
    base = baseline_rss()
    device_id = f"bench-{uuid.uuid4().hex[:10]}"
    subscriber, received = consumer(url, device_id)
    time.sleep(0.5)
    with tempfile.TemporaryDirectory(prefix="edufleet-bench-agent-") as folder:
        config = write_config(Path(folder), device_id, url, interval)
        agent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edufleet_agent.cli",
                "run",
                "--config",
                str(config),
            ],
            env=dict(os.environ),
        )
        process = psutil.Process(agent.pid)
        rss: list[int] = []
        try:
            time.sleep(2.0)  # start-up: imports, inventory, first connect
            started = time.monotonic()
            cpu_start = sum(process.cpu_times()[:2])
            while time.monotonic() - started < seconds:
                if agent.poll() is not None:
                    print(f"agent exited early with status {agent.returncode}")
                    return 1
                rss.append(int(process.memory_info().rss))
                time.sleep(1.0)
            elapsed = time.monotonic() - started
            cpu_used = sum(process.cpu_times()[:2]) - cpu_start
        finally:
            agent.send_signal(signal.SIGTERM)
            status = agent.wait(30)
            subscriber.disconnect()
            subscriber.loop_stop()

    cpu_pct = 100.0 * cpu_used / elapsed
    rss_max, rss_avg = max(rss) / MB, sum(rss) / len(rss) / MB
    print(f"agent footprint over {elapsed:.0f} s, host probe every {interval:g} s")
    print(
        f"  RSS max {rss_max:.1f} MB, avg {rss_avg:.1f} MB "
        f"(target <= {RSS_TARGET_MB:g} MB)"
    )
    print(f"  CPU avg {cpu_pct:.3f} % of one core (target <= {CPU_TARGET_PCT:g} %)")
    print(
        f"  baseline idle python RSS {base / MB:.1f} MB; agent/baseline "
        f"{rss_max * MB / base:.2f}x"
    )
    print(f"  messages received by the subscriber: {received[0]}")
    print(f"  exit status after SIGTERM: {status}")
    ok = rss_max <= RSS_TARGET_MB and cpu_pct <= CPU_TARGET_PCT and status == 0
    print("  within targets" if ok else "  OUTSIDE TARGETS")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument(
        "--url", default=os.environ.get("EDUFLEET_MQTT_URL") or "mqtt://127.0.0.1:1883"
    )
    args = parser.parse_args()
    return measure(args.seconds, args.url, args.interval)


if __name__ == "__main__":
    sys.exit(main())
