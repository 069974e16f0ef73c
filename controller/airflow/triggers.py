"""TracectlTaskTrigger: waits (async, in the triggerer) until a controller task ends, then ends
the Airflow task from the triggerer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskFailedEvent, TaskSuccessEvent, TriggerEvent

from controller.airflow.hooks import DEFAULT_CONN_ID, TERMINAL, TracectlApiError, TracectlHook
from controller.airflow.links import XCOM_MLFLOW_RUN_ID, XCOM_RUN_ID, XCOM_TASK_ID, link_xcoms
from controller.airflow.outcome import (
    XCOM_ARTIFACTS,
    XCOM_MODEL_VERSIONS,
    XCOM_TRIGGER_FIRED_AT,
    XCOM_TRIGGER_STARTED_AT,
    artifact_rows,
    failure_text,
    registered_versions,
)
from controller.airflow.tasklog import logs_url, write_tail


class TracectlTaskTrigger(BaseTrigger):  # type: ignore[misc]
    """Long-polls ``GET /v1/tasks/{id}/wait`` until the task is terminal, then ends the Airflow
    task itself: ``TaskSuccessEvent`` or ``TaskFailedEvent`` (Airflow retries it if it has
    retries left), with the operator's XComs, after writing the task's last ``log_tail_lines``
    lines (or the failure) into the task log.

    Ending from the triggerer, not resuming the operator in a worker, is what makes a quick end
    safe: Airflow 3.3's scheduler fails a resumed task instance that is already ``queued`` or
    ``running`` when it processes the deferring worker's exit only then (the stale "success"
    of the same executor key; apache/airflow#71502, #72716). A task instance the triggerer sets
    to ``success`` or ``failed`` never is ``queued`` again for that key, and no second worker
    starts. Only when the controller cannot be reached (after the hook's retries) does it
    fire ``{"status": "error", "message": ...}``, which resumes ``execute_complete`` in a
    worker to fail there (and the listener cancels the task).
    """

    # Not ``task_id``: the triggerer sets that attribute to the Airflow task's id.
    def __init__(
        self,
        tracectl_task_id: str,
        conn_id: str = DEFAULT_CONN_ID,
        poll_timeout_s: float = 30.0,
        retry_for_s: float | None = None,
        not_before: float | None = None,  # accepted from triggers stored before it was dropped
        log_tail_lines: int = 100,
    ) -> None:
        super().__init__()
        self.tracectl_task_id = tracectl_task_id
        self.conn_id = conn_id
        self.poll_timeout_s = poll_timeout_s
        self.retry_for_s = retry_for_s
        self.log_tail_lines = log_tail_lines

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "controller.airflow.triggers.TracectlTaskTrigger",
            {
                "tracectl_task_id": self.tracectl_task_id,
                "conn_id": self.conn_id,
                "poll_timeout_s": self.poll_timeout_s,
                "retry_for_s": self.retry_for_s,
                "log_tail_lines": self.log_tail_lines,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = TracectlHook(self.conn_id, retry_for_s=self.retry_for_s)
        try:
            async with hook.aclient():
                await hook.aload()  # the connection: a round trip to the triggerer's database
                watching = time.time()
                task = await self._ended(hook)
                event = await self._end(hook, task, (watching, time.time()))
        except Exception as exc:
            event = TriggerEvent(
                {"status": "error", "task_id": self.tracectl_task_id, "message": str(exc)}
            )
        yield event

    async def _ended(self, hook: TracectlHook) -> dict[str, Any]:
        """The task once it ended: /wait answers as soon as it does (the controller wakes it on
        the task's terminal event), so this returns within a request's round trip."""
        while True:
            task = await hook.await_task(self.tracectl_task_id, self.poll_timeout_s)
            if task.get("status") in TERMINAL:
                return task
            self.log.info("tracectl task %s is %s", self.tracectl_task_id, task.get("status"))

    async def _end(
        self, hook: TracectlHook, task: Mapping[str, Any], waited: tuple[float, float]
    ) -> TriggerEvent:
        """The event that ends the Airflow task as the tracectl task ended. WAITED: when this
        trigger started watching (its first poll) and when it saw the end (epoch seconds; XComs
        ``trigger_started_at`` and ``trigger_fired_at``)."""
        task_id = str(task["id"])
        # the three reads at once: the Airflow task ends one round trip after the tracectl task
        tail, artifacts, downstream = await asyncio.gather(
            hook.atask_log_tail(task_id, self.log_tail_lines)
            if self.log_tail_lines > 0
            else _none(),
            hook.atask_artifacts(task_id),
            hook.adownstream(task_id),
        )
        if tail is not None:
            write_tail(self.log, task_id, logs_url(hook.base_url, task_id), tail)
        xcoms: dict[str, Any] = {
            XCOM_TASK_ID: task_id,
            XCOM_RUN_ID: task["run_id"],
            XCOM_MLFLOW_RUN_ID: task.get("mlflow_run_id"),
            XCOM_ARTIFACTS: artifact_rows(artifacts),
            XCOM_TRIGGER_STARTED_AT: waited[0],
            XCOM_TRIGGER_FIRED_AT: waited[1],
        }
        xcoms.update(link_xcoms(hook.settings, task_id, task.get("mlflow_run_id")))
        if task["status"] != "succeeded":
            self.log.error("%s", failure_text(task, hook.base_url))
            return TaskFailedEvent(xcoms=xcoms)
        xcoms[XCOM_MODEL_VERSIONS] = registered_versions(downstream)
        xcoms["return_value"] = task_id
        self.log.info(
            "tracectl task %s succeeded with %d artifact(s)", task_id, len(xcoms[XCOM_ARTIFACTS])
        )
        return TaskSuccessEvent(xcoms=xcoms)

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


async def _none() -> None:
    return None
