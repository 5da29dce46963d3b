"""The production docker-compose.yml, checked without a Docker engine.

Debian's docker-compose resolves it (interpolation, anchors, merges) and the
result is validated against the Compose Specification's JSON Schema, which
the same package ships.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")
ONE_SHOT = {"migrate", "broker-init", "mosquitto-init"}


@pytest.fixture(scope="module")
def resolved() -> dict:
    if shutil.which("docker-compose") is None:
        pytest.fail(
            "docker-compose is missing; `make test` installs the Debian package"
        )
    result = subprocess.run(
        ["docker-compose", "--env-file", ".env.example", "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_file_validates_against_compose_spec(resolved):
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(resolved), key=lambda e: e.path
    )
    assert [e.message for e in errors] == []


def test_every_service_pins_its_image_and_restart_policy(resolved):
    for name, service in resolved["services"].items():
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image!r}"
        expected = "no" if name in ONE_SHOT else "unless-stopped"
        assert service.get("restart") == expected, name


def test_long_running_services_have_health_checks(resolved):
    for name in ("timescaledb", "mosquitto", "api", "ingest-1", "ingest-2", "grafana"):
        assert "healthcheck" in resolved["services"][name], name


def test_collector_services_wait_for_migrations(resolved):
    for name in ("api", "ingest-1", "ingest-2", "worker", "grafana"):
        depends = resolved["services"][name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name


def test_each_ingest_keeps_a_client_id_of_its_own(resolved):
    """A stable id resumes the broker sessions when a container is re-created."""
    ids = []
    for name, service in resolved["services"].items():
        command = service.get("command") or []
        if command[:1] != ["ingest"]:
            continue
        assert "replicas" not in service.get("deploy", {}), name
        assert "--client-id" in command, name
        ids.append(command[command.index("--client-id") + 1])
    assert len(ids) >= 2
    assert len(set(ids)) == len(ids)


def _mounts(service: dict) -> list[tuple[str, str]]:
    """(source, target) of each volume, in short or long syntax."""
    found = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        found.append((source, target))
    return found


def test_state_lives_in_named_volumes(resolved):
    named = set(resolved["volumes"])
    assert {"pgdata", "mosquitto-data", "grafana-data"} <= named
    services = resolved["services"]
    assert ("pgdata", "/var/lib/postgresql/data") in _mounts(services["timescaledb"])
    assert ("mosquitto-data", "/mosquitto/data") in _mounts(services["mosquitto"])
    assert ("grafana-data", "/var/lib/grafana") in _mounts(services["grafana"])


def test_bind_mounted_configuration_exists_in_the_repository(resolved):
    for name, service in resolved["services"].items():
        for source, _ in _mounts(service):
            if not source.startswith(str(ROOT)) or source.endswith(
                ("/backups", "/tls")
            ):
                continue
            assert Path(source).exists(), f"{name} mounts missing {source}"


def test_example_env_sets_every_required_variable():
    text = (ROOT / "docker-compose.yml").read_text()
    required = {
        part.split(":?")[0]
        for part in text.replace("${", "\n").splitlines()
        if ":?" in part.split("}")[0]
    }
    example = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert required, "expected required variables in docker-compose.yml"
    assert required <= example, sorted(required - example)
