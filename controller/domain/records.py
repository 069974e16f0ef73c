"""Run, Task and Artifact: the records the controller keeps and the API returns."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from controller.domain.refs import MaybeRef
from controller.domain.spec import TaskSpec


class TaskStatus(StrEnum):
    PENDING = "pending"  # waiting for upstream tasks of its run
    QUEUED = "queued"  # waiting for admission (resources, leases)
    STARTING = "starting"  # admitted; the executor is being asked to launch it
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_TASK_STATUSES


TERMINAL_TASK_STATUSES = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED})
# The same sets as stored and shown (the one definition: the store, the API, the CLI, tests).
TERMINAL = frozenset(s.value for s in TERMINAL_TASK_STATUSES)
ACTIVE = (TaskStatus.STARTING.value, TaskStatus.RUNNING.value)  # an executor runs it


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Record(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Run(Record):
    id: str
    pipeline: str
    status: RunStatus
    airflow_dag_id: str | None = None
    airflow_run_id: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    reproduces: str | None = None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    closed_at: datetime | None = Field(
        default=None,
        description="when the run was closed: it takes no new tasks, and its "
        "services stop once its other tasks have ended",
    )


class QueueInfo(Record):
    position: int | None = None
    reason: str | None = None


class Task(Record):
    id: str
    run_id: str
    name: str
    spec: TaskSpec
    status: TaskStatus
    reason: str | None = None
    attempt: int
    max_attempts: int
    exit_code: int | None = None
    mlflow_run_id: str | None = None
    executor: str | None = None
    executor_ref: MaybeRef = None
    queue: QueueInfo | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    log_reconciliation: dict[str, Any] | None = Field(
        default=None,
        description="the latest log check of its last attempt (ok, mismatch, "
        "pending or error) and each copy's state; details: GET /v1/tasks/{id}/logs/reconciliation",
    )


class Artifact(Record):
    sha256: str
    uri: str
    size: int
    media_type: str
    path: str
    task_id: str
    run_id: str
    created_at: datetime
