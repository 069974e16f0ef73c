"""TracectlHook / TracectlTaskOperator against a real controller, outside any scheduler:
Airflow retries reattach instead of double-submitting, failures carry status and reason,
5xx and connect errors are retried, 4xx name the field."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.airflow.conftest import Controller

pytestmark = pytest.mark.slow
RUNNER = Path(__file__).with_name("operator_semantics_runner.py")


@pytest.fixture(scope="module")
def observed(
    airflow_python: Path, controller: Controller, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path_factory.mktemp("af-semantics"))}
    out = subprocess.run(
        [str(airflow_python), str(RUNNER), controller.url],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert out.returncode == 0 and lines, f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def test_a_retry_reattaches_to_the_task_of_the_earlier_try(
    observed: dict[str, Any], controller: Controller
) -> None:
    first, second = observed["ok"]
    assert first["error"] is None and second["error"] is None
    assert first["xcoms"]["tracectl_task_id"] == second["xcoms"]["tracectl_task_id"]
    run = first["xcoms"]["tracectl_run_id"]
    names = [t["name"] for t in controller.get("/v1/tasks", run_id=run, limit=100)["items"]]
    assert names.count("ok_step") == 1


def test_a_retry_after_a_failure_submits_a_new_attempt(
    observed: dict[str, Any], controller: Controller
) -> None:
    first, second, again = observed["bad"]
    for result in (first, second, again):
        assert result["error"].startswith("AirflowException: tracectl task bad_step")
        assert "failed: exited with code 3" in result["error"]
        assert "/logs" in result["error"]
    ids = [r["xcoms"]["tracectl_task_id"] for r in (first, second, again)]
    assert len(set(ids)) == 3
    run = first["xcoms"]["tracectl_run_id"]
    names = sorted(
        t["name"]
        for t in controller.get("/v1/tasks", run_id=run, limit=100)["items"]
        if t["name"].startswith("bad_step")
    )
    assert names == ["bad_step", "bad_step.try2", "bad_step.try3"]


def test_hook_retries_5xx_and_connect_errors(observed: dict[str, Any]) -> None:
    assert observed["flaky"] == {"ok": [True, observed["flaky"]["ok"][1]], "calls": 3}
    assert "unreachable after 3 tries" in observed["down"]


def test_hook_reports_4xx_with_the_field(observed: dict[str, Any]) -> None:
    assert observed["invalid"]["status"] == 422
    assert "spec.command" in observed["invalid"]["message"]


def test_service_operator_pushes_the_url_and_stop_ends_the_service(
    observed: dict[str, Any], controller: Controller
) -> None:
    service = observed["service"]
    assert service["error"] is None, service
    url = service["xcoms"]["service_url"]
    assert url.startswith("http://127.0.0.1:")
    stop = observed["stop"]
    assert stop["error"] is None, stop
    assert stop["xcoms"]["service_status"] == {
        "status": "succeeded",
        "reason": "stopped: run ended",
    }
    task = controller.get(f"/v1/tasks/{service['xcoms']['tracectl_task_id']}")
    assert (task["status"], task["reason"]) == ("succeeded", "stopped: run ended")
    assert controller.get(f"/v1/runs/{task['run_id']}")["closed_at"]


def test_service_operator_fails_for_a_service_that_never_listens(observed: dict[str, Any]) -> None:
    error = observed["quitter"]["error"]
    print(f"a service that exits at once: {error}")
    assert error is not None and error.startswith("AirflowException: tracectl service task"), error
    assert "ended (succeeded) without reporting a URL: it exited before listening" in error
    assert "service_url" not in observed["quitter"]["xcoms"]


def test_trigger_on_kill_cancels_the_controller_task(observed: dict[str, Any]) -> None:
    # what the triggerer runs when a user marks a deferred task failed (live: test_live_airflow)
    assert observed["on_kill"] == {
        "before": "running",
        "after": "cancelled",
        "reason": "cancelled on request",
    }


def test_the_environment_parameter_reaches_the_task_spec(
    observed: dict[str, Any], controller: Controller
) -> None:
    pinned = observed["environment"]
    assert pinned["error"] is None, pinned
    task = controller.get(f"/v1/tasks/{pinned['xcoms']['tracectl_task_id']}")
    assert task["spec"]["environment"]["python"] == pinned["python"]
    assert task["status"] == "succeeded"


def test_an_environment_the_controller_refuses_fails_the_task_naming_the_field(
    observed: dict[str, Any],
) -> None:
    error = observed["environment_without_code"]["error"]
    assert error is not None and "-> 422" in error, error
    assert "environment files need code" in error


def test_an_operator_that_fails_in_its_worker_cancels_its_tracectl_task(
    observed: dict[str, Any],
) -> None:
    # the listener as a worker calls it; a task that had ended (ok_step) stays as it was
    assert observed["failed_in_worker"] == {
        "status": "cancelled",
        "reason": "cancelled on request",
        "ended": "succeeded",
    }
