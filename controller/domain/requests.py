"""What clients send to create runs and submit tasks. Unknown fields are rejected."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from controller.domain.spec import TaskSpec

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline: str = Field(min_length=1, max_length=256, pattern=NAME)
    airflow_dag_id: str | None = Field(default=None, max_length=256)
    airflow_run_id: str | None = Field(default=None, max_length=256)
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256, pattern=NAME)
    spec: TaskSpec
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)
