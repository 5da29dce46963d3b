"""Enrollment: school tokens, and their exchange for a device and its broker login.

A school's administrator issues a token (``edufleet tokens enroll`` or
``POST /api/v1/enrollment-tokens``) and the installer gives it to
``edufleet-agent enroll`` on each PC. :func:`enroll` then binds the PC to the
token's school, a room and an asset record, creates or refreshes the device's
broker identity with a new password, and counts one use of the token.

The same hardware enrolling again (matched by DMI product UUID, serial number
or a MAC address) keeps its device id. Retiring a device calls
:func:`revoke_device_identity`, which deletes its broker login.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from edufleet_protocol import topics
from edufleet_protocol.models import EnrollRequest, EnrollResponse, Fingerprint

from .accounts import token_digest
from .broker.dynsec import DynsecClient
from .broker.identities import provision_device, revoke_device, sync_device_role
from .db import Conn
from .errors import Conflict, EdufleetError, InvalidInput, NotFound

log = logging.getLogger("edufleet.collector.enrollment")

TOKEN_PREFIX = "efe_"
DEFAULT_USES = 50
DEFAULT_DAYS = 14
MAX_DAYS = 365
MAX_USES = 100_000

RefusalReason = Literal["unknown", "revoked", "expired", "exhausted"]

# Values that firmware puts where a serial number or UUID should be; they
# identify nothing and would merge unrelated PCs into one device.
_JUNK_SERIALS = {
    "",
    "0",
    "none",
    "null",
    "n/a",
    "na",
    "oem",
    "default string",
    "to be filled by o.e.m.",
    "to be filled by oem",
    "system serial number",
    "chassis serial number",
    "not specified",
    "not applicable",
    "not available",
    "123456789",
    "0123456789",
    "unknown",
}
_JUNK_UUIDS = {
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "03000200-0400-0500-0006-000700080009",
}


class TokenRefused(EdufleetError):
    """An enrollment token is unknown, revoked, expired or used up."""

    def __init__(self, message: str, *, reason: RefusalReason) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class EnrollmentToken:
    id: int
    school_code: str
    label: str
    max_uses: int
    uses: int
    expires_at: datetime
    created_at: datetime
    revoked_at: datetime | None

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= datetime.now(UTC):
            return "expired"
        if self.uses >= self.max_uses:
            return "exhausted"
        return "active"


_TOKEN_SELECT = (
    "SELECT t.id, s.code, t.label, t.max_uses, t.uses, t.expires_at, "
    "t.created_at, t.revoked_at FROM enrollment_tokens t "
    "JOIN schools s ON s.id = t.school_id"
)


def _token(row: tuple[object, ...]) -> EnrollmentToken:
    return EnrollmentToken(*row)  # type: ignore[arg-type]


def _school(conn: Conn, school_code: str) -> int:
    row = conn.execute(
        "SELECT id FROM schools WHERE code = %s", [school_code]
    ).fetchone()
    if row is None:
        raise NotFound(f"school {school_code!r} does not exist; check the school code")
    return int(row[0])


# --- tokens ----------------------------------------------------------------------


def create_enrollment_token(
    conn: Conn,
    *,
    school_code: str,
    max_uses: int = DEFAULT_USES,
    days: float = DEFAULT_DAYS,
    label: str = "",
    created_by: int | None = None,
) -> tuple[str, EnrollmentToken]:
    """Issue a token for one school; return it (shown once) and its record."""
    if not 1 <= max_uses <= MAX_USES:
        raise InvalidInput(
            f"max_uses {max_uses} is outside 1-{MAX_USES}; one token per room or "
            "per installation day is usual",
            field="max_uses",
        )
    if not 0 < days <= MAX_DAYS:
        raise InvalidInput(
            f"days {days:g} is outside (0, {MAX_DAYS}]; issue a new token later "
            "rather than one that lives for years",
            field="days",
        )
    if len(label) > 200:
        raise InvalidInput("label has more than 200 characters", field="label")
    school_id = _school(conn, school_code)

    token = TOKEN_PREFIX + secrets.token_urlsafe(24)
    row = conn.execute(
        "INSERT INTO enrollment_tokens "
        "(school_id, digest, label, max_uses, expires_at, created_by) "
        "VALUES (%s, %s, %s, %s, now() + %s, %s) RETURNING id",
        [
            school_id,
            token_digest(token),
            label,
            max_uses,
            timedelta(days=days),
            created_by,
        ],
    ).fetchone()
    if row is None:
        raise EdufleetError("the database returned no id for the new token")
    log.info("issued enrollment token %d for school %r", row[0], school_code)
    return token, get_enrollment_token(conn, int(row[0]))


def get_enrollment_token(
    conn: Conn, token_id: int, school_ids: frozenset[int] | None = None
) -> EnrollmentToken:
    row = conn.execute(
        _TOKEN_SELECT + " WHERE t.id = %s AND (%s::bigint[] IS NULL OR "
        "t.school_id = ANY(%s::bigint[]))",
        [token_id, _ids(school_ids), _ids(school_ids)],
    ).fetchone()
    if row is None:
        raise NotFound(f"enrollment token {token_id} does not exist")
    return _token(row)


def list_enrollment_tokens(
    conn: Conn,
    school_ids: frozenset[int] | None = None,
    *,
    school_code: str | None = None,
) -> list[EnrollmentToken]:
    """Tokens of the schools in scope (None: every school), newest first."""
    rows = conn.execute(
        _TOKEN_SELECT + " WHERE (%s::bigint[] IS NULL OR t.school_id = ANY(%s)) "
        "AND (%s::text IS NULL OR s.code = %s) ORDER BY t.id DESC LIMIT 1000",
        [_ids(school_ids), _ids(school_ids), school_code, school_code],
    ).fetchall()
    return [_token(row) for row in rows]


def revoke_enrollment_token(
    conn: Conn, token_id: int, school_ids: frozenset[int] | None = None
) -> EnrollmentToken:
    """Stop a token from enrolling more PCs; PCs it already enrolled keep working."""
    token = get_enrollment_token(conn, token_id, school_ids)
    conn.execute(
        "UPDATE enrollment_tokens SET revoked_at = coalesce(revoked_at, now()) "
        "WHERE id = %s",
        [token.id],
    )
    return get_enrollment_token(conn, token_id)


def _ids(school_ids: frozenset[int] | None) -> list[int] | None:
    return None if school_ids is None else sorted(school_ids)


# --- enrollment ----------------------------------------------------------------


@dataclass(frozen=True)
class _Hardware:
    product_uuid: str | None
    serial: str | None
    macs: list[str]


def _hardware(fingerprint: Fingerprint) -> _Hardware:
    uuid = (fingerprint.product_uuid or "").strip().lower()
    serial = (fingerprint.serial or "").strip()
    macs = sorted(
        {
            mac
            for mac in fingerprint.macs
            # Locally administered addresses belong to virtual adapters
            # (bridges, VPNs, containers), which many PCs share.
            if mac != "00:00:00:00:00:00" and not int(mac[:2], 16) & 0x02
        }
    )
    hardware = _Hardware(
        product_uuid=None if not uuid or uuid in _JUNK_UUIDS else uuid,
        serial=None if serial.lower() in _JUNK_SERIALS else serial,
        macs=macs,
    )
    if hardware.product_uuid is None and hardware.serial is None and not macs:
        raise InvalidInput(
            "fingerprint has no usable serial number, product UUID or hardware MAC "
            "address, so a re-enrollment could not keep the device id; run the "
            "agent with permission to read the DMI tables",
            field="fingerprint",
        )
    return hardware


def _lock_token(conn: Conn, token: str) -> tuple[int, int, str]:
    """Lock the token's row and check it; return (token id, school id, code)."""
    row = conn.execute(
        "SELECT t.id, t.school_id, s.code, t.max_uses, t.uses, t.expires_at, "
        "t.revoked_at, now() FROM enrollment_tokens t "
        "JOIN schools s ON s.id = t.school_id WHERE t.digest = %s FOR UPDATE OF t",
        [token_digest(token)],
    ).fetchone()
    if row is None:
        raise TokenRefused(
            "enrollment token is not known: check that it was copied whole, or ask "
            "the school's administrator for a new one",
            reason="unknown",
        )
    token_id, school_id, code, max_uses, uses, expires_at, revoked_at, now = row
    if revoked_at is not None:
        raise TokenRefused(
            f"enrollment token for school {code!r} was revoked at "
            f"{revoked_at:%Y-%m-%d %H:%M} UTC; ask for a new one",
            reason="revoked",
        )
    if expires_at <= now:
        raise TokenRefused(
            f"enrollment token for school {code!r} expired at "
            f"{expires_at:%Y-%m-%d %H:%M} UTC; ask for a new one",
            reason="expired",
        )
    if uses >= max_uses:
        raise TokenRefused(
            f"enrollment token for school {code!r} has been used {uses} of "
            f"{max_uses} times; ask for a new one with more uses",
            reason="exhausted",
        )
    return int(token_id), int(school_id), str(code)


def _room(
    conn: Conn, school_id: int, name: str | None
) -> tuple[int | None, str | None]:
    name = (name or "").strip()
    if not name:
        return None, None
    conn.execute(
        "INSERT INTO rooms (school_id, name) VALUES (%s, %s) "
        "ON CONFLICT (school_id, name) DO NOTHING",
        [school_id, name],
    )
    row = conn.execute(
        "SELECT id FROM rooms WHERE school_id = %s AND name = %s", [school_id, name]
    ).fetchone()
    if row is None:
        raise EdufleetError(f"room {name!r} vanished while enrolling")
    return int(row[0]), name


def _matching_device(conn: Conn, hardware: _Hardware) -> int | None:
    """The device whose live identity is this hardware, strongest match first."""
    row = conn.execute(
        """
        SELECT device_id FROM device_identities
        WHERE revoked_at IS NULL
          AND (product_uuid = %(uuid)s::text OR serial = %(serial)s::text
               OR macs && %(macs)s::text[])
          AND (product_uuid IS NULL OR %(uuid)s::text IS NULL
               OR product_uuid = %(uuid)s::text)
        ORDER BY product_uuid = %(uuid)s::text DESC NULLS LAST,
                 serial = %(serial)s::text DESC NULLS LAST,
                 last_enrolled_at DESC
        LIMIT 1
        FOR UPDATE
        """,
        {
            "uuid": hardware.product_uuid,
            "serial": hardware.serial,
            "macs": hardware.macs,
        },
    ).fetchone()
    return None if row is None else int(row[0])


def _device_by_tag(conn: Conn, asset_tag: str) -> int | None:
    row = conn.execute(
        "SELECT id FROM devices WHERE asset_tag = %s FOR UPDATE", [asset_tag]
    ).fetchone()
    return None if row is None else int(row[0])


def _new_device(
    conn: Conn,
    school_id: int,
    school_code: str,
    room_id: int | None,
    request: EnrollRequest,
) -> int:
    """Register a PC that has no asset record yet, under a generated asset tag."""
    serial = (request.fingerprint.serial or "")[:100]
    for _ in range(8):
        tag = f"{school_code}-PC-{secrets.token_hex(3).upper()}"
        row = conn.execute(
            "INSERT INTO devices (asset_tag, name, category, serial, school_id, "
            "room_id) VALUES (%s, %s, 'desktop', %s, %s, %s) "
            "ON CONFLICT (asset_tag) DO NOTHING RETURNING id",
            [tag, request.hostname[:200], serial, school_id, room_id],
        ).fetchone()
        if row is not None:
            log.info("registered enrolling PC %r as asset %r", request.hostname, tag)
            return int(row[0])
    raise Conflict(f"could not generate a free asset tag for school {school_code!r}")


def _bind_device(
    conn: Conn,
    request: EnrollRequest,
    *,
    hardware: _Hardware,
    school_id: int,
    school_code: str,
    room_id: int | None,
) -> int:
    """Find or create the device this PC is; move it to the token's school."""
    matched = _matching_device(conn, hardware)
    tagged = _device_by_tag(conn, request.asset_tag) if request.asset_tag else None
    if request.asset_tag and tagged is None:
        raise NotFound(
            f"asset tag {request.asset_tag!r} is not in the registry; import the "
            "school's asset ledger first, or enroll without --asset-tag to register "
            "the PC under a generated tag"
        )
    if matched is not None and tagged is not None and matched != tagged:
        raise Conflict(
            f"this PC is already enrolled as another asset than {request.asset_tag!r};"
            " retire the old asset record first, or enroll without --asset-tag"
        )
    device = matched or tagged
    if device is None:
        return _new_device(conn, school_id, school_code, room_id, request)

    row = conn.execute(
        "SELECT d.status, d.school_id, s.code FROM devices d "
        "JOIN schools s ON s.id = d.school_id WHERE d.id = %s",
        [device],
    ).fetchone()
    if row is None:
        raise NotFound(f"device {device} vanished while enrolling")
    status, current_school, current_code = row
    if status == "retired":
        raise Conflict(
            f"asset {request.asset_tag or device!r} is retired; return it to service "
            "in the registry before enrolling it again"
        )
    if tagged is not None and matched is None and current_school != school_id:
        raise Conflict(
            f"asset {request.asset_tag!r} belongs to school {current_code!r}, but the "
            f"token is for school {school_code!r}; use that school's token"
        )
    conn.execute(
        "UPDATE devices SET school_id = %s, room_id = coalesce(%s, room_id), "
        "updated_at = now() WHERE id = %s",
        [school_id, room_id, device],
    )
    return device


def peripheral_uids(conn: Conn, device_id: int) -> list[str]:
    """Device ids of the peripherals registered under a device (a controller)."""
    rows = conn.execute(
        "SELECT uid FROM devices WHERE parent_id = %s AND status <> 'retired' "
        "ORDER BY uid",
        [device_id],
    ).fetchall()
    return [str(row[0]) for row in rows]


def enroll(
    conn: Conn,
    dynsec: DynsecClient,
    request: EnrollRequest,
    *,
    broker_url: str,
    ca_pem: str | None = None,
) -> EnrollResponse:
    """Exchange a school token for a device identity; the caller commits."""
    hardware = _hardware(request.fingerprint)
    token_id, school_id, school_code = _lock_token(conn, request.token)
    room_id, room = _room(conn, school_id, request.room)
    device = _bind_device(
        conn,
        request,
        hardware=hardware,
        school_id=school_id,
        school_code=school_code,
        room_id=room_id,
    )

    row = conn.execute(
        """
        INSERT INTO device_identities AS i
            (device_id, broker_username, product_uuid, serial, macs, hostname,
             agent_version, token_id)
        SELECT d.id, d.uid, %s, %s, %s, %s, %s, %s FROM devices d WHERE d.id = %s
        ON CONFLICT (device_id) DO UPDATE SET
            product_uuid = EXCLUDED.product_uuid, serial = EXCLUDED.serial,
            macs = EXCLUDED.macs, hostname = EXCLUDED.hostname,
            agent_version = EXCLUDED.agent_version, token_id = EXCLUDED.token_id,
            last_enrolled_at = now(), enrollments = i.enrollments + 1,
            revoked_at = NULL
        RETURNING broker_username, enrollments,
            (SELECT r.name FROM rooms r JOIN devices d ON d.room_id = r.id
             WHERE d.id = i.device_id)
        """,
        [
            hardware.product_uuid,
            hardware.serial,
            hardware.macs,
            request.hostname,
            request.agent_version,
            token_id,
            device,
        ],
    ).fetchone()
    if row is None:
        raise EdufleetError(f"device {device} vanished while enrolling")
    uid, enrollments, room_name = str(row[0]), int(row[1]), row[2]
    conn.execute(
        "UPDATE enrollment_tokens SET uses = uses + 1, last_used_at = now() "
        "WHERE id = %s",
        [token_id],
    )

    # The broker comes last: if it fails, the transaction rolls back and the
    # PC may simply try again. A password set here whose commit then fails is
    # replaced by the next enrollment.
    password = provision_device(dynsec, uid, peripherals=peripheral_uids(conn, device))
    log.info(
        "enrolled %r as device %r in school %r (enrollment %d)",
        request.hostname,
        uid,
        school_code,
        enrollments,
    )
    return EnrollResponse(
        device_id=uid,
        mqtt_url=broker_url,
        username=uid,
        password=password,
        ca_pem=ca_pem,
        topic_prefix=topics.device_prefix(uid),
        school_code=school_code,
        room=room_name if room_name is not None else room,
    )


# --- hooks for the registry ----------------------------------------------------------


def revoke_device_identity(conn: Conn, dynsec: DynsecClient, device_id: int) -> bool:
    """Revoke a device's broker login, as retiring it must; False if it had none.

    Call it in the transaction that retires the device. The broker is told
    at once, so a device still connected is disconnected.
    """
    row = conn.execute(
        "UPDATE device_identities SET revoked_at = now() "
        "WHERE device_id = %s AND revoked_at IS NULL RETURNING broker_username",
        [device_id],
    ).fetchone()
    if row is None:
        return False
    revoke_device(dynsec, str(row[0]))
    return True


def refresh_device_acl(conn: Conn, dynsec: DynsecClient, device_id: int) -> bool:
    """Re-sync what a device may publish for, after its peripherals changed."""
    row = conn.execute(
        "SELECT broker_username FROM device_identities "
        "WHERE device_id = %s AND revoked_at IS NULL",
        [device_id],
    ).fetchone()
    if row is None:
        return False
    sync_device_role(dynsec, str(row[0]), peripherals=peripheral_uids(conn, device_id))
    return True


def sync_device_identity(
    conn: Conn,
    dynsec: DynsecClient | None,
    device_id: int,
    *,
    previous_parent_id: int | None = None,
) -> None:
    """Bring the broker in line after a device record changed.

    Call it after changing a device, in the same transaction: a retired device
    loses its login; a controller whose peripherals changed (this device was
    attached to it, or moved away from ``previous_parent_id``) gets its
    publishing rights re-synced. ``dynsec`` may be None on a collector without
    enrollment; that is refused only when the broker actually has to change.
    """
    row = conn.execute(
        "SELECT d.status, d.parent_id, i.device_id IS NOT NULL FROM devices d "
        "LEFT JOIN device_identities i ON i.device_id = d.id AND i.revoked_at IS NULL "
        "WHERE d.id = %s",
        [device_id],
    ).fetchone()
    if row is None:
        raise NotFound(f"device {device_id} does not exist")
    status, parent_id, enrolled = row
    parents = {p for p in (parent_id, previous_parent_id) if p is not None}
    enrolled_parents = conn.execute(
        "SELECT device_id FROM device_identities "
        "WHERE device_id = ANY(%s) AND revoked_at IS NULL",
        [sorted(parents)],
    ).fetchall()
    if not enrolled and not enrolled_parents:
        return
    if dynsec is None:
        raise Conflict(
            f"device {device_id} or its controller has a broker identity that must "
            "change; set EDUFLEET_MQTT_ADMIN_USERNAME and _PASSWORD so the "
            "collector can reach the broker"
        )
    if enrolled and status == "retired":
        revoke_device_identity(conn, dynsec, device_id)
    for (parent,) in enrolled_parents:
        refresh_device_acl(conn, dynsec, int(parent))
