"""Public device codes printed on QR labels."""

from __future__ import annotations

import secrets

CODE_BYTES = 9
"""Random bytes per code: 72 bits, twelve URL-safe characters."""


def new_device_code() -> str:
    """A fresh, unguessable label code that fits the ``device_codes.code`` check."""
    return secrets.token_urlsafe(CODE_BYTES)
