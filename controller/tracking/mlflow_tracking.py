"""MLflow as the tracking backend: one MLflow run per task attempt, made by the controller.

The task's own code logs into that run through MLFLOW_RUN_ID / MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from controller.config import Settings
from controller.process_locks import ALEMBIC
from controller.store.database import sqlite_journal

_STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "cancelled": "KILLED"}


# SQLite MLflow stores whose connections get the controller's own store's journal.
_JOURNALED: set[str] = set()


def _journal_like_the_store(path: Path) -> None:
    """Give the connections to the SQLite MLflow store at PATH the controller's own store's
    journal (WAL, synchronous=NORMAL: durable across a crash of the process, as the task rows
    are). MLflow's default journal syncs the disk several times a commit, and an attempt's
    run is made before its command and closed before its end."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    _JOURNALED.add(str(path.resolve()))
    if not event.contains(Engine, "connect", _on_connect):
        event.listen(Engine, "connect", _on_connect)


def _on_connect(connection: Any, _record: Any) -> None:
    """Every new SQLAlchemy connection of this process: those to a journaled MLflow store."""
    if not isinstance(connection, sqlite3.Connection):
        return
    if not _JOURNALED.intersection(row[2] for row in connection.execute("PRAGMA database_list")):
        return
    sqlite_journal(connection, busy_ok=True)


class MlflowTracking:
    def __init__(self, settings: Settings) -> None:
        # MLflow 3 sends usage telemetry from background threads: a controller does not phone
        # home, and those threads took a third of its CPU on the dispatch path (offline they
        # retry). MLFLOW_DISABLE_TELEMETRY=false in the environment opts back in.
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        self.uri = settings.mlflow_uri
        # A local store would otherwise put artifacts under the client's working directory.
        self.artifact_root = (
            (settings.home / "mlflow-artifacts").as_uri() if self.uri.startswith("sqlite") else None
        )
        self._client: Any = None
        self._lock = threading.Lock()
        # Experiments are looked up on every attempt start, which is on the dispatch path.
        self._experiments: dict[str, str] = {}

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                from mlflow.tracking import MlflowClient

                # "Creating initial MLflow database tables..." is MLflow's news, not the
                # user's: a new SQLite store says it at INFO on the console of `tracectl demo`.
                logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
                if self.uri.startswith("sqlite:///"):
                    _journal_like_the_store(Path(self.uri.removeprefix("sqlite:///")))
                with ALEMBIC:  # a new store runs MLflow's own migrations
                    self._client = MlflowClient(tracking_uri=self.uri)
            return self._client

    def prewarm(self) -> None:
        """Import MLflow and open its store (a new SQLite store creates its tables): seconds
        that the first task's launch would otherwise wait for."""
        self.client.search_experiments(max_results=1)

    def _experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            location = f"{self.artifact_root}/{name}" if self.artifact_root else None
            return str(self.client.create_experiment(name, artifact_location=location))
        except Exception:  # created concurrently by someone else
            return str(self.client.get_experiment_by_name(name).experiment_id)

    def start_run(
        self, experiment: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any]
    ) -> tuple[str, str]:
        from mlflow.entities import Param

        experiment_id = self._experiments.get(experiment)
        if experiment_id is None:
            experiment_id = self._experiments[experiment] = self._experiment_id(experiment)
        try:
            run = self.client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
        except Exception:  # the cached experiment may have been deleted or restored since
            self._experiments.pop(experiment, None)
            experiment_id = self._experiments[experiment] = self._experiment_id(experiment)
            run = self.client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
        flat = [
            Param(str(k)[:250], v if isinstance(v, str) else json.dumps(v, sort_keys=True))
            for k, v in params.items()
        ]
        for start in range(0, len(flat), 100):
            self.client.log_batch(run.info.run_id, params=flat[start : start + 100])
        return experiment_id, str(run.info.run_id)

    def log_dataset_inputs(self, run_id: str, datasets: Sequence[Mapping[str, str]]) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [
            DatasetInput(
                dataset=Dataset(
                    name=item["name"],
                    digest=item["digest"][:36],
                    source_type="dvc",
                    source=json.dumps({"uri": item["source"], "md5": item["digest"]}),
                ),
                tags=[InputTag(key="mlflow.data.context", value=item.get("context", "input"))],
            )
            for item in datasets
        ]
        if inputs:
            self.client.log_inputs(run_id, datasets=inputs)

    def finish_run(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=_STATUS.get(status, "FAILED"))

    def metrics(self, run_id: str) -> dict[str, float]:
        return {k: float(v) for k, v in self.client.get_run(run_id).data.metrics.items()}

    def has_model_version(self, name: str, version: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_model_version(name, version)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise
        return True

    def iter_model_versions(self, run_id: str) -> Iterator[dict[str, str]]:
        for version in self.client.search_model_versions(f"run_id='{run_id}'"):
            yield {
                "name": version.name,
                "version": str(version.version),
                "source": str(version.source),
            }
