"""Replay of a race CI found: the leader prewarms MLflow (whose new SQLite store runs MLflow's
own Alembic migrations) in a thread while a controller in the same process migrates its schema.
Alembic's `context` proxy is a module global, so the two swapped contexts (KeyError: 'config',
"no such table: endpoint_model_mappings"); both now take `process_locks.ALEMBIC`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from controller.config import Settings
from controller.store.database import Database
from controller.tracking.mlflow_tracking import MlflowTracking


def test_an_mlflow_store_and_the_controller_schema_migrate_in_one_process_at_once(
    tmp_path: Path,
) -> None:
    errors: list[BaseException] = []

    def run(target: Callable[[], None]) -> threading.Thread:
        def guarded() -> None:
            try:
                target()
            except BaseException as exc:  # the thread's failure is the test's
                errors.append(exc)

        thread = threading.Thread(target=guarded)
        thread.start()
        return thread

    for i in range(3):
        home = tmp_path / f"h{i}"
        home.mkdir()
        settings = Settings(home=home)
        tracking = MlflowTracking(settings)
        database = Database(settings.store_url)
        threads = [run(tracking.prewarm), run(database.migrate)]
        for thread in threads:
            thread.join(120)
    assert errors == []
