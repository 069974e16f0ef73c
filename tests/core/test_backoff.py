"""The senders' backoff: doubling, capped, jittered within the upper half of each step."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from controller.backoff import Backoff


def lowest(low: float, high: float) -> float:
    return low


def highest(low: float, high: float) -> float:
    return high


def test_delays_double_from_the_first_up_to_the_cap() -> None:
    backoff = Backoff(first_s=0.5, max_s=10.0, uniform=highest)
    assert [backoff.next() for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_a_success_starts_the_next_outage_from_the_first_delay() -> None:
    backoff = Backoff(first_s=0.5, max_s=10.0, uniform=highest)
    for _ in range(5):
        backoff.next()
    backoff.reset()
    assert backoff.next() == 0.5


def test_the_jitter_never_goes_below_half_a_step() -> None:
    backoff = Backoff(first_s=0.5, max_s=10.0, uniform=lowest)
    assert [backoff.next() for _ in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


@given(st.integers(min_value=0, max_value=2**31 - 1), st.integers(min_value=1, max_value=60))
def test_every_delay_lies_in_the_upper_half_of_its_capped_step(seed: int, tries: int) -> None:
    backoff = Backoff(first_s=0.5, max_s=10.0, uniform=random.Random(seed).uniform)
    for attempt in range(tries):
        step = min(0.5 * 2**attempt, 10.0)
        assert step / 2 <= backoff.next() <= step
