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

from controller.domain.launch import LaunchDocument
from controller.ports import LAUNCH_FILE, Launch
from tests.core.conftest import Api, python
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
