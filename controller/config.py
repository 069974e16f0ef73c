"""Controller settings, read from TRACECTL_* environment variables (pydantic-settings).

With nothing set, everything lives under ./.tracectl: SQLite store, local executor, file
logs, local artifact archive, and an MLflow SQLite tracking store.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from controller.domain.launch import RUNTIME_ENV, RuntimeSettings, task_environ

__all__ = ["RUNTIME_ENV", "ClusterConfig", "Settings", "runner_environ", "task_environ"]


# The runtime image is named by digest, as `tracectl image build` prints it: no tag default.
PINNED_IMAGE = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
RUNTIME_UID = 10001  # the runtime image's user (deploy/k8s/Dockerfile, tracectl image build)


def _env(*names: str) -> Any:
    """A field read from the first of NAMES set (its own name is accepted by the
    constructor): for the variables that do not follow the TRACECTL_<FIELD> rule."""
    return AliasChoices(*names)


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


class ClusterConfig(BaseSettings):
    """The Kubernetes executor's settings, TRACECTL_K8S_* (and KUBECONFIG):

    TRACECTL_K8S_NAMESPACE   namespace when a team has no mapping (default `tracectl`)
    TRACECTL_K8S_NAMESPACES  team -> namespace, `research=ml-research,platform=ops`; a team
                             not listed gets `tracectl-<team>` when TRACECTL_K8S_TEAM_NAMESPACES=1
    TRACECTL_K8S_IMAGE       runtime image, `name@sha256:...` as `tracectl image build` prints
                             it: the `prepare` init container, and tasks with no image
    TRACECTL_K8S_QUEUE       Kueue LocalQueue name: sets `kueue.x-k8s.io/queue-name`
    KUBECONFIG               client config; unset inside a cluster: the pod's service account
    TRACECTL_K8S_UNSCHEDULABLE_GRACE_S  how long a pod may stay Unschedulable (default 60)
    TRACECTL_K8S_FOLLOW_LOGS            0: do not follow pod logs into the log sink
    TRACECTL_K8S_LOG_IDLE_S             a pod log stream quiet this long is reopened (default 60)
    TRACECTL_K8S_CREATE_NAMESPACES      0: team namespaces are made by an administrator
    TRACECTL_K8S_INGRESS_PREFIX         e.g. /svc: services also get an Ingress at /svc/<name>
    TRACECTL_K8S_PREPARE                auto (default): the task container prepares its
                                        workspace when it runs the runtime image, else an
                                        init container does; init / inline: always that way
    TRACECTL_K8S_NODE_SELECTOR          `key=value,...`: every task pod selects these node labels
    TRACECTL_K8S_TOLERATE               `key,...`: every task pod tolerates taints of these keys
    TRACECTL_K8S_HOST_NETWORK           1: pods share the node's network (they reach Kafka,
                                        S3, MLflow on the node's 127.0.0.1: the local stack)
    TRACECTL_K8S_RUNTIME_SECRET         a Secret in the namespace holding the S3 endpoint and
                                        keys (RUNTIME_ENV) the pods' runtime archives with
    TRACECTL_K8S_FS_GROUP               pods' fsGroup (default 10001, the runtime image's
                                        user): it can read the launch Secret (mode 0400)
    """

    model_config = SettingsConfigDict(env_prefix="TRACECTL_K8S_", frozen=True)

    namespace: str = "tracectl"
    image: str | None = None
    queue: str | None = None
    team_namespaces: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, validation_alias=_env("team_namespaces", "TRACECTL_K8S_NAMESPACES")
    )
    namespace_per_team: bool = Field(
        default=False, validation_alias=_env("namespace_per_team", "TRACECTL_K8S_TEAM_NAMESPACES")
    )
    ttl_after_finished_s: int = 3600
    kubeconfig: str | None = Field(default=None, validation_alias=_env("kubeconfig", "KUBECONFIG"))
    unschedulable_grace_s: float = 60.0
    follow_logs: bool = True
    log_idle_s: float = 60.0  # a quiet stream is reopened: a half-open one cannot hang forever
    create_namespaces: bool = True
    ingress_prefix: str | None = None
    prepare: Literal["auto", "init", "inline"] = "auto"
    # Where every task pod may go (a dedicated, tainted node pool), beside a GPU's placement.
    node_selector: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    tolerate: Annotated[tuple[str, ...], NoDecode] = ()
    host_network: bool = False
    runtime_secret: str | None = None  # a Secret of RUNTIME_ENV keys, for the pods' runtime
    fs_group: int | None = RUNTIME_UID

    @field_validator("team_namespaces", "node_selector", mode="before")
    @classmethod
    def _pairs(cls, value: object) -> object:
        """`a=b,c=d` as a mapping."""
        if not isinstance(value, str):
            return value
        pairs = (p.partition("=") for p in _items(value))
        return {key.strip(): item.strip() for key, _, item in pairs}

    @field_validator("tolerate", mode="before")
    @classmethod
    def _list(cls, value: object) -> object:
        return tuple(_items(value)) if isinstance(value, str) else value

    @field_validator(
        "image", "queue", "ingress_prefix", "kubeconfig", "runtime_secret", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return value or None

    @property
    def image_pinned(self) -> bool:
        return self.image is not None and PINNED_IMAGE.match(self.image) is not None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRACECTL_")

    home: Path = Field(default_factory=lambda: Path(".tracectl").resolve())
    database_url: str | None = None
    executor: str = "local"
    log_sink: str = "file"
    kafka_client: str = "kafka-python"  # or "confluent" (controller/logs/kafka_transport.py)
    log_reader: str | None = None
    status_events: str = "none"
    archive: str = "local"
    tracking_uri: str | None = Field(
        default=None,
        validation_alias=_env("tracking_uri", "TRACECTL_TRACKING_URI", "MLFLOW_TRACKING_URI"),
    )
    inventory_file: Path | None = None
    supervisor_interval_s: float = 0.2
    lease_ttl_s: float = 30.0
    anchor_interval_s: float = 300.0
    cancel_grace_s: float = 5.0
    service_ready_timeout_s: float = 300.0  # a local service must listen on PORT within this
    retry_backoff_s: float = 1.0
    local_warm_runner: bool = True  # fork local runners from a warm process (executors/local.py)
    git_allowed_hosts: str = ""  # comma-separated; local paths and file:// are always allowed
    git_allowed_schemes: str = "https,ssh"
    preflight: str = ""  # e.g. "code.dirty=refuse,image.mutable_tag=warn" (see preflight.py)
    auth: str = "none"  # none | tokens | oidc | tokens,oidc
    oidc_jwks: str | None = None
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    # Task environments (docs/environments.md); <home>/envs when unset
    env_cache: Path | None = None
    env_max_age_days: float = 30.0  # an environment unused this long is removed
    env_max_gb: float = 20.0  # past this, the least recently used environments are removed
    passport_key: str | None = None  # HMAC key sealing run passports (docs/traceability.md)
    # links out of the web console (docs/console.md); a link whose base is unset is not shown
    mlflow_ui_url: str | None = None  # the MLflow UI; default: the tracking URI when http(s)
    git_commit_url: str = "{repo}/commit/{commit}"  # {repo}: the https URL without .git
    airflow_ui_url: str | None = None
    kibana_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8765
    # OpenLineage emission (docs/lineage.md): an HTTP endpoint, or a Kafka topic (a name, with
    # the brokers of the kafka:// log sink or status events, or kafka://host:port/topic)
    openlineage_url: str | None = None
    openlineage_api_key: str | None = None  # sent as Authorization: Bearer <key>
    openlineage_kafka_topic: str | None = None
    # Image registry (docs/kubernetes.md): "oci" resolves each task's image tag to a digest at
    # submit through the registry the reference names; "none" records images as given.
    registry_api: str = "none"
    registry_plain_http: str = ""  # hosts spoken to over HTTP besides loopback ones
    registry_username: str | None = None
    registry_password: str | None = None
    registry_timeout_s: float = 10.0
    external_systems: Path | None = None  # the registry of `mode: external` (executors/external.py)
    log_reconcile_wait_s: float = 60.0  # how long a log check waits for the index to catch up
    log_repair: bool = False  # a log check also re-sends what a copy lacks
    k8s: ClusterConfig = Field(default_factory=ClusterConfig)  # TRACECTL_K8S_*: its own prefix
    # High availability (docs/architecture.md): every replica serves the API, the holder of
    # the leader lease runs the supervisor loops. `store` (the leader row) or `kubernetes`
    # (a coordination.k8s.io Lease, in leader_namespace or the pod's own namespace).
    leader_election: str = "store"
    leader_lease_s: float = 10.0
    leader_lease_name: str = "tracectl-controller"
    leader_namespace: str | None = None
    replica: str = Field(default_factory=socket.gethostname)  # unique per replica

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """The environment's settings; OVERRIDES that are not None win."""
        settings = cls.model_validate({k: v for k, v in overrides.items() if v is not None})
        settings.home = settings.home.resolve()
        return settings

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'tracectl.db'}"

    @property
    def mlflow_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def openlineage_target(self) -> str:
        """Where OpenLineage events go: the URL, the Kafka topic's URI, or "none"."""
        if self.openlineage_url:
            return self.openlineage_url
        topic = self.openlineage_kafka_topic
        if not topic or topic.startswith("kafka://"):
            return topic or "none"
        brokers = [
            urlparse(u).netloc
            for u in (self.log_sink, self.status_events)
            if u.startswith("kafka://")
        ]
        if not brokers:
            raise ValueError(
                f"TRACECTL_OPENLINEAGE_KAFKA_TOPIC={topic} names no brokers: "
                f"give kafka://host:port/{topic}"
            )
        return f"kafka://{brokers[0]}/{topic}"

    @property
    def workspaces(self) -> Path:
        return self.home / "workspaces"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def environments_dir(self) -> Path:
        return self.env_cache or self.home / "envs"

    @property
    def archive_dir(self) -> Path:
        return self.home / "archive"

    @classmethod
    def of_runtime(cls, runtime: RuntimeSettings) -> Settings:
        """The settings a task's runtime works with: its launch document's, the rest default.

        Built from values RuntimeSettings validated already, without reading the environment
        as a validation of Settings does (~150 fields, the cluster's too): 15 ms or more of
        every task's start, before its first step."""
        return cls.model_construct(**runtime.model_dump(), k8s=ClusterConfig.model_construct())


def runtime_settings(settings: Settings) -> RuntimeSettings:
    """The part of SETTINGS a task's runtime needs (its launch document carries it)."""
    return RuntimeSettings.model_validate(
        settings.model_dump(include=set(RuntimeSettings.model_fields))
    )


def runner_environ(environ: Mapping[str, str], withheld: Iterable[str] = ()) -> dict[str, str]:
    """The environment a local runner starts with: the controller's, less what configures
    the controller (TRACECTL_* but RUNTIME_ENV, KUBECONFIG) and the WITHHELD names (the
    external systems' credentials)."""
    drop = {*withheld, "KUBECONFIG"}
    return {
        k: v
        for k, v in environ.items()
        if k not in drop and (not k.startswith("TRACECTL_") or k in RUNTIME_ENV)
    }
