"""The demo pipeline's lineage graph: complete, correct, and reachable from every look-up key."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from controller.lineage.models import model_events
from tests.lineage.conftest import Demo


def walk(demo: Demo, direction: str, node: str, **params: Any) -> dict[str, Any]:
    response = demo.api.client.get(f"/v1/lineage/{direction}", params={"node": node, **params})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_upstream_of_metrics_reaches_dataset_and_commit(demo: Demo) -> None:
    metrics = demo.node("evaluate", "metrics.json")
    found = walk(demo, "upstream", metrics, depth=10)
    ids = {n["id"]: n for n in found["items"]}
    tasks = {name: f"task:{t['id']}" for name, t in demo.tasks.items()}
    assert f"data:data/wine.csv@{demo.md5}" in ids
    assert f"commit:{demo.head}" in ids
    assert set(tasks.values()) <= set(ids)
    assert demo.node("train", "model/model.pkl") in ids
    assert demo.node("prepare", "prepared/test.csv") in ids
    assert ids[tasks["evaluate"]]["depth"] == 1
    assert ids[demo.node("train", "model/model.pkl")]["depth"] == 2
    assert ids[f"data:data/wine.csv@{demo.md5}"]["depth"] == 4  # via test.csv and prepare
    assert ids[tasks["prepare"]]["label"] == "prepare"
    assert (tasks["evaluate"], metrics) in {(e["from"], e["to"]) for e in found["edges"]}
    shallow = walk(demo, "upstream", metrics, depth=1)
    assert [n["id"] for n in shallow["items"]] == [tasks["evaluate"]]


def test_downstream_of_dataset_reaches_metrics(demo: Demo) -> None:
    found = walk(demo, "downstream", f"data:data/wine.csv@{demo.md5}", depth=10)
    ids = {n["id"] for n in found["items"]}
    assert demo.node("evaluate", "metrics.json") in ids
    assert {f"task:{t['id']}" for t in demo.tasks.values()} <= ids


def test_walk_pages_without_gaps_or_repeats(demo: Demo) -> None:
    node = f"data:data/wine.csv@{demo.md5}"
    everything = [n["id"] for n in walk(demo, "downstream", node, limit=1000)["items"]]
    paged: list[str] = []
    cursor = None
    while True:
        page = walk(demo, "downstream", node, limit=2, **({"cursor": cursor} if cursor else {}))
        paged += [n["id"] for n in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == everything and len(set(paged)) == len(paged)


def test_lookups(demo: Demo) -> None:
    client = demo.api.client
    model = next(o for o in demo.tasks["train"]["lineage"]["outputs"])
    by_sha = client.get("/v1/lineage/lookup", params={"sha256": model["sha256"]}).json()
    assert by_sha["produced_by"][0]["task_id"] == demo.tasks["train"]["id"]
    assert by_sha["produced_by"][0]["commit"] == demo.head
    assert [u["task_id"] for u in by_sha["used_by"]] == [demo.tasks["evaluate"]["id"]]
    by_uri = client.get("/v1/lineage/lookup", params={"uri": model["uri"]}).json()
    assert by_uri["node"] == f"artifact:{model['sha256']}"
    mlflow_id = demo.tasks["evaluate"]["lineage"]["mlflow"]["run_id"]
    by_mlflow = client.get("/v1/lineage/lookup", params={"mlflow_run_id": mlflow_id}).json()
    assert by_mlflow["task_id"] == demo.tasks["evaluate"]["id"]
    by_commit = client.get("/v1/lineage/lookup", params={"commit": demo.head}).json()
    assert {u["task_id"] for u in by_commit["used_by"]} == {t["id"] for t in demo.tasks.values()}
    by_data = client.get(
        "/v1/lineage/lookup", params={"dataset": f"data/wine.csv@{demo.md5}"}
    ).json()
    assert {i["run_id"] for i in by_data["items"]} >= {demo.run_id}
    assert demo.tasks["prepare"]["id"] in {i["task_id"] for i in by_data["items"]}


def test_bad_queries_name_the_problem(demo: Demo) -> None:
    client = demo.api.client
    bad_node = client.get("/v1/lineage/upstream", params={"node": "thing:x"})
    assert bad_node.status_code == 422 and "thing:x" in bad_node.json()["detail"]
    two = client.get("/v1/lineage/lookup", params={"sha256": "a", "commit": "b"})
    assert two.status_code == 422 and "exactly one" in two.json()["detail"]
    assert client.get("/v1/lineage/lookup", params={"mlflow_run_id": "nope"}).status_code == 404
    assert (
        client.get("/v1/lineage/upstream", params={"node": "task:x", "cursor": "%%%"}).status_code
        == 422
    )


def test_diff_of_a_run_with_itself_and_with_other_params(demo: Demo) -> None:
    from tests.lineage.conftest import run_demo

    same = demo.api.client.get(f"/v1/runs/{demo.run_id}/diff/{demo.run_id}").json()
    assert same["identical_outputs"] and all(t["same"] for t in same["tasks"].values())
    assert same["tasks"]["evaluate"]["metrics"]["a"]["test_accuracy"] > 0.8
    other = run_demo(demo.api, demo.repo, {"n_estimators": 5, "max_depth": 2})
    diff = demo.api.client.get(f"/v1/runs/{demo.run_id}/diff/{other}").json()
    train = diff["tasks"]["train"]
    assert not train["params"]["same"]
    assert train["params"]["b"]["n_estimators"] == 5
    assert train["code"]["same"] and train["data"]["same"] is True
    assert diff["tasks"]["prepare"]["outputs"]["prepared/train.csv"]["same"]
    assert not train["outputs"]["model/model.pkl"]["same"]
    assert not diff["identical_outputs"]


def test_a_task_that_declares_a_model_version_is_downstream_of_it(demo: Demo) -> None:
    client = demo.api.client
    train = demo.tasks["train"]
    with client.app.state.service.db.write() as session:  # type: ignore[attr-defined]
        session.add_all(
            model_events(
                demo.run_id,
                train["id"],
                [{"name": "wine served", "version": "7", "source": "runs:/x/model"}],
            )
        )
    run_id = demo.api.run("serving")
    served = demo.api.submit(
        run_id,
        "serve",
        models=["models:/wine served/7"],
        command=[
            "python",
            "-c",
            "import os; open('models.json', 'w').write(os.environ['TRACECTL_MODELS'])",
        ],
        outputs=["models.json"],
    )
    assert demo.api.wait(served["id"])["status"] == "succeeded"
    model, task = "model:wine served/7", f"task:{served['id']}"

    up = walk(demo, "upstream", task, depth=10)
    ups = {n["id"]: n for n in up["items"]}
    assert ups[model]["depth"] == 1
    assert {"from": model, "to": task, "kind": "used", "path": "models:/wine served/7"} in up[
        "edges"
    ]
    # through the version to the task that registered it and what that one read
    assert f"task:{train['id']}" in ups and f"data:data/wine.csv@{demo.md5}" in ups
    down = walk(demo, "downstream", model, depth=1)
    assert [n["id"] for n in down["items"]] == [task]
    found = client.get("/v1/lineage/lookup", params={"model": "wine served/7"}).json()
    assert found["registered_by"] == [{"run_id": demo.run_id, "task_id": train["id"]}]
    assert found["used_by"] == [
        {"run_id": run_id, "task_id": served["id"], "path": "models:/wine served/7"}
    ]
    written = client.get(f"/v1/runs/{run_id}/lineage").json()["tasks"][0]["lineage"]["outputs"]
    # the task was told which version it reads
    declared = json.dumps(["models:/wine served/7"]).encode()
    assert [(o["path"], o["sha256"]) for o in written] == [
        ("models.json", hashlib.sha256(declared).hexdigest())
    ]
    # the standard exports carry the same edge
    events = client.get(f"/v1/runs/{run_id}/openlineage").json()["items"]
    assert events and all(
        {"namespace": "mlflow", "name": "models:/wine served/7"}.items()
        <= next(i for i in e["inputs"] if i["namespace"] == "mlflow").items()
        for e in events
    )
    assert all(
        next(i for i in e["inputs"] if i["namespace"] == "mlflow")["facets"]["version"][
            "datasetVersion"
        ]
        == "7"
        for e in events
    )
    document = client.get(f"/v1/runs/{run_id}/prov").json()
    assert document["entity"][model]["prov:label"] == "models:/wine served/7"
    assert any(
        u["prov:entity"] == model and u["prov:activity"] == task for u in document["used"].values()
    )


def test_a_model_that_is_not_a_registry_version_is_refused(demo: Demo) -> None:
    run_id = demo.api.run("serving")
    for bad in ("models:/wine", "models:/wine/latest", "runs:/abc/model", "models:/a/b/1"):
        response = demo.api.client.post(
            f"/v1/runs/{run_id}/tasks",
            json={"name": "serve", "spec": {"command": ["true"], "models": [bad]}},
        )
        assert response.status_code == 422, response.text
        assert "models" in response.text and bad in response.text, response.text
