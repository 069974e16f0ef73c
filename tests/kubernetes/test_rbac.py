"""deploy/k8s/rbac.yaml against the real API server: every object passes a server-side
dry-run apply, and its task-runner rules are enough for the executor to run a Job and a
service as that ServiceAccount, and no more (it cannot list Secrets, nor act elsewhere).
The Job and the service run on the real node, in the runtime image: the Job's container checks
the secret value it was given, the service answers on its PORT (host networking: the kubelet's
readiness probe reaches it on the node's 127.0.0.1)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, dynamic

from controller.config import Settings
from controller.executors.kubernetes import KubernetesExecutor
from tests.kubernetes.conftest import cluster_config, free_port, make_launch, wait_exit

pytestmark = [pytest.mark.kubernetes, pytest.mark.registry, pytest.mark.timeout(1800)]
RBAC = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "rbac.yaml"


def documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(RBAC.read_text()) if d]


def test_every_object_passes_a_server_side_dry_run(api: client.ApiClient) -> None:
    """Namespaces are applied for real (a dry-run namespace cannot hold a dry-run object)."""
    dyn = dynamic.DynamicClient(api)
    core = client.CoreV1Api(api)
    existing = {n.metadata.name for n in core.list_namespace().items}
    made = []
    kinds = []
    try:
        for doc in documents():
            resource = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
            real = doc["kind"] == "Namespace"
            if real and doc["metadata"]["name"] not in existing:
                made.append(doc["metadata"]["name"])
            applied = resource.server_side_apply(
                body=doc,
                namespace=doc["metadata"].get("namespace"),
                field_manager="tracectl-rbac-test",
                dry_run=None if real else "All",
            )
            assert applied.metadata.name == doc["metadata"]["name"]
            kinds.append(doc["kind"])
    finally:
        for name in made:
            core.delete_namespace(name)
    assert kinds.count("ClusterRole") == 2 and "RoleBinding" in kinds
    with pytest.raises(client.ApiException) as absent:  # dry-run: nothing was stored
        client.RbacAuthorizationV1Api(api).read_cluster_role("tracectl-task-runner")
    assert absent.value.status == 404


@pytest.fixture
def runner_namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"tracectl-rbac-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)
    client.RbacAuthorizationV1Api(api).delete_cluster_role(f"{name}-runner")


def as_service_account(
    api: client.ApiClient, kubernetes: dict[str, str], namespace: str
) -> client.ApiClient:
    """The task-runner rules of rbac.yaml, bound in NAMESPACE to a fresh ServiceAccount."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    role = next(d for d in documents() if d["metadata"]["name"] == "tracectl-task-runner")
    rbac.create_cluster_role({**role, "metadata": {"name": f"{namespace}-runner"}})
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="tracectl-controller"))
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "tracectl-task-runner"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"{namespace}-runner",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "tracectl-controller", "namespace": namespace}
            ],
        },
    )
    token = core.create_namespaced_service_account_token(
        "tracectl-controller",
        namespace,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
    ).status.token
    cfg = client.Configuration()
    cfg.host = kubernetes["TRACECTL_K8S_API"]
    cfg.ssl_ca_cert = kubernetes["TRACECTL_K8S_CA"]
    cfg.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(cfg)


def test_the_runner_role_is_enough_and_no_more(
    api: client.ApiClient,
    kubernetes: dict[str, str],
    runner_namespace: str,
    runtime_image: str,
    tmp_path: Path,
) -> None:
    restricted = as_service_account(api, kubernetes, runner_namespace)
    config = cluster_config(
        kubernetes, runner_namespace, create_namespaces=False, unschedulable_grace_s=0
    )
    executor = KubernetesExecutor(
        Settings(home=tmp_path / "home"),
        config.model_copy(update={"image": runtime_image, "host_network": True}),
        restricted,
    )
    check = "import os; assert os.environ['TOKEN'] == 'x', 'the secret value did not arrive'"
    try:
        job = executor.launch(
            make_launch(
                tmp_path,
                command=["python3", "-c", check],
                image=runtime_image,
                env={"TOKEN": "x"},
                secret_env=["TOKEN"],
            )
        )
        assert wait_exit(executor, job, timeout=300).exit_code == 0
        executor.cleanup(job)
        serve = ["sh", "-c", 'exec python3 -m http.server "$PORT"']
        svc = executor.launch(
            make_launch(
                tmp_path,
                command=serve,
                image=runtime_image,
                mode="service",
                env={"PORT": str(free_port())},
            )
        )
        assert executor.wait_ready(svc, 300).result == {"url": svc.url, "ready": True}
        executor.cancel(svc, 1.0)
        executor.cleanup(svc)
    finally:
        executor.close()
    core = client.CoreV1Api(restricted)
    with pytest.raises(client.ApiException) as no_list:
        core.list_namespaced_secret(runner_namespace)
    assert no_list.value.status == 403
    with pytest.raises(client.ApiException) as elsewhere:
        client.BatchV1Api(restricted).list_namespaced_job("default")
    assert elsewhere.value.status == 403
