"""The example DAG through a real Airflow 3 (deploy/local/airflow: api-server, scheduler,
dag-processor, triggerer) triggered over its REST API /api/v2, against a real controller."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.airflow.conftest import Controller

pytestmark = [pytest.mark.airflow, pytest.mark.slow]
DAG_ID = "example_pipeline"


class AirflowApi:
    def __init__(self, env: dict[str, str]) -> None:
        self.url = env["AIRFLOW_API_URL"]
        token = httpx.post(env["AIRFLOW_TOKEN_URL"], timeout=30, json={
            "username": env["AIRFLOW_USERNAME"], "password": env["AIRFLOW_PASSWORD"]})
        assert token.status_code == 201, token.text
        self.http = httpx.Client(base_url=f"{self.url}/api/v2", timeout=30, headers={
            "Authorization": f"Bearer {token.json()['access_token']}"})

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.call(method, path, **kwargs)
        assert response.is_success, f"{method} {path} -> {response.status_code}: {response.text}"
        return response.json()

    def xcom(self, run_id: str, task_id: str, key: str) -> Any:
        body = self.ok("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}"
                              f"/xcomEntries/{key}", params={"deserialize": "true"})
        value = body["value"]
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        return value


@pytest.fixture(scope="module")
def api(airflow: dict[str, str], controller: Controller) -> Iterator[AirflowApi]:
    client = AirflowApi(airflow)
    client.call("DELETE", "/connections/tracectl_default")
    client.ok("POST", "/connections", json={
        "connection_id": "tracectl_default", "conn_type": "tracectl", "host": controller.url,
        "extra": json.dumps({"mlflow_url": "http://mlflow.invalid:5000"})})
    deadline = time.monotonic() + 180  # the DAG processor parses dags/ on its own schedule
    while client.call("GET", f"/dags/{DAG_ID}").status_code != 200:
        assert time.monotonic() < deadline, f"{DAG_ID} was not parsed within 180s"
        time.sleep(2)
    errors = client.ok("GET", "/importErrors")
    assert errors["total_entries"] == 0, errors
    client.ok("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    yield client
    # leave no connection to this test's controller behind: the next start recreates the default
    client.call("DELETE", "/connections/tracectl_default")
    client.call("PATCH", f"/dags/{DAG_ID}", json={"is_paused": True})


@pytest.mark.timeout(1200)
def test_trigger_over_rest_runs_the_pipeline(api: AirflowApi, controller: Controller,
                                             demo_repo: Path) -> None:
    started = time.monotonic()
    run = api.ok("POST", f"/dags/{DAG_ID}/dagRuns", json={
        "logical_date": None,
        "conf": {"git_repo": str(demo_repo), "n_estimators": 15, "max_depth": 3}})
    run_id = run["dag_run_id"]
    deadline = time.monotonic() + 1000
    while run["state"] not in ("success", "failed"):
        assert time.monotonic() < deadline, f"DAG run {run_id} still {run['state']}"
        time.sleep(3)
        run = api.ok("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")
    print(f"live Airflow DAG run (trigger -> success): {time.monotonic() - started:.1f}s")
    tis = api.ok("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
    states = {ti["task_id"]: ti["state"] for ti in tis}
    assert run["state"] == "success", states
    assert states == {"prepare": "success", "train": "success", "evaluate": "success"}

    task_ids = {t: api.xcom(run_id, t, "tracectl_task_id") for t in states}
    run_ids = {api.xcom(run_id, t, "tracectl_run_id") for t in states}
    assert len(run_ids) == 1
    tracectl_run = controller.get(f"/v1/runs/{run_ids.pop()}")
    assert tracectl_run["airflow_dag_id"] == DAG_ID
    assert tracectl_run["airflow_run_id"] == run_id
    assert tracectl_run["status"] == "succeeded"

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


def test_bad_params_rejected_at_trigger(api: AirflowApi, controller: Controller) -> None:
    before = controller.get("/v1/runs", limit=1000)["items"]
    runs_before = api.ok("GET", f"/dags/{DAG_ID}/dagRuns")["total_entries"]
    response = api.call("POST", f"/dags/{DAG_ID}/dagRuns", json={
        "logical_date": None, "conf": {"n_estimators": 0}})
    assert response.status_code == 400, response.text
    detail = json.dumps(response.json())
    print(f"Airflow's answer to n_estimators=0: {detail}")
    assert "n_estimators" in detail
    assert api.ok("GET", f"/dags/{DAG_ID}/dagRuns")["total_entries"] == runs_before
    assert controller.get("/v1/runs", limit=1000)["items"] == before
