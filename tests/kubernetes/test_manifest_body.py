"""The request body the executor sends is exactly what the official client would send.

No cluster: manifests are built from launch documents and serialized both ways.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes import client

from controller.config import ClusterConfig
from controller.executors import k8s_manifests as m
from tests.kubernetes.conftest import make_launch


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {
            "env": {"HF_TOKEN": "x", "EPOCHS": "3"},
            "secret_env": ["HF_TOKEN"],
            "timeout_s": 60,
            "resources": {
                "gpu": 2,
                "gpu_flavor": "A100-SXM4-80GB",
                "cpu": 1.5,
                "memory": "2Gi",
                "volumes": [{"claim": "data", "mode": "ro"}, {"claim": "out"}],
            },
        },
        {"mode": "service", "env": {"PORT": "9000"}},
    ],
)
def test_body_equals_the_clients_serialization(tmp_path: Path, spec: dict[str, object]) -> None:
    doc = make_launch(tmp_path, annotations={"tracectl.io/exit-code": "3"}, **spec)
    doc = doc.completed().document
    cfg = ClusterConfig(namespace="ns", queue="team-a", ingress_prefix="/svc")
    owner = m.owner_reference("Job", "batch/v1", "tracectl-x-1", "uid-1")
    objects = [
        m.job(doc, cfg, "tracectl-x-1"),
        m.launch_secret(doc, cfg, "tracectl-x-1", owner),
        m.deployment(doc, cfg, "tracectl-x-1"),
        m.service(doc, cfg, "tracectl-x-1", owner),
        m.ingress(doc, cfg, "tracectl-x-1", "/svc/x", owner),
    ]
    api = client.ApiClient(client.Configuration())
    for obj in objects:
        assert json.loads(m.to_json(obj)) == api.sanitize_for_serialization(obj), type(obj)
    job = json.loads(m.to_json(objects[0]))
    assert job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "backoffLimit" in job["spec"] and "backoff_limit" not in job["spec"]  # API names


def _env(container: client.V1Container) -> dict[str, str | None]:
    return {e.name: e.value for e in container.env or []}


def test_a_service_is_told_its_port_in_env_port_as_under_the_local_executor(
    tmp_path: Path,
) -> None:
    cfg = ClusterConfig(namespace="ns")
    default = make_launch(tmp_path, mode="service", command=["serve"]).completed().document
    [task] = m.deployment(default, cfg, "svc-1").spec.template.spec.containers
    assert _env(task)["PORT"] == "8080" and task.ports[0].container_port == 8080
    chosen = make_launch(tmp_path, mode="service", command=["serve"], env={"PORT": "9000"})
    [task] = m.deployment(chosen.completed().document, cfg, "svc-2").spec.template.spec.containers
    assert _env(task)["PORT"] == "9000" and task.ports[0].container_port == 9000


def test_a_job_gets_no_port(tmp_path: Path) -> None:
    doc = make_launch(tmp_path).completed().document
    [task] = m.job(doc, ClusterConfig(namespace="ns"), "job-1").spec.template.spec.containers
    assert "PORT" not in _env(task)


def test_a_task_preparing_inline_starts_in_the_workspace_its_volume_makes(tmp_path: Path) -> None:
    """A working dir the container runtime must create is root's: the task's user could not
    write its outputs there (found by tests/kubernetes/test_in_cluster.py on the real node)."""
    doc = make_launch(tmp_path, command=["python", "x.py"]).completed().document
    cfg = ClusterConfig(namespace="ns", image=doc.spec.image, prepare="inline")
    [task] = m.job(doc, cfg, "job-1").spec.template.spec.containers
    assert task.working_dir == m.WORKSPACE
    assert m.WORKSPACE in {mount.mount_path for mount in task.volume_mounts}
    init = cfg.model_copy(update={"prepare": "init"})
    [task] = m.job(doc, init, "job-1").spec.template.spec.containers
    assert task.working_dir == f"{m.WORKSPACE}/src"  # made by the prepare container, as 10001


def test_every_pod_goes_where_the_placement_settings_say_a_gpu_pod_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACECTL_K8S_NODE_SELECTOR", "pool=train, zone=a")
    monkeypatch.setenv("TRACECTL_K8S_TOLERATE", "tracectl.io/kwok")
    cfg = ClusterConfig()
    plain = m.job(make_launch(tmp_path).completed().document, cfg, "j-1").spec.template.spec
    assert plain.node_selector == {"pool": "train", "zone": "a"}
    assert [(t.key, t.operator) for t in plain.tolerations] == [("tracectl.io/kwok", "Exists")]
    gpu = make_launch(tmp_path, resources={"gpu": 1}).completed().document
    placed = m.job(gpu, cfg, "j-2").spec.template.spec
    assert placed.node_selector == {"pool": "train", "zone": "a", "nvidia.com/gpu.present": "true"}
    assert [t.key for t in placed.tolerations] == ["tracectl.io/kwok", "nvidia.com/gpu"]


def test_the_runtimes_s3_keys_come_from_the_named_secret_never_from_the_controller(
    tmp_path: Path,
) -> None:
    doc = make_launch(tmp_path, command=["python", "x.py"], image="other@sha256:" + "1" * 64)
    doc = doc.completed().document
    cfg = ClusterConfig(namespace="ns", image="rt@sha256:" + "0" * 64, prepare="init")
    pod = m.job(doc, cfg, "job-1").spec.template.spec
    assert [c.env_from for c in [*pod.init_containers, *pod.containers]] == [None, None]
    named = cfg.model_copy(update={"runtime_secret": "tracectl-runtime-s3"})
    pod = m.job(doc, named, "job-1").spec.template.spec
    for container in [*pod.init_containers, *pod.containers]:
        [source] = container.env_from
        assert source.secret_ref.name == "tracectl-runtime-s3"
    assert "tracectl-runtime-s3" not in m.launch_secret(doc, named, "job-1").string_data
