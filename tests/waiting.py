"""Polling a condition until it holds: the one wait helper of the tests.

The controller, its runners and the real services act asynchronously, so a test waits for
what it needs and fails with the last value it saw; a wait is never an assertion on time.
`poll_until` and `gather` hand back what they have when time runs out, for the helpers whose
callers assert on it (a count, a set of ids) and so say what was missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def poll_until(
    probe: Callable[[], T], done: Callable[[T], object], timeout: float = 90.0, every: float = 0.2
) -> T:
    """PROBE's first value that DONE holds of, polled every EVERY seconds; after TIMEOUT its
    last value (at least one call)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        time.sleep(every)
        if time.monotonic() >= deadline:
            return value


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 90.0, every: float = 0.2
) -> T:
    """The first truthy value of PROBE, polled every EVERY seconds for up to TIMEOUT."""
    last = poll_until(probe, bool, timeout, every)
    if not last:
        raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
    return last


def gather(
    poll: Callable[[], Iterable[T]],
    enough: Callable[[list[T]], object],
    timeout: float = 60.0,
    every: float = 0.0,
) -> list[T]:
    """Everything POLL returns, call after call, until ENOUGH holds of it all or TIMEOUT has
    passed (POLL itself may block: a Kafka consumer's poll)."""
    seen: list[T] = []

    def more() -> list[T]:
        seen.extend(poll())
        return seen

    return poll_until(more, enough, timeout, every)
