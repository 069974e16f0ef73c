"""dags/tracectl_selfcheck.py through the real Airflow 3 (deploy/local/airflow) against a real
controller: a deferred task resumes within 1 s of its tracectl task's end (by the recorded
times: the controller's finished_at and the time Airflow recorded the trigger's event), and
an Airflow task that is cleared or fails cancels its controller task, awaited and deferred."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.airflow.conftest import Controller
from tests.airflow.test_live_airflow import AirflowApi
from tests.waiting import poll_until, wait_for

pytestmark = [pytest.mark.airflow, pytest.mark.slow, pytest.mark.timeout(900)]
DAG_ID = "tracectl_selfcheck"
OVER = ("success", "failed")  # a DAG run's final states


def ok(status: int) -> bool:
    return status == 200


class Selfcheck:
    """The selfcheck DAG over Airflow's REST API."""

    def __init__(self, api: AirflowApi) -> None:
        self.api = api

    def trigger(self, command: list[str]) -> str:
        body = {"logical_date": None, "conf": {"command": command}}
        return str(self.api.ok("POST", f"/dags/{DAG_ID}/dagRuns", json=body)["dag_run_id"])

    def ti(self, run_id: str, task: str) -> dict[str, Any]:
        path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task}"
        return dict(self.api.ok("GET", path))

    def ti_when(self, run_id: str, task: str, states: tuple[str, ...]) -> dict[str, Any]:
        ti = poll_until(lambda: self.ti(run_id, task), lambda ti: ti["state"] in states, 600, 0.5)
        assert ti["state"] in states, f"{task} still {ti['state']}"
        return ti

    def ended(self, run_id: str) -> dict[str, Any]:
        path = f"/dags/{DAG_ID}/dagRuns/{run_id}"
        run = poll_until(lambda: self.api.ok("GET", path), lambda run: run["state"] in OVER, 600, 1)
        assert run["state"] in OVER, f"DAG run {run_id} still {run['state']}"
        return dict(run)

    def xcom(self, run_id: str, task: str, key: str) -> Any:
        path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task}/xcomEntries/{key}"
        response = poll_until(
            lambda: self.api.call("GET", path, params={"deserialize": "true"}),
            lambda response: response.status_code == 200,
            300,
            0.5,
        )
        assert response.status_code == 200, f"{task} pushed no {key}"
        value = response.json()["value"]
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        return value

    def tracectl_task(self, run_id: str, task: str) -> str:
        return str(self.xcom(run_id, task, "tracectl_task_id"))


def open_selfcheck(airflow: dict[str, str], controller_url: str) -> Selfcheck:
    """The selfcheck DAG, unpaused, with the connection pointing at CONTROLLER_URL."""
    client = AirflowApi(airflow)
    client.call("DELETE", "/connections/tracectl_default")
    client.ok(
        "POST",
        "/connections",
        json={"connection_id": "tracectl_default", "conn_type": "tracectl", "host": controller_url},
    )
    # the DAG processor parses dags/ on its own schedule
    parsed = poll_until(lambda: client.call("GET", f"/dags/{DAG_ID}").status_code, ok, 180, 2)
    assert parsed == 200, f"{DAG_ID} was not parsed within 180s"
    client.ok("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    return Selfcheck(client)


def close_selfcheck(selfcheck: Selfcheck) -> None:
    selfcheck.api.call("DELETE", "/connections/tracectl_default")
    selfcheck.api.call("PATCH", f"/dags/{DAG_ID}", json={"is_paused": True})


@pytest.fixture(scope="module")
def selfcheck(airflow: dict[str, str], controller: Controller) -> Iterator[Selfcheck]:
    check = open_selfcheck(airflow, controller.url)
    yield check
    close_selfcheck(check)


def at(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def settled(controller: Controller, task_id: str) -> dict[str, Any]:
    return controller.settled(task_id)


def test_a_deferred_task_resumes_within_a_second_of_its_tracectl_tasks_end(
    selfcheck: Selfcheck, controller: Controller
) -> None:
    fired, resumed = [], []
    for _ in range(3):
        # ends later than resume_settle_s (10 s) after the defer: resumes at once
        run_id = selfcheck.trigger(["python3", "-c", "import time; time.sleep(14)"])
        assert selfcheck.ended(run_id)["state"] == "success"
        ti = selfcheck.ti(run_id, "deferred")
        task = controller.get(f"/v1/tasks/{selfcheck.tracectl_task(run_id, 'deferred')}")
        assert (ti["state"], task["status"]) == ("success", "succeeded")
        ended = at(task["finished_at"])
        # when the trigger saw the end (its event's time) and when Airflow recorded the
        # event, putting the task instance back to scheduled (after it had started: it deferred)
        fired.append(float(selfcheck.xcom(run_id, "deferred", "trigger_fired_at")) - ended)
        assert at(ti["scheduled_when"]) > at(ti["start_date"]), ti
        resumed.append(at(ti["scheduled_when"]) - ended)
    print(f"trigger fired after the task's end: {[f'{s:.2f}s' for s in fired]}")
    print(f"Airflow recorded the resume after it: {[f'{s:.2f}s' for s in resumed]}")
    assert all(0 <= s < 1.0 for s in fired), fired
    # Airflow's trigger runner hands events over once a second (triggerer_job_runner.arun)
    assert all(0 <= s < 2.0 for s in resumed), resumed


def test_a_task_that_ends_right_after_the_defer_resumes_after_the_settle_and_succeeds(
    selfcheck: Selfcheck, controller: Controller
) -> None:
    # Resumed at once, such a task failed in 2 of 5 runs on Airflow 3.3.2 (the deferring
    # worker's exit, seen by the scheduler after the resumed try was queued, failed it).
    for _ in range(3):
        run_id = selfcheck.trigger(["python3", "-c", "print('quick')"])
        assert selfcheck.ended(run_id)["state"] == "success"
        ti = selfcheck.ti(run_id, "deferred")
        task = controller.get(f"/v1/tasks/{selfcheck.tracectl_task(run_id, 'deferred')}")
        fired = float(selfcheck.xcom(run_id, "deferred", "trigger_fired_at"))
        # deferred at once, fired no sooner than resume_settle_s (10 s) after it started
        assert fired - at(ti["start_date"]) >= 10.0, (fired, ti["start_date"])
        assert (ti["state"], task["status"]) == ("success", "succeeded")


SLEEPS = ["python3", "-c", "import time; time.sleep(600)"]
# The triggerer takes a new trigger within about a second of the defer; a deferred task
# cleared before that has no running trigger whose on_kill could cancel (docs/airflow.md).
TRIGGER_TAKEN_S = 3.0


@contextlib.contextmanager
def sleeping_run(selfcheck: Selfcheck) -> Iterator[str]:
    """A selfcheck DAG run of SLEEPS; every task of it ends failed afterwards, whatever the
    test found, so no later test waits for a worker slot this one still holds."""
    run_id = selfcheck.trigger(SLEEPS)
    try:
        yield run_id
    finally:
        for task in ("bash", "awaited", "deferred"):
            selfcheck.api.call(
                "PATCH",
                f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task}",
                json={"new_state": "failed"},
            )
        selfcheck.api.call("PATCH", f"/dags/{DAG_ID}/dagRuns/{run_id}", json={"state": "failed"})


def waiting(selfcheck: Selfcheck, run_id: str, task: str) -> None:
    """Wait until TASK is held: running in a worker, or deferred with a triggerer running
    its trigger."""
    if task == "awaited":
        selfcheck.ti_when(run_id, task, ("running",))
        return
    selfcheck.ti_when(run_id, task, ("deferred",))
    wait_for(
        f"a triggerer to take the trigger of {task}",
        lambda: (selfcheck.ti(run_id, task).get("trigger") or {}).get("triggerer_id"),
        timeout=120,
    )
    time.sleep(TRIGGER_TAKEN_S)


def started(selfcheck: Selfcheck, run_id: str, task: str) -> None:
    """Wait until TASK is running in a worker (awaited) or deferred."""
    selfcheck.ti_when(run_id, task, ("running",) if task == "awaited" else ("deferred",))


def clear(selfcheck: Selfcheck, run_id: str, task: str) -> None:
    body = {"dry_run": False, "dag_run_id": run_id, "task_ids": [task], "only_failed": False}
    selfcheck.api.ok("POST", f"/dags/{DAG_ID}/clearTaskInstances", json=body)


def mark_failed(selfcheck: Selfcheck, run_id: str, task: str) -> None:
    path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task}"
    selfcheck.api.ok("PATCH", path, json={"new_state": "failed"})


Step = Callable[[Selfcheck, str, str], None]
# Each action on an Airflow task: what is waited for first, and the reason its cancelled
# tracectl task then gives (None: any reason).
ACTIONS: dict[str, tuple[Step, Step, str | None]] = {
    "clear": (waiting, clear, "cancelled on request"),
    "fail": (started, mark_failed, None),
}


@pytest.mark.parametrize("task", ["awaited", "deferred"])
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_an_airflow_task_cleared_or_failed_while_it_waits_cancels_its_tracectl_task(
    selfcheck: Selfcheck, controller: Controller, action: str, task: str
) -> None:
    wait, act, reason = ACTIONS[action]
    with sleeping_run(selfcheck) as run_id:
        wait(selfcheck, run_id, task)
        first = selfcheck.tracectl_task(run_id, task)
        act(selfcheck, run_id, task)
        ended = settled(controller, first)
        assert ended["status"] == "cancelled", ended
        assert reason is None or ended["reason"] == reason, ended
