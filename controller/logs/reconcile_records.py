"""The reconciliation rows seen from outside the check: queueing, summaries, counts.

``enqueue_check`` runs inside the supervisor's transaction that ends an attempt, so a check
is never lost between the archive and a restart: the worker finds the ``pending`` rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controller.store.reconcile_schema import LogReconciliationRow

COPIES = ("record", "kafka", "index", "archive")
PENDING = "pending"
MISMATCHES = ("missing", "extra", "corrupt")


def enqueue_check(
    session: Session, run_id: str, task_id: str, attempt: int, log_summary: dict[str, Any]
) -> None:
    """Queue the check of this attempt, keeping what the attempt's end recorded of its log."""
    archive = dict(log_summary.get("archive") or {})
    recorded = {k: log_summary.get(k) for k in ("lines", "sha256")}
    existing = {
        r.copy: r
        for r in session.scalars(
            select(LogReconciliationRow).where(
                LogReconciliationRow.task_id == task_id, LogReconciliationRow.attempt == attempt
            )
        )
    }
    for copy in COPIES:
        detail: dict[str, Any] = {"recorded": recorded} if copy == "record" else {}
        if copy == "archive":
            detail = {
                "uri": archive.get("uri"),
                "sha256": archive.get("sha256"),
                "error": archive.get("error"),
            }
        row = existing.get(copy)
        if row is None:
            session.add(
                LogReconciliationRow(
                    task_id=task_id,
                    run_id=run_id,
                    attempt=attempt,
                    copy=copy,
                    status=PENDING,
                    missing=0,
                    extra=0,
                    mismatches=0,
                    detail=detail,
                )
            )
        else:
            row.status, row.detail = PENDING, detail


def pending_attempts(session: Session, limit: int = 20) -> list[tuple[str, int]]:
    rows = session.execute(
        select(LogReconciliationRow.task_id, LogReconciliationRow.attempt)
        .where(LogReconciliationRow.status == PENDING)
        .group_by(LogReconciliationRow.task_id, LogReconciliationRow.attempt)
        .order_by(func.min(LogReconciliationRow.id))
        .limit(limit)
    )
    return [(task_id, attempt) for task_id, attempt in rows]


def task_summary(session: Session, task_id: str) -> dict[str, Any] | None:
    """The latest checked attempt of TASK: ok / mismatch / pending / error, copy by copy."""
    latest = session.scalar(
        select(func.max(LogReconciliationRow.attempt)).where(
            LogReconciliationRow.task_id == task_id
        )
    )
    if latest is None:
        return None
    rows = list(
        session.scalars(
            select(LogReconciliationRow).where(
                LogReconciliationRow.task_id == task_id, LogReconciliationRow.attempt == latest
            )
        )
    )
    statuses = {r.status for r in rows}
    overall = (
        "mismatch"
        if statuses & set(MISMATCHES)
        else PENDING
        if PENDING in statuses
        else "error"
        if "error" in statuses
        else "ok"
    )
    checked = [r.checked_at for r in rows if r.checked_at]
    repaired = [r.repaired_at for r in rows if r.repaired_at]
    return {
        "attempt": latest,
        "status": overall,
        "copies": {
            r.copy: (r.detail or {}).get("summary", r.status)
            for r in sorted(rows, key=lambda r: COPIES.index(r.copy))
        },
        "checked_at": max(checked).isoformat() if checked else None,
        "repaired_at": max(repaired).isoformat() if repaired else None,
    }


def counts(session: Session) -> dict[str, Any]:
    """For /metrics: mismatches ever found, and copies by (copy, status) now."""
    total = session.scalar(select(func.coalesce(func.sum(LogReconciliationRow.mismatches), 0)))
    by_status = session.execute(
        select(LogReconciliationRow.copy, LogReconciliationRow.status, func.count()).group_by(
            LogReconciliationRow.copy, LogReconciliationRow.status
        )
    )
    return {
        "mismatches_total": int(total or 0),
        "copies": [(copy, status, int(n)) for copy, status, n in by_status],
    }
