"""The example pipeline (wine classifier) as an Airflow DAG: prepare -> train -> evaluate.

Every task runs on the tracectl controller (connection ``tracectl_default``); one DAG run is one
tracectl Run, so `tracectl lineage <run>` shows the git commit, the DVC data, the params, the
artifacts and the MLflow runs of this DAG run. The code is the repository `tracectl demo` makes
(examples/wine): set ``git_repo`` when triggering, or TRACECTL_DEMO_REPO where the DAG is parsed.

Params are validated by Airflow before anything runs: a bad value (e.g. ``n_estimators: 0``)
is rejected at trigger time with the param's name and the rule it broke.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, Param

from controller.airflow.operators import TracectlTaskOperator

DEFAULT_REPO = os.environ.get(
    "TRACECTL_DEMO_REPO", str(Path(__file__).resolve().parents[1] / ".tracectl" / "demo" / "repo")
)
CODE = {"repo": "{{ params.git_repo }}", "ref": "{{ params.git_ref }}"}
RESOURCES = {"gpu": "{{ params.gpu }}",
             "gpu_flavor": "{{ params.gpu_flavor if params.gpu > 0 and params.gpu_flavor != 'any' "
                           "else None }}"}

with DAG(
    dag_id="example_pipeline",
    description="wine classifier on tracectl: prepare -> train -> evaluate",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=4,
    render_template_as_native_obj=True,
    tags=["tracectl", "example"],
    params={
        "git_repo": Param(DEFAULT_REPO, type="string", minLength=1,
                          description="git URL or local path of the pipeline's code"),
        "git_ref": Param("main", type="string", pattern=r"^[A-Za-z0-9._/-]+$",
                         description="branch, tag or commit of the code"),
        "dataset_rev": Param(None, type=["null", "string"],
                             description="git rev whose .dvc files pin the data "
                             "(default: git_ref)"),
        "image": Param("python:3.11-slim", type="string", minLength=1,
                       description="container image (recorded by the local executor)"),
        "gpu": Param(0, type="integer", minimum=0, maximum=8, description="GPUs for train"),
        "gpu_flavor": Param("any", type="string", enum=["any", "nvidia-a100", "nvidia-h100"],
                            description="GPU model for train when gpu > 0"),
        "test_size": Param(0.25, type="number", exclusiveMinimum=0, exclusiveMaximum=1),
        "n_estimators": Param(50, type="integer", minimum=1, maximum=2000),
        "max_depth": Param(5, type="integer", minimum=1, maximum=64),
        "seed": Param(42, type="integer", minimum=0),
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
        task_params={"n_estimators": "{{ params.n_estimators }}",
                     "max_depth": "{{ params.max_depth }}", "seed": "{{ params.seed }}"},
        task_resources=RESOURCES,
        outputs=["model/model.pkl"],
        task_timeout_s=1800,
    )
    evaluate = TracectlTaskOperator(
        task_id="evaluate",
        image="{{ params.image }}",
        command=["python", "evaluate.py"],
        code=CODE,
        inputs=[{"artifact": "task:train/model/model.pkl", "path": "model.pkl"},
                {"artifact": "task:prepare/prepared/test.csv", "path": "test.csv"}],
        outputs=["metrics.json"],
        task_timeout_s=600,
    )
    prepare >> train >> evaluate
