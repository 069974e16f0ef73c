"""Every Kubernetes object tracectl creates for a task attempt, built in this one module.

Typed builders over the official client's models: a misspelt field is a TypeError here, not
a silently dropped key on the server. The executor never edits a manifest after this.

Layout of a job attempt (mode `job`):

    Job tracectl-<task>-<attempt>
      init container `prepare`  runtime image: checkout at commit, DVC pull, inputs -> /workspace
                                (none when the task runs in the runtime image: `phases all`)
      container `task`          spec.image (or TRACECTL_K8S_IMAGE), args = the task's argv,
                                run by `controller.runtime.phases exec` in /workspace/src
      volumes                   emptyDir /workspace, Secret launch document, PVCs
    Secret tracectl-<task>-<attempt>  launch.json + one key per secret or late env value
                                (MLFLOW_RUN_ID); owned by the Job, created after it
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from kubernetes import client

from controller.config import ClusterConfig
from controller.domain.launch import LaunchDocument
from controller.domain.spec import TaskSpec, port_of

SERVICE_PORT = 8080
WORKSPACE = "/workspace"
LAUNCH_DIR = "/etc/tracectl"
LAUNCH_KEY = "launch.json"
LAUNCH_PATH = f"{LAUNCH_DIR}/{LAUNCH_KEY}"
GPU_RESOURCE = "nvidia.com/gpu"
PHASES = ["python", "-m", "controller.runtime.phases"]
ANNOTATIONS_ENV = "TRACECTL_K8S_POD_ANNOTATIONS"

NAME_LABEL = "app.kubernetes.io/name"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
COMPONENT_LABEL = "app.kubernetes.io/component"
RUN_LABEL = "tracectl.io/run-id"
TASK_LABEL = "tracectl.io/task-id"
ATTEMPT_LABEL = "tracectl.io/attempt"
TEAM_LABEL = "tracectl.io/team"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}=tracectl"

_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]")
_DNS = re.compile(r"[^a-z0-9-]")


def namespace_for(config: ClusterConfig, team: str) -> str:
    """The namespace of TEAM's tasks."""
    if team in config.team_namespaces:
        return config.team_namespaces[team]
    if config.namespace_per_team and team:
        return dns_name(f"tracectl-{team}")
    return config.namespace


def dns_name(value: str, limit: int = 63) -> str:
    """A DNS-1123 label: what Job, Secret and Service names must be."""
    name = _DNS.sub("-", value.lower()).strip("-")
    return name[:limit].rstrip("-") or "x"


def label_value(value: str) -> str:
    return _LABEL_VALUE.sub("_", value)[:63].strip("_.-")


def object_name(task_id: str, attempt: int) -> str:
    """Deterministic per attempt, so a repeated launch finds its own Job (409 -> adopt)."""
    suffix = task_id.split("_", 1)[-1]
    return dns_name(f"tracectl-{suffix}", 55) + f"-{attempt}"


def labels_of(launch: LaunchDocument, config: ClusterConfig, component: str) -> dict[str, str]:
    labels = {
        NAME_LABEL: "tracectl-task",
        MANAGED_BY_LABEL: "tracectl",
        COMPONENT_LABEL: component,
        RUN_LABEL: label_value(launch.run_id),
        TASK_LABEL: label_value(launch.task_id),
        ATTEMPT_LABEL: str(launch.attempt),
    }
    team = launch.labels.team
    if team:
        labels[TEAM_LABEL] = label_value(team)
    if config.queue and component == "job":
        labels[QUEUE_LABEL] = config.queue
    return labels


def selector_of(task_id: str, attempt: int | None = None) -> str:
    selector = f"{MANAGED_SELECTOR},{TASK_LABEL}={label_value(task_id)}"
    return selector if attempt is None else f"{selector},{ATTEMPT_LABEL}={attempt}"


# -- pieces ---------------------------------------------------------------------------------
def _container_env(
    launch: LaunchDocument, secret_name: str, defaults: Mapping[str, str]
) -> list[client.V1EnvVar]:
    """Plain values inline; secret values, and the late ones only known once the launch is
    complete (its tracking run), as secretKeyRef: the Job spec never holds them. DEFAULTS
    are given unless the spec or the controller sets them (a service's PORT)."""
    secret_keys = {*launch.spec.secret_env, *launch.late_env}
    env: list[client.V1EnvVar] = []
    merged = {**defaults, **launch.spec.env, **launch.env}  # the controller's variables win
    for key in sorted(merged):
        if key == ANNOTATIONS_ENV:
            continue
        if key in secret_keys:
            ref = client.V1SecretKeySelector(name=secret_name, key=key)
            env.append(
                client.V1EnvVar(name=key, value_from=client.V1EnvVarSource(secret_key_ref=ref))
            )
        else:
            env.append(client.V1EnvVar(name=key, value=str(merged[key])))
    env.append(client.V1EnvVar(name="TRACECTL_WORKSPACE", value=WORKSPACE))
    return env


def _resources(spec: TaskSpec) -> client.V1ResourceRequirements:
    res = spec.resources.model_dump()
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if res.get("cpu"):
        requests["cpu"] = limits["cpu"] = f"{round(float(res['cpu']) * 1000)}m"
    if res.get("memory"):
        requests["memory"] = limits["memory"] = str(res["memory"])
    if res.get("gpu"):
        # Extended resources cannot be overcommitted: requests must equal limits.
        requests[gpu_resource(res)] = limits[gpu_resource(res)] = str(int(res["gpu"]))
    return client.V1ResourceRequirements(requests=requests or None, limits=limits or None)


def gpu_resource(resources: Mapping[str, Any]) -> str:
    """The extended resource to ask for: the flavor when it names one (`nvidia.com/a100`)."""
    flavor = resources.get("gpu_flavor")
    return str(flavor) if flavor and "/" in str(flavor) else GPU_RESOURCE


def _placement(
    spec: TaskSpec, config: ClusterConfig
) -> tuple[dict[str, str] | None, list[client.V1Toleration] | None]:
    selector = dict(config.node_selector)
    tolerations = [client.V1Toleration(key=key, operator="Exists") for key in config.tolerate]
    res = spec.resources.model_dump()
    if not res.get("gpu"):
        return selector or None, tolerations or None
    selector["nvidia.com/gpu.present"] = "true"
    flavor = res.get("gpu_flavor")
    if flavor and "/" not in str(flavor):
        selector["nvidia.com/gpu.product"] = str(flavor)  # a product name, e.g. A100-SXM4-80GB
    toleration = client.V1Toleration(key=gpu_resource(res), operator="Exists", effect="NoSchedule")
    return selector, [*tolerations, toleration]


def _volumes(
    spec: TaskSpec, secret_name: str
) -> tuple[list[client.V1Volume], list[client.V1VolumeMount]]:
    volumes = [
        client.V1Volume(name="workspace", empty_dir=client.V1EmptyDirVolumeSource()),
        client.V1Volume(
            name="launch",
            secret=client.V1SecretVolumeSource(
                secret_name=secret_name,
                items=[client.V1KeyToPath(key=LAUNCH_KEY, path=LAUNCH_KEY)],
                default_mode=0o400,
            ),
        ),
    ]
    mounts = [
        client.V1VolumeMount(name="workspace", mount_path=WORKSPACE),
        client.V1VolumeMount(name="launch", mount_path=LAUNCH_DIR, read_only=True),
    ]
    for i, vol in enumerate(spec.resources.volumes):
        read_only = vol.mode == "ro"
        name = f"claim-{i}"
        volumes.append(
            client.V1Volume(
                name=name,
                persistent_volume_claim=(
                    client.V1PersistentVolumeClaimVolumeSource(
                        claim_name=vol.claim, read_only=read_only
                    )
                ),
            )
        )
        mounts.append(
            client.V1VolumeMount(name=name, mount_path=vol.mount_path, read_only=read_only)
        )
    return volumes, mounts


def _runtime_secret(config: ClusterConfig) -> list[client.V1EnvFromSource] | None:
    """The runtime's S3 endpoint and keys (RUNTIME_ENV), from a Secret an administrator made in
    the namespace (TRACECTL_K8S_RUNTIME_SECRET): the controller never copies its own keys into
    the cluster; `phases exec` takes them away from the task's command."""
    if not config.runtime_secret:
        return None
    return [client.V1EnvFromSource(secret_ref=client.V1SecretEnvSource(name=config.runtime_secret))]


def prepares_inline(config: ClusterConfig, image: str | None) -> bool:
    """Whether the task container prepares its own workspace (`phases all`): always when
    TRACECTL_K8S_PREPARE=inline, never when `init`; by default when the task runs in the
    runtime image, which has the runtime, so the pod starts one container and Python once."""
    if config.prepare == "auto":
        return image == config.image
    return config.prepare == "inline"


def _pod_spec(
    launch: LaunchDocument,
    config: ClusterConfig,
    secret_name: str,
    restart_policy: str,
    service_port: int | None = None,
) -> client.V1PodSpec:
    spec = launch.spec
    volumes, mounts = _volumes(spec, secret_name)
    # A service listens on env PORT, as under the local executor (the spec's own PORT wins).
    defaults = {} if service_port is None else {"PORT": str(service_port)}
    env = _container_env(launch, secret_name, defaults)
    node_selector, tolerations = _placement(spec, config)
    env_from = _runtime_secret(config)
    prepare = client.V1Container(
        name="prepare",
        image=config.image,
        command=[*PHASES, "prepare", LAUNCH_PATH, WORKSPACE],
        env=env,
        env_from=env_from,
        volume_mounts=mounts[:2],
    )
    image = spec.image or (spec.environment and spec.environment.image) or config.image
    inline = prepares_inline(config, image)
    task = client.V1Container(
        name="task",
        image=image,
        command=[*PHASES, "all" if inline else "exec", LAUNCH_PATH, WORKSPACE, "--"],
        args=list(spec.command),
        # Inline, `src` does not exist yet: runc would make it, owned by root, and the task
        # (user 10001) could not write in it; `phases` runs the command in `src` either way.
        working_dir=WORKSPACE if inline else f"{WORKSPACE}/src",
        env=env,
        env_from=env_from,
        volume_mounts=mounts,
        resources=_resources(spec),
        termination_message_policy="File",  # the exec phase writes its result there
    )
    if service_port is not None:
        task.ports = [client.V1ContainerPort(name="http", container_port=service_port)]
        task.readiness_probe = client.V1Probe(
            tcp_socket=client.V1TCPSocketAction(port="http"), period_seconds=5
        )
    grace = launch.runtime.cancel_grace_s
    return client.V1PodSpec(
        restart_policy=restart_policy,
        init_containers=None if inline else [prepare],
        containers=[task],
        # cancel deletes the Job: the kubelet sends SIGTERM, then SIGKILL after this grace
        termination_grace_period_seconds=max(1, round(grace)) if grace else None,
        volumes=volumes,
        node_selector=node_selector,
        tolerations=tolerations,
        host_network=config.host_network or None,
        security_context=client.V1PodSecurityContext(fs_group=config.fs_group)
        if config.fs_group is not None
        else None,
        automount_service_account_token=False,
        enable_service_links=False,  # task env stays what the spec says
    )


def to_json(obj: Any) -> bytes:
    """The request body of a manifest: what the client's sanitize_for_serialization makes
    (API field names, no unset fields), serialized by pydantic in one pass."""
    body: bytes = obj.model_dump_json(by_alias=True, exclude_none=True).encode()
    return body


def owner_reference(kind: str, api_version: str, name: str, uid: str) -> client.V1OwnerReference:
    return client.V1OwnerReference(
        api_version=api_version,
        kind=kind,
        name=name,
        uid=uid,
        controller=True,
        block_owner_deletion=True,
    )


# -- objects --------------------------------------------------------------------------------
def launch_secret(
    launch: LaunchDocument,
    config: ClusterConfig,
    name: str,
    owner: client.V1OwnerReference | None = None,
) -> client.V1Secret:
    """The launch document (it may carry secret env values), each secret value by key, and
    each late value (from the completed launch's env)."""
    env = launch.spec.env
    data = {key: env[key] for key in launch.spec.secret_env if key in env}
    data.update({key: launch.env.get(key, "") for key in launch.late_env})
    data[LAUNCH_KEY] = launch.as_json()
    return client.V1Secret(
        metadata=client.V1ObjectMeta(
            name=name,
            labels=labels_of(launch, config, "launch"),
            owner_references=[owner] if owner else None,
        ),
        type="Opaque",
        string_data=data,
        immutable=True,
    )


def job(launch: LaunchDocument, config: ClusterConfig, name: str) -> client.V1Job:
    labels = labels_of(launch, config, "job")
    pod_labels = {k: v for k, v in labels.items() if k != QUEUE_LABEL}
    timeout = launch.spec.timeout_s
    return client.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=client.V1ObjectMeta(
            name=name, labels=labels, annotations={"tracectl.io/task-name": launch.task_name}
        ),
        spec=client.V1JobSpec(
            backoff_limit=0,  # tracectl retries, with leases re-granted per attempt
            active_deadline_seconds=int(timeout) if timeout else None,
            ttl_seconds_after_finished=config.ttl_after_finished_s,
            # With Kueue the Job starts suspended and Kueue unsuspends it on admission.
            suspend=True if config.queue else None,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(
                    labels=pod_labels, annotations=pod_annotations(launch)
                ),
                spec=_pod_spec(launch, config, name, "Never"),
            ),
        ),
    )


def pod_annotations(launch: LaunchDocument) -> dict[str, str] | None:
    """Annotations a task asks for on its pod, through env TRACECTL_K8S_POD_ANNOTATIONS (JSON).

    Tests use it to tell KWOK how a simulated container ends (`tracectl.io/exit-code`).
    """
    raw = launch.env.get(ANNOTATIONS_ENV)
    if not raw:
        return None
    parsed = json.loads(raw)
    return {str(k): str(v) for k, v in parsed.items()}


def service_port(launch: LaunchDocument) -> int:
    return port_of(launch.spec.env) or SERVICE_PORT


def deployment(launch: LaunchDocument, config: ClusterConfig, name: str) -> client.V1Deployment:
    labels = labels_of(launch, config, "service")
    selector = {
        TASK_LABEL: labels[TASK_LABEL],
        ATTEMPT_LABEL: labels[ATTEMPT_LABEL],
        MANAGED_BY_LABEL: "tracectl",
    }
    return client.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=selector),
            progress_deadline_seconds=int(launch.spec.timeout_s or 600),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels, annotations=pod_annotations(launch)),
                spec=_pod_spec(launch, config, name, "Always", service_port(launch)),
            ),
        ),
    )


def service(
    launch: LaunchDocument,
    config: ClusterConfig,
    name: str,
    owner: client.V1OwnerReference | None = None,
) -> client.V1Service:
    labels = labels_of(launch, config, "service")
    selector = {
        TASK_LABEL: labels[TASK_LABEL],
        ATTEMPT_LABEL: labels[ATTEMPT_LABEL],
        MANAGED_BY_LABEL: "tracectl",
    }
    return client.V1Service(
        api_version="v1",
        kind="Service",
        metadata=client.V1ObjectMeta(
            name=name, labels=labels, owner_references=[owner] if owner else None
        ),
        spec=client.V1ServiceSpec(
            selector=selector,
            ports=[client.V1ServicePort(name="http", port=80, target_port="http")],
        ),
    )


def ingress(
    launch: LaunchDocument,
    config: ClusterConfig,
    name: str,
    path: str,
    owner: client.V1OwnerReference | None = None,
) -> client.V1Ingress:
    backend = client.V1IngressBackend(
        service=client.V1IngressServiceBackend(
            name=name, port=client.V1ServiceBackendPort(number=80)
        )
    )
    return client.V1Ingress(
        api_version="networking.k8s.io/v1",
        kind="Ingress",
        metadata=client.V1ObjectMeta(
            name=name,
            labels=labels_of(launch, config, "service"),
            owner_references=[owner] if owner else None,
        ),
        spec=client.V1IngressSpec(
            rules=[
                client.V1IngressRule(
                    http=client.V1HTTPIngressRuleValue(
                        paths=[
                            client.V1HTTPIngressPath(path=path, path_type="Prefix", backend=backend)
                        ]
                    )
                )
            ]
        ),
    )


def service_url(name: str, namespace: str) -> str:
    return f"http://{name}.{namespace}.svc:80"


def namespace(name: str) -> client.V1Namespace:
    return client.V1Namespace(
        metadata=client.V1ObjectMeta(name=name, labels={MANAGED_BY_LABEL: "tracectl"})
    )
