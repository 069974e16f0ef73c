"""Task status events: built by the supervisor, published by the configured publisher."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from controller.config import Settings


def status_event(task: Any, run: Any, status: str, **extra: Any) -> dict[str, Any]:
    """The event for TASK reaching STATUS: stable id so consumers can drop duplicates."""
    return {
        "@timestamp": datetime.now(UTC).isoformat(),
        "event": {
            "id": f"{task.id}:{task.attempt}:{status}",
            "kind": "state",
            "dataset": "tracectl.status",
            "action": status,
            **_duration(task, status),
        },
        "labels": {
            "run_id": task.run_id,
            "task_id": task.id,
            "task_name": task.name,
            "attempt": task.attempt,
            "dag_id": run.airflow_dag_id,
            "airflow_run_id": run.airflow_run_id,
            "pipeline": run.pipeline,
        },
        "task": {
            "status": status,
            "reason": task.reason,
            "exit_code": task.exit_code,
            "mlflow_run_id": task.mlflow_run_id,
        },
        **extra,
    }


def _duration(task: Any, status: str) -> dict[str, int]:
    """ECS event.duration (nanoseconds) once an attempt has ended."""
    ended = status in ("succeeded", "failed", "cancelled", "retrying")
    if not (ended and task.started_at and task.finished_at):
        return {}
    return {"duration": int((task.finished_at - task.started_at).total_seconds() * 1e9)}


class NoStatusEvents:
    """The embedded default: status lives in the store and the lineage event log only."""

    publishes = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def publish(self, event: Mapping[str, Any]) -> None:
        return None

    def close(self) -> None:
        return None
