"""Long-poll waiters of task ends: one store query per round wakes all of them.

Each `GET /v1/tasks/{id}/wait` parks a future here instead of reading its task every 0.2 s:
with 1,000 waiters those reads (5,000 a second, each in a worker thread) took the cores and
the thread pool from every other call. One poller per event loop asks the store which of
the waited tasks have ended and resolves their futures; it stops when nobody waits. A task
end written in this process (`nudge`) starts that round at once instead of at the next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

POLL_S = 0.2
log = logging.getLogger("tracectl.waiters")

# The ids among the given ones whose tasks have ended (a blocking store read).
EndedOf = Callable[[set[str]], set[str]]


class _LoopWaiters:
    """The waiters of one event loop and its poller."""

    def __init__(self) -> None:
        self.futures: dict[str, set[asyncio.Future[None]]] = {}
        self.poller: asyncio.Task[None] | None = None
        self.nudged = asyncio.Event()


class TaskWaiters:
    def __init__(self, ended_of: EndedOf, poll_s: float = POLL_S) -> None:
        self.ended_of, self.poll_s = ended_of, poll_s
        self._loops: dict[asyncio.AbstractEventLoop, _LoopWaiters] = {}

    async def until_ended(self, task_id: str, timeout_s: float) -> None:
        """Return when the task has ended or after TIMEOUT_S, whichever is first."""
        loop = asyncio.get_running_loop()
        waiters = self._loops.setdefault(loop, _LoopWaiters())
        future: asyncio.Future[None] = loop.create_future()
        waiters.futures.setdefault(task_id, set()).add(future)
        if waiters.poller is None or waiters.poller.done():
            waiters.poller = loop.create_task(self._poll(waiters), name="task-waiters")
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, timeout_s)
        finally:
            self._forget(waiters, task_id, future)

    def nudge(self) -> None:
        """A task just ended (any thread): each poller reads the store now, not at its next
        tick; an end written elsewhere (another replica) is still found by the tick."""
        for loop, waiters in list(self._loops.items()):
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(waiters.nudged.set)

    @staticmethod
    def _forget(waiters: _LoopWaiters, task_id: str, future: asyncio.Future[None]) -> None:
        left = waiters.futures.get(task_id)
        if left is not None:
            left.discard(future)
            if not left:
                del waiters.futures[task_id]

    async def _poll(self, waiters: _LoopWaiters) -> None:
        try:
            while waiters.futures:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiters.nudged.wait(), self.poll_s)
                waiters.nudged.clear()
                await self._wake_ended(waiters)
        finally:
            self._loops.pop(asyncio.get_running_loop(), None)  # a closed loop is not kept

    async def _wake_ended(self, waiters: _LoopWaiters) -> None:
        try:
            ended = await asyncio.to_thread(self.ended_of, set(waiters.futures))
        except Exception:  # the store is away: the waiters keep waiting, or time out
            log.warning("reading the waited tasks failed; trying again", exc_info=True)
            return
        for task_id in ended:
            for future in waiters.futures.pop(task_id, set()):
                if not future.done():
                    future.set_result(None)
