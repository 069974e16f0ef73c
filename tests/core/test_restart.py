"""Kill -9 the controller mid-task and start it again: the task is reconciled, nothing lost."""

from __future__ import annotations

import os
import signal
import sys

import httpx
import psutil

from controller.domain.records import TERMINAL
from tests.server_process import ServerProcess
from tests.waiting import wait_for

SLEEPER = (
    "import time, pathlib\nprint('started', flush=True)\ntime.sleep(4)\n"
    "pathlib.Path('done.txt').write_text('ok')\nprint('finished', flush=True)\n"
)


def submit(url: str) -> str:
    run = httpx.post(f"{url}/v1/runs", json={"pipeline": "restart"}).json()["id"]
    task = httpx.post(
        f"{url}/v1/runs/{run}/tasks",
        json={
            "name": "sleeper",
            "spec": {"command": [sys.executable, "-c", SLEEPER], "outputs": ["done.txt"]},
        },
    ).json()
    return str(task["id"])


def wait_running(url: str, task_id: str) -> dict[str, object]:
    def running() -> dict[str, object] | None:
        task = httpx.get(f"{url}/v1/tasks/{task_id}").json()
        return dict(task) if task["status"] == "running" else None

    return wait_for(f"task {task_id} to run", running, 60, every=0.1)


def wait_end(url: str, task_id: str) -> dict[str, object]:
    def ended() -> dict[str, object] | None:  # the API's long poll does the waiting
        task = httpx.get(
            f"{url}/v1/tasks/{task_id}/wait", params={"timeout_s": 5}, timeout=10
        ).json()
        return dict(task) if task["status"] in TERMINAL else None

    return wait_for(f"task {task_id} to end", ended, 90, every=0)


def test_task_survives_controller_kill_and_is_adopted(server: ServerProcess) -> None:
    task_id = submit(server.url)
    running = wait_running(server.url, task_id)
    pid = running["executor_ref"]["pid"]  # type: ignore[index]
    server.kill9()
    assert psutil.pid_exists(pid), "the runner must outlive the controller"
    server.start()
    done = wait_end(server.url, task_id)
    assert done["status"] == "succeeded", done
    assert done["attempt"] == 1  # adopted, not re-run
    lines = httpx.get(f"{server.url}/v1/tasks/{task_id}/logs").json()["items"]
    assert [x["message"] for x in lines if x["stream"] == "stdout"] == ["started", "finished"]
    artifacts = httpx.get(f"{server.url}/v1/tasks/{task_id}/artifacts").json()
    assert [a["path"] for a in artifacts] == ["done.txt"]


def test_task_that_died_while_controller_was_down_is_failed_with_reason(
    server: ServerProcess,
) -> None:
    task_id = submit(server.url)
    running = wait_running(server.url, task_id)
    pid = running["executor_ref"]["pid"]  # type: ignore[index]
    server.kill9()
    os.killpg(pid, signal.SIGKILL)
    server.start()
    done = wait_end(server.url, task_id)
    assert done["status"] == "failed"
    assert done["reason"] == "the runner process ended without a result"
    lineage = httpx.get(f"{server.url}/v1/tasks/{task_id}/lineage").json()
    assert lineage["complete"] and lineage["status"] == "failed"
