"""Retrying with exponential backoff, full jitter and an optional deadline.

Every reconnect loop of the collector goes through :func:`retry`, so waits
grow the same way everywhere and no process hammers a server that is down.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """How long to wait between attempts: ``initial * multiplier**n``, capped."""

    initial: float = 0.2
    maximum: float = 10.0
    multiplier: float = 2.0
    deadline: float | None = None
    """Seconds after the first failure when retrying stops; None retries forever."""

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """Endless waits with full jitter: uniform in (0, the capped step]."""
        draw = (rng or random).uniform
        step = self.initial
        while True:
            yield draw(step / 2, step)
            step = min(step * self.multiplier, self.maximum)


class Stopped(Exception):
    """The stop event was set while waiting to retry."""


def retry(
    attempt: Callable[[], T],
    *,
    retry_on: tuple[type[BaseException], ...],
    backoff: Backoff,
    what: str,
    logger: logging.Logger,
    stop: threading.Event | None = None,
) -> T:
    """Call ``attempt`` until it succeeds, waiting per ``backoff`` after failures.

    Exceptions in ``retry_on`` are logged as WARNING and retried; once the
    deadline passes the last one is raised. Others propagate at once. When
    ``stop`` is set during a wait, :class:`Stopped` is raised.
    """
    started: float | None = None
    failures = 0
    delays = backoff.delays()
    while True:
        try:
            result = attempt()
        except retry_on as exc:
            delay = next(delays)
            now = time.monotonic()
            started = now if started is None else started
            failures += 1
            if (
                backoff.deadline is not None
                and now + delay - started > backoff.deadline
            ):
                raise
            logger.warning(
                "%s failed (attempt %d), retrying in %.1f s: %s",
                what,
                failures,
                delay,
                str(exc).strip() or type(exc).__name__,
            )
            if stop is not None:
                if stop.wait(delay):
                    raise Stopped(what) from exc
            else:
                time.sleep(delay)
            continue
        if failures:
            logger.info("%s succeeded after %d failed attempts", what, failures)
        return result
