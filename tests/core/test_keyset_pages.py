"""Keyset pages of runs (newest first) and tasks (oldest first) when rows share a created_at.

Rows made in the same instant are ordered by id; a page that ends inside such a group must go
on with the rest of the group, in both directions, without skipping or repeating a row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update

from controller.store.schema import RunRow, TaskRow
from tests.core.conftest import Api, python

SAME_INSTANT = datetime(2026, 1, 1, tzinfo=UTC)


def all_pages(api: Api, path: str, **params: Any) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page = api.client.get(
            path, params={**params, "limit": 1, **({"cursor": cursor} if cursor else {})}
        ).json()
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


def test_runs_sharing_an_instant_page_newest_first_by_id(api: Api) -> None:
    runs = [api.run(f"tie{i}") for i in range(4)]
    later = api.run("later")
    with api.client.app.state.service.db.write() as session:
        session.execute(update(RunRow).where(RunRow.id.in_(runs)).values(created_at=SAME_INSTANT))
    assert all_pages(api, "/v1/runs") == [later, *sorted(runs, reverse=True)]


def test_tasks_sharing_an_instant_page_oldest_first_by_id(api: Api) -> None:
    run = api.run()
    tasks = [api.submit(run, f"t{i}", command=python("pass"))["id"] for i in range(4)]
    with api.client.app.state.service.db.write() as session:
        session.execute(
            update(TaskRow)
            .where(TaskRow.id.in_(tasks[1:]))
            .values(created_at=SAME_INSTANT.replace(year=2099))
        )
    assert all_pages(api, "/v1/tasks", run_id=run) == [tasks[0], *sorted(tasks[1:])]
