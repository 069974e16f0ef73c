"""MLflow registry versions made from a task's run, as `model.registered` lineage events.

The supervisor asks the tracking port once a task attempt ends (outside its write
transaction: the registry may be remote) and appends one event per version; the
projection turns each into an edge `task:<id> -> model:<name>/<version>`.
"""

from __future__ import annotations

import logging
from typing import Any

from controller.domain.events import ModelRegistered
from controller.ports import Tracking
from controller.store.schema import LineageEventRow

log = logging.getLogger("tracectl.lineage.models")


def registered_versions(tracking: Tracking, mlflow_run_id: str | None) -> list[dict[str, str]]:
    """Registry versions whose source run is MLFLOW_RUN_ID; [] when the registry fails."""
    if not mlflow_run_id:
        return []
    try:
        return [dict(v) for v in tracking.iter_model_versions(mlflow_run_id)]
    except Exception:  # a registry outage must not fail the task's bookkeeping
        log.warning("model versions of MLflow run %s unavailable", mlflow_run_id, exc_info=True)
        return []


def model_events(
    run_id: str, task_id: str, versions: list[dict[str, Any]]
) -> list[LineageEventRow]:
    return [
        LineageEventRow.of(
            ModelRegistered(name=v["name"], version=str(v["version"]), source=v.get("source")),
            run_id,
            task_id,
        )
        for v in versions
    ]
