"""Rows to domain records, and cursor pagination."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from controller.domain.records import Artifact, QueueInfo, Run, Task, TaskStatus
from controller.domain.spec import TaskSpec
from controller.errors import InvalidInput
from controller.store.schema import ArtifactRow, RunRow, TaskRow


def run_record(row: RunRow) -> Run:
    return Run.model_validate(row, from_attributes=True)


def task_record(row: TaskRow, queue: QueueInfo | None = None) -> Task:
    return Task(
        id=row.id,
        run_id=row.run_id,
        name=row.name,
        spec=TaskSpec.model_validate(row.spec),
        status=TaskStatus(row.status),
        reason=row.reason,
        attempt=row.attempt,
        max_attempts=row.max_attempts,
        exit_code=row.exit_code,
        mlflow_run_id=row.mlflow_run_id,
        executor=row.executor,
        executor_ref=row.executor_ref,
        queue=queue,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def artifact_record(row: ArtifactRow) -> Artifact:
    return Artifact.model_validate(row, from_attributes=True)


def encode_cursor(created_at: datetime, row_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, row_id = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(created), str(row_id)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(["query", "cursor"], "not a cursor this API returned") from exc


def page(items: list[Any], limit: int, key: Any) -> dict[str, Any]:
    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next_cursor": key(items[-1]) if more and items else None}
