"""Token buckets that keep the public QR pages from being flooded.

The buckets live in the memory of one web process. With several worker
processes each keeps its own, so the effective limit is the configured one
times the number of workers; login throttling, which must hold exactly, is
kept in the database instead (see ``pages/auth.py``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    """``burst`` requests at once, refilled at ``per_minute`` a minute."""

    burst: int
    per_minute: float

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0


class RateLimiter:
    """A bounded map of token buckets, one per key; safe across threads."""

    def __init__(
        self,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._max_keys = max_keys
        self._clock = clock

    def allow(self, scope: str, key: str, rate: Rate) -> bool:
        """Take one token from the bucket of ``(scope, key)``; False if it is empty."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop((scope, key), (float(rate.burst), now))
            tokens = min(float(rate.burst), tokens + (now - last) * rate.per_second)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[(scope, key)] = (tokens, now)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        return allowed
