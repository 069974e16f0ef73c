"""Run end on the Kubernetes executor: through the real controller (API, supervisor), a
service (Deployment + Service) gets ready, its run is closed, and when the run's job ends the
controller deletes the Deployment and records the service as succeeded, "stopped: run ended".
Both run on the real node in the runtime image: the service is `python3 -m http.server` on its
PORT (host networking, so the kubelet's readiness probe reaches it), the job prints a line.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kubernetes import client

from controller.api.app import create_app
from controller.domain.records import TERMINAL
from tests.kubernetes.conftest import cluster_controller, free_port
from tests.waiting import wait_for

pytestmark = [pytest.mark.kubernetes, pytest.mark.registry, pytest.mark.timeout(1800)]


def test_services_stop_when_their_run_ends(
    kubernetes: dict[str, str],
    api: client.ApiClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    runtime_image: str,
) -> None:
    namespace, settings = cluster_controller(
        kubernetes,
        monkeypatch,
        tmp_path,
        "tracectl-runend",
        {"TRACECTL_K8S_HOST_NETWORK": "1"},
        image=runtime_image,
        cancel_grace_s=1.0,
    )
    apps = client.AppsV1Api(api)
    try:
        with TestClient(create_app(settings)) as http:

            def task(task_id: str) -> dict[str, Any]:
                return dict(http.get(f"/v1/tasks/{task_id}").json())

            def submit(run: str, name: str, **spec: Any) -> str:
                response = http.post(
                    f"/v1/runs/{run}/tasks",
                    json={"name": name, "spec": {"image": runtime_image, **spec}},
                )
                assert response.status_code == 201, response.text
                return str(response.json()["id"])

            run = http.post("/v1/runs", json={"pipeline": "serving"}).json()["id"]
            service = submit(
                run,
                "serve",
                command=["sh", "-c", 'exec python3 -m http.server "$PORT"'],
                mode="service",
                env={"PORT": str(free_port())},
            )
            ready = wait_for(
                "the service to be ready",
                lambda: (
                    t
                    if (t := task(service))["executor_ref"] and t["executor_ref"].get("ready")
                    else None
                ),
                timeout=180,
            )
            ref = ready["executor_ref"]
            assert ref["url"] == f"http://{ref['name']}.{namespace}.svc:80"
            job = submit(run, "smoke", command=["python3", "-c", "print('smoke')"])
            assert http.post(f"/v1/runs/{run}/close").status_code == 200

            def both_ended() -> list[dict[str, Any]] | None:
                tasks = [task(job), task(service)]
                return tasks if all(t["status"] in TERMINAL for t in tasks) else None

            done = wait_for("the job and the service to end", both_ended, timeout=300)
            assert done[0]["status"] == "succeeded", done[0]
            assert (done[1]["status"], done[1]["reason"]) == ("succeeded", "stopped: run ended")
            assert http.get(f"/v1/runs/{run}").json()["status"] == "succeeded"
        wait_for(
            "the Deployment to be deleted",
            lambda: (
                not apps.list_namespaced_deployment(
                    namespace, field_selector=f"metadata.name={ref['name']}"
                ).items
            ),
        )
    finally:
        with contextlib.suppress(client.ApiException):
            client.CoreV1Api(api).delete_namespace(namespace)
