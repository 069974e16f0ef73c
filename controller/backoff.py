"""Exponential backoff with jitter, capped, for the senders that retry an unreachable receiver."""

from __future__ import annotations

import random
from collections.abc import Callable

FIRST_S = 0.5
MAX_S = 10.0


class Backoff:
    """Delays that double from FIRST_S up to MAX_S, each drawn in the upper half of its step
    ("equal jitter"): senders that lost the receiver together do not come back together, and
    none retries sooner than half its step."""

    def __init__(
        self,
        first_s: float = FIRST_S,
        max_s: float = MAX_S,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.first_s, self.max_s, self.uniform = first_s, max_s, uniform
        self.step = first_s

    def next(self) -> float:
        """The delay before the next try; the one after is longer until the cap."""
        step, self.step = self.step, min(self.step * 2, self.max_s)
        return self.uniform(step / 2, step)

    def reset(self) -> None:
        """The receiver answered: the next outage starts from FIRST_S again."""
        self.step = self.first_s
