"""The leader's other roles write under its fence too: the log checks and OpenLineage emission.

Replays of a leader deposed while its log-check worker and its emission still run (found by
review: only the supervisor's writes were fenced). After a newer leader's take-over, the old
term's log check stores nothing and its emission hands nothing on; the new term's do both.
On SQLite and on the real PostgreSQL; each replica is its own Database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from controller.archive.local import LocalArtifactStore
from controller.config import Settings
from controller.core import transitions
from controller.core.fencing import Fence, take_over
from controller.domain.refs import LocalRef
from controller.emit.http_sink import HttpLineageSink
from controller.lineage.emission import Emission
from controller.logs.reconcile import LogReconciler
from controller.logs.reconcile_records import enqueue_check
from controller.logs.reconcile_worker import ReconcileWorker
from controller.scheduling.admission import Admission
from controller.store.database import Database
from controller.store.reconcile_schema import LogReconciliationRow
from controller.store.schema import TaskRow
from tests.core.test_transitions import queued_task
from tests.lineage.test_emission import Receiver
from tests.waiting import wait_for


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    out = Receiver()
    yield out
    out.stop()


def ran_once(db: Database) -> None:
    """task_1 admitted and started (its lineage log gains task.admitted and task.started)."""
    with db.write() as session:
        row = session.get(TaskRow, "task_1")
        assert row is not None
        assert transitions.admit(session, row, "local", Admission(True), None)
        assert transitions.start(session, row, 1, LocalRef(host="h", pid=1))


def two_terms(db: Database) -> tuple[Fence, Fence]:
    """The old leader's term, and the term of the leader that took over from it."""
    old = Fence(take_over(db, "a"))
    return old, Fence(take_over(db, "b"))


def check_statuses(db: Database) -> set[str]:
    with db.read() as session:
        return set(session.scalars(select(LogReconciliationRow.status)))


def log_worker(settings: Settings, db: Database) -> ReconcileWorker:
    return ReconcileWorker(LogReconciler(settings, db, LocalArtifactStore(settings)))


def test_a_deposed_leaders_log_check_stores_nothing(
    replicas: tuple[Database, Database],
    tmp_path: Path,
) -> None:
    old_db, new_db = replicas
    queued_task(old_db)
    ran_once(old_db)
    with old_db.write() as session:
        enqueue_check(session, "run_1", "task_1", 1, {"lines": 3, "sha256": "0" * 64})
    old, new = two_terms(new_db)
    settings = Settings(home=tmp_path, log_reconcile_wait_s=0)
    deposed = log_worker(settings, old_db)
    deposed.lead(old)
    wait_for("the deposed worker to stop", lambda: not deposed.alive(), timeout=60)
    assert old.lost.is_set()
    assert check_statuses(new_db) == {"pending"}  # it checked, and its result was refused
    current = log_worker(settings, new_db)
    current.lead(new)
    try:
        wait_for("the new leader's check", lambda: "pending" not in check_statuses(new_db), 60)
    finally:
        current.follow()
    with new_db.read() as session:
        record = session.scalar(
            select(LogReconciliationRow.status).where(LogReconciliationRow.copy == "record")
        )
    assert record == "missing"  # no file record of this attempt was ever written


def test_a_deposed_leaders_emission_hands_nothing_on(
    replicas: tuple[Database, Database],
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    old_db, new_db = replicas
    queued_task(old_db)
    ran_once(old_db)  # one RunEvent to emit: task_1 started
    old, new = two_terms(new_db)
    receiver.start()
    settings = Settings(home=tmp_path, openlineage_url=receiver.url)
    cursor = tmp_path / "openlineage.cursor"
    deposed = Emission(old_db, lambda: HttpLineageSink(settings), cursor, poll_s=0.05, settle_s=0)
    deposed.lead(old)
    wait_for("the deposed emission to stop", lambda: not deposed.alive(), timeout=60)
    deposed.stop()
    assert old.lost.is_set()
    assert receiver.events == [] and not cursor.exists()
    current = Emission(new_db, lambda: HttpLineageSink(settings), cursor, poll_s=0.05, settle_s=0)
    current.lead(new)
    try:
        wait_for("the new leader's event", lambda: receiver.events, timeout=60)
    finally:
        current.stop()
    assert [e["eventType"] for e in receiver.events] == ["START"]
