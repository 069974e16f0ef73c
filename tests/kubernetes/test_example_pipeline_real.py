"""The example pipeline (examples/wine) end to end on the real node, through `tracectl server`.

A real controller process with the Kubernetes executor runs prepare -> train -> evaluate ->
register and the `serve` service task, and beside it a second run of prepare -> train ->
evaluate, as Jobs and a Deployment whose containers run for real (kubelet + containerd +
runc). The tasks' image is built by `tracectl image
build` with the example's uv.lock as its environment layer and pinned by digest; the runtime
image (TRACECTL_K8S_IMAGE) is pinned the same way. Pods use the host's network, the route to
the stack on 127.0.0.1: git (a `git daemon`), DVC data and outputs on S3, MLflow, Kafka.
`train` and `evaluate` each claim the node's one GPU and a local RWO volume, so the two runs
contend for them. Everything is read back through the public API, the cluster's own pod
records, Kafka, the index and S3.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from controller import backends
from controller.archive.s3 import S3ArtifactStore
from controller.loopback import free_port
from tests.kube import delete_namespace, local_claim
from tests.kubernetes import wine
from tests.logs.conftest import read_topic, wait_indexed
from tests.server_process import ServerProcess
from tests.stack_fixtures import services

pytestmark = [
    pytest.mark.kubernetes,
    pytest.mark.registry,
    pytest.mark.kafka,
    pytest.mark.opensearch,
    pytest.mark.s3,
    pytest.mark.shipper,
    pytest.mark.timeout(2400),
]

RUNTIME_SECRET = "tracectl-runtime-s3"
RUNS = 2


@dataclass
class Pipeline:
    server: ServerProcess
    namespace: str
    images: dict[str, str]
    runs: list[str]
    tasks: dict[str, dict[str, Any]]  # "<run index>/<name>" -> task record
    service_port: int
    served: dict[str, Any]
    stack: dict[str, str]

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.server.url}{path}", params=params, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()


def _namespace(
    api: client.ApiClient, namespace: str, storage_class: str, s3_env: dict[str, str]
) -> None:
    """The namespace, its RWO claim and the runtime's S3 Secret (as an administrator makes)."""
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name=RUNTIME_SECRET), string_data=s3_env),
    )
    local_claim(core, namespace, wine.CLAIM, storage_class)


@pytest.fixture(scope="module")
def pipeline(
    kubernetes: dict[str, str],
    registry: dict[str, str],
    api: client.ApiClient,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    root = tmp_path_factory.mktemp("wine-k8s")
    stack = services(request, "kafka", "opensearch", "s3", "shipper", "mlflow_server")
    images = {"runtime": wine.image(registry), "wine": wine.wine_image(registry)}
    s3_env = wine.runtime_env(stack)
    namespace = f"tracectl-wine-{uuid.uuid4().hex[:6]}"
    inventory = root / "inventory.yaml"
    inventory.write_text(
        "gpu_pools: [{name: localhost, flavor: nvidia.com/gpu, count: 1}]\n"
        f"volumes: [{{claim: {wine.CLAIM}, access: RWO}}]\n"
    )
    bootstrap = stack["TRACECTL_KAFKA_BOOTSTRAP"]
    env = {
        **s3_env,
        "KUBECONFIG": kubernetes["KUBECONFIG"],
        "TRACECTL_EXECUTOR": "kubernetes",
        "TRACECTL_K8S_NAMESPACE": namespace,
        "TRACECTL_K8S_IMAGE": images["runtime"],
        "TRACECTL_K8S_NODE_SELECTOR": f"kubernetes.io/hostname={kubernetes['TRACECTL_K8S_NODE']}",
        "TRACECTL_K8S_HOST_NETWORK": "1",
        "TRACECTL_K8S_RUNTIME_SECRET": RUNTIME_SECRET,
        "TRACECTL_K8S_UNSCHEDULABLE_GRACE_S": "900",
        "TRACECTL_REGISTRY_API": "oci",
        "TRACECTL_PREFLIGHT": "image.mutable_tag=refuse",
        "TRACECTL_INVENTORY_FILE": str(inventory),
        "TRACECTL_LOG_SINK": f"kafka://{bootstrap}",
        "TRACECTL_STATUS_EVENTS": f"kafka://{bootstrap}",
        "TRACECTL_LOG_READER": f"opensearch://{stack['TRACECTL_OPENSEARCH_URL'].split('://')[1]}",
        "TRACECTL_ARCHIVE": f"s3://tracectl-wine-test/{uuid.uuid4().hex[:8]}",
        "TRACECTL_TRACKING_URI": stack["MLFLOW_TRACKING_URI"],
        "TRACECTL_GIT_ALLOWED_SCHEMES": "git",
        "TRACECTL_GIT_ALLOWED_HOSTS": "127.0.0.1",
        "TRACECTL_CANCEL_GRACE_S": "2",
    }
    server = ServerProcess(root / "home", env)
    with wine.served_example(root, stack) as repo:
        _namespace(api, namespace, kubernetes["TRACECTL_K8S_LOCAL_STORAGE_CLASS"], s3_env)
        server.start()
        try:
            yield _ran(server, namespace, images, repo, stack)
        finally:
            server.stop()
            delete_namespace(client.CoreV1Api(api), namespace)


def _ran(
    server: ServerProcess, namespace: str, images: dict[str, str], repo: str, stack: dict[str, str]
) -> Pipeline:
    """Both runs submitted, the service asked once it is up, then cancelled; all ended."""
    service_port = free_port()
    http = httpx.Client(base_url=server.url, timeout=60)
    submitted = [
        wine.submit(
            http, wine.specs(repo, images["wine"], 40 + i, service_port if i == 0 else None), i
        )
        for i in range(RUNS)
    ]
    ids = {f"{i}/{t['name']}": t["id"] for i, (_, ts) in enumerate(submitted) for t in ts}
    served, tasks = wine.ended_around_service(http, ids, "0/serve", service_port)
    return Pipeline(
        server=server,
        namespace=namespace,
        images=images,
        runs=[run for run, _ in submitted],
        tasks=tasks,
        service_port=service_port,
        served=served,
        stack=stack,
    )


def _pods(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace).items
    return {(p.metadata.labels or {})["tracectl.io/task-id"]: p for p in pods if p.metadata}


def _stamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_every_job_of_both_runs_succeeds_in_a_real_container_on_the_real_node(
    pipeline: Pipeline, api: client.ApiClient, kubernetes: dict[str, str]
) -> None:
    jobs = {k: t for k, t in pipeline.tasks.items() if not k.endswith("/serve")}
    assert {k: t["status"] for k, t in jobs.items()} == {k: "succeeded" for k in jobs}
    pods = _pods(api, pipeline.namespace)
    for task in jobs.values():
        ref = task["executor_ref"]
        assert (ref["kind"], ref["object"], ref["namespace"]) == ("k8s", "job", pipeline.namespace)
        pod = pods[task["id"]]
        assert pod.spec.node_name == kubernetes["TRACECTL_K8S_NODE"]
        assert pod.spec.host_network is True
        [task_container] = pod.status.container_statuses
        assert task_container.state.terminated.exit_code == 0
        assert task_container.image_id.endswith(pipeline.images["wine"].split("@", 1)[1])


def test_tasks_run_in_the_image_built_from_the_examples_lock_pinned_by_digest(
    pipeline: Pipeline, api: client.ApiClient
) -> None:
    wine, runtime = pipeline.images["wine"], pipeline.images["runtime"]
    assert "@sha256:" in wine and "@sha256:" in runtime
    pods = _pods(api, pipeline.namespace)
    for key, task in pipeline.tasks.items():
        assert task["spec"]["environment"]["image"] == wine
        lineage = pipeline.get(f"/v1/tasks/{task['id']}/lineage")
        assert (lineage["environment"]["kind"], lineage["environment"]["image"]) == ("image", wine)
        if key.endswith("/serve"):
            continue  # its Deployment and pod are gone with the cancel
        pod = pods[task["id"]]
        assert [c.image for c in pod.spec.containers] == [wine]
        assert [c.image for c in pod.spec.init_containers] == [runtime]


def test_the_service_task_serves_the_registered_model_on_its_port_and_stops_on_cancel(
    pipeline: Pipeline,
) -> None:
    assert pipeline.served["health"]["status"] == "ok"
    assert pipeline.served["status"] == 200
    assert len(pipeline.served["predict"]["predictions"]) == 1
    registered = pipeline.get(f"/v1/tasks/{pipeline.tasks['0/register']['id']}/lineage")
    assert registered["outputs"][0]["path"] == "registered_model.json"
    serve = pipeline.tasks["0/serve"]
    assert serve["status"] == "cancelled"
    assert serve["executor_ref"]["object"] == "service"
    lines = pipeline.get(f"/v1/tasks/{serve['id']}/logs", limit=1000)["items"]
    assert any(str(pipeline.service_port) in line["message"] for line in lines)


def test_register_makes_its_model_version_in_its_own_mlflow_run_on_the_server(
    pipeline: Pipeline,
) -> None:
    register = pipeline.tasks["0/register"]
    found = wine.registered(pipeline.stack["MLFLOW_TRACKING_URI"], register)
    assert found.run_status == "FINISHED"
    assert found.run_metrics["test_accuracy"] >= 0.8
    assert found.version.run_id == register["mlflow_run_id"]
    assert found.version.tags["tracectl_task_id"] == register["id"]


def test_outputs_are_archived_in_s3_with_the_checksums_the_lineage_records(
    pipeline: Pipeline, store: S3ArtifactStore
) -> None:
    checked = 0
    for run_id in pipeline.runs:
        lineage = pipeline.get(f"/v1/runs/{run_id}/lineage")
        for task in lineage["tasks"]:
            for out in (task.get("lineage") or {}).get("outputs", []):
                assert out["uri"].startswith("s3://tracectl-wine-test/")
                data = store.open_bytes(out["uri"])
                assert hashlib.sha256(data).hexdigest() == out["sha256"]
                checked += 1
    assert checked == RUNS * 4 + 1  # prepare 2, train 1, evaluate 1; register 1 (first run)


def test_lineage_links_each_runs_outputs_to_the_inputs_that_used_them(
    pipeline: Pipeline,
) -> None:
    for index in range(len(pipeline.runs)):
        train = pipeline.get(f"/v1/tasks/{pipeline.tasks[f'{index}/train']['id']}/lineage")
        evaluate = pipeline.get(f"/v1/tasks/{pipeline.tasks[f'{index}/evaluate']['id']}/lineage")
        model = next(o for o in train["outputs"] if o["path"] == "model/model.pkl")
        used = {i["sha256"] for i in evaluate["inputs"]}
        assert model["sha256"] in used
        prepare = pipeline.get(f"/v1/tasks/{pipeline.tasks[f'{index}/prepare']['id']}/lineage")
        assert prepare["data"][0]["path"] == "data/wine.csv"
        assert prepare["code"]["commit"] == train["code"]["commit"]


def test_task_logs_come_from_the_kubelet_and_reach_kafka_the_index_and_the_archive(
    pipeline: Pipeline, store: S3ArtifactStore
) -> None:
    task = pipeline.tasks["0/train"]
    lineage = pipeline.get(f"/v1/tasks/{task['id']}/lineage")
    total = lineage["logs"]["lines"]
    lines = pipeline.get(f"/v1/tasks/{task['id']}/logs", limit=1000)["items"]
    messages = [line["message"] for line in lines]
    assert any(m.startswith("trained on ") for m in messages)  # train.py's own print
    assert any(m.startswith("tracectl: checking out git://127.0.0.1:") for m in messages)
    bootstrap = pipeline.stack["TRACECTL_KAFKA_BOOTSTRAP"]
    records = read_topic(bootstrap, "tracectl.logs", task["id"], until=total)
    assert [r["event"]["sequence"] for r in records] == list(range(1, total + 1))
    assert {r["labels"]["run_id"] for r in records} == {pipeline.runs[0]}
    assert {
        (r["orchestrator"]["namespace"], r["orchestrator"]["resource"]["type"]) for r in records
    } == {(pipeline.namespace, "job")}
    # the prepare container's lines on `system`, the task container's on `stdout`
    assert {"system", "stdout"} <= {r["labels"]["stream"] for r in records}
    url = pipeline.stack["TRACECTL_OPENSEARCH_URL"].split("://", 1)[1]
    docs = wait_indexed(backends.search_index(f"opensearch://{url}"), task["id"], total)
    assert [d["message"] for d in docs] == [r["message"] for r in records]
    archive = lineage["logs"]["archive"]
    packed = store.open_bytes(archive["uri"])
    assert hashlib.sha256(packed).hexdigest() == archive["sha256"]
    assert len(gzip.decompress(packed).decode().splitlines()) == total


def test_the_gpu_and_the_rwo_claim_are_held_by_one_task_at_a_time_as_its_pod_ran(
    pipeline: Pipeline, api: client.ApiClient
) -> None:
    holders = [t for k, t in pipeline.tasks.items() if k.split("/")[1] in wine.HOLDERS]
    pods = _pods(api, pipeline.namespace)
    spans: dict[str, list[tuple[datetime, datetime, str]]] = {"gpu": [], "volume": []}
    for task in holders:
        leases = pipeline.get("/v1/leases", state="all", task_id=task["id"])["items"]
        assert {lease["kind"] for lease in leases} == {"gpu", "volume"}
        pod = pods[task["id"]]
        started = pod.status.init_container_statuses[0].state.terminated.started_at
        finished = pod.status.container_statuses[0].state.terminated.finished_at
        for lease in leases:
            granted, released = _stamp(lease["granted_at"]), _stamp(lease["released_at"])
            # The kubelet's stamps are whole seconds: the pod ran inside its lease.
            assert granted.replace(microsecond=0) <= started
            assert finished <= released
            spans[lease["kind"]].append((granted, released, task["id"]))
    assert pipeline.get("/v1/leases", state="active")["items"] == []
    for kind, held in spans.items():
        held.sort()
        for (_, released, _), (granted, _, _) in itertools.pairwise(held):
            assert released <= granted, kind
    intervals = sorted(
        (
            pods[t["id"]].status.init_container_statuses[0].state.terminated.started_at,
            pods[t["id"]].status.container_statuses[0].state.terminated.finished_at,
        )
        for t in holders
    )
    for (_, finished), (started, _) in itertools.pairwise(intervals):
        assert finished <= started


@pytest.fixture
def store(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3ArtifactStore:
    return wine.archive(pipeline.stack, "s3://tracectl-wine-test", monkeypatch, tmp_path)
