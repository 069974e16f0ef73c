"""The fault tests' one set-up: the shared log stack up, and a `tracectl server` on it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.logs.conftest import ensure_up
from tests.server_process import ServerProcess


@dataclass
class FaultStack:
    """Where a fault test's controller writes (HOME) and what it talks to."""

    home: Path
    tracking_uri: str
    bootstrap: str
    servers: list[ServerProcess] = field(default_factory=list)

    def server(self, **env: str) -> ServerProcess:
        """A started `tracectl server` on HOME with the Kafka log sink, stopped after the test;
        ENV adds settings (TRACECTL_*)."""
        server = ServerProcess(
            self.home,
            {
                "TRACECTL_TRACKING_URI": self.tracking_uri,
                "TRACECTL_LOG_SINK": f"kafka://{self.bootstrap}",
                **env,
            },
        )
        self.servers.append(server)
        server.start()
        return server


@pytest.fixture
def fault_stack(
    tmp_path: Path,
    mlflow_uri: str,
    kafka: dict[str, str],
    opensearch: dict[str, str],
    shipper: dict[str, str],
) -> Iterator[FaultStack]:
    for name in ("kafka", "opensearch", "shipper"):
        ensure_up(name)  # an outage test that failed may have left one down
    # MLflow migrates a new SQLite store on first use, and a kill -9 in that migration leaves it
    # unusable (a `_alembic_tmp_*` table stays behind): make the schema before any fault.
    MlflowClient(tracking_uri=mlflow_uri).search_experiments()
    stack = FaultStack(tmp_path / "home", mlflow_uri, kafka["TRACECTL_KAFKA_BOOTSTRAP"])
    yield stack
    for server in stack.servers:
        server.stop()
