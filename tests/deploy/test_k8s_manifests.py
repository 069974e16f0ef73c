"""deploy/k8s: the Kustomize base for a real cluster (docs/deploy-k8s.md).

Static checks (no cluster): the expansion, images, probes, resources, security contexts,
least-privilege RBAC, the Logstash pipeline copy, the controller's settings, Airflow values.

Live checks (``@pytest.mark.kubernetes``, the real kube-apiserver of deploy/local/kubernetes):
every object of the base is sent as a server-side dry-run create (``dryRun=All``, strict field
validation) into throw-away copies of its namespaces, so schema validation, defaulting and
admission (Pod Security "restricted" included: each pod template is also dry-run as a Pod) are
the API server's own. Only the two Namespaces and the ServiceAccount are created for real
(a namespaced dry-run needs its namespace; a Pod needs its ServiceAccount); both namespaces are
deleted at the end.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from controller.config import ClusterConfig, Settings
from tests.deploy.kustomize import CLUSTER_SCOPED, KustomizeError, expand, rename_namespaces
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
BASE = K8S / "base"
PIPELINE = REPO / "logstash" / "pipeline" / "tracectl.conf"
NAMESPACES = {"tracectl", "tracectl-tasks"}
WORKLOADS = {"Deployment", "StatefulSet", "Job"}
LONG_RUNNING = {"Deployment", "StatefulSet"}
BUILTIN_ADMIN_ROLES = {"cluster-admin", "admin", "edit", "system:masters"}


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return expand(BASE)


def by_kind(objects: list[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in kinds]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
    return matches[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return list(spec.get("initContainers") or []) + list(spec["containers"])


def ident(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


# -- the expansion ---------------------------------------------------------------------------
def test_base_is_resources_only_and_every_file_is_listed() -> None:
    spec = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert set(spec) <= {"apiVersion", "kind", "resources"}, set(spec)
    listed = set(spec["resources"])
    on_disk = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml", "airflow-values.yaml"}
    on_disk |= {p.parent.name for p in BASE.glob("*/kustomization.yaml")}
    assert listed == on_disk, f"not listed: {on_disk - listed}; missing: {listed - on_disk}"
    part = yaml.safe_load((BASE / "controller" / "kustomization.yaml").read_text())
    assert set(part) <= {"apiVersion", "kind", "resources"}, set(part)
    assert set(part["resources"]) == {p.name for p in (BASE / "controller").glob("*.yaml")} - {
        "kustomization.yaml"
    }


def test_every_namespaced_object_names_its_namespace(objects: list[dict[str, Any]]) -> None:
    kinds = {o["kind"] for o in objects}
    assert {
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Secret",
        "Service",
        "Deployment",
        "StatefulSet",
        "PersistentVolumeClaim",
        "Job",
    } <= kinds
    for obj in objects:
        if obj["kind"] in CLUSTER_SCOPED:
            assert obj["kind"] == "Namespace", f"{ident(obj)}: cluster-scoped objects: none"
            assert obj["metadata"]["name"] in NAMESPACES
        else:
            assert obj["metadata"].get("namespace") in NAMESPACES, ident(obj)
    assert {o["metadata"]["name"] for o in by_kind(objects, "Namespace")} == NAMESPACES


def test_expander_refuses_what_it_cannot_expand(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [a.yaml]\nconfigMapGenerator: [{name: x, files: [a.yaml]}]\n"
    )
    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    with pytest.raises(KustomizeError, match="configMapGenerator"):
        expand(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("namespace: ns\nresources: [a.yaml, sub]\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "kustomization.yaml").write_text("resources: [../a.yaml]\n")
    with pytest.raises(KustomizeError, match="defined twice"):
        expand(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("namespace: ns\nresources: [sub]\n")
    [obj] = expand(tmp_path)
    assert obj["metadata"] == {"name": "a", "namespace": "ns"}


def test_expansion_equals_kubectl_kustomize(objects: list[dict[str, Any]]) -> None:
    assert shutil.which("kubectl"), "kubectl (its built-in kustomize) is not on PATH"
    out = subprocess.run(
        ["kubectl", "kustomize", str(BASE)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    theirs = [d for d in yaml.safe_load_all(out) if d]

    def key(o: dict[str, Any]) -> tuple[str, str, str]:
        return o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]

    assert sorted(theirs, key=key) == sorted(objects, key=key)


# -- images, probes, resources, security -----------------------------------------------------
def test_images_are_pinned(objects: list[dict[str, Any]]) -> None:
    for workload in by_kind(objects, *WORKLOADS):
        for container in containers(workload):
            image = container["image"]
            name, _, tag = image.rpartition(":")
            assert "@sha256:" in image or (name and "/" not in tag), (
                f"{ident(workload)}: {image} has no tag"
            )
            assert tag != "latest" and not image.endswith(":latest"), f"{ident(workload)}: {image}"
            assert container.get("imagePullPolicy") == "IfNotPresent", ident(workload)


def test_kafka_and_elastic_images_are_the_promised_ones(objects: list[dict[str, Any]]) -> None:
    assert containers(find(objects, "StatefulSet", "kafka"))[0]["image"] == "apache/kafka:4.1.0"
    elastic = {
        c["image"]
        for o in by_kind(objects, *WORKLOADS)
        for c in containers(o)
        if "elastic.co" in c["image"]
    }
    versions = {image.rpartition(":")[2] for image in elastic}
    assert len(versions) == 1 and next(iter(versions)).startswith("8."), elastic
    assert any(i.startswith("docker.elastic.co/elasticsearch/elasticsearch:") for i in elastic)


def test_workloads_have_resources_and_probes(objects: list[dict[str, Any]]) -> None:
    for workload in by_kind(objects, *WORKLOADS):
        for container in containers(workload):
            what = f"{ident(workload)}/{container['name']}"
            resources = container.get("resources") or {}
            assert {"cpu", "memory"} <= set(resources.get("requests") or {}), what
            assert "memory" in (resources.get("limits") or {}), what
            if workload["kind"] in LONG_RUNNING:
                assert container.get("readinessProbe"), f"{what}: no readinessProbe"
                assert container.get("livenessProbe"), f"{what}: no livenessProbe"


def test_pods_run_as_non_root_without_privileges(objects: list[dict[str, Any]]) -> None:
    for workload in by_kind(objects, *WORKLOADS):
        pod = pod_spec(workload).get("securityContext") or {}
        assert pod.get("runAsNonRoot") is True, ident(workload)
        assert pod.get("runAsUser", 0) != 0, ident(workload)
        assert pod.get("seccompProfile") == {"type": "RuntimeDefault"}, ident(workload)
        assert not pod_spec(workload).get("hostNetwork") and not pod_spec(workload).get("hostPID")
        for container in containers(workload):
            sc = container.get("securityContext") or {}
            assert sc.get("allowPrivilegeEscalation") is False, ident(workload)
            assert sc.get("capabilities") == {"drop": ["ALL"]}, ident(workload)
            assert not sc.get("privileged"), ident(workload)
            # A writable root filesystem only where the image rewrites its own config at start,
            # and then said so next to the setting.
            assert "readOnlyRootFilesystem" in sc, ident(workload)
    for name in ("tracectl-controller", "mlflow", "kibana"):
        controller = containers(find(objects, "Deployment", name))[0]
        assert controller["securityContext"]["readOnlyRootFilesystem"] is True, name
    for kind, name in (("StatefulSet", "postgres"), ("StatefulSet", "minio")):
        assert (
            containers(find(objects, kind, name))[0]["securityContext"]["readOnlyRootFilesystem"]
            is True
        ), name


def test_services_select_a_workload_and_its_named_ports(objects: list[dict[str, Any]]) -> None:
    templates = by_kind(objects, *LONG_RUNNING)
    for service in by_kind(objects, "Service"):
        selector = service["spec"]["selector"]
        targets = [
            w
            for w in templates
            if w["metadata"]["namespace"] == service["metadata"]["namespace"]
            and selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(targets) == 1, f"{ident(service)} selects {len(targets)} workloads"
        ports = {
            p["name"]: p["containerPort"]
            for c in containers(targets[0])
            for p in c.get("ports") or []
        }
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert target in ports or target in ports.values(), f"{ident(service)}: {target}"
    for workload in by_kind(objects, "StatefulSet"):
        service = find(objects, "Service", workload["spec"]["serviceName"])
        assert service["spec"].get("clusterIP") == "None", f"{ident(workload)}: not headless"


def test_secrets_hold_placeholders_marked_to_be_replaced(objects: list[dict[str, Any]]) -> None:
    secrets = by_kind(objects, "Secret")
    assert {s["metadata"]["name"] for s in secrets} >= {"postgres", "minio", "tracectl-controller"}
    for secret in secrets:
        assert "tracectl.io/replace" in secret["metadata"].get("annotations", {}), ident(secret)
        values = " ".join(secret.get("stringData", {}).values())
        assert "REPLACE" in values, ident(secret)
        assert not secret.get("data"), f"{ident(secret)}: placeholders go in stringData"


def test_placeholders_agree_across_secrets(objects: list[dict[str, Any]]) -> None:
    """One password, one placeholder: replacing it everywhere it appears keeps the stack whole."""

    def secret(name: str) -> dict[str, str]:
        return dict(find(objects, "Secret", name)["stringData"])

    postgres, controller = secret("postgres"), secret("tracectl-controller")
    mlflow = secret("mlflow")
    elastic, kibana, logstash, minio = (
        secret("elasticsearch"),
        secret("kibana"),
        secret("logstash"),
        secret("minio"),
    )
    store = urlsplit(controller["TRACECTL_DATABASE_URL"])
    assert (store.username, store.password, store.path) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        "/" + postgres["POSTGRES_DB"],
    )
    backend = urlsplit(mlflow["MLFLOW_BACKEND_STORE_URI"])
    init = find(objects, "ConfigMap", "postgres-init")["data"]["init-mlflow.sh"]
    assert backend.password == postgres["MLFLOW_PASSWORD"]
    assert f"CREATE ROLE {backend.username} " in init and f"DATABASE {backend.path[1:]} " in init
    assert kibana["ELASTICSEARCH_PASSWORD"] == elastic["KIBANA_SYSTEM_PASSWORD"]
    setup = find(objects, "ConfigMap", "elasticsearch-setup")["data"]["setup.sh"]
    assert logstash["ES_PASSWORD"] == elastic["TRACECTL_WRITER_PASSWORD"]
    assert f"_security/user/{logstash['ES_USER']}" in setup
    reader = urlsplit(controller["TRACECTL_LOG_READER"])
    assert reader.password == elastic["TRACECTL_READER_PASSWORD"]
    assert f"_security/user/{reader.username}" in setup
    users = find(objects, "ConfigMap", "minio-setup")["data"]["setup.sh"]
    assert controller["AWS_SECRET_ACCESS_KEY"] == minio["TRACECTL_SECRET_KEY"]
    runtime = secret("tracectl-runtime")
    assert runtime["AWS_SECRET_ACCESS_KEY"] == minio["TRACECTL_SECRET_KEY"]
    assert runtime["AWS_ACCESS_KEY_ID"] == controller["AWS_ACCESS_KEY_ID"]
    assert (
        runtime["TRACECTL_S3_ENDPOINT"]
        == find(objects, "ConfigMap", "tracectl-controller")["data"]["TRACECTL_S3_ENDPOINT"]
    )
    assert mlflow["AWS_SECRET_ACCESS_KEY"] == minio["MLFLOW_SECRET_KEY"]
    for key_id, variable in (
        (controller["AWS_ACCESS_KEY_ID"], "TRACECTL_SECRET_KEY"),
        (mlflow["AWS_ACCESS_KEY_ID"], "MLFLOW_SECRET_KEY"),
    ):
        assert f'mc admin user add local {key_id} "${variable}"' in users


# -- the controller ----------------------------------------------------------------------------
def controller_env(objects: list[dict[str, Any]]) -> dict[str, str]:
    deployment = find(objects, "Deployment", "tracectl-controller")
    [container] = containers(deployment)
    env: dict[str, str] = {}
    for source in container["envFrom"]:
        if "configMapRef" in source:
            env.update(find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            env.update(find(objects, "Secret", source["secretRef"]["name"])["stringData"])
    env.update({e["name"]: e.get("value", "") for e in container.get("env") or []})
    return env


def env_names(model: type[BaseSettings]) -> set[str]:
    """The variables MODEL reads: TRACECTL_<FIELD>, or the names a field lists instead."""
    prefix = model.model_config.get("env_prefix", "")
    names = set()
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else []
        names |= {c for c in choices if isinstance(c, str) and c.isupper()} or {
            f"{prefix}{name}".upper()
        }
    return names


def test_controller_gets_every_setting_from_configmap_and_secret(
    objects: list[dict[str, Any]],
) -> None:
    env = controller_env(objects)
    assert {
        "TRACECTL_DATABASE_URL",
        "TRACECTL_EXECUTOR",
        "TRACECTL_LOG_SINK",
        "TRACECTL_LOG_READER",
        "TRACECTL_ARCHIVE",
        "TRACECTL_S3_ENDPOINT",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "TRACECTL_STATUS_EVENTS",
        "MLFLOW_TRACKING_URI",
        "TRACECTL_INVENTORY_FILE",
        "TRACECTL_AUTH",
        "TRACECTL_HOME",
        "TRACECTL_K8S_NAMESPACE",
        "TRACECTL_K8S_IMAGE",
        "TRACECTL_GIT_ALLOWED_HOSTS",
    } <= set(env)
    # Every TRACECTL_* name is one the controller reads: a typo would be silently ignored.
    read = env_names(Settings) | env_names(ClusterConfig) | {"TRACECTL_S3_ENDPOINT"}
    for name in env:
        if name.startswith("TRACECTL_"):
            assert name in read, name
    settings = Settings.from_env(
        **{
            k.removeprefix("TRACECTL_").lower(): v
            for k, v in env.items()
            if k.startswith("TRACECTL_") and "K8S" not in k and k != "TRACECTL_S3_ENDPOINT"
        }
    )
    assert settings.executor == "kubernetes" and settings.auth == "tokens"
    assert settings.store_url.startswith("postgresql+psycopg://")
    assert settings.log_reader and settings.log_reader.startswith("opensearch://")
    # The values name Services of this base (full names: task pods live in tracectl-tasks).
    services = {s["metadata"]["name"] for s in by_kind(objects, "Service")}
    for key in (
        "TRACECTL_LOG_SINK",
        "TRACECTL_STATUS_EVENTS",
        "TRACECTL_S3_ENDPOINT",
        "MLFLOW_TRACKING_URI",
        "TRACECTL_DATABASE_URL",
        "TRACECTL_LOG_READER",
    ):
        host = re.search(r"[@/]([a-z0-9-]+)\.tracectl\.svc:\d+", env[key])
        assert host and host.group(1) in services, f"{key}={env[key]}"
    # The inventory file is where the ConfigMap is mounted.
    mounts = {
        m["name"]: m["mountPath"]
        for m in containers(find(objects, "Deployment", "tracectl-controller"))[0]["volumeMounts"]
    }
    assert env["TRACECTL_INVENTORY_FILE"].startswith(mounts["inventory"] + "/")
    assert env["TRACECTL_HOME"] == mounts["home"]
    inventory = yaml.safe_load(
        find(objects, "ConfigMap", "tracectl-inventory")["data"][
            Path(env["TRACECTL_INVENTORY_FILE"]).name
        ]
    )
    assert {"gpu_pools", "volumes", "quotas"} <= set(inventory)
    assert env["TRACECTL_K8S_NAMESPACE"] in NAMESPACES
    runtime = find(objects, "Secret", env["TRACECTL_K8S_RUNTIME_SECRET"])
    assert runtime["metadata"]["namespace"] == env["TRACECTL_K8S_NAMESPACE"]  # the pods' own


def test_controller_deployment_serves_8765_with_health_probes(
    objects: list[dict[str, Any]],
) -> None:
    deployment = find(objects, "Deployment", "tracectl-controller")
    assert deployment["spec"]["replicas"] == 2  # one leads the loops, both serve the API
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pod_spec(deployment)["serviceAccountName"] == "tracectl-controller"
    find(objects, "ServiceAccount", "tracectl-controller")
    [container] = containers(deployment)
    assert container["args"] == ["server", "--host", "0.0.0.0", "--port", "8765"]
    assert container["ports"] == [{"name": "http", "containerPort": 8765}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    claim = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == "home")
    home = find(objects, "PersistentVolumeClaim", claim["persistentVolumeClaim"]["claimName"])
    assert home["spec"]["accessModes"] == ["ReadWriteMany"]  # shared by the replicas
    service = find(objects, "Service", "tracectl-controller")
    assert [p["port"] for p in service["spec"]["ports"]] == [8765]


def test_controller_replicas_elect_a_leader_and_one_always_stays(
    objects: list[dict[str, Any]],
) -> None:
    deployment = find(objects, "Deployment", "tracectl-controller")
    env = find(objects, "ConfigMap", "tracectl-controller")["data"]
    assert env["TRACECTL_LEADER_ELECTION"] == "kubernetes"
    [container] = containers(deployment)
    replica = next(e for e in container["env"] if e["name"] == "TRACECTL_REPLICA")
    assert replica["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    budget = find(objects, "PodDisruptionBudget", "tracectl-controller")
    assert budget["spec"]["minAvailable"] == 1
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_mlflow_proxies_artifacts_to_s3(objects: list[dict[str, Any]]) -> None:
    [container] = containers(find(objects, "Deployment", "mlflow"))
    args = container["args"]
    assert args[args.index("--artifacts-destination") + 1] == "s3://mlflow-artifacts/"
    assert "mlflow-artifacts" in find(objects, "ConfigMap", "minio-setup")["data"]["setup.sh"]


# -- RBAC ------------------------------------------------------------------------------------
def test_rbac_is_least_privilege(objects: list[dict[str, Any]]) -> None:
    assert not by_kind(objects, "ClusterRole", "ClusterRoleBinding")
    roles = {
        (r["metadata"]["namespace"], r["metadata"]["name"]): r for r in by_kind(objects, "Role")
    }
    granted: dict[tuple[str, str], set[str]] = {}
    for role in roles.values():
        for rule in role["rules"]:
            for field in ("verbs", "resources", "apiGroups"):
                assert "*" not in rule.get(field, []), f"{ident(role)}: {field} *"
            assert not rule.get("nonResourceURLs"), ident(role)
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), ident(role)
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.setdefault((group, resource), set()).update(rule["verbs"])
    for binding in by_kind(objects, "RoleBinding"):
        ref = binding["roleRef"]
        assert ref["name"] not in BUILTIN_ADMIN_ROLES, ident(binding)
        assert ref["kind"] == "Role"
        assert (binding["metadata"]["namespace"], ref["name"]) in roles, ident(binding)
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "tracectl-controller", "namespace": "tracectl"}
        ]
    # What the executor needs, and no more (secrets: never list/watch, pods: never write).
    assert granted[("batch", "jobs")] == {"create", "get", "list", "watch", "delete"}
    assert granted[("", "pods")] == {"get", "list", "watch"}
    assert granted[("", "pods/log")] == {"get"}
    assert granted[("", "secrets")] == {"create", "get", "delete"}
    assert granted[("", "configmaps")] == {"create", "get", "delete"}
    assert granted[("apps", "deployments")] <= {"create", "get", "list", "watch", "delete"}
    assert granted[("", "services")] == {"create", "get", "delete"}
    assert granted[("", "events")] == {"get", "list", "watch"}
    assert granted[("", "persistentvolumeclaims")] == {"get", "list"}
    assert granted[("coordination.k8s.io", "leases")] == {"create", "get", "update"}
    # In its own namespace (databases, passwords) the controller may touch its Lease only.
    own = [rule for (ns, _), role in roles.items() if ns == "tracectl" for rule in role["rules"]]
    assert own and all(rule["resources"] == ["leases"] for rule in own)


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        if not rule.get("resourceNames")
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_task_role_covers_the_executor_reference_rbac(objects: list[dict[str, Any]]) -> None:
    """base/controller/rbac.yaml is a copy of deploy/k8s/rbac.yaml's task rules (kustomize
    cannot load a file above the base): everything the executor's reference grants, the base
    grants too."""
    reference = [d for d in yaml.safe_load_all((K8S / "rbac.yaml").read_text()) if d]
    [runner] = [
        d
        for d in reference
        if d["kind"] in ("Role", "ClusterRole") and d["metadata"]["name"] == "tracectl-task-runner"
    ]
    ours = find(objects, "Role", "tracectl-task-runner")
    missing = grants(runner["rules"]) - grants(ours["rules"])
    assert not missing, f"base/controller/rbac.yaml lacks {sorted(missing)} of deploy/k8s/rbac.yaml"


# -- logstash pipeline, airflow values, docs, Dockerfile --------------------------------------
def test_logstash_configmap_equals_the_pipeline_file(objects: list[dict[str, Any]]) -> None:
    configmap = find(objects, "ConfigMap", "logstash-pipeline")
    assert configmap["data"] == {"tracectl.conf": PIPELINE.read_text()}, (
        "deploy/k8s/base/logstash.yaml is out of date: copy logstash/pipeline/tracectl.conf "
        "into ConfigMap logstash-pipeline (docs/deploy-k8s.md)"
    )
    [container] = containers(find(objects, "Deployment", "logstash"))
    mount = next(m for m in container["volumeMounts"] if m["name"] == "pipeline")
    assert mount["mountPath"] == "/usr/share/logstash/pipeline"
    env = {e["name"] for e in container["env"]} | set(
        find(objects, "Secret", "logstash")["stringData"]
    )
    for variable in re.findall(r"\$\{([A-Z_]+)", PIPELINE.read_text()):
        assert variable in env, f"the pipeline reads ${{{variable}}}: not set"


def test_airflow_values_have_the_promised_keys() -> None:
    values = yaml.safe_load((BASE / "airflow-values.yaml").read_text())
    assert values["executor"] in {
        "KubernetesExecutor",
        "CeleryExecutor",
        "LocalExecutor",
        "CeleryKubernetesExecutor",
    }
    git = values["dags"]["gitSync"]
    assert git["enabled"] is True and git["repo"].startswith(("https://", "ssh://", "git@"))
    assert git["branch"] and git["subPath"] == "dags" and git["credentialsSecret"]
    [conn] = [s for s in values["secret"] if s["envName"] == "AIRFLOW_CONN_TRACECTL_DEFAULT"]
    assert conn["secretName"] and conn["secretKey"]
    image = values["images"]["airflow"]
    assert image["repository"] and image["tag"] and image["tag"] != "latest"
    assert values["triggerer"]["enabled"] is True  # the operator defers to a trigger
    assert values["postgresql"]["enabled"] is False and values["data"]["metadataSecretName"]
    dockerfile = (K8S / "Dockerfile").read_text()
    assert re.search(r"^FROM \S+ AS airflow$", dockerfile, re.M)
    assert f"{image['repository'].rsplit('/', 1)[1]}:{image['tag']}" in dockerfile


def test_dockerfile_builds_every_image_the_manifests_name(objects: list[dict[str, Any]]) -> None:
    dockerfile = (K8S / "Dockerfile").read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.M))
    assert {"controller", "runtime", "mlflow", "airflow"} <= targets
    ours = {
        c["image"]
        for o in by_kind(objects, *WORKLOADS)
        for c in containers(o)
        if c["image"].startswith("ghcr.io/tracectl/")
    }
    ours.add(controller_env(objects)["TRACECTL_K8S_IMAGE"])
    for image in ours:
        name = image.removeprefix("ghcr.io/tracectl/")
        assert name.split(":")[0] in targets and name in dockerfile, image


def test_docs_cover_install_replacements_and_the_image_build() -> None:
    docs = (REPO / "docs" / "deploy-k8s.md").read_text()
    for phrase in (
        "kubectl apply -k deploy/k8s/base",
        "REPLACE",
        "storageClassName",
        "deploy/k8s/Dockerfile",
        "airflow-values.yaml",
        "TRACECTL_HOME",
        "tracectl token create",
        "dryRun=All",
        "deploy/k8s/rbac.yaml",
    ):
        assert phrase in docs, phrase


# -- the real API server -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(kubernetes: dict[str, str]) -> Iterator[tuple[Any, dict[str, str]]]:
    """A DynamicClient, and the throw-away namespace names standing in for the base's."""
    from kubernetes import config, dynamic

    api = dynamic.DynamicClient(config.new_client_from_config(config_file=kubernetes["KUBECONFIG"]))
    suffix = uuid.uuid4().hex[:6]
    mapping = {"tracectl": f"tct-deploy-{suffix}", "tracectl-tasks": f"tct-deploy-{suffix}-tasks"}
    namespaces = api.resources.get(api_version="v1", kind="Namespace")
    try:
        yield api, mapping
    finally:
        for name in mapping.values():
            with contextlib.suppress(Exception):  # never created, or already going
                namespaces.delete(name=name)


def wait_for_default_account(api: Any, namespace: str, timeout: float = 60) -> None:
    """Pods are admitted only once the serviceaccount controller made `default`."""
    accounts = api.resources.get(api_version="v1", kind="ServiceAccount")
    wait_for(
        f"the default service account in {namespace}",
        lambda: accounts.get(namespace=namespace, field_selector="metadata.name=default").items,
        timeout=timeout,
    )


def dry_run(api: Any, obj: dict[str, Any]) -> dict[str, Any]:
    resource = api.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    namespace = obj["metadata"].get("namespace") if resource.namespaced else None
    result = resource.create(
        body=obj, namespace=namespace, dry_run="All", query_params=[("fieldValidation", "Strict")]
    )
    return dict(result.to_dict())


def pod_of(workload: dict[str, Any]) -> dict[str, Any]:
    """The Pod a controller would make from WORKLOAD's template (StatefulSet claims included)."""
    template = workload["spec"]["template"]
    spec = dict(template["spec"])
    claims = workload["spec"].get("volumeClaimTemplates") or []
    spec["volumes"] = list(spec.get("volumes") or []) + [
        {
            "name": c["metadata"]["name"],
            "persistentVolumeClaim": {
                "claimName": f"{c['metadata']['name']}-{workload['metadata']['name']}-0"
            },
        }
        for c in claims
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{workload['metadata']['name']}-dry-run",
            "namespace": workload["metadata"]["namespace"],
            "labels": template["metadata"].get("labels", {}),
        },
        "spec": spec,
    }


@pytest.mark.kubernetes
def test_api_server_accepts_every_object_of_the_base(
    cluster: tuple[Any, dict[str, str]], objects: list[dict[str, Any]]
) -> None:
    api, mapping = cluster
    renamed = rename_namespaces(objects, mapping)
    namespaces = by_kind(renamed, "Namespace")
    for namespace in namespaces:  # for real: namespaced dry-runs need them; PSA reads labels
        api.resources.get(api_version="v1", kind="Namespace").create(body=namespace)
    account = find(renamed, "ServiceAccount", "tracectl-controller")
    api.resources.get(api_version="v1", kind="ServiceAccount").create(
        body=account, namespace=account["metadata"]["namespace"]
    )

    accepted: dict[str, dict[str, Any]] = {}
    for obj in renamed:
        if obj["kind"] == "Namespace" or obj is account:
            continue
        result = dry_run(api, obj)
        assert result["kind"] == obj["kind"]
        assert result["metadata"]["name"] == obj["metadata"]["name"]
        assert result["metadata"]["namespace"] == obj["metadata"]["namespace"]
        assert result["metadata"].get("uid"), f"{ident(obj)}: not accepted"
        accepted[ident(obj)] = result
    assert len(accepted) == len(renamed) - len(namespaces) - 1

    # Nothing was stored: a dry run.
    services = api.resources.get(api_version="v1", kind="Service")
    assert not services.get(namespace=mapping["tracectl"]).items

    # The server's defaulting came back (so these are the API's objects, not our echo).
    deployment = accepted["Deployment/tracectl-controller"]
    assert deployment["spec"]["revisionHistoryLimit"] == 10
    assert deployment["spec"]["progressDeadlineSeconds"] == 600
    pod = deployment["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Always" and pod["dnsPolicy"] == "ClusterFirst"
    assert pod["schedulerName"] == "default-scheduler"
    [container] = pod["containers"]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["readinessProbe"]["timeoutSeconds"] == 1
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTP"
    statefulset = accepted["StatefulSet/postgres"]
    assert statefulset["spec"]["podManagementPolicy"] == "OrderedReady"
    assert statefulset["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    claim = statefulset["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["volumeMode"] == "Filesystem"
    job = accepted["Job/elasticsearch-setup"]
    assert job["spec"]["completions"] == 1 and job["spec"]["parallelism"] == 1


@pytest.mark.kubernetes
def test_every_pod_template_passes_pod_security_restricted(
    cluster: tuple[Any, dict[str, str]], objects: list[dict[str, Any]]
) -> None:
    """Pod Security admission judges Pods, not Deployments: dry-run each template as a Pod."""
    api, mapping = cluster
    renamed = rename_namespaces(objects, mapping)
    namespaces = api.resources.get(api_version="v1", kind="Namespace")
    for namespace in by_kind(renamed, "Namespace"):
        if not namespaces.get(
            field_selector=f"metadata.name={namespace['metadata']['name']}"
        ).items:
            namespaces.create(body=namespace)
    for name in mapping.values():
        wait_for_default_account(api, name)
    live = namespaces.get(name=mapping["tracectl"]).to_dict()
    assert live["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    accounts = api.resources.get(api_version="v1", kind="ServiceAccount")
    account = find(renamed, "ServiceAccount", "tracectl-controller")
    if not accounts.get(
        namespace=mapping["tracectl"], field_selector="metadata.name=tracectl-controller"
    ).items:
        accounts.create(body=account, namespace=mapping["tracectl"])

    from kubernetes.client.exceptions import ApiException

    # Control: the namespace really enforces "restricted" (a root pod is refused).
    bad = pod_of(find(renamed, "Deployment", "tracectl-controller"))
    bad["spec"] = {
        **bad["spec"],
        "securityContext": {},
        "containers": [{**bad["spec"]["containers"][0], "securityContext": {}}],
    }
    with pytest.raises(ApiException) as refused:
        dry_run(api, bad)
    assert refused.value.status == 403 and "restricted" in str(refused.value.body)

    for workload in by_kind(renamed, *WORKLOADS):
        result = dry_run(api, pod_of(workload))
        assert result["metadata"].get("uid"), ident(workload)
        assert result["spec"]["securityContext"]["runAsNonRoot"] is True
