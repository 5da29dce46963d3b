"""Fixtures shared by every test: a real PostgreSQL and a real Mosquitto.

The servers come from ``EDUFLEET_DATABASE_URL`` and ``EDUFLEET_MQTT_URL``
(``make test`` starts private ones and sets both). Each test that needs a
database gets a fresh one, copied from a template migrated once per run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest

from dbutil import create_database, drop_database

# Fixtures that start private server processes (tests/procs.py).
pytest_plugins = ["procs"]

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"


@pytest.fixture(scope="session")
def server_url() -> str:
    """URL of the PostgreSQL server's maintenance database."""
    return os.environ.get("EDUFLEET_DATABASE_URL") or DEFAULT_DATABASE_URL


@pytest.fixture(scope="session")
def mqtt_url() -> str:
    return os.environ.get("EDUFLEET_MQTT_URL") or DEFAULT_MQTT_URL


@pytest.fixture(scope="session")
def mqtt_address(mqtt_url: str) -> tuple[str, int]:
    parts = urlsplit(mqtt_url)
    return parts.hostname or "127.0.0.1", parts.port or 1883


@pytest.fixture(scope="session")
def template_database(server_url: str) -> Iterator[str]:
    """A database migrated once; tests get copies of it."""
    from edufleet_collector.db.migrate import migrate

    name = f"edufleet_tpl_{uuid.uuid4().hex[:10]}"
    url = create_database(server_url, name)
    try:
        with psycopg.connect(url) as conn:
            migrate(conn)
        yield name
    finally:
        drop_database(server_url, name)


@pytest.fixture
def database_url(server_url: str, template_database: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"edufleet_t_{uuid.uuid4().hex[:12]}"
    url = create_database(server_url, name, template=template_database)
    try:
        yield url
    finally:
        drop_database(server_url, name)


@pytest.fixture
def empty_database_url(server_url: str) -> Iterator[str]:
    """A fresh database with no schema at all."""
    name = f"edufleet_e_{uuid.uuid4().hex[:12]}"
    url = create_database(server_url, name)
    try:
        yield url
    finally:
        drop_database(server_url, name)


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(database_url) as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        yield connection


@pytest.fixture
def settings(database_url: str, mqtt_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from edufleet_collector.settings import Settings

    monkeypatch.setenv("EDUFLEET_DATABASE_URL", database_url)
    monkeypatch.setenv("EDUFLEET_MQTT_URL", mqtt_url)
    return Settings(
        database_url=database_url,
        mqtt_url=mqtt_url,
        environment="test",
        secret_key="test-secret-key-that-is-long-enough-0123456789",
    )
