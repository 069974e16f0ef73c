"""The content-hash cache: an identical task reuses the earlier outputs instead of running."""

from __future__ import annotations

from pathlib import Path

from tests.core.conftest import Api, python

CODE = "import time; open('out.txt','w').write('result'); print('computed')"


def test_identical_task_is_served_from_the_cache(api: Api, code_repo: Path) -> None:
    spec = {
        "command": python(CODE),
        "outputs": ["out.txt"],
        "cache": True,
        "code": {"repo": str(code_repo)},
        "params": {"lr": 0.1},
    }
    first = api.submit(api.run("cached"), "t", **spec)
    assert api.wait(first["id"])["status"] == "succeeded"
    second = api.submit(api.run("cached"), "t", **spec)
    done = api.wait(second["id"])
    assert done["status"] == "succeeded"
    assert done["reason"] == f"cached from run {first['run_id']}"
    assert api.logs(second["id"]) == []  # nothing ran
    produced = api.client.get(f"/v1/tasks/{first['id']}/artifacts").json()
    reused = api.client.get(f"/v1/tasks/{second['id']}/artifacts").json()
    assert [(a["path"], a["sha256"]) for a in reused] == [
        (a["path"], a["sha256"]) for a in produced
    ]
    events = api.client.get(f"/v1/runs/{second['run_id']}/lineage/events").json()["items"]
    cached = [e for e in events if e["type"] == "task.cached"]
    assert cached and cached[0]["payload"]["cached_from_task"] == first["id"]

    changed = api.submit(api.run("cached"), "t", **{**spec, "params": {"lr": 0.2}})
    rerun = api.wait(changed["id"])
    assert rerun["status"] == "succeeded" and rerun["reason"] is None  # a new param: ran
