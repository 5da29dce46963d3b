"""The agent's TOML configuration, validated once at start.

A problem is reported with the file, the line and the dotted key, found by
scanning the TOML text for the key the validator complained about::

    /etc/edufleet/agent.toml:12: probes.host.interval_s: Input should be
    greater than or equal to 1 (got 0)

Each probe's options live beside the probe (``probes/<name>.py``); this module
only knows the sections of the agent itself.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edufleet_agent.errors import ConfigError
from edufleet_agent.probes.base import AnySpec, ProbeOptions
from edufleet_protocol.topics import DEVICE_ID_PATTERN

if sys.platform == "win32":
    _DATA = Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "edufleet"
    DEFAULT_CONFIG = _DATA / "agent.toml"
    DEFAULT_STATE_DIR = _DATA
else:
    DEFAULT_CONFIG = Path("/etc/edufleet/agent.toml")
    DEFAULT_STATE_DIR = Path("/var/lib/edufleet")
DEFAULT_CREDENTIALS = DEFAULT_STATE_DIR / "agent.json"

Seconds = Annotated[float, Field(gt=0, le=86400 * 7)]


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, frozen=True, defer_build=True
    )


class AgentSection(_Section):
    device_id: Annotated[str, Field(pattern=DEVICE_ID_PATTERN)] | None = None
    credentials_file: Path = DEFAULT_CREDENTIALS
    state_dir: Path = DEFAULT_STATE_DIR
    queue_quota_mb: Annotated[float, Field(ge=0.01, le=100_000)] = 64.0
    interval_s: Annotated[float, Field(ge=0.1, le=86400)] = 60.0
    inventory_interval_s: Annotated[float, Field(ge=10, le=86400 * 7)] = 3600.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    sys_root: Path = Path("/")


class MqttSection(_Section):
    url: Annotated[str, Field(pattern=r"^mqtts?://[^\s/]+(:\d+)?/?$")] | None = None
    ca_file: Path | None = None
    username: str | None = None
    password: str | None = None
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 60
    will_delay_s: Annotated[int, Field(ge=0, le=3600)] = 60
    session_expiry_s: Annotated[int, Field(ge=0, le=2**32 - 1)] = 86400
    backoff_initial_s: Seconds = 1.0
    backoff_cap_s: Seconds = 300.0
    telemetry_batch: Annotated[int, Field(ge=1, le=500)] = 100
    inflight: Annotated[int, Field(ge=1, le=100)] = 20

    @field_validator("backoff_cap_s")
    @classmethod
    def _cap_not_below_initial(cls, value: float, info: Any) -> float:
        initial = info.data.get("backoff_initial_s", 1.0)
        if value < initial:
            raise ValueError(f"must be at least backoff_initial_s ({initial})")
        return value


class RuleOverride(_Section):
    """Changes to one shipped rule; unset fields keep the shipped value."""

    enabled: bool | None = None
    open: float | None = None
    clear: float | None = None
    for_s: Annotated[float, Field(ge=0, le=86400 * 7)] | None = None
    for_count: Annotated[int, Field(ge=1, le=10_000)] | None = None
    clear_for_s: Annotated[float, Field(ge=0, le=86400 * 7)] | None = None
    clear_count: Annotated[int, Field(ge=1, le=10_000)] | None = None
    severity: Literal["critical", "major", "minor", "warning"] | None = None


class AgentConfig(_Section):
    agent: AgentSection = AgentSection()
    mqtt: MqttSection = MqttSection()
    rules: dict[
        Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{1,63}$")], RuleOverride
    ] = {}
    probes: dict[str, dict[str, Any]] = {}


class Config:
    """The validated configuration: the agent's sections plus each probe's options."""

    def __init__(
        self,
        sections: AgentConfig,
        probes: Mapping[str, ProbeOptions],
        path: Path | None = None,
    ) -> None:
        self.agent = sections.agent
        self.mqtt = sections.mqtt
        self.rules = sections.rules
        self.probes = dict(probes)
        self.path = path

    def enabled_probes(
        self, specs: Mapping[str, AnySpec]
    ) -> list[tuple[AnySpec, ProbeOptions]]:
        chosen = []
        for name, spec in specs.items():
            options = self.probes.get(name)
            if options is None:
                continue
            enabled = (
                spec.default_enabled if options.enabled is None else options.enabled
            )
            if enabled:
                chosen.append((spec, options))
        return chosen

    def interval_of(self, options: ProbeOptions) -> float:
        return options.interval_s or self.agent.interval_s


def load_config(
    path: Path | None,
    specs: Mapping[str, AnySpec],
    *,
    text: str | None = None,
    rule_codes: Collection[str] = (),
) -> Config:
    """Read and validate the config file; a missing default file means defaults.

    Raises ConfigError naming the file, the line and the key.
    """
    shown = str(path) if path else "<config>"
    if text is None:
        text = _read(path)

    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _decode_error_line(str(exc))
        raise ConfigError(
            f"not valid TOML: {exc}; fix the syntax", path=shown, line=line
        ) from exc

    problems: list[tuple[tuple[str | int, ...], str]] = []
    sections: AgentConfig | None = None
    try:
        sections = AgentConfig.model_validate(document)
    except ValidationError as exc:
        problems.extend(_problems(exc, ()))

    raw_rules = document.get("rules", {})
    if rule_codes and isinstance(raw_rules, dict):
        for code in raw_rules:
            if code not in rule_codes:
                problems.append(
                    (
                        ("rules", code),
                        f"unknown rule; expected one of {sorted(rule_codes)}",
                    )
                )

    probes: dict[str, ProbeOptions] = {}
    raw_probes = document.get("probes", {})
    if isinstance(raw_probes, dict):
        for name in raw_probes:
            if name not in specs:
                problems.append(
                    (
                        ("probes", name),
                        f"unknown probe; expected one of {sorted(specs)}",
                    )
                )
        for name, spec in specs.items():
            if name not in raw_probes and not spec.default_enabled:
                continue  # off and unconfigured: nothing to validate
            raw = raw_probes.get(name, {})
            try:
                probes[name] = spec.options.model_validate(raw)
            except ValidationError as exc:
                problems.extend(_problems(exc, ("probes", name)))

    if problems or sections is None:
        raise _config_error(text, shown, problems)
    return Config(sections, probes, path)


def _read(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        if path == DEFAULT_CONFIG:
            return ""
        raise ConfigError(
            "config file not found; pass an existing file with --config",
            path=str(path),
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=str(path)) from exc


def _decode_error_line(message: str) -> int | None:
    found = re.search(r"line (\d+)", message)
    return int(found.group(1)) if found else None


def _problems(
    exc: ValidationError, prefix: tuple[str | int, ...]
) -> list[tuple[tuple[str | int, ...], str]]:
    out = []
    for error in exc.errors():
        loc = prefix + tuple(
            part for part in error["loc"] if isinstance(part, str | int)
        )
        if error["type"] == "extra_forbidden":
            message = "unknown key; check its spelling and section"
        elif error["type"] == "missing":
            message = "required key is missing; add it"
        else:
            message = f"{error['msg']} (got {error.get('input')!r})"
        out.append((loc, message))
    return out


def _config_error(
    text: str, shown: str, problems: Sequence[tuple[tuple[str | int, ...], str]]
) -> ConfigError:
    lines = []
    first_key, first_line = "", None
    for index, (loc, message) in enumerate(problems):
        key = ".".join(str(part) for part in loc)
        line = find_line(text, loc)
        if index == 0:
            first_key, first_line = key, line
        where = f"{shown}:{line}" if line else shown
        lines.append(f"{where}: {key}: {message}")
    error = ConfigError("; ".join(lines), key=first_key, line=first_line)
    error.args = ("\n".join(lines),)
    return error


# --- finding a key's line ---------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(
    r"^\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*=\s*(.*)$"
)


def _split_key(dotted: str) -> list[str]:
    parts = re.findall(r"\"([^\"]*)\"|'([^']*)'|([A-Za-z0-9_-]+)", dotted)
    return [double or single or bare for double, single, bare in parts]


def find_line(text: str, loc: Sequence[str | int]) -> int | None:
    """The 1-based line that best matches the key path ``loc``.

    The exact key's line when present; otherwise the line of its nearest
    parent (a table header or the key holding an inline table or array).
    """
    target = tuple(str(part) for part in loc)
    found: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    array_counts: dict[tuple[str, ...], int] = {}
    open_array: tuple[str, ...] | None = None
    depth = 0
    item = -1

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if open_array is not None:
            if line.startswith("{"):
                item += 1
                found.setdefault((*open_array, str(item)), number)
                _inline_keys(line, (*open_array, str(item)), number, found)
            depth += _bracket_balance(line)
            if depth <= 0:
                open_array = None
            continue
        if not line or line.startswith("#"):
            continue
        header = _HEADER.match(line)
        if header and not _KEY.match(line):
            path = tuple(_split_key(header.group(2)))
            if header.group(1) == "[[":
                index = array_counts.get(path, 0)
                array_counts[path] = index + 1
                path = (*path, str(index))
                found.setdefault(path[:-1], number)
            table = path
            found.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            path = (*table, *_split_key(key.group(1)))
            found.setdefault(path, number)
            value = key.group(2).strip()
            if value.startswith("{"):
                _inline_keys(value, path, number, found)
            if value.startswith("["):
                balance = _bracket_balance(value)
                item = -1
                for piece in re.findall(r"\{[^{}]*\}", value):
                    item += 1
                    found.setdefault((*path, str(item)), number)
                    _inline_keys(piece, (*path, str(item)), number, found)
                if balance > 0:
                    open_array, depth = path, balance

    for size in range(len(target), 0, -1):
        if target[:size] in found:
            return found[target[:size]]
    return None


def _inline_keys(
    value: str, path: tuple[str, ...], number: int, found: dict[tuple[str, ...], int]
) -> None:
    for name in re.findall(r"[{,]\s*([A-Za-z0-9_-]+)\s*=", value):
        found.setdefault((*path, name), number)


def _bracket_balance(value: str) -> int:
    without_strings = re.sub(r"\"(?:[^\"\\]|\\.)*\"|'[^']*'", "", value)
    without_strings = without_strings.split("#")[0]
    return without_strings.count("[") - without_strings.count("]")
