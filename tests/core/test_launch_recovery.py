"""A launch cut off after the runner started: the restarted controller adopts the runner, even
one that already finished while the controller was down, and never runs the attempt twice.

Found by tests/faults/test_controller_kill.py (seed 23, one CI run in two): the controller was
killed after it spawned a runner and before it stored the runner's reference; the runner
finished before the controller came back, the process scan found nothing, and the same
attempt ran again (its log restarted at line 1). Replayed here step by step on an in-process
controller with the real local executor.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import psutil
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from controller.api.app import create_app
from controller.config import Settings
from controller.core import launches
from controller.core.service import ControllerService
from controller.domain.records import TaskStatus
from controller.store.schema import TaskRow
from tests.core.conftest import submit_python
from tests.waiting import wait_for

PRINT_LINES = "for i in range(5): print('line', i, flush=True)"


def cut_off(svc: ControllerService, task_id: str) -> None:
    """The store as a controller killed between spawning the runner and storing its
    reference leaves it: STARTING, no reference."""
    with svc.db.write() as session:
        session.execute(
            update(TaskRow)
            .where(TaskRow.id == task_id)
            .values(status=TaskStatus.STARTING.value, executor_ref=None)
        )


def gone(pid: int) -> None:
    """Wait for runner PID to end and be reaped: by this process when it started the runner
    cold, by the warm runner that forked it otherwise."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
        return
    wait_for(
        "the runner to end",
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
        60,
        0.05,
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("warm", [True, False], ids=["forked", "cold"])
@pytest.mark.parametrize("runner_state", ["finished", "running"])
def test_a_cut_off_launch_is_adopted_not_run_again(
    tmp_path: Path, runner_state: str, warm: bool
) -> None:
    settings = Settings(home=tmp_path / "home", local_warm_runner=warm)
    svc = ControllerService(settings)
    svc.db.migrate()
    code = (
        PRINT_LINES if runner_state == "finished" else f"{PRINT_LINES}\nimport time; time.sleep(2)"
    )
    with TestClient(create_app(settings, service=svc, run_supervisor=False)) as client:
        task_id = submit_python(client, code)

        svc.supervisor.admit()
        wait_for(
            "the task to run",
            lambda: client.get(f"/v1/tasks/{task_id}").json()["status"] == "running",
            60,
            0.05,
        )
        workspace = launches.workspace(svc.settings, task_id, 1)
        wait_for("the runner to start", (workspace / "runner.pid").exists, 60, 0.05)
        first_runner = (workspace / "runner.pid").read_text()
        if runner_state == "finished":  # and gone, reaped, as a runner of a dead controller is
            gone(int(first_runner))
            assert (workspace / "result.json").exists()
        cut_off(svc, task_id)

        assert svc.supervisor.launcher.recover_starting(task_id) == "adopted"

        def ended() -> dict[str, Any] | None:
            task: dict[str, Any] = client.get(f"/v1/tasks/{task_id}").json()
            svc.supervisor.watch()
            return None if task["status"] in ("starting", "running") else task

        task = wait_for("the adopted task to end", ended, 60, 0.05)
        assert (task["status"], task["attempt"]) == ("succeeded", 1), task
        assert (workspace / "runner.pid").read_text() == first_runner  # one runner, never two
        lines = client.get(f"/v1/tasks/{task_id}/logs", params={"limit": 100}).json()["items"]
        assert [x["seq"] for x in lines] == list(range(1, len(lines) + 1))
        assert [x["message"] for x in lines if x["stream"] == "stdout"] == [
            f"line {i}" for i in range(5)
        ]
