"""The shared two-team controller of the security tests (its task runs once per package)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.auth.tokens import create_token
from controller.config import Settings
from tests.security.teams import World, code_repo, inventory, red_records


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("scoping")
    settings = Settings(
        home=root / "home",
        auth="tokens",
        supervisor_interval_s=0.05,
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        inventory_file=inventory(root),
    )
    repo, commit = code_repo(root / "code")
    app = create_app(settings)
    with TestClient(app) as client:
        db = app.state.service.db
        tokens = {
            "red": create_token(db, "alice", "red"),
            "blue": create_token(db, "bob", "blue"),
            "green": create_token(db, "carol", "green"),
            "admin": create_token(db, "root", "ops", role="admin"),
        }
        red = red_records(client, tokens["red"], repo)
        red.update(
            commit=commit,
            model="red-model/1",
            dataset="data/wine.csv@" + "0" * 32,
            dataset_path="data/wine.csv",
            dataset_md5="0" * 32,
            task_node=f"task:{red['task']}",
            artifact_node=f"artifact:{red['sha256']}",
            commit_node=f"commit:{commit}",
        )
        fake = {
            "run": "run_" + "0" * 26,
            "task": "task_" + "0" * 26,
            "sha256": "f" * 64,
            "uri": "file:///nowhere/out/model.txt",
            "mlflow_run_id": "0" * 32,
            "lease": "999999",
            "share": "999999",
            "commit": "e" * 40,
            "model": "no-model/1",
            "dataset": "data/none.csv@" + "1" * 32,
            "dataset_path": "data/none.csv",
            "dataset_md5": "1" * 32,
            "task_node": "task:task_" + "0" * 26,
            "artifact_node": "artifact:" + "f" * 64,
            "commit_node": "commit:" + "e" * 40,
        }
        yield World(client, tokens, red, fake)
