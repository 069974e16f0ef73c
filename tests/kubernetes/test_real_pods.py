"""The Kubernetes executor's Jobs on the real node: the runtime image built without Docker runs
`prepare` and the task for real (containerd + runc; in the task container by default, in an
init container with TRACECTL_K8S_PREPARE=init), logs come from the kubelet through the API
server, the GPU extended resource and a local RWO claim are honoured.

Pods are placed by the executor's settings: the node selector `kubernetes.io/hostname=localhost`
(the real node is untainted; the KWOK nodes' taint keeps these pods off them anyway), host
networking (the route to services on the host's 127.0.0.1) and fsGroup 10001 (the image's user
reads the launch Secret).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from controller.config import Settings
from controller.domain.refs import K8sRef
from controller.executors.k8s_manifests import LAUNCH_PATH
from controller.executors.kubernetes import KubernetesExecutor
from controller.logs.file_sink import FileLogReader
from tests.kube import local_claim
from tests.kubernetes.conftest import cluster_config, make_launch, wait_exit
from tests.waiting import wait_for

pytestmark = [pytest.mark.kubernetes, pytest.mark.registry, pytest.mark.timeout(1800)]


@pytest.fixture
def real(
    kubernetes: dict[str, str], namespace: str, settings: Settings, runtime_image: str
) -> Iterator[KubernetesExecutor]:
    config = cluster_config(
        kubernetes,
        namespace,
        node_selector={"kubernetes.io/hostname": kubernetes["TRACECTL_K8S_NODE"]},
        host_network=True,
        unschedulable_grace_s=600,
    )
    ex = KubernetesExecutor(settings, config.model_copy(update={"image": runtime_image}))
    yield ex
    ex.close()


def recorded(settings: Settings, ref: K8sRef, stream: str) -> list[str]:
    lines = FileLogReader(settings).read(ref.run_id, ref.task_id, 1, 0, 1000)
    return [line.message for line in lines if line.stream == stream]


def pod_of(api: client.ApiClient, namespace: str, ref: K8sRef) -> Any:
    pods = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=f"job-name={ref.name}"
    )
    return pods.items[0]


def test_a_task_runs_in_a_real_container_and_its_exit_code_and_log_are_recorded(
    real: KubernetesExecutor,
    settings: Settings,
    api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    script = "import os\nprint('real line from uid', os.getuid(), flush=True)\nraise SystemExit(3)"
    ref = real.launch(
        make_launch(tmp_path, command=["python3", "-c", script], image=real.cluster.image)
    )
    state = wait_exit(real, ref, timeout=300)
    assert state.exit_code == 3
    pod = pod_of(api, namespace, ref)
    assert pod.spec.node_name == "localhost"
    # The runtime image prepares its own workspace: one container, one Python start.
    assert pod.spec.init_containers is None
    (task,) = pod.status.container_statuses
    assert task.state.terminated.exit_code == 3
    assert pod.spec.containers[0].command[-4:] == ["all", LAUNCH_PATH, "/workspace", "--"]
    wait_for(
        "the task's line in the record",
        lambda: "real line from uid 10001" in recorded(settings, ref, "stdout"),
        60,
    )


def test_a_gpu_task_holds_the_real_nodes_one_gpu_and_a_local_claim_mounted(
    real: KubernetesExecutor,
    settings: Settings,
    api: client.ApiClient,
    kubernetes: dict[str, str],
    namespace: str,
    tmp_path: Path,
) -> None:
    core = client.CoreV1Api(api)
    claim = f"data-{uuid.uuid4().hex[:6]}"
    local_claim(core, namespace, claim, kubernetes["TRACECTL_K8S_LOCAL_STORAGE_CLASS"])
    token = uuid.uuid4().hex
    script = f"open('/data/out.txt', 'w').write('{token}')"
    volumes = [{"claim": claim, "mount_path": "/data", "mode": "rw"}]
    # TRACECTL_K8S_PREPARE=init: the `prepare` init container runs for real, then the task.
    real.cluster = real.cluster.model_copy(update={"prepare": "init"})
    ref = real.launch(
        make_launch(
            tmp_path,
            command=["python3", "-c", script],
            image=real.cluster.image,
            resources={"gpu": 1, "volumes": volumes},
        )
    )
    state = wait_exit(real, ref, timeout=300)
    assert state.exit_code == 0, state.reason
    pod = pod_of(api, namespace, ref)
    (prepare,) = pod.status.init_container_statuses
    assert prepare.state.terminated.exit_code == 0
    assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    assert pod.spec.node_name == "localhost"
    volume = core.read_persistent_volume(
        core.read_namespaced_persistent_volume_claim(claim, namespace).spec.volume_name
    )
    assert Path(volume.spec.local.path, "out.txt").read_text() == token
