"""Smoke test of the real Kubernetes control plane that deploy/local/kubernetes runs.

kube-apiserver, kube-controller-manager and kube-scheduler (v1.37, built from the Go module proxy)
run on etcd; KWOK plays the nodes ``cpu-worker`` and ``gpu-worker`` (2 simulated
``nvidia.com/gpu``) and drives pod status. Every object here goes through the real API server and
the real controllers; only the containers are simulated: every pod here selects ``type=kwok``
and tolerates the KWOK nodes' taint ``tracectl.io/kwok`` (the real node is
tests/stack/test_kubernetes_node.py's).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, dynamic, watch
from kubernetes.client.rest import ApiException

from tests.kube import scratch_namespace
from tests.waiting import wait_for

# The first start may build the binaries from the Go module proxy (about 20 min cold on 2 cores).
pytestmark = [pytest.mark.kubernetes, pytest.mark.timeout(2700)]

IMAGE = "registry.invalid/tracectl/task:1"  # never pulled: no container runtime runs
KWOK_TOLERATIONS = [client.V1Toleration(key="tracectl.io/kwok", operator="Exists")]


@pytest.fixture(scope="module")
def api(kubernetes: dict[str, str]) -> client.ApiClient:
    return config.new_client_from_config(config_file=kubernetes["KUBECONFIG"])


@pytest.fixture(scope="module")
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture(scope="module")
def ns(core: client.CoreV1Api) -> Iterator[str]:
    with scratch_namespace(core, "smoke") as name:
        yield name


def job_manifest(
    name: str,
    *,
    gpus: int = 0,
    annotations: dict[str, str] | None = None,
    backoff_limit: int = 0,
) -> client.V1Job:
    resources = client.V1ResourceRequirements(
        requests={"cpu": "500m", "memory": "256Mi"}, limits={"memory": "256Mi"}
    )
    node_selector = {"type": "kwok"}
    if gpus:
        resources.limits["nvidia.com/gpu"] = str(gpus)
        node_selector["nvidia.com/gpu.present"] = "true"
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name, labels={"app.kubernetes.io/part-of": "tracectl"}),
        spec=client.V1JobSpec(
            backoff_limit=backoff_limit,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(annotations=annotations or {}),
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    node_selector=node_selector,
                    tolerations=KWOK_TOLERATIONS,
                    containers=[
                        client.V1Container(
                            name="task", image=IMAGE, command=["true"], resources=resources
                        )
                    ],
                ),
            ),
        ),
    )


def job_condition(batch: client.BatchV1Api, ns: str, name: str, kind: str) -> client.V1Job | None:
    job = batch.read_namespaced_job_status(name, ns)
    for cond in job.status.conditions or []:
        if cond.type == kind and cond.status == "True":
            return job
    return None


def job_pods(core: client.CoreV1Api, ns: str, name: str) -> list[client.V1Pod]:
    return core.list_namespaced_pod(ns, label_selector=f"job-name={name}").items


def test_env_points_at_loopback_api(kubernetes: dict[str, str]) -> None:
    assert Path(kubernetes["KUBECONFIG"]).is_file()
    assert kubernetes["TRACECTL_K8S_NAMESPACE"] == "tracectl"
    assert kubernetes["TRACECTL_K8S_API"].startswith("https://127.0.0.1:")


def test_server_version_and_namespace(api: client.ApiClient, core: client.CoreV1Api) -> None:
    version = client.VersionApi(api).get_code()
    assert version.git_version.startswith("v1.37."), version.git_version
    assert core.read_namespace("tracectl").status.phase == "Active"


def test_fake_nodes_are_ready_with_gpu_capacity(core: client.CoreV1Api) -> None:
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert {"cpu-worker", "gpu-worker"} <= set(nodes)
    for node in nodes.values():
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True", node.metadata.name
    gpu = nodes["gpu-worker"]
    assert gpu.status.allocatable["nvidia.com/gpu"] == "2"
    assert gpu.status.capacity["nvidia.com/gpu"] == "2"
    assert gpu.metadata.labels["nvidia.com/gpu.present"] == "true"
    assert [t.key for t in gpu.spec.taints or []] == ["tracectl.io/kwok", "nvidia.com/gpu"]
    cpu = nodes["cpu-worker"]
    assert "nvidia.com/gpu" not in cpu.status.allocatable
    assert [t.key for t in cpu.spec.taints or []] == ["tracectl.io/kwok"]  # benches' only
    assert cpu.status.allocatable["cpu"] == "8"
    assert cpu.status.allocatable["memory"] == "32Gi"


def test_pvc_binds_to_static_pv(core: client.CoreV1Api, ns: str) -> None:
    pvc = client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="data-static"),
        spec=client.V1PersistentVolumeClaimSpec(
            storage_class_name="static",
            access_modes=["ReadWriteOnce"],
            resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
        ),
    )
    core.create_namespaced_persistent_volume_claim(ns, pvc)
    bound = wait_for(
        "the static PVC to be Bound (persistentvolume-binder)",
        lambda: (
            c
            if (c := core.read_namespaced_persistent_volume_claim("data-static", ns)).status.phase
            == "Bound"
            else None
        ),
    )
    assert bound.spec.volume_name.startswith("static-pv-")
    pv = core.read_persistent_volume(bound.spec.volume_name)
    assert pv.status.phase == "Bound"
    assert pv.spec.claim_ref.namespace == ns and pv.spec.claim_ref.name == "data-static"
    # Retain policy: deleting the claim leaves the PV Released; clearing claimRef returns it to the
    # pool (deploy/local/kubernetes start does this for every Released static PV).
    core.delete_namespaced_persistent_volume_claim("data-static", ns)
    name = pv.metadata.name
    wait_for(
        "the static PV to be Released",
        lambda: core.read_persistent_volume(name).status.phase == "Released",
    )
    core.patch_persistent_volume(name, [{"op": "remove", "path": "/spec/claimRef"}])
    wait_for(
        "the static PV to be Available again",
        lambda: core.read_persistent_volume(name).status.phase == "Available",
    )


def test_pvc_is_provisioned_by_default_class(core: client.CoreV1Api, ns: str) -> None:
    pvc = client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="data-dynamic"),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"],
            resources=client.V1VolumeResourceRequirements(requests={"storage": "2Gi"}),
        ),
    )
    created = core.create_namespaced_persistent_volume_claim(ns, pvc)
    assert created.spec.storage_class_name == "standard"  # DefaultStorageClass admission
    bound = wait_for(
        "the dynamic PVC to be Bound (hostPath provisioner)",
        lambda: (
            c
            if (c := core.read_namespaced_persistent_volume_claim("data-dynamic", ns)).status.phase
            == "Bound"
            else None
        ),
    )
    pv = core.read_persistent_volume(bound.spec.volume_name)
    assert pv.spec.storage_class_name == "standard"
    assert pv.spec.capacity["storage"] == "2Gi"


def test_gpu_job_is_scheduled_on_gpu_node_and_completes(
    api: client.ApiClient, core: client.CoreV1Api, ns: str
) -> None:
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(ns, job_manifest("train-gpu", gpus=1))
    job = wait_for(
        "Job train-gpu Complete", lambda: job_condition(batch, ns, "train-gpu", "Complete")
    )
    assert job.status.succeeded == 1
    assert not job.status.failed
    (pod,) = job_pods(core, ns, "train-gpu")
    assert pod.spec.node_name == "gpu-worker"
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    # ExtendedResourceToleration admission added the toleration for the gpu-worker taint.
    assert any(t.key == "nvidia.com/gpu" for t in pod.spec.tolerations)
    scheduled = [c for c in pod.status.conditions if c.type == "PodScheduled"]
    assert scheduled and scheduled[0].status == "True"


def test_job_failure_carries_exit_code(
    api: client.ApiClient, core: client.CoreV1Api, ns: str
) -> None:
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(
        ns, job_manifest("train-fails", annotations={"tracectl.io/exit-code": "3"})
    )
    job = wait_for(
        "Job train-fails Failed", lambda: job_condition(batch, ns, "train-fails", "Failed")
    )
    assert job.status.failed == 1
    assert not job.status.succeeded
    (pod,) = job_pods(core, ns, "train-fails")
    assert pod.spec.node_name == "cpu-worker"  # no GPU asked: the taint keeps it off gpu-worker
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 3


def test_gpu_request_above_capacity_stays_pending(
    api: client.ApiClient, core: client.CoreV1Api, ns: str
) -> None:
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(ns, job_manifest("too-many-gpus", gpus=3))

    def unschedulable() -> client.V1PodCondition | None:
        for pod in job_pods(core, ns, "too-many-gpus"):
            for cond in pod.status.conditions or []:
                if cond.type == "PodScheduled" and cond.reason == "Unschedulable":
                    return cond
        return None

    cond = wait_for("the scheduler to report Unschedulable", unschedulable)
    assert "nvidia.com/gpu" in cond.message
    (pod,) = job_pods(core, ns, "too-many-gpus")
    assert pod.spec.node_name is None
    batch.delete_namespaced_job("too-many-gpus", ns, propagation_policy="Foreground")


def test_deployment_gets_replicaset_ready_pods_and_endpointslice(
    api: client.ApiClient, core: client.CoreV1Api, ns: str
) -> None:
    apps = client.AppsV1Api(api)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        ns,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=2,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        node_selector={"type": "kwok"},
                        tolerations=KWOK_TOLERATIONS,
                        containers=[
                            client.V1Container(
                                name="web",
                                image=IMAGE,
                                ports=[client.V1ContainerPort(container_port=8080)],
                            )
                        ],
                    ),
                ),
            ),
        ),
    )
    core.create_namespaced_service(
        ns,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1ServiceSpec(
                selector=labels, ports=[client.V1ServicePort(port=80, target_port=8080)]
            ),
        ),
    )
    dep = wait_for(
        "Deployment web to have 2 ready replicas",
        lambda: (
            d
            if (d := apps.read_namespaced_deployment_status("web", ns)).status.ready_replicas == 2
            else None
        ),
    )
    assert dep.status.available_replicas == 2
    (rs,) = apps.list_namespaced_replica_set(ns, label_selector="app=web").items
    assert rs.metadata.owner_references[0].kind == "Deployment"
    assert rs.metadata.owner_references[0].name == "web"
    pods = core.list_namespaced_pod(ns, label_selector="app=web").items
    assert len(pods) == 2
    assert {p.status.phase for p in pods} == {"Running"}
    assert {p.spec.node_name for p in pods} == {"cpu-worker"}
    pod_ips = {p.status.pod_ip for p in pods}

    discovery = client.DiscoveryV1Api(api)

    def ready_addresses() -> set[str] | None:
        found: set[str] = set()
        for sl in discovery.list_namespaced_endpoint_slice(
            ns, label_selector="kubernetes.io/service-name=web"
        ).items:
            for ep in sl.endpoints or []:
                if ep.conditions.ready:
                    found.update(ep.addresses)
        return found if len(found) == 2 else None

    assert wait_for("EndpointSlice of Service web", ready_addresses) == pod_ips
    svc = core.read_namespaced_service("web", ns)
    assert svc.spec.cluster_ip.startswith("10.96.")


def test_server_side_apply_dry_run(api: client.ApiClient, core: client.CoreV1Api, ns: str) -> None:
    dyn = dynamic.DynamicClient(api)
    jobs = dyn.resources.get(api_version="batch/v1", kind="Job")
    manifest: dict[str, Any] = client.ApiClient().sanitize_for_serialization(
        job_manifest("dry-run-only", gpus=1)
    )
    manifest.update(apiVersion="batch/v1", kind="Job")
    manifest["metadata"]["namespace"] = ns
    applied = jobs.server_side_apply(
        body=manifest, namespace=ns, field_manager="tracectl-smoke", dry_run="All"
    )
    assert applied.metadata.name == "dry-run-only"
    assert applied.metadata.uid  # defaulted and admitted by the server...
    assert applied.spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    with pytest.raises(ApiException) as err:  # ...but never stored
        client.BatchV1Api(api).read_namespaced_job("dry-run-only", ns)
    assert err.value.status == 404
    # An invalid manifest is rejected by validation, even in dry-run.
    manifest["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(ApiException) as bad:
        jobs.server_side_apply(
            body=manifest, namespace=ns, field_manager="tracectl-smoke", dry_run="All"
        )
    assert bad.value.status == 422


def test_watch_from_resource_version(core: client.CoreV1Api, ns: str) -> None:
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    names = [f"cm-{i}" for i in range(3)]
    for name in names:
        core.create_namespaced_config_map(
            ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"k": name})
        )
    seen: list[tuple[str, str]] = []
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=20
    ):
        obj = event["object"]
        if obj.metadata.name in names:
            seen.append((event["type"], obj.metadata.name))
        if len(seen) == len(names):
            w.stop()
    assert seen == [("ADDED", n) for n in names]


def test_rbac_denies_then_allows_a_service_account(
    api: client.ApiClient, core: client.CoreV1Api, ns: str, kubernetes: dict[str, str]
) -> None:
    core.create_namespaced_service_account(
        ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    token = core.create_namespaced_service_account_token(
        "reader",
        ns,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
    ).status.token
    cfg = client.Configuration()
    cfg.host = kubernetes["TRACECTL_K8S_API"]
    cfg.ssl_ca_cert = kubernetes["TRACECTL_K8S_CA"]
    cfg.api_key = {"authorization": f"Bearer {token}"}
    as_reader = client.CoreV1Api(client.ApiClient(cfg))
    with pytest.raises(ApiException) as denied:
        as_reader.list_namespaced_pod(ns)
    assert denied.value.status == 403
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(
        ns,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="pod-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        ns,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="reader-pods"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=ns)],
        ),
    )

    def can_list_pods() -> bool:
        try:
            as_reader.list_namespaced_pod(ns)
        except ApiException as exc:  # the RBAC authorizer's informer may lag by a moment
            if exc.status != 403:
                raise
            return False
        return True

    wait_for("the RoleBinding to take effect", can_list_pods, timeout=30)
    with pytest.raises(ApiException) as still_denied:  # least privilege: only what was granted
        as_reader.list_namespaced_secret(ns)
    assert still_denied.value.status == 403
    assert base64.b64decode(token.split(".")[1] + "==")  # a real signed JWT


def test_pod_logs_served_through_the_api_server(
    api: client.ApiClient, core: client.CoreV1Api, ns: str, tmp_path: Path
) -> None:
    """The API server proxies pods/log to the node's kubelet port, where KWOK serves the file a
    ClusterLogs object names (CRI log format), following it as a kubelet follows a container."""
    log_file = tmp_path / "task.log"
    log_file.write_text("2026-11-25T12:00:00.000000001Z stdout F hello from kwok\n")
    custom = client.CustomObjectsApi(api)
    custom.create_cluster_custom_object(
        "kwok.x-k8s.io",
        "v1alpha1",
        "clusterlogs",
        {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "ClusterLogs",
            "metadata": {"name": ns},
            "spec": {
                "selector": {"matchNamespaces": [ns]},
                "logs": [{"containers": ["task"], "logsFile": str(log_file)}],
            },
        },
    )
    try:
        batch = client.BatchV1Api(api)
        batch.create_namespaced_job(
            ns, job_manifest("logs", annotations={"pod-complete.stage.kwok.x-k8s.io/delay": "60s"})
        )
        pod = wait_for(
            "the logs pod to run",
            lambda: next(
                (p for p in job_pods(core, ns, "logs") if p.status.phase == "Running"), None
            ),
        )
        # kwok's --node-ip and --node-port: the API server dials the node's "kubelet" there.
        assert pod.status.host_ip == "127.0.0.1"
        node = core.read_node(pod.spec.node_name)
        assert node.status.daemon_endpoints.kubelet_endpoint.port == 10247
        text = core.read_namespaced_pod_log(
            pod.metadata.name, ns, container="task", timestamps=True, _request_timeout=30
        )
        assert text == "2026-11-25T12:00:00.000000001Z hello from kwok\n"
        with pytest.raises(ApiException) as err:  # a container no Logs object names
            core.read_namespaced_pod_log(
                pod.metadata.name, ns, container="other", _request_timeout=30
            )
        assert err.value.status in (400, 500)
    finally:
        custom.delete_cluster_custom_object("kwok.x-k8s.io", "v1alpha1", "clusterlogs", ns)
