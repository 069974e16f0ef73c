"""The watch loop's round: ask the executor about every active attempt, end those that
stopped, stop those cancelled or past their deadline, recover launches cut short."""

from __future__ import annotations

import threading
from datetime import datetime

from sqlalchemy import select

from controller.config import Settings
from controller.core import launches, run_end
from controller.core.ending import Finisher, outcome_of
from controller.core.launcher import Launcher
from controller.core.service_readiness import record_readiness
from controller.domain.records import ACTIVE
from controller.domain.refs import ExecutorRef
from controller.ports import Executor
from controller.store.database import Database
from controller.store.schema import TaskRow, utcnow


class Inspector:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        executor: Executor,
        launcher: Launcher,
        finisher: Finisher,
        wake: threading.Event,
    ) -> None:
        self.db, self.settings, self.executor = db, settings, executor
        self.launcher, self.finisher, self.wake = launcher, finisher, wake
        self._cancelling: set[str] = set()

    def inspect_active(self) -> bool:
        """Inspect every active attempt; True when one of them ended."""
        ended = False
        with self.db.read() as session:  # the columns it needs: not each spec, every round
            active: list[tuple[str, int, ExecutorRef | None, bool, datetime | None]] = list(
                session.execute(
                    select(
                        TaskRow.id,
                        TaskRow.attempt,
                        TaskRow.executor_ref,
                        TaskRow.cancel_requested,
                        TaskRow.deadline,
                    ).where(TaskRow.status.in_(ACTIVE))
                )
            )
        for task_id, attempt, ref, cancel, deadline in active:
            if ref is None:
                if task_id not in self.launcher.in_flight:  # not in flight: it was cut off
                    self.launcher.recover_starting(task_id)
                continue
            state = self.executor.inspect(ref, launches.workspace(self.settings, task_id, attempt))
            if state.phase == "running":
                record_readiness(self.db, task_id, attempt, ref, state)
                if cancel or (deadline is not None and utcnow() > deadline):
                    self._cancel_async(task_id, ref)
                continue
            outcome = run_end.as_stopped(self.db, task_id, outcome_of(state, cancel))
            self.finisher.finish(task_id, attempt, outcome)
            self.executor.cleanup(ref)
            ended = True
        return ended

    def _cancel_async(self, task_id: str, ref: ExecutorRef) -> None:
        if task_id in self._cancelling:
            return
        self._cancelling.add(task_id)

        def run() -> None:
            try:
                self.executor.cancel(ref, self.settings.cancel_grace_s)
            finally:
                self._cancelling.discard(task_id)
                self.wake.set()

        threading.Thread(target=run, name=f"cancel-{task_id}", daemon=True).start()
