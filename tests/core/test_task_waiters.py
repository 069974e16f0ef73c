"""Long-poll waiters share one store read per round: many waiters on a few tasks ask the store
about all of those tasks at once, each waiter returns once its task has ended, and a waiter
whose task does not end returns at its timeout."""

from __future__ import annotations

import asyncio
import threading

from controller.core.waiters import TaskWaiters

TASKS = [f"task_{n}" for n in range(10)]


def test_many_waiters_cost_one_read_per_round_and_each_wakes_at_its_task_end() -> None:
    ended: set[str] = set()
    reads: list[set[str]] = []

    def ended_of(ids: set[str]) -> set[str]:
        reads.append(set(ids))
        return ids & ended

    waiters = TaskWaiters(ended_of, poll_s=0.01)

    async def scenario() -> list[str]:
        woken: list[str] = []

        async def wait(task_id: str) -> None:
            await waiters.until_ended(task_id, timeout_s=60)
            woken.append(task_id)

        parked = [asyncio.create_task(wait(TASKS[n % 10])) for n in range(200)]
        while len(reads) < 3:
            await asyncio.sleep(0.01)
        assert not woken
        ended.update(TASKS[:5])
        while len(woken) < 100:
            await asyncio.sleep(0.01)
        ended.update(TASKS[5:])
        await asyncio.gather(*parked)
        return woken

    woken = asyncio.run(scenario())
    assert sorted(set(woken)) == TASKS and len(woken) == 200
    assert reads[0] == set(TASKS)  # the first round asked about every waited task at once
    assert all(r <= set(TASKS) for r in reads)
    assert any(r == set(TASKS[5:]) for r in reads)  # the ended ones were no longer asked for


def test_a_waiter_whose_task_does_not_end_returns_at_its_timeout() -> None:
    waiters = TaskWaiters(lambda ids: set(), poll_s=0.01)

    async def scenario() -> None:
        await waiters.until_ended("task_1", timeout_s=0.05)

    asyncio.run(scenario())
    assert waiters._loops == {}  # nothing left behind once nobody waits


def test_a_failed_read_keeps_the_waiters_waiting() -> None:
    calls: list[int] = []

    def flaky(ids: set[str]) -> set[str]:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("store away")
        return ids

    waiters = TaskWaiters(flaky, poll_s=0.01)
    asyncio.run(waiters.until_ended("task_1", timeout_s=60))
    assert len(calls) >= 2


def test_a_nudge_from_another_thread_wakes_the_waiters_of_an_ended_task_before_the_next_tick() -> (
    None
):
    ended: set[str] = set()
    waiters = TaskWaiters(lambda ids: ids & ended, poll_s=3600)  # no tick during the test

    async def scenario() -> None:
        parked = asyncio.create_task(waiters.until_ended("task_1", timeout_s=3600))
        while not waiters._loops:
            await asyncio.sleep(0.01)
        ended.add("task_1")
        threading.Thread(target=waiters.nudge).start()  # as the supervisor ends a task
        await asyncio.wait_for(parked, 60)  # a missed nudge would wait out the hour's tick

    asyncio.run(scenario())
    waiters.nudge()  # nobody waits any more: nothing to wake, nothing raised
