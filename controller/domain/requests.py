"""What clients send to create runs and submit tasks. Unknown fields are rejected."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from controller.domain.spec import TaskSpec

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256, pattern=NAME)
    spec: TaskSpec
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline: str = Field(min_length=1, max_length=256, pattern=NAME)
    airflow_dag_id: str | None = Field(default=None, max_length=256)
    airflow_run_id: str | None = Field(default=None, max_length=256)
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)
    tasks: list[TaskCreate] = Field(
        default_factory=list,
        max_length=256,
        description="tasks created with the run in one transaction: if any is refused, "
        "neither the run nor any task is created (422 naming tasks.N.<field>)",
    )
    close: StrictBool = Field(
        default=False,
        description="close the run as it is created: it takes no tasks beyond those in `tasks`",
    )
