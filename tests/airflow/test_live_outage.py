"""A 60 s controller outage while a DAG runs on the real Airflow (deploy/local/airflow): the
controller process is killed (-9) while the awaited and the deferred tasks wait on their
tracectl tasks, and started again on the same home and port a minute later. The DAG run
succeeds, and nothing ran twice: each command started once, each tracectl task has one
attempt, and the Run holds one tracectl task per Airflow task."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.airflow.test_live_selfcheck import Selfcheck, close_selfcheck, open_selfcheck
from tests.server_process import ServerProcess
from tests.waiting import poll_until

pytestmark = [pytest.mark.airflow, pytest.mark.slow, pytest.mark.timeout(900)]
OUTAGE_S = 60.0
# appends a line when it starts (a second execution would add one), then outlasts the outage
STARTS_ONCE = "import sys, time; open(sys.argv[1], 'a').write('started\\n'); time.sleep(90)"


@pytest.fixture
def served(tmp_path: Path, mlflow_uri: str) -> Iterator[ServerProcess]:
    # a start takes up to a minute on the shared, loaded test machine
    srv = ServerProcess(
        tmp_path / "home", {"TRACECTL_TRACKING_URI": mlflow_uri}, ready_timeout_s=300
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def selfcheck(airflow: dict[str, str], served: ServerProcess) -> Iterator[Selfcheck]:
    check = open_selfcheck(airflow, served.url)
    yield check
    close_selfcheck(check)


def test_a_dag_run_survives_a_minute_without_the_controller_and_runs_nothing_twice(
    selfcheck: Selfcheck, served: ServerProcess, tmp_path: Path
) -> None:
    marker = tmp_path / "starts"
    run_id = selfcheck.trigger(["python3", "-c", STARTS_ONCE, str(marker)])
    selfcheck.ti_when(run_id, "awaited", ("running",))
    selfcheck.ti_when(run_id, "deferred", ("deferred",))
    ids = {t: selfcheck.tracectl_task(run_id, t) for t in ("awaited", "deferred")}
    for task_id in ids.values():
        read = functools.partial(served.get, f"/v1/tasks/{task_id}")
        task = poll_until(read, lambda t: t["status"] == "running", 300, 0.5)
        assert task["status"] == "running", f"{task_id} did not start"
    served.kill9()
    down_at = time.monotonic()
    time.sleep(OUTAGE_S)
    served.start()
    print(f"controller down for {time.monotonic() - down_at:.0f}s")

    run = selfcheck.ended(run_id)
    states = {t: selfcheck.ti(run_id, t)["state"] for t in ("bash", "awaited", "deferred")}
    assert run["state"] == "success", states
    assert marker.read_text().splitlines() == ["started"] * 3  # bash, awaited, deferred
    run_of = {served.get(f"/v1/tasks/{i}")["run_id"] for i in ids.values()}
    assert len(run_of) == 1
    tasks = served.get("/v1/tasks", run_id=run_of.pop(), limit=100)["items"]
    assert sorted(t["name"] for t in tasks) == ["awaited", "deferred"]
    assert {t["id"]: (t["status"], t["attempt"]) for t in tasks} == {
        task_id: ("succeeded", 1) for task_id in ids.values()
    }
