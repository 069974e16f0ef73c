"""The embedded SQLite MLflow store keeps the controller's own store's journal (WAL)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mlflow.tracking import MlflowClient
from sqlalchemy import create_engine

from controller.config import Settings
from controller.tracking.mlflow_tracking import MlflowTracking


def test_the_embedded_mlflow_store_is_journaled_like_the_controllers_and_reads_back(
    tmp_path: Path,
) -> None:
    tracking = MlflowTracking(Settings(home=tmp_path / "home"))
    _, run_id = tracking.start_run("journal", "t#1", {"tracectl.task_id": "t"}, {"lr": 0.1})
    tracking.finish_run(run_id, "succeeded")
    database = tmp_path / "home" / "mlflow.db"
    assert sqlite3.connect(database).execute("PRAGMA journal_mode").fetchone() == ("wal",)
    # another client (another process would do the same) reads what was committed
    run = MlflowClient(tracking_uri=tracking.uri).get_run(run_id)
    assert (run.info.status, run.data.params) == ("FINISHED", {"lr": "0.1"})


def test_another_sqlite_database_of_the_process_keeps_its_own_journal(tmp_path: Path) -> None:
    MlflowTracking(Settings(home=tmp_path / "home")).prewarm()  # its listener is in place
    engine = create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    engine.dispose()
