"""Rules: thresholds held for a duration, hysteresis, flapping, persistence."""

from __future__ import annotations

from edufleet_agent.config import RuleOverride
from edufleet_agent.rules import DEFAULT_RULES, RuleEngine, build_rules


def engine(
    states: dict[str, str] | None = None, **overrides: RuleOverride
) -> RuleEngine:
    return RuleEngine(build_rules(overrides), "pc-101", states)


def feed(rules: RuleEngine, series: list[tuple[float, dict[str, float | bool]]]):  # type: ignore[no-untyped-def]
    actions = []
    for at, metrics in series:
        transitions, _ = rules.evaluate(dict(metrics), at)
        actions.extend((at, t.rule.code, t.action, t.subject) for t in transitions)
    return actions


def test_disk_full_opens_after_five_minutes_above_95_and_clears_below_90() -> None:
    rules = engine()
    series = [(t, {"host.disk_pct[/]": 96.0}) for t in range(0, 301, 60)]
    series += [(360, {"host.disk_pct[/]": 92.0}), (420, {"host.disk_pct[/]": 89.0})]
    assert feed(rules, series) == [
        (300, "DISK_FULL", "opened", "pc-101"),
        (420, "DISK_FULL", "cleared", "pc-101"),
    ]


def test_disk_above_95_for_less_than_five_minutes_opens_nothing() -> None:
    rules = engine()
    series = [(t, {"host.disk_pct[/]": 97.0}) for t in range(0, 241, 60)]
    series.append((300, {"host.disk_pct[/]": 80.0}))
    series += [(t, {"host.disk_pct[/]": 97.0}) for t in range(360, 601, 60)]
    assert feed(rules, series) == []


def test_flapping_disk_opens_one_fault_not_one_per_flap() -> None:
    rules = engine()
    values = [96.0, 94.0] * 20  # flaps around 95, never below the clear threshold
    series = [(i * 30.0, {"host.disk_pct[/]": v}) for i, v in enumerate(values)]
    actions = feed(rules, series)
    assert [a[2] for a in actions] == ["opened"]


def test_each_mount_is_its_own_fault() -> None:
    rules = engine(DISK_FULL=RuleOverride(for_s=0))
    actions = feed(
        rules, [(0, {"host.disk_pct[/]": 99.0, "host.disk_pct[/home]": 99.0})]
    )
    assert len(actions) == 2
    assert len(rules.open_faults()) == 2


def test_projector_error_names_part_and_concerns_the_projector() -> None:
    rules = engine()
    transitions, _ = rules.evaluate(
        {"pjlink.erst_lamp[proj-101]": 2, "pjlink.erst_fan[proj-101]": 1}, 0.0
    )
    assert [(t.rule.code, t.subject) for t in transitions] == [
        ("PROJECTOR_FAULT", "proj-101")
    ]
    assert "lamp error" in transitions[0].message


def test_lamp_within_ten_percent_of_rated_life_is_a_warning() -> None:
    rules = engine()
    transitions, _ = rules.evaluate({"pjlink.lamp_life_pct[proj-101]": 91.0}, 0.0)
    assert [(t.rule.code, t.rule.severity) for t in transitions] == [
        ("LAMP_END_OF_LIFE", "warning")
    ]


def test_peripheral_unreachable_after_three_failed_checks_in_a_row() -> None:
    rules = engine()
    ups = [False, False, True, False, False, False, False, True]
    series = [(float(i), {"peripheral.up[proj-101]": up}) for i, up in enumerate(ups)]
    assert feed(rules, series) == [
        (5.0, "PERIPHERAL_UNREACHABLE", "opened", "proj-101"),
        (7.0, "PERIPHERAL_UNREACHABLE", "cleared", "proj-101"),
    ]


def test_restored_state_neither_reopens_nor_forgets_to_clear() -> None:
    first = engine(DISK_FULL=RuleOverride(for_s=0))
    _, changed = first.evaluate({"host.disk_pct[/]": 99.0}, 0.0)
    restarted = engine(changed, DISK_FULL=RuleOverride(for_s=0))
    assert feed(restarted, [(10.0, {"host.disk_pct[/]": 99.0})]) == []
    assert feed(restarted, [(20.0, {"host.disk_pct[/]": 50.0})]) == [
        (20.0, "DISK_FULL", "cleared", "pc-101")
    ]


def test_overrides_change_thresholds_and_disable_rules() -> None:
    rules = build_rules(
        {
            "DISK_FULL": RuleOverride(open=80, clear=70, severity="critical"),
            "LAMP_END_OF_LIFE": RuleOverride(enabled=False),
        }
    )
    disk = next(r for r in rules if r.code == "DISK_FULL")
    assert (disk.open, disk.clear, disk.for_s, disk.severity) == (
        80,
        70,
        300,
        "critical",
    )
    active = RuleEngine(rules, "pc-101")
    assert "LAMP_END_OF_LIFE" not in {r.code for r in active.rules}
    assert len(DEFAULT_RULES) == len(rules)
