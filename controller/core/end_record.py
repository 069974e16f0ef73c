"""What an attempt's end writes in its own transaction: the inputs it used, the outputs it
produced, its lineage record and the events of the lineage log (the graph's source)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from controller.domain.events import InputUsed, OutputProduced, TaskCompleted
from controller.lineage.capture import build_record
from controller.store.schema import (
    ArtifactRow,
    LineageEventRow,
    LineageRecordRow,
    RunRow,
    TaskInputRow,
    TaskRow,
    utcnow,
)

if TYPE_CHECKING:
    from controller.core.ending import Outcome

_ARTIFACT_FIELDS = {"path", "sha256", "uri", "size", "media_type"}  # an output's stored row


def record_attempt(
    session: Session,
    row: TaskRow,
    outcome: Outcome,
    inputs: list[dict[str, Any]],
    tracking_uri: str | None,
    log_summary: dict[str, Any],
) -> None:
    """Write ROW's ended attempt: INPUTS it was launched with, OUTCOME's outputs, its record."""
    run = session.get(RunRow, row.run_id)
    assert run is not None
    row.finished_at = utcnow()
    for item in inputs:
        session.add(
            TaskInputRow(
                task_id=row.id,
                sha256=item["sha256"],
                uri=item["uri"],
                path=item["path"],
                produced_by_task=item.get("produced_by_task"),
            )
        )
        session.add(LineageEventRow.of(InputUsed.model_validate(item), row.run_id, row.id))
    for output in outcome.result.get("outputs") or []:
        produced = OutputProduced.model_validate(output)
        stored = produced.model_dump(include=_ARTIFACT_FIELDS)
        session.add(ArtifactRow(**stored, task_id=row.id, run_id=row.run_id))
        session.add(LineageEventRow.of(produced, row.run_id, row.id))
    # leases are not copied into the record: views read them from the leases table
    record = build_record(
        row, run, outcome.status.value, outcome.result, inputs, tracking_uri, log_summary
    )
    record_json = record.model_dump(mode="json")
    record_json["reason"] = outcome.reason
    existing = session.get(LineageRecordRow, row.id)
    if existing is None:
        session.add(
            LineageRecordRow(
                task_id=row.id, run_id=row.run_id, attempt=row.attempt, record=record_json
            )
        )
    else:
        existing.attempt, existing.record = row.attempt, record_json
        existing.updated_at = utcnow()
    completed = TaskCompleted(
        attempt=row.attempt,
        status=outcome.status.value,
        exit_code=outcome.exit_code,
        reason=outcome.reason,
    )
    session.add(LineageEventRow.of(completed, row.run_id, row.id))
