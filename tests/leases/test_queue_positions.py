"""The queue position a task shows is the order the admitter really uses (fair share).

Team a holds two of four GPUs and has two more 2-GPU tasks waiting; team b's one 2-GPU
task was queued last. Plain FIFO would put b's task third; fair share puts it first (b
holds no GPU), and the next round does grant it the two free GPUs. `GET /v1/tasks/{id}`,
`GET /v1/tasks` and `GET /v1/queue` all show that order.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.config import Settings
from controller.core.service import ControllerService
from controller.store.schema import TaskRow
from tests.leases.helpers import T0, add_task

FOUR_GPUS = "gpu_pools: [{name: gpu-worker, flavor: nvidia.com/gpu, count: 4}]\n"


def test_positions_follow_fair_share_not_fifo(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(FOUR_GPUS)
    settings = Settings(home=tmp_path / "home", inventory_file=inventory, lease_ttl_s=30)
    svc = ControllerService(settings)
    svc.db.migrate()
    with svc.db.write() as session:
        for i, (task_id, team) in enumerate([("a0", "a"), ("a1", "a"), ("a2", "a"), ("b1", "b")]):
            add_task(session, task_id, team=team, queued_at=T0 + timedelta(seconds=i), gpu=2)
    with svc.db.write() as session:
        a0 = session.get(TaskRow, "a0")
        assert a0 is not None
        assert svc.admitter.admit(session, [a0])["a0"].admitted
        a0.status = "running"

    with TestClient(create_app(settings, service=svc, run_supervisor=False)) as client:
        shown = {
            t: client.get(f"/v1/tasks/{t}").json()["queue"]["position"] for t in ("a1", "a2", "b1")
        }
        assert shown == {"b1": 1, "a1": 2, "a2": 3}
        queue = client.get("/v1/queue").json()["items"]
        assert [(x["task_id"], x["position"]) for x in queue] == [("b1", 1), ("a1", 2), ("a2", 3)]
        listed = client.get("/v1/tasks").json()["items"]
        assert {t["id"]: t["queue"]["position"] for t in listed if t["queue"]} == shown

    # the admitter agrees: the two free GPUs go to position 1
    with svc.db.write() as session:
        rows = [session.get(TaskRow, t) for t in ("a1", "a2", "b1")]
        decisions = svc.admitter.admit(session, [r for r in rows if r is not None])
    assert [t for t, d in decisions.items() if d.admitted] == ["b1"]
