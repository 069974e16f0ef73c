"""Local runners are forked from a warm runner process (no interpreter start per task), start
cold when it is switched off or gone, and behave the same either way."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.config import Settings
from controller.executors.local_warm import WarmRunner
from tests.core.conftest import Api, python
from tests.waiting import wait_for

SLEEPER = "import time; print('up', flush=True); time.sleep(1.5); print('done')"


@pytest.fixture(params=[True, False], ids=["warm", "cold"])
def local(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Api]:
    with TestClient(
        create_app(settings.model_copy(update={"local_warm_runner": request.param}))
    ) as client:
        yield Api(client, client.app.state.service.settings)  # type: ignore[attr-defined]


def runner_parent(api: Api, task_id: str) -> psutil.Process:
    """The process that started the running task's runner."""
    ref = api.wait_status(task_id, "running")["executor_ref"]
    parent = psutil.Process(int(ref["pid"])).parent()
    assert parent is not None
    return parent


def test_a_runner_is_forked_warm_or_started_cold_and_the_task_succeeds(local: Api) -> None:
    run = local.run()
    task = local.submit(run, "sleeper", command=python(SLEEPER))
    parent = runner_parent(local, task["id"])
    if local.settings.local_warm_runner:
        assert "controller.runtime.warm" in parent.cmdline()
    else:
        assert parent.pid == os.getpid()  # the controller (this test) started it
    done = local.wait(task["id"])
    assert (done["status"], done["exit_code"]) == ("succeeded", 0), done
    lines = local.logs(task["id"])
    assert [x["message"] for x in lines if x["stream"] == "stdout"] == ["up", "done"]


def test_a_killed_warm_runner_is_replaced_and_its_runners_live_on(api: Api) -> None:
    run = api.run()
    first = api.submit(run, "first", command=python(SLEEPER))
    warm = runner_parent(api, first["id"])
    assert "controller.runtime.warm" in warm.cmdline()
    warm.send_signal(signal.SIGKILL)
    second = api.submit(run, "second", command=python("print('after')"))
    assert api.wait(second["id"])["status"] == "succeeded"
    assert api.wait(first["id"])["status"] == "succeeded"  # its runner outlived the warm one


def test_cancel_stops_a_forked_runner_and_its_command(api: Api) -> None:
    run = api.run()
    task = api.submit(run, "long", command=python("import time; time.sleep(600)"))
    ref = api.wait_status(task["id"], "running")["executor_ref"]
    assert api.client.post(f"/v1/tasks/{task['id']}/cancel").status_code == 200
    assert api.wait(task["id"])["status"] == "cancelled"
    wait_for("the runner to end", lambda: not psutil.pid_exists(int(ref["pid"])) or None, 30)


def test_a_runner_that_ends_at_once_still_has_its_start_time(tmp_path: Path) -> None:
    """Replays the bench's `process PID not found`: a runner that ended and was reaped by the
    warm runner before the controller asked the OS for its start time failed its launch."""
    ended = threading.Event()
    warm = WarmRunner(dict(os.environ), ended.set)
    try:
        pid, create_time = warm.spawn(
            tmp_path / "missing.json", tmp_path, os.environ, tmp_path / "out"
        )
        assert ended.wait(30)  # gone and reaped: the OS can no longer say when it started
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        assert abs(create_time - time.time()) < 30
        assert "missing.json" in (tmp_path / "out").read_text()  # the runner's own error
    finally:
        warm.close()
