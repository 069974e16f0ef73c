"""The status transitions are real compare-and-sets: two controllers (two Database objects,
two connections, no shared lock) both read a queued task on PostgreSQL, then both move it on;
exactly one wins, and only the winner's event and attempt record are written. (SQLite's
writers take the database lock before they read, so there a second writer never reads stale.)"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bench.leases import scratch_postgres
from controller.core import transitions
from controller.domain.records import TaskStatus
from controller.domain.refs import LocalRef
from controller.scheduling.admission import Admission, AdmitAll
from controller.store.database import Database
from controller.store.schema import AttemptRow, LineageEventRow, RunRow, TaskRow

Move = Callable[[Session, TaskRow], bool]


def admit(session: Session, row: TaskRow) -> bool:
    return transitions.admit(session, row, "local", Admission(True), None)


def cancel(session: Session, row: TaskRow) -> bool:
    return transitions.cancel_waiting(session, AdmitAll(), row, "cancelled")


@pytest.fixture
def store_url(postgres: dict[str, str]) -> Iterator[str]:
    with scratch_postgres(postgres["TRACECTL_POSTGRES_URL"]) as url:
        yield url


def queued_task(db: Database) -> str:
    with db.write() as session:
        session.add(RunRow(id="run_1", pipeline="p", status="running"))
        session.flush()
        session.add(
            TaskRow(
                id="task_1",
                run_id="run_1",
                name="t",
                spec={"command": ["true"]},
                resolved={},
                status=TaskStatus.QUEUED.value,
                attempt=0,
            )
        )
    return "task_1"


def race(url: str, first: Move, second: Move) -> list[bool]:
    """FIRST and SECOND, each on its own Database, both after reading the task queued."""
    dbs = [Database(url), Database(url)]
    barrier = threading.Barrier(2)
    won: list[bool | BaseException] = [False, False]

    def writer(index: int, move: Move) -> None:
        try:
            with dbs[index].write() as session:
                row = session.get(TaskRow, "task_1")
                assert row is not None and row.status == TaskStatus.QUEUED.value
                barrier.wait(timeout=30)  # both have read it queued
                won[index] = move(session, row)
        except BaseException as exc:  # raised in the test's thread below
            won[index] = exc

    threads = [threading.Thread(target=writer, args=(i, m)) for i, m in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for db in dbs:
        db.write_engine.dispose()
    errors = [w for w in won if isinstance(w, BaseException)]
    if errors:
        raise errors[0]
    return [bool(w) for w in won]


def counts(db: Database) -> tuple[str, int, int, int]:
    with db.read() as session:
        row = session.get(TaskRow, "task_1")
        assert row is not None
        events = session.scalar(
            select(func.count())
            .select_from(LineageEventRow)
            .where(LineageEventRow.type == "task.admitted")
        )
        attempts = session.scalar(select(func.count()).select_from(AttemptRow))
        return row.status, row.attempt, int(events or 0), int(attempts or 0)


@pytest.mark.postgres
def test_two_controllers_admitting_the_same_task_admit_it_once(store_url: str) -> None:
    db = Database(store_url)
    db.migrate()
    queued_task(db)
    won = race(store_url, admit, admit)
    assert sorted(won) == [False, True]
    assert counts(db) == ("starting", 1, 1, 1)
    db.write_engine.dispose()


@pytest.mark.postgres
def test_an_admission_racing_a_cancel_leaves_only_the_winners_state(store_url: str) -> None:
    db = Database(store_url)
    db.migrate()
    queued_task(db)
    admitted, cancelled = race(store_url, admit, cancel)
    assert admitted != cancelled  # exactly one
    expected = ("starting", 1, 1, 1) if admitted else ("cancelled", 0, 0, 0)
    assert counts(db) == expected
    db.write_engine.dispose()


def test_a_transition_from_a_status_the_task_has_left_changes_nothing(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'cas.db'}")
    db.migrate()
    queued_task(db)
    with db.write() as session:
        row = session.get(TaskRow, "task_1")
        assert row is not None
        ref = LocalRef(pid=1, create_time=0.0, host="h")
        assert transitions.start(session, row, 0, ref) is False  # never admitted
        assert transitions.promote(session, row) is False  # not pending
    assert counts(db) == ("queued", 0, 0, 0)
