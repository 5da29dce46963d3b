"""Protection of every HTML form against cross-site request forgery.

Double submit with a signature: the browser holds a random value in the
``edufleet_csrf`` cookie, and each form carries that value signed with the
secret key. A POST is accepted only when the form's token verifies and names
the cookie's value. Another site can neither read the cookie nor sign a
value of its own, so it cannot build a form that passes.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from itsdangerous import BadSignature, Signer

CSRF_COOKIE = "edufleet_csrf"
CSRF_FIELD = "csrf_token"


class CsrfTokens:
    """Sign and check the per-browser CSRF value."""

    def __init__(self, secret_key: str) -> None:
        self._signer = Signer(secret_key, salt="edufleet.csrf")

    @staticmethod
    def new_value() -> str:
        return secrets.token_urlsafe(18)

    def token_for(self, value: str) -> str:
        return self._signer.sign(value).decode()

    def matches(self, token: str, cookie_value: str) -> bool:
        try:
            signed = self._signer.unsign(token).decode()
        except BadSignature:
            return False
        return hmac.compare_digest(signed, cookie_value)


def browser_value(request: Request) -> str:
    """The browser's CSRF value; a new one (set on the response) if it has none."""
    value = getattr(request.state, "csrf_value", None)
    if value is None:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if 16 <= len(cookie) <= 64:
            value = cookie
        else:
            value = CsrfTokens.new_value()
            request.state.csrf_new = True
        request.state.csrf_value = value
    return str(value)


async def verify_csrf(request: Request) -> None:
    """Refuse a form whose CSRF token is missing or does not match the cookie."""
    tokens: CsrfTokens = request.app.state.csrf
    form = await request.form()
    token = form.get(CSRF_FIELD)
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not isinstance(token, str) or not cookie or not tokens.matches(token, cookie):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "the form's security token is missing or stale; "
            "reload the page and send the form again",
        )


CsrfDep = Annotated[None, Depends(verify_csrf)]
