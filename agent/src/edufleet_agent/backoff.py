"""Exponential backoff with full jitter: the one way the agent waits to retry.

Full jitter draws each delay uniformly from ``[0, min(cap, initial * 2**n)]``,
so a fleet that lost its broker at the same moment spreads its reconnects over
the whole window instead of arriving together.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class Backoff:
    """Delays for successive retries of one operation.

    Call ``next_delay()`` after each failure and ``reset()`` after a success.
    With ``deadline_s`` set, ``expired`` turns true once that many seconds have
    passed since the first failure of the current run of failures.
    """

    def __init__(
        self,
        *,
        initial_s: float = 1.0,
        cap_s: float = 300.0,
        deadline_s: float | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if initial_s <= 0 or cap_s < initial_s:
            raise ValueError(
                f"backoff needs 0 < initial_s <= cap_s, got {initial_s} and {cap_s}"
            )
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.deadline_s = deadline_s
        self._rng = rng or random.Random()
        self._clock = clock
        self._failures = 0
        self._first_failure: float | None = None

    @property
    def failures(self) -> int:
        return self._failures

    @property
    def expired(self) -> bool:
        if self.deadline_s is None or self._first_failure is None:
            return False
        return self._clock() - self._first_failure >= self.deadline_s

    def ceiling(self) -> float:
        """The upper bound of the next delay."""
        exponent = min(self._failures, 62)
        return float(min(self.cap_s, self.initial_s * 2.0**exponent))

    def next_delay(self) -> float:
        """Record a failure and return how long to wait before the next try."""
        if self._first_failure is None:
            self._first_failure = self._clock()
        delay = self._rng.uniform(0.0, self.ceiling())
        self._failures += 1
        return delay

    def reset(self) -> None:
        self._failures = 0
        self._first_failure = None
