"""A claim the inventory can never grant is refused at submit; one that waits still queues."""

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
from tests.core.conftest import Api, python
from tests.server_process import ServerProcess
from tests.waiting import wait_for

INVENTORY = """\
gpu_pools: [{name: gpu-worker, flavor: nvidia.com/gpu, count: 2}]
volumes: [{claim: datasets, access: RWX}, {claim: scratch, access: RWO}]
"""


@pytest.fixture
def api(tmp_path: Path, mlflow_uri: str) -> Iterator[Api]:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY)
    settings = Settings(
        home=tmp_path / "home",
        inventory_file=inventory,
        supervisor_interval_s=0.05,
        cancel_grace_s=1.0,
        tracking_uri=mlflow_uri,
    )
    with TestClient(create_app(settings)) as client:
        yield Api(client, settings)


def counts(api: Api) -> tuple[int, int]:
    runs = api.client.get("/v1/runs", params={"limit": 1000}).json()["items"]
    tasks = api.client.get("/v1/tasks", params={"limit": 1000}).json()["items"]
    return len(runs), len(tasks)


def refused(api: Api, run_id: str, resources: dict[str, Any]) -> dict[str, Any]:
    response = api.client.post(
        f"/v1/runs/{run_id}/tasks",
        json={"name": "t", "spec": {"command": ["true"], "resources": resources}},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return dict(response.json())


def test_a_gpu_flavor_not_in_the_inventory_is_refused_naming_what_it_has(api: Api) -> None:
    run_id = api.run()
    before = counts(api)
    problem = refused(api, run_id, {"gpu": 1, "gpu_flavor": "nvidia.com/a100"})
    assert [e["path"] for e in problem["errors"]] == ["spec.resources.gpu"]
    assert "no GPU of flavor nvidia.com/a100" in problem["detail"]
    assert "gpu-worker: 2 x nvidia.com/gpu" in problem["detail"]
    too_many = refused(api, run_id, {"gpu": 3})
    assert "the largest pool has 2" in too_many["detail"]
    assert counts(api) == before


def test_a_volume_claim_not_in_the_inventory_is_refused_with_its_index(api: Api) -> None:
    run_id = api.run()
    before = counts(api)
    problem = refused(
        api,
        run_id,
        {"volumes": [{"claim": "datasets", "mode": "ro"}, {"claim": "models", "mode": "rw"}]},
    )
    assert [e["path"] for e in problem["errors"]] == ["spec.resources.volumes.1.claim"]
    assert "'models' is not in the inventory" in problem["detail"]
    assert "datasets (RWX), scratch (RWO)" in problem["detail"]
    assert counts(api) == before


def test_preflight_reports_what_the_inventory_can_never_grant(api: Api) -> None:
    response = api.client.post(
        "/v1/preflight",
        json={
            "name": "t",
            "spec": {
                "command": ["true"],
                "resources": {"gpu": 1, "gpu_flavor": "tpu", "volumes": [{"claim": "nope"}]},
            },
        },
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["refused"]
    assert [(f["code"], f["loc"], f["action"]) for f in result["findings"]] == [
        ("resources.not_in_inventory", ["spec", "resources", "gpu"], "refuse"),
        ("resources.not_in_inventory", ["spec", "resources", "volumes", 0, "claim"], "refuse"),
    ]


def test_a_task_that_fits_but_waits_is_queued_with_its_position_and_reason(api: Api) -> None:
    run_id = api.run()
    holder = api.submit(
        run_id, "holder", command=python("import time; time.sleep(60)"), resources={"gpu": 2}
    )
    api.wait_status(holder["id"], "running", timeout=120)
    waiting = api.submit(run_id, "waiting", command=["true"], resources={"gpu": 1})

    def told_gpu() -> dict[str, Any] | None:
        task: dict[str, Any] = api.client.get(f"/v1/tasks/{waiting['id']}").json()
        return task if "gpu" in (task["queue"] or {}).get("reason", "") else None

    task = wait_for("the queue reason to name the GPU", told_gpu, timeout=60, every=0.1)
    assert task["status"] == "queued"
    assert task["queue"]["position"] == 1
    assert "waiting for" in task["queue"]["reason"] and "gpu" in task["queue"]["reason"]
    api.client.post(f"/v1/tasks/{holder['id']}/cancel")
    assert api.wait(waiting["id"])["status"] == "succeeded"


def test_tracectl_check_reports_a_claim_the_inventory_lacks(
    tmp_path: Path, mlflow_uri: str
) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY)
    server = ServerProcess(
        tmp_path / "home",
        {"TRACECTL_INVENTORY_FILE": str(inventory), "TRACECTL_TRACKING_URI": mlflow_uri},
    )
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        "tasks:\n- name: train\n  spec: {command: ['true'], resources: "
        "{gpu: 1, gpu_flavor: nvidia.com/h100}}\n"
    )
    server.start()
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "controller.cli.main",
                "check",
                str(pipeline),
                "--url",
                server.url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.stop()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "refuse train" in result.stdout
    assert "no GPU of flavor nvidia.com/h100" in result.stdout
    assert "[resources.not_in_inventory]" in result.stdout
