"""The example DAG (dags/example_pipeline.py) run by dag.test() against a real controller."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from controller.airflow.deploy import sync
from tests.airflow.conftest import DAGS, Controller, dag_test

pytestmark = pytest.mark.slow
DAG_FILE = DAGS / "example_pipeline.py"


def conn_env(controller: Controller) -> dict[str, str]:
    return {"AIRFLOW_CONN_TRACECTL_DEFAULT": json.dumps(
        {"conn_type": "tracectl", "host": controller.url,
         "extra": {"mlflow_url": "http://mlflow.invalid:5000",
                   "kibana_url": "http://kibana.invalid:5601"}})}


@pytest.mark.timeout(900)
def test_example_dag_end_to_end(airflow_python: Path, airflow_home: dict[str, str],
                                controller: Controller, demo_repo: Path, tmp_path: Path) -> None:
    # run the DAG as the deploy job publishes it: with the commit marker next to it
    commit = "c0ffee" + "0" * 34
    sync(DAGS, tmp_path / "deployed", commit)
    started = time.monotonic()
    result = dag_test(airflow_python, airflow_home, tmp_path / "deployed" / DAG_FILE.name,
                      "example_pipeline",
                      {"git_repo": str(demo_repo), "n_estimators": 20, "max_depth": 4},
                      conn_env(controller))
    print(f"dag.test() of example_pipeline: {time.monotonic() - started:.1f}s")
    assert result.get("state") == "success", result.get("log", "")[-4000:]
    assert result["tasks"] == {"prepare": "success", "train": "success", "evaluate": "success"}

    xcoms: dict[str, dict[str, Any]] = result["xcoms"]
    run_ids = {xcoms[t]["tracectl_run_id"] for t in ("prepare", "train", "evaluate")}
    assert len(run_ids) == 1, "one DAG run must map to one tracectl run"
    run_id = run_ids.pop()
    for name, outputs in (("prepare", {"prepared/train.csv", "prepared/test.csv"}),
                          ("train", {"model/model.pkl"}), ("evaluate", {"metrics.json"})):
        x = xcoms[name]
        assert x["tracectl_task_id"].startswith("task_")
        assert x["return_value"] == x["tracectl_task_id"]
        assert x["mlflow_run_id"], f"{name} has no MLflow run"
        assert {a["path"] for a in x["artifacts"]} == outputs
        assert all(len(a["sha256"]) == 64 and a["uri"] for a in x["artifacts"])
        assert x["_link_TracectlLineageLink"] == (
            f"{controller.url}/v1/tasks/{x['tracectl_task_id']}/lineage")
        assert x["_link_TracectlMlflowLink"].endswith(f"/#/runs/{x['mlflow_run_id']}")
        assert x["tracectl_task_id"] in x["_link_TracectlLogsLink"]

    run = controller.get(f"/v1/runs/{run_id}")
    assert run["airflow_dag_id"] == "example_pipeline"
    assert run["airflow_run_id"] == result["run_id"]
    assert run["status"] == "succeeded"
    assert run["labels"] == {"source": "airflow", "dag_commit": commit}
    lineage = controller.get(f"/v1/runs/{run_id}/lineage")
    tasks = {t["name"]: t for t in lineage["tasks"]}
    assert set(tasks) == {"prepare", "train", "evaluate"}
    train = tasks["train"]["lineage"]
    assert train["params"] == {"n_estimators": 20, "max_depth": 4, "seed": 42}
    assert len(train["code"]["commit"]) == 40
    assert train["mlflow"]["run_id"] == xcoms["train"]["mlflow_run_id"]
    assert tasks["prepare"]["lineage"]["data"][0]["path"] == "data/wine.csv"
    # the model train wrote is the one evaluate read
    model = xcoms["train"]["artifacts"][0]["sha256"]
    assert {"from": f"artifact:{model}", "to": f"task:{xcoms['evaluate']['tracectl_task_id']}",
            "path": "model.pkl"} in lineage["edges"]


@pytest.mark.parametrize(("conf", "param", "words"), [
    ({"n_estimators": 0}, "n_estimators", "minimum"),
    ({"gpu_flavor": "tpu-v9"}, "gpu_flavor", "enum"),
    ({"max_depth": "deep"}, "max_depth", "type"),
])
def test_bad_params_rejected_before_anything_runs(
    airflow_python: Path, airflow_home: dict[str, str], controller: Controller,
    conf: dict[str, Any], param: str, words: str,
) -> None:
    before = len(controller.runs_of("example_pipeline"))
    result = dag_test(airflow_python, airflow_home, DAG_FILE, "example_pipeline", conf,
                      conn_env(controller))
    assert result.get("error") == "ParamValidationError", result
    assert param in result["message"]
    print(f"{param}: {result['message']}")
    assert len(controller.runs_of("example_pipeline")) == before, "nothing may reach tracectl"
