"""How do device identities in Mosquitto's dynamic security plugin scale?

    python bench/bench_dynsec.py [--sizes 1000,4000,8000] [--enrollments 10]

For each size N, writes a plugin file holding N device identities shaped as
enrollment makes them (a client and an own role each), starts a private
Mosquitto on loopback with it, and prints how long the broker took to listen
and how long one enrollment's broker work (``provision_device``) takes. The
ratios against the smallest size show how the cost grows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from edufleet_collector.broker import roles  # noqa: E402
from edufleet_collector.broker.dynsec import DynsecClient  # noqa: E402
from edufleet_collector.broker.identities import provision_device  # noqa: E402
from services import _demote_to, ensure_binary, free_port  # noqa: E402

PLUGINS = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
)
ADMIN = ("bench-admin", "bench-admin-password")


def write_identities(path: Path, count: int) -> None:
    config = roles.build_config({ADMIN[0]: (ADMIN[1], roles.ADMIN_ROLE)})
    stored = roles.hash_password(roles.new_password())
    for n in range(count):
        device = f"bench{n:06d}"
        config["clients"].append(
            {
                "username": device,
                **stored,
                "roles": [
                    {"rolename": roles.DEVICE_ROLE, "priority": 10},
                    {"rolename": roles.device_role(device)},
                ],
            }
        )
        config["roles"].append(
            {
                "rolename": roles.device_role(device),
                "acls": [acl.as_json() for acl in roles.device_acls(device)],
            }
        )
    path.write_text(json.dumps(config))


def measure(count: int, enrollments: int, timeout: float) -> tuple[float, float, int]:
    plugin = next((p for p in PLUGINS if Path(p).exists()), None)
    if plugin is None:
        raise SystemExit("the Mosquitto dynamic security plugin is not installed")
    root = Path(tempfile.mkdtemp(prefix="bench-dynsec-"))
    os.chmod(root, 0o755)
    port = free_port()
    dynsec_file = root / "dynsec.json"
    write_identities(dynsec_file, count)
    conf = root / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\n"
        f"plugin {plugin}\nplugin_opt_config_file {dynsec_file}\n"
    )
    if os.geteuid() == 0:
        uid, gid = _demote_to("mosquitto")
        for path in (root, dynsec_file, conf):
            os.chown(path, uid, gid)
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(ensure_binary("mosquitto")), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            if time.monotonic() - started > timeout:
                raise SystemExit(f"{count} identities: no listener within {timeout} s")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        startup = time.monotonic() - started
        with DynsecClient("127.0.0.1", port, *ADMIN, timeout=120) as dynsec:
            began = time.monotonic()
            for n in range(enrollments):
                provision_device(dynsec, f"fresh{n:04d}")
            per_enrollment = (time.monotonic() - began) / enrollments
        size = dynsec_file.stat().st_size
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(root, ignore_errors=True)
    return startup, per_enrollment, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,4000,8000")
    parser.add_argument("--enrollments", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    baseline: tuple[float, float] | None = None
    for count in sizes:
        startup, per_enrollment, size = measure(count, args.enrollments, args.timeout)
        if baseline is None:
            baseline = (startup, per_enrollment)
        print(
            f"{count:>7} identities ({size / 2**20:.1f} MiB file): broker listening "
            f"after {startup:.2f} s (x{startup / baseline[0]:.1f}), one enrollment "
            f"{per_enrollment * 1000:.0f} ms (x{per_enrollment / baseline[1]:.1f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
