"""Running a unit of work again when PostgreSQL aborts it over a lock conflict.

Ingest, the worker and the web take row locks in orders that suit each of
them, so two transactions can deadlock, and PostgreSQL then aborts one. A web
request that holds its own transaction runs its write in a savepoint through
:func:`retry_on_conflict`: rolling the savepoint back releases the locks it
took, and the work runs again once the other transaction is through, instead
of the user seeing an error for something that would succeed a moment later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from psycopg import errors as pg_errors

from . import Conn

log = logging.getLogger("edufleet.collector.db")

T = TypeVar("T")

CONFLICTS: tuple[type[Exception], ...] = (
    pg_errors.DeadlockDetected,
    pg_errors.SerializationFailure,
)
ATTEMPTS = 3


def retry_on_conflict(
    conn: Conn, work: Callable[[], T], *, what: str, attempts: int = ATTEMPTS
) -> T:
    """``work()`` in a savepoint of ``conn``'s transaction, again after a conflict.

    With no transaction open, the savepoint is a transaction of its own and
    is committed. The last attempt's conflict is raised.
    """
    for attempt in range(1, attempts + 1):
        try:
            with conn.transaction():
                return work()
        except CONFLICTS as exc:
            if attempt == attempts:
                raise
            log.info(
                "%s: %s; running it again (attempt %d of %d)",
                what,
                type(exc).__name__,
                attempt + 1,
                attempts,
            )
    raise AssertionError("unreachable: the loop returns or raises")
