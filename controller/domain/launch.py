"""The launch document: what the runtime of one attempt reads, and nothing of the controller's."""

from __future__ import annotations

import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from controller.domain.environments import ResolvedEnvironment
from controller.domain.spec import TaskSpec

# What a task's runtime itself reads from its environment (the S3 archive's endpoint and
# keys): a local runner keeps them, and takes them away from the command it runs.
RUNTIME_ENV = (
    "TRACECTL_S3_ENDPOINT",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
)


def task_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """What a task's command inherits from its runner: all but the runtime's credentials."""
    return {k: v for k, v in environ.items() if k not in RUNTIME_ENV}


# Env values that exist once the attempt's tracking run does: filled in by Launch.completed()
LATE_ENV = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")
# Sent by the local executor to a runner forked by the warm runner (which blocks it in every
# fork) once the complete launch file is written: the runner waits for it, not a poll's round.
LAUNCH_COMPLETE_SIGNAL = signal.SIGUSR1


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataFile(_Doc):
    """One DVC-tracked file as resolved at submission: its md5 is checked after the pull."""

    path: str
    md5: str
    rev: str | None = None


class Resolution(_Doc):
    """What submission pinned and the runtime checks out: the commit, the DVC md5s and the
    environment (docs/environments.md)."""

    commit: str | None = None
    data: list[DataFile] = Field(default_factory=list)
    environment: ResolvedEnvironment | None = None


class InputArtifact(_Doc):
    """A stored artifact placed into the workspace before the command runs."""

    path: str
    sha256: str
    uri: str
    size: int | None = None
    produced_by_task: str | None = None
    produced_by_run: str | None = None


class LaunchLabels(_Doc):
    """Where the attempt comes from: labels of its log lines and of its cluster objects."""

    dag_id: str = ""
    airflow_run_id: str = ""
    pipeline: str = ""
    team: str = ""


class RuntimeSettings(_Doc):
    """The settings the runtime uses (log sink, artifact archive); no credential of the
    controller's (its store URL, API tokens, archive keys) is one of them."""

    home: Path
    log_sink: str = "file"
    kafka_client: str = "kafka-python"
    archive: str = "local"
    cancel_grace_s: float = 5.0
    env_cache: Path | None = None  # where task environments are built (<home>/envs)
    env_max_age_days: float = 30.0
    env_max_gb: float = 20.0


class LaunchDocument(_Doc):
    """One attempt of one task, as the supervisor hands it to an executor and its runtime
    (written to the workspace as launch.json; on Kubernetes, the launch Secret)."""

    run_id: str
    task_id: str
    task_name: str
    attempt: int
    spec: TaskSpec  # env holds the secret values too: the document is kept 0600 / in a Secret
    resolved: Resolution = Field(default_factory=Resolution)
    inputs: list[InputArtifact] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)  # the controller's variables (win)
    late_env: list[str] = Field(default_factory=lambda: list(LATE_ENV))
    labels: LaunchLabels = Field(default_factory=LaunchLabels)
    runtime: RuntimeSettings
    # False while the late env values are still being made (the local executor starts the
    # runner meanwhile): the runner waits for the complete document before the command.
    complete: bool = True

    def with_env(self, env: dict[str, str]) -> LaunchDocument:
        return self.model_copy(update={"env": env, "complete": True})

    def pending(self) -> LaunchDocument:
        """This document before its late env values: the runner prepares, then waits."""
        return self.model_copy(update={"complete": False})

    def as_json(self) -> str:
        # A complete document is written without the field: a runtime of an earlier version
        # (a Kubernetes image) forbids fields it does not know, and reads it as complete.
        return self.model_dump_json(indent=2, exclude={"complete"} if self.complete else None)

    @classmethod
    def read(cls, path: Path) -> LaunchDocument:
        return cls.model_validate_json(path.read_text())

    def input_items(self) -> list[dict[str, Any]]:
        """The inputs as the lineage records them."""
        return [i.model_dump(exclude_none=True) for i in self.inputs]
