"""Two controller replicas on the real PostgreSQL: kill -9 the leader mid-run, the other leads.

Both are real `tracectl server` processes over one home (the shared volume of a deployment)
and one database; the first to start holds the leader lease. Once tasks are running (on the
one GPU, on an RWO volume, on neither) and others queued behind their leases, the leader is
killed at a random point. The follower must take over within 15 s (the take-over's time in
the store against the kill's), adopt what runs and admit the rest: every task succeeded once
(attempt 1, one admission and one completion in the lineage log), no lease leaked or granted
twice (per unit, grant intervals never overlap), and every log line once, in order.

2 seeds in CI; TRACECTL_FAULT_SEEDS=5 runs 5.
"""

from __future__ import annotations

import itertools
import os
import random
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import create_engine, text

from bench.leases import scratch_postgres
from controller.domain.records import TERMINAL
from tests.server_process import ServerProcess
from tests.waiting import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(600)]

SEEDS = [3, 17, 29, 43, 71][: int(os.environ.get("TRACECTL_FAULT_SEEDS") or 2)]
TASKS = 6
LINES = 30
LEASE_S = "5"
TAKE_OVER_S = 15.0
TASK_CODE = (
    "import time, pathlib\n"
    f"for i in range({LINES}):\n"
    "    print(f'line {i}', flush=True)\n"
    "    time.sleep(0.04)\n"
    "pathlib.Path('out.txt').write_text('done')\n"
)
INVENTORY = (
    "gpu_pools:\n  - name: gpu-worker\n    flavor: nvidia.com/gpu\n    count: 1\n"
    "volumes:\n  - claim: scratch\n    access: RWO\n"
)


def spec_of(i: int) -> dict[str, Any]:
    """Every third task takes the GPU, every third the RWO volume: the rest queue behind."""
    spec: dict[str, Any] = {"command": [sys.executable, "-c", TASK_CODE], "outputs": ["out.txt"]}
    if i % 3 == 0:
        spec["resources"] = {"gpu": 1}
    elif i % 3 == 1:
        spec["resources"] = {"volumes": [{"claim": "scratch"}]}
    return spec


def submit(url: str) -> list[str]:
    tasks = [{"name": f"t{i}", "spec": spec_of(i)} for i in range(TASKS)]
    run = httpx.post(f"{url}/v1/runs", json={"pipeline": "failover", "tasks": tasks}, timeout=30)
    assert run.status_code == 201, run.text
    page = httpx.get(
        f"{url}/v1/tasks", params={"run_id": run.json()["id"], "limit": 100}, timeout=10
    ).json()
    return [task["id"] for task in page["items"]]


@pytest.fixture(scope="module")
def tracking_uri(mlflow_uri: str) -> str:
    MlflowClient(tracking_uri=mlflow_uri).search_experiments()  # its schema, before any kill
    return mlflow_uri


def replica(home: Path, name: str, url: str, tracking_uri: str, inventory: Path) -> ServerProcess:
    env = {
        "TRACECTL_DATABASE_URL": url,
        "TRACECTL_TRACKING_URI": tracking_uri,
        "TRACECTL_INVENTORY_FILE": str(inventory),
        "TRACECTL_REPLICA": name,
        "TRACECTL_LEADER_LEASE_S": LEASE_S,
        "TRACECTL_LEASE_TTL_S": "5",
    }
    return ServerProcess(home, env, ready_timeout_s=300)  # two start at once on a busy machine


def role(server: ServerProcess) -> str | None:
    try:
        return str(httpx.get(f"{server.url}/readyz", timeout=5).json().get("role"))
    except httpx.HTTPError:
        return None


def statuses(url: str, ids: list[str]) -> dict[str, str]:
    return {t: httpx.get(f"{url}/v1/tasks/{t}", timeout=10).json()["status"] for t in ids}


@pytest.mark.parametrize("seed", SEEDS)
def test_killing_the_leader_hands_over_within_15_s_and_loses_nothing(
    tmp_path: Path, postgres: dict[str, str], tracking_uri: str, seed: int
) -> None:
    rng = random.Random(seed)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY)
    home = tmp_path / "home"
    with scratch_postgres(postgres["TRACECTL_POSTGRES_URL"]) as url:
        replicas = [replica(home, name, url, tracking_uri, inventory) for name in "ab"]
        starting = [threading.Thread(target=r.start) for r in replicas]
        for thread in starting:  # both at once: either may win the lease
            thread.start()
        for thread in starting:
            thread.join()
        try:
            roles = [role(r) for r in replicas]
            assert sorted(roles) == ["follower", "leader"], roles
            a, b = replicas if roles[0] == "leader" else replicas[::-1]
            ids = submit(b.url)  # through the follower: every replica serves the API

            def mid_run() -> bool:
                seen = list(statuses(b.url, ids).values())
                return "running" in seen and any(s in ("queued", "pending") for s in seen)

            wait_for("tasks running and queued", mid_run, timeout=120, every=0.1)
            time.sleep(rng.uniform(0.0, 1.5))
            killed_at = datetime.now(UTC)
            a.kill9()
            wait_for("b to lead", lambda: role(b) == "leader", timeout=120)

            def ended() -> dict[str, str] | None:
                seen = statuses(b.url, ids)
                return seen if all(s in TERMINAL for s in seen.values()) else None

            final = wait_for("every task to end", ended, timeout=300, every=0.5)
            assert set(final.values()) == {"succeeded"}, final
            check_logs(b.url, ids)
        finally:
            for server in replicas:
                server.stop()
        check_take_over(url, b.env["TRACECTL_REPLICA"], killed_at)
        check_once(url, ids)
        check_leases(url, ids)


def query(url: str, sql: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql)).all())
    finally:
        engine.dispose()


def check_take_over(url: str, survivor: str, killed_at: datetime) -> None:
    """The survivor took over once, within 15 s of the kill, by the store's own record."""
    [(holder, epoch, acquired_at)] = query(
        url, "SELECT holder, epoch, acquired_at FROM leader WHERE name = 'supervisor'"
    )
    assert holder.startswith(f"{survivor}:") and epoch == 2, (holder, epoch)
    assert (acquired_at - killed_at).total_seconds() < TAKE_OVER_S, (acquired_at, killed_at)


def check_once(url: str, ids: list[str]) -> None:
    """Each task ran one attempt: one attempt row, one admission, one completion."""
    attempts = query(url, "SELECT task_id, attempt FROM attempts ORDER BY task_id")
    assert sorted(attempts) == sorted((t, 1) for t in ids)
    for kind in ("task.admitted", "task.completed"):
        rows = query(url, f"SELECT task_id FROM lineage_events WHERE type = '{kind}'")
        assert sorted(r[0] for r in rows) == sorted(ids), kind


def check_leases(url: str, ids: list[str]) -> None:
    """Every claim granted once, all released, and no unit held by two at a time."""
    leases = query(
        url,
        "SELECT task_id, resource, granted_at, released_at FROM leases "
        "WHERE kind IN ('gpu', 'volume') ORDER BY resource, granted_at",
    )
    claimed = sorted(ids[i] for i in range(TASKS) if i % 3 in (0, 1))
    assert sorted(lease[0] for lease in leases) == claimed  # one lease each, none twice
    assert all(lease[3] is not None for lease in leases), "a lease was never released"
    holders = query(url, "SELECT name FROM resources WHERE exclusive_holder IS NOT NULL")
    assert holders == [], f"leaked holders: {holders}"
    for _, unit in itertools.groupby(leases, key=lambda lease: lease[1]):
        for earlier, later in itertools.pairwise(unit):
            assert earlier[3] <= later[2], (earlier, later)


def check_logs(url: str, ids: list[str]) -> None:
    for task_id in ids:
        lines = httpx.get(
            f"{url}/v1/tasks/{task_id}/logs", params={"limit": 1000}, timeout=10
        ).json()["items"]
        assert [x["seq"] for x in lines] == list(range(1, len(lines) + 1)), task_id
        printed = [x["message"] for x in lines if x["stream"] == "stdout"]
        assert printed == [f"line {i}" for i in range(LINES)], task_id
