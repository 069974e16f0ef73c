"""Fixtures for CLI tests: a real controller process, and `tracectl` as a user types it."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from controller.cli.main import app
from tests.server_process import ServerProcess

Tracectl = Callable[..., Result]


@pytest.fixture(scope="module")
def controller(
    tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str
) -> Iterator[ServerProcess]:
    """One controller for a test module (each test makes runs of its own)."""
    home = tmp_path_factory.mktemp("cli")
    inventory = home / "inventory.yaml"  # one exclusive volume: a task can wait for it
    inventory.write_text("volumes:\n  - {claim: scratch, access: RWO}\n")
    srv = ServerProcess(
        home / "home",
        {
            "TRACECTL_TRACKING_URI": mlflow_uri,
            "TRACECTL_SUPERVISOR_INTERVAL_S": "0.05",
            "TRACECTL_RETRY_BACKOFF_S": "0.1",
            "TRACECTL_INVENTORY_FILE": str(inventory),
        },
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def tracectl(controller: ServerProcess) -> Tracectl:
    """Run one command line, e.g. tracectl("tasks --run RUN -o json"), against CONTROLLER."""
    runner = CliRunner()

    def invoke(line: str, *extra: str) -> Result:
        return runner.invoke(
            app, [*shlex.split(line), *extra], env={"TRACECTL_URL": controller.url, "COLUMNS": "80"}
        )

    return invoke


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git repository with one committed script that prints its params file."""
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.invalid")
    git(repo, "config", "user.name", "test")
    (repo / "show.py").write_text(
        "import json, os\nprint(json.dumps(json.load(open(os.environ['TRACECTL_PARAMS_FILE']))))\n"
    )
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "first")
    return repo
