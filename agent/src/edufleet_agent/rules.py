"""Rules turn readings into faults.

A rule watches every metric whose base name matches its pattern; each label
(``host.disk_pct[/]``, ``host.disk_pct[/home]``) is tracked on its own. A
rule opens when readings breach ``open`` for ``for_s`` seconds and at least
``for_count`` readings, and clears when readings reach the other side of
``clear`` for ``clear_for_s`` seconds and ``clear_count`` readings. Readings
between the two thresholds change nothing, so a reading that flaps around one
threshold opens one fault and keeps it open, instead of one fault per flap.

The state of every tracked instance is a small JSON document that the caller
persists (with the events, in one transaction), so a restart neither re-opens
an open fault nor forgets to clear one.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from edufleet_agent.config import RuleOverride
from edufleet_agent.probes.base import Metrics, Scalar
from edufleet_protocol.models import Severity
from edufleet_protocol.topics import is_device_id

log = logging.getLogger("edufleet.agent.rules")

_KEY = re.compile(r"^(?P<base>[^\[]+)(?:\[(?P<label>.*)\])?$")


@dataclass(frozen=True)
class Rule:
    """A threshold with a duration and a separate clear threshold."""

    code: str
    metric: str  # glob on the metric's base name, e.g. "pjlink.erst_*"
    direction: Literal["above", "below"]
    open: float
    clear: float
    severity: Severity
    message: str  # str.format fields: subject, label, part, value, open, clear
    for_s: float = 0.0
    for_count: int = 1
    clear_for_s: float = 0.0
    clear_count: int = 1
    subject_from_label: bool = False
    enabled: bool = True

    def breaches(self, value: float) -> bool:
        return value > self.open if self.direction == "above" else value < self.open

    def recovered(self, value: float) -> bool:
        return value < self.clear if self.direction == "above" else value > self.clear


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(
        code="DISK_FULL",
        metric="host.disk_pct",
        direction="above",
        open=95.0,
        clear=90.0,
        for_s=300.0,
        severity="major",
        message="disk {label} is {value:.0f}% full (opens above {open:g}%, "
        "clears below {clear:g}%)",
    ),
    Rule(
        code="PROJECTOR_FAULT",
        metric="pjlink.erst_*",
        direction="above",
        open=1.5,
        clear=0.5,
        severity="major",
        subject_from_label=True,
        message="projector {subject} reports a {part} error",
    ),
    Rule(
        code="LAMP_END_OF_LIFE",
        metric="pjlink.lamp_life_pct",
        direction="above",
        open=90.0,
        clear=80.0,
        severity="warning",
        subject_from_label=True,
        message="projector {subject} lamp has used {value:.0f}% of its rated "
        "life; plan its replacement",
    ),
    Rule(
        code="PERIPHERAL_UNREACHABLE",
        metric="peripheral.up",
        direction="below",
        open=0.5,
        clear=0.5,
        for_count=3,
        severity="major",
        subject_from_label=True,
        message="peripheral {subject} did not answer 3 checks in a row",
    ),
    Rule(
        code="PROCESS_NOT_RUNNING",
        metric="process.count",
        direction="below",
        open=0.5,
        clear=0.5,
        for_count=2,
        severity="minor",
        message="process {label} is not running",
    ),
    Rule(
        code="STATUS_PAGE_FAILED",
        metric="http.ok",
        direction="below",
        open=0.5,
        clear=0.5,
        for_count=3,
        severity="minor",
        subject_from_label=True,
        message="status page of {subject} failed 3 checks in a row",
    ),
)

KNOWN_CODES = frozenset(rule.code for rule in DEFAULT_RULES)


def build_rules(
    overrides: Mapping[str, RuleOverride], base: Iterable[Rule] = DEFAULT_RULES
) -> list[Rule]:
    """The shipped rules with the config's changes applied."""
    rules = []
    for shipped in base:
        change = overrides.get(shipped.code)
        values = {}
        if change is not None:
            values = {k: v for k, v in change.model_dump().items() if v is not None}
        rules.append(replace(shipped, **values))
    return rules


@dataclass
class Instance:
    """What a rule remembers about one metric key of one subject."""

    open: bool = False
    # The run of readings on the way to the other state (opening when
    # closed, clearing when open); reset by a reading on the way back.
    streak_since: float | None = None
    streak_count: int = 0
    opened_at: float | None = None

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> Instance:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Transition:
    """A fault that opened or cleared."""

    action: Literal["opened", "cleared"]
    rule: Rule
    subject: str
    key: str  # instance key, also the persistence key
    metric: str
    message: str
    evidence: dict[str, Scalar] = field(default_factory=dict)


def split_metric(name: str) -> tuple[str, str | None]:
    found = _KEY.match(name)
    if found is None:
        return name, None
    return found.group("base"), found.group("label")


class RuleEngine:
    """Evaluates readings against the rules, one instance per metric key."""

    def __init__(
        self,
        rules: Iterable[Rule],
        device_id: str,
        states: Mapping[str, str] | None = None,
    ) -> None:
        self.rules = [rule for rule in rules if rule.enabled]
        self.device_id = device_id
        self.instances: dict[str, Instance] = {}
        for key, text in (states or {}).items():
            try:
                self.instances[key] = Instance.loads(text)
            except (ValueError, TypeError) as exc:
                log.warning("dropped unreadable fault state %r: %s", key, exc)

    def open_faults(self) -> list[str]:
        return sorted(key for key, inst in self.instances.items() if inst.open)

    def evaluate(
        self, metrics: Metrics, now: float
    ) -> tuple[list[Transition], dict[str, str]]:
        """Feed one cycle's readings; return transitions and changed states."""
        transitions: list[Transition] = []
        changed: dict[str, str] = {}
        for name, raw in metrics.items():
            if isinstance(raw, str):
                continue
            value = float(raw)
            base, label = split_metric(name)
            for rule in self.rules:
                if not fnmatch.fnmatchcase(base, rule.metric):
                    continue
                subject = self._subject(rule, label)
                key = f"{rule.code}|{subject}|{name}"
                instance = self.instances.setdefault(key, Instance())
                before = instance.dumps()
                transition = self._step(rule, instance, value, now)
                if transition is not None:
                    transitions.append(
                        self._describe(
                            transition,
                            rule,
                            subject,
                            key,
                            name,
                            label=label,
                            value=value,
                        )
                    )
                after = instance.dumps()
                if after != before:
                    changed[key] = after
        return transitions, changed

    def _subject(self, rule: Rule, label: str | None) -> str:
        if rule.subject_from_label and label and is_device_id(label):
            return label
        return self.device_id

    def _step(
        self, rule: Rule, inst: Instance, value: float, now: float
    ) -> Literal["opened", "cleared"] | None:
        if inst.open:
            toward, back = rule.recovered(value), rule.breaches(value)
            need_s, need_count = rule.clear_for_s, rule.clear_count
        else:
            toward, back = rule.breaches(value), rule.recovered(value)
            need_s, need_count = rule.for_s, rule.for_count
        if back:
            inst.streak_since, inst.streak_count = None, 0
            return None
        if not toward:
            return None  # between the two thresholds: nothing changes

        if inst.streak_since is None:
            inst.streak_since = now
        inst.streak_count += 1
        if inst.streak_count < need_count or now - inst.streak_since < need_s:
            return None

        inst.open = not inst.open
        inst.opened_at = now if inst.open else None
        inst.streak_since, inst.streak_count = None, 0
        return "opened" if inst.open else "cleared"

    def _describe(
        self,
        action: Literal["opened", "cleared"],
        rule: Rule,
        subject: str,
        key: str,
        name: str,
        *,
        label: str | None,
        value: float,
    ) -> Transition:
        base = split_metric(name)[0]
        part = base[len(rule.metric) - 1 :] if rule.metric.endswith("*") else ""
        fields = {
            "subject": subject,
            "label": label or "",
            "part": part,
            "value": value,
            "open": rule.open,
            "clear": rule.clear,
        }
        try:
            message = rule.message.format(**fields)
        except (KeyError, ValueError, IndexError):
            message = f"{rule.code} on {subject} ({name} = {value:g})"
        if action == "cleared":
            message = f"cleared: {message}"
        log.info("fault %s %s on %r: %s", rule.code, action, subject, message)
        return Transition(
            action=action,
            rule=rule,
            subject=subject,
            key=key,
            metric=name,
            message=message[:2000],
            evidence={name: value},
        )
