"""Automatic OpenLineage emission: the lineage event log, in order, to a LineageSink.

A background thread reads the lineage event log (`lineage_events`) after a cursor, turns
each `task.started` / `task.completed` row into the RunEvent `GET /v1/runs/{id}/openlineage`
shows for it, and puts it into the sink (HTTP or Kafka; each spools on disk and retries). The
cursor (the id of the last row handed to the sink) is a file beside the sink's spool, written
after each event: a restart resumes after it, so nothing is lost and nothing is put twice
unless the process dies between the two writes. Rows are read once they are SETTLE_S old,
so a transaction that took a lower id and committed later is not skipped. Only the leader
emits (core/leadership.py): each batch is handed on only after a fenced transaction found
its term still current, so a deposed leader stops (``Deposed``) before its next batch.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from controller.core.fencing import Deposed, Fence
from controller.domain.events import EventType
from controller.lineage.openlineage import keyed_events
from controller.ports import LineageSink
from controller.store.database import Database
from controller.store.schema import LineageEventRow, utcnow

log = logging.getLogger("tracectl.lineage.emission")

EMITTED = (EventType.TASK_STARTED, EventType.TASK_COMPLETED)  # the rows that are RunEvents
BATCH = 500
POLL_S = 0.5
SETTLE_S = 1.0


class Cursor:
    """The id of the last lineage log row handed to the sink, kept in a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text().strip() if path.exists() else ""
        self.value = int(text) if text.isdigit() else 0

    def advance(self, value: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(str(value))
        tmp.replace(self.path)
        self.value = value


class Emission:
    """Hands each new RunEvent of the lineage log to SINK, in log order."""

    def __init__(
        self,
        db: Database,
        sink_of: Callable[[], LineageSink],
        cursor_file: Path,
        poll_s: float = POLL_S,
        settle_s: float = SETTLE_S,
    ) -> None:
        self._store = db  # unfenced; self.db is the current term's fenced view of it
        self.db = db
        self.sink_of = sink_of
        self.sink: LineageSink | None = None  # open while this replica leads
        self.cursor = Cursor(cursor_file)
        self.poll_s = poll_s
        self.settle_s = settle_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def lead(self, fence: Fence) -> None:
        """Emit for FENCE's term, through a sink opened for the term: a sink's spool has one
        writer (the HTTP sink's is one folder of the shared home), so only the leader holds
        it, and a new leader sends on what the last one left there."""
        self.db = self._store.guarded(fence.check)
        self.sink = self.sink_of()
        self._stop = threading.Event()
        self.cursor = Cursor(self.cursor.path)  # another replica may have led since
        self._thread = threading.Thread(target=self._loop, name="openlineage-emission", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def follow(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop handing events on, and close the sink (its spool is free for the next leader)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.step()
            except Deposed:
                log.warning("a newer leader took over: OpenLineage emission stops")
                return
            except Exception:  # the store may be briefly unavailable; the next round retries
                log.exception("OpenLineage emission round failed")
                busy = False
            if not busy:
                self._stop.wait(self.poll_s)

    def _rows(self) -> list[tuple[int, str, str]]:
        settled = utcnow() - timedelta(seconds=self.settle_s)
        with self.db.read() as session:
            return [
                (r.id, r.run_id, r.type)
                for r in session.execute(
                    select(LineageEventRow.id, LineageEventRow.run_id, LineageEventRow.type)
                    .where(
                        LineageEventRow.id > self.cursor.value,
                        LineageEventRow.created_at <= settled,
                    )
                    .order_by(LineageEventRow.id)
                    .limit(BATCH)
                )
            ]

    def step(self) -> bool:
        """One round: put every settled new event; True when it did anything."""
        sink = self.sink
        if sink is None:
            return False
        rows = self._rows()
        if rows:
            self._still_leading()
        events: dict[str, dict[int, dict[str, Any]]] = {}
        for row_id, run_id, kind in rows:
            if kind not in EMITTED:
                continue
            if run_id not in events:
                events[run_id] = dict(keyed_events(self.db, run_id))
            event = events[run_id].get(row_id)
            if event is None:
                continue
            if not sink.put(run_id, json.dumps(event).encode()):
                return False  # the spool is full: offered again next round
            self.cursor.advance(row_id)
        if rows and rows[-1][0] > self.cursor.value:
            self.cursor.advance(rows[-1][0])
        return bool(rows)

    def _still_leading(self) -> None:
        """Raise Deposed once a newer leader took over: a fenced transaction that writes
        nothing (the sink is outside the store; what was handed on before stays handed on,
        so emission remains at-least-once across a take-over)."""
        with self.db.write():
            pass


def cursor_file(home: Path) -> Path:
    return home / "spool" / "openlineage.cursor"
