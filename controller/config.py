"""Controller settings, read from TRACECTL_* environment variables.

With nothing set, everything lives under ./.tracectl: SQLite store, local executor, file
logs, local artifact archive, and an MLflow SQLite tracking store.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlparse

from pydantic import BaseModel, Field

from controller.domain.launch import RuntimeSettings

# What a task's runtime itself reads from its environment (the S3 archive's endpoint and
# keys): a local runner keeps them, and takes them away from the command it runs.
RUNTIME_ENV = (
    "TRACECTL_S3_ENDPOINT",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
)


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


class Settings(BaseModel):
    home: Path = Field(default_factory=lambda: Path(".tracectl").resolve())
    database_url: str | None = None
    executor: str = "local"
    log_sink: str = "file"
    kafka_client: str = "kafka-python"  # or "confluent" (controller/logs/kafka_transport.py)
    log_reader: str | None = None
    status_events: str = "none"
    archive: str = "local"
    tracking_uri: str | None = None
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
    # Task environments (docs/environments.md); <home>/envs when unset. Read from the
    # environment even by Settings(...) so that test controllers share one cache.
    env_cache: Path | None = Field(default_factory=lambda: _env_path("TRACECTL_ENV_CACHE"))
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

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        values: dict[str, object] = {}
        for name in cls.model_fields:
            raw = os.environ.get(f"TRACECTL_{name.upper()}")
            if raw is not None:
                values[name] = raw
        if "tracking_uri" not in values and os.environ.get("MLFLOW_TRACKING_URI"):
            values["tracking_uri"] = os.environ["MLFLOW_TRACKING_URI"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls.model_validate(values)
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
        """The settings a task's runtime works with: its launch document's, the rest default."""
        return cls.model_validate(runtime.model_dump())


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


def task_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """What a task's command inherits from its runner: all but the runtime's credentials."""
    return {k: v for k, v in environ.items() if k not in RUNTIME_ENV}
