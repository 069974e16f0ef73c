"""The controller's use cases, shared by the REST API, the CLI and the demo."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from controller import backends
from controller.auth.principal import current
from controller.auth.scope import Scope
from controller.config import Settings
from controller.core import transitions, views
from controller.core.leadership import Leadership
from controller.core.submission import Origin, Submission
from controller.core.supervisor import Supervisor
from controller.core.waiters import TaskWaiters
from controller.domain.events import RunClosed
from controller.domain.records import TERMINAL, Artifact, QueueInfo, Run, Task, TaskStatus
from controller.domain.requests import RunCreate, TaskCreate
from controller.errors import Conflict, NotFound
from controller.lineage.capture import with_leases
from controller.ports import LogLine, LogReader
from controller.scheduling import lease_views
from controller.scheduling.admission import Admitter
from controller.scheduling.factory import build_admitter
from controller.store.database import Database
from controller.store.run_rows import run_tasks
from controller.store.schema import (
    ArtifactRow,
    AuditRow,
    LineageEventRow,
    LineageRecordRow,
    RunRow,
    TaskInputRow,
    TaskRow,
)
from controller.store.work_signal import WorkSignal

log = logging.getLogger("tracectl.service")

# What a task's lineage shows of its submit-time resolution before its record exists.
RESOLVED_SHOWN = ("commit", "dirty", "data", "ref", "preflight", "environment", "image")


def _after_cursor(
    created_at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[str],
    cursor: str,
    *,
    newest_first: bool,
) -> ColumnElement[bool]:
    """The rows past CURSOR in a keyset page ordered by (created_at, id).

    The id breaks ties between rows created in the same instant, so no row is skipped or
    repeated across pages; NEWEST_FIRST pages walk back in time (runs), the others forward
    (tasks, in submission order).
    """
    at, last_id = views.decode_cursor(cursor)
    if newest_first:
        return or_(created_at < at, and_(created_at == at, row_id < last_id))
    return or_(created_at > at, and_(created_at == at, row_id > last_id))


class ControllerService:
    def __init__(
        self, settings: Settings, db: Database | None = None, admitter: Admitter | None = None
    ) -> None:
        self.settings = settings
        self.db = db or Database(settings.store_url)
        self.admitter = admitter or build_admitter(settings)
        self.submission = Submission(
            settings, self.db, self.admitter, backends.image_registry(settings)
        )
        self._supervisor: Supervisor | None = None
        self.leadership: Leadership | None = None  # set by the app when it runs the loops
        self.logs: LogReader = backends.log_reader(settings)
        self.waiters = TaskWaiters(self._ended_of)

    @property
    def supervisor(self) -> Supervisor:
        if self._supervisor is None:
            self._supervisor = Supervisor(
                self.settings,
                self.db,
                admitter=self.admitter,
                log_reader=self.logs,
                on_task_end=self.waiters.nudge,
            )
        return self._supervisor

    def sync_inventory(self) -> None:
        """Mirror the inventory file, read at start-up, into the store."""
        with self.db.write() as session:
            self.admitter.sync(session)

    def _wake(self) -> None:
        """Admit new work now: here when this replica leads, else through the store."""
        if self._supervisor is not None:
            self._supervisor.wake.set()
        if self.leadership is None or self.leadership.leading:
            return
        try:
            WorkSignal(self.db).send()
        except Exception:  # what was submitted is committed: the leader's next round finds it
            log.warning("could not wake the leader; its next round admits the work", exc_info=True)

    # -- runs ---------------------------------------------------------------------------
    def create_run(
        self, request: RunCreate, team: str | None = None, origin: Origin | None = None
    ) -> tuple[Run, bool]:
        """A run, with its tasks (request.tasks) in the same transaction."""
        row, created = self.submission.create_run(request, team or current().team, origin)
        if created and request.tasks:
            for task_id in self.run_task_ids(row.id).values():
                self.supervisor.publish_status(task_id, "submitted")
            self._wake()
        return views.run_record(row), created

    def run_task_ids(self, run_id: str) -> dict[str, str]:
        """The run's task ids by name, in submission order."""
        with self.db.read() as session:
            rows = session.execute(
                select(TaskRow.name, TaskRow.id)
                .where(TaskRow.run_id == run_id)
                .order_by(TaskRow.created_at, TaskRow.id)
            ).all()
        return {name: task_id for name, task_id in rows}

    def get_run(self, run_id: str) -> Run:
        with self.db.read() as session:
            row = session.get(RunRow, run_id)
            if row is None or not Scope.current().sees(row.team):
                raise NotFound(f"run {run_id} does not exist")
            return views.run_record(row)

    def list_runs(
        self,
        limit: int,
        cursor: str | None,
        pipeline: str | None = None,
        status: str | None = None,
    ) -> dict[str, Any]:
        query = select(RunRow).order_by(RunRow.created_at.desc(), RunRow.id.desc())
        query = query.where(Scope.current().runs(RunRow.id))
        if pipeline:
            query = query.where(RunRow.pipeline == pipeline)
        if status:
            query = query.where(RunRow.status == status)
        if cursor:
            query = query.where(
                _after_cursor(RunRow.created_at, RunRow.id, cursor, newest_first=True)
            )
        with self.db.read() as session:
            rows = list(session.scalars(query.limit(limit + 1)))
            items = [views.run_record(r) for r in rows]
        return views.page(items, limit, lambda r: views.encode_cursor(r.created_at, r.id))

    # -- tasks --------------------------------------------------------------------------
    def submit_task(self, run_id: str, request: TaskCreate) -> tuple[Task, bool]:
        self.get_run(run_id)  # 404 unless the caller's team owns the run
        row, created = self.submission.submit_task(run_id, request)
        if created:
            self.supervisor.publish_status(row.id, "submitted")
        self._wake()
        return self.get_task(row.id), created

    def get_task(self, task_id: str) -> Task:
        with self.db.read() as session:
            row = session.get(TaskRow, task_id)
            if row is None or not Scope.current().sees(row.team):
                raise NotFound(f"task {task_id} does not exist")
            return views.task_record(row, self._queue_info(session, row))

    def _queue_info(
        self, session: Session, row: TaskRow, positions: dict[str, int] | None = None
    ) -> QueueInfo | None:
        if row.status == TaskStatus.PENDING.value:
            return QueueInfo(position=None, reason=row.reason or "waiting for upstream tasks")
        if row.status != TaskStatus.QUEUED.value:
            return None
        # the admitter's order (priority, fair share, FIFO), the same as GET /v1/queue
        if positions is None:
            positions = lease_views.queue_positions(session, self.admitter)
        return QueueInfo(position=positions.get(row.id), reason=row.reason or "waiting to start")

    def list_tasks(
        self,
        limit: int,
        cursor: str | None,
        run_id: str | None = None,
        status: str | None = None,
        newest_first: bool = False,
    ) -> dict[str, Any]:
        query = select(TaskRow).order_by(
            *(
                (TaskRow.created_at.desc(), TaskRow.id.desc())
                if newest_first
                else (TaskRow.created_at, TaskRow.id)
            )
        )
        query = query.where(Scope.current().runs(TaskRow.run_id))
        if run_id:
            query = query.where(TaskRow.run_id == run_id)
        if status:
            query = query.where(TaskRow.status == status)
        if cursor:
            query = query.where(
                _after_cursor(TaskRow.created_at, TaskRow.id, cursor, newest_first=newest_first)
            )
        with self.db.read() as session:
            rows = list(session.scalars(query.limit(limit + 1)))
            positions = (
                lease_views.queue_positions(session, self.admitter)
                if any(r.status == TaskStatus.QUEUED.value for r in rows)
                else {}
            )
            items = [views.task_record(r, self._queue_info(session, r, positions)) for r in rows]
        return views.page(items, limit, lambda t: views.encode_cursor(t.created_at, t.id))

    def cancel_task(self, task_id: str) -> Task:
        self.get_task(task_id)  # 404 unless the caller's team owns the task
        with self.db.write() as session:
            row = session.get(TaskRow, task_id)
            if row is None:
                raise NotFound(f"task {task_id} does not exist")
            if row.status in {s.value for s in (TaskStatus.SUCCEEDED, TaskStatus.FAILED)}:
                raise Conflict(f"task {task_id} already {row.status}; nothing to cancel")
            if row.status != TaskStatus.CANCELLED.value:
                row.cancel_requested = True
                row.updated_at = datetime.now(UTC)
                transitions.cancel_waiting(
                    session, self.supervisor.admitter, row, "cancelled on request"
                )  # if it never started
                session.add(
                    AuditRow(
                        actor=current().name,
                        action="task.cancel",
                        target=task_id,
                        detail={"status": row.status},
                    )
                )
        self._wake()
        return self.get_task(task_id)

    def cancel_run(self, run_id: str) -> Run:
        """Cancel a run: closed first (durable intent: no task can join it while its tasks
        are cancelled), then every task of it that has not ended."""
        self.close_run(run_id)  # 404 unless the caller's team owns the run
        with self.db.read() as session:
            ids = [t.id for t in session.scalars(select(TaskRow).where(TaskRow.run_id == run_id))]
        for task_id in ids:
            with contextlib.suppress(Conflict):  # already ended: nothing to cancel
                self.cancel_task(task_id)
        with self.db.write() as session:
            transitions.update_run_status(session, run_id)
        return self.get_run(run_id)

    def close_run(self, run_id: str) -> Run:
        """Close a run: it takes no new tasks, and its services stop once its other tasks
        have ended (controller/core/run_end.py). Closing a closed run changes nothing."""
        self.get_run(run_id)  # 404 unless the caller's team owns the run
        with self.db.write() as session:
            row = session.get(RunRow, run_id)
            if row is None:
                raise NotFound(f"run {run_id} does not exist")
            if row.closed_at is None:
                row.closed_at = row.updated_at = datetime.now(UTC)
                session.add(LineageEventRow.of(RunClosed(), run_id))
                session.add(
                    AuditRow(
                        actor=current().name,
                        action="run.close",
                        target=run_id,
                        detail={"status": row.status},
                    )
                )
        self._wake()
        return self.get_run(run_id)

    def wait_task(self, task_id: str, timeout_s: float) -> Task:

        deadline = time.monotonic() + timeout_s
        task = self.get_task(task_id)
        while not task.status.terminal and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            task = self.get_task(task_id)
        return task

    async def await_task(self, task_id: str, timeout_s: float) -> Task:
        """wait_task holding no thread while it waits, and reading the task twice: once
        before, once after its end (or the timeout); one query per round in between finds
        the ended tasks of every waiter (core/waiters.py)."""
        task = await asyncio.to_thread(self.get_task, task_id)
        if task.status.terminal or timeout_s <= 0:
            return task
        await self.waiters.until_ended(task_id, timeout_s)
        return await asyncio.to_thread(self.get_task, task_id)

    def _ended_of(self, task_ids: set[str]) -> set[str]:
        with self.db.read() as session:
            query = select(TaskRow.id).where(TaskRow.id.in_(task_ids), TaskRow.status.in_(TERMINAL))
            return set(session.scalars(query))

    # -- artifacts and lineage ----------------------------------------------------------
    def artifacts(
        self, run_id: str | None = None, task_id: str | None = None, sha256: str | None = None
    ) -> list[Artifact]:
        query = select(ArtifactRow).order_by(ArtifactRow.id)
        query = query.where(Scope.current().runs(ArtifactRow.run_id))
        if run_id:
            query = query.where(ArtifactRow.run_id == run_id)
        if task_id:
            query = query.where(ArtifactRow.task_id == task_id)
        if sha256:
            query = query.where(ArtifactRow.sha256 == sha256)
        with self.db.read() as session:
            return [views.artifact_record(r) for r in session.scalars(query)]

    def task_lineage(self, task_id: str) -> dict[str, Any]:
        self.get_task(task_id)
        with self.db.read() as session:
            row = session.get(TaskRow, task_id)
            if row is None:
                raise NotFound(f"task {task_id} does not exist")
            record = session.get(LineageRecordRow, task_id)
            leases = lease_views.task_leases(session, [task_id])[task_id]
            if record is None:
                return with_leases(
                    {
                        "task_id": task_id,
                        "status": row.status,
                        "complete": False,
                        "resolved": {k: v for k, v in row.resolved.items() if k in RESOLVED_SHOWN},
                    },
                    leases,
                )
            return {**with_leases(record.record, leases), "complete": True}

    def run_lineage(self, run_id: str) -> dict[str, Any]:
        run = self.get_run(run_id)
        with self.db.read() as session:
            tasks = run_tasks(session, run_id)
            leases = lease_views.task_leases(session, [t.id for t in tasks])
            records = {
                r.task_id: with_leases(r.record, leases[r.task_id])
                for r in session.scalars(
                    select(LineageRecordRow).where(LineageRecordRow.run_id == run_id)
                )
                if r.task_id in leases
            }
            edges = [
                {"from": f"artifact:{i.sha256}", "to": f"task:{i.task_id}", "path": i.path}
                for i in session.scalars(
                    select(TaskInputRow).where(TaskInputRow.task_id.in_([t.id for t in tasks]))
                )
            ]
        for task in tasks:
            record = records.get(task.id) or {}
            for data in record.get("data", []):
                edges.append(
                    {
                        "from": f"data:{data['path']}@{data['md5']}",
                        "to": f"task:{task.id}",
                        "path": data["path"],
                    }
                )
            for out in record.get("outputs", []):
                edges.append(
                    {
                        "from": f"task:{task.id}",
                        "to": f"artifact:{out['sha256']}",
                        "path": out["path"],
                    }
                )
        return {
            "run": run.model_dump(mode="json"),
            "tasks": [
                {
                    "id": t.id,
                    "name": t.name,
                    "status": t.status,
                    "reason": t.reason,
                    "lineage": records.get(t.id),
                }
                for t in tasks
            ],
            "edges": edges,
        }

    def lineage_events(
        self, run_id: str, after_id: int = 0, limit: int = 500
    ) -> list[dict[str, Any]]:
        self.get_run(run_id)
        with self.db.read() as session:
            rows = session.scalars(
                select(LineageEventRow)
                .where(LineageEventRow.run_id == run_id, LineageEventRow.id > after_id)
                .order_by(LineageEventRow.id)
                .limit(limit)
            )
            return [
                {
                    "id": r.id,
                    "task_id": r.task_id,
                    "type": r.type,
                    "payload": r.payload,
                    "created_at": r.created_at.isoformat(),
                }
                for r in rows
            ]

    def passport(self, run_id: str) -> dict[str, Any]:
        from controller.core.passport import build_passport

        self.get_run(run_id)
        document = build_passport(
            self.db, run_id, self.supervisor.tracking, self.logs, self.settings.passport_key
        )
        if document is None:
            raise NotFound(f"run {run_id} does not exist")
        return document

    # -- logs ---------------------------------------------------------------------------
    def task_logs(
        self, task_id: str, attempt: int | None, after_seq: int, limit: int
    ) -> list[LogLine]:
        task = self.get_task(task_id)
        return self.logs.read(task.run_id, task.id, attempt, after_seq, limit)
