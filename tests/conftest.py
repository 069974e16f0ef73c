from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.stack_fixtures import service_fixture

# Task environments are built once per key and kept across tests and sessions (uv's cache
# holds the wheels): every test controller, in-process or not, reads this.
os.environ.setdefault("TRACECTL_ENV_CACHE", str(Path.home() / ".cache" / "tracectl" / "envs"))


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow SQLite store for the session: creating its schema takes seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


kafka = service_fixture("kafka")
opensearch = service_fixture("opensearch")
elasticsearch = service_fixture("elasticsearch")
elasticsearch9 = service_fixture("elasticsearch9")
s3 = service_fixture("s3")
mlflow_server = service_fixture("mlflow-server")
postgres = service_fixture("postgres")
airflow = service_fixture("airflow")
registry = service_fixture("registry")
kubernetes = service_fixture("kubernetes")
shipper = service_fixture("shipper")
