"""Every view of a finished task's leases shows what the leases table holds: released."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.config import Settings
from tests.core.conftest import Api

INVENTORY = """\
gpu_pools: [{name: gpu-worker, flavor: nvidia.com/gpu, count: 1}]
volumes: [{claim: datasets, access: RWX}]
"""


@pytest.fixture
def api(tmp_path: Path, mlflow_uri: str) -> Iterator[Api]:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY)
    settings = Settings(
        home=tmp_path / "home",
        inventory_file=inventory,
        supervisor_interval_s=0.05,
        tracking_uri=mlflow_uri,
    )
    with TestClient(create_app(settings)) as client:
        yield Api(client, settings)


def flat(lease: dict[str, Any]) -> dict[str, Any]:
    """A lease as a record shows it ({resource, fencing_token, detail}) as /v1/leases does."""
    return {
        "resource": lease["resource"],
        "fencing_token": lease["fencing_token"],
        **lease["detail"],
    }


def test_passport_lineage_openlineage_and_the_lease_list_agree(api: Api) -> None:
    run_id = api.run("leases")
    task = api.submit(
        run_id,
        "train",
        command=["python", "-c", "print(1)"],
        resources={"gpu": 1, "volumes": [{"claim": "datasets", "mode": "ro"}]},
    )
    assert api.wait(task["id"])["status"] == "succeeded"
    client = api.client
    listed = client.get("/v1/leases", params={"state": "all", "task_id": task["id"]}).json()
    truth = listed["items"]
    assert {lease["resource"] for lease in truth} == {"gpu:gpu-worker:0", "volume:datasets"}
    assert all(lease["released_at"] and lease["release_reason"] for lease in truth)

    task_lineage = client.get(f"/v1/tasks/{task['id']}/lineage").json()
    run_lineage = client.get(f"/v1/runs/{run_id}/lineage").json()["tasks"][0]["lineage"]
    passport = client.get(f"/v1/runs/{run_id}/passport").json()["tasks"][0]
    for view in (task_lineage, run_lineage, passport):
        assert [flat(lease) for lease in view["leases"]] == truth
    events = client.get(f"/v1/runs/{run_id}/openlineage").json()["items"]
    complete = next(e for e in events if e["eventType"] == "COMPLETE")
    assert complete["run"]["facets"]["tracectl_leases"]["leases"] == truth
