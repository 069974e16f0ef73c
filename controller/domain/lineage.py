"""LineageRecord: everything that produced a task's outputs, enough to run it again."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class CodeLineage(BaseModel):
    repo: str
    ref: str
    commit: str
    dirty: bool = Field(description="the source working tree had uncommitted changes at submit")


class DataLineage(BaseModel):
    path: str
    md5: str
    rev: str
    remote: str | None = None


class EnvironmentLineage(BaseModel):
    """The task's environment (docs/environments.md): node `env:<key>` in the lineage graph."""

    image: str | None = None
    kind: str | None = Field(
        default=None, description="uv_lock, requirements, pyproject, bare or image"
    )
    key: str | None = Field(default=None, description="the environment cache key (sha256)")
    path: str | None = Field(default=None, description="the lock/requirements file in the repo")
    lock_sha256: str | None = None
    detected: bool = False
    interpreter: str | None = None
    python_version: str | None = None
    packages: list[str] = Field(default_factory=list, description="name==version, sorted")
    packages_uri: str | None = Field(default=None, description="the archived package list")
    pip_freeze_sha256: str | None = Field(default=None, description="sha256 of the packages")
    env_keys: list[str] = Field(default_factory=list)


class TrackingLineage(BaseModel):
    tracking_uri: str
    experiment_id: str
    run_id: str


class ArtifactLineage(BaseModel):
    path: str
    sha256: str
    size: int
    uri: str
    produced_by_task: str | None = None
    produced_by_run: str | None = None


class LeaseLineage(BaseModel):
    resource: str
    fencing_token: int
    detail: dict[str, Any] = Field(default_factory=dict)


class LineageRecord(BaseModel):
    run_id: str
    task_id: str
    task_name: str
    attempt: int
    status: str
    exit_code: int | None = None
    code: CodeLineage | None = None
    data: list[DataLineage] = Field(default_factory=list)
    environment: EnvironmentLineage = Field(default_factory=EnvironmentLineage)
    params: dict[str, Any] = Field(default_factory=dict)
    command: list[str] = Field(default_factory=list)
    mlflow: TrackingLineage | None = None
    inputs: list[ArtifactLineage] = Field(default_factory=list)
    outputs: list[ArtifactLineage] = Field(default_factory=list)
    leases: list[LeaseLineage] = Field(
        default_factory=list,
        description="filled when the record is read, from the leases "
        "table (the one place a lease's release is written); not stored with the record",
    )
    preflight: list[dict[str, Any]] = Field(default_factory=list)
    logs: dict[str, Any] = Field(default_factory=dict)
    executor: dict[str, Any] = Field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
