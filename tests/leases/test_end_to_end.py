"""Through the real controller: one GPU, three GPU tasks, driven by Supervisor.tick().

The tasks run one after the other, each with its own fencing token in its lineage, the
queue shows the waiting ones with positions and reasons, and the lease API tells the story.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from controller.api.app import create_app
from controller.config import Settings
from controller.core.service import ControllerService
from controller.domain.records import TERMINAL
from controller.store.schema import AuditRow
from tests.waiting import wait_for

SLEEP_1S = ["python", "-c", "import time; time.sleep(1)"]
ONE_GPU = "gpu_pools: [{name: gpu-worker, flavor: nvidia.com/gpu, count: 1}]\n"


def controller(tmp_path: Path) -> tuple[ControllerService, TestClient]:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(ONE_GPU)
    settings = Settings(home=tmp_path / "home", inventory_file=inventory, lease_ttl_s=30)
    svc = ControllerService(settings)
    svc.db.migrate()
    return svc, TestClient(create_app(settings, service=svc, run_supervisor=False))


def submit_gpu_tasks(client: TestClient, count: int) -> list[str]:
    run = client.post("/v1/runs", json={"pipeline": "gpu"}).json()["id"]
    ids = []
    for i in range(count):
        response = client.post(
            f"/v1/runs/{run}/tasks",
            json={
                "name": f"train-{i}",
                "spec": {
                    "command": SLEEP_1S,
                    "resources": {"gpu": 1, "gpu_flavor": "nvidia.com/gpu"},
                },
            },
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def tick_until_done(
    svc: ControllerService, client: TestClient, ids: list[str], timeout: float = 120
) -> int:
    """Tick the supervisor until every task ended; return the most active GPU leases seen."""
    most = 0

    def ended() -> bool:
        nonlocal most
        svc.supervisor.tick()
        active = client.get("/v1/leases", params={"state": "active"}).json()["items"]
        most = max(most, len(active))
        return all(client.get(f"/v1/tasks/{t}").json()["status"] in TERMINAL for t in ids)

    wait_for("every task to end", ended, timeout=timeout, every=0.05)
    return most


@pytest.mark.timeout(240)
def test_one_gpu_three_tasks_never_overlap(tmp_path: Path) -> None:
    svc, client = controller(tmp_path)
    with client:
        ids = submit_gpu_tasks(client, 3)
        svc.supervisor.tick()  # pending -> queued -> first one admitted
        queue = client.get("/v1/queue").json()
        assert [item["position"] for item in queue["items"]] == [1, 2]
        assert [item["task_id"] for item in queue["items"]] == ids[1:]
        for item in queue["items"]:
            assert item["reason"] == "waiting for 1 gpu (flavor nvidia.com/gpu): 0 free"
        task = client.get(f"/v1/tasks/{ids[1]}").json()
        assert task["queue"]["reason"].startswith("waiting for 1 gpu")
        resources = client.get("/v1/resources").json()
        assert resources["gpu_pools"] == [
            {
                "pool": "gpu-worker",
                "flavor": "nvidia.com/gpu",
                "capacity": 1,
                "in_use": 1,
                "queued_demand": 2,
                "free": 0,
            }
        ]
        [gpu] = [r for r in resources["items"] if r["kind"] == "gpu"]
        assert gpu["holder_task"] == ids[0]

        assert tick_until_done(svc, client, ids) == 1

        spans: list[tuple[datetime, datetime, int]] = []
        for task_id in ids:
            task = client.get(f"/v1/tasks/{task_id}").json()
            assert task["status"] == "succeeded", task
            lineage = client.get(f"/v1/tasks/{task_id}/lineage").json()
            [lease] = lineage["leases"]
            assert lease["resource"] == "gpu:gpu-worker:0"
            spans.append(
                (
                    datetime.fromisoformat(task["started_at"]),
                    datetime.fromisoformat(task["finished_at"]),
                    lease["fencing_token"],
                )
            )
        spans.sort()
        tokens = [token for _s, _f, token in spans]
        assert tokens == sorted(tokens) and len(set(tokens)) == 3, spans
        for (_s0, f0, _t0), (s1, _f1, _t1) in itertools.pairwise(spans):
            assert s1 >= f0, f"tasks overlapped on the one GPU: {spans}"
        assert client.get("/v1/leases").json()["items"] == []
        everything = client.get("/v1/leases", params={"state": "all", "limit": 2}).json()
        assert len(everything["items"]) == 2 and everything["next_cursor"]
        rest = client.get(
            "/v1/leases", params={"state": "all", "cursor": everything["next_cursor"]}
        ).json()
        assert len(rest["items"]) == 1 and rest["next_cursor"] is None
        assert all(x["release_reason"] == "succeeded" for x in everything["items"] + rest["items"])


@pytest.mark.timeout(240)
def test_force_release_needs_admin_and_is_audited(tmp_path: Path) -> None:
    svc, client = controller(tmp_path)
    with client:
        ids = submit_gpu_tasks(client, 2)
        svc.supervisor.tick()
        [lease] = client.get("/v1/leases", params={"task_id": ids[0]}).json()["items"]
        url = f"/v1/leases/{lease['id']}/release"
        denied = client.post(url, json={"reason": "stuck"})
        assert denied.status_code == 403
        assert denied.headers["content-type"].startswith("application/problem+json")
        admin = {"X-Tracectl-Role": "admin", "X-Tracectl-Actor": "alice"}
        assert client.post(url, json={}, headers=admin).status_code == 422
        assert (
            client.post(
                "/v1/leases/999999/release", json={"reason": "x"}, headers=admin
            ).status_code
            == 404
        )
        released: dict[str, Any] = client.post(
            url, json={"reason": "node drained"}, headers=admin
        ).json()
        assert released["release_reason"] == "force-released: node drained"
        assert client.post(url, json={"reason": "again"}, headers=admin).status_code == 409
        with svc.db.read() as session:
            audit = session.scalar(select(AuditRow).where(AuditRow.action == "lease.force_release"))
            assert audit is not None and audit.actor == "alice"
            assert audit.detail["reason"] == "node drained"
        svc.supervisor.tick()  # the freed GPU goes to the next task at once
        assert client.get("/v1/leases", params={"task_id": ids[1]}).json()["items"]
        tick_until_done(svc, client, ids)
        assert client.get("/v1/leases").json()["items"] == []
