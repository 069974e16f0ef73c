"""kill -9 the controller while a task holds the only GPU, start it again: both GPU tasks
finish, every lease ends released, and the two holds never overlap.

The lease TTL is shorter than the downtime, so the holder's lease is expired when the
controller comes back: it must still not be handed over while the holder runs.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.domain.records import TERMINAL
from tests.server_process import ServerProcess
from tests.waiting import wait_for

SLEEP_3S = [sys.executable, "-c", "import time; time.sleep(3)"]


class Server(ServerProcess):
    def __init__(self, home: Path, inventory: Path) -> None:
        super().__init__(
            home, {"TRACECTL_INVENTORY_FILE": str(inventory), "TRACECTL_LEASE_TTL_S": "2"}
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("gpu_pools: [{name: gpu-worker, count: 1}]\n")
    srv = Server(tmp_path / "home", inventory)
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.timeout(300)
def test_kill9_while_holding_the_gpu(server: Server) -> None:
    run = httpx.post(f"{server.url}/v1/runs", json={"pipeline": "kill9"}).json()["id"]
    ids = [
        httpx.post(
            f"{server.url}/v1/runs/{run}/tasks",
            json={"name": f"gpu-{i}", "spec": {"command": SLEEP_3S, "resources": {"gpu": 1}}},
        ).json()["id"]
        for i in range(2)
    ]

    most_active = 0

    def gpu_holder() -> str | None:
        nonlocal most_active
        active = server.get("/v1/leases", state="active")["items"]
        most_active = max(most_active, len(active))
        held = active and server.get(f"/v1/tasks/{active[0]['task_id']}")["status"] == "running"
        return str(active[0]["task_id"]) if held else None

    first = wait_for("a task to get the GPU", gpu_holder, timeout=60, every=0.1)

    server.kill9()
    time.sleep(2.5)  # longer than the TTL: the holder's lease expires while we are down
    server.start()

    def ended() -> list[dict[str, Any]] | None:
        nonlocal most_active
        most_active = max(most_active, len(server.get("/v1/leases", state="active")["items"]))
        tasks = [server.get(f"/v1/tasks/{t}") for t in ids]
        return tasks if all(t["status"] in TERMINAL for t in tasks) else None

    tasks = wait_for("both tasks to finish", ended, timeout=120)

    assert [t["status"] for t in tasks] == ["succeeded", "succeeded"], tasks
    assert most_active == 1
    assert server.get("/v1/leases", state="active")["items"] == []
    leases = server.get("/v1/leases", state="all")["items"]
    assert {x["task_id"] for x in leases} == set(ids)
    assert leases[0]["task_id"] == first
    spans = sorted(
        (
            datetime.fromisoformat(x["granted_at"]),
            datetime.fromisoformat(x["released_at"]),
            x["fencing_token"],
        )
        for x in leases
    )
    for (_g0, r0, t0), (g1, _r1, t1) in itertools.pairwise(spans):
        assert g1 >= r0 and t1 > t0, f"two holds of the one GPU overlapped: {spans}"
    # the second task started only after the first one's process was gone
    finished_first = datetime.fromisoformat(tasks[ids.index(first)]["finished_at"])
    other = tasks[1 - ids.index(first)]
    assert datetime.fromisoformat(other["started_at"]) >= finished_first
    assert server.get("/v1/resources")["gpu_pools"][0]["in_use"] == 0
