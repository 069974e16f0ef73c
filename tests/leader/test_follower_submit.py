"""A submit on a follower replica wakes the leader's admission through the store.

Two real `tracectl server` processes over one home and one store (SQLite, and the real
PostgreSQL), whose supervisor rounds are 600 s apart: a task submitted through the follower
runs only if the follower's signal (NOTIFY, or the counter row) wakes the leader. Both send
OpenLineage over HTTP (to a port where nothing listens: the events wait in the spool), which
a second replica on the same home could not start with while each opened the sink's spool.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.leases import scratch_postgres
from controller.loopback import free_port
from tests.server_process import ServerProcess
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(600)
ROUND_S = "600"  # far longer than the test waits: only a wake admits the task


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {}  # both replicas' home holds the one SQLite file
        return
    postgres = request.getfixturevalue("postgres")
    with scratch_postgres(postgres["TRACECTL_POSTGRES_URL"]) as url:
        yield {"TRACECTL_DATABASE_URL": url}


@pytest.fixture
def leader_and_follower(
    tmp_path: Path, store_env: dict[str, str]
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    env = {
        **store_env,
        "TRACECTL_SUPERVISOR_INTERVAL_S": ROUND_S,
        "TRACECTL_LEADER_LEASE_S": "5",
        "TRACECTL_OPENLINEAGE_URL": f"http://127.0.0.1:{free_port()}/api/v1/lineage",
    }
    first = ServerProcess(tmp_path / "home", {**env, "TRACECTL_REPLICA": "a"}, 300)
    first.start()  # alone, so it leads
    second = ServerProcess(tmp_path / "home", {**env, "TRACECTL_REPLICA": "b"}, 300)
    try:
        second.start()
        assert [role(first), role(second)] == ["leader", "follower"]
        yield first, second
    finally:
        stop = [threading.Thread(target=s.stop) for s in (second, first)]
        for thread in stop:
            thread.start()
        for thread in stop:
            thread.join()


def role(server: ServerProcess) -> str:
    return str(server.get("/readyz")["role"])


def test_a_task_submitted_on_the_follower_runs_before_the_leaders_next_round(
    leader_and_follower: tuple[ServerProcess, ServerProcess],
) -> None:
    _leader, follower = leader_and_follower
    task = {"name": "t", "spec": {"command": [sys.executable, "-c", "print('woken')"]}}
    run = httpx.post(
        f"{follower.url}/v1/runs", json={"pipeline": "wake", "tasks": [task]}, timeout=30
    )
    assert run.status_code == 201, run.text
    tasks = follower.get("/v1/tasks", run_id=run.json()["id"])["items"]

    def ended() -> str | None:
        status = str(follower.get(f"/v1/tasks/{tasks[0]['id']}")["status"])
        return status if status in ("succeeded", "failed", "cancelled") else None

    assert wait_for("the task to end", ended, timeout=240, every=0.5) == "succeeded"
