"""Leader election in the store and fencing, on SQLite and on the real PostgreSQL.

Replays of the races found while building it: an old leader paused past its lease that then
resumes (every write it tries is refused, nothing of it commits), and an old leader's write
already in flight when a new leader takes over (the take-over waits for it; the next one is
refused). Each replica is its own Database: two connection pools, no shared lock.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select, text

from bench.leases import scratch_postgres
from controller.config import Settings
from controller.core import transitions
from controller.core.fencing import Deposed, Fence, take_over
from controller.core.leadership import Leadership
from controller.scheduling.admission import Admission
from controller.store.database import Database
from controller.store.leader_election import StoreElection
from controller.store.leader_schema import SUPERVISOR, LeaderRow
from controller.store.schema import AttemptRow, TaskRow
from tests.core.test_transitions import queued_task
from tests.waiting import wait_for

LEASE_S = 0.5


def election(db: Database, holder: str) -> StoreElection:
    return StoreElection(Settings(leader_lease_s=LEASE_S), db, holder)


def admit(db: Database) -> bool:
    with db.write() as session:
        row = session.get(TaskRow, "task_1")
        assert row is not None
        return transitions.admit(session, row, "local", Admission(True), None)


def task_state(db: Database) -> tuple[str, int, int]:
    with db.read() as session:
        row = session.get(TaskRow, "task_1")
        assert row is not None
        attempts = session.scalar(select(func.count()).select_from(AttemptRow))
        return row.status, row.attempt, int(attempts or 0)


def leader_row(db: Database) -> tuple[str | None, int]:
    with db.read() as session:
        row = session.get(LeaderRow, SUPERVISOR)
        assert row is not None
        return row.holder, row.epoch


def test_a_lease_that_has_not_expired_cannot_be_taken(
    replicas: tuple[Database, Database],
) -> None:
    a, b = election(replicas[0], "a"), election(replicas[1], "b")
    assert a.acquire() is True
    assert b.acquire() is False
    assert a.renew() is True
    assert leader_row(replicas[0])[0] == "a"
    wait_for("a's lease to expire and b to take it", b.acquire, timeout=30)
    assert a.renew() is False  # a learns it lost the lease
    assert leader_row(replicas[0])[0] == "b"


def test_a_released_lease_is_taken_at_once(replicas: tuple[Database, Database]) -> None:
    a, b = election(replicas[0], "a"), election(replicas[1], "b")
    assert a.acquire() is True
    a.release()
    assert b.acquire() is True
    assert a.renew() is False


def test_every_take_over_starts_a_later_epoch(replicas: tuple[Database, Database]) -> None:
    first = take_over(replicas[0], "a")
    second = take_over(replicas[1], "b")
    assert second == first + 1
    assert leader_row(replicas[0]) == ("b", second)


def test_an_old_leader_paused_past_its_lease_has_its_writes_refused(
    replicas: tuple[Database, Database],
) -> None:
    """a leads, pauses (no renewal) past its lease; b takes over; a resumes and admits."""
    old_db, new_db = replicas
    queued_task(old_db)
    a, b = election(old_db, "a"), election(new_db, "b")
    assert a.acquire()
    old = Fence(take_over(old_db, "a"))
    wait_for("a's lease to run out and b to take it", b.acquire, timeout=30)
    new = Fence(take_over(new_db, "b"))
    with pytest.raises(Deposed):
        admit(old_db.guarded(old.check))
    assert old.lost.is_set()
    assert task_state(new_db) == ("queued", 0, 0)  # nothing of a's write committed
    assert admit(new_db.guarded(new.check)) is True
    assert task_state(new_db) == ("starting", 1, 1)
    with pytest.raises(Deposed):  # and a stays deposed: it never writes again in that term
        admit(old_db.guarded(old.check))


@pytest.mark.postgres
def test_a_take_over_waits_for_the_old_leaders_write_in_flight(
    postgres: dict[str, str],
) -> None:
    """a's write has passed its fence check when b takes over: b's UPDATE of the leader row
    waits for a's commit (FOR SHARE), so a's write is ordered before b's term, and a's next
    write is refused."""
    with scratch_postgres(postgres["TRACECTL_POSTGRES_URL"]) as url:
        old_db, new_db = Database(url), Database(url)
        old_db.migrate()
        queued_task(old_db)
        old = Fence(take_over(old_db, "a"))
        checked, epochs, order = threading.Event(), [], []

        def new_leader() -> None:
            checked.wait(timeout=30)
            epochs.append(take_over(new_db, "b"))
            order.append("b took over")

        thread = threading.Thread(target=new_leader)
        thread.start()
        with old_db.guarded(old.check).write() as session:
            checked.set()  # the fence check ran: a holds the leader row FOR SHARE
            wait_for("b's take-over to wait on the row lock", lambda: lock_waiters(new_db))
            row = session.get(TaskRow, "task_1")
            assert row is not None
            assert transitions.admit(session, row, "local", Admission(True), None)
            order.append("a committed")
        thread.join(timeout=60)
        assert order == ["a committed", "b took over"]
        assert epochs == [old.epoch + 1]
        assert task_state(new_db) == ("starting", 1, 1)
        with pytest.raises(Deposed), old_db.guarded(old.check).write():
            pass
        old_db.dispose()
        new_db.dispose()


def lock_waiters(db: Database) -> int:
    with db.read() as session:
        count = session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        )
    return int(count or 0)


class Recorder:
    def __init__(self) -> None:
        self.terms: list[int] = []
        self.followed = threading.Event()

    def lead(self, fence: Fence) -> None:
        self.terms.append(fence.epoch)

    def follow(self) -> None:
        self.followed.set()


class Paused(StoreElection):
    """A store election whose renewals wait while PAUSE is set (a stalled leader)."""

    pause = threading.Event()

    def renew(self) -> bool:
        while self.pause.is_set():
            threading.Event().wait(0.05)
        return super().renew()


def test_a_stalled_leader_is_replaced_and_steps_down_when_it_resumes(
    replicas: tuple[Database, Database],
) -> None:
    roles = Recorder(), Recorder()
    settings = Settings(leader_lease_s=LEASE_S)
    a = Leadership(Paused(settings, replicas[0], "a"), replicas[0], "a", [roles[0]], LEASE_S)
    b = Leadership(election(replicas[1], "b"), replicas[1], "b", [roles[1]], LEASE_S)
    a.start()
    b.start()
    try:
        assert a.leading and not b.leading
        Paused.pause.set()  # a stops renewing, as a process paused past its lease would
        wait_for("b to lead", lambda: roles[1].terms, timeout=30)
        old = a.fence
        assert old is not None and roles[1].terms == [old.epoch + 1]
        # a's writes are refused while it still thinks it leads
        with pytest.raises(Deposed), replicas[0].guarded(old.check).write():
            pass
        Paused.pause.clear()
        wait_for("a to step down", roles[0].followed.is_set, timeout=30)
        assert not a.leading and b.leading
    finally:
        Paused.pause.clear()
        a.stop()
        b.stop()
