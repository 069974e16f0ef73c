"""Attempts of tasks from the attempts table, and a Gantt chart of them as inline SVG."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from html import escape

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.store.schema import AttemptRow, TaskRow

STATUS_COLORS = {
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "cancelled": "#757575",
    "running": "#1565c0",
    "starting": "#1565c0",
    "queued": "#f9a825",
    "pending": "#bdbdbd",
}
LABEL_W, ROW_H, CHART_W = 190, 26, 760


class Attempt(BaseModel):
    task_id: str
    task_name: str
    number: int
    waiting_since: datetime  # submitted, or the end of the attempt before (a retry)
    admitted_at: datetime | None = None
    finished_at: datetime | None = None
    status: str = "running"
    exit_code: int | None = None
    reason: str | None = None

    @property
    def queue_wait_s(self) -> float:
        end = self.admitted_at or datetime.now(UTC)
        return max(0.0, (end - self.waiting_since).total_seconds())

    @property
    def run_s(self) -> float | None:
        if self.admitted_at is None:
            return None
        end = self.finished_at or datetime.now(UTC)
        return max(0.0, (end - self.admitted_at).total_seconds())


def attempts(session: Session, tasks: list[TaskRow]) -> dict[str, list[Attempt]]:
    """Every attempt of TASKS, oldest first: one row of the attempts table each (admitted
    once, ended once), one query for the whole run."""
    by_id = {t.id: t for t in tasks}
    rows = session.scalars(
        select(AttemptRow)
        .where(AttemptRow.task_id.in_(list(by_id)))
        .order_by(AttemptRow.task_id, AttemptRow.attempt)
    )
    out: dict[str, list[Attempt]] = defaultdict(list)
    for row in rows:
        task = by_id[row.task_id]
        found = out[task.id]
        since = found[-1].finished_at if found and found[-1].finished_at else task.created_at
        found.append(
            Attempt(
                task_id=task.id,
                task_name=task.name,
                number=row.attempt,
                waiting_since=since,
                admitted_at=row.admitted_at,
                finished_at=row.finished_at,
                status=row.status or _open_status(task, row.attempt),
                exit_code=row.exit_code,
                reason=row.reason,
            )
        )
    for task in tasks:
        _close_last(task, out[task.id])
    return dict(out)


def _open_status(task: TaskRow, attempt: int) -> str:
    """An attempt not ended yet is the task's current one: starting or running."""
    return task.status if task.attempt == attempt and task.status in STATUS_COLORS else "running"


def _close_last(task: TaskRow, found: list[Attempt]) -> None:
    """The task row knows the end of an attempt no completion event was written for (a
    cancel while queued) and the wait of one not admitted yet."""
    if task.status in ("queued", "pending") and (not found or found[-1].finished_at):
        since = found[-1].finished_at if found and found[-1].finished_at else task.created_at
        found.append(
            Attempt(
                task_id=task.id,
                task_name=task.name,
                number=task.attempt + 1,
                waiting_since=since or task.created_at,
                status=task.status,
                reason=task.reason,
            )
        )
    elif found and found[-1].finished_at is None and task.finished_at is not None:
        found[-1].finished_at, found[-1].status = task.finished_at, task.status
        found[-1].reason = task.reason
    elif not found and task.finished_at is not None:  # ended before admission (cancelled)
        found.append(
            Attempt(
                task_id=task.id,
                task_name=task.name,
                number=0,
                waiting_since=task.created_at,
                finished_at=task.finished_at,
                status=task.status,
                reason=task.reason,
            )
        )


def gantt(start: datetime, rows: list[Attempt]) -> str:
    """One bar per attempt: its queue wait (pale) then its run (coloured by outcome)."""
    now = datetime.now(UTC)
    end = max([start, *[a.finished_at or now for a in rows]])
    span = max((end - start).total_seconds(), 1.0)

    def x(at: datetime) -> float:
        return LABEL_W + (at - start).total_seconds() / span * CHART_W

    height = ROW_H * len(rows) + 30
    out = [
        f'<svg class="gantt" xmlns="http://www.w3.org/2000/svg" width="100%" '
        f'viewBox="0 0 {LABEL_W + CHART_W + 10} {height}" role="img" '
        f'aria-label="timeline of {len(rows)} attempts">'
    ]
    for i, a in enumerate(rows):
        y = i * ROW_H + 4
        label = f"{a.task_name} #{a.number}" if a.number else a.task_name
        out.append(
            f'<g class="attempt" data-task="{escape(a.task_id)}" '
            f'data-attempt="{a.number}" data-status="{escape(a.status)}">'
            f"<title>{escape(_tooltip(a))}</title>"
            f'<text x="4" y="{y + 15}" font-size="12">{escape(label[:28])}</text>'
        )
        waited = a.admitted_at or a.finished_at or now
        out.append(
            f'<rect class="wait" x="{x(a.waiting_since):.1f}" y="{y + 3}" '
            f'width="{max(x(waited) - x(a.waiting_since), 1):.1f}" height="14" '
            'fill="#e0e0e0"/>'
        )
        if a.admitted_at:
            color = STATUS_COLORS.get(a.status, "#555")
            out.append(
                f'<rect class="run" x="{x(a.admitted_at):.1f}" y="{y}" '
                f'width="{max(x(a.finished_at or now) - x(a.admitted_at), 2):.1f}" '
                f'height="20" rx="3" fill="{color}"/>'
            )
        out.append("</g>")
    out.append(
        f'<text x="{LABEL_W}" y="{height - 6}" font-size="11" fill="#666">0 s</text>'
        f'<text x="{LABEL_W + CHART_W}" y="{height - 6}" font-size="11" fill="#666" '
        f'text-anchor="end">{span:.1f} s</text></svg>'
    )
    return "".join(out)


def _tooltip(a: Attempt) -> str:
    parts = [f"attempt {a.number}: {a.status}", f"queue wait {a.queue_wait_s:.1f} s"]
    if a.run_s is not None:
        parts.append(f"run time {a.run_s:.1f} s")
    if a.reason:
        parts.append(a.reason)
    return " · ".join(parts)
