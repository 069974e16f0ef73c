"""The runs list: filtered, newest first, keyset-paged, with a count per status."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from pydantic import BaseModel
from sqlalchemy import ColumnElement, func, select, tuple_
from sqlalchemy.orm import Session

from controller.auth.scope import Scope
from controller.core import views
from controller.store.schema import RunRow

STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")


class RunFilter(BaseModel):
    pipeline: str | None = None
    status: str | None = None
    team: str | None = None
    dag_id: str | None = None
    since: date | None = None  # created on or after this day (UTC)
    until: date | None = None  # created on or before this day (UTC)


class RunItem(BaseModel):
    id: str
    pipeline: str
    status: str
    team: str
    airflow_dag_id: str | None
    created_at: datetime
    finished_at: datetime | None


class RunsPage(BaseModel):
    items: list[RunItem]
    counts: dict[str, int]  # per status, under every filter but the status one
    next_cursor: str | None


def _conditions(where: RunFilter) -> list[ColumnElement[bool]]:
    team = Scope.current().team  # None: an admin, who sees every team
    terms: list[ColumnElement[bool]] = [] if team is None else [RunRow.team == team]
    for column, value in (
        (RunRow.pipeline, where.pipeline),
        (RunRow.team, where.team),
        (RunRow.airflow_dag_id, where.dag_id),
    ):
        if value:
            terms.append(column == value)
    if where.since:
        terms.append(RunRow.created_at >= _midnight(where.since))
    if where.until:
        terms.append(RunRow.created_at < _midnight(where.until + timedelta(days=1)))
    return terms


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


# The columns a page shows: not whole rows (their labels JSON decoded for nothing).
COLUMNS = [getattr(RunRow, name) for name in RunItem.model_fields]


def runs_page(session: Session, where: RunFilter, limit: int, cursor: str | None) -> RunsPage:
    terms = _conditions(where)
    query = select(*COLUMNS).where(*terms)
    if where.status:
        query = query.where(RunRow.status == where.status)
    if cursor:
        # A row value, not `a < x OR (a = x AND b < y)`: SQLite and PostgreSQL then start the
        # index scan at the cursor instead of reading every newer run again (deep pages).
        query = query.where(
            tuple_(RunRow.created_at, RunRow.id) < tuple_(*views.decode_cursor(cursor))
        )
    rows = session.execute(
        query.order_by(RunRow.created_at.desc(), RunRow.id.desc()).limit(limit + 1)
    ).all()
    items = [RunItem.model_validate(r._mapping) for r in rows[:limit]]
    more = len(rows) > limit and items
    counted = select(RunRow.status, func.count()).where(*terms).group_by(RunRow.status)
    counts = {str(row[0]): int(row[1]) for row in session.execute(counted).all()}
    return RunsPage(
        items=items,
        counts=counts,
        next_cursor=views.encode_cursor(items[-1].created_at, items[-1].id) if more else None,
    )
