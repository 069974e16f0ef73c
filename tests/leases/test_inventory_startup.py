"""The inventory shows from start-up: a fresh controller lists the configured GPUs and volumes
before any task, and an edit of the inventory file shows after a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.config import Settings

INVENTORY = """\
gpu_pools: [{name: gpu-worker, flavor: nvidia.com/gpu, count: 2}]
volumes: [{claim: datasets, access: RWX}, {claim: scratch, access: RWO}]
"""


def resources_at_start(tmp_path: Path) -> dict[str, Any]:
    """GET /v1/resources of a controller just started over TMP_PATH's home and inventory."""
    settings = Settings(home=tmp_path / "home", inventory_file=tmp_path / "inventory.yaml")
    with TestClient(create_app(settings)) as client:
        response = client.get("/v1/resources")
        assert response.status_code == 200, response.text
        assert client.get("/v1/tasks").json()["items"] == []
        return dict(response.json())


def test_a_fresh_controller_lists_the_inventory_before_any_task(tmp_path: Path) -> None:
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    shown = resources_at_start(tmp_path)
    names = {item["name"]: item["in_inventory"] for item in shown["items"]}
    assert names == {
        "gpu:gpu-worker:0": True,
        "gpu:gpu-worker:1": True,
        "volume:datasets": True,
        "volume:scratch": True,
    }
    assert shown["gpu_pools"] == [
        {
            "pool": "gpu-worker",
            "flavor": "nvidia.com/gpu",
            "capacity": 2,
            "in_use": 0,
            "queued_demand": 0,
            "free": 2,
        }
    ]


def test_an_inventory_edit_shows_after_a_restart(tmp_path: Path) -> None:
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    resources_at_start(tmp_path)
    (tmp_path / "inventory.yaml").write_text("volumes: [{claim: fresh, access: RWO}]\n")
    shown = {item["name"]: item["in_inventory"] for item in resources_at_start(tmp_path)["items"]}
    assert shown["volume:fresh"] is True
    assert shown["volume:scratch"] is False and shown["gpu:gpu-worker:0"] is False
