"""The task lifecycle engine: two loops, run by the replica that leads.

Admission (pending -> queued -> starting -> running: core/promotion.py, core/launcher.py)
answers each submit at once; the watch loop (core/inspection.py, core/ending.py) inspects
every active attempt at its own pace and ends those that stopped. Every transition is
written to the store (core/transitions.py: a compare-and-set on id, attempt and status)
before the executor is asked to act, so a controller killed between any two steps finds, on
restart, a record of what it was about to do, and reconcile() completes it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from controller import backends
from controller.audit.anchors import write_anchor
from controller.config import Settings
from controller.core import run_end
from controller.core.ending import Finisher
from controller.core.fencing import Deposed, Fence, take_over
from controller.core.inspection import Inspector
from controller.core.launcher import Launcher
from controller.core.promotion import PendingTasks
from controller.core.tracking_runs import TrackingRuns
from controller.domain.records import ACTIVE, TaskStatus
from controller.logs.spool_recovery import keep_draining
from controller.logs.status_events import status_event
from controller.ports import Executor, LogReader, Tracking
from controller.scheduling.admission import AdmitAll, Admitter
from controller.store.database import Database
from controller.store.schema import ControllerStateRow, RunRow, TaskRow, utcnow
from controller.store.work_signal import WorkSignal

log = logging.getLogger("tracectl.supervisor")


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        executor: Executor | None = None,
        tracking: Tracking | None = None,
        admitter: Admitter | None = None,
        log_reader: LogReader | None = None,
        on_task_end: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self._store = db  # unfenced; self.db is the current term's fenced view of it
        self.executor = executor or backends.executor(settings)
        self.tracking = tracking or backends.tracking(settings)
        self.tracking_runs = TrackingRuns(self.tracking)
        self.admitter: Admitter = admitter or AdmitAll()
        self.log_reader = log_reader or backends.log_reader(settings)
        self.store = backends.artifact_store(settings)
        self.events = backends.status_publisher(settings)
        self.on_task_end = on_task_end  # after a task's end is written: its long polls return
        self._stop = threading.Event()
        self._last_heartbeat = 0.0
        self._last_anchor = time.monotonic()
        self.wake = threading.Event()
        # An executor that sees its attempts end (the local warm runner) ends the watch
        # loop's wait at once: exit -> `succeeded` without waiting for the next round.
        self.attempt_ended = threading.Event()
        notify_exit = getattr(self.executor, "notify_exit", None)
        if notify_exit is not None:
            notify_exit(self.attempt_ended.set)
        self.pending = PendingTasks()
        self._threads: list[threading.Thread] = []
        self._term(db)

    def _term(self, db: Database) -> None:
        """The parts that write, each on DB (a term's fenced view of the store)."""
        self.db = db
        self.finisher = Finisher(
            db,
            self.settings,
            self.tracking_runs,
            self.admitter,
            self.store,
            self.publish_status,
            self.on_task_end,
        )
        self.launcher = Launcher(
            db,
            self.settings,
            self.executor,
            self.admitter,
            self.tracking_runs,
            self.finisher,
            self.publish_status,
            self.wake,
            self.attempt_ended,
        )
        self.inspector = Inspector(
            db, self.settings, self.executor, self.launcher, self.finisher, self.wake
        )

    # -- terms ----------------------------------------------------------------------------
    def lead(self, fence: Fence) -> None:
        """Run the loops for FENCE's term (core/leadership.py): each of its writes is fenced,
        so once a newer leader took over, none of them commits."""
        self.launcher.shutdown()
        self._term(self._store.guarded(fence.check))
        stop = self._stop = threading.Event()
        # Runners that died, or gave up while Kafka was away, leave spools behind; ship them,
        # now and while this controller leads.
        self._background(keep_draining, "spool-recovery", self.settings, stop)
        # A submit on another replica wakes admission through the store (store/work_signal.py).
        self._background(WorkSignal(self._store).listen, "work-signal", self.wake.set, stop)
        self._background(self._prewarm, "prewarm")
        self.reconcile()
        # Two loops: admission answers each submit at once, and never waits behind the
        # inspection of every active attempt, which keeps its own pace on its own thread.
        self._threads = [
            self._background(self._loop, "supervisor", self.admit, self.wake, stop),
            self._background(self._loop, "watch", self.watch, self.attempt_ended, stop),
        ]

    @staticmethod
    def _background(target: Callable[..., object], name: str, *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=f"tracectl-{name}", daemon=True)
        thread.start()
        return thread

    def _prewarm(self) -> None:
        """Start, in the background, what the first task would otherwise wait for: the warm
        runner, MLflow's import and store (8-38 s on a busy machine before this)."""
        executor_prewarm = getattr(self.executor, "prewarm", lambda: None)
        for prewarm in (executor_prewarm, self.tracking_runs.prewarm):
            try:
                prewarm()
            except Exception:  # the first launch tries again, and says what failed
                log.warning("could not prewarm %s", prewarm, exc_info=True)

    def follow(self) -> None:
        """End this replica's term: the loops stop, and launches not begun stay STARTING in
        the store for the next leader's reconcile()."""
        self._stop.set()
        self.wake.set()
        self.attempt_ended.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads = []
        self.launcher.shutdown()

    def start(self) -> None:
        """Lead without an election (one supervisor, nothing else running): a term of its own."""
        self.lead(Fence(take_over(self._store, f"{self.settings.replica}:{os.getpid()}")))

    def alive(self) -> bool:
        """Both loops run."""
        return bool(self._threads) and all(thread.is_alive() for thread in self._threads)

    def crashed(self) -> bool:
        """A loop of the current term ended (readiness); none run between terms."""
        return bool(self._threads) and not self.alive()

    def stop(self) -> None:
        self.follow()
        self.events.close()  # flush status events still queued for Kafka
        close = getattr(self.executor, "close", None)
        if close is not None:
            close()  # stop background watches before the process (or the cluster) goes

    # -- loops ----------------------------------------------------------------------------
    def _loop(
        self, step: Callable[[], None], woken: threading.Event, stop: threading.Event
    ) -> None:
        while not stop.is_set():
            try:
                step()
            except Deposed:
                log.warning("a newer leader took over: %s stops", step.__name__)
                return
            except Exception:
                log.exception("supervisor %s failed; retrying", step.__name__)
            woken.wait(self.settings.supervisor_interval_s)  # a submit or an exit ends it
            woken.clear()

    def tick(self) -> None:
        """One round of both loops, in this thread (restart, tests)."""
        self.admit()
        self.watch()

    def admit(self) -> None:
        self.pending.promote(self.db, self.admitter)
        run_end.stop_services(self)  # before admission: an ended run starts no more services
        self.launcher.admit_and_launch()

    def watch(self) -> None:
        if self.inspector.inspect_active():
            self.wake.set()  # leases were freed: admit the next tasks now
        self._heartbeat()
        self._anchor()

    def _anchor(self) -> None:
        if time.monotonic() - self._last_anchor < self.settings.anchor_interval_s:
            return
        self._last_anchor = time.monotonic()
        try:
            write_anchor(self.db, self.store)
        except Exception:
            log.warning("could not write a chain anchor; will retry", exc_info=True)

    def _heartbeat(self) -> None:
        if time.monotonic() - self._last_heartbeat < self.settings.lease_ttl_s / 3:
            return
        self._last_heartbeat = time.monotonic()
        with self.db.write() as session:
            ids = [r.id for r in session.scalars(select(TaskRow).where(TaskRow.status.in_(ACTIVE)))]
            if ids:
                self.admitter.heartbeat(session, ids)

    # -- restart --------------------------------------------------------------------------
    def reconcile(self) -> dict[str, int]:
        """Match the store against what really runs, after a (re)start."""
        with self.db.read() as session:
            starting = list(
                session.scalars(
                    select(TaskRow.id).where(TaskRow.status == TaskStatus.STARTING.value)
                )
            )
        outcomes = [self.launcher.recover_starting(task_id) for task_id in starting]
        counts = {"adopted": outcomes.count("adopted"), "relaunched": outcomes.count("relaunched")}
        with self.db.write() as session:
            now = utcnow()
            state = {"at": now.isoformat(), "pid": os.getpid(), **counts}
            session.merge(ControllerStateRow(key="last_start", value=state, updated_at=now))
        self.tick()
        return counts

    def publish_status(self, task_id: str, status: str, **extra: Any) -> None:
        """Publish a status event; a publishing failure never blocks the lifecycle."""
        if not self.events.publishes:
            return
        try:
            with self.db.read() as session:
                row = session.get(TaskRow, task_id)
                run = session.get(RunRow, row.run_id) if row else None
                if row is None or run is None:
                    return
                event = status_event(row, run, status, **extra)
            self.events.publish(event)
        except Exception:
            log.warning("could not publish status %s of %s", status, task_id, exc_info=True)
