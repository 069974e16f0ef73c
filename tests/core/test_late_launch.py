"""A local runner starts before its attempt's MLflow run exists: it prepares on the pending
launch file and starts the command only once the controller has completed it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.config import Settings
from controller.core.service import ControllerService
from controller.domain.launch import LaunchDocument
from controller.ports import LAUNCH_FILE, Launch
from controller.store.schema import TaskRow
from tests.core.conftest import Api, python, submit_python
from tests.waiting import wait_for

SEEN = "import os; open('seen', 'w').write(os.environ['MLFLOW_RUN_ID'])"


def pending_runner(
    api: Api, workspace: Path, command: list[str]
) -> tuple[Launch, subprocess.Popen[bytes]]:
    """A runner on a pending copy of a real task's launch document (run to its end first),
    and the complete launch it waits for."""
    run = api.run()
    task = api.submit(run, "template", command=python("print('ok')"))
    assert api.wait(task["id"])["status"] == "succeeded"
    done = LaunchDocument.read(api.settings.workspaces / task["id"] / "1" / LAUNCH_FILE)
    document = done.model_copy(
        update={
            "task_id": f"{task['id']}-late",
            "spec": done.spec.model_copy(update={"command": command}),
        }
    )
    complete = Launch(
        document.with_env({**document.env, "MLFLOW_RUN_ID": "made-meanwhile"}), workspace
    )
    Launch(document.with_env({**document.env, "MLFLOW_RUN_ID": ""}).pending(), workspace).write()
    runner = subprocess.Popen(
        [sys.executable, "-m", "controller.runtime.runner", str(workspace / LAUNCH_FILE)],
        cwd=workspace,
        env=dict(os.environ),
    )
    # it has prepared (the environment's package list is written before the wait)
    wait_for(
        "the runner to prepare",
        lambda: (workspace / "environment-packages.txt").exists() or None,
        60,
    )
    return complete, runner


@pytest.mark.timeout(180)
def test_the_command_starts_only_once_the_launch_is_complete_and_sees_its_run_id(
    api: Api, tmp_path: Path
) -> None:
    complete, runner = pending_runner(api, tmp_path / "ws", python(SEEN))
    assert runner.poll() is None, "the runner ended before its launch was complete"
    assert not (complete.workspace / "src" / "seen").exists()
    complete.write()
    assert runner.wait(timeout=60) == 0
    result = json.loads((complete.workspace / "result.json").read_text())
    assert (result["exit_code"], result.get("reason")) == (0, None), result
    assert (complete.workspace / "src" / "seen").read_text() == "made-meanwhile"


@pytest.mark.timeout(180)
def test_a_runner_cancelled_while_it_waits_never_starts_the_command(
    api: Api, tmp_path: Path
) -> None:
    complete, runner = pending_runner(api, tmp_path / "ws", python(SEEN))
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=60) == 0
    result = json.loads((complete.workspace / "result.json").read_text())
    assert result["exit_code"] is None
    assert result["reason"] == "cancelled before the command started"
    assert not (complete.workspace / "src" / "seen").exists()


@pytest.mark.timeout(240)
def test_a_runner_left_waiting_by_a_killed_controller_is_completed_when_adopted(
    tmp_path: Path,
) -> None:
    """The controller was killed after it started the runner on the pending launch file and
    before it made the MLflow run: its successor adopts the runner and completes the launch,
    and the one runner runs the command with the attempt's MLflow run id."""
    settings = Settings(home=tmp_path / "home", local_warm_runner=False)
    svc = ControllerService(settings)
    svc.db.migrate()
    code = "import os; print('run', os.environ['MLFLOW_RUN_ID'])"
    with TestClient(create_app(settings, service=svc, run_supervisor=False)) as client:
        task_id = submit_python(client, code)
        supervisor = svc.supervisor
        supervisor._promote_pending()
        supervisor._admit([])  # STARTING, and nothing launched: the launch is done by hand
        with svc.db.read() as session:
            row = session.get(TaskRow, task_id)
            assert row is not None and row.status == "starting"
            launch = supervisor._launch_of(session, row)
        launch.write_pending()
        runner = subprocess.Popen(
            [sys.executable, "-m", "controller.runtime.runner", str(launch.launch_file)],
            cwd=launch.workspace,
            env={**os.environ, **launch.env},
            start_new_session=True,
        )
        ready = launch.workspace / "environment-packages.txt"
        wait_for("the runner to prepare", lambda: ready.exists() or None, 60)
        assert runner.poll() is None  # waiting for the complete launch file

        assert supervisor._recover_starting(task_id) == "adopted"

        def ended() -> dict[str, object] | None:
            supervisor.watch()
            task = client.get(f"/v1/tasks/{task_id}").json()
            return task if task["status"] not in ("starting", "running") else None

        task = wait_for("the adopted task to end", ended, 120)
        assert (task["status"], task["attempt"]) == ("succeeded", 1), task
        assert runner.wait(timeout=30) == 0
        mlflow_run_id = task["mlflow_run_id"]
        assert mlflow_run_id
        lines = client.get(f"/v1/tasks/{task_id}/logs", params={"limit": 100}).json()["items"]
        assert [x["message"] for x in lines if x["stream"] == "stdout"] == [f"run {mlflow_run_id}"]
