"""Fixtures for the Kubernetes executor tests against the real API server (deploy/local).

Each test module gets its own namespace, deleted at the end. Pods run on the real node
(`localhost`: kubelet + containerd, the runtime image from `tracectl image build`) unless a
test places them on the KWOK nodes with `kwok_placement` / `controller_namespace(kwok=True)`
and says in its docstring why it needs KWOK: there no container runs, a pod ends with the exit
code named by its annotation `tracectl.io/exit-code`, and its log is a file KWOK serves.
"""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from controller.config import Settings
from controller.domain.launch import LaunchDocument, LaunchLabels, RuntimeSettings
from controller.domain.spec import TaskSpec
from controller.ports import Launch
from tests.kube import delete_namespace
from tests.waiting import wait_for

if TYPE_CHECKING:
    from kubernetes import client

    from controller.config import ClusterConfig
    from controller.executors.kubernetes import KubernetesExecutor

# Without the `kubernetes` extra, the pure tests here still run; the ones that talk to the
# API server (marked `kubernetes`) are not collected.
if importlib.util.find_spec("kubernetes") is None:
    collect_ignore = [
        "test_executor_live.py",
        "test_controller_gpu.py",
        "test_rbac.py",
        "test_watch_cache.py",
        "test_pod_logs.py",
    ]

IMAGE = "registry.invalid/tracectl/task:1"  # never pulled: KWOK runs no containers
# TRACECTL_K8S_IMAGE is taken by digest, as `tracectl image build` prints it; this one names
# nothing (for pods that KWOK runs, or that never start).
RUNTIME_IMAGE = "registry.invalid/tracectl/runtime@sha256:" + "0" * 64
REPO = Path(__file__).resolve().parents[2]


def kwok_taint(kubernetes: dict[str, str]) -> str:
    """The key of the KWOK nodes' taint (`key=value:Effect`): no pod lands there unasked."""
    return kubernetes["TRACECTL_K8S_KWOK_TAINT"].split("=", 1)[0]


def kwok_placement(kubernetes: dict[str, str]) -> dict[str, Any]:
    """ClusterConfig fields that put every task pod on the KWOK nodes."""
    return {"node_selector": {"type": "kwok"}, "tolerate": (kwok_taint(kubernetes),)}


def free_port() -> int:
    """A port no one listens on now: a host-network service pod binds it on the node."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def runtime_image(registry: dict[str, str]) -> str:
    """The runtime image (`tracectl image build`), pushed to deploy/local/registry, by digest."""
    from controller.images.build import BuildRequest, build

    cache = Path.home() / ".cache" / "tracectl" / "images"
    request = BuildRequest(registry=registry["TRACECTL_REGISTRY"], source=REPO, cache=cache)
    return build(request).reference


@pytest.fixture(scope="module")
def api(kubernetes: dict[str, str]) -> client.ApiClient:
    from kubernetes import config

    return config.new_client_from_config(config_file=kubernetes["KUBECONFIG"])


@pytest.fixture(scope="module")
def namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"tracectl-test-{uuid.uuid4().hex[:6]}"
    yield name
    from kubernetes import client

    with contextlib.suppress(client.ApiException):  # a module that never created it
        delete_namespace(client.CoreV1Api(api), name)


def controller_namespace(
    kubernetes: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    prefix: str,
    *,
    kwok: bool = False,
    image: str = RUNTIME_IMAGE,
) -> str:
    """Point a controller built in this test at the local cluster and a fresh namespace; its
    pods go to the real node, or to the KWOK nodes with KWOK."""
    namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
    env = {
        "KUBECONFIG": kubernetes["KUBECONFIG"],
        "TRACECTL_K8S_NAMESPACE": namespace,
        "TRACECTL_K8S_IMAGE": image,
    }
    if kwok:
        env["TRACECTL_K8S_NODE_SELECTOR"] = "type=kwok"
        env["TRACECTL_K8S_TOLERATE"] = kwok_taint(kubernetes)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return namespace


def cluster_controller(
    kubernetes: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    prefix: str,
    env: dict[str, str] | None = None,
    *,
    kwok: bool = False,
    image: str = IMAGE,
    **extra: Any,
) -> tuple[str, Settings]:
    """A fresh namespace (controller_namespace: KWOK, IMAGE) and the settings of a controller
    built in this test that runs its tasks there (ENV set first: the Kubernetes settings are
    read from it), polls every 0.1 s and keeps MLflow in a file of its own; EXTRA are more
    settings."""
    namespace = controller_namespace(kubernetes, monkeypatch, prefix, kwok=kwok, image=image)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    settings = Settings(
        home=tmp_path / "home",
        executor="kubernetes",
        supervisor_interval_s=0.1,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        **extra,
    )
    return namespace, settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", cancel_grace_s=1.0)


def cluster_config(kubernetes: dict[str, str], namespace: str, **extra: Any) -> ClusterConfig:
    from controller.config import ClusterConfig

    return ClusterConfig(
        namespace=namespace,
        image=RUNTIME_IMAGE,
        kubeconfig=kubernetes["KUBECONFIG"],
        **extra,
    )


@pytest.fixture
def executor(
    kubernetes: dict[str, str], namespace: str, settings: Settings
) -> Iterator[KubernetesExecutor]:
    from controller.executors.kubernetes import KubernetesExecutor

    # On KWOK: test_executor_live.py scripts each pod's end (its docstring says why).
    config = cluster_config(
        kubernetes, namespace, unschedulable_grace_s=0, **kwok_placement(kubernetes)
    )
    ex = KubernetesExecutor(settings, config)
    yield ex
    ex.close()


def make_launch(
    tmp_path: Path,
    task_id: str | None = None,
    attempt: int = 1,
    annotations: dict[str, str] | None = None,
    team: str = "default",
    **spec: Any,
) -> Launch:
    task_id = task_id or f"task_{uuid.uuid4().hex[:22]}"
    spec.setdefault("command", ["python", "train.py", "--epochs", "3"])
    spec.setdefault("image", IMAGE)
    env = {
        "TRACECTL_RUN_ID": "run_1",
        "TRACECTL_TASK_ID": task_id,
        "TRACECTL_ATTEMPT": str(attempt),
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "MLFLOW_RUN_ID": "",
        "TRACECTL_FENCING_TOKEN": "42",
    }
    if annotations:
        import json

        env["TRACECTL_K8S_POD_ANNOTATIONS"] = json.dumps(annotations)
    workspace = tmp_path / task_id / str(attempt)
    doc = LaunchDocument(
        run_id="run_1",
        task_id=task_id,
        task_name="train",
        attempt=attempt,
        spec=TaskSpec.model_validate(spec),
        env=env,
        late_env=["MLFLOW_RUN_ID"],
        runtime=RuntimeSettings(home=tmp_path / "home", cancel_grace_s=1.0),
        labels=LaunchLabels(team=team, pipeline="p"),
    )
    launch = Launch(doc, workspace)
    # As the supervisor's: the tracking run's id arrives when the executor completes it.
    return replace(launch, completion=lambda: completed_launch(launch))


def completed_launch(launch: Launch, run_id: str = "abc123") -> Launch:
    env = {**launch.env, "MLFLOW_RUN_ID": run_id}
    return replace(launch, document=launch.document.with_env(env), completion=None)


def wait_exit(executor: KubernetesExecutor, ref: dict[str, Any], timeout: float = 60) -> Any:
    return wait_for(
        "the attempt to end",
        lambda: s if (s := executor.inspect(ref, Path())).phase != "running" else None,
        timeout,
    )
