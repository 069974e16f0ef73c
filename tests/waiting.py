"""Polling a condition until it holds: the one wait helper of the tests.

The controller, its runners and the real services act asynchronously, so a test waits for
what it needs and fails with the last value it saw; a wait is never an assertion on time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 90.0, every: float = 0.2
) -> T:
    """The first truthy value of PROBE, polled every EVERY seconds for up to TIMEOUT."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
