"""Controller settings, read from TRACECTL_* environment variables.

With nothing set, everything lives under ./.tracectl: SQLite store, local executor, file
logs, local artifact archive, and an MLflow SQLite tracking store.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field


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
    git_allowed_hosts: str = ""  # comma-separated; local paths and file:// are always allowed
    git_allowed_schemes: str = "https,ssh"
    preflight: str = ""  # e.g. "code.dirty=refuse,image.mutable_tag=warn" (see preflight.py)
    auth: str = "none"  # none | tokens | oidc | tokens,oidc
    oidc_jwks: str | None = None
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    host: str = "127.0.0.1"
    port: int = 8765

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
    def workspaces(self) -> Path:
        return self.home / "workspaces"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def archive_dir(self) -> Path:
        return self.home / "archive"

    def child_env(self) -> dict[str, str]:
        """The settings as environment, for processes the controller starts (runners)."""
        env = {
            f"TRACECTL_{k.upper()}": str(v) for k, v in self.model_dump().items() if v is not None
        }
        env["TRACECTL_TRACKING_URI"] = self.mlflow_uri
        return env
