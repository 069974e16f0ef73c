"""Failure reasons from the statuses the real node reports (kubelet + containerd + runc).

Each Job runs on the real node of deploy/local/kubernetes and fails one way for real; its
Job and pods, as the API serves them, go through the executor's status mapping
(`k8s_status.job_state`), which must say why in words a person can act on. The image is a
static Go program pushed to the real registry (tests/registry_images.py). The last test
runs a task through the controller (API, supervisor, lease admitter) onto the real node.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kubernetes import client

from controller.api.app import create_app
from controller.domain.records import TERMINAL
from controller.executors.k8s_status import job_state
from controller.ports import ExecutorState
from tests.kube import scratch_namespace
from tests.kubernetes.conftest import cluster_controller
from tests.registry_images import push, static_program, unique_repository
from tests.waiting import wait_for

pytestmark = [pytest.mark.kubernetes, pytest.mark.registry, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def program(registry: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """The pinned reference of an image holding /eat."""
    work = tmp_path_factory.mktemp("eat")
    host, repo = registry["TRACECTL_REGISTRY"], unique_repository("tracectl-test-eat")
    digest = push(host, repo, "1", work, layer=static_program(work))
    return f"{host}/{repo}@{digest}"


@pytest.fixture(scope="module")
def real_ns(api: client.ApiClient) -> Iterator[str]:
    with scratch_namespace(client.CoreV1Api(api), "tracectl-fail") as name:
        yield name


def on_the_real_node(
    kubernetes: dict[str, str], container: client.V1Container, **spec: Any
) -> client.V1Job:
    name = f"fail-{uuid.uuid4().hex[:8]}"
    pod = client.V1PodSpec(
        restart_policy="Never",
        containers=[container],
        node_selector={"kubernetes.io/hostname": kubernetes["TRACECTL_K8S_NODE"]},
        automount_service_account_token=False,
    )
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(backoff_limit=0, template=client.V1PodTemplateSpec(spec=pod), **spec),
    )


def as_served(api: client.ApiClient, obj: object) -> dict[str, Any]:
    """OBJ as the API serves it (camelCase JSON), what the executor's watch cache holds."""
    served: dict[str, Any] = api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
    return served


def ended(
    api: client.ApiClient, namespace: str, job: client.V1Job, created: bool = False
) -> ExecutorState:
    """Create JOB (unless CREATED) and wait until the mapping says its attempt is over."""
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    assert job.metadata is not None
    name = str(job.metadata.name)
    if not created:
        batch.create_namespaced_job(namespace, job)

    def state() -> ExecutorState | None:
        found = as_served(api, batch.read_namespaced_job(name, namespace))
        pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
        mapped = job_state(found, [as_served(api, p) for p in pods], datetime.now(UTC), 60)
        return mapped if mapped.phase == "exited" else None

    return wait_for(f"Job {name} to end", state, 300)


def test_a_container_over_its_memory_limit_is_reported_oom_killed(
    kubernetes: dict[str, str], api: client.ApiClient, real_ns: str, program: str
) -> None:
    limits = {"memory": "48Mi", "cpu": "500m"}
    eater = client.V1Container(
        name="task",
        image=program,
        command=["/eat", "eat"],
        resources=client.V1ResourceRequirements(requests=limits, limits=limits),
    )
    state = ended(api, real_ns, on_the_real_node(kubernetes, eater))
    assert state.exit_code == 137
    assert state.reason == (
        "container task was killed for running out of memory (OOMKilled, exit code 137): "
        "raise resources.memory"
    )


def test_an_image_the_registry_lacks_fails_the_attempt_naming_the_image(
    kubernetes: dict[str, str], api: client.ApiClient, real_ns: str, registry: dict[str, str]
) -> None:
    missing = f"{registry['TRACECTL_REGISTRY']}/{unique_repository()}:nope"
    container = client.V1Container(name="task", image=missing, command=["/eat"])
    state = ended(api, real_ns, on_the_real_node(kubernetes, container))
    assert state.exit_code is None
    assert str(state.reason).startswith(f"image '{missing}' is not in its registry (")


def test_a_job_past_its_deadline_is_reported_timed_out(
    kubernetes: dict[str, str], api: client.ApiClient, real_ns: str, program: str
) -> None:
    sleeper = client.V1Container(name="task", image=program, command=["/eat"])
    job = on_the_real_node(kubernetes, sleeper, active_deadline_seconds=3)
    state = ended(api, real_ns, job)
    assert state.reason == (
        "timed out: the Job ran past activeDeadlineSeconds=3 and Kubernetes stopped it"
    )


def test_a_task_whose_image_is_missing_fails_naming_it_and_gives_back_its_gpu(
    kubernetes: dict[str, str],
    registry: dict[str, str],
    api: client.ApiClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    node = kubernetes["TRACECTL_K8S_NODE"]
    env = {
        "TRACECTL_K8S_PREPARE": "inline",  # no runtime image: the task's own image is pulled
        "TRACECTL_K8S_NODE_SELECTOR": f"kubernetes.io/hostname={node}",
    }
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("gpu_pools: [{name: real, flavor: nvidia.com/gpu, count: 1}]\n")
    namespace, settings = cluster_controller(
        kubernetes, monkeypatch, tmp_path, "tracectl-pull", env, inventory_file=inventory
    )
    missing = f"{registry['TRACECTL_REGISTRY']}/{unique_repository()}:nope"
    spec = {"command": ["true"], "image": missing, "resources": {"gpu": 1}}
    try:
        with TestClient(create_app(settings)) as http:
            run = http.post("/v1/runs", json={"pipeline": "pull"}).json()["id"]
            task = http.post(f"/v1/runs/{run}/tasks", json={"name": "t", "spec": spec}).json()

            def finished() -> dict[str, Any] | None:
                got = http.get(f"/v1/tasks/{task['id']}/wait", params={"timeout_s": 5}).json()
                return dict(got) if got["status"] in TERMINAL else None

            ended = wait_for("the task to end", finished, 300, every=0)
            leases = http.get("/v1/leases", params={"state": "all", "task_id": task["id"]})
            active = http.get("/v1/leases", params={"state": "active"}).json()["items"]
        assert ended["status"] == "failed"
        assert str(ended["reason"]).startswith(f"image '{missing}' is not in its registry (")
        [gpu] = [x for x in leases.json()["items"] if x["kind"] == "gpu"]
        assert gpu["released_at"] is not None and active == []
        pods = client.CoreV1Api(api).list_namespaced_pod(namespace).items
        assert {p.spec.node_name for p in pods if p.spec} == {node}
    finally:
        with contextlib.suppress(client.ApiException):
            client.CoreV1Api(api).delete_namespace(namespace)


def test_a_pod_evicted_from_its_node_is_reported_evicted(
    kubernetes: dict[str, str], api: client.ApiClient, real_ns: str, program: str
) -> None:
    core = client.CoreV1Api(api)
    sleeper = client.V1Container(name="task", image=program, command=["/eat"])
    job = on_the_real_node(kubernetes, sleeper)
    assert job.metadata is not None
    name = str(job.metadata.name)
    client.BatchV1Api(api).create_namespaced_job(real_ns, job)

    def running() -> str | None:
        pods = core.list_namespaced_pod(real_ns, label_selector=f"job-name={name}").items
        up = [
            p.metadata.name for p in pods if p.metadata and p.status and p.status.phase == "Running"
        ]
        return str(up[0]) if up else None

    pod = wait_for("the pod to run", running, 120)
    eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod, namespace=real_ns))
    core.create_namespaced_pod_eviction(pod, real_ns, eviction)
    state = ended(api, real_ns, job, created=True)
    assert str(state.reason).startswith("evicted through the Eviction API (a node drain) [")
