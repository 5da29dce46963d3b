"""Login sessions kept in signed cookies, so no session table is needed.

A cookie holds the user id and a random nonce, signed with the settings'
secret key and stamped with the time it was issued. It is refused once it is
older than ``max_age`` or when its signature does not match. Logging out
clears the cookie in the browser; a copied cookie stays valid until it
expires, which is why the lifetime is short.
"""

from __future__ import annotations

import secrets

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

SESSION_MAX_AGE = 12 * 3600


class SessionSigner:
    """Issue and read the ``edufleet_session`` cookie."""

    def __init__(self, secret_key: str, *, max_age: int = SESSION_MAX_AGE) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt="edufleet.session")
        self.max_age = max_age

    def issue(self, user_id: int) -> str:
        """A cookie value for a user who has just logged in."""
        return self._serializer.dumps({"u": user_id, "n": secrets.token_urlsafe(8)})

    def user_id(self, cookie: str) -> int | None:
        """The user a cookie was issued to, or None if it is forged or expired."""
        try:
            data = self._serializer.loads(cookie, max_age=self.max_age)
        except (BadSignature, SignatureExpired):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("u"), int):
            return None
        return int(data["u"])
