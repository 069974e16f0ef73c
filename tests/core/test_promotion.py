"""A round of admission finds, in one read, the pending tasks whose upstream tasks decide.

Tasks pending behind a running task are left alone (no write); once it succeeds they can be
queued, and once one fails they can be cancelled; a task that only goes `after` a running
service may go on, one fed by the service may not (its outputs exist only once it ended).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from controller.core.promotion import PendingTasks
from controller.domain.records import TaskStatus
from controller.store.database import Database
from controller.store.schema import RunRow, TaskRow


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    store = Database(f"sqlite:///{tmp_path / 'tracectl.db'}")
    store.migrate()
    with store.write() as session:
        session.add(RunRow(id="run_1", pipeline="p", status="running"))
    yield store
    store.dispose()


def add(db: Database, task_id: str, status: TaskStatus, **fields: Any) -> None:
    resolved = fields.pop("resolved", {})
    spec = fields.pop("spec", {"command": ["true"]})
    with db.write() as session:
        session.add(
            TaskRow(
                id=task_id,
                run_id="run_1",
                name=task_id,
                spec=spec,
                resolved=resolved,
                status=status.value,
                attempt=0,
            )
        )


def fed_by(task_id: str) -> dict[str, Any]:
    return {"inputs": [{"task": task_id, "artifact": f"task:{task_id}/out", "path": "in"}]}


def set_status(db: Database, task_id: str, status: TaskStatus) -> None:
    with db.write() as session:
        session.execute(update(TaskRow).where(TaskRow.id == task_id).values(status=status.value))


def decided(pending: PendingTasks, db: Database) -> list[str]:
    with db.read() as session:
        return pending.decided(session)


def test_tasks_behind_a_running_task_wait_until_it_succeeds(db: Database) -> None:
    add(db, "gate", TaskStatus.RUNNING)
    for n in range(3):
        add(db, f"w{n}", TaskStatus.PENDING, resolved=fed_by("gate"))
    pending = PendingTasks()
    assert decided(pending, db) == []
    set_status(db, "gate", TaskStatus.SUCCEEDED)
    assert decided(pending, db) == ["w0", "w1", "w2"]


def test_tasks_behind_a_failed_task_are_decided_for_cancelling(db: Database) -> None:
    add(db, "gate", TaskStatus.RUNNING)
    add(db, "w", TaskStatus.PENDING, resolved={"after": ["gate"]})
    pending = PendingTasks()
    assert decided(pending, db) == []
    set_status(db, "gate", TaskStatus.FAILED)
    assert decided(pending, db) == ["w"]


def test_a_running_service_lets_tasks_after_it_go_but_not_tasks_it_feeds(db: Database) -> None:
    add(db, "svc", TaskStatus.RUNNING, spec={"command": ["serve"], "mode": "service"})
    add(db, "after", TaskStatus.PENDING, resolved={"after": ["svc"]})
    add(db, "fed", TaskStatus.PENDING, resolved=fed_by("svc"))
    assert decided(PendingTasks(), db) == ["after"]


def test_a_task_that_left_pending_is_forgotten(db: Database) -> None:
    add(db, "gate", TaskStatus.SUCCEEDED)
    add(db, "w", TaskStatus.PENDING, resolved=fed_by("gate"))
    pending = PendingTasks()
    assert decided(pending, db) == ["w"]
    set_status(db, "w", TaskStatus.QUEUED)
    assert decided(pending, db) == []
