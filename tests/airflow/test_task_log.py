"""The Airflow task log holds the tracectl task's output: streamed while a worker awaits the
task (a line is in the Airflow log before the task writes the next one), the tail on resume
after deferring, and on failure the reason and where the full log is."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.airflow.conftest import Controller

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
RUNNER = Path(__file__).with_name("task_log_runner.py")


@pytest.fixture(scope="module")
def observed(
    airflow_python: Path, controller: Controller, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("af-tasklog")
    env = {**os.environ, "AIRFLOW_HOME": str(home)}
    out = subprocess.run(
        [str(airflow_python), str(RUNNER), controller.url, str(home)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=500,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert out.returncode == 0 and lines, f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def output(lines: list[str]) -> list[str]:
    """The task's own lines (not the controller's `system` lines) as the operator logged them."""
    return [ln for ln in lines if ln.startswith(("[tracectl stdout]", "[tracectl stderr]"))]


def test_an_awaited_task_streams_its_lines_into_the_airflow_log(
    observed: dict[str, Any],
) -> None:
    streamed = observed["streamed"]
    assert streamed["error"] is None, streamed
    assert output(streamed["lines"]) == [
        "[tracectl stdout] first",
        "[tracectl stdout] second",
        "[tracectl stderr] ERROR: third",
    ]


def test_a_failed_task_logs_its_output_the_reason_and_the_log_link(
    observed: dict[str, Any], controller: Controller
) -> None:
    failing = observed["failing"]
    assert output(failing["lines"]) == ["[tracectl stderr] boom"]
    assert "failed: exited with code 3" in failing["error"]
    assert f"{controller.url}/v1/tasks/" in failing["error"] and "/logs" in failing["error"]


def test_a_resumed_deferred_task_logs_the_tail_and_the_full_log_link(
    observed: dict[str, Any], controller: Controller
) -> None:
    resumed = observed["resumed"]
    assert resumed["error"] is None, resumed
    assert output(resumed["lines"]) == ["[tracectl stdout] line 4", "[tracectl stdout] line 5"]
    link = f"{controller.url}/v1/tasks/{resumed['task_id']}/logs"
    assert any(link in line for line in resumed["lines"])


def test_the_service_operator_logs_the_services_start_up_lines(
    observed: dict[str, Any],
) -> None:
    service = observed["service"]
    assert service["error"] is None, service
    port = service["url"].rsplit(":", 1)[1]
    assert output(service["lines"]) == [
        "[tracectl stdout] loading the model",
        f"[tracectl stdout] listening on {port}",
    ]
