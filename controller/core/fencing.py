"""Fencing: a leader's writes commit only while the store's epoch is still the one it took.

Every take-over adds one to the epoch of the `leader` row. A leader's writes run
`Fence.check` first in their own transaction: a read of the row at its epoch, `FOR SHARE`
on PostgreSQL, held to commit. A take-over's UPDATE of that row waits for every such write
in flight to commit, and any write that checks after it finds the new epoch and is rolled
back (`Deposed`). On SQLite, BEGIN IMMEDIATE serialises every writer anyway. So once a new
leader has taken over, no write of an older leader commits, however long it was paused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controller.store.database import Database
from controller.store.leader_schema import SUPERVISOR, LeaderRow
from controller.store.schema import utcnow


class Deposed(RuntimeError):
    """A newer leader took over: this replica's write was refused."""


def ensure_row(db: Database, name: str = SUPERVISOR) -> None:
    """The leader row (made by migration 0017; a store made by create_all lacks it)."""
    if current_epoch(db, name) is not None:
        return
    try:
        with db.write() as session:
            session.add(LeaderRow(name=name, epoch=0))
    except IntegrityError:
        pass  # another replica made it first


def current_epoch(db: Database, name: str = SUPERVISOR) -> int | None:
    with db.read() as session:
        return session.scalar(select(LeaderRow.epoch).where(LeaderRow.name == name))


def take_over(db: Database, holder: str, name: str = SUPERVISOR) -> int:
    """Start a new term for HOLDER: the epoch, one more than any before it."""
    ensure_row(db, name)
    with db.write() as session:
        session.execute(
            update(LeaderRow)
            .where(LeaderRow.name == name)
            .values(epoch=LeaderRow.epoch + 1, holder=holder, acquired_at=utcnow())
        )
        epoch = session.scalar(select(LeaderRow.epoch).where(LeaderRow.name == name))
    assert epoch is not None
    return epoch


class Fence:
    """The term a leader holds: `check` refuses a write once a newer term began."""

    def __init__(
        self, epoch: int, on_lost: Callable[[], None] = lambda: None, name: str = SUPERVISOR
    ) -> None:
        self.epoch, self.name, self._on_lost = epoch, name, on_lost
        self.lost = threading.Event()
        self._held = (
            select(LeaderRow.epoch)
            .where(LeaderRow.name == name, LeaderRow.epoch == epoch)
            .with_for_update(read=True)  # FOR SHARE: a take-over waits for this write
        )

    def check(self, session: Session) -> None:
        if self.lost.is_set() or session.scalar(self._held) is None:
            self.lost.set()
            self._on_lost()
            raise Deposed(f"epoch {self.epoch} is over: a newer leader took over")
