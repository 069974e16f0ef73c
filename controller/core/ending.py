"""running -> finished: an attempt's end, or its retry.

Before the end is written, the attempt's tracking run is closed and its log archived, side
by side (docs/architecture.md, what an end promises); then one transaction writes the end
(a compare-and-set in controller/core/transitions.py), its record, its log check and its
lineage events, so a reader never sees a `succeeded` task without them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from controller.config import Settings
from controller.core import launches, transitions
from controller.core.end_record import record_attempt
from controller.core.tracking_runs import TrackingRuns
from controller.domain.records import TERMINAL, TaskStatus
from controller.lineage import models as lineage_models
from controller.logs.archive import archive_task_log
from controller.logs.file_sink import FileLogReader
from controller.logs.reconcile_records import enqueue_check as enqueue_log_check
from controller.ports import ArtifactStore, ExecutorState
from controller.scheduling.admission import Admitter
from controller.store.database import Database
from controller.store.schema import TaskRow, utcnow

log = logging.getLogger("tracectl.supervisor")

Publish = Callable[..., None]  # publish(task_id, status, **extra): a status event


@dataclass
class Outcome:
    status: TaskStatus
    reason: str | None
    exit_code: int | None
    result: dict[str, Any]


def outcome_of(state: ExecutorState, cancel_requested: bool) -> Outcome:
    """How an attempt that the executor saw stop ended."""
    result = dict(state.result or {})
    if cancel_requested:
        return Outcome(TaskStatus.CANCELLED, "cancelled on request", state.exit_code, result)
    if state.phase == "exited" and state.exit_code == 0 and not state.reason:
        return Outcome(TaskStatus.SUCCEEDED, None, 0, result)
    reason = state.reason or f"exited with code {state.exit_code}"
    return Outcome(TaskStatus.FAILED, reason, state.exit_code, result)


class Finisher:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        tracking_runs: TrackingRuns,
        admitter: Admitter,
        store: ArtifactStore,
        publish: Publish,
        on_task_end: Callable[[], None],
    ) -> None:
        self.db, self.settings, self.tracking_runs = db, settings, tracking_runs
        self.admitter, self.store, self.publish = admitter, store, publish
        self.on_task_end = on_task_end
        # The archive always reads the file record, whatever reader the API uses.
        self.log_record = FileLogReader(settings)

    def finish(
        self,
        task_id: str,
        attempt: int,
        outcome: Outcome,
        also: Callable[[Session, TaskRow], None] | None = None,
    ) -> None:
        """End ATTEMPT with OUTCOME (or queue the next one); ALSO writes with the end."""
        with self.db.read() as session:
            row = session.get(TaskRow, task_id)
            if row is None or row.attempt != attempt or row.status in TERMINAL:
                return  # ended already: nothing to close or archive again
            mlflow_run_id, run_id = row.mlflow_run_id, row.run_id
        models: list[dict[str, str]] = []
        side = [
            threading.Thread(
                target=self.tracking_runs.close,
                args=(mlflow_run_id, outcome.status),
                name=f"tracectl-close-{task_id}",
                daemon=True,
            ),
            threading.Thread(
                target=lambda: models.extend(
                    self.tracking_runs.models(mlflow_run_id, outcome.status)
                ),
                name=f"tracectl-models-{task_id}",
                daemon=True,
            ),
        ]
        for thread in side:
            thread.start()
        log_summary = self.archive_log(run_id, task_id, attempt)
        # read here, not under the store's write lock: the file is the attempt's own
        inputs = launches.launched_inputs(self.settings, task_id, attempt)
        for thread in side:
            thread.join()
        with self.db.write() as session:
            row = session.get(TaskRow, task_id)
            if row is None or row.attempt != attempt:
                return
            retry = (
                outcome.status == TaskStatus.FAILED
                and row.attempt < row.max_attempts
                and not row.cancel_requested
            )
            if not self._end_attempt(session, row, outcome, retry):
                return  # another path ended or requeued it first
            if also is not None:
                also(session, row)
            tracking_uri = self.tracking_runs.tracking.uri if row.mlflow_run_id else None
            record_attempt(session, row, outcome, inputs, tracking_uri, log_summary)
            enqueue_log_check(session, run_id, task_id, attempt, log_summary)
            session.add_all(lineage_models.model_events(run_id, task_id, models))
        if not retry:
            self.on_task_end()  # its long polls (/wait) return now, not at their next tick
        self.publish(
            task_id,
            "retrying" if retry else outcome.status.value,
            lineage={
                "outputs": len(outcome.result.get("outputs") or []),
                "log_lines": log_summary.get("lines"),
                "log_archive": log_summary["archive"].get("uri"),
            },
        )

    def archive_log(self, run_id: str, task_id: str, attempt: int) -> dict[str, Any]:
        """The log's summary (lines, checksum) with where its archived copy is."""
        log_summary = self.log_record.summary(run_id, task_id, attempt)
        try:
            log_summary["archive"] = archive_task_log(
                self.settings, self.store, run_id, task_id, attempt
            )
        except Exception as exc:
            log.warning("archiving the log of %s failed", task_id, exc_info=True)
            log_summary["archive"] = {"error": str(exc)}
        return log_summary

    def _end_attempt(self, session: Session, row: TaskRow, outcome: Outcome, retry: bool) -> bool:
        if not retry:
            return transitions.finish(
                session, self.admitter, row, outcome.status, outcome.reason, outcome.exit_code
            )
        backoff = self.settings.retry_backoff_s * 2 ** (row.attempt - 1)
        return transitions.requeue(
            session,
            self.admitter,
            row,
            f"attempt {row.attempt} failed ({outcome.reason}); retrying",
            outcome.exit_code,
            utcnow() + timedelta(seconds=backoff),
        )
