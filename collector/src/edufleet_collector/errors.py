"""Errors raised by the collector.

The hierarchy::

    EdufleetError
    ├── ConfigError          a setting is missing or malformed
    ├── MigrationError       the schema cannot be brought to this code's version
    ├── NotFound             a referenced object does not exist (or is out of scope)
    ├── Conflict             the request clashes with the current state
    └── InvalidInput         user-supplied data failed validation

Each message names the object, the limit and the fix.
"""

from __future__ import annotations


class EdufleetError(Exception):
    """Base class of every error the collector raises on purpose."""


class ConfigError(EdufleetError):
    """A setting is missing or malformed."""


class MigrationError(EdufleetError):
    """The database schema cannot be brought to the version this code expects."""


class NotFound(EdufleetError):
    """A referenced object does not exist, or is outside the caller's scope."""


class Conflict(EdufleetError):
    """The request clashes with the object's current state."""


class InvalidInput(EdufleetError):
    """User-supplied data failed validation; ``field`` names the culprit."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
