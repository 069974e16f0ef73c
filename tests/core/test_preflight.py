"""Preflight findings, each triggered by a real git / DVC / image situation."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.config import Settings
from controller.demo.repo import build_demo_repo
from tests.core.conftest import Api, git


@pytest.fixture
def strict_api(settings: Settings) -> Any:
    strict = settings.model_copy(
        update={"preflight": "code.unpushed=refuse,code.dirty=refuse,image.mutable_tag=refuse"}
    )
    with TestClient(create_app(strict, run_supervisor=False)) as client:
        yield Api(client, strict)


def submit(api: Api, spec: dict[str, Any]) -> Any:
    run = api.run()
    return api.client.post(f"/v1/runs/{run}/tasks", json={"name": "t", "spec": spec})


def findings(response: Any) -> dict[str, str]:
    return {e["path"]: e["msg"] for e in response.json()["errors"]}


def test_unpushed_commit_is_refused_and_pushed_one_accepted(
    strict_api: Api, code_repo: Path, tmp_path: Path
) -> None:
    spec = {"command": ["python", "hello.py"], "code": {"repo": str(code_repo)}}
    refused = submit(strict_api, spec)
    assert refused.status_code == 422
    msg = findings(refused)["spec.code.ref"]
    assert "has no remote" in msg and "git push" in msg and "[code.unpushed]" in msg
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(code_repo, "remote", "add", "origin", str(remote))
    git(code_repo, "push", "-q", "origin", "main")
    assert submit(strict_api, spec).status_code == 201


def test_dirty_tree_is_refused_with_the_fix(
    strict_api: Api, code_repo: Path, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(code_repo, "remote", "add", "origin", str(remote))
    git(code_repo, "push", "-q", "origin", "main")
    (code_repo / "hello.py").write_text("print('edited')\n")
    response = submit(strict_api, {"command": ["x"], "code": {"repo": str(code_repo)}})
    assert response.status_code == 422
    assert "commit (or stash)" in findings(response)["spec.code.repo"]


def test_mutable_image_tag_is_refused_and_digest_accepted(strict_api: Api) -> None:
    response = submit(strict_api, {"command": ["x"], "image": "python:3.11"})
    assert response.status_code == 422
    assert "pin it by digest" in findings(response)["spec.image"]
    pinned = "python@sha256:" + "a" * 64
    assert submit(strict_api, {"command": ["x"], "image": pinned}).status_code == 201


def test_non_json_params_are_refused_by_default(api: Api) -> None:
    run = api.run()
    body = '{"name": "t", "spec": {"command": ["x"], "params": {"lr": NaN}}}'
    response = api.client.post(
        f"/v1/runs/{run}/tasks", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "[params.not_serializable]" in response.json()["detail"]


def test_data_missing_from_the_dvc_remote_is_refused(api: Api, tmp_path: Path) -> None:
    repo, remote = build_demo_repo(tmp_path / "demo")
    spec = {
        "command": ["python", "prepare.py"],
        "code": {"repo": str(repo)},
        "data": {"paths": ["data/wine.csv"]},
    }
    accepted = submit(api, spec)
    assert accepted.status_code == 201
    lineage = api.client.get(f"/v1/tasks/{accepted.json()['id']}/lineage").json()
    warned = {f["code"]: f["action"] for f in lineage["resolved"]["preflight"]}
    assert warned == {"code.unpushed": "warn"}  # the demo repo has no git remote
    md5 = yaml.safe_load((repo / "data" / "wine.csv.dvc").read_text())["outs"][0]["md5"]
    shutil.rmtree(remote / "files")
    response = submit(api, spec)
    assert response.status_code == 422
    msg = findings(response)["spec.data.paths.0"]
    assert md5 in msg and "dvc push data/wine.csv" in msg


def test_preflight_endpoint_reports_without_writing(strict_api: Api) -> None:
    body = {"name": "t", "spec": {"command": ["x"], "image": "python:3.11"}}
    response = strict_api.client.post("/v1/preflight", json=body)
    assert response.status_code == 200
    result = response.json()
    assert result["refused"] is True
    assert [f["code"] for f in result["findings"]] == ["image.mutable_tag"]
    assert strict_api.client.get("/v1/runs").json()["items"] == []
