"""Each attempt's tracking (MLflow) run: made once, beside the runner's start; closed before
the attempt's end is written (docs/architecture.md, what an end promises)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from controller.domain.launch import LATE_ENV
from controller.domain.records import TaskStatus
from controller.lineage import models as lineage_models
from controller.ports import Launch, Tracking
from controller.store.database import Database
from controller.store.schema import RunRow, TaskRow

log = logging.getLogger("tracectl.supervisor")


class TrackingRuns:
    def __init__(self, tracking: Tracking) -> None:
        self.tracking = tracking
        # An MLflow SQLite store takes one writer: its lazy table creation races, and parallel
        # writers lock each other out. A tracking server takes parallel launches.
        self.turn: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if tracking.uri.startswith("sqlite") else contextlib.nullcontext()
        )

    def prewarm(self) -> None:
        """MLflow's import and store, before the first task waits for them."""
        prewarm = getattr(self.tracking, "prewarm", None)
        if prewarm is not None:
            with self.turn:
                prewarm()

    def ensure(self, db: Database, task_id: str, attempt: int) -> tuple[str, str]:
        """(experiment id, run id) of the attempt's tracking run, made once per attempt."""
        with db.read() as session:
            row = session.get(TaskRow, task_id)
            assert row is not None
            run = session.get(RunRow, row.run_id)
            assert run is not None
            if row.resolved.get("mlflow_attempt") == attempt and row.mlflow_run_id:
                return row.mlflow_experiment_id or "", row.mlflow_run_id
            experiment, name = run.pipeline, f"{row.name}#{attempt}"
            tags = _tags(row, run, attempt)
            params = row.spec.get("params", {})
            datasets = _datasets(row)
        experiment_id, mlflow_run_id = self.tracking.start_run(experiment, name, tags, params)
        self.tracking.log_dataset_inputs(mlflow_run_id, datasets)
        with db.write() as session:
            row = session.get(TaskRow, task_id)
            assert row is not None
            row.mlflow_experiment_id = experiment_id
            row.mlflow_run_id = mlflow_run_id
            row.resolved = {**row.resolved, "mlflow_attempt": attempt}
        return experiment_id, mlflow_run_id

    def complete(self, db: Database, launch: Launch) -> Launch:
        """What Launch.completed() fills in: the attempt's tracking run, then its launch file."""
        with self.turn:
            experiment_id, run_id = self.ensure(db, launch.task_id, launch.attempt)
        env = {**launch.env, **dict(zip(LATE_ENV, (experiment_id, run_id), strict=True))}
        done = replace(launch, document=launch.document.with_env(env), completion=None)
        done.write()  # a runner started before it waits for this file
        return done

    def close(self, mlflow_run_id: str | None, status: TaskStatus) -> None:
        """Close the attempt's tracking run (FINISHED, FAILED, KILLED)."""
        if not mlflow_run_id:
            return
        try:
            with self.turn:
                self.tracking.finish_run(mlflow_run_id, status.value)
        except Exception:
            log.warning("could not close MLflow run %s", mlflow_run_id, exc_info=True)

    def models(self, mlflow_run_id: str | None, status: TaskStatus) -> list[dict[str, str]]:
        """The model versions a succeeded attempt registered: a read, beside the close (the
        script registered them before it exited)."""
        if status != TaskStatus.SUCCEEDED:
            return []
        return lineage_models.registered_versions(self.tracking, mlflow_run_id)


def _tags(row: TaskRow, run: RunRow, attempt: int) -> dict[str, str]:
    tags = {
        "mlflow.runName": f"{row.name}#{attempt}",
        "mlflow.user": row.team,
        "mlflow.source.type": "JOB",
        "tracectl.run_id": run.id,
        "tracectl.task_id": row.id,
        "tracectl.task_name": row.name,
        "tracectl.attempt": str(attempt),
    }
    spec = row.spec
    if spec.get("code"):
        tags["mlflow.source.name"] = spec["code"]["repo"]
        tags["mlflow.source.git.commit"] = row.resolved.get("commit", "")
        tags["mlflow.source.git.repoURL"] = spec["code"]["repo"]
    if run.airflow_dag_id:
        tags["airflow.dag_id"] = run.airflow_dag_id
    if run.airflow_run_id:
        tags["airflow.run_id"] = run.airflow_run_id
    if spec.get("image"):
        tags["tracectl.image"] = spec["image"]
    return tags


def _datasets(row: TaskRow) -> list[dict[str, str]]:
    """The task's DVC data, as MLflow dataset inputs."""
    return [
        {
            "name": d["path"],
            "digest": d["md5"],
            "context": "input",
            "source": f"dvc://{row.spec['code']['repo']}@{d['rev']}/{d['path']}",
        }
        for d in row.resolved.get("data", [])
    ]


class Once:
    """FN(LAUNCH), made once: a second caller waits for the first and gets its result, or
    its error (a tracking server that failed once is not asked again for this launch)."""

    def __init__(self, fn: Callable[[Launch], Launch], launch: Launch) -> None:
        self.fn, self.launch = fn, launch
        self._lock = threading.Lock()
        self._done: Launch | None = None
        self._error: Exception | None = None

    def __call__(self) -> Launch:
        with self._lock:
            if self._done is None and self._error is None:
                try:
                    self._done = self.fn(self.launch)
                except Exception as exc:
                    self._error = exc
            if self._error is not None:
                raise self._error
            assert self._done is not None
            return self._done


def quietly(fn: Callable[[], object]) -> None:
    """FN, its failure left to the caller that needs its result (it gets the same error)."""
    try:
        fn()
    except Exception:
        log.debug("an early start failed; its caller gets the error", exc_info=True)
