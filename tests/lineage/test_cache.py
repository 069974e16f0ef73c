"""The content-hash cache key and look-up."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from controller.lineage import cache
from controller.lineage.projection import catch_up
from controller.store.database import Database
from controller.store.lineage_schema import LineageEdgeRow
from controller.store.schema import LineageEventRow, TaskRow
from tests.lineage.conftest import Demo

SPEC: dict[str, Any] = {
    "command": ["python", "train.py"],
    "params": {"seed": 1},
    "image": "python:3.11",
    "env": {"A": "1"},
    "outputs": ["m.pkl"],
}
RESOLVED: dict[str, Any] = {
    "commit": "a" * 40,
    "data": [{"path": "d.csv", "md5": "b" * 32, "rev": "a" * 40}],
}
INPUTS = [("x.csv", "c" * 64), ("y.csv", "d" * 64)]


def test_key_covers_every_input() -> None:
    base = cache.cache_key(SPEC, RESOLVED, INPUTS)
    assert base == cache.cache_key(SPEC, RESOLVED, list(reversed(INPUTS)))
    assert len(base) == 64
    changed = [
        cache.cache_key({**SPEC, "params": {"seed": 2}}, RESOLVED, INPUTS),
        cache.cache_key({**SPEC, "image": "python:3.12"}, RESOLVED, INPUTS),
        cache.cache_key({**SPEC, "command": ["python", "other.py"]}, RESOLVED, INPUTS),
        cache.cache_key({**SPEC, "env": {"A": "2"}}, RESOLVED, INPUTS),
        cache.cache_key(SPEC, {**RESOLVED, "commit": "f" * 40}, INPUTS),
        cache.cache_key(
            SPEC, {**RESOLVED, "data": [{**RESOLVED["data"][0], "md5": "e" * 32}]}, INPUTS
        ),
        cache.cache_key(SPEC, RESOLVED, [("x.csv", "0" * 64), INPUTS[1]]),
        cache.cache_key(SPEC, RESOLVED, [("z.csv", INPUTS[0][1]), INPUTS[1]]),
    ]
    assert base not in changed and len(set(changed)) == len(changed)
    # The rev is how the md5 was found, not what was read: another rev, same bytes, same key.
    assert base == cache.cache_key(
        SPEC, {**RESOLVED, "data": [{**RESOLVED["data"][0], "rev": "9" * 40}]}, INPUTS
    )


def test_a_succeeded_task_is_found_by_its_key_and_a_hit_is_logged(demo: Demo) -> None:
    db: Database = demo.api.client.app.state.service.db
    train = demo.tasks["train"]
    inputs = [(i["path"], i["sha256"]) for i in train["lineage"]["inputs"]]
    with db.read() as session:
        row = session.get(TaskRow, train["id"])
        assert row is not None
        key = cache.cache_key(row.spec, row.resolved, inputs)
    catch_up(db)
    with db.read() as session:
        hit = cache.lookup(session, key)
        assert hit is not None
        assert {o["path"] for o in hit.outputs} == {"model/model.pkl"}
        assert hit.outputs[0]["sha256"] == demo.node("train", "model/model.pkl").split(":")[1]
        assert cache.lookup(session, "0" * 64) is None
    # A reuse is an event in the log; the graph shows it as an edge from the source task.
    run_id = demo.api.run("cache-hit")
    task = demo.api.submit(run_id, "noop", command=["python", "-c", "pass"])
    demo.api.wait(task["id"])
    with db.write() as session:
        row = session.get(TaskRow, task["id"])
        assert row is not None
        cache.record_hit(session, row, hit)
    catch_up(db)
    with db.read() as session:
        event = session.scalar(
            select(LineageEventRow).where(
                LineageEventRow.task_id == task["id"], LineageEventRow.type == "task.cached"
            )
        )
        assert event is not None and event.payload["cached_from_run"] == hit.run_id
        edge = session.scalar(
            select(LineageEdgeRow).where(
                LineageEdgeRow.dst == f"task:{task['id']}", LineageEdgeRow.kind == "cached"
            )
        )
        assert edge is not None and edge.src == f"task:{hit.task_id}"
