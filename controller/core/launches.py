"""An attempt's launch, built from the store: the document its runner reads, and where.

The document carries only what the runtime needs (controller/domain/launch.py): the task's
spec with its secret env, the resolved commit, data, environment and inputs, the attempt's
env and the runtime's own settings, never the controller's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.config import Settings, runtime_settings
from controller.core import transitions
from controller.domain.launch import (
    LATE_ENV,
    InputArtifact,
    LaunchDocument,
    LaunchLabels,
    Resolution,
)
from controller.domain.spec import TaskSpec
from controller.ports import LAUNCH_FILE, Launch
from controller.store.schema import ArtifactRow, RunRow, TaskRow, TaskSecretRow


def workspace(settings: Settings, task_id: str, attempt: int) -> Path:
    return settings.workspaces / task_id / str(attempt)


def launch_of(session: Session, row: TaskRow, settings: Settings, tracking_uri: str) -> Launch:
    """ROW's current attempt as its executor launches it."""
    run = session.get(RunRow, row.run_id)
    assert run is not None
    secrets = session.get(TaskSecretRow, row.id)
    spec = dict(row.spec)
    spec["env"] = {**spec.get("env", {}), **(secrets.env if secrets else {})}
    env = {
        "TRACECTL_RUN_ID": run.id,
        "TRACECTL_TASK_ID": row.id,
        "TRACECTL_TASK_NAME": row.name,
        "TRACECTL_ATTEMPT": str(row.attempt),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_RUN_ID": row.mlflow_run_id or "",
        "MLFLOW_EXPERIMENT_ID": row.mlflow_experiment_id or "",
        **_admission_env(session, row),
    }
    if spec.get("models"):  # the declared model versions, which the lineage names
        env["TRACECTL_MODELS"] = json.dumps(spec["models"])
    document = LaunchDocument(
        run_id=run.id,
        task_id=row.id,
        task_name=row.name,
        attempt=row.attempt,
        spec=TaskSpec.model_validate(spec),
        resolved=Resolution(
            commit=row.resolved.get("commit"),
            data=row.resolved.get("data", []),
            environment=row.resolved.get("environment"),
        ),
        inputs=_inputs_of(session, row),
        env=env,
        late_env=list(LATE_ENV),
        labels=LaunchLabels(
            dag_id=run.airflow_dag_id or "",
            airflow_run_id=run.airflow_run_id or "",
            pipeline=run.pipeline,
            team=row.team,
        ),
        runtime=runtime_settings(settings),
    )
    return Launch(document, workspace(settings, row.id, row.attempt))


def launched_inputs(settings: Settings, task_id: str, attempt: int) -> list[dict[str, Any]]:
    """The inputs ATTEMPT of TASK_ID was launched with, read back from its launch file."""
    launch_file = workspace(settings, task_id, attempt) / LAUNCH_FILE
    if not launch_file.exists():
        return []
    try:
        return LaunchDocument.read(launch_file).input_items()
    except ValidationError:  # written by a controller before the typed document
        inputs: list[dict[str, Any]] = json.loads(launch_file.read_text()).get("inputs", [])
        return inputs


def _admission_env(session: Session, row: TaskRow) -> dict[str, str]:
    admission = transitions.admission_of(session, row.id, row.attempt)
    if admission is None:  # admitted before the attempts table: in the task's JSON
        return dict(row.resolved.get("attempt_env", {}))
    return dict(admission.env)


def _inputs_of(session: Session, row: TaskRow) -> list[InputArtifact]:
    """The resolved inputs, an upstream task's output by the artifact it stored."""
    inputs = []
    for item in row.resolved.get("inputs", []):
        if "task" not in item:
            inputs.append(InputArtifact.model_validate(item))
            continue
        artifact = session.scalar(
            select(ArtifactRow).where(
                ArtifactRow.task_id == item["task"], ArtifactRow.path == item["output"]
            )
        )
        if artifact is None:
            raise RuntimeError(f"upstream output {item['output']} is not stored")
        inputs.append(
            InputArtifact(
                path=item["path"],
                sha256=artifact.sha256,
                uri=artifact.uri,
                size=artifact.size,
                produced_by_task=artifact.task_id,
                produced_by_run=artifact.run_id,
            )
        )
    return inputs
