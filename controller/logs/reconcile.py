"""Log reconciliation: are the four copies of a task attempt's log the same lines?

The copies: the sink's file record (the reference: every line is written there first), Kafka
(the offset ranges the producer reported, read back from the broker), the search index
(documents of the attempt, ordered by sequence number, deduped by event id) and the archive
object (downloaded, its sha256 compared with the recorded one, gunzipped). Each gets a line
count, a checksum (``log_copies.checksum``) and a status:

- ``ok``; ``missing`` (N of the record's lines absent); ``extra`` (lines the record lacks);
  ``corrupt`` (a line differs, or the object is damaged); ``n/a`` (backend not configured);
  ``error`` (the backend could not be read); ``pending`` (queued, not checked yet).

The index is eventually consistent: lines still missing there are re-read until
``TRACECTL_LOG_RECONCILE_WAIT_S`` (60 s) has passed before the copy is called ``missing``.
Results are rows of ``log_reconciliation`` (store/reconcile_schema.py); repair is in
reconcile_repair.py, the background check in reconcile_worker.py.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from controller.config import Settings
from controller.errors import NotFound
from controller.logs.deliveries import log_ranges_path, read_ranges, status_ranges_path
from controller.logs.log_copies import (
    LogCopy,
    checksum,
    read_archive_copy,
    read_index,
    read_kafka,
    read_record,
)
from controller.logs.reconcile_records import COPIES, MISMATCHES
from controller.ports import ArtifactStore, SearchIndex
from controller.store.database import Database
from controller.store.reconcile_schema import LogReconciliationRow
from controller.store.schema import LineageRecordRow, TaskRow, utcnow

log = logging.getLogger("tracectl.logs.reconcile")

OK, MISSING, EXTRA, CORRUPT, NA, ERROR = "ok", "missing", "extra", "corrupt", "n/a", "error"
LOCK_STRIPES = 64
SAMPLE = 20  # sequence numbers kept in a result, to say which lines without storing them all


@dataclass
class CopyResult:
    copy: str
    status: str
    lines: int | None = None
    checksum: str | None = None
    missing: list[int] = field(default_factory=list)
    extra: list[int] = field(default_factory=list)
    differing: list[int] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def mismatch(self) -> bool:
        return self.status in MISMATCHES

    def describe(self) -> str:
        if self.status == MISSING:
            return f"missing {len(self.missing)} lines"
        if self.status == EXTRA:
            return f"extra {len(self.extra)} lines"
        if self.status == CORRUPT:
            return f"corrupt ({self.detail.get('damage') or f'{len(self.differing)} lines differ'})"
        if self.status == ERROR:
            return f"error ({self.detail.get('error')})"
        return self.status


def compare(name: str, reference: dict[int, str], copy: LogCopy) -> CopyResult:
    """COPY against the record's lines."""
    missing = sorted(reference.keys() - copy.lines.keys())
    extra = sorted(copy.lines.keys() - reference.keys())
    differing = sorted(
        s for s in reference.keys() & copy.lines.keys() if reference[s] != copy.lines[s]
    )
    status = CORRUPT if copy.damage or differing else MISSING if missing else EXTRA if extra else OK
    detail = dict(copy.detail)
    if copy.damage:
        detail["damage"] = copy.damage
    return CopyResult(
        name, status, len(copy.lines), checksum(copy.lines), missing, extra, differing, detail
    )


@dataclass
class Attempt:
    """What a check needs to know of one task attempt."""

    run_id: str
    task_id: str
    attempt: int
    recorded: dict[str, Any]  # the lineage's log summary: lines, sha256, archive{uri, sha256}
    last_index_status: str | None = None  # what the previous check found in the index


class LogReconciler:
    """Checks (and with ``repair=True`` repairs) the copies of task attempts' logs."""

    def __init__(self, settings: Settings, db: Database, store: ArtifactStore) -> None:
        self.settings = settings
        self.db = db
        self.store = store
        # One check of a task at a time (the API and the worker write the same rows); checks
        # of other tasks mostly run side by side (striped locks: bounded, unlike one per task).
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self.index_client: SearchIndex | None = None
        self.index_pattern = ""
        from controller.backends import is_search_index

        if is_search_index(settings.log_reader or ""):
            from controller.logs.search_reader import client_of

            self.index_client, self.index_pattern = client_of(settings.log_reader or "")

    @property
    def kafka_bootstrap(self) -> str | None:
        if not self.settings.log_sink.startswith("kafka://"):
            return None
        from controller.logs.kafka_producer import parse_uri

        return parse_uri(self.settings.log_sink, "tracectl.logs")[0]

    # -- one attempt --------------------------------------------------------------------
    def attempt_of(self, task_id: str, attempt: int | None = None) -> Attempt:
        with self.db.read() as session:
            task = session.get(TaskRow, task_id)
            if task is None:
                raise NotFound(f"task {task_id} does not exist")
            number = attempt or task.attempt
            if number < 1:
                raise NotFound(f"task {task_id} has not run yet: it has no log to check")
            rows = {
                r.copy: r
                for r in session.scalars(
                    select(LogReconciliationRow).where(
                        LogReconciliationRow.task_id == task_id,
                        LogReconciliationRow.attempt == number,
                    )
                )
            }
            lineage = session.get(LineageRecordRow, task_id)
            recorded: dict[str, Any] = {}
            if lineage is not None and lineage.attempt == number:
                recorded = dict(lineage.record.get("logs") or {})
            if "record" in rows and rows["record"].detail.get("recorded"):
                recorded = dict(rows["record"].detail["recorded"])
            if "archive" in rows and rows["archive"].detail.get("sha256"):
                # A repaired archive has a new object hash: compare with that one.
                recorded["archive"] = {
                    **(recorded.get("archive") or {}),
                    "uri": rows["archive"].detail.get("uri"),
                    "sha256": rows["archive"].detail["sha256"],
                }
            index = rows.get("index")
            return Attempt(
                task.run_id, task_id, number, recorded, index.status if index is not None else None
            )

    def check(
        self, task_id: str, attempt: int | None = None, repair: bool = False
    ) -> list[dict[str, Any]]:
        """Check one attempt (the latest by default), store and return the result rows."""
        with self._locks[zlib.crc32(task_id.encode()) % LOCK_STRIPES]:
            target = self.attempt_of(task_id, attempt)
            # A repair after a check that already waited for the index need not wait again.
            wait = (
                0.0
                if repair and target.last_index_status == MISSING
                else self.settings.log_reconcile_wait_s
            )
            results, reference = self._check_all(target, wait)
            repaired: dict[str, dict[str, Any]] = {}
            if repair and any(r.mismatch for r in results.values()):
                from controller.logs.reconcile_repair import repair_attempt

                repaired = repair_attempt(self, target, reference, results)
                target = self.attempt_of(task_id, target.attempt) if repaired else target
                if "archive" in repaired:
                    target.recorded["archive"] = {
                        **(target.recorded.get("archive") or {}),
                        **repaired["archive"],
                    }
                results, reference = self._check_all(target, self.settings.log_reconcile_wait_s)
                for name, facts in repaired.items():
                    results[name].detail.update(facts)
            self._save(target, results, set(repaired))
        return self.results(task_id, target.attempt)

    def _check_all(
        self, target: Attempt, index_wait: float
    ) -> tuple[dict[str, CopyResult], dict[int, str]]:
        record = read_record(self.settings, target.run_id, target.task_id, target.attempt)
        results: dict[str, CopyResult] = {}
        if record is None:
            results["record"] = CopyResult(
                "record", MISSING, 0, None, detail={"damage": "the file record is gone"}
            )
            reference: dict[int, str] = {}
        else:
            reference = record.lines
            results["record"] = self._check_record(target, record)
        archive_copy: LogCopy | None = None
        results["archive"], archive_copy = self._guard(
            "archive", lambda: self._check_archive(target, reference)
        )
        if record is None and archive_copy is not None:
            reference = archive_copy.lines  # the record is gone: the archive stands in
        results["kafka"], _ = self._guard("kafka", lambda: self._check_kafka(target, reference))
        results["index"], _ = self._guard(
            "index", lambda: self._check_index(target, reference, index_wait)
        )
        return {name: results[name] for name in COPIES}, reference

    @staticmethod
    def _guard(
        name: str, call: Callable[[], tuple[CopyResult, LogCopy | None]]
    ) -> tuple[CopyResult, LogCopy | None]:
        try:
            return call()
        except Exception as exc:  # a backend down is a result, not a crash of the check
            log.warning("reading the %s copy failed", name, exc_info=True)
            return CopyResult(name, ERROR, detail={"error": f"{type(exc).__name__}: {exc}"}), None

    def _check_record(self, target: Attempt, record: LogCopy) -> CopyResult:
        result = compare("record", record.lines, record)
        expected = target.recorded
        result.detail["recorded"] = {k: expected.get(k) for k in ("lines", "sha256")}
        if expected.get("sha256") and expected["sha256"] != result.checksum:
            # The file changed after the attempt ended (its summary went into the lineage).
            result.status = CORRUPT
            result.detail["damage"] = (
                f"{result.lines} lines now, {expected.get('lines')} "
                "when the attempt ended (checksum differs)"
            )
        return result

    def _check_archive(
        self, target: Attempt, reference: dict[int, str]
    ) -> tuple[CopyResult, LogCopy | None]:
        archive = target.recorded.get("archive") or {}
        if not archive.get("uri"):
            reason = archive.get("error") or "no archive object was recorded"
            return CopyResult(
                "archive", MISSING, 0, None, sorted(reference), detail={"damage": reason}
            ), None
        copy = read_archive_copy(self.store, str(archive["uri"]), archive.get("sha256"))
        return compare("archive", reference or copy.lines, copy), copy

    def _check_kafka(
        self, target: Attempt, reference: dict[int, str]
    ) -> tuple[CopyResult, LogCopy | None]:
        bootstrap = self.kafka_bootstrap
        status_ranges = read_ranges(status_ranges_path(self.settings, target.task_id))
        if bootstrap is None:
            return CopyResult("kafka", NA, detail={"status_events": status_ranges}), None
        path = log_ranges_path(self.settings, target.run_id, target.task_id, target.attempt)
        ranges = read_ranges(path)
        copy = (
            read_kafka(bootstrap, ranges, target.task_id, target.attempt)
            if ranges
            else LogCopy({}, {"ranges": [], "note": f"no delivery recorded in {path}"})
        )
        result = compare("kafka", reference, copy)
        result.detail["status_events"] = status_ranges
        return result, copy

    def _check_index(
        self, target: Attempt, reference: dict[int, str], wait_s: float
    ) -> tuple[CopyResult, LogCopy | None]:
        if self.index_client is None:
            return CopyResult("index", NA), None
        deadline = time.monotonic() + wait_s
        while True:
            copy = read_index(
                self.index_client, self.index_pattern, target.run_id, target.task_id, target.attempt
            )
            result = compare("index", reference, copy)
            # Lines may still be on their way (Kafka -> shipper -> refresh): look again.
            if result.status != MISSING or time.monotonic() >= deadline:
                return result, copy
            time.sleep(1.0)

    # -- the store ----------------------------------------------------------------------
    def _save(self, target: Attempt, results: dict[str, CopyResult], repaired: set[str]) -> None:
        checked = utcnow()
        with self.db.write() as session:
            rows = {
                r.copy: r
                for r in session.scalars(
                    select(LogReconciliationRow).where(
                        LogReconciliationRow.task_id == target.task_id,
                        LogReconciliationRow.attempt == target.attempt,
                    )
                )
            }
            for name, result in results.items():
                row = rows.get(name)
                if row is None:
                    row = LogReconciliationRow(
                        task_id=target.task_id,
                        run_id=target.run_id,
                        attempt=target.attempt,
                        copy=name,
                        mismatches=0,
                        detail={},
                    )
                    session.add(row)
                kept = {
                    k: v
                    for k, v in (row.detail or {}).items()
                    if k in ("previous_sha256", "repairs")
                }
                detail = {
                    **kept,
                    **result.detail,
                    "summary": result.describe(),
                    "missing_seqs": result.missing[:SAMPLE],
                    "extra_seqs": result.extra[:SAMPLE],
                    "differing_seqs": result.differing[:SAMPLE],
                }
                if name == "archive":
                    archive = target.recorded.get("archive") or {}
                    detail.setdefault("uri", archive.get("uri"))
                    detail["sha256"] = archive.get("sha256")
                if name == "record":
                    detail["recorded"] = {k: target.recorded.get(k) for k in ("lines", "sha256")}
                row.status = result.status
                row.lines = result.lines
                row.checksum = result.checksum
                row.missing = len(result.missing)
                row.extra = len(result.extra)
                row.mismatches = (row.mismatches or 0) + (1 if result.mismatch else 0)
                row.detail = detail
                row.checked_at = checked
                if name in repaired:
                    row.repaired_at = checked

    def mark_failed(self, task_id: str, attempt: int) -> None:
        """A check that crashed: its rows leave the queue (the API can check again)."""
        with self.db.write() as session:
            for row in session.scalars(
                select(LogReconciliationRow).where(
                    LogReconciliationRow.task_id == task_id,
                    LogReconciliationRow.attempt == attempt,
                    LogReconciliationRow.status == "pending",
                )
            ):
                row.status = ERROR
                row.checked_at = utcnow()

    def results(self, task_id: str, attempt: int) -> list[dict[str, Any]]:
        with self.db.read() as session:
            rows = session.scalars(
                select(LogReconciliationRow).where(
                    LogReconciliationRow.task_id == task_id, LogReconciliationRow.attempt == attempt
                )
            )
            return sorted((row_view(r) for r in rows), key=lambda v: COPIES.index(v["copy"]))


def row_view(row: LogReconciliationRow) -> dict[str, Any]:
    return {
        "copy": row.copy,
        "attempt": row.attempt,
        "status": row.status,
        "summary": (row.detail or {}).get("summary", row.status),
        "lines": row.lines,
        "checksum": row.checksum,
        "missing": row.missing,
        "extra": row.extra,
        "mismatches": row.mismatches,
        "detail": row.detail,
        "checked_at": row.checked_at.isoformat() if row.checked_at else None,
        "repaired_at": row.repaired_at.isoformat() if row.repaired_at else None,
    }
