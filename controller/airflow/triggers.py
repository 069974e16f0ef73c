"""TracectlTaskTrigger: waits (async, in the triggerer) until a controller task ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from controller.airflow.hooks import DEFAULT_CONN_ID, TERMINAL, TracectlApiError, TracectlHook


class TracectlTaskTrigger(BaseTrigger):  # type: ignore[misc]
    """Long-polls ``GET /v1/tasks/{id}/wait`` until the task is terminal.

    Fires one event: ``{"status": "terminal", "task": <Task>, "fired_at": <epoch s>}`` when the
    task ended, or
    ``{"status": "error", "message": ...}`` when the controller could not be reached (after the
    hook's retries); the operator's ``execute_complete`` turns either into success or failure.
    """

    # Not ``task_id``: the triggerer sets that attribute to the Airflow task's id.
    def __init__(
        self,
        tracectl_task_id: str,
        conn_id: str = DEFAULT_CONN_ID,
        poll_timeout_s: float = 30.0,
        retry_for_s: float | None = None,
        not_before: float | None = None,
    ) -> None:
        super().__init__()
        self.not_before = not_before
        self.tracectl_task_id = tracectl_task_id
        self.conn_id = conn_id
        self.poll_timeout_s = poll_timeout_s
        self.retry_for_s = retry_for_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "controller.airflow.triggers.TracectlTaskTrigger",
            {
                "tracectl_task_id": self.tracectl_task_id,
                "conn_id": self.conn_id,
                "poll_timeout_s": self.poll_timeout_s,
                "retry_for_s": self.retry_for_s,
                "not_before": self.not_before,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = TracectlHook(self.conn_id, retry_for_s=self.retry_for_s)
        try:
            while True:
                # /wait answers as soon as the task ends (the controller wakes it on the
                # task's terminal event), so the event fires within a request's round trip.
                task = await hook.await_task(self.tracectl_task_id, self.poll_timeout_s)
                if task.get("status") in TERMINAL:
                    await self._settle()
                    yield TriggerEvent(
                        {"status": "terminal", "task": task, "fired_at": time.time()}
                    )
                    return
                self.log.info("tracectl task %s is %s", self.tracectl_task_id, task.get("status"))
        except Exception as exc:
            yield TriggerEvent(
                {"status": "error", "task_id": self.tracectl_task_id, "message": str(exc)}
            )

    async def _settle(self) -> None:
        """Wait until ``not_before`` (epoch seconds; the operator sets it to the defer time
        plus its ``resume_settle_s``). Airflow 3.3 fails a resumed task whose deferring worker's
        exit the scheduler processes only after the resumed try was queued: both have the
        same executor key, so that exit drops the new try from the executor's running set
        and the scheduler marks it "killed externally". A task that ends later than that
        resumes at once."""
        if self.not_before is not None:
            await asyncio.sleep(max(0.0, self.not_before - time.time()))

    async def on_kill(self) -> None:
        """Cancel the controller task: a user marked the deferred Airflow task failed (or
        success, or cleared it).

        Airflow 3.3's triggerer calls this only for such a user action, not when it shuts
        down or hands the trigger to another triggerer (``cleanup`` runs then, and must not
        cancel), and not after the trigger fired. The worker-side ``on_kill`` of the operator
        never runs for a deferred task: no worker holds it.
        """
        hook = TracectlHook(self.conn_id, retries=2, timeout_s=10.0, retry_for_s=0)
        try:
            task = await hook.acancel_task(self.tracectl_task_id)
        except TracectlApiError as exc:
            if exc.status != 409:  # 409: it had already ended, nothing to cancel
                raise
            self.log.info("tracectl task %s had already ended", self.tracectl_task_id)
            return
        self.log.info("cancelled tracectl task %s (%s)", self.tracectl_task_id, task.get("status"))
