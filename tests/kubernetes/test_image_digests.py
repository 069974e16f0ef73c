"""The Job pulls the digest a task's image tag named at submit, not the tag (real registry)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kubernetes import client

from controller.api.app import create_app
from tests.kubernetes.conftest import cluster_controller
from tests.registry_images import push, unique_repository
from tests.waiting import wait_for

pytestmark = [pytest.mark.kubernetes, pytest.mark.registry]


def test_the_job_names_the_image_by_the_digest_pinned_at_submit(
    kubernetes: dict[str, str],
    registry: dict[str, str],
    api: client.ApiClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    namespace, settings = cluster_controller(
        kubernetes, monkeypatch, tmp_path, "tracectl-digest", registry_api="oci"
    )
    host, repo = registry["TRACECTL_REGISTRY"], unique_repository()
    digest = push(host, repo, "1", tmp_path)
    batch = client.BatchV1Api(api)

    def job() -> Any:
        jobs = batch.list_namespaced_job(namespace).items
        return jobs[0] if jobs else None

    try:
        with TestClient(create_app(settings)) as http:
            run = http.post("/v1/runs", json={"pipeline": "digest"}).json()["id"]
            spec = {"command": ["true"], "image": f"{host}/{repo}:1"}
            task = http.post(f"/v1/runs/{run}/tasks", json={"name": "t", "spec": spec}).json()
            created = wait_for("the task's Job", job, 60)
            http.post(f"/v1/tasks/{task['id']}/cancel")
        [container] = created.spec.template.spec.containers
        assert container.image == f"{host}/{repo}@{digest}"
    finally:
        with contextlib.suppress(client.ApiException):
            client.CoreV1Api(api).delete_namespace(namespace)
