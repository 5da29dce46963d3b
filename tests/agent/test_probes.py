"""Probes and their runner: failures and hangs stay contained; parsers on literals."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from edufleet_agent.inventory import (
    clean_identifier,
    parse_ioreg,
    parse_key_values,
    parse_wmic_value,
    read_linux_identity,
)
from edufleet_agent.probes.base import Metrics
from edufleet_agent.probes.host import HostOptions, HostProbe
from edufleet_agent.probes.http import Page, page_ok
from edufleet_agent.probes.process import count_running
from edufleet_agent.probes.reachability import parse_default_gateway, tcp_check
from edufleet_agent.probes.runner import ProbeRunner


class Steady:
    def collect(self) -> Metrics:
        return {"steady.value": 1}


class Raising:
    def collect(self) -> Metrics:
        raise OSError("sensor unplugged")


class Hanging:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def collect(self) -> Metrics:
        self.calls += 1
        self.release.wait(10)
        return {"hanging.value": 2}


class Sloppy:
    def collect(self) -> Metrics:
        return {"good.one": 1.5, "Bad Name": 1, "nan.value": float("nan")}


def test_raising_probe_is_reported_and_others_still_run() -> None:
    runner = ProbeRunner([("raising", Raising(), 1.0), ("steady", Steady(), 1.0)])
    raising, steady = runner.run()
    assert not raising.ok
    assert raising.error == "OSError: sensor unplugged"
    assert steady.ok
    assert steady.metrics == {"steady.value": 1}


def test_hanging_probe_times_out_and_is_not_restarted_until_it_returns() -> None:
    hanging = Hanging()
    runner = ProbeRunner([("hanging", hanging, 0.2), ("steady", Steady(), 1.0)])
    started = time.monotonic()
    first = runner.run()
    assert time.monotonic() - started < 2.0
    assert first[0].timed_out and first[1].ok

    second = runner.run()
    assert second[0].timed_out
    assert "not restarted" in (second[0].error or "")
    assert hanging.calls == 1

    hanging.release.set()
    time.sleep(0.1)
    third = runner.run()
    assert hanging.calls == 2
    assert third[0].ok and third[0].metrics == {"hanging.value": 2}


def test_runner_drops_badly_named_and_non_finite_metrics() -> None:
    (outcome,) = ProbeRunner([("sloppy", Sloppy(), 1.0)]).run()
    assert outcome.ok
    assert outcome.metrics == {"good.one": 1.5}


def test_host_probe_reads_this_machine() -> None:
    metrics = HostProbe(HostOptions()).collect()
    assert 0.0 <= float(metrics["host.cpu_pct"]) <= 100.0
    assert 0.0 < float(metrics["host.mem_pct"]) <= 100.0
    assert int(metrics["host.uptime_s"]) > 0
    assert any(key.startswith("host.disk_pct[") for key in metrics)


def test_process_counts_match_names() -> None:
    counts = count_running(["sshd", "teach.exe"], ["sshd", "bash", "sshd"])
    assert counts == {"sshd": 2, "teach.exe": 0}


def test_default_gateway_is_read_from_route_table_text() -> None:
    table = (
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
        "eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
        "eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\n"
    )
    assert parse_default_gateway(table) == "192.168.2.1"
    assert parse_default_gateway(table.splitlines()[0]) is None


def test_tcp_check_counts_refused_as_up_and_times_latency() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        assert tcp_check("127.0.0.1", port, 1.0) is not None
    assert tcp_check("127.0.0.1", port, 1.0) is not None  # refused: host answered
    assert tcp_check("127.0.0.1", port, 1.0, refused_is_up=False) is None


def test_status_page_needs_status_and_pattern() -> None:
    page = Page(name="panel", url="http://127.0.0.1/status", expect_regex="state: ok")
    assert page_ok(page, 200, "<p>state: ok</p>")
    assert not page_ok(page, 200, "<p>state: error</p>")
    assert not page_ok(page, 500, "state: ok")


def test_linux_serial_reader_uses_settable_root(tmp_path: Path) -> None:
    dmi = tmp_path / "sys/class/dmi/id"
    dmi.mkdir(parents=True)
    (dmi / "product_serial").write_text("PF2ABCDE\n")
    (dmi / "product_uuid").write_text("4C4C4544-0031-3510-8047-B2C04F4A3732\n")
    (dmi / "sys_vendor").write_text("LENOVO\n")
    (dmi / "product_name").write_text("To be filled by O.E.M.\n")
    identity = read_linux_identity(tmp_path)
    assert identity.serial == "PF2ABCDE"
    assert identity.product_uuid == "4c4c4544-0031-3510-8047-b2c04f4a3732"
    assert identity.manufacturer == "LENOVO"
    assert identity.product_name is None  # a placeholder, not a name


def test_windows_and_macos_outputs_parse() -> None:
    assert parse_wmic_value("SerialNumber  \r\n5CG1234XYZ  \r\n\r\n") == "5CG1234XYZ"
    assert parse_key_values("serial=ABC\r\nuuid=1234\r\n") == {
        "serial": "ABC",
        "uuid": "1234",
    }
    ioreg = (
        '    "IOPlatformSerialNumber" = "C02XK0AAJGH5"\n'
        '    "IOPlatformUUID" = "564D8F2A-1111-2222-3333-444455556666"\n'
    )
    identity = parse_ioreg(ioreg)
    assert identity.serial == "C02XK0AAJGH5"
    assert identity.product_uuid == "564d8f2a-1111-2222-3333-444455556666"
    assert clean_identifier("Default string") is None
