"""A run's task rows and lineage records, read the one way every view of a run reads them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.store.schema import LineageRecordRow, TaskRow


def run_tasks(session: Session, run_id: str) -> list[TaskRow]:
    """The run's tasks in the order they were submitted."""
    query = select(TaskRow).where(TaskRow.run_id == run_id).order_by(TaskRow.created_at)
    return list(session.scalars(query))


def run_records(session: Session, run_id: str) -> dict[str, dict[str, Any]]:
    """Each task's lineage record (its latest attempt), by task id."""
    query = select(LineageRecordRow).where(LineageRecordRow.run_id == run_id)
    return {r.task_id: r.record for r in session.scalars(query)}
