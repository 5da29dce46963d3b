"""Errors of the agent.

AgentError              base of every error the agent reports to its operator
├── ConfigError         the TOML config is unreadable or invalid; names key and line
├── CredentialsError    the enrollment file is missing or unreadable
├── EnrollError         enrollment was refused or the collector could not be reached
└── QueueError          the local store-and-forward queue cannot be opened
"""

from __future__ import annotations


class AgentError(Exception):
    """An error the agent reports to its operator and stops for."""


class ConfigError(AgentError):
    """The configuration file cannot be used.

    ``key`` is the dotted key at fault (empty for a syntax error) and ``line``
    its 1-based line in the file, when it could be found.
    """

    def __init__(
        self, message: str, *, path: str = "", key: str = "", line: int | None = None
    ) -> None:
        where = path
        if line is not None:
            where = f"{path}:{line}" if path else f"line {line}"
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.key = key
        self.line = line


class CredentialsError(AgentError):
    """The credentials file written by enrollment is missing or invalid."""


class EnrollError(AgentError):
    """Enrollment did not succeed; the message says why and what to do."""


class QueueError(AgentError):
    """The local queue database cannot be opened or written."""
