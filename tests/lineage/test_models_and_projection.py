"""Registered models join the graph; the projection is a replayable view of the event log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import delete, func, select

from controller.lineage.models import model_events, registered_versions
from controller.lineage.projection import CURSOR_KEY, catch_up
from controller.store.database import Database
from controller.store.lineage_schema import LineageCacheRow, LineageEdgeRow
from controller.store.schema import ControllerStateRow
from tests.lineage.conftest import Demo


class Registry:
    uri = "fake://"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def iter_model_versions(self, run_id: str) -> Iterator[dict[str, str]]:
        if self.fail:
            raise ConnectionError("registry down")
        yield {"name": "wine", "version": "3", "source": f"runs:/{run_id}/model"}


def test_a_registered_model_is_found_by_name_and_version(demo: Demo) -> None:
    db: Database = demo.api.client.app.state.service.db
    train = demo.tasks["train"]
    mlflow_run = train["lineage"]["mlflow"]["run_id"]
    versions = registered_versions(Registry(), mlflow_run)  # type: ignore[arg-type]
    assert registered_versions(Registry(fail=True), mlflow_run) == []  # type: ignore[arg-type]
    with db.write() as session:
        session.add_all(model_events(demo.run_id, train["id"], versions))
    found = demo.api.client.get("/v1/lineage/lookup", params={"model": "wine/3"}).json()
    assert found["registered_by"] == [{"run_id": demo.run_id, "task_id": train["id"]}]
    up = demo.api.client.get(
        "/v1/lineage/upstream", params={"node": "model:wine/3", "depth": 6}
    ).json()
    ids = {n["id"] for n in up["items"]}
    assert f"task:{train['id']}" in ids and f"data:data/wine.csv@{demo.md5}" in ids
    assert demo.api.client.get("/v1/lineage/lookup", params={"model": "wine"}).status_code == 422


def _snapshot(db: Database) -> tuple[set[Any], set[Any]]:
    with db.read() as session:
        edges = set(
            session.execute(
                select(
                    LineageEdgeRow.src, LineageEdgeRow.dst, LineageEdgeRow.kind, LineageEdgeRow.path
                )
            ).all()
        )
        caches = set(
            session.execute(select(LineageCacheRow.task_id, LineageCacheRow.cache_key)).all()
        )
    return edges, caches


def test_replaying_the_log_rebuilds_the_same_graph(demo: Demo) -> None:
    db: Database = demo.api.client.app.state.service.db
    catch_up(db)
    before = _snapshot(db)
    assert before[0] and before[1]
    assert catch_up(db) == 0  # nothing new: nothing read
    with db.write() as session:  # a cursor lost halfway: replaying inserts nothing twice
        session.execute(delete(ControllerStateRow).where(ControllerStateRow.key == CURSOR_KEY))
    catch_up(db, batch=7)
    assert _snapshot(db) == before
    with db.write() as session:  # the tables dropped: the log alone rebuilds them
        session.execute(delete(LineageEdgeRow))
        session.execute(delete(LineageCacheRow))
        session.execute(delete(ControllerStateRow).where(ControllerStateRow.key == CURSOR_KEY))
    catch_up(db, batch=3)
    assert _snapshot(db) == before
    with db.read() as session:
        dupes = session.scalar(select(func.count()).select_from(LineageEdgeRow))
    assert dupes == len(before[0])
