"""The edufleet-agent command line, run as an installer would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

AGENT = [sys.executable, "-m", "edufleet_agent.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGENT, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_check_prints_inventory_and_readings_as_json(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path}"\n\n'
        '[probes.reachability]\ngateway = ""\n\n'
        '[probes.process]\nenabled = true\nnames = ["no-such-program"]\n'
    )
    done = run("check", "--config", str(config))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["inventory"]["hostname"]
    assert report["inventory"]["ram_bytes"] > 0
    assert report["probes"]["host"]["ok"] is True
    assert "host.mem_pct" in report["probes"]["host"]["metrics"]
    assert report["probes"]["process"]["metrics"] == {
        "process.count[no-such-program]": 0
    }
    assert not list(tmp_path.glob("*.sqlite3"))  # no queue, no network


def test_run_with_bad_config_names_key_and_line(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[agent]\nlog_level = "info"\n\n[mqtt]\nwill_delay_s = -5\n')
    done = run("run", "--config", str(config))
    assert done.returncode == 2
    assert f"{config}:5: mqtt.will_delay_s" in done.stderr
    assert "greater than or equal to 0" in done.stderr


def test_run_without_enrollment_says_how_to_enroll(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path}"\ncredentials_file = "{tmp_path}/a.json"\n'
    )
    done = run("run", "--config", str(config))
    assert done.returncode == 2
    assert "edufleet-agent enroll --url URL --token TOKEN" in done.stderr
