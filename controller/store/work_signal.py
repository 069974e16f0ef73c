"""Wake the leader from any replica: work submitted on a follower is admitted at once.

A submit wakes its own process's supervisor, which on a follower runs no loops: without a
signal through the store the task waited for the leader's next round. On PostgreSQL the
follower sends NOTIFY on a channel the leader LISTENs to (delivered the moment it commits);
on any other store it adds one to a counter row that the leader reads every POLL_S.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import make_url

from controller.store.database import Database
from controller.store.schema import ControllerStateRow, utcnow

CHANNEL = "tracectl_work"
COUNTER = "work.signal"  # the controller_state row of stores without NOTIFY
POLL_S = 0.05
log = logging.getLogger("tracectl.work_signal")


class WorkSignal:
    def __init__(self, db: Database) -> None:
        self.db = db

    def send(self) -> None:
        """Tell the leader, wherever it runs, that there is work to admit."""
        if not self.db.is_sqlite:
            with self.db.write() as session:
                session.execute(text(f"NOTIFY {CHANNEL}"))
            return
        with self.db.write() as session:
            row = session.get(ControllerStateRow, COUNTER)
            if row is None:
                session.add(ControllerStateRow(key=COUNTER, value={"n": 1}))
            else:
                row.value, row.updated_at = {"n": int(row.value.get("n", 0)) + 1}, utcnow()

    def listen(self, wake: Callable[[], None], stop: threading.Event) -> None:
        """Call WAKE on each signal until STOP is set (a thread of the leader)."""
        while not stop.is_set():
            try:
                (self._counter if self.db.is_sqlite else self._notifies)(wake, stop)
            except Exception:  # the store away for a moment: rounds still admit meanwhile
                log.warning("listening for submits on other replicas failed", exc_info=True)
                stop.wait(1.0)

    def _notifies(self, wake: Callable[[], None], stop: threading.Event) -> None:
        import psycopg

        url = make_url(self.db.url).set(drivername="postgresql")
        with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            while not stop.is_set():
                for _ in conn.notifies(timeout=0.5):
                    wake()

    def _counter(self, wake: Callable[[], None], stop: threading.Event) -> None:
        seen = self._count()
        while not stop.wait(POLL_S):
            count = self._count()
            if count != seen:
                seen = count
                wake()

    def _count(self) -> int:
        with self.db.read() as session:
            row = session.get(ControllerStateRow, COUNTER)
            return 0 if row is None else int(row.value.get("n", 0))
