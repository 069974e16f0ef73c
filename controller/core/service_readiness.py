"""Recording that a long-running service answers: its URL and `ready` in the task's reference.

Executors report readiness in the `result` of a running state (`{"url", "ready"}`); once it
is true, the URL is written into `executor_ref`, where GET /v1/tasks/{id} and the Airflow
TracectlServiceOperator read it. The store keeps it, so a restarted controller does not
forget a service it already gave out.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from controller.domain.events import ServiceReady
from controller.domain.records import TaskStatus
from controller.ports import ExecutorState
from controller.store.database import Database
from controller.store.schema import LineageEventRow, TaskRow


def record_readiness(
    db: Database, task_id: str, attempt: int, ref: Mapping[str, Any], state: ExecutorState
) -> bool:
    """Write the URL of an attempt that has just become ready; True when it was written."""
    result = state.result or {}
    if not result.get("ready") or not result.get("url") or ref.get("ready"):
        return False
    with db.write() as session:
        row = session.get(TaskRow, task_id)
        if row is None or row.attempt != attempt or row.status != TaskStatus.RUNNING.value:
            return False  # finished or retried meanwhile: its reference is no longer this one
        row.executor_ref = {**(row.executor_ref or {}), "url": result["url"], "ready": True}
        row.updated_at = datetime.now(UTC)
        session.add(
            LineageEventRow.of(ServiceReady(attempt=attempt, url=result["url"]), row.run_id, row.id)
        )
    return True
