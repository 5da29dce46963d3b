"""Hardware and OS inventory, and the hardware serial number on each OS.

Linux reads DMI from sysfs under a settable root (so tests use a fixture
tree); Windows asks PowerShell's ``Get-CimInstance`` (falling back to
``wmic``); macOS asks ``ioreg``. Each reader is split into running the command
and parsing its text.
"""

from __future__ import annotations

import logging
import platform
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psutil

from edufleet_agent.probes.host import mounted_disks
from edufleet_protocol.models import Disk, Fingerprint, Inventory, OsInfo

log = logging.getLogger("edufleet.agent.inventory")

# Values firmware vendors leave in place of a real serial or UUID.
PLACEHOLDERS: Final = frozenset(
    {
        "",
        "0",
        "none",
        "n/a",
        "na",
        "default string",
        "to be filled by o.e.m.",
        "system serial number",
        "not specified",
        "not applicable",
        "0123456789",
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "03000200-0400-0500-0006-000700080009",
    }
)
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@dataclass(frozen=True)
class Identity:
    """What the firmware says about the machine."""

    serial: str | None = None
    product_uuid: str | None = None
    manufacturer: str | None = None
    product_name: str | None = None


def clean_identifier(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if value.lower() in PLACEHOLDERS or not value.isprintable():
        return None
    return value[:200]


# --- Linux ---------------------------------------------------------------------


def read_linux_identity(root: Path = Path("/")) -> Identity:
    """DMI fields from ``<root>/sys/class/dmi/id``; unreadable ones are None."""
    base = root / "sys/class/dmi/id"

    def field(name: str) -> str | None:
        try:
            return clean_identifier((base / name).read_text(errors="replace"))
        except OSError:
            return None

    uuid = field("product_uuid")
    return Identity(
        serial=field("product_serial") or field("board_serial"),
        product_uuid=uuid.lower() if uuid else None,
        manufacturer=field("sys_vendor"),
        product_name=field("product_name"),
    )


# --- Windows -------------------------------------------------------------------

_POWERSHELL_QUERY: Final = (
    "$b = Get-CimInstance Win32_BIOS; "
    "$p = Get-CimInstance Win32_ComputerSystemProduct; "
    "'serial=' + $b.SerialNumber; 'uuid=' + $p.UUID; "
    "'vendor=' + $p.Vendor; 'product=' + $p.Name"
)


def parse_key_values(text: str) -> dict[str, str]:
    """``key=value`` lines, as printed by the PowerShell query."""
    found = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            found[key.strip().lower()] = value.strip()
    return found


def parse_wmic_value(text: str) -> str | None:
    """The value under the header of ``wmic bios get serialnumber``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[1] if len(lines) >= 2 else None


def read_windows_identity() -> Identity:
    powershell = shutil.which("powershell") or shutil.which("pwsh")
    if powershell:
        output = _run(
            [powershell, "-NoProfile", "-NonInteractive", "-Command", _POWERSHELL_QUERY]
        )
        if output:
            values = parse_key_values(output)
            uuid = clean_identifier(values.get("uuid"))
            return Identity(
                serial=clean_identifier(values.get("serial")),
                product_uuid=uuid.lower() if uuid else None,
                manufacturer=clean_identifier(values.get("vendor")),
                product_name=clean_identifier(values.get("product")),
            )
    wmic = shutil.which("wmic")
    if wmic:
        serial = parse_wmic_value(_run([wmic, "bios", "get", "serialnumber"]) or "")
        uuid = parse_wmic_value(_run([wmic, "csproduct", "get", "uuid"]) or "")
        cleaned = clean_identifier(uuid)
        return Identity(
            serial=clean_identifier(serial),
            product_uuid=cleaned.lower() if cleaned else None,
        )
    return Identity()


# --- macOS ---------------------------------------------------------------------


def parse_ioreg(text: str) -> Identity:
    """Serial and UUID from ``ioreg -rd1 -c IOPlatformExpertDevice``."""

    def value(key: str) -> str | None:
        found = re.search(rf'"{key}"\s*=\s*"([^"]*)"', text)
        return clean_identifier(found.group(1)) if found else None

    uuid = value("IOPlatformUUID")
    return Identity(
        serial=value("IOPlatformSerialNumber"),
        product_uuid=uuid.lower() if uuid else None,
        manufacturer=value("manufacturer"),
        product_name=value("model"),
    )


def read_macos_identity() -> Identity:
    output = _run(["ioreg", "-rd1", "-c", "IOPlatformExpertDevice"])
    return parse_ioreg(output) if output else Identity()


def _run(command: list[str]) -> str | None:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("%s failed: %s", command[0], exc)
        return None
    if done.returncode != 0:
        log.debug("%s exited with %d", command[0], done.returncode)
        return None
    return done.stdout


def read_identity(root: Path = Path("/")) -> Identity:
    """The firmware identity on this OS."""
    if sys.platform.startswith("linux"):
        return read_linux_identity(root)
    if sys.platform == "win32":
        return read_windows_identity()
    if sys.platform == "darwin":
        return read_macos_identity()
    return Identity()


# --- the whole inventory ---------------------------------------------------------


def normalise_mac(value: str) -> str | None:
    mac = value.strip().lower().replace("-", ":")
    if not _MAC.fullmatch(mac) or mac == "00:00:00:00:00:00":
        return None
    return mac


def network_addresses() -> tuple[list[str], list[str]]:
    """(MACs, IPs) of the non-loopback interfaces, sorted."""
    macs: set[str] = set()
    ips: set[str] = set()
    for name, addresses in psutil.net_if_addrs().items():
        if name == "lo" or name.startswith("Loopback"):
            continue
        for address in addresses:
            if address.family == psutil.AF_LINK:
                mac = normalise_mac(address.address)
                if mac:
                    macs.add(mac)
            elif address.family in (socket.AF_INET, socket.AF_INET6):
                ip = address.address.split("%")[0]
                if not ip.startswith(("127.", "::1", "fe80:")):
                    ips.add(ip)
    return sorted(macs)[:64], sorted(ips)[:64]


def cpu_model(root: Path = Path("/")) -> str:
    if sys.platform.startswith("linux"):
        try:
            for line in (
                (root / "proc/cpuinfo").read_text(errors="replace").splitlines()
            ):
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()[:200]
        except OSError as exc:
            log.debug("cannot read the CPU model: %s", exc)
    if sys.platform == "darwin":
        output = _run(["sysctl", "-n", "machdep.cpu.brand_string"])
        if output:
            return output.strip()[:200]
    return (platform.processor() or platform.machine())[:200]


def os_info() -> OsInfo:
    distribution = ""
    if sys.platform.startswith("linux"):
        try:
            release = platform.freedesktop_os_release()
            distribution = release.get("PRETTY_NAME", release.get("NAME", ""))
        except OSError:
            distribution = ""
    return OsInfo(
        system=platform.system()[:40] or sys.platform,
        release=platform.release()[:200],
        version=platform.version()[:200],
        distribution=distribution[:200],
        arch=platform.machine()[:40],
    )


def disks() -> list[Disk]:
    found = []
    partitions = {p.mountpoint: p for p in psutil.disk_partitions(all=False)}
    for mount in mounted_disks():
        part = partitions[mount]
        try:
            total = psutil.disk_usage(mount).total
        except OSError:
            continue
        found.append(
            Disk(
                device=part.device[:200],
                mount=mount[:200],
                fstype=part.fstype[:40],
                total_bytes=total,
            )
        )
    return found[:64]


def collect_inventory(root: Path = Path("/")) -> Inventory:
    identity = read_identity(root)
    macs, ips = network_addresses()
    return Inventory(
        hostname=(socket.gethostname() or "unknown")[:253],
        cpu_model=cpu_model(root),
        cpu_cores=psutil.cpu_count(logical=False) or 0,
        cpu_threads=psutil.cpu_count(logical=True) or 0,
        ram_bytes=psutil.virtual_memory().total,
        disks=disks(),
        macs=macs,
        ips=ips,
        serial=identity.serial,
        product_uuid=identity.product_uuid,
        manufacturer=identity.manufacturer,
        product_name=identity.product_name,
        os=os_info(),
    )


def fingerprint(inventory: Inventory) -> Fingerprint:
    return Fingerprint(
        serial=inventory.serial,
        product_uuid=inventory.product_uuid,
        macs=inventory.macs,
    )


def inventory_changes(
    before: Inventory, after: Inventory
) -> list[tuple[str, object, object]]:
    """``(field, before, after)`` for the hardware fields that differ."""
    changes = []
    old, new = before.model_dump(mode="json"), after.model_dump(mode="json")
    for key in (
        "cpu_model",
        "cpu_cores",
        "cpu_threads",
        "ram_bytes",
        "disks",
        "macs",
        "serial",
        "product_uuid",
    ):
        if old.get(key) != new.get(key):
            changes.append((key, old.get(key), new.get(key)))
    return changes
