"""Fixtures for controller-core tests: a real controller over a temp home, and git/DVC repos."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.config import Settings
from controller.domain.records import TERMINAL
from tests.server_process import ServerProcess
from tests.waiting import wait_for


class Api:
    """A TestClient with helpers; the supervisor runs in its thread as in production."""

    def __init__(self, client: TestClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def run(self, pipeline: str = "test", **extra: Any) -> str:
        response = self.client.post("/v1/runs", json={"pipeline": pipeline, **extra})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def submit(self, run_id: str, name: str, **spec: Any) -> dict[str, Any]:
        response = self.client.post(f"/v1/runs/{run_id}/tasks", json={"name": name, "spec": spec})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def wait(self, task_id: str, timeout: float = 120) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:  # the API's long poll does the waiting
            task = self.client.get(f"/v1/tasks/{task_id}/wait", params={"timeout_s": 5}).json()
            return dict(task) if task["status"] in TERMINAL else None

        return wait_for(f"task {task_id} to end", ended, timeout, every=0)

    def wait_status(self, task_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            task = self.client.get(f"/v1/tasks/{task_id}").json()
            return dict(task) if task["status"] == status else None

        return wait_for(f"task {task_id} to reach {status}", reached, timeout, every=0.1)

    def logs(self, task_id: str, **params: Any) -> list[dict[str, Any]]:
        return list(
            self.client.get(f"/v1/tasks/{task_id}/logs", params={"limit": 1000, **params}).json()[
                "items"
            ]
        )


@pytest.fixture
def server(tmp_path: Path, mlflow_uri: str) -> Iterator[ServerProcess]:
    """A controller in a process of its own (kill -9 and restart tests)."""
    srv = ServerProcess(tmp_path / "home", {"TRACECTL_TRACKING_URI": mlflow_uri})
    srv.start()
    yield srv
    srv.stop()


def quick_settings(root: Path, tracking_uri: str | None = None, **extra: Any) -> Settings:
    """A test controller's settings: its home under ROOT, a supervisor round every 0.05 s,
    1 s to stop a cancelled task, 0.1 s before a retry, MLflow at TRACKING_URI (a file
    under ROOT when None); EXTRA are more settings."""
    return Settings(
        home=root / "home",
        supervisor_interval_s=0.05,
        cancel_grace_s=1.0,
        retry_backoff_s=0.1,
        tracking_uri=tracking_uri or f"sqlite:///{root / 'mlflow.db'}",
        **extra,
    )


@pytest.fixture
def settings(tmp_path: Path, mlflow_uri: str) -> Settings:
    return quick_settings(tmp_path, mlflow_uri)


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    with TestClient(create_app(settings)) as client:
        yield Api(client, settings)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def lose_branch(repo: Path, branch: str) -> None:
    """Delete BRANCH of REPO and every trace of the commits only it had (reflog, objects)."""
    git(repo, "branch", "-D", branch)
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "gc", "-q", "--prune=now")


def everything(api: Api) -> tuple[list[Any], list[Any]]:
    """Every run and every task the controller lists (up to 1000 each)."""
    runs = api.client.get("/v1/runs", params={"limit": 1000}).json()["items"]
    return runs, api.client.get("/v1/tasks", params={"limit": 1000}).json()["items"]


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.fixture
def code_repo(tmp_path: Path) -> Path:
    """A git repository with one script, committed on main."""
    repo = tmp_path / "code"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.invalid")
    git(repo, "config", "user.name", "test")
    (repo / "hello.py").write_text("print('hello from', __file__)\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "first")
    return repo


def submit_python(client: TestClient, code: str) -> str:
    """A new run's one task running CODE with this interpreter; its id."""
    run = client.post("/v1/runs", json={"pipeline": "p"}).json()["id"]
    response = client.post(
        f"/v1/runs/{run}/tasks",
        json={"name": "t", "spec": {"command": [sys.executable, "-c", code]}},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])
