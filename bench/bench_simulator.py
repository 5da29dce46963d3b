"""Can one simulator process sustain 5,000 devices reporting every 60 s?

    python bench/bench_simulator.py [--devices 5000] [--interval 60] [--duration 85]

Runs ``edufleet simulate --no-register`` as a child process against a broker
(``EDUFLEET_MQTT_URL``, or a private Mosquitto started here on loopback),
while a subscriber in this process counts what actually arrived. Prints the
telemetry rate received against the target (devices / interval), the
publish-to-receive latency of the samples, and the simulator's CPU and peak
RSS, measured from outside with psutil.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from services import PrivateMosquitto  # noqa: E402

# The first seconds carry every device's birth and online state at once.
WARM_UP_S = 20


class Counter:
    """Counts messages by kind, and telemetry latency, as they arrive."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.counts: dict[str, int] = {}
        self.arrivals: list[tuple[float, float]] = []  # (when, latency)
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-counter", protocol=mqtt.MQTTv5
        )
        if os.environ.get("EDUFLEET_MQTT_USERNAME"):
            self.client.username_pw_set(
                os.environ["EDUFLEET_MQTT_USERNAME"],
                os.environ.get("EDUFLEET_MQTT_PASSWORD"),
            )
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            "edufleet/v1/#", qos=1
        )
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, message) -> None:  # type: ignore[no-untyped-def]
        kind = message.topic.split("/")[3]
        now = time.time()
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if kind == "telemetry":
                sample = json.loads(message.payload)["samples"][0]
                sent = datetime.fromisoformat(sample["ts"]).timestamp()
                self.arrivals.append((time.monotonic(), now - sent))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=5000)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--duration", type=float, default=85.0)
    parser.add_argument("--per-connection", type=int, default=500)
    args = parser.parse_args()
    if args.duration < args.interval + WARM_UP_S + 2:
        parser.error(f"--duration must cover one interval plus {WARM_UP_S} s")
    schools = max(1, args.devices // 100)
    per_school = args.devices // schools

    root = Path(tempfile.mkdtemp(prefix="bench-simulator-"))
    broker = None
    url = os.environ.get("EDUFLEET_MQTT_URL")
    if not url:
        os.chmod(root, 0o755)
        broker = PrivateMosquitto(root / "mosquitto")
        url = broker.start()
    counter = Counter(url)
    try:
        if not counter.ready.wait(10):
            raise SystemExit(f"could not subscribe at {url}")
        command = [
            str(Path(sys.executable).parent / "edufleet"),
            "simulate",
            "--no-register",
            "--schools",
            str(schools),
            "--devices-per-school",
            str(per_school),
            "--interval",
            str(args.interval),
            "--duration",
            str(args.duration),
            "--per-connection",
            str(args.per_connection),
            "--fault-rate",
            "0.05",
        ]
        env = dict(os.environ, EDUFLEET_MQTT_URL=url, EDUFLEET_LOG_LEVEL="WARNING")
        started = time.monotonic()
        child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        watched = psutil.Process(child.pid)
        cpu = 0.0
        peak_rss = 0
        while child.poll() is None:
            try:
                times = watched.cpu_times()
                cpu = times.user + times.system
                peak_rss = max(peak_rss, watched.memory_info().rss)
            except psutil.NoSuchProcess:
                break
            time.sleep(0.5)
        output = child.stdout.read() if child.stdout else ""
        elapsed = time.monotonic() - started
        time.sleep(1.0)  # the last acknowledged messages reach the counter
    finally:
        counter.close()
        if broker is not None:
            broker.stop()
        shutil.rmtree(root, ignore_errors=True)

    devices = schools * per_school
    target = devices / args.interval
    warm = started + WARM_UP_S
    window = [lat for t, lat in counter.arrivals if warm <= t < warm + args.interval]
    in_window = len(window)
    window_rate = in_window / args.interval
    mean = statistics.fmean(window) if window else float("nan")
    print(f"simulator: {output.strip()}")
    print(f"devices {devices}, interval {args.interval:g} s, run {elapsed:.1f} s")
    print(f"received by kind: {json.dumps(counter.counts, sort_keys=True)}")
    print(
        f"telemetry received in a steady {args.interval:g} s window: {in_window} "
        f"= {window_rate:.1f} msg/s vs target {target:.1f} msg/s "
        f"(ratio {window_rate / target:.3f})"
    )
    total = counter.counts.get("telemetry", 0)
    print(
        f"telemetry received over the whole run: {total} = "
        f"{total / args.duration:.1f} msg/s"
    )
    print(
        "publish-to-receive latency in that window: "
        f"p50 {percentile(window, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(window, 0.99) * 1000:.1f} ms, mean {mean * 1000:.1f} ms"
    )
    buckets: dict[int, list[float]] = {}
    for t, lat in counter.arrivals:
        buckets.setdefault(int((t - started) // 10) * 10, []).append(lat)
    print(
        "p99 latency by 10 s of the run: "
        + ", ".join(
            f"{k}s {percentile(v, 0.99) * 1000:.0f} ms"
            for k, v in sorted(buckets.items())
        )
    )
    print(
        f"simulator process: CPU {cpu:.1f} s over {elapsed:.1f} s "
        f"= {100 * cpu / elapsed:.1f} % of one core, "
        f"peak RSS {peak_rss / 2**20:.0f} MiB"
    )
    return 0 if child.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
