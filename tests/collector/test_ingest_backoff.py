"""The collector's backoff helper, used by ingest for the broker and the database."""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time

import pytest

from edufleet_collector.backoff import Backoff, Stopped, retry

log = logging.getLogger("test.backoff")


def test_delays_double_up_to_the_cap_with_jitter_below_each_step() -> None:
    backoff = Backoff(initial=0.1, maximum=1.0)

    delays = list(itertools.islice(backoff.delays(random.Random(7)), 8))

    steps = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    assert all(s / 2 <= d <= s for d, s in zip(delays, steps, strict=True))
    assert len(set(delays)) == len(delays)


def test_retry_returns_once_the_attempt_succeeds() -> None:
    outcomes = iter([OSError("refused"), OSError("refused"), "connected"])

    def attempt() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    result = retry(
        attempt,
        retry_on=(OSError,),
        backoff=Backoff(initial=0.001, maximum=0.002),
        what="connecting",
        logger=log,
    )

    assert result == "connected"


def test_retry_gives_up_after_the_deadline_with_the_last_error() -> None:
    calls = []

    def attempt() -> None:
        calls.append(time.monotonic())
        raise OSError(f"attempt {len(calls)} refused")

    with pytest.raises(OSError, match="refused"):
        retry(
            attempt,
            retry_on=(OSError,),
            backoff=Backoff(initial=0.01, maximum=0.02, deadline=0.1),
            what="connecting",
            logger=log,
        )

    assert len(calls) >= 2
    assert calls[-1] - calls[0] < 1.0


def test_retry_does_not_retry_other_errors() -> None:
    calls = []

    def attempt() -> None:
        calls.append(1)
        raise ValueError("bad configuration")

    with pytest.raises(ValueError, match="bad configuration"):
        retry(
            attempt,
            retry_on=(OSError,),
            backoff=Backoff(initial=0.001),
            what="connecting",
            logger=log,
        )
    assert calls == [1]


def test_retry_stops_waiting_when_asked_to() -> None:
    stop = threading.Event()

    def attempt() -> None:
        stop.set()
        raise OSError("down")

    started = time.monotonic()
    with pytest.raises(Stopped):
        retry(
            attempt,
            retry_on=(OSError,),
            backoff=Backoff(initial=30.0, maximum=30.0),
            what="connecting",
            logger=log,
            stop=stop,
        )
    assert time.monotonic() - started < 5
