"""The resources page's reads: holders with their lease times, and the lease history chart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html import escape

from pydantic import BaseModel
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from controller.auth.scope import Scope
from controller.store.lease_schema import LeaseRow
from controller.store.schema import TaskRow

HISTORY = timedelta(hours=6)
LABEL_W, ROW_H, CHART_W = 200, 22, 760


class Holding(BaseModel):
    lease_id: int
    resource: str
    task_id: str | None  # None: a task of another team (its team and mode show, not which)
    task_name: str | None
    run_id: str | None
    team: str
    mode: str
    attempt: int
    since: datetime
    expires_at: datetime
    released_at: datetime | None
    release_reason: str | None


def holdings(
    session: Session,
    scope: Scope,
    active: bool,
    since: datetime | None = None,
    limit: int = 500,
) -> list[Holding]:
    """Active leases, or (ACTIVE false) every lease alive at some point after SINCE."""
    query = select(LeaseRow, TaskRow.name, TaskRow.run_id).outerjoin(
        TaskRow, TaskRow.id == LeaseRow.task_id
    )
    if active:
        query = query.where(LeaseRow.released_at.is_(None))
    elif since is not None:
        query = query.where(or_(LeaseRow.released_at.is_(None), LeaseRow.released_at >= since))
    rows = session.execute(query.order_by(LeaseRow.id.desc()).limit(limit)).all()
    return [
        _holding(lease, name, run_id, scope.sees(lease.team))
        for lease, name, run_id in reversed(rows)
    ]


def _holding(lease: LeaseRow, name: str | None, run_id: str | None, mine: bool) -> Holding:
    """Another team's lease shows its team and mode, not which task holds it (as the API)."""
    return Holding(
        lease_id=lease.id,
        resource=lease.resource,
        task_id=lease.task_id if mine else None,
        task_name=name if mine else None,
        run_id=run_id if mine else None,
        team=lease.team,
        mode=lease.mode,
        attempt=lease.attempt,
        since=lease.granted_at,
        expires_at=lease.expires_at,
        released_at=lease.released_at,
        release_reason=lease.release_reason if mine else None,
    )


def history_chart(leases: list[Holding]) -> str:
    """One row per resource, one bar per lease (hover: task, attempt, times)."""
    now = datetime.now(UTC)
    if not leases:
        return '<p class="muted">no leases in the last hours</p>'
    start = min(h.since for h in leases)
    span = max((now - start).total_seconds(), 1.0)
    names = sorted({h.resource for h in leases})
    height = ROW_H * len(names) + 26

    def x(at: datetime) -> float:
        return LABEL_W + (at - start).total_seconds() / span * CHART_W

    out = [
        f'<svg class="lease-history" xmlns="http://www.w3.org/2000/svg" width="100%" '
        f'viewBox="0 0 {LABEL_W + CHART_W + 10} {height}" role="img" '
        'aria-label="lease history">'
    ]
    for i, name in enumerate(names):
        out.append(f'<text x="4" y="{i * ROW_H + 16}" font-size="12">{escape(name[:30])}</text>')
    for h in leases:
        y = names.index(h.resource) * ROW_H + 3
        end = h.released_at or now
        color = "#1565c0" if h.released_at is None else "#90a4ae"
        out.append(
            f'<rect class="lease" x="{x(h.since):.1f}" y="{y}" '
            f'width="{max(x(end) - x(h.since), 2):.1f}" height="16" rx="2" '
            f'fill="{color}"><title>{escape(_tip(h))}</title></rect>'
        )
    out.append(
        f'<text x="{LABEL_W}" y="{height - 4}" font-size="11" fill="#666">'
        f'{start:%H:%M:%S}</text><text x="{LABEL_W + CHART_W}" y="{height - 4}" '
        f'font-size="11" fill="#666" text-anchor="end">now</text></svg>'
    )
    return "".join(out)


def _tip(h: Holding) -> str:
    until = h.released_at.isoformat() if h.released_at else "now"
    return (
        f"lease {h.lease_id}: {h.task_name or h.task_id or 'another team'} attempt {h.attempt} "
        f"({h.team}, {h.mode}) {h.since.isoformat()} → {until}"
        + (f" · {h.release_reason}" if h.release_reason else "")
    )
