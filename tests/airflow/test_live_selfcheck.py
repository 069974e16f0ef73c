"""dags/tracectl_selfcheck.py through the real Airflow 3 (deploy/local/airflow) against a real
controller: quick deferred tasks all succeed, each ended by its trigger within 1 s of its
tracectl task's end (by the recorded times: the controller's finished_at, the trigger's XComs
and the task instance's end_date), and an Airflow task that is cleared or fails cancels its
controller task, awaited and deferred, also when cleared before a triggerer took it."""

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

    def log(self, run_id: str, task: str, try_number: int) -> str:
        """The task log of one try, as the UI shows it (the trigger's lines merged in)."""
        path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task}/logs/{try_number}"
        body = self.api.ok("GET", path, params={"full_content": "true"})
        return "\n".join(
            str(e.get("event", e)) if isinstance(e, dict) else str(e) for e in body["content"]
        )


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


QUICK = (["python3", "-c", "print('quick')"], ["python3", "-c", "import time; time.sleep(3)"])


def test_quick_deferred_tasks_all_succeed_ending_within_a_second_of_their_tracectl_tasks_end(
    selfcheck: Selfcheck, controller: Controller
) -> None:
    # Tasks that end before or right after the defer: the case Airflow 3.3's scheduler failed
    # (2 of 5 runs) when the operator resumed in a worker; the trigger now ends the task.
    run_ids = [selfcheck.trigger(QUICK[i % 2]) for i in range(10)]
    fired, recorded = [], []
    for run_id in run_ids:
        assert selfcheck.ended(run_id)["state"] == "success", run_id
        ti = selfcheck.ti(run_id, "deferred")
        task = controller.get(f"/v1/tasks/{selfcheck.tracectl_task(run_id, 'deferred')}")
        assert (ti["state"], ti["try_number"], task["status"]) == ("success", 1, "succeeded")
        assert selfcheck.xcom(run_id, "deferred", "return_value") == task["id"]
        links = selfcheck.api.ok(
            "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/deferred/links"
        )
        assert (
            links["extra_links"]["tracectl lineage"]
            == f"{controller.url}/v1/tasks/{task['id']}/lineage"
        )
        # from the task's end, or from the trigger's start if the task ended before it: when
        # the trigger saw the end, and when Airflow recorded the task instance's end (the
        # triggerer hands events over once a second)
        since = max(
            at(task["finished_at"]), selfcheck.xcom(run_id, "deferred", "trigger_started_at")
        )
        fired.append(float(selfcheck.xcom(run_id, "deferred", "trigger_fired_at")) - since)
        recorded.append(at(ti["end_date"]) - since)
    print(f"trigger fired after the task's end: {[f'{s:.2f}s' for s in fired]}")
    print(f"Airflow recorded the end after it: {[f'{s:.2f}s' for s in recorded]}")
    assert all(0 <= s < 1.0 for s in fired), fired
    assert all(0 <= s < 2.0 for s in recorded), recorded


def test_a_deferred_task_whose_tracectl_task_fails_fails_with_the_reason_in_its_log(
    selfcheck: Selfcheck, controller: Controller
) -> None:
    run_id = selfcheck.trigger(["python3", "-c", "import sys; print('boom'); sys.exit(3)"])
    assert selfcheck.ended(run_id)["state"] == "failed"
    ti = selfcheck.ti(run_id, "deferred")
    task = controller.get(f"/v1/tasks/{selfcheck.tracectl_task(run_id, 'deferred')}")
    assert (ti["state"], task["status"]) == ("failed", "failed")
    log = selfcheck.log(run_id, "deferred", ti["try_number"])
    assert "[tracectl stdout] boom" in log
    assert f"({task['id']}) failed: exited with code 3" in log, log[-3000:]


SLEEPS = ["python3", "-c", "import time; time.sleep(600)"]
# The triggerer takes a new trigger within about a second of the defer; the clear test waits
# for that (the trigger's on_kill cancels); the last test clears before it.
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


def test_clearing_a_deferred_task_at_once_cancels_its_tracectl_task_and_submits_anew(
    selfcheck: Selfcheck, controller: Controller
) -> None:
    # Cleared as soon as it shows deferred, most often before a triggerer took its trigger
    # (no on_kill then): the next try sees a task its cleared try submitted and cancels it.
    with sleeping_run(selfcheck) as run_id:
        path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/deferred"
        wait_for(
            "deferred to defer",
            lambda: selfcheck.ti(run_id, "deferred")["state"] == "deferred",
            timeout=300,
            every=0.05,
        )
        taken = (selfcheck.api.ok("GET", path).get("trigger") or {}).get("triggerer_id")
        first = selfcheck.tracectl_task(run_id, "deferred")
        clear(selfcheck, run_id, "deferred")
        print(f"cleared with triggerer_id={taken}")
        ended = settled(controller, first)
        assert (ended["status"], ended["reason"]) == ("cancelled", "cancelled on request"), ended
        again = wait_for(
            "the next try's tracectl task",
            lambda: (t := selfcheck.tracectl_task(run_id, "deferred")) != first and t,
            timeout=300,
        )
        task = controller.get(f"/v1/tasks/{again}")
        assert (task["name"], task["spec"]["labels"]["airflow_try_number"]) == (
            "deferred.try2",
            "2",
        ), task
