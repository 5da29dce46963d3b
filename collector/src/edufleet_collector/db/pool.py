"""The shared psycopg connection pool."""

from __future__ import annotations

import logging

from psycopg import Connection
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from ..settings import Settings

log = logging.getLogger("edufleet.collector.db")


def _configure(conn: Connection[TupleRow]) -> None:
    conn.execute("SET TIME ZONE 'UTC'")
    conn.commit()


def open_pool(
    settings: Settings, *, name: str = "edufleet", **kwargs: object
) -> ConnectionPool:
    """Open a pool on the settings' database; the caller closes it."""
    pool: ConnectionPool = ConnectionPool(
        settings.database_url,
        min_size=int(kwargs.pop("min_size", settings.db_pool_min_size)),  # type: ignore[call-overload]
        max_size=int(kwargs.pop("max_size", settings.db_pool_max_size)),  # type: ignore[call-overload]
        name=name,
        configure=_configure,
        open=False,
        **kwargs,  # type: ignore[arg-type]
    )
    pool.open(wait=True, timeout=30)
    log.info(
        "database pool %r open (%d-%d connections)", name, pool.min_size, pool.max_size
    )
    return pool
