"""The admission and inspection loops race at run end: a service of a closed run must not
start in the admission round that began before its run's last job ended.

The interleaving is replayed step by step on an in-process controller (no loop threads):
inspection finishes the job and frees the GPU, then admission runs its admit step without
the run-end check that preceded it in the same round.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.config import Settings
from controller.core.run_end import NEVER_STARTED_REASON
from controller.core.service import ControllerService
from tests.waiting import wait_for

ONE_GPU = "gpu_pools: [{name: gpu-worker, flavor: nvidia.com/gpu, count: 1}]\n"
GPU = {"gpu": 1, "gpu_flavor": "nvidia.com/gpu"}


@pytest.mark.timeout(120)
def test_a_service_is_not_admitted_after_its_runs_last_job_ended(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(ONE_GPU)
    settings = Settings(home=tmp_path / "home", inventory_file=inventory)
    svc = ControllerService(settings)
    svc.db.migrate()
    with TestClient(create_app(settings, service=svc, run_supervisor=False)) as client:
        run = client.post("/v1/runs", json={"pipeline": "p"}).json()["id"]

        def submit(name: str, **spec: object) -> str:
            response = client.post(
                f"/v1/runs/{run}/tasks",
                json={
                    "name": name,
                    "spec": {"command": ["python", "-c", "pass"], "resources": GPU, **spec},
                },
            )
            assert response.status_code == 201, response.text
            return str(response.json()["id"])

        def status(task_id: str) -> str:
            return str(client.get(f"/v1/tasks/{task_id}").json()["status"])

        job = submit("train")
        svc.supervisor.admit()  # the job takes the only GPU
        service = submit("serve", mode="service")
        assert client.post(f"/v1/runs/{run}/close").status_code == 200
        # the inspection loop finishes it: GPU free
        wait_for(
            "the job to succeed",
            lambda: svc.supervisor.watch() or status(job) == "succeeded",
            60,
            0.05,
        )
        svc.supervisor.pending.promote(svc.db, svc.supervisor.admitter)
        # the round's run-end check came before the job ended
        svc.supervisor.launcher.admit_and_launch()
        assert status(service) == "queued"
        svc.supervisor.admit()
        done = client.get(f"/v1/tasks/{service}").json()
        assert (done["status"], done["reason"], done["attempt"]) == (
            "cancelled",
            NEVER_STARTED_REASON,
            0,
        )
