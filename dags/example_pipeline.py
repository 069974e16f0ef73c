"""The example pipeline (wine classifier) as an Airflow DAG.

prepare -> train -> evaluate -> register (MLflow model version) -> serve (HTTP service) ->
smoke_test (calls the service) -> stop (teardown of serve: runs even when smoke_test fails).

Every task runs on the tracectl controller (connection ``tracectl_default``); one DAG run is one
tracectl Run, so `tracectl lineage <run>` shows the git commit, the DVC data, the params, the
artifacts and the MLflow runs of this DAG run. The code is the repository `tracectl demo` makes
(examples/wine): set ``git_repo`` when triggering, or TRACECTL_DEMO_REPO where the DAG is parsed.

Params are validated by Airflow before anything runs: a bad value (e.g. ``n_estimators: 0``)
is rejected at trigger time with the param's name and the rule it broke.

``serve`` runs ``serve.py`` as a tracectl service (``mode: service``) of the model version
``register`` created (XCom ``model_versions`` -> its spec's ``models``, so the lineage links the
version to the service task); the controller gives it a port and its URL reaches ``smoke_test``
through XCom ``service_url``. ``stop`` closes the tracectl Run, upon which the controller stops
the service ("stopped: run ended").
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, Param

from controller.airflow.operators import (
    TracectlServiceOperator,
    TracectlStopServiceOperator,
    TracectlTaskOperator,
)

DEFAULT_REPO = os.environ.get(
    "TRACECTL_DEMO_REPO", str(Path(__file__).resolve().parents[1] / ".tracectl" / "demo" / "repo")
)
CODE = {"repo": "{{ params.git_repo }}", "ref": "{{ params.git_ref }}"}
RESOURCES = {
    "gpu": "{{ params.gpu }}",
    "gpu_flavor": "{{ params.gpu_flavor if params.gpu > 0 and params.gpu_flavor != 'any' "
    "else None }}",
}
SERVICE_URL = "{{ ti.xcom_pull(task_ids='serve', key='service_url') }}"

with DAG(
    dag_id="example_pipeline",
    description="wine classifier on tracectl: prepare -> train -> evaluate -> register -> "
    "serve -> smoke_test -> stop",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=4,
    render_template_as_native_obj=True,
    tags=["tracectl", "example"],
    params={
        "git_repo": Param(
            DEFAULT_REPO,
            type="string",
            minLength=1,
            description="git URL or local path of the pipeline's code",
        ),
        "git_ref": Param(
            "main",
            type="string",
            pattern=r"^[A-Za-z0-9._/-]+$",
            description="branch, tag or commit of the code",
        ),
        "dataset_rev": Param(
            None,
            type=["null", "string"],
            description="git rev whose .dvc files pin the data (default: git_ref)",
        ),
        "image": Param(
            "python:3.11-slim",
            type="string",
            minLength=1,
            description="container image (recorded by the local executor)",
        ),
        "gpu": Param(0, type="integer", minimum=0, maximum=8, description="GPUs for train"),
        "gpu_flavor": Param(
            "any",
            type="string",
            enum=["any", "nvidia-a100", "nvidia-h100"],
            description="GPU model for train when gpu > 0",
        ),
        "test_size": Param(0.25, type="number", exclusiveMinimum=0, exclusiveMaximum=1),
        "n_estimators": Param(50, type="integer", minimum=1, maximum=2000),
        "max_depth": Param(5, type="integer", minimum=1, maximum=64),
        "seed": Param(42, type="integer", minimum=0),
        "model_name": Param(
            "wine-classifier",
            type="string",
            pattern=r"^[A-Za-z0-9_.-]{1,100}$",
            description="MLflow registered model to add the version to",
        ),
        "min_accuracy": Param(
            0.8,
            type="number",
            minimum=0,
            maximum=1,
            description="test accuracy below which register and smoke_test fail",
        ),
    },
    doc_md=__doc__,
) as dag:
    prepare = TracectlTaskOperator(
        task_id="prepare",
        image="{{ params.image }}",
        command=["python", "prepare.py"],
        code=CODE,
        data={"paths": ["data/wine.csv"], "rev": "{{ params.dataset_rev }}"},
        task_params={"test_size": "{{ params.test_size }}", "seed": "{{ params.seed }}"},
        outputs=["prepared/train.csv", "prepared/test.csv"],
        task_timeout_s=600,
    )
    train = TracectlTaskOperator(
        task_id="train",
        image="{{ params.image }}",
        command=["python", "train.py"],
        code=CODE,
        inputs=[{"artifact": "task:prepare/prepared/train.csv", "path": "train.csv"}],
        task_params={
            "n_estimators": "{{ params.n_estimators }}",
            "max_depth": "{{ params.max_depth }}",
            "seed": "{{ params.seed }}",
        },
        task_resources=RESOURCES,
        outputs=["model/model.pkl"],
        task_timeout_s=1800,
    )
    evaluate = TracectlTaskOperator(
        task_id="evaluate",
        image="{{ params.image }}",
        command=["python", "evaluate.py"],
        code=CODE,
        inputs=[
            {"artifact": "task:train/model/model.pkl", "path": "model.pkl"},
            {"artifact": "task:prepare/prepared/test.csv", "path": "test.csv"},
        ],
        outputs=["metrics.json"],
        task_timeout_s=600,
    )
    register = TracectlTaskOperator(
        task_id="register",
        image="{{ params.image }}",
        command=["python", "register.py"],
        code=CODE,
        inputs=[
            {"artifact": "task:train/model/model.pkl", "path": "model.pkl"},
            {"artifact": "task:evaluate/metrics.json", "path": "metrics.json"},
        ],
        task_params={
            "model_name": "{{ params.model_name }}",
            "min_accuracy": "{{ params.min_accuracy }}",
            "train_mlflow_run_id": "{{ ti.xcom_pull(task_ids='train', key='mlflow_run_id') }}",
        },
        outputs=["registered_model.json"],
        task_timeout_s=600,
    )
    serve = TracectlServiceOperator(
        task_id="serve",
        image="{{ params.image }}",
        command=["python", "serve.py"],
        code=CODE,
        # the version register created: lineage edge model version -> serve, and serve.py
        # loads what $TRACECTL_MODELS names
        models="{{ ti.xcom_pull(task_ids='register', key='model_versions') }}",
        task_timeout_s=3600,  # a service nobody stopped ends after an hour
        ready_timeout_s=300,
    )
    smoke_test = TracectlTaskOperator(
        task_id="smoke_test",
        image="{{ params.image }}",
        command=["python", "smoke_test.py"],
        code=CODE,
        env={"SERVICE_URL": SERVICE_URL},
        task_params={
            "service_url": SERVICE_URL,
            "min_accuracy": "{{ params.min_accuracy }}",
            "service_task_id": "{{ ti.xcom_pull(task_ids='serve', key='tracectl_task_id') }}",
        },
        inputs=[
            {"artifact": "task:register/registered_model.json", "path": "registered_model.json"},
            {"artifact": "task:train/model/model.pkl", "path": "model.pkl"},
            {"artifact": "task:prepare/prepared/test.csv", "path": "test.csv"},
        ],
        outputs=["smoke_test.json"],
        task_timeout_s=600,
    )
    stop = TracectlStopServiceOperator(task_id="stop", service_task_id="serve")
    prepare >> train >> evaluate >> register >> serve >> smoke_test
    smoke_test >> stop.as_teardown(setups=serve)
