"""Accounts, API tokens and the scope of what each user may see and change."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from psycopg import sql

from .db import Conn
from .errors import InvalidInput, NotFound

log = logging.getLogger("edufleet.collector.accounts")

Role = Literal["province_admin", "district_bureau", "school_admin", "engineer"]
ROLES: tuple[Role, ...] = (
    "province_admin",
    "district_bureau",
    "school_admin",
    "engineer",
)
TOKEN_PREFIX = "eft_"
TOKEN_USE_RESOLUTION = timedelta(minutes=1)

_hasher = PasswordHasher()


@dataclass(frozen=True)
class Principal:
    """Who is calling, and which schools they may reach (None: every school)."""

    user_id: int
    name: str
    role: Role
    region_code: str | None
    school_id: int | None
    engineer_id: int | None
    school_ids: frozenset[int] | None

    @property
    def is_admin(self) -> bool:
        return self.role in ("province_admin", "district_bureau", "school_admin")

    def allows_school(self, school_id: int) -> bool:
        return self.school_ids is None or school_id in self.school_ids

    def school_condition(
        self, column: str = "school_id"
    ) -> tuple[sql.Composable, list[object]]:
        """A SQL condition restricting ``column`` to this principal's schools."""
        if self.school_ids is None:
            return sql.SQL("true"), []
        return (
            sql.SQL("{} = ANY(%s)").format(sql.Identifier(*column.split("."))),
            [list(self.school_ids)],
        )


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise InvalidInput("password must have at least 8 characters", field="password")
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def create_user(
    conn: Conn,
    *,
    name: str,
    role: str,
    region_code: str | None = None,
    school_code: str | None = None,
    engineer_id: int | None = None,
    password: str | None = None,
    display_name: str = "",
) -> int:
    """Create a user; the role decides which of region, school or engineer is needed."""
    if role not in ROLES:
        raise InvalidInput(
            f"role {role!r} is not one of {', '.join(ROLES)}", field="role"
        )
    school_id = None
    if school_code is not None:
        row = conn.execute(
            "SELECT id FROM schools WHERE code = %s", [school_code]
        ).fetchone()
        if row is None:
            raise NotFound(f"school {school_code!r} does not exist")
        school_id = int(row[0])
    if role == "district_bureau" and region_code is None:
        raise InvalidInput("a district_bureau user needs --region CODE", field="region")
    if role == "school_admin" and school_id is None:
        raise InvalidInput("a school_admin user needs --school CODE", field="school")
    if role == "engineer" and engineer_id is None:
        raise InvalidInput("an engineer user needs --engineer ID", field="engineer")
    if region_code is not None:
        found = conn.execute(
            "SELECT 1 FROM regions WHERE code = %s", [region_code]
        ).fetchone()
        if found is None:
            raise NotFound(f"region {region_code!r} does not exist")
    row = conn.execute(
        """
        INSERT INTO users
            (name, display_name, role, region_code, school_id, engineer_id,
             password_hash)
        VALUES (%s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (name) DO UPDATE SET
            display_name = EXCLUDED.display_name, role = EXCLUDED.role,
            region_code = EXCLUDED.region_code, school_id = EXCLUDED.school_id,
            engineer_id = EXCLUDED.engineer_id,
            password_hash = COALESCE(EXCLUDED.password_hash, users.password_hash),
            -- A new password, role or scope ends the sessions of the old one.
            sessions_valid_after = CASE
                WHEN EXCLUDED.password_hash IS NOT NULL
                  OR (users.role, users.region_code, users.school_id,
                      users.engineer_id)
                     IS DISTINCT FROM (EXCLUDED.role, EXCLUDED.region_code,
                                       EXCLUDED.school_id, EXCLUDED.engineer_id)
                THEN %s ELSE users.sessions_valid_after END
        RETURNING id
        """,
        [
            name,
            display_name or name,
            role,
            region_code,
            school_id,
            engineer_id,
            hash_password(password) if password else None,
            datetime.now(UTC),
        ],
    ).fetchone()
    assert row is not None
    return int(row[0])


def create_token(conn: Conn, *, user_name: str, label: str = "") -> str:
    """Issue an API token for a user; only its digest is stored."""
    row = conn.execute("SELECT id FROM users WHERE name = %s", [user_name]).fetchone()
    if row is None:
        raise NotFound(
            f"user {user_name!r} does not exist; create it with `edufleet users add`"
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO api_tokens (user_id, name, digest) VALUES (%s, %s, %s)",
        [row[0], label or user_name, token_digest(token)],
    )
    return token


def revoke_sessions(conn: Conn, *, user_id: int | None = None, name: str = "") -> None:
    """Refuse every login session the user (by id or name) holds now, everywhere."""
    column, key = ("id", user_id) if user_id is not None else ("name", name)
    # The web's clock, which stamps the cookies, not the database's.
    row = conn.execute(
        sql.SQL(
            "UPDATE users SET sessions_valid_after = %s WHERE {} = %s RETURNING name"
        ).format(sql.Identifier(column)),
        [datetime.now(UTC), key],
    ).fetchone()
    if row is None:
        raise NotFound(f"user {name or user_id!r} does not exist")
    log.info("sessions of user %r revoked", row[0])


def principal_for_user(
    conn: Conn, user_id: int, *, session_issued_at: datetime | None = None
) -> Principal | None:
    """Load an active user and work out the schools in their scope.

    With ``session_issued_at``, the user of a login cookie issued then: None
    if the user's sessions were revoked since.
    """
    row = conn.execute(
        "SELECT id, name, role, region_code, school_id, engineer_id FROM users "
        "WHERE id = %s AND active AND (%s::timestamptz IS NULL "
        "OR sessions_valid_after < %s)",
        [user_id, session_issued_at, session_issued_at],
    ).fetchone()
    if row is None:
        return None
    uid, name, role, region_code, school_id, engineer_id = row
    school_ids: frozenset[int] | None
    if role == "province_admin":
        school_ids = None
    elif role == "district_bureau":
        school_ids = frozenset(
            int(r[0])
            for r in conn.execute(
                "SELECT id FROM schools "
                "WHERE region_code IN (SELECT region_subtree(%s))",
                [region_code],
            )
        )
    elif role == "school_admin":
        school_ids = frozenset([int(school_id)])
    else:
        school_ids = frozenset(
            int(r[0])
            for r in conn.execute(
                "SELECT school_id FROM school_engineers WHERE engineer_id = %s",
                [engineer_id],
            )
        )
    return Principal(
        user_id=int(uid),
        name=str(name),
        role=role,
        region_code=region_code,
        school_id=school_id,
        engineer_id=engineer_id,
        school_ids=school_ids,
    )


def user_for_token(conn: Conn, token: str) -> int | None:
    """The id of the user behind an API token, or None if unknown or revoked."""
    row = conn.execute(
        "SELECT id, user_id FROM api_tokens WHERE digest = %s AND revoked_at IS NULL",
        [token_digest(token)],
    ).fetchone()
    if row is None:
        return None
    # Record the use at most once a minute, and never wait for it: requests
    # sharing a token would otherwise queue on the row's lock.
    conn.execute(
        """
        UPDATE api_tokens SET last_used_at = now()
        WHERE id = (
            SELECT id FROM api_tokens
            WHERE id = %s AND (last_used_at IS NULL OR last_used_at < now() - %s)
            FOR UPDATE SKIP LOCKED
        )
        """,
        [row[0], TOKEN_USE_RESOLUTION],
    )
    return int(row[1])
