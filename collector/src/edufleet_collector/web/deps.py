"""Dependencies shared by the routes: the database connection and the caller."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from psycopg_pool import ConnectionPool

from ..accounts import (
    Principal,
    principal_for_user,
    token_digest,
    user_for_token,
)
from ..db import Conn
from ..settings import Settings

SESSION_COOKIE = "edufleet_session"


# Dependencies that do no I/O are coroutines, so FastAPI runs them on the event
# loop instead of handing each to a worker thread.


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_pool(request: Request) -> ConnectionPool:
    pool: ConnectionPool = request.app.state.pool
    return pool


def get_conn(request: Request) -> Iterator[Conn]:
    """A pooled connection for one request; committed when the handler returns."""
    pool = get_pool(request)
    with pool.connection() as conn:
        yield conn


DB_CONCURRENCY = 16
"""Requests that may hold a pooled connection at once, in each web process.

Kept below the web pool's size (``WEB_POOL_MIN_MAX``) so that the pages and
health checks that borrow a connection of their own always find one. Requests
beyond it wait on the event loop, not in a worker thread: waiting in threads
could take every thread while the requests holding connections wait for one
to finish, and the server would stall.
"""

WEB_POOL_MIN_MAX = 20

# One Depends object, so that its limit and its per-request cache are shared by
# every route and by the principal lookup. scope="function" commits and returns
# the connection when the handler returns, before the response is sent, so a
# client that follows a redirect at once sees what the request wrote.
_conn = Depends(get_conn, scope="function", max_concurrency=DB_CONCURRENCY)
ConnDep = Annotated[Conn, _conn]


TOKEN_CACHE_SECONDS = 5.0
"""How long a web process trusts an API token it has checked.

A revoked token stops working within this many seconds; in exchange most
requests skip the token's two queries. The user and their scope are still
read on every request, so a school created a moment ago is in scope at once.
"""


class TokenCache:
    """User ids by token digest, each kept ``ttl`` seconds."""

    def __init__(self, ttl: float = TOKEN_CACHE_SECONDS, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: dict[bytes, tuple[float, int]] = {}

    def user_id(self, conn: Conn, token: str) -> int | None:
        digest = token_digest(token)
        now = time.monotonic()
        found = self._entries.get(digest)
        if found is not None and found[0] > now:
            return found[1]
        user_id = user_for_token(conn, token)
        if user_id is not None:
            if len(self._entries) >= self.size:
                self._entries.clear()
            self._entries[digest] = (now + self.ttl, user_id)
        return user_id


def _tokens(request: Request) -> TokenCache:
    cache: TokenCache | None = getattr(request.app.state, "tokens", None)
    if cache is None:
        cache = request.app.state.tokens = TokenCache()
    return cache


def _principal_from_session(request: Request, conn: Conn) -> Principal | None:
    sessions = getattr(request.app.state, "sessions", None)
    cookie = request.cookies.get(SESSION_COOKIE)
    if sessions is None or not cookie:
        return None
    session = sessions.read(cookie)
    if session is None:
        return None
    user_id, issued_at = session
    return principal_for_user(conn, user_id, session_issued_at=issued_at)


def optional_principal(request: Request, conn: ConnDep) -> Principal | None:
    """The caller from a bearer token or a session cookie, or None if anonymous."""
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "Authorization header must be 'Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        user_id = _tokens(request).user_id(conn, token.strip())
        principal = None if user_id is None else principal_for_user(conn, user_id)
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "API token is unknown or revoked; "
                "create one with `edufleet tokens create`",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return principal
    return _principal_from_session(request, conn)


async def require_principal(
    principal: Annotated[Principal | None, Depends(optional_principal)],
) -> Principal:
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "authentication required: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


async def require_admin(
    principal: Annotated[Principal, Depends(require_principal)],
) -> Principal:
    if not principal.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs an admin role")
    return principal


SettingsDep = Annotated[Settings, Depends(get_settings)]
PrincipalDep = Annotated[Principal, Depends(require_principal)]
AdminDep = Annotated[Principal, Depends(require_admin)]
OptionalPrincipalDep = Annotated[Principal | None, Depends(optional_principal)]
