"""The agent's TOML config: defaults, probe options, and errors naming key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from edufleet_agent.config import find_line, load_config
from edufleet_agent.errors import ConfigError
from edufleet_agent.probes import builtin_specs
from edufleet_agent.probes.pjlink import PjlinkOptions

GOOD = """\
[agent]
device_id = "pc-101"
interval_s = 30

[mqtt]
url = "mqtt://127.0.0.1:1883"
will_delay_s = 60

[rules.DISK_FULL]
open = 97

[probes.host]
interval_s = 30

[probes.pjlink]
enabled = true

[[probes.pjlink.projectors]]
device_id = "proj-101"
host = "10.0.0.5"
rated_lamp_hours = 5000
"""


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return load_config(path, builtin_specs())


def test_good_config_loads_with_probe_options_beside_probes(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD)
    assert config.agent.device_id == "pc-101"
    assert config.rules["DISK_FULL"].open == 97
    pjlink = config.probes["pjlink"]
    assert isinstance(pjlink, PjlinkOptions)
    assert pjlink.projectors[0].port == 4352
    names = [spec.name for spec, _ in config.enabled_probes(builtin_specs())]
    assert names == ["host", "reachability", "pjlink"]


def test_missing_default_file_means_defaults() -> None:
    from edufleet_agent.config import DEFAULT_CONFIG

    if DEFAULT_CONFIG.exists():
        pytest.skip("this machine has a real agent config")
    config = load_config(DEFAULT_CONFIG, builtin_specs())
    assert config.agent.interval_s == 60


def test_missing_named_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", builtin_specs())


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, '[agent]\ninterval_s = 30\nname = "unterminated\n')
    assert caught.value.line == 3
    assert "agent.toml:3" in str(caught.value)


def test_bad_value_names_key_and_line(tmp_path: Path) -> None:
    text = GOOD.replace(
        "[probes.host]\ninterval_s = 30", "[probes.host]\ninterval_s = 0"
    )
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert caught.value.key == "probes.host.interval_s"
    assert caught.value.line == 13
    assert "greater than or equal to 0.1 (got 0)" in str(caught.value)


def test_unknown_key_and_unknown_probe_are_both_reported(tmp_path: Path) -> None:
    text = GOOD + '\n[probes.weather]\ncity = "Haikou"\n'
    text = text.replace("will_delay_s = 60", "will_delay = 60")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    message = str(caught.value)
    assert "agent.toml:7: mqtt.will_delay: unknown key" in message
    assert "probes.weather: unknown probe" in message
    assert "agent.toml:23: probes.weather" in message


def test_error_inside_array_of_tables_points_at_its_line(tmp_path: Path) -> None:
    text = GOOD + '\n[[probes.pjlink.projectors]]\ndevice_id = "Bad Id"\nhost = "x"\n'
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert caught.value.key == "probes.pjlink.projectors.1.device_id"
    assert caught.value.line == 24


def test_find_line_reads_inline_tables_and_multiline_arrays() -> None:
    text = (
        "[probes.reachability]\n"
        "targets = [\n"
        '  { device_id = "proj-1", host = "a", port = 1 },\n'
        '  { device_id = "proj-2", host = "b", port = 0 },\n'
        "]\n"
        "gateway = 'auto'\n"
    )
    assert find_line(text, ("probes", "reachability", "targets", 1, "port")) == 4
    assert find_line(text, ("probes", "reachability", "gateway")) == 6
    assert find_line(text, ("probes", "reachability", "missing")) == 1


def test_override_of_unknown_rule_is_refused(tmp_path: Path) -> None:
    from edufleet_agent.rules import KNOWN_CODES

    path = tmp_path / "agent.toml"
    path.write_text("[rules.DISK_FULL]\nopen = 97\n\n[rules.DISK_FUL]\nopen = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, builtin_specs(), rule_codes=KNOWN_CODES)
    assert caught.value.key == "rules.DISK_FUL"
    assert caught.value.line == 4


def test_shipped_example_config_is_valid() -> None:
    from edufleet_agent.rules import KNOWN_CODES

    example = Path(__file__).resolve().parents[2] / "agent" / "agent.example.toml"
    config = load_config(example, builtin_specs(), rule_codes=KNOWN_CODES)
    assert config.rules["DISK_FULL"].for_s == 300
    assert config.probes["pjlink"].projectors[0].rated_lamp_hours == 5000  # type: ignore[attr-defined]
