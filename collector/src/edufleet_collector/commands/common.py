"""Helpers shared by the sub-commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from ..db import Conn
from ..logs import configure_logging
from ..settings import Settings, load_settings


def start(*, log_level: str | None = None) -> Settings:
    """Load the settings and set up logging, as every sub-command does first."""
    settings = load_settings()
    configure_logging(log_level or settings.log_level, settings.log_format)
    return settings


@contextmanager
def connect(settings: Settings) -> Iterator[Conn]:
    """One connection for a command-line job; committed on success."""
    with psycopg.connect(settings.database_url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.commit()
        yield conn
