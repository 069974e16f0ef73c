"""The controller inside the cluster: deploy/k8s/overlays/local applied to deploy/local's real node.

The controller's image is built without Docker (`tracectl image build --target controller`) and
pulled by digest from the local registry; the overlay's objects (the controller part of
deploy/k8s/base) go into two fresh namespaces standing for `tracectl` and `tracectl-tasks`,
with a scratch PostgreSQL database. The pod has no kubeconfig: its only credential is its
ServiceAccount's token, so every Job of the pipeline below was created under the base's RBAC,
and the forbidden verbs are tried with a token bound to the running controller pod.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client

from bench.leases import scratch_postgres
from controller.auth.tokens import create_token
from controller.loopback import free_port
from controller.store.database import Database
from tests.deploy.kustomize import rename_namespaces
from tests.kube import delete_namespace, local_claim
from tests.kubernetes import wine
from tests.stack_fixtures import services
from tests.waiting import wait_for

pytestmark = [
    pytest.mark.kubernetes,
    pytest.mark.registry,
    pytest.mark.postgres,
    pytest.mark.kafka,
    pytest.mark.s3,
    pytest.mark.timeout(1800),
]

OVERLAY = wine.REPO / "deploy" / "k8s" / "overlays" / "local"
NAME = "tracectl-controller"
JOBS = ("prepare", "train", "evaluate", "register")  # the wine run's batch tasks


class Deployed:
    """The applied overlay: its two namespaces, the controller's port and database."""

    def __init__(self, home: str, tasks: str, port: int, database_url: str) -> None:
        self.home, self.tasks, self.port, self.database_url = home, tasks, port, database_url


def rendered(deployed: Deployed, images: dict[str, str], tracking_uri: str) -> list[dict[str, Any]]:
    """`kubectl kustomize` of the overlay, in this test's namespaces, images, port, database,
    MLflow, and with the wine run's RWO claim in the inventory."""
    out = subprocess.run(
        ["kubectl", "kustomize", str(OVERLAY)], capture_output=True, text=True, check=True
    ).stdout
    objects = [doc for doc in yaml.safe_load_all(out) if doc]
    mapping = {"tracectl": deployed.home, "tracectl-tasks": deployed.tasks}
    objects = rename_namespaces(objects, mapping)
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if (kind, name) == ("ConfigMap", NAME):
            obj["data"]["TRACECTL_K8S_NAMESPACE"] = deployed.tasks
            obj["data"]["TRACECTL_K8S_IMAGE"] = images["runtime"]
            obj["data"]["MLFLOW_TRACKING_URI"] = tracking_uri
        elif (kind, name) == ("ConfigMap", "tracectl-inventory"):
            inventory = yaml.safe_load(obj["data"]["inventory.yaml"])
            inventory["volumes"] = [{"claim": wine.CLAIM, "access": "RWO"}]
            obj["data"]["inventory.yaml"] = yaml.safe_dump(inventory)
        elif (kind, name) == ("Secret", NAME):
            obj["stringData"]["TRACECTL_DATABASE_URL"] = deployed.database_url
        elif (kind, name) == ("Deployment", NAME):
            (container,) = obj["spec"]["template"]["spec"]["containers"]
            container["image"] = images["controller"]
            container["args"][-1] = str(deployed.port)
            container["ports"][0]["containerPort"] = deployed.port
    return objects


def only_the_controller_creates(deployed: Deployed) -> list[dict[str, Any]]:
    """An admission policy refusing a Job or Deployment in the task namespace to anyone but the
    controller's ServiceAccount: every workload there was created with its token."""
    name = f"{deployed.home}-workloads-by-the-controller"
    rules = {"apiGroups": ["batch", "apps"], "apiVersions": ["v1"], "operations": ["CREATE"]}
    rules["resources"] = ["jobs", "deployments"]
    user = f"system:serviceaccount:{deployed.home}:{NAME}"
    group = "admissionregistration.k8s.io/v1"
    policy = {
        "apiVersion": group,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [{**rules, "resources": ["jobs", "deployments"]}]
            },
            "validations": [{"expression": f"request.userInfo.username == '{user}'"}],
        },
    }
    tasks = {"matchLabels": {"kubernetes.io/metadata.name": deployed.tasks}}
    binding = {
        "apiVersion": group,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": tasks},
        },
    }
    return [policy, binding]


def refused(api: client.ApiClient, deployed: Deployed) -> bool:
    """Whether the policy is in force: the admin's own Job (a dry run) is refused."""
    container = client.V1Container(name="c", image="registry.invalid/never-pulled:1")
    pod = client.V1PodSpec(containers=[container], restart_policy="Never")
    job = client.V1Job(
        metadata=client.V1ObjectMeta(name="not-the-controller"),
        spec=client.V1JobSpec(template=client.V1PodTemplateSpec(spec=pod)),
    )
    try:
        client.BatchV1Api(api).create_namespaced_job(deployed.tasks, job, dry_run="All")
    except client.ApiException as exc:
        return exc.status in (400, 403, 422) and "userInfo" in str(exc.body)
    return False


def names(objects: list[Any]) -> set[str]:
    return {str(obj.metadata.name) for obj in objects}


def kubectl(kubernetes: dict[str, str], *argv: str, stdin: str | None = None) -> str:
    env = {**os.environ, "KUBECONFIG": kubernetes["KUBECONFIG"]}
    out = subprocess.run(
        ["kubectl", *argv], input=stdin, capture_output=True, text=True, env=env, check=False
    )
    assert out.returncode == 0, f"kubectl {' '.join(argv)}: {out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def images(registry: dict[str, str]) -> dict[str, str]:
    built = {"runtime": wine.image(registry), "controller": wine.image(registry, "controller")}
    return {**built, "wine": wine.wine_image(registry)}


@pytest.fixture(scope="module")
def deployed(
    images: dict[str, str], api: client.ApiClient, request: pytest.FixtureRequest
) -> Iterator[Deployed]:
    # Kafka and S3 only have to run: the overlay's controller finds them at fixed host addresses.
    stack = services(request, "kubernetes", "postgres", "kafka", "s3", "mlflow_server")
    suffix = uuid.uuid4().hex[:6]
    with scratch_postgres(stack["TRACECTL_POSTGRES_URL"]) as url:
        home = Deployed(f"tracectl-ic-{suffix}", f"tracectl-ic-{suffix}-tasks", free_port(), url)
        objects = rendered(home, images, stack["MLFLOW_TRACKING_URI"])
        policy = only_the_controller_creates(home)
        stream = yaml.safe_dump_all([*objects, *policy])
        try:
            kubectl(stack, "apply", "-f", "-", stdin=stream)
            wait_for("the policy to refuse the admin's Job", partial(refused, api, home), 60)
            kubectl(stack, "-n", home.home, "rollout", "status", f"deploy/{NAME}", "--timeout=600s")
            yield home
        finally:
            kubectl(
                stack,
                "delete",
                "--ignore-not-found",
                "-f",
                "-",
                stdin=yaml.safe_dump_all(policy),
            )
            core = client.CoreV1Api(api)
            delete_namespace(core, home.tasks)  # gives the wine run's local PV back
            core.delete_namespace(home.home)
            wait_for(
                "the namespaces to go (the controller's pod with them)",
                lambda: not names(core.list_namespace().items) & {home.home, home.tasks},
                300,
            )


def endpoint(api: client.ApiClient, deployed: Deployed) -> str:
    """The Service's ready endpoint (no kube-proxy runs: its ClusterIP leads nowhere)."""

    def ready() -> str | None:
        slices: Any = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
            deployed.home, label_selector=f"kubernetes.io/service-name={NAME}"
        )
        for piece in slices.items:
            for point in piece.endpoints or []:
                if point.conditions and point.conditions.ready:
                    return f"http://{point.addresses[0]}:{piece.ports[0].port}"
        return None

    return wait_for("the controller Service's ready endpoint", ready, 120)


def pod_of(api: client.ApiClient, deployed: Deployed) -> Any:
    pods: Any = client.CoreV1Api(api).list_namespaced_pod(
        deployed.home, label_selector=f"app.kubernetes.io/name={NAME}"
    )
    (pod,) = [p for p in pods.items if p.status.phase == "Running"]
    return pod


TRAIN = "open('model.txt', 'w').write('weights 3'); print('trained on', 3, 'rows')"
EVALUATE = "print('evaluated', open('model.txt').read())"
# prepare -> train -> evaluate; train's output is archived in S3 by its pod and downloaded by
# evaluate's (the runtime Secret's keys), as the example pipeline's model is.
PIPELINE = [
    {"name": "prepare", "spec": {"command": ["python3", "-c", "print('prepared rows 3')"]}},
    {
        "name": "train",
        "spec": {
            "command": ["python3", "-c", TRAIN],
            "outputs": ["model.txt"],
            "after": ["prepare"],
        },
    },
    {
        "name": "evaluate",
        "spec": {
            "command": ["python3", "-c", EVALUATE],
            "inputs": [{"artifact": "task:train/model.txt", "path": "model.txt"}],
        },
    },
]


def test_a_pipeline_runs_through_the_in_cluster_controller_on_jobs_of_its_own_account(
    deployed: Deployed, api: client.ApiClient
) -> None:
    base = endpoint(api, deployed)
    token = create_token(Database(deployed.database_url), "in-cluster", "research")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
        created = http.post("/v1/runs", json={"pipeline": "in-cluster", "tasks": PIPELINE})
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]
        listed = http.get("/v1/tasks", params={"run_id": run_id, "limit": 10}).json()["items"]
        ended = {t["name"]: wine.ended(http, t["id"]) for t in listed}
        logs = {n: http.get(f"/v1/tasks/{t['id']}/logs/text").text for n, t in ended.items()}
        artifacts = http.get(f"/v1/tasks/{ended['train']['id']}/artifacts").json()
    statuses = {name: t["status"] for name, t in ended.items()}
    assert statuses == dict.fromkeys(("prepare", "train", "evaluate"), "succeeded"), logs
    assert "trained on 3 rows" in logs["train"]
    assert "evaluated weights 3" in logs["evaluate"]
    (model,) = artifacts
    assert model["path"] == "model.txt" and model["uri"].startswith("s3://tracectl-logs/")
    refs = {t["executor_ref"]["name"] for t in ended.values()}
    assert refs <= names(client.BatchV1Api(api).list_namespaced_job(deployed.tasks).items)
    # A task ends when its container exits; the Job controller counts the pod a moment later.
    wait_for(
        "every Job to count its pod as succeeded", lambda: jobs_succeeded(api, deployed, refs), 60
    )
    pod = pod_of(api, deployed)
    assert pod.spec.service_account_name == NAME and pod.spec.node_name == "localhost"
    env = {e.name for c in pod.spec.containers for e in c.env or []}
    assert "KUBECONFIG" not in env  # the ServiceAccount's token is its only credential
    lease: Any = client.CoordinationV1Api(api).read_namespaced_lease(NAME, deployed.home)
    assert lease.spec.holder_identity.startswith(f"{pod.metadata.name}:")  # <pod>:<epoch>:…


@dataclass
class WineRun:
    """The wine example's run through the in-cluster controller, every task ended."""

    run_id: str
    tasks: dict[str, dict[str, Any]]  # by name
    served: dict[str, Any]
    lineage: dict[str, Any]
    leases: dict[str, list[dict[str, Any]]]  # by task name, the holders' (all states)
    train_log: str


@pytest.fixture(scope="module")
def wine_run(
    deployed: Deployed,
    images: dict[str, str],
    api: client.ApiClient,
    kubernetes: dict[str, str],
    s3: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> WineRun:
    """prepare -> train -> evaluate -> register + serve, code from a `git daemon` and data from
    S3 as test_example_pipeline_real runs it, submitted with an API token of team research."""
    storage = kubernetes["TRACECTL_K8S_LOCAL_STORAGE_CLASS"]
    local_claim(client.CoreV1Api(api), deployed.tasks, wine.CLAIM, storage)
    token = create_token(Database(deployed.database_url), "wine", "research")
    headers, port = {"Authorization": f"Bearer {token}"}, free_port()
    with (
        wine.served_example(tmp_path_factory.mktemp("wine-in-cluster"), s3) as repo,
        httpx.Client(base_url=endpoint(api, deployed), headers=headers, timeout=60) as http,
    ):
        run_id, submitted = wine.submit(http, wine.specs(repo, images["wine"], 7, port), 7)
        ids = {t["name"]: t["id"] for t in submitted}
        served, tasks = wine.ended_around_service(http, ids, "serve", port)
        lineage = http.get(f"/v1/runs/{run_id}/lineage").json()
        leases = {
            name: http.get("/v1/leases", params={"state": "all", "task_id": ids[name]}).json()
            for name in wine.HOLDERS
        }
        train_log = http.get(f"/v1/tasks/{ids['train']}/logs/text").text
    return WineRun(
        run_id, tasks, served, lineage, {n: v["items"] for n, v in leases.items()}, train_log
    )


def test_the_wine_example_runs_through_the_in_cluster_controller_on_jobs_of_its_account(
    wine_run: WineRun, deployed: Deployed, api: client.ApiClient, images: dict[str, str]
) -> None:
    statuses = {name: t["status"] for name, t in wine_run.tasks.items()}
    assert statuses == {**dict.fromkeys(JOBS, "succeeded"), "serve": "cancelled"}
    refs = {t["executor_ref"]["name"] for n, t in wine_run.tasks.items() if n in JOBS}
    # created under only_the_controller_creates: with the ServiceAccount's token
    assert refs <= names(client.BatchV1Api(api).list_namespaced_job(deployed.tasks).items)
    wait_for(
        "every Job to count its pod as succeeded", lambda: jobs_succeeded(api, deployed, refs), 60
    )
    assert wine_run.tasks["serve"]["executor_ref"]["object"] == "service"
    assert wine_run.served["health"]["status"] == "ok" and wine_run.served["status"] == 200
    assert len(wine_run.served["predict"]["predictions"]) == 1
    pods: Any = client.CoreV1Api(api).list_namespaced_pod(deployed.tasks)
    ran = {
        c.image
        for p in pods.items
        if p.metadata.name.startswith(tuple(refs))
        for c in p.spec.containers
    }
    assert ran == {images["wine"]}
    assert "trained on " in wine_run.train_log  # train.py's own line, through the API


def test_the_wine_runs_train_and_evaluate_held_the_nodes_gpu_and_the_claim_then_let_go(
    wine_run: WineRun,
) -> None:
    for name in wine.HOLDERS:
        held = {(lease["kind"], lease["resource"]) for lease in wine_run.leases[name]}
        assert held == {("gpu", "gpu:localhost:0"), ("volume", f"volume:{wine.CLAIM}")}, name
        assert all(lease["released_at"] for lease in wine_run.leases[name]), name


def test_the_wine_runs_outputs_are_archived_in_s3_with_their_lineage_checksums(
    wine_run: WineRun, s3: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = wine.archive(s3, "s3://tracectl-logs", monkeypatch, tmp_path)
    checked = {}
    for task in wine_run.lineage["tasks"]:
        for out in (task.get("lineage") or {}).get("outputs", []):
            assert out["uri"].startswith("s3://tracectl-logs/")
            data = store.open_bytes(out["uri"])
            checked[out["path"]] = hashlib.sha256(data).hexdigest() == out["sha256"]
    outputs = ["prepared/train.csv", "prepared/test.csv", "model/model.pkl", "metrics.json"]
    assert checked == dict.fromkeys([*outputs, "registered_model.json"], True)


def test_the_wine_runs_register_task_has_its_mlflow_run_and_model_version_on_the_server(
    wine_run: WineRun, mlflow_server: dict[str, str]
) -> None:
    register = wine_run.tasks["register"]
    found = wine.registered(mlflow_server["MLFLOW_TRACKING_URI"], register)
    assert found.run_status == "FINISHED"
    assert found.run_metrics["test_accuracy"] >= 0.8
    assert found.version.run_id == register["mlflow_run_id"]
    assert found.version.tags["tracectl_task_id"] == register["id"]
    assert all(t["mlflow_run_id"] for n, t in wine_run.tasks.items() if n in JOBS)


def jobs_succeeded(api: client.ApiClient, deployed: Deployed, refs: set[str]) -> bool:
    jobs: list[Any] = client.BatchV1Api(api).list_namespaced_job(deployed.tasks).items
    return all(j.status.succeeded == 1 for j in jobs if j.metadata.name in refs)


def pod_token(api: client.ApiClient, deployed: Deployed) -> str:
    """A token of the controller's ServiceAccount bound to its running pod (as the mounted one)."""
    pod = pod_of(api, deployed)
    bound = client.V1BoundObjectReference(kind="Pod", name=pod.metadata.name, uid=pod.metadata.uid)
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], bound_object_ref=bound)
    )
    answer: Any = client.CoreV1Api(api).create_namespaced_service_account_token(
        NAME, deployed.home, request
    )
    return str(answer.status.token)


def forbidden(deployed: Deployed) -> dict[str, tuple[str, str, dict[str, Any] | None]]:
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"{deployed.home}-escalate"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "admin",
        },
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": deployed.home}],
    }
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"}, "spec": {}}
    return {
        "list Secrets cluster-wide": ("GET", "/api/v1/secrets", None),
        "list Secrets of its task namespace": (
            "GET",
            f"/api/v1/namespaces/{deployed.tasks}/secrets",
            None,
        ),
        "delete a node": ("DELETE", "/api/v1/nodes/localhost", None),
        "create a ClusterRoleBinding": ("POST", f"{rbac}/clusterrolebindings", binding),
        "create a Job in its own namespace": (
            "POST",
            f"/apis/batch/v1/namespaces/{deployed.home}/jobs",
            job,
        ),
        "read another Lease": (
            "GET",
            f"/apis/coordination.k8s.io/v1/namespaces/{deployed.home}/leases/other",
            None,
        ),
    }


def test_the_controllers_token_is_refused_every_verb_its_roles_do_not_grant(
    deployed: Deployed, api: client.ApiClient, kubernetes: dict[str, str]
) -> None:
    token = pod_token(api, deployed)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(
        base_url=kubernetes["TRACECTL_K8S_API"],
        verify=ssl.create_default_context(cafile=kubernetes["TRACECTL_K8S_CA"]),
        headers=headers,
    ) as http:
        allowed = http.get(f"/apis/coordination.k8s.io/v1/namespaces/{deployed.home}/leases/{NAME}")
        assert allowed.status_code == 200, allowed.text  # the token is valid: refusals are RBAC's
        answers = {
            what: http.request(method, path, content=None if body is None else json.dumps(body))
            for what, (method, path, body) in forbidden(deployed).items()
        }
    codes = {what: answer.status_code for what, answer in answers.items()}
    assert codes == dict.fromkeys(codes, 403), {w: a.text[:200] for w, a in answers.items()}
    assert names([client.CoreV1Api(api).read_node("localhost")]) == {"localhost"}  # not deleted
