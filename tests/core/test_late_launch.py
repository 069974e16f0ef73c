"""A local runner starts before its attempt's MLflow run exists: it prepares on the pending
launch file and starts the command only once the controller has completed it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.config import Settings
from controller.core.service import ControllerService
from controller.domain.launch import LAUNCH_COMPLETE_SIGNAL, LaunchDocument
from controller.executors.local_warm import WarmRunner
from controller.ports import LAUNCH_FILE, Launch
from tests.core.conftest import Api, python, submit_python
from tests.waiting import wait_for

SEEN = "import os; open('seen', 'w').write(os.environ['MLFLOW_RUN_ID'])"


def late_launch(api: Api, workspace: Path, command: list[str]) -> Launch:
    """A complete launch of COMMAND made from a real task's launch document (run to its end
    first), its MLflow run id "made-meanwhile"; nothing written yet."""
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
    return Launch(document.with_env({**document.env, "MLFLOW_RUN_ID": "made-meanwhile"}), workspace)


def write_pending(complete: Launch) -> None:
    document = complete.document
    Launch(
        document.with_env({**document.env, "MLFLOW_RUN_ID": ""}), complete.workspace
    ).write_pending()


def wait_prepared(workspace: Path) -> None:
    """The runner has prepared (the environment's package list is written before the wait)."""
    ready = workspace / "environment-packages.txt"
    wait_for("the runner to prepare", lambda: ready.exists() or None, 60)


def pending_runner(
    api: Api, workspace: Path, command: list[str]
) -> tuple[Launch, subprocess.Popen[bytes]]:
    """A runner started cold on a pending launch file, and the complete launch it waits for."""
    complete = late_launch(api, workspace, command)
    write_pending(complete)
    runner = subprocess.Popen(
        [sys.executable, "-m", "controller.runtime.runner", str(workspace / LAUNCH_FILE)],
        cwd=workspace,
        env=dict(os.environ),
    )
    wait_prepared(workspace)
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
        supervisor.pending.promote(svc.db, supervisor.admitter)
        supervisor.launcher.admit([])  # STARTING, and nothing launched: the launch is done by hand
        launch = supervisor.launcher.launch_of(task_id)
        assert launch is not None  # STARTING
        launch.write_pending()
        runner = subprocess.Popen(
            [sys.executable, "-m", "controller.runtime.runner", str(launch.launch_file)],
            cwd=launch.workspace,
            env={**os.environ, **launch.env},
            start_new_session=True,
        )
        wait_prepared(launch.workspace)
        assert runner.poll() is None  # waiting for the complete launch file

        assert supervisor.launcher.recover_starting(task_id) == "adopted"

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


SIGNALS_SEEN = (
    "import signal; open('seen', 'w').write(repr(("
    "signal.SIGUSR1 in signal.pthread_sigmask(signal.SIG_BLOCK, []), "
    "signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL)))"
)


@pytest.mark.timeout(180)
def test_a_forked_runner_waits_for_the_completion_signal_and_its_command_never_inherits_it(
    api: Api, tmp_path: Path
) -> None:
    """A fork of the warm runner waits for the completion signal (blocked from the fork on, so
    an early one does not end it), and the command it starts has the signal unblocked and at
    its default action."""
    complete = late_launch(api, tmp_path / "ws", python(SIGNALS_SEEN))
    write_pending(complete)
    warm = WarmRunner(dict(os.environ), lambda: None)
    try:
        out = complete.workspace / "runner.out"
        pid, _ = warm.spawn(complete.launch_file, complete.workspace, dict(os.environ), out)
        wait_prepared(complete.workspace)
        # Too early (the file is still pending): taken by the wait, it does not end the runner,
        # which, unless it had the signal blocked from the fork on, it would.
        os.kill(pid, LAUNCH_COMPLETE_SIGNAL)
        assert not (complete.workspace / "src" / "seen").exists()
        complete.write()
        os.kill(pid, LAUNCH_COMPLETE_SIGNAL)
        result_file = complete.workspace / "result.json"
        wait_for("the runner's result", lambda: result_file.exists() or None, 60)
    finally:
        warm.close()
    result = json.loads(result_file.read_text())
    assert (result["exit_code"], result.get("reason")) == (0, None), out.read_text()
    assert (complete.workspace / "src" / "seen").read_text() == "(False, True)"


@pytest.mark.timeout(180)
def test_an_mlflow_failure_kills_the_waiting_runner_and_fails_the_task_saying_why(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the tracking server refused the run")

    service = api.client.app.state.service  # type: ignore[attr-defined]
    monkeypatch.setattr(service.supervisor.tracking, "start_run", refuse)
    task = api.submit(api.run(), "t", command=python("open('ran', 'w').write('yes')"))
    done = api.wait(task["id"])
    assert done["status"] == "failed", done
    assert done["reason"] == "launch failed: the tracking server refused the run", done
    workspace = api.settings.workspaces / task["id"] / "1"
    runner = int((workspace / "runner.pid").read_text())  # forked, then left waiting

    def gone() -> bool | None:
        try:
            return psutil.Process(runner).status() == psutil.STATUS_ZOMBIE or None
        except psutil.NoSuchProcess:
            return True

    wait_for("the waiting runner to be killed", gone, 30)
    assert not (workspace / "src" / "ran").exists()


def test_a_pending_launch_file_never_replaces_the_complete_one_written_first(
    api: Api, tmp_path: Path
) -> None:
    """The MLflow thread may write the complete file before the executor writes the pending
    one: the pending one is then not written (a hard link made only where no file is)."""
    complete = late_launch(api, tmp_path / "ws", python("print('ok')"))
    complete.write()
    write_pending(complete)
    written = LaunchDocument.read(complete.launch_file)
    assert (written.complete, written.env["MLFLOW_RUN_ID"]) == (True, "made-meanwhile")
    assert sorted(p.name for p in complete.workspace.iterdir()) == [LAUNCH_FILE]
