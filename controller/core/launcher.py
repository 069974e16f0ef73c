"""queued -> starting -> running: admission under the leases, then each launch on a thread.

Admission writes STARTING (with the attempt's leases) before the executor is asked for
anything, so a controller killed mid-launch leaves a record that recover_starting() completes:
it adopts what the executor really runs, or launches the same attempt again.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from typing import Literal

from sqlalchemy import select

from controller.config import Settings
from controller.core import launches, run_end, transitions
from controller.core.ending import Finisher, Outcome, Publish
from controller.core.tracking_runs import Once, TrackingRuns, quietly
from controller.domain.records import TaskStatus
from controller.domain.refs import ExecutorRef
from controller.lineage import cache as lineage_cache
from controller.lineage.projection import catch_up
from controller.ports import Executor, Launch
from controller.scheduling.admission import Admission, Admitter
from controller.store.database import Database
from controller.store.schema import TaskRow, utcnow

log = logging.getLogger("tracectl.supervisor")

DEADLINE_SLACK_S = 30.0
LAUNCH_THREADS = 128  # attempts started at once: mostly waiting (API server, MLflow), cheap


class Launcher:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        executor: Executor,
        admitter: Admitter,
        tracking_runs: TrackingRuns,
        finisher: Finisher,
        publish: Publish,
        wake: threading.Event,
        attempt_ended: threading.Event,
    ) -> None:
        self.db, self.settings, self.executor, self.admitter = db, settings, executor, admitter
        self.tracking_runs, self.finisher, self.publish = tracking_runs, finisher, publish
        self.wake, self.attempt_ended = wake, attempt_ended
        self.pool = ThreadPoolExecutor(LAUNCH_THREADS, thread_name_prefix="tracectl-launch")
        # Admitted attempts (already STARTING in the store) being launched: the watch loop
        # leaves an attempt in flight alone instead of recovering it.
        self.in_flight: set[str] = set()

    @property
    def tracking_uri(self) -> str:
        return self.tracking_runs.tracking.uri

    def shutdown(self) -> None:
        """Launches not begun stay STARTING in the store for the next leader's reconcile()."""
        self.pool.shutdown(wait=True, cancel_futures=True)

    def admit_and_launch(self) -> None:
        with self.db.read() as session:  # an idle round takes no write lock
            queued = session.scalar(
                select(TaskRow.id).where(TaskRow.status == TaskStatus.QUEUED.value).limit(1)
            )
        if queued is None:
            return
        admitted: list[tuple[str, int]] = []
        try:
            self.admit(admitted)
        except BaseException:
            self.in_flight.difference_update(task_id for task_id, _ in admitted)
            raise
        for task_id, attempt in admitted:
            self.publish(task_id, "admitted")
            self.pool.submit(self._launch_in_background, task_id, attempt)

    def admit(self, admitted: list[tuple[str, int]]) -> None:
        """Admit what the leases allow; ADMITTED gets (task, attempt) of each, marked as in
        flight before the commit, or the watch loop would take a STARTING attempt without
        a reference for a launch cut short."""
        with self.db.write() as session:
            queued = list(
                session.scalars(
                    select(TaskRow)
                    .where(TaskRow.status == TaskStatus.QUEUED.value)
                    .order_by(TaskRow.priority.desc(), TaskRow.queued_at, TaskRow.id)
                )
            )
            ready = [r for r in queued if r.not_before is None or r.not_before <= utcnow()]
            ended = run_end.ended_runs(session, {r.run_id for r in ready if run_end.is_service(r)})
            if ended:  # the inspection loop just finished their last jobs: no service starts
                ready = [r for r in ready if r.run_id not in ended or not run_end.is_service(r)]
                self.wake.set()  # the next round's stop_services() cancels them
            if not ready:
                return
            decisions = self.admitter.admit(session, ready)
            for row in ready:
                decision = decisions.get(row.id, Admission(False, "not considered"))
                if not decision.admitted:
                    row.reason = decision.reason
                    continue
                name_for = getattr(self.executor, "name_for", None)
                executor = name_for(row.spec.get("mode")) if name_for else self.executor.name
                timeout = row.spec.get("timeout_s")
                deadline = (
                    utcnow() + timedelta(seconds=timeout + DEADLINE_SLACK_S) if timeout else None
                )
                if not transitions.admit(session, row, executor, decision, deadline):
                    # changed since read (cancelled): the leases just granted go back
                    self.admitter.release(session, row.id, "no longer queued")
                    continue
                admitted.append((row.id, row.attempt))
                self.in_flight.add(row.id)

    def _launch_in_background(self, task_id: str, attempt: int) -> None:
        try:
            self.start_attempt(task_id, attempt)
        finally:
            self.in_flight.discard(task_id)
            # A short command may have ended before its reference was stored: its exit's
            # wake-up found the attempt in flight, so look again now, not at the next round.
            self.attempt_ended.set()

    def launch_of(self, task_id: str) -> Launch | None:
        """TASK_ID's current attempt as launched, if it is STARTING."""
        with self.db.read() as session:
            row = session.get(TaskRow, task_id)
            if row is None or row.status != TaskStatus.STARTING.value:
                return None
            return launches.launch_of(session, row, self.settings, self.tracking_uri)

    def start_attempt(self, task_id: str, attempt: int) -> None:
        launch: Launch | None = None
        try:
            launch = self.launch_of(task_id)
            if launch is None or launch.attempt != attempt:
                return
            complete = functools.partial(self.tracking_runs.complete, self.db)
            launch = replace(launch, completion=Once(complete, launch))
            # The tracking run is made alongside the runner's start: the executor waits for
            # it only at the step that needs it (the local runner: right before the command).
            self.pool.submit(quietly, launch.completed)
            if launch.spec.cache and self._reuse_cached(task_id, attempt, launch.completed()):
                return
            ref = self.executor.launch(launch)
            launch.completed()  # an executor that never needed it: the run and file exist
        except Exception as exc:
            log.exception("launch of %s attempt %s failed", task_id, attempt)
            if launch is not None:  # the tracking run made alongside is closed with it
                with contextlib.suppress(Exception):
                    launch.completed()
            failed = Outcome(TaskStatus.FAILED, f"launch failed: {exc}", None, {})
            self.finisher.finish(task_id, attempt, failed)
            return
        self.mark_running(task_id, attempt, ref)

    def _reuse_cached(self, task_id: str, attempt: int, launch: Launch) -> bool:
        """Finish the attempt from an earlier identical task's outputs, if there is one."""
        key = lineage_cache.key_of_launch(launch.document)
        catch_up(self.db)  # the cache index is a projection of the lineage event log
        with self.db.read() as session:
            mine = session.get(TaskRow, task_id)
            hit = lineage_cache.lookup(
                session, key, exclude_task=task_id, team=mine.team if mine else None
            )
        if hit is None:
            return False
        result = {"outputs": hit.outputs, "exit_code": 0}
        reused = Outcome(TaskStatus.SUCCEEDED, f"cached from run {hit.run_id}", 0, result)
        self.finisher.finish(
            task_id, attempt, reused, functools.partial(lineage_cache.record_hit, hit=hit)
        )
        return True

    def mark_running(self, task_id: str, attempt: int, ref: ExecutorRef) -> None:
        with self.db.write() as session:
            row = session.get(TaskRow, task_id)
            if row is None or not transitions.start(session, row, attempt, ref):
                return
        self.publish(task_id, "started")

    def recover_starting(self, task_id: str) -> Literal["adopted", "relaunched"] | None:
        """A STARTING task with no executor reference: its launch was cut short (controller
        killed, or the store unreachable right after the executor started it). Adopt what
        the executor really runs, or launch the same attempt again."""
        with self.db.read() as session:
            row = session.get(TaskRow, task_id)
            if row is None or row.status != TaskStatus.STARTING.value or row.executor_ref:
                return None
            attempt = row.attempt
            launch = launches.launch_of(session, row, self.settings, self.tracking_uri)
        ref = self.executor.find(launch)
        if ref is None:
            self.start_attempt(task_id, attempt)
            return "relaunched"
        try:  # a local runner may wait for its complete launch file
            self.tracking_runs.complete(self.db, launch)
        except Exception:
            log.warning("could not complete the launch of %s", task_id, exc_info=True)
        self.mark_running(task_id, attempt, ref)
        return "adopted"
