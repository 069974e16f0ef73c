from __future__ import annotations

import pytest

from tests.stack_fixtures import service_fixture


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow SQLite store for the session: creating its schema takes seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


kafka = service_fixture("kafka")
opensearch = service_fixture("opensearch")
elasticsearch = service_fixture("elasticsearch")
s3 = service_fixture("s3")
mlflow_server = service_fixture("mlflow-server")
postgres = service_fixture("postgres")
airflow = service_fixture("airflow")
kubernetes = service_fixture("kubernetes")
shipper = service_fixture("shipper")
