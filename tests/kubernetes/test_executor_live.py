"""The Kubernetes executor against the real API server, controllers and scheduler.

Simulated: pods (KWOK). The Job, Secret, Deployment and Service objects are stored and
validated by the real kube-apiserver v1.37, owned and garbage-collected by the real
controllers, placed by the real kube-scheduler (GPU capacity of gpu-worker: 2); KWOK plays
the kubelet, so no container runs and a pod ends with the exit code of its annotation
`tracectl.io/exit-code` after `pod-complete.stage.kwok.x-k8s.io/delay` (default 2 s).

Why KWOK and not the real node: these tests script when and how each pod ends (exit codes,
delays long enough to restart an executor or cancel mid-run, a pod that never ends) and need
gpu-worker's 2 GPUs; the same executor on real containers is tests/kubernetes/test_real_pods.py
and test_failures_live.py.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path

import pytest
from kubernetes import client

from controller.executors.k8s_manifests import PHASES
from controller.executors.kubernetes import KubernetesExecutor
from controller.ports import Launch
from tests.kubernetes.conftest import (
    RUNTIME_IMAGE,
    cluster_config,
    completed_launch,
    kwok_placement,
    make_launch,
    wait_exit,
)
from tests.waiting import wait_for

pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def claim(api: client.ApiClient, namespace: str, kubernetes: dict[str, str]) -> str:
    """A PVC bound by the real persistentvolume controller (default StorageClass)."""
    core = client.CoreV1Api(api)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    except client.ApiException as exc:
        assert exc.status == 409
    core.create_namespaced_persistent_volume_claim(
        namespace,
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="datasets"),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
            ),
        ),
    )
    wait_for(
        "PVC datasets Bound",
        lambda: (
            core.read_namespaced_persistent_volume_claim("datasets", namespace).status.phase
            == "Bound"
        ),
    )
    return "datasets"


def test_job_as_stored_by_the_api_server(
    executor: KubernetesExecutor, api: client.ApiClient, namespace: str, claim: str, tmp_path: Path
) -> None:
    launch = make_launch(
        tmp_path,
        env={"EPOCHS": "3", "HF_TOKEN": "s3cret-value"},
        secret_env=["HF_TOKEN"],
        timeout_s=900,
        resources={
            "gpu": 1,
            "gpu_flavor": "nvidia.com/gpu",
            "cpu": 2,
            "memory": "4Gi",
            "volumes": [{"claim": claim, "mode": "ro", "mount_path": "/data"}],
        },
    )
    ref = executor.launch(launch)
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    job = batch.read_namespaced_job(ref.name, namespace)
    assert ref.name == f"tracectl-{launch.task_id.split('_', 1)[1]}-1"
    assert job.spec.backoff_limit == 0
    assert job.spec.active_deadline_seconds == 900
    assert job.spec.ttl_seconds_after_finished == 3600
    assert job.metadata.labels == {
        "app.kubernetes.io/name": "tracectl-task",
        "app.kubernetes.io/managed-by": "tracectl",
        "app.kubernetes.io/component": "job",
        "tracectl.io/run-id": "run_1",
        "tracectl.io/task-id": launch.task_id,
        "tracectl.io/attempt": "1",
        "tracectl.io/team": "default",
    }
    pod = job.spec.template.spec
    (task,) = pod.containers
    (prepare,) = pod.init_containers
    assert task.image == "registry.invalid/tracectl/task:1"
    assert prepare.image == RUNTIME_IMAGE
    assert task.args == ["python", "train.py", "--epochs", "3"]
    assert task.command == [*PHASES, "exec", "/etc/tracectl/launch.json", "/workspace", "--"]
    assert prepare.command == [*PHASES, "prepare", "/etc/tracectl/launch.json", "/workspace"]
    env = {e.name: e for e in task.env}
    # The tracking run's id is a late value: a key of the Secret made after the Job.
    assert env["MLFLOW_RUN_ID"].value is None
    assert env["MLFLOW_RUN_ID"].value_from.secret_key_ref.key == "MLFLOW_RUN_ID"
    assert env["MLFLOW_TRACKING_URI"].value == "http://mlflow:5000"
    assert env["TRACECTL_FENCING_TOKEN"].value == "42"
    assert env["EPOCHS"].value == "3"
    assert env["HF_TOKEN"].value is None
    assert env["HF_TOKEN"].value_from.secret_key_ref.name == ref.name
    assert env["HF_TOKEN"].value_from.secret_key_ref.key == "HF_TOKEN"
    assert "s3cret-value" not in json.dumps(api.sanitize_for_serialization(job))
    assert task.resources.limits == {"nvidia.com/gpu": "1", "cpu": "2", "memory": "4Gi"}
    assert task.resources.requests == task.resources.limits
    assert pod.node_selector == {"type": "kwok", "nvidia.com/gpu.present": "true"}
    assert [(t.key, t.effect) for t in pod.tolerations] == [
        ("tracectl.io/kwok", None),
        ("nvidia.com/gpu", "NoSchedule"),
    ]
    volumes = {v.name: v for v in pod.volumes}
    assert volumes["claim-0"].persistent_volume_claim.claim_name == "datasets"
    assert volumes["claim-0"].persistent_volume_claim.read_only is True
    assert volumes["launch"].secret.secret_name == ref.name
    assert volumes["workspace"].empty_dir is not None
    mounts = {m.name: m for m in task.volume_mounts}
    assert (mounts["claim-0"].mount_path, mounts["claim-0"].read_only) == ("/data", True)
    secret = core.read_namespaced_secret(ref.name, namespace)
    (owner,) = secret.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid, owner.controller) == (
        "Job",
        ref.name,
        job.metadata.uid,
        True,
    )
    assert set(secret.data) == {"launch.json", "HF_TOKEN", "MLFLOW_RUN_ID"}
    assert base64.b64decode(secret.data["MLFLOW_RUN_ID"]) == b"abc123"
    launched = json.loads(base64.b64decode(secret.data["launch.json"]))
    assert launched["task_id"] == launch.task_id and launched["spec"]["command"][0] == "python"
    assert launched["env"]["MLFLOW_RUN_ID"] == "abc123"
    # Placed by the real scheduler on the GPU node, next to the bound PVC.
    scheduled = wait_for(
        "the pod to be scheduled",
        lambda: next(
            (
                p
                for p in core.list_namespaced_pod(
                    namespace, label_selector=f"job-name={ref.name}"
                ).items
                if p.spec.node_name
            ),
            None,
        ),
    )
    assert scheduled.spec.node_name == "gpu-worker"
    executor.cancel(ref, 1.0)
    executor.cleanup(ref)
    wait_for(
        "the Secret to go with its Job",
        lambda: (
            not core.list_namespaced_secret(
                namespace, field_selector=f"metadata.name={ref.name}"
            ).items
        ),
    )


def test_the_job_exists_before_the_launch_is_completed(
    executor: KubernetesExecutor, api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """The tracking run (MLflow) is made after the Job is created, not before: its pod
    waits for the launch Secret, which carries the run's id."""
    launch = make_launch(tmp_path)
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    name = f"tracectl-{launch.task_id.split('_', 1)[1]}-1"
    seen: dict[str, bool] = {}

    def complete() -> Launch:
        seen["job"] = bool(
            batch.list_namespaced_job(namespace, field_selector=f"metadata.name={name}").items
        )
        seen["secret"] = bool(
            core.list_namespaced_secret(namespace, field_selector=f"metadata.name={name}").items
        )
        return completed_launch(launch, "run-made-late")

    ref = executor.launch(replace(launch, completion=complete))
    assert seen == {"job": True, "secret": False}
    secret = core.read_namespaced_secret(ref.name, namespace)
    assert base64.b64decode(secret.data["MLFLOW_RUN_ID"]) == b"run-made-late"
    # (A kubelet holds the pod in ContainerCreating until its Secret volume exists; KWOK
    # mounts nothing, so that wait is not simulated here.)
    state = wait_exit(executor, ref)
    assert (state.phase, state.exit_code) == ("exited", 0)


def test_a_job_cut_off_before_its_secret_is_launched_again(
    executor: KubernetesExecutor, api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """A controller killed between the Job and its Secret: find() does not adopt a Job
    whose pods would wait forever; the repeated launch adopts it (409) and adds the Secret."""
    launch = make_launch(tmp_path)

    def killed() -> Launch:
        raise KeyboardInterrupt  # not an Exception: the executor deletes nothing

    with pytest.raises(KeyboardInterrupt):
        executor.launch(replace(launch, completion=killed))
    batch = client.BatchV1Api(api)
    name = f"tracectl-{launch.task_id.split('_', 1)[1]}-1"
    uid = batch.read_namespaced_job(name, namespace).metadata.uid
    assert executor.find(launch) is None
    ref = executor.launch(launch)
    assert ref.uid == uid
    assert executor.find(launch) == ref
    state = wait_exit(executor, ref)
    assert (state.phase, state.exit_code) == ("exited", 0)


def test_gpu_job_is_scheduled_to_the_gpu_node_and_completes(
    executor: KubernetesExecutor, api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    ref = executor.launch(make_launch(tmp_path, resources={"gpu": 1}))
    state = wait_exit(executor, ref)
    assert (state.phase, state.exit_code, state.reason) == ("exited", 0, None)
    (pod,) = (
        client.CoreV1Api(api)
        .list_namespaced_pod(namespace, label_selector=f"job-name={ref.name}")
        .items
    )
    assert pod.spec.node_name == "gpu-worker"
    (prepare,) = pod.status.init_container_statuses  # the init container ran first (KWOK)
    assert prepare.state.terminated.exit_code == 0
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0


def test_queue_label_for_kueue(
    kubernetes: dict[str, str],
    namespace: str,
    settings: object,
    tmp_path: Path,
    api: client.ApiClient,
) -> None:
    from controller.executors import k8s_manifests as m

    cfg = cluster_config(kubernetes, namespace, queue="team-a")
    job = m.job(make_launch(tmp_path).document, cfg, "kueue-dry-run")
    stored = client.BatchV1Api(api).create_namespaced_job(namespace, job, dry_run="All")
    assert stored.metadata.labels["kueue.x-k8s.io/queue-name"] == "team-a"
    assert stored.spec.suspend is True  # Kueue unsuspends it on admission


def test_exit_code_3_fails_with_a_reason(executor: KubernetesExecutor, tmp_path: Path) -> None:
    ref = executor.launch(make_launch(tmp_path, annotations={"tracectl.io/exit-code": "3"}))
    state = wait_exit(executor, ref)
    assert (state.phase, state.exit_code) == ("exited", 3)
    assert str(state.reason).startswith("container task exited with code 3 (Error)")


def test_timeout_is_enforced_by_the_job_controller(
    executor: KubernetesExecutor, tmp_path: Path
) -> None:
    """activeDeadlineSeconds = timeout_s: the real Job controller fails the Job."""
    ref = executor.launch(
        make_launch(
            tmp_path, timeout_s=2, annotations={"pod-complete.stage.kwok.x-k8s.io/delay": "120s"}
        )
    )
    state = wait_exit(executor, ref)
    assert state.phase == "exited" and state.exit_code is None
    assert str(state.reason).startswith("timed out: the Job ran past activeDeadlineSeconds=2")


def test_eight_gpus_are_unschedulable(executor: KubernetesExecutor, tmp_path: Path) -> None:
    ref = executor.launch(make_launch(tmp_path, resources={"gpu": 8}))
    state = wait_exit(executor, ref)
    assert state.phase == "exited" and state.exit_code is None
    assert state.reason is not None and state.reason.startswith("unschedulable: 0/")
    assert "Insufficient nvidia.com/gpu" in state.reason
    executor.cancel(ref, 1)


def test_restarted_controller_adopts_the_job_by_label(
    executor: KubernetesExecutor,
    kubernetes: dict[str, str],
    namespace: str,
    settings: object,
    tmp_path: Path,
    api: client.ApiClient,
) -> None:
    launch = make_launch(tmp_path, annotations={"pod-complete.stage.kwok.x-k8s.io/delay": "4s"})
    ref = executor.launch(launch)
    executor.close()  # the controller "dies" with the Job running
    again = KubernetesExecutor(
        executor.settings, cluster_config(kubernetes, namespace, **kwok_placement(kubernetes))
    )
    try:
        found = again.find(launch)
        assert found == ref
        assert again.inspect(found, Path()).phase == "running"
        assert again.launch(launch) == ref  # a repeated launch meets 409 and adopts
        state = wait_exit(again, found)
        assert (state.phase, state.exit_code) == ("exited", 0)
        # Objects that vanish while the controller is away are reported missing.
        gone = again.launch(
            make_launch(tmp_path, annotations={"pod-complete.stage.kwok.x-k8s.io/delay": "60s"})
        )
        client.BatchV1Api(api).delete_namespaced_job(
            gone.name, namespace, propagation_policy="Background"
        )
        state = wait_exit(again, gone)
        assert state.phase == "missing" and "no longer exists" in str(state.reason)
    finally:
        again.close()


def test_cancel_deletes_the_job_in_the_foreground(
    executor: KubernetesExecutor, api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    ref = executor.launch(
        make_launch(tmp_path, annotations={"pod-complete.stage.kwok.x-k8s.io/delay": "120s"})
    )
    wait_for(
        "the pod to run",
        lambda: any(
            p.status.phase == "Running"
            for p in client.CoreV1Api(api)
            .list_namespaced_pod(namespace, label_selector=f"job-name={ref.name}")
            .items
        ),
    )
    executor.cancel(ref, 1.0)
    assert executor.inspect(ref, Path()).phase == "missing"
    assert (
        not client.CoreV1Api(api)
        .list_namespaced_pod(namespace, label_selector=f"job-name={ref.name}")
        .items
    )


def test_service_lifecycle(
    executor: KubernetesExecutor, api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    launch = make_launch(
        tmp_path, mode="service", command=["python", "-m", "http.server"], env={"PORT": "8000"}
    )
    ref = executor.launch(launch)
    assert (ref.kind, ref.object) == ("k8s", "service")
    assert ref.url == f"http://{ref.name}.{namespace}.svc:80"
    state = executor.wait_ready(ref, 60)
    assert state.phase == "running" and state.result == {"url": ref.url, "ready": True}
    core = client.CoreV1Api(api)
    svc = core.read_namespaced_service(ref.name, namespace)
    assert svc.spec.ports[0].target_port == "http"
    assert svc.metadata.owner_references[0].kind == "Deployment"
    dep = client.AppsV1Api(api).read_namespaced_deployment(ref.name, namespace)
    assert dep.spec.template.spec.containers[0].ports[0].container_port == 8000
    executor.cancel(ref, 1.0)  # explicit stop
    state = executor.inspect(ref, Path())
    assert state.phase == "missing" and "stopped" in str(state.reason)
    wait_for(
        "the owned Service to be garbage-collected",
        lambda: (
            not core.list_namespaced_service(
                namespace, field_selector=f"metadata.name={ref.name}"
            ).items
        ),
    )


def test_team_namespace_is_created(
    kubernetes: dict[str, str], settings: object, api: client.ApiClient, tmp_path: Path
) -> None:
    cfg = cluster_config(
        kubernetes,
        "unused",
        namespace_per_team=True,
        follow_logs=False,
        **kwok_placement(kubernetes),
    )
    ex = KubernetesExecutor(settings, cfg)  # type: ignore[arg-type]
    team = f"t{tmp_path.name[-6:].lower().replace('_', '')}"
    try:
        ref = ex.launch(make_launch(tmp_path, team=team))
        assert ref.namespace == f"tracectl-{team}"
        labels = client.CoreV1Api(api).read_namespace(ref.namespace).metadata.labels
        assert labels["app.kubernetes.io/managed-by"] == "tracectl"
        assert wait_exit(ex, ref).exit_code == 0
    finally:
        ex.close()
        client.CoreV1Api(api).delete_namespace(f"tracectl-{team}")
