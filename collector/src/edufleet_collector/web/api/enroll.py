"""Enrollment: PCs exchange a school token for their identity; admins issue tokens."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from edufleet_protocol.models import EnrollRequest, EnrollResponse

from ... import enrollment
from ...broker.dynsec import DynsecClient, DynsecError
from ...errors import Conflict, InvalidInput, NotFound
from ...settings import Settings
from ..deps import AdminDep, ConnDep, SettingsDep

log = logging.getLogger("edufleet.collector.enrollment")

router = APIRouter(prefix="/api/v1", tags=["enrollment"])


class EnrollBody(EnrollRequest):
    """The wire contract's request, built eagerly: FastAPI needs a built model."""

    model_config = ConfigDict(defer_build=False)


class EnrollAnswer(EnrollResponse):
    """The wire contract's response, built eagerly for the same reason."""

    model_config = ConfigDict(defer_build=False)


class FailureLimiter:
    """Counts failed attempts per client address in a sliding window."""

    def __init__(self, limit: int, window: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self._max_keys = max_keys
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        kept = [t for t in self._failures.get(key, []) if now - t < self.window]
        if kept:
            self._failures[key] = kept
        else:
            self._failures.pop(key, None)
        return kept

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may try again, or None if it may now."""
        now = time.monotonic()
        with self._lock:
            recent = self._recent(key, now)
        if len(recent) < self.limit:
            return None
        return max(1.0, self.window - (now - recent[0]))

    def record(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            recent = self._recent(key, now)
            self._failures[key] = [*recent, now]
            self._failures.move_to_end(key)
            while len(self._failures) > self._max_keys:
                self._failures.popitem(last=False)


_setup_lock = threading.Lock()


def get_failure_limiter(request: Request, settings: SettingsDep) -> FailureLimiter:
    state = request.app.state
    with _setup_lock:
        if getattr(state, "enroll_failures", None) is None:
            state.enroll_failures = FailureLimiter(
                settings.enroll_failures_per_ip, settings.enroll_failure_window_seconds
            )
    limiter: FailureLimiter = state.enroll_failures
    return limiter


def get_dynsec(request: Request, settings: SettingsDep) -> DynsecClient:
    """The app's dynamic security client, connected on first use."""
    state = request.app.state
    with _setup_lock:
        if getattr(state, "dynsec", None) is None:
            if not settings.mqtt_admin_username or settings.mqtt_admin_password is None:
                raise HTTPException(
                    status.HTTP_503_SERVICE_UNAVAILABLE,
                    "enrollment is not configured on this collector: set "
                    "EDUFLEET_MQTT_ADMIN_USERNAME and EDUFLEET_MQTT_ADMIN_PASSWORD",
                )
            state.dynsec = DynsecClient.from_url(
                settings.mqtt_url,
                settings.mqtt_admin_username,
                settings.mqtt_admin_password.get_secret_value(),
                tls_ca_file=settings.mqtt_ca_file,
            )
    dynsec: DynsecClient = state.dynsec
    return dynsec


def get_optional_dynsec(request: Request, settings: SettingsDep) -> DynsecClient | None:
    """The dynamic security client, or None when enrollment is not configured."""
    if not settings.mqtt_admin_username or settings.mqtt_admin_password is None:
        return None
    return get_dynsec(request, settings)


DynsecDep = Annotated[DynsecClient, Depends(get_dynsec)]
OptionalDynsecDep = Annotated[DynsecClient | None, Depends(get_optional_dynsec)]
"""For routes that change devices: pass it to ``enrollment.sync_device_identity``."""


def _ca_pem(settings: Settings) -> str | None:
    if not settings.broker_ca_file:
        return None
    try:
        return Path(settings.broker_ca_file).read_text()
    except OSError as exc:
        log.error("cannot read EDUFLEET_BROKER_CA_FILE: %s", exc)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the broker's CA certificate cannot be read; check EDUFLEET_BROKER_CA_FILE",
        ) from exc


@router.post(
    "/enroll",
    summary="Exchange a school enrollment token for a device identity",
    responses={
        403: {"description": "the token is unknown, revoked, expired or used up"},
        429: {"description": "too many failed enrollments from this address"},
        503: {"description": "the broker cannot create the identity now"},
    },
)
def post_enroll(
    *,
    body: EnrollBody,
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    limiter: Annotated[FailureLimiter, Depends(get_failure_limiter)],
    dynsec: DynsecDep,
) -> EnrollAnswer:
    broker_url = settings.broker_public_url or settings.mqtt_url
    if settings.environment == "production" and not broker_url.startswith("mqtts://"):
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "enrollment is not configured on this collector: set "
            "EDUFLEET_BROKER_PUBLIC_URL to the broker's mqtts:// address for agents",
        )
    client = request.client.host if request.client else "unknown"
    wait = limiter.retry_after(client)
    if wait is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many failed enrollments from {client}; try again in {wait:.0f} s",
            headers={"Retry-After": str(int(wait))},
        )
    try:
        identity = enrollment.enroll(
            conn,
            dynsec,
            body,
            broker_url=broker_url,
            ca_pem=_ca_pem(settings),
        )
        # Commit before answering: the agent stores these credentials as final.
        conn.commit()
    except enrollment.TokenRefused as exc:
        limiter.record(client)
        log.warning("refused enrollment from %s: %s", client, exc.reason)
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except (InvalidInput, NotFound, Conflict):
        limiter.record(client)
        raise
    except DynsecError as exc:
        log.error("broker refused a device identity: %s", exc)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the broker cannot create the device's identity right now; "
            "try again in a minute",
        ) from exc
    return EnrollAnswer.model_validate(identity.model_dump())


class TokenCreate(BaseModel):
    school_code: str = Field(min_length=1, max_length=32)
    max_uses: int = Field(default=enrollment.DEFAULT_USES, ge=1, le=enrollment.MAX_USES)
    days: float = Field(default=enrollment.DEFAULT_DAYS, gt=0, le=enrollment.MAX_DAYS)
    label: str = Field(default="", max_length=200)


class TokenPublic(BaseModel):
    id: int
    school_code: str
    label: str
    max_uses: int
    uses: int
    expires_at: datetime
    created_at: datetime
    revoked_at: datetime | None
    state: str


class TokenIssued(TokenPublic):
    token: str = Field(description="shown once; only its digest is stored")


def _public(token: enrollment.EnrollmentToken) -> TokenPublic:
    return TokenPublic(
        id=token.id,
        school_code=token.school_code,
        label=token.label,
        max_uses=token.max_uses,
        uses=token.uses,
        expires_at=token.expires_at,
        created_at=token.created_at,
        revoked_at=token.revoked_at,
        state=token.state,
    )


def _school_in_scope(conn: ConnDep, principal: AdminDep, school_code: str) -> None:
    row = conn.execute(
        "SELECT id FROM schools WHERE code = %s", [school_code]
    ).fetchone()
    if row is None or not principal.allows_school(int(row[0])):
        raise NotFound(f"school {school_code!r} does not exist")


@router.post(
    "/enrollment-tokens",
    status_code=status.HTTP_201_CREATED,
    summary="Issue an enrollment token for a school",
)
def create_token(conn: ConnDep, principal: AdminDep, body: TokenCreate) -> TokenIssued:
    _school_in_scope(conn, principal, body.school_code)
    secret, token = enrollment.create_enrollment_token(
        conn,
        school_code=body.school_code,
        max_uses=body.max_uses,
        days=body.days,
        label=body.label,
        created_by=principal.user_id,
    )
    conn.commit()
    return TokenIssued(token=secret, **_public(token).model_dump())


@router.get("/enrollment-tokens", summary="List enrollment tokens")
def list_tokens(
    conn: ConnDep,
    principal: AdminDep,
    school_code: Annotated[str | None, Query(max_length=32)] = None,
) -> list[TokenPublic]:
    tokens = enrollment.list_enrollment_tokens(
        conn, principal.school_ids, school_code=school_code
    )
    return [_public(token) for token in tokens]


@router.delete("/enrollment-tokens/{token_id}", summary="Revoke an enrollment token")
def revoke_token(conn: ConnDep, principal: AdminDep, token_id: int) -> TokenPublic:
    token = enrollment.revoke_enrollment_token(conn, token_id, principal.school_ids)
    conn.commit()
    return _public(token)
