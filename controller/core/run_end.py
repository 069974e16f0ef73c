"""Run end: a closed run whose jobs are all over stops its long-running services.

A run is closed explicitly (POST /v1/runs/{id}/close, `tracectl close`, the Airflow hook's
`close_run`) or right after a whole pipeline is submitted. Services have no end of their own,
so they end with their run: once the run is closed and every task that is not a service is
terminal, the supervisor asks each running service to stop (the same path as a cancel) and
records it as succeeded with STOPPED_REASON; leases, log archive and lineage are those of any
finished task. A service still waiting to start then is cancelled: it never ran.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.core import transitions
from controller.domain.events import ServiceStopping
from controller.domain.records import TERMINAL, TaskStatus
from controller.errors import Conflict
from controller.store.database import Database
from controller.store.schema import LineageEventRow, RunRow, TaskRow

if TYPE_CHECKING:
    from controller.core.ending import Outcome
    from controller.core.supervisor import Supervisor

STOPPED_REASON = "stopped: run ended"
NEVER_STARTED_REASON = "run ended before the service started"
SERVICE = "service"


def refuse_if_closed(run: RunRow) -> None:
    """A closed run takes no new tasks: its services may already be stopping."""
    if run.closed_at is not None:
        raise Conflict(
            f"run {run.id} was closed at {run.closed_at.isoformat()}; it takes no "
            "new tasks (submit them to a new run)"
        )


def is_service(row: TaskRow) -> bool:
    return bool(row.spec.get("mode") == SERVICE)


def _ended(session: Session, run_ids: set[str] | None = None) -> dict[str, list[TaskRow]]:
    """The closed runs (of RUN_IDS, or all) with nothing left to run but services: their
    unfinished services, by run."""
    query = (
        select(TaskRow)
        .join(RunRow, RunRow.id == TaskRow.run_id)
        .where(RunRow.closed_at.is_not(None), TaskRow.status.not_in(TERMINAL))
    )
    if run_ids is not None:
        query = query.where(RunRow.id.in_(run_ids))
    by_run: dict[str, list[TaskRow]] = defaultdict(list)
    for row in session.scalars(query):
        by_run[row.run_id].append(row)
    return {run: rows for run, rows in by_run.items() if all(is_service(r) for r in rows)}


def _services_to_stop(db: Database) -> list[str]:
    """Ids of the unfinished services of closed runs that have nothing else left to run."""
    with db.read() as session:
        return [
            row.id for rows in _ended(session).values() for row in rows if not row.cancel_requested
        ]


def ended_runs(session: Session, run_ids: set[str]) -> set[str]:
    """Of RUN_IDS, the closed runs with nothing left to run but services, read in the
    caller's transaction: admission holds back their services in the same transaction that
    would start them, whatever finished since the last stop_services()."""
    return set(_ended(session, run_ids)) if run_ids else set()


def stop_services(supervisor: Supervisor) -> int:
    """Ask the services of every ended run to stop; the number asked."""
    task_ids = _services_to_stop(supervisor.db)
    if not task_ids:
        return 0
    with supervisor.db.write() as session:
        for task_id in task_ids:
            row = session.get(TaskRow, task_id)
            if row is None or row.status in TERMINAL or row.cancel_requested:
                continue
            row.cancel_requested = True  # the supervisor's watch stops it like a cancel
            row.updated_at = datetime.now(UTC)
            session.add(
                LineageEventRow.of(
                    ServiceStopping(attempt=row.attempt, why="run ended"), row.run_id, row.id
                )
            )
            transitions.cancel_waiting(session, supervisor.admitter, row, NEVER_STARTED_REASON)
    supervisor.wake.set()
    return len(task_ids)


def as_stopped(db: Database, task_id: str, outcome: Outcome) -> Outcome:
    """A cancelled service of a closed run was stopped because its run ended: that is how a
    service ends well, so it is recorded as succeeded."""
    if outcome.status != TaskStatus.CANCELLED:
        return outcome
    with db.read() as session:
        row = session.get(TaskRow, task_id)
        run = session.get(RunRow, row.run_id) if row is not None else None
        if row is None or run is None or run.closed_at is None or not is_service(row):
            return outcome
    return dataclasses.replace(outcome, status=TaskStatus.SUCCEEDED, reason=STOPPED_REASON)
