"""GET /v1/tasks/{id}/wait holds no thread while it waits: 60 waiters on a running task (more
than the 40 threads a sync route could take) leave the controller's thread count low, the
controller answers other calls meanwhile, and every waiter returns when the task ends."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from tests.server_process import ServerProcess
from tests.waiting import wait_for

WAITERS = 60
SLEEPS = ["python", "-c", "import time; time.sleep(600)"]


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no thread count for pid {pid}")


def test_many_waiters_hold_no_thread_each_and_all_see_the_end(server: ServerProcess) -> None:
    assert server.proc is not None
    http = httpx.Client(base_url=server.url, timeout=120)
    run = http.post("/v1/runs", json={"pipeline": "waiters"}).json()["id"]
    task = http.post(f"/v1/runs/{run}/tasks", json={"name": "sleeps", "spec": {"command": SLEEPS}})
    task_id = task.json()["id"]
    wait_for(
        "the task to run", lambda: http.get(f"/v1/tasks/{task_id}").json()["status"] == "running"
    )
    seen: list[str] = []

    def wait() -> None:
        answer = httpx.get(
            f"{server.url}/v1/tasks/{task_id}/wait", params={"timeout_s": 120}, timeout=180
        )
        seen.append(answer.json()["status"])

    waiters = [threading.Thread(target=wait) for _ in range(WAITERS)]
    for waiter in waiters:
        waiter.start()
    samples: list[int] = []
    pid = server.proc.pid

    def sampled() -> bool:
        samples.append(threads_of(pid))
        return len(samples) >= 40

    wait_for("40 samples of the thread count", sampled, every=0.1)
    assert http.get(f"/v1/tasks/{task_id}").json()["status"] == "running" and not seen
    assert max(samples) < 40, f"threads while {WAITERS} waited: {samples}"
    assert http.post(f"/v1/tasks/{task_id}/cancel").status_code == 200
    for waiter in waiters:
        waiter.join()
    assert seen == ["cancelled"] * WAITERS
