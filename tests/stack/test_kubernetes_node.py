"""The real node of deploy/local/kubernetes: kubelet + containerd + runc run real containers.

Images come from deploy/local/registry, built without Docker (`controller.images`). The node is
untainted (the KWOK nodes carry `tracectl.io/kwok`, so a pod that does not tolerate it lands
here); every pod here also selects the node by name.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from controller.images.build import BuildRequest, build
from tests.kube import local_claim, scratch_namespace
from tests.waiting import wait_for

pytestmark = [pytest.mark.kubernetes, pytest.mark.registry, pytest.mark.timeout(2700)]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def python_image(registry: dict[str, str]) -> str:
    """Debian bookworm + python3 (the runtime image's base layer), pushed by digest."""
    request = BuildRequest(
        registry=registry["TRACECTL_REGISTRY"],
        repository="tracectl/debian-python",
        tag="bookworm",
        source=REPO,
        cache=Path.home() / ".cache" / "tracectl" / "images",
        base_only=True,
    )
    return build(request).reference


@pytest.fixture(scope="module")
def core(kubernetes: dict[str, str]) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=kubernetes["KUBECONFIG"]))


@pytest.fixture(scope="module")
def ns(core: client.CoreV1Api) -> Iterator[str]:
    with scratch_namespace(core, "node") as name:
        yield name


def pod(
    kubernetes: dict[str, str],
    image: str,
    script: str,
    *,
    gpus: int = 0,
    claim: str | None = None,
    host_network: bool = False,
) -> client.V1Pod:
    limits = {"nvidia.com/gpu": str(gpus)} if gpus else None
    mounts, volumes = None, None
    if claim:
        mounts = [client.V1VolumeMount(name="data", mount_path="/data")]
        volumes = [
            client.V1Volume(
                name="data",
                persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                    claim_name=claim
                ),
            )
        ]
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=f"p-{uuid.uuid4().hex[:8]}"),
        spec=client.V1PodSpec(
            restart_policy="Never",
            node_selector={"kubernetes.io/hostname": kubernetes["TRACECTL_K8S_NODE"]},
            host_network=host_network,
            containers=[
                client.V1Container(
                    name="main",
                    image=image,
                    command=["python3", "-c", script],
                    resources=client.V1ResourceRequirements(limits=limits),
                    volume_mounts=mounts,
                )
            ],
            volumes=volumes,
        ),
    )


def phase_of(
    core: client.CoreV1Api, ns: str, name: str, wanted: set[str], timeout: float = 180
) -> client.V1Pod:
    return wait_for(
        f"pod {name} to reach {sorted(wanted)}",
        lambda: p if (p := core.read_namespaced_pod(name, ns)).status.phase in wanted else None,
        timeout,
    )


def run_pod(core: client.CoreV1Api, ns: str, body: client.V1Pod) -> client.V1Pod:
    core.create_namespaced_pod(ns, body)
    return phase_of(core, ns, body.metadata.name, {"Succeeded", "Failed"})


def node(core: client.CoreV1Api, kubernetes: dict[str, str]) -> Any:
    return core.read_node(kubernetes["TRACECTL_K8S_NODE"])


def test_the_real_node_is_ready_untainted_and_advertises_one_gpu_the_kwok_nodes_tainted(
    core: client.CoreV1Api, kubernetes: dict[str, str]
) -> None:
    real = node(core, kubernetes)
    ready = {c.type: c.status for c in real.status.conditions}["Ready"]
    assert ready == "True"
    assert real.status.node_info.container_runtime_version.startswith("containerd://")
    assert real.status.allocatable["nvidia.com/gpu"] == kubernetes["TRACECTL_K8S_NODE_GPUS"] == "1"
    assert real.metadata.labels["tracectl.io/node"] == "real"
    assert not real.spec.taints  # test pods land here unless they tolerate the KWOK taint
    kwok_key = kubernetes["TRACECTL_K8S_KWOK_TAINT"].partition("=")[0]
    for name in ("cpu-worker", "gpu-worker"):
        kwok = core.read_node(name)
        assert kwok.metadata.labels["type"] == "kwok"
        assert any(t.key == kwok_key and t.effect == "NoSchedule" for t in kwok.spec.taints)


def test_a_pod_runs_a_real_container_and_its_log_comes_from_the_kubelet(
    core: client.CoreV1Api, kubernetes: dict[str, str], ns: str, python_image: str
) -> None:
    script = (
        "import os, sys\n"
        "print('hello from', sys.version_info[:2], flush=True)\n"
        "print('pid', os.getpid())"
    )
    done = run_pod(core, ns, pod(kubernetes, python_image, script))
    assert done.status.phase == "Succeeded"
    assert done.spec.node_name == kubernetes["TRACECTL_K8S_NODE"]
    log = core.read_namespaced_pod_log(done.metadata.name, ns)
    assert "hello from (3, 11)" in log
    assert "pid 1" in log  # the container's own PID namespace: a real container


def test_a_failing_container_reports_its_exit_code(
    core: client.CoreV1Api, kubernetes: dict[str, str], ns: str, python_image: str
) -> None:
    done = run_pod(core, ns, pod(kubernetes, python_image, "raise SystemExit(7)"))
    assert done.status.phase == "Failed"
    assert done.status.container_statuses[0].state.terminated.exit_code == 7


def test_a_rwo_claim_binds_a_local_volume_that_is_really_mounted(
    core: client.CoreV1Api, kubernetes: dict[str, str], ns: str, python_image: str
) -> None:
    local_claim(core, ns, "data", kubernetes["TRACECTL_K8S_LOCAL_STORAGE_CLASS"])
    token = uuid.uuid4().hex
    script = f"open('/data/token.txt', 'w').write('{token}')\nprint(open('/proc/mounts').read())"
    done = run_pod(core, ns, pod(kubernetes, python_image, script, claim="data"))
    assert done.status.phase == "Succeeded"
    bound = core.read_namespaced_persistent_volume_claim("data", ns)
    volume = core.read_persistent_volume(bound.spec.volume_name)
    assert volume.spec.local is not None
    assert Path(volume.spec.local.path, "token.txt").read_text() == token
    assert " /data " in core.read_namespaced_pod_log(done.metadata.name, ns)


def test_the_gpu_is_held_by_one_pod_at_a_time(
    core: client.CoreV1Api, kubernetes: dict[str, str], ns: str, python_image: str
) -> None:
    first = pod(kubernetes, python_image, "import time\ntime.sleep(8)", gpus=1)
    second = pod(kubernetes, python_image, "print('second ran')", gpus=1)
    core.create_namespaced_pod(ns, first)
    phase_of(core, ns, first.metadata.name, {"Running"})
    core.create_namespaced_pod(ns, second)
    waiting = wait_for(
        "the scheduler to refuse the second GPU pod",
        lambda: next(
            (
                c
                for c in core.read_namespaced_pod(second.metadata.name, ns).status.conditions or []
                if c.type == "PodScheduled" and c.status == "False"
            ),
            None,
        ),
    )
    assert "nvidia.com/gpu" in waiting.message
    assert core.read_namespaced_pod(first.metadata.name, ns).status.phase == "Running"
    done = phase_of(core, ns, second.metadata.name, {"Succeeded", "Failed"})
    assert done.status.phase == "Succeeded"
    first_end = core.read_namespaced_pod(first.metadata.name, ns).status.container_statuses[0]
    second_start = done.status.container_statuses[0].state.terminated.started_at
    assert first_end.state.terminated.finished_at <= second_start


def test_a_host_network_pod_reaches_a_service_on_the_hosts_loopback(
    core: client.CoreV1Api,
    kubernetes: dict[str, str],
    registry: dict[str, str],
    ns: str,
    python_image: str,
) -> None:
    url = f"{registry['TRACECTL_REGISTRY_URL']}/v2/"
    script = f"import urllib.request\nprint('status', urllib.request.urlopen('{url}').status)"
    done = run_pod(core, ns, pod(kubernetes, python_image, script, host_network=True))
    assert done.status.phase == "Succeeded"
    assert "status 200" in core.read_namespaced_pod_log(done.metadata.name, ns)


def test_an_image_missing_from_the_registry_is_reported_as_a_pull_failure(
    core: client.CoreV1Api, kubernetes: dict[str, str], registry: dict[str, str], ns: str
) -> None:
    missing = f"{registry['TRACECTL_REGISTRY']}/tracectl/absent:{uuid.uuid4().hex[:8]}"
    body = pod(kubernetes, missing, "print(1)")
    core.create_namespaced_pod(ns, body)
    waiting = wait_for(
        "the pull to fail",
        lambda: next(
            (
                s.state.waiting
                for s in core.read_namespaced_pod(body.metadata.name, ns).status.container_statuses
                or []
                if s.state.waiting
                and s.state.waiting.reason in {"ErrImagePull", "ImagePullBackOff"}
            ),
            None,
        ),
        120,
    )
    assert "not found" in (waiting.message or "")
