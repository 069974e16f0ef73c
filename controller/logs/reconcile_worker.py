"""The background log check: after each attempt's archive, off the supervisor's path.

The supervisor only queues (``reconcile_records.enqueue_check``, in the transaction that
ends the attempt); this thread finds ``pending`` rows in the store, so checks queued before
a restart run after it. With ``TRACECTL_LOG_REPAIR=1`` it also repairs what it finds. It runs
on the leader only (core/leadership.py), and writes under the leader's fence: once a newer
leader took over, its next write is refused (``Deposed``) and it stops.
"""

from __future__ import annotations

import copy
import logging
import threading

from controller.core.fencing import Deposed, Fence
from controller.logs.reconcile import LogReconciler
from controller.logs.reconcile_records import pending_attempts

log = logging.getLogger("tracectl.logs.reconcile")
POLL_S = 1.0


class ReconcileWorker:
    def __init__(self, reconciler: LogReconciler, poll_s: float = POLL_S) -> None:
        self.reconciler = reconciler  # unfenced: the API's checks, on any replica
        self._checker = reconciler  # the current term's fenced view of it
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def lead(self, fence: Fence) -> None:
        """Check logs for FENCE's term: every write of the worker runs FENCE.check first."""
        self._checker = copy.copy(self.reconciler)  # shares its per-task locks with the API's
        self._checker.db = self.reconciler.db.guarded(fence.check)
        self.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def follow(self) -> None:
        self.stop()

    def start(self) -> None:
        self._stop = threading.Event()  # started again when this replica leads again
        self._thread = threading.Thread(
            target=self._loop, name="tracectl-log-reconcile", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # A check may be waiting on the index: do not hold the shutdown for it.
            self._thread.join(timeout=5)

    def run_pending(self) -> int:
        """Check every attempt queued now; return how many were checked."""
        checker = self._checker
        with checker.db.read() as session:
            queued = pending_attempts(session)
        done = 0
        for task_id, attempt in queued:
            if self._stop.is_set():
                break
            try:
                checker.check(task_id, attempt, repair=checker.settings.log_repair)
            except Deposed:
                raise
            except Exception:
                log.exception("log reconciliation of %s attempt %d failed", task_id, attempt)
                checker.mark_failed(task_id, attempt)
            done += 1
        return done

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_pending()
            except Deposed:
                log.warning("a newer leader took over: the log checks stop")
                return
            except Exception:  # the store away for a moment: try again next round
                log.warning("log reconciliation round failed", exc_info=True)
            self._stop.wait(self.poll_s)
