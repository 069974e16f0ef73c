"""`tracectl resources` shows the inventory from start-up and `tracectl leases` who holds
what, against a real controller process with a one-GPU inventory."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner, Result

from controller.cli.main import app
from tests.cli.conftest import Tracectl
from tests.server_process import ServerProcess
from tests.waiting import wait_for

INVENTORY = (
    "gpu_pools: [{name: node-a, flavor: nvidia.com/gpu, count: 1}]\n"
    "volumes: [{claim: scratch, access: RWO}]\n"
)


@pytest.fixture
def gpu_controller(tmp_path: Path, mlflow_uri: str) -> Iterator[ServerProcess]:
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    srv = ServerProcess(
        tmp_path / "home",
        {
            "TRACECTL_TRACKING_URI": mlflow_uri,
            "TRACECTL_SUPERVISOR_INTERVAL_S": "0.05",
            "TRACECTL_INVENTORY_FILE": str(tmp_path / "inventory.yaml"),
        },
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def on_gpu(gpu_controller: ServerProcess) -> Tracectl:
    def invoke(line: str, *extra: str) -> Result:
        return CliRunner().invoke(
            app,
            [*shlex.split(line), *extra],
            env={"TRACECTL_URL": gpu_controller.url, "COLUMNS": "80"},
        )

    return invoke


def running_gpu_task(srv: ServerProcess) -> dict[str, Any]:
    run = httpx.post(f"{srv.url}/v1/runs", json={"pipeline": "leases"}).json()["id"]
    spec = {
        "command": ["python", "-c", "import time; time.sleep(600)"],
        "resources": {"gpu": 1, "volumes": [{"claim": "scratch", "mode": "rw"}]},
    }
    task = httpx.post(f"{srv.url}/v1/runs/{run}/tasks", json={"name": "hold", "spec": spec})
    assert task.status_code == 201, task.text

    def running() -> dict[str, Any] | None:
        shown = srv.get(f"/v1/tasks/{task.json()['id']}")
        return dict(shown) if shown["status"] == "running" else None

    return wait_for("the GPU task to run", running, timeout=60, every=0.1)


def test_resources_lists_the_inventory_of_a_fresh_controller(on_gpu: Tracectl) -> None:
    shown = on_gpu("resources")
    assert shown.exit_code == 0, shown.output
    header, *rows = shown.stdout.splitlines()
    assert header.split() == ["RESOURCE", "KIND", "IN_USE", "HOLDER", "QUEUED"]
    assert [r.split()[:3] for r in rows] == [
        ["gpu:node-a:0", "gpu", "0/1"],
        ["volume:scratch", "volume", "0/1"],
    ]
    wide = on_gpu("resources -o wide").stdout
    assert "nvidia.com/gpu" in wide and "RWO" in wide
    assert on_gpu("leases").stdout.splitlines() == ["LEASE  RESOURCE  TASK  MODE  EXPIRES"]


def test_leases_show_who_holds_the_gpu_and_the_volume(
    gpu_controller: ServerProcess, on_gpu: Tracectl
) -> None:
    task = running_gpu_task(gpu_controller)
    held = json.loads(on_gpu("leases -o json").stdout)
    assert {(lease["resource"], lease["task_id"]) for lease in held} == {
        ("gpu:node-a:0", task["id"]),
        ("volume:scratch", task["id"]),
    }
    assert task["id"] in on_gpu("leases --resource gpu:node-a:0").stdout
    units = yaml.safe_load(on_gpu("resources -o yaml").stdout)
    assert {u["name"]: u["holder_task"] for u in units} == {
        "gpu:node-a:0": task["id"],
        "volume:scratch": task["id"],
    }
    assert on_gpu(f"cancel {task['id']}").exit_code == 0
    wait_for("the leases to be released", lambda: on_gpu("leases").stdout.count("\n") <= 1)
    released = json.loads(on_gpu(f"leases --all --task {task['id']} -o json").stdout)
    assert len(released) == 2 and all(lease["released_at"] for lease in released)


def test_leases_says_what_to_do_when_the_controller_is_unreachable() -> None:
    result = CliRunner().invoke(app, ["leases", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 4
    assert "cannot reach the controller" in result.output
