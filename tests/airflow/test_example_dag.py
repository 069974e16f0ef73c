"""The example DAG (dags/example_pipeline.py) run by dag.test() against a real controller."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from controller.airflow.deploy import sync
from tests.airflow.conftest import DAGS, Controller, dag_test

pytestmark = pytest.mark.slow
DAG_FILE = DAGS / "example_pipeline.py"


def conn_env(controller: Controller) -> dict[str, str]:
    return {
        "AIRFLOW_CONN_TRACECTL_DEFAULT": json.dumps(
            {
                "conn_type": "tracectl",
                "host": controller.url,
                "extra": {
                    "mlflow_url": "http://mlflow.invalid:5000",
                    "kibana_url": "http://kibana.invalid:5601",
                },
            }
        )
    }


JOBS = ("prepare", "train", "evaluate", "register", "smoke_test")
OUTPUTS = {
    "prepare": {"prepared/train.csv", "prepared/test.csv"},
    "train": {"model/model.pkl"},
    "evaluate": {"metrics.json"},
    "register": {"registered_model.json"},
    "smoke_test": {"smoke_test.json"},
}


def log_text(controller: Controller, task_id: str) -> str:
    return "\n".join(
        line["message"] for line in controller.get(f"/v1/tasks/{task_id}/logs", limit=1000)["items"]
    )


@pytest.mark.timeout(1200)
def test_example_dag_end_to_end(
    airflow_python: Path,
    airflow_home: dict[str, str],
    controller: Controller,
    demo_repo: Path,
    tmp_path: Path,
) -> None:
    # run the DAG as the deploy job publishes it: with the commit marker next to it
    commit = "c0ffee" + "0" * 34
    sync(DAGS, tmp_path / "deployed", commit)
    started = time.monotonic()
    result = dag_test(
        airflow_python,
        airflow_home,
        tmp_path / "deployed" / DAG_FILE.name,
        "example_pipeline",
        {
            "git_repo": str(demo_repo),
            "n_estimators": 20,
            "max_depth": 4,
            "model_name": "wine-e2e",
            "min_accuracy": 0.7,
        },
        conn_env(controller),
    )
    print(f"dag.test() of example_pipeline: {time.monotonic() - started:.1f}s")
    assert result.get("state") == "success", result.get("log", "")[-4000:]
    assert result["tasks"] == dict.fromkeys(
        ("prepare", "train", "evaluate", "register", "serve", "smoke_test", "stop"), "success"
    )

    xcoms: dict[str, dict[str, Any]] = result["xcoms"]
    run_ids = {xcoms[t]["tracectl_run_id"] for t in (*JOBS, "serve")}
    assert len(run_ids) == 1, "one DAG run must map to one tracectl run"
    run_id = run_ids.pop()
    for name in JOBS:
        x = xcoms[name]
        assert x["tracectl_task_id"].startswith("task_")
        assert x["return_value"] == x["tracectl_task_id"]
        assert x["mlflow_run_id"], f"{name} has no MLflow run"
        assert {a["path"] for a in x["artifacts"]} == OUTPUTS[name]
        assert all(len(a["sha256"]) == 64 and a["uri"] for a in x["artifacts"])
        assert x["_link_TracectlLineageLink"] == (
            f"{controller.url}/v1/tasks/{x['tracectl_task_id']}/lineage"
        )
        assert x["_link_TracectlMlflowLink"].endswith(f"/#/runs/{x['mlflow_run_id']}")
        assert x["tracectl_task_id"] in x["_link_TracectlLogsLink"]

    run = controller.get(f"/v1/runs/{run_id}")
    assert run["airflow_dag_id"] == "example_pipeline"
    assert run["airflow_run_id"] == result["run_id"]
    assert run["status"] == "succeeded"
    labels = dict(run["labels"])
    logical_date = datetime.fromisoformat(labels.pop("airflow_logical_date"))
    assert logical_date.tzinfo is not None
    assert labels == {
        "source": "airflow",
        "dag_commit": commit,
        "airflow_clear_number": "0",
        "airflow_openlineage_namespace": "default",
    }
    lineage = controller.get(f"/v1/runs/{run_id}/lineage")
    tasks = {t["name"]: t for t in lineage["tasks"]}
    assert set(tasks) == {*JOBS, "serve"}
    train = tasks["train"]["lineage"]
    assert train["params"] == {"n_estimators": 20, "max_depth": 4, "seed": 42}
    assert len(train["code"]["commit"]) == 40
    assert train["mlflow"]["run_id"] == xcoms["train"]["mlflow_run_id"]
    assert tasks["prepare"]["lineage"]["data"][0]["path"] == "data/wine.csv"
    # the model train wrote is the one evaluate read
    model = xcoms["train"]["artifacts"][0]["sha256"]
    assert {
        "from": f"artifact:{model}",
        "to": f"task:{xcoms['evaluate']['tracectl_task_id']}",
        "path": "model.pkl",
    } in [{k: edge[k] for k in ("from", "to", "path")} for edge in lineage["edges"]]

    # register: a model version in the controller's MLflow registry, made from train's model
    from mlflow.tracking import MlflowClient

    from controller.config import Settings

    registry = MlflowClient(tracking_uri=Settings.from_env(home=controller.home).mlflow_uri)
    version = registry.get_model_version("wine-e2e", "1")
    assert version.tags["sha256"] == model
    assert version.tags["trained_by_mlflow_run"] == xcoms["train"]["mlflow_run_id"]
    assert version.run_id == xcoms["register"]["mlflow_run_id"]
    register_id = xcoms["register"]["tracectl_task_id"]
    found = controller.get("/v1/lineage/lookup", model="wine-e2e/1")
    assert found["registered_by"] == [{"run_id": run_id, "task_id": register_id}]

    # serve: answered the smoke test, then stopped by the run's end (stop closed the run)
    serve_id = xcoms["serve"]["tracectl_task_id"]
    assert xcoms["serve"]["service_url"].startswith("http://127.0.0.1:")
    service = controller.get(f"/v1/tasks/{serve_id}")
    assert (service["status"], service["reason"]) == ("succeeded", "stopped: run ended")
    assert xcoms["stop"]["service_status"] == {
        "status": "succeeded",
        "reason": "stopped: run ended",
    }
    served = log_text(controller, serve_id)
    assert "GET /health -> 200" in served and "POST /predict -> 200" in served, served
    smoke = tasks["smoke_test"]["lineage"]
    assert smoke["params"]["service_url"] == xcoms["serve"]["service_url"]
    assert smoke["params"]["service_task_id"] == serve_id
    assert '"version": "1"' in log_text(controller, xcoms["smoke_test"]["tracectl_task_id"])

    # lineage: model version -> service, directly. register made model:wine-e2e/1 (XCom
    # model_versions); serve declared it in its spec's models and runs as service:<serve id>
    assert xcoms["register"]["model_versions"] == ["models:/wine-e2e/1"]
    assert service["spec"]["models"] == ["models:/wine-e2e/1"]
    graph = {
        (e["from"], e["to"], e["kind"]) for e in controller.get(f"/v1/runs/{run_id}/graph")["edges"]
    }
    assert {
        (f"task:{register_id}", "model:wine-e2e/1", "registered"),
        ("model:wine-e2e/1", f"task:{serve_id}", "used"),
        (f"task:{serve_id}", f"service:{serve_id}", "serves"),
    } <= graph
    up = {
        n["id"]: n["depth"]
        for n in controller.get("/v1/lineage/upstream", node=f"task:{serve_id}", depth=5)["items"]
    }
    assert up["model:wine-e2e/1"] == 1 and up[f"task:{register_id}"] == 2
    assert f"artifact:{model}" in up  # through register to the model file train wrote
    down = {
        n["id"]: n["depth"]
        for n in controller.get("/v1/lineage/downstream", node="model:wine-e2e/1", depth=5)["items"]
    }
    assert down[f"task:{serve_id}"] == 1 and down[f"service:{serve_id}"] == 2
    assert found_used(controller, "wine-e2e/1") == [serve_id]


def found_used(controller: Controller, model: str) -> list[str]:
    return [u["task_id"] for u in controller.get("/v1/lineage/lookup", model=model)["used_by"]]


def wrong_service_repo(demo_repo: Path, dest: Path) -> Path:
    """A copy of the demo repository whose service answers every row with the wrong class."""
    shutil.copytree(demo_repo, dest)
    serve = dest / "serve.py"
    source = serve.read_text()
    right = "int(c) for c in model.predict"
    assert right in source, "serve.py changed: update this test's fault"
    serve.write_text(source.replace(right, "(int(c) + 1) % 3 for c in model.predict"))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@tracectl.invalid"]
    subprocess.run([*git, "commit", "-qam", "serve answers wrongly"], cwd=dest, check=True)
    return dest


@pytest.mark.timeout(1200)
def test_a_failed_smoke_test_still_stops_the_service(
    airflow_python: Path,
    airflow_home: dict[str, str],
    controller: Controller,
    demo_repo: Path,
    tmp_path: Path,
) -> None:
    repo = wrong_service_repo(demo_repo, tmp_path / "repo")
    result = dag_test(
        airflow_python,
        airflow_home,
        DAG_FILE,
        "example_pipeline",
        {"git_repo": str(repo), "n_estimators": 10, "model_name": "wine-wrong"},
        conn_env(controller),
    )
    assert result.get("state") == "failed", result.get("log", "")[-4000:]
    assert result["tasks"] == {
        **dict.fromkeys(("prepare", "train", "evaluate", "register", "serve"), "success"),
        "smoke_test": "failed",
        "stop": "success",
    }
    xcoms = result["xcoms"]
    smoke = controller.get(f"/v1/tasks/{xcoms['smoke_test']['tracectl_task_id']}")
    assert smoke["status"] == "failed" and smoke["exit_code"] == 1, smoke
    assert "rows differently from the model" in log_text(controller, smoke["id"])
    service = controller.get(f"/v1/tasks/{xcoms['serve']['tracectl_task_id']}")
    assert (service["status"], service["reason"]) == ("succeeded", "stopped: run ended")
    assert xcoms["stop"]["service_status"]["reason"] == "stopped: run ended"


@pytest.mark.parametrize(
    ("conf", "param", "words"),
    [
        ({"n_estimators": 0}, "n_estimators", "minimum"),
        ({"gpu_flavor": "tpu-v9"}, "gpu_flavor", "enum"),
        ({"max_depth": "deep"}, "max_depth", "type"),
    ],
)
def test_bad_params_rejected_before_anything_runs(
    airflow_python: Path,
    airflow_home: dict[str, str],
    controller: Controller,
    conf: dict[str, Any],
    param: str,
    words: str,
) -> None:
    before = len(controller.runs_of("example_pipeline"))
    result = dag_test(
        airflow_python, airflow_home, DAG_FILE, "example_pipeline", conf, conn_env(controller)
    )
    assert result.get("error") == "ParamValidationError", result
    assert param in result["message"]
    print(f"{param}: {result['message']}")
    assert len(controller.runs_of("example_pipeline")) == before, "nothing may reach tracectl"


def test_dag_test_runs_a_deferred_task_that_its_trigger_ends(
    airflow_python: Path, airflow_home: dict[str, str], controller: Controller
) -> None:
    # dag.test() runs a trigger inline and resumes the operator with the end event's state
    result = dag_test(
        airflow_python,
        airflow_home,
        DAGS / "tracectl_selfcheck.py",
        "tracectl_selfcheck",
        {"command": ["python3", "-c", "import time; time.sleep(2); print('done')"]},
        conn_env(controller),
    )
    assert result.get("state") == "success", result.get("log", "")[-4000:]
    deferred = result["xcoms"]["deferred"]
    task = controller.get(f"/v1/tasks/{deferred['tracectl_task_id']}")
    assert (task["status"], deferred["return_value"]) == ("succeeded", task["id"])
