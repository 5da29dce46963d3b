"""Errors of the wire contract.

ProtocolError      a message off the protocol; ``reason`` is a short code
├── TopicError     a topic outside ``edufleet/v1/<device_id>/<kind>``;
│                  reason bad_topic
└── PayloadError   a payload refused by ``parse_payload``; reason is one of
                   too_large, bad_json, nan, invalid
"""

from __future__ import annotations

from typing import Literal

Reason = Literal["bad_topic", "too_large", "bad_json", "nan", "invalid"]


class ProtocolError(ValueError):
    """A message that does not follow the protocol."""

    reason: Reason = "invalid"

    def __init__(self, message: str, *, reason: Reason | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class TopicError(ProtocolError):
    """A topic that is not one of the protocol's."""

    reason: Reason = "bad_topic"


class PayloadError(ProtocolError):
    """A payload that is too large, not JSON, or does not match its model."""
