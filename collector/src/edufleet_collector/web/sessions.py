"""Login sessions kept in signed cookies, so no session table is needed.

A cookie holds the user id, a random nonce and the time it was issued,
signed with the settings' secret key. It is refused once it is older than
``max_age``, when its signature does not match, or when it was issued before
the user's ``sessions_valid_after``: logging out moves that to now, so a
copied cookie stops working on every device at once.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

SESSION_MAX_AGE = 12 * 3600


class SessionSigner:
    """Issue and read the ``edufleet_session`` cookie."""

    def __init__(self, secret_key: str, *, max_age: int = SESSION_MAX_AGE) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt="edufleet.session")
        self.max_age = max_age

    def issue(self, user_id: int) -> str:
        """A cookie value for a user who has just logged in."""
        return self._serializer.dumps(
            {"u": user_id, "n": secrets.token_urlsafe(8), "t": time.time()}
        )

    def read(self, cookie: str) -> tuple[int, datetime] | None:
        """The user a cookie was issued to and when, or None if forged or expired."""
        try:
            data = self._serializer.loads(cookie, max_age=self.max_age)
        except (BadSignature, SignatureExpired):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("u"), int):
            return None
        issued = data.get("t")
        if not isinstance(issued, int | float):
            return None
        return int(data["u"]), datetime.fromtimestamp(issued, UTC)
