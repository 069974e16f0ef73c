"""pending -> queued: one read per round finds the pending tasks whose upstream tasks decide.

Each admission round used to load every pending task, then its upstream tasks, inside a
write transaction: with hundreds of tasks waiting on one long task, hundreds of queries five
times a second under the store's write lock, the controller's largest use of CPU and the
cause of slow submits (bench/waiters.py). Now a round reads the pending ids and the
statuses of the tasks they wait for (what a task waits for never changes, so that is read
once per task) and a round writes only for the tasks that can move.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.core import transitions
from controller.domain.records import TaskStatus
from controller.scheduling.admission import Admitter
from controller.store.database import Database
from controller.store.schema import TaskRow

BROKEN = (TaskStatus.FAILED.value, TaskStatus.CANCELLED.value)


@dataclass(frozen=True)
class Upstream:
    """The tasks a pending task waits for: FED feed it an input, the others only go first."""

    fed: frozenset[str]
    after: frozenset[str]

    @classmethod
    def of(cls, resolved: dict[str, Any]) -> Upstream:
        fed = {i["task"] for i in resolved.get("inputs", []) if "task" in i}
        return cls(frozenset(fed), frozenset(resolved.get("after", [])) | fed)


def upstream_done(status: str, is_service: bool, feeds: bool) -> bool:
    """Whether a pending task may go on past an upstream task: it succeeded, or it is a
    service that is running and FEEDS no input (a service's outputs exist only once it ended)."""
    if status == TaskStatus.SUCCEEDED.value:
        return True
    return is_service and status == TaskStatus.RUNNING.value and not feeds


class PendingTasks:
    """What the pending tasks wait for, kept between rounds of one supervisor."""

    def __init__(self) -> None:
        self._waits: dict[str, Upstream] = {}

    def decided(self, session: Session) -> list[str]:
        """The pending tasks that can be queued, or must be cancelled, now."""
        pending = set(
            session.scalars(select(TaskRow.id).where(TaskRow.status == TaskStatus.PENDING.value))
        )
        self._learn(session, pending)
        needed = {up for task_id in pending for up in self._waits[task_id].after}
        states = _states(session, needed)
        return sorted(t for t in pending if _decides(self._waits[t], states))

    def _learn(self, session: Session, pending: set[str]) -> None:
        for gone in self._waits.keys() - pending:
            del self._waits[gone]
        new = pending - self._waits.keys()
        if new:
            rows = session.execute(select(TaskRow.id, TaskRow.resolved).where(TaskRow.id.in_(new)))
            self._waits.update({row.id: Upstream.of(row.resolved) for row in rows})

    def promote(self, db: Database, admitter: Admitter) -> None:
        """Queue the pending tasks whose upstream tasks allow, cancel those where one broke."""
        with db.read() as session:  # an idle round, or a blocked one, takes no write lock
            decided = self.decided(session)
        if not decided:
            return
        with db.write() as session:
            for row in session.scalars(select(TaskRow).where(TaskRow.id.in_(decided))):
                _promote_one(session, admitter, row)


def _promote_one(session: Session, admitter: Admitter, row: TaskRow) -> None:
    """Queue ROW, or cancel it, read again under the write lock: the round's read may be a
    moment old."""
    waits = Upstream.of(row.resolved)
    ups = list(session.scalars(select(TaskRow).where(TaskRow.id.in_(waits.after))))
    broken = [u for u in ups if u.status in BROKEN]
    if broken:
        reason = f"upstream task {broken[0].name!r} {broken[0].status}"
        transitions.cancel_waiting(session, admitter, row, reason)
    elif all(
        upstream_done(u.status, u.spec.get("mode") == "service", u.id in waits.fed) for u in ups
    ):
        transitions.promote(session, row)


def _states(session: Session, ids: set[str]) -> dict[str, tuple[str, bool]]:
    """(status, is a service) of each of IDS; a task's spec is read only while it runs."""
    if not ids:
        return {}
    rows = session.execute(select(TaskRow.id, TaskRow.status).where(TaskRow.id.in_(ids))).all()
    running = [task_id for task_id, status in rows if status == TaskStatus.RUNNING.value]
    services: set[str] = set()
    if running:
        specs = session.execute(select(TaskRow.id, TaskRow.spec).where(TaskRow.id.in_(running)))
        services = {row.id for row in specs if row.spec.get("mode") == "service"}
    return {task_id: (status, task_id in services) for task_id, status in rows}


def _decides(waits: Upstream, states: dict[str, tuple[str, bool]]) -> bool:
    known = [(t, states[t]) for t in waits.after if t in states]
    if any(status in BROKEN for _, (status, _s) in known):
        return True
    return all(upstream_done(status, service, t in waits.fed) for t, (status, service) in known)
