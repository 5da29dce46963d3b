"""The README documents what the code does: its settings and its commands."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_settings_table_is_current():
    sys.path.insert(0, str(ROOT / "scripts"))
    import settings_table

    text = (ROOT / "README.md").read_text()
    stale = "README's settings table is stale; run scripts/settings_table.py --write"
    assert settings_table.replaced(text) == text, stale


def test_readme_lists_every_cli_command():
    from edufleet_collector.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    text = (ROOT / "README.md").read_text()
    missing = [name for name in sub.choices if f"`edufleet {name}" not in text]
    assert missing == []


def test_readme_gives_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    dry_run = subprocess.run(
        ["make", "-n", "test"], cwd=ROOT, capture_output=True, check=False
    )
    assert dry_run.returncode == 0
