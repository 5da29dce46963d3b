import subprocess
import sys

import pytest

from edufleet_collector.errors import ConfigError
from edufleet_collector.settings import load_settings


def test_missing_database_url_names_the_variable(monkeypatch):
    monkeypatch.delenv("EDUFLEET_DATABASE_URL", raising=False)
    with pytest.raises(
        ConfigError, match="EDUFLEET_DATABASE_URL: is required but not set"
    ):
        load_settings()


def test_malformed_urls_name_variable_and_expected_form(monkeypatch):
    monkeypatch.setenv("EDUFLEET_DATABASE_URL", "mysql://localhost/x")
    monkeypatch.setenv("EDUFLEET_MQTT_URL", "tcp://broker")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "EDUFLEET_DATABASE_URL: must be a postgresql:// URL" in message
    assert "EDUFLEET_MQTT_URL: must be an mqtt:// or mqtts:// URL" in message


def test_non_numeric_retention_is_reported(monkeypatch):
    monkeypatch.setenv("EDUFLEET_DATABASE_URL", "postgresql://localhost/x")
    monkeypatch.setenv("EDUFLEET_TELEMETRY_RETENTION_DAYS", "ninety")
    with pytest.raises(ConfigError, match="EDUFLEET_TELEMETRY_RETENTION_DAYS"):
        load_settings()


@pytest.mark.parametrize("key", ["", "changeme", "short-key"])
def test_production_refuses_placeholder_or_short_secret(monkeypatch, key):
    monkeypatch.setenv("EDUFLEET_DATABASE_URL", "postgresql://localhost/x")
    monkeypatch.setenv("EDUFLEET_ENVIRONMENT", "production")
    monkeypatch.setenv("EDUFLEET_SECRET_KEY", key)
    with pytest.raises(ConfigError, match="at least 32 characters in production"):
        load_settings()


def test_development_without_secret_gets_a_random_one(monkeypatch):
    monkeypatch.setenv("EDUFLEET_DATABASE_URL", "postgresql://localhost/x")
    monkeypatch.delenv("EDUFLEET_SECRET_KEY", raising=False)
    monkeypatch.setenv("EDUFLEET_ENVIRONMENT", "development")
    first = load_settings().secret_key.get_secret_value()
    second = load_settings().secret_key.get_secret_value()
    assert len(first) >= 32
    assert first != second


def test_cli_reports_bad_setting_and_exits_nonzero(monkeypatch):
    env = {"EDUFLEET_DATABASE_URL": "not-a-url", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "edufleet_collector.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "EDUFLEET_DATABASE_URL: must be a postgresql:// URL" in result.stderr
    assert "Traceback" not in result.stderr
