"""Recording that a long-running service answers: its URL and `ready` in the task's reference.

Executors report readiness in the `result` of a running state (`{"url", "ready"}`); once it
is true, the URL is written into `executor_ref`, where GET /v1/tasks/{id} and the Airflow
TracectlServiceOperator read it. The store keeps it, so a restarted controller does not
forget a service it already gave out.
"""

from __future__ import annotations

from datetime import UTC, datetime

from controller.domain.events import ServiceReady
from controller.domain.records import TaskStatus
from controller.domain.refs import ExecutorRef, ServiceRefs
from controller.ports import ExecutorState
from controller.store.database import Database
from controller.store.schema import LineageEventRow, TaskRow


def record_readiness(
    db: Database, task_id: str, attempt: int, ref: ExecutorRef, state: ExecutorState
) -> bool:
    """Write the URL of an attempt that has just become ready; True when it was written."""
    result = state.result or {}
    if not result.get("ready") or not result.get("url") or _ready(ref):
        return False
    with db.write() as session:
        row = session.get(TaskRow, task_id)
        if row is None or row.attempt != attempt or row.status != TaskStatus.RUNNING.value:
            return False  # finished or retried meanwhile: its reference is no longer this one
        if not isinstance(row.executor_ref, ServiceRefs):
            return False  # only a service's reference has a URL
        row.executor_ref = row.executor_ref.model_copy(update={"url": result["url"], "ready": True})
        row.updated_at = datetime.now(UTC)
        session.add(
            LineageEventRow.of(ServiceReady(attempt=attempt, url=result["url"]), row.run_id, row.id)
        )
    return True


def _ready(ref: ExecutorRef) -> bool:
    return isinstance(ref, ServiceRefs) and bool(ref.ready)
