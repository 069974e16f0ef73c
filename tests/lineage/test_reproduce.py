"""Reproducing the demo run gives bit-identical outputs; a lost DVC object refuses it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.config import Settings
from controller.lineage.reproduce import remote_object
from tests.core.conftest import Api, everything, git, lose_branch
from tests.lineage.conftest import Demo
from tests.registry_images import delete, push, unique_repository


def test_reproduction_is_bit_identical(demo: Demo) -> None:
    client = demo.api.client
    response = client.post(f"/v1/runs/{demo.run_id}/reproduce")
    assert response.status_code == 201, response.text
    made = response.json()
    assert made["reproduces"] == demo.run_id and set(made["tasks"]) == set(demo.tasks)
    for task_id in made["tasks"].values():
        assert demo.api.wait(task_id, timeout=300)["status"] == "succeeded"
    run = client.get(f"/v1/runs/{made['run_id']}").json()
    assert run["reproduces"] == demo.run_id
    report = client.get(f"/v1/runs/{made['run_id']}/reproduction").json()
    assert report["finished"] and report["identical"], report
    pairs = {(o["task"], o["path"]) for o in report["outputs"]}
    assert pairs == {
        ("prepare", "prepared/train.csv"),
        ("prepare", "prepared/test.csv"),
        ("train", "model/model.pkl"),
        ("evaluate", "metrics.json"),
    }
    lineage = client.get(f"/v1/runs/{made['run_id']}/lineage").json()
    for task in lineage["tasks"]:
        assert task["lineage"]["code"]["commit"] == demo.head
        original = demo.tasks[task["name"]]["lineage"]
        assert task["lineage"]["data"] == original["data"]
        assert task["lineage"]["params"] == original["params"]
        assert task["lineage"]["command"] == original["command"]
    # The new run's train read the new run's prepare output, not the old one's.
    train_inputs = {
        i["produced_by_task"]
        for i in next(t for t in lineage["tasks"] if t["name"] == "train")["lineage"]["inputs"]
    }
    assert train_inputs == {made["tasks"]["prepare"]}
    diff = client.get(f"/v1/runs/{demo.run_id}/diff/{made['run_id']}").json()
    assert diff["identical_outputs"]


def test_reproduction_refuses_when_the_dvc_object_is_gone(demo: Demo, tmp_path: Path) -> None:
    client = demo.api.client
    where = remote_object(str(demo.remote.resolve()), demo.md5)
    assert where is not None and where.exists()
    runs_before = client.get("/v1/runs", params={"limit": 1000}).json()["items"]
    aside = tmp_path / "object"
    shutil.move(where, aside)
    try:
        response = client.post(f"/v1/runs/{demo.run_id}/reproduce")
    finally:
        shutil.move(aside, where)
    assert response.status_code == 409, response.text
    problem = response.json()
    assert "data/wine.csv" in problem["detail"] and "no longer retrievable" in problem["detail"]
    assert demo.md5 in problem["detail"]
    assert client.get("/v1/runs", params={"limit": 1000}).json()["items"] == runs_before


def test_reproduction_of_an_unknown_run_is_404(demo: Demo) -> None:
    assert demo.api.client.post("/v1/runs/run-nope/reproduce").status_code == 404
    assert demo.api.client.get(f"/v1/runs/{demo.run_id}/reproduction").status_code == 409


def test_a_reproduction_keeps_task_labels_but_not_the_airflow_try(demo: Demo) -> None:
    api = demo.api
    run_id = api.run("labelled")
    task = api.submit(
        run_id,
        "hello",
        command=["python", "-c", "print('hi')"],
        labels={
            "team": "ml",
            "airflow_task_id": "hello",
            "airflow_try_number": "2",
            "airflow_map_index": "-1",
        },
    )
    assert api.wait(task["id"])["status"] == "succeeded"
    response = api.client.post(f"/v1/runs/{run_id}/reproduce")
    assert response.status_code == 201, response.text
    again = api.client.get(f"/v1/tasks/{response.json()['tasks']['hello']}").json()
    assert again["spec"]["labels"] == {"team": "ml"}
    assert api.client.get(f"/v1/tasks/{task['id']}").json()["spec"]["labels"]["team"] == "ml"


def test_a_lost_commit_refuses_the_reproduction_before_anything_is_created(
    demo: Demo, tmp_path: Path
) -> None:
    api = demo.api
    repo = tmp_path / "gone"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.invalid")
    git(repo, "config", "user.name", "test")
    (repo / "hello.py").write_text("print('main')\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "main")
    git(repo, "checkout", "-qb", "feature")
    (repo / "hello.py").write_text("print('feature')\n")
    git(repo, "commit", "-qam", "feature")
    lost = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    run_id = api.run("lost-commit")
    first = api.submit(run_id, "first", command=["python", "-c", "print(1)"])
    second = api.submit(
        run_id,
        "second",
        command=["python", "hello.py"],
        code={"repo": str(repo), "ref": "feature"},
        models=["models:/never-registered/1"],
    )
    for task in (first, second):
        assert api.wait(task["id"])["status"] == "succeeded"
    lose_branch(repo, "feature")
    before = everything(api)

    response = api.client.post(f"/v1/runs/{run_id}/reproduce")

    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert [e["path"] for e in problem["errors"]] == [
        "tasks.second.code.commit",
        "tasks.second.models.models:/never-registered/1",
    ]
    assert lost in problem["detail"] and "no longer retrievable" in problem["detail"]
    assert everything(api) == before


def test_a_reproduction_is_created_closed_with_all_its_tasks(demo: Demo) -> None:
    api = demo.api
    run_id = api.run("closed-repro")
    task = api.submit(run_id, "one", command=["python", "-c", "print(1)"])
    assert api.wait(task["id"])["status"] == "succeeded"
    made = api.client.post(f"/v1/runs/{run_id}/reproduce").json()
    run = api.client.get(f"/v1/runs/{made['run_id']}").json()
    assert run["closed_at"] is not None and run["reproduces"] == run_id
    events = api.client.get(f"/v1/runs/{made['run_id']}/lineage/events").json()["items"]
    assert [e["type"] for e in events][:4] == [
        "run.created",
        "run.reproduces",
        "task.submitted",
        "run.closed",
    ]
    assert api.wait(made["tasks"]["one"])["status"] == "succeeded"


@pytest.mark.registry
def test_an_image_digest_gone_from_the_registry_refuses_the_reproduction(
    registry: dict[str, str], tmp_path: Path, mlflow_uri: str
) -> None:
    host, repo = registry["TRACECTL_REGISTRY"], unique_repository()
    digest = push(host, repo, "1", tmp_path)
    settings = Settings(
        home=tmp_path / "home",
        supervisor_interval_s=0.05,
        tracking_uri=mlflow_uri,
        registry_api="oci",
    )
    with TestClient(create_app(settings)) as client:
        api = Api(client, settings)
        run_id = api.run("image-gone")
        task = api.submit(
            run_id, "fit", command=["python", "-c", "print(1)"], image=f"{host}/{repo}:1"
        )
        assert api.wait(task["id"])["status"] == "succeeded"
        kept = client.post(f"/v1/runs/{run_id}/reproduce")
        assert kept.status_code == 201, kept.text
        assert kept.json()["unchecked"] == []
        delete(host, repo, digest)
        # ids only: the first reproduction's run may finish meanwhile
        runs_before = [
            r["id"] for r in client.get("/v1/runs", params={"limit": 1000}).json()["items"]
        ]

        response = client.post(f"/v1/runs/{run_id}/reproduce")

        assert response.status_code == 409, response.text
        [error] = response.json()["errors"]
        assert error["path"] == "tasks.fit.image"
        assert f"{host}/{repo}@{digest} is no longer in the registry" in error["msg"]
        runs_after = client.get("/v1/runs", params={"limit": 1000}).json()["items"]
        assert [r["id"] for r in runs_after] == runs_before
