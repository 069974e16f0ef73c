"""The example pipeline's lineage is complete and matches the real git, DVC and MLflow state."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
import yaml

from controller.demo.pipeline import task_specs
from controller.demo.repo import build_demo_repo
from tests.core.conftest import Api, git


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def local(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


@pytest.fixture
def demo_run(api: Api, tmp_path: Path) -> dict[str, Any]:
    repo, remote = build_demo_repo(tmp_path / "demo")
    run_id = api.run("wine-classifier")
    ids = [
        api.submit(run_id, body["name"], **body["spec"])["id"]
        for body in task_specs(repo, {"n_estimators": 20, "max_depth": 4})
    ]
    for task_id in ids:
        assert api.wait(task_id, timeout=300)["status"] == "succeeded"
    lineage = api.client.get(f"/v1/runs/{run_id}/lineage").json()
    return {
        "repo": repo,
        "remote": remote,
        "lineage": lineage,
        "tasks": {t["name"]: t for t in lineage["tasks"]},
    }


def test_demo_lineage_is_complete_and_true(demo_run: dict[str, Any], api: Api) -> None:
    repo: Path = demo_run["repo"]
    tasks = demo_run["tasks"]
    head = git(repo, "rev-parse", "HEAD")
    dvc_md5 = yaml.safe_load((repo / "data" / "wine.csv.dvc").read_text())["outs"][0]["md5"]
    assert dvc_md5 == hashlib.md5((repo / "data" / "wine.csv").read_bytes()).hexdigest()

    assert demo_run["lineage"]["run"]["status"] == "succeeded"
    for name in ("prepare", "train", "evaluate"):
        record = tasks[name]["lineage"]
        assert record["code"] == {"repo": str(repo), "ref": "main", "commit": head, "dirty": False}
        assert record["environment"]["python_version"]
        assert len(record["environment"]["pip_freeze_sha256"]) == 64
        # the example's own uv.lock, not the controller's venv
        assert record["environment"]["kind"] == "uv_lock"
        assert "scikit-learn==1.9.1" in record["environment"]["packages"]
        assert record["mlflow"]["run_id"]
        assert record["logs"]["lines"] > 0
        for out in record["outputs"]:
            assert out["sha256"] == sha256(local(out["uri"]))
            assert out["produced_by_task"] == tasks[name]["id"]

    assert len({tasks[n]["lineage"]["environment"]["key"] for n in tasks}) == 1
    prepare = tasks["prepare"]["lineage"]
    assert prepare["data"] == [
        {
            "path": "data/wine.csv",
            "md5": dvc_md5,
            "rev": head,
            "remote": str(demo_run["remote"].resolve()),
        }
    ]
    assert prepare["params"] == {"test_size": 0.25, "seed": 42}
    produced = {o["path"]: o for o in prepare["outputs"]}
    assert set(produced) == {"prepared/train.csv", "prepared/test.csv"}

    train = tasks["train"]["lineage"]
    assert train["inputs"][0]["sha256"] == produced["prepared/train.csv"]["sha256"]
    assert train["inputs"][0]["produced_by_task"] == tasks["prepare"]["id"]
    assert train["params"] == {"n_estimators": 20, "max_depth": 4, "seed": 42}
    model = train["outputs"][0]
    evaluate = tasks["evaluate"]["lineage"]
    assert {i["sha256"] for i in evaluate["inputs"]} == {
        model["sha256"],
        produced["prepared/test.csv"]["sha256"],
    }

    edges = {(e["from"].split(":")[0], e["to"].split(":")[0]) for e in demo_run["lineage"]["edges"]}
    assert edges == {("data", "task"), ("task", "artifact"), ("artifact", "task")}
    by_hash = api.client.get(f"/v1/artifacts/{model['sha256']}").json()
    assert by_hash[0]["task_id"] == tasks["train"]["id"]


def test_demo_mlflow_runs_carry_the_lineage(demo_run: dict[str, Any], api: Api) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=api.settings.mlflow_uri)
    repo: Path = demo_run["repo"]
    head = git(repo, "rev-parse", "HEAD")
    tasks = demo_run["tasks"]
    prepare = client.get_run(tasks["prepare"]["lineage"]["mlflow"]["run_id"])
    assert prepare.data.tags["mlflow.source.git.commit"] == head
    assert prepare.data.tags["mlflow.source.name"] == str(repo)
    assert prepare.data.tags["mlflow.user"] == "default"
    assert prepare.data.tags["tracectl.task_id"] == tasks["prepare"]["id"]
    assert prepare.data.params["seed"] == "42"
    datasets = prepare.inputs.dataset_inputs
    assert [d.dataset.name for d in datasets] == ["data/wine.csv"]
    md5 = tasks["prepare"]["lineage"]["data"][0]["md5"]
    assert json.loads(datasets[0].dataset.source)["md5"] == md5
    assert prepare.info.status == "FINISHED"

    train = client.get_run(tasks["train"]["lineage"]["mlflow"]["run_id"])
    assert 0.9 <= train.data.metrics["train_accuracy"] <= 1.0
    assert [a.path for a in client.list_artifacts(train.info.run_id, "model")] == [
        "model/model.pkl"
    ]

    evaluate = client.get_run(tasks["evaluate"]["lineage"]["mlflow"]["run_id"])
    metrics_out = tasks["evaluate"]["lineage"]["outputs"][0]
    written = json.loads(local(metrics_out["uri"]).read_text())
    assert evaluate.data.metrics["test_accuracy"] == pytest.approx(written["test_accuracy"])
    assert written["test_accuracy"] > 0.8


def test_demo_passport_joins_every_identity(demo_run: dict[str, Any], api: Api) -> None:
    from controller.core.passport import check

    run_id = demo_run["lineage"]["run"]["id"]
    passport = api.client.get(f"/v1/runs/{run_id}/passport").json()
    assert passport["correlation_id"] == run_id and check(passport) == []
    head = git(demo_run["repo"], "rev-parse", "HEAD")
    tasks = {t["name"]: t for t in passport["tasks"]}
    assert set(tasks) == {"prepare", "train", "evaluate"}
    for task in tasks.values():
        assert task["code"]["commit"] == head
        assert task["executor"]["kind"] == "local" and task["executor"]["pid"] > 0
        assert task["mlflow"]["run_id"]
        archive = task["logs"]["archive"]
        assert archive["lines"] == task["logs"]["lines"] > 0
        assert archive["sha256"] == sha256(local(archive["uri"]))
    assert tasks["prepare"]["data"][0]["remote"] == str(demo_run["remote"].resolve())
    assert passport["chains"]["lineage"]["seq"] > 0
    tampered = {**passport, "run": {**passport["run"], "status": "failed"}}
    assert check(tampered) == ["content_sha256 does not match: the document was changed"]
