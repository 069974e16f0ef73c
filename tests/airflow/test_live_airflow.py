"""The example DAG through a real Airflow 3 (deploy/local/airflow: api-server, scheduler,
dag-processor, triggerer) triggered over its REST API /api/v2, against a real controller:
the whole pipeline with its service, a deferred task marked failed at once (cancelled on
the controller by the listener plugin), and bad params refused at trigger time."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.airflow.conftest import Controller
from tests.waiting import poll_until

pytestmark = [pytest.mark.airflow, pytest.mark.slow]
DAG_ID = "example_pipeline"
TASKS = ("prepare", "train", "evaluate", "register", "serve", "smoke_test", "stop")


class AirflowApi:
    def __init__(self, env: dict[str, str]) -> None:
        self.url = env["AIRFLOW_API_URL"]
        token = httpx.post(
            env["AIRFLOW_TOKEN_URL"],
            timeout=30,
            json={"username": env["AIRFLOW_USERNAME"], "password": env["AIRFLOW_PASSWORD"]},
        )
        assert token.status_code == 201, token.text
        self.http = httpx.Client(
            base_url=f"{self.url}/api/v2",
            timeout=30,
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        )

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.call(method, path, **kwargs)
        assert response.is_success, f"{method} {path} -> {response.status_code}: {response.text}"
        return response.json()

    def xcom(self, run_id: str, task_id: str, key: str) -> Any:
        body = self.ok(
            "GET",
            f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"deserialize": "true"},
        )
        value = body["value"]
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        return value


@pytest.fixture(scope="module")
def api(airflow: dict[str, str], controller: Controller) -> Iterator[AirflowApi]:
    client = AirflowApi(airflow)
    client.call("DELETE", "/connections/tracectl_default")
    client.ok(
        "POST",
        "/connections",
        json={
            "connection_id": "tracectl_default",
            "conn_type": "tracectl",
            "host": controller.url,
            "extra": json.dumps({"mlflow_url": "http://mlflow.invalid:5000"}),
        },
    )
    # the DAG processor parses dags/ on its own schedule
    parsed = poll_until(
        lambda: client.call("GET", f"/dags/{DAG_ID}").status_code, lambda s: s == 200, 180, 2
    )
    assert parsed == 200, f"{DAG_ID} was not parsed within 180s"
    errors = client.ok("GET", "/importErrors")
    assert errors["total_entries"] == 0, errors
    client.ok("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    yield client
    # leave no connection to this test's controller behind: the next start recreates the default
    client.call("DELETE", "/connections/tracectl_default")
    client.call("PATCH", f"/dags/{DAG_ID}", json={"is_paused": True})


@pytest.mark.timeout(1200)
def test_trigger_over_rest_runs_the_pipeline(
    api: AirflowApi, controller: Controller, demo_repo: Path
) -> None:
    started = time.monotonic()
    run = api.ok(
        "POST",
        f"/dags/{DAG_ID}/dagRuns",
        json={
            "logical_date": None,
            "conf": {"git_repo": str(demo_repo), "n_estimators": 15, "max_depth": 3},
        },
    )
    run_id = run["dag_run_id"]
    run = poll_until(
        lambda: api.ok("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}"),
        lambda run: run["state"] in ("success", "failed"),
        1000,
        3,
    )
    assert run["state"] in ("success", "failed"), f"DAG run {run_id} still {run['state']}"
    print(f"live Airflow DAG run (trigger -> success): {time.monotonic() - started:.1f}s")
    tis = api.ok("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
    states = {ti["task_id"]: ti["state"] for ti in tis}
    assert run["state"] == "success", states
    assert states == dict.fromkeys(TASKS, "success")

    task_ids = {t: api.xcom(run_id, t, "tracectl_task_id") for t in TASKS if t != "stop"}
    run_ids = {api.xcom(run_id, t, "tracectl_run_id") for t in task_ids}
    assert len(run_ids) == 1
    tracectl_run = controller.get(f"/v1/runs/{run_ids.pop()}")
    assert tracectl_run["airflow_dag_id"] == DAG_ID
    assert tracectl_run["airflow_run_id"] == run_id
    assert tracectl_run["status"] == "succeeded"
    # a REST trigger with "logical_date": null: the label holds the run's run_after instead
    run_after = datetime.fromisoformat(run["run_after"].replace("Z", "+00:00"))
    assert datetime.fromisoformat(tracectl_run["labels"]["airflow_logical_date"]) == run_after

    artifacts = api.xcom(run_id, "train", "artifacts")
    assert [a["path"] for a in artifacts] == ["model/model.pkl"]
    mlflow_run = api.xcom(run_id, "train", "mlflow_run_id")
    assert mlflow_run
    lineage = controller.get(f"/v1/runs/{tracectl_run['id']}/lineage")
    by_name = {t["name"]: t for t in lineage["tasks"]}
    assert {n: t["id"] for n, t in by_name.items()} == task_ids
    train = by_name["train"]["lineage"]
    assert train["params"] == {"n_estimators": 15, "max_depth": 3, "seed": 42}
    assert train["mlflow"]["run_id"] == mlflow_run
    assert train["outputs"][0]["sha256"] == artifacts[0]["sha256"]
    link = api.xcom(run_id, "train", "_link_TracectlLineageLink")
    assert link == f"{controller.url}/v1/tasks/{task_ids['train']}/lineage"

    # the service: started, answered the smoke test, stopped when stop closed the run
    assert api.xcom(run_id, "serve", "service_url").startswith("http://127.0.0.1:")
    assert api.xcom(run_id, "stop", "service_status") == {
        "status": "succeeded",
        "reason": "stopped: run ended",
    }
    assert (by_name["serve"]["status"], by_name["serve"]["reason"]) == (
        "succeeded",
        "stopped: run ended",
    )
    model = controller.get("/v1/lineage/lookup", model="wine-classifier/1")
    assert model["registered_by"] == [
        {"run_id": tracectl_run["id"], "task_id": task_ids["register"]}
    ]
    downstream = controller.get("/v1/lineage/downstream", node=f"task:{task_ids['register']}")
    assert {"model:wine-classifier/1", f"service:{task_ids['serve']}"} <= {
        n["id"] for n in downstream["items"]
    }


def slow_repo(demo_repo: Path, dest: Path) -> Path:
    """A copy of the demo repository whose prepare step sleeps (so that it gets deferred)."""
    shutil.copytree(demo_repo, dest)
    (dest / "prepare.py").write_text("import time\n\ntime.sleep(900)\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@tracectl.invalid"]
    subprocess.run([*git, "commit", "-qam", "prepare sleeps"], cwd=dest, check=True)
    return dest


@pytest.mark.timeout(900)
def test_marking_a_deferred_task_failed_cancels_it_on_the_controller(
    api: AirflowApi,
    airflow: dict[str, str],
    controller: Controller,
    demo_repo: Path,
    tmp_path: Path,
) -> None:
    repo = slow_repo(demo_repo, tmp_path / "slow-repo")
    run_id = api.ok(
        "POST",
        f"/dags/{DAG_ID}/dagRuns",
        json={"logical_date": None, "conf": {"git_repo": str(repo)}},
    )["dag_run_id"]
    ti_path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/prepare"
    # Marked failed as soon as it is deferred, without waiting for a triggerer to take the
    # trigger: then the trigger's on_kill may never run, and the tracectl listener plugin in
    # the API server cancels the task (docs/airflow.md, "Kill / mark failed").
    before = (None, "scheduled", "queued", "running")
    ti = poll_until(lambda: api.ok("GET", ti_path), lambda ti: ti["state"] not in before, 600, 0.2)
    assert ti["state"] == "deferred", f"prepare {ti['state']}: {ti}"
    task_id = api.xcom(run_id, "prepare", "tracectl_task_id")
    api.ok("PATCH", ti_path, json={"new_state": "failed"})
    taken_by = (ti.get("trigger") or {}).get("triggerer_id")
    task = controller.settled(task_id)
    assert task["status"] == "cancelled", task
    assert api.ok("GET", ti_path)["state"] == "failed"
    # the listener ran in the API server for this task: it cancelled it, or found it ended
    # (cancelled by the trigger's on_kill first)
    api_log = (Path(airflow["AIRFLOW_HOME"]).parent / "api-server.log").read_text()
    assert (
        f"cancelled tracectl task {task_id}" in api_log
        or f"tracectl task {task_id} had already ended" in api_log
    ), api_log[-3000:]
    print(
        f"deferred prepare marked failed (trigger taken by triggerer {taken_by!r}): "
        f"controller task {task_id} {task['reason']!r}"
    )


def test_bad_params_rejected_at_trigger(api: AirflowApi, controller: Controller) -> None:
    before = controller.get("/v1/runs", limit=1000)["items"]
    runs_before = api.ok("GET", f"/dags/{DAG_ID}/dagRuns")["total_entries"]
    response = api.call(
        "POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": {"n_estimators": 0}}
    )
    assert response.status_code == 400, response.text
    detail = json.dumps(response.json())
    print(f"Airflow's answer to n_estimators=0: {detail}")
    assert "n_estimators" in detail
    assert api.ok("GET", f"/dags/{DAG_ID}/dagRuns")["total_entries"] == runs_before
    assert controller.get("/v1/runs", limit=1000)["items"] == before
