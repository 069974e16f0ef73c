"""Every change of a task's status: a compare-and-set on (id, attempt, status) with its event.

Each transition is one conditional `UPDATE tasks ... WHERE id = ? AND attempt = ? AND status
IN (...)` whose row count says whether it won: on PostgreSQL as on SQLite, of two writers
that both read `queued`, exactly one moves the task on. The lineage event, the attempt's
record and what an end releases are written in the caller's transaction, so they commit or
roll back with the status. Nothing else writes `TaskRow.status`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from controller.domain.events import LineageEvent, TaskAdmitted, TaskStarted
from controller.domain.records import TERMINAL, RunStatus, TaskStatus
from controller.domain.refs import ExecutorRef
from controller.scheduling.admission import Admission, Admitter
from controller.store.schema import (
    AttemptRow,
    LineageEventRow,
    RunRow,
    TaskRow,
    TaskSecretRow,
    utcnow,
)

RUNS = (TaskStatus.STARTING, TaskStatus.RUNNING)
WAITING = (TaskStatus.PENDING, TaskStatus.QUEUED)


def _cas(
    session: Session, row: TaskRow, at: int, expected: Iterable[TaskStatus], **values: Any
) -> bool:
    """Set VALUES on ROW if it still is at attempt AT in one of EXPECTED; whether it was."""
    result = session.execute(
        update(TaskRow)
        .where(
            TaskRow.id == row.id,
            TaskRow.attempt == at,
            TaskRow.status.in_([s.value for s in expected]),
        )
        .values(updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )
    won = getattr(result, "rowcount", 0) == 1
    if won:
        session.refresh(row)  # the row object shows what was written
    return won


def promote(session: Session, row: TaskRow) -> bool:
    """pending -> queued: its upstream tasks succeeded."""
    return _cas(
        session,
        row,
        row.attempt,
        [TaskStatus.PENDING],
        status=TaskStatus.QUEUED.value,
        queued_at=utcnow(),
        reason=None,
    )


def admit(
    session: Session, row: TaskRow, executor: str, admission: Admission, deadline: datetime | None
) -> bool:
    """queued -> starting, as the next attempt; its admission is written once, here."""
    attempt = row.attempt + 1
    if not _cas(
        session,
        row,
        row.attempt,
        [TaskStatus.QUEUED],
        status=TaskStatus.STARTING.value,
        attempt=attempt,
        reason=None,
        exit_code=None,
        executor=executor,
        executor_ref=None,
        started_at=utcnow(),
        finished_at=None,
        deadline=deadline,
    ):
        return False
    session.add(
        AttemptRow(
            task_id=row.id,
            attempt=attempt,
            executor=executor,
            env=dict(admission.env),
            leases=list(admission.leases),
        )
    )
    _event(session, row, TaskAdmitted(attempt=attempt, leases=admission.leases))
    return True


def start(session: Session, row: TaskRow, attempt: int, ref: ExecutorRef) -> bool:
    """starting (or running, when adopted again) -> running, with the executor's reference."""
    if not _cas(session, row, attempt, RUNS, status=TaskStatus.RUNNING.value, executor_ref=ref):
        return False
    _event(session, row, TaskStarted(attempt=attempt, executor=row.executor, ref=ref))
    return True


def requeue(
    session: Session,
    admitter: Admitter,
    row: TaskRow,
    reason: str,
    exit_code: int | None,
    not_before: datetime,
) -> bool:
    """starting/running -> queued, for another attempt after a failed one."""
    attempt = row.attempt
    if not _cas(
        session,
        row,
        attempt,
        RUNS,
        status=TaskStatus.QUEUED.value,
        reason=reason,
        exit_code=exit_code,
        not_before=not_before,
        queued_at=utcnow(),
        executor_ref=None,
    ):
        return False
    admitter.release(session, row.id, f"attempt {attempt} failed")
    _attempt_ended(session, row.id, attempt, TaskStatus.FAILED, reason, exit_code)
    return True


def finish(
    session: Session,
    admitter: Admitter,
    row: TaskRow,
    status: TaskStatus,
    reason: str | None,
    exit_code: int | None = None,
) -> bool:
    """starting/running -> succeeded, failed or cancelled: the attempt has ended."""
    attempt = row.attempt
    if not _end(session, admitter, row, RUNS, status, reason, exit_code):
        return False
    _attempt_ended(session, row.id, attempt, status, reason, exit_code)
    return True


def cancel_waiting(session: Session, admitter: Admitter, row: TaskRow, reason: str) -> bool:
    """pending/queued -> cancelled: it never ran (cancelled, an upstream task broke, or its
    run ended)."""
    return _end(session, admitter, row, WAITING, TaskStatus.CANCELLED, reason, None)


def _end(
    session: Session,
    admitter: Admitter,
    row: TaskRow,
    expected: Iterable[TaskStatus],
    status: TaskStatus,
    reason: str | None,
    exit_code: int | None,
) -> bool:
    if not _cas(
        session,
        row,
        row.attempt,
        expected,
        status=status.value,
        reason=reason,
        exit_code=exit_code,
        finished_at=utcnow(),
    ):
        return False
    admitter.release(session, row.id, status.value)
    secrets = session.get(TaskSecretRow, row.id)
    if secrets is not None:
        session.delete(secrets)  # secret values live no longer than their task
    session.flush()
    update_run_status(session, row.run_id)
    return True


def _attempt_ended(
    session: Session,
    task_id: str,
    attempt: int,
    status: TaskStatus,
    reason: str | None,
    exit_code: int | None,
) -> None:
    record = session.get(AttemptRow, (task_id, attempt))
    if record is not None:  # none for an attempt admitted before the attempts table
        record.status, record.reason, record.exit_code = status.value, reason, exit_code
        record.finished_at = utcnow()


def _event(session: Session, row: TaskRow, event: LineageEvent) -> None:
    session.add(LineageEventRow.of(event, row.run_id, row.id))


def admission_of(session: Session, task_id: str, attempt: int) -> AttemptRow | None:
    return session.get(AttemptRow, (task_id, attempt))


def update_run_status(session: Session, run_id: str) -> None:
    """A run's status, from its tasks' (after one of them changed)."""
    run = session.get(RunRow, run_id)
    if run is None:
        return
    statuses = list(session.scalars(select(TaskRow.status).where(TaskRow.run_id == run_id)))
    run.status = _run_status(statuses).value
    run.updated_at = utcnow()
    done = run.status not in (RunStatus.RUNNING.value, RunStatus.PENDING.value)
    run.finished_at = utcnow() if done else None


def _run_status(statuses: list[str]) -> RunStatus:
    if not statuses:
        return RunStatus.PENDING
    if any(s not in TERMINAL for s in statuses):
        return RunStatus.RUNNING
    if TaskStatus.FAILED.value in statuses:
        return RunStatus.FAILED
    if TaskStatus.CANCELLED.value in statuses:
        return RunStatus.CANCELLED
    return RunStatus.SUCCEEDED
