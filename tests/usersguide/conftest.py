"""Fixtures for the user guide's tests: a real controller, as the guide tells a user to start."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server_process import ServerProcess


@pytest.fixture(scope="module")
def controller(
    tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str
) -> Iterator[ServerProcess]:
    srv = ServerProcess(
        tmp_path_factory.mktemp("guide") / "home",
        {"TRACECTL_TRACKING_URI": mlflow_uri, "TRACECTL_SUPERVISOR_INTERVAL_S": "0.05"},
    )
    srv.start()
    yield srv
    srv.stop()
