"""Run in Airflow's venv by test_openlineage.py: per case (JSON on stdin), the run and task
labels TracectlTaskOperator sends and the runIds Airflow's OpenLineage provider gives that DAG
run and that task instance's try."""

import json
import os
import sys
from types import SimpleNamespace

import pendulum
from airflow.providers.openlineage import conf
from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter

from controller.airflow.operators import TracectlTaskOperator, task_instance_labels

operator = TracectlTaskOperator(task_id="train", command=["true"])
out = []
for case in json.load(sys.stdin):
    os.environ.pop("OPENLINEAGE_NAMESPACE", None)
    if case["namespace"]:
        os.environ["OPENLINEAGE_NAMESPACE"] = case["namespace"]
    # the provider caches its config, except under pytest (PYTEST_VERSION, inherited here)
    getattr(conf.namespace, "cache_clear", lambda: None)()
    logical = pendulum.parse(case["logical_date"]) if case["logical_date"] else None
    dag_run = SimpleNamespace(
        logical_date=logical,
        run_after=pendulum.parse(case["run_after"]),
        clear_number=case["clear_number"],
    )
    labels = operator._run_labels({"dag_run": dag_run, "logical_date": logical, "dag": None})
    # what the provider's listener does: run_after when the run has no logical date
    date = dag_run.logical_date or dag_run.run_after
    ti = case["task_instance"]
    out.append(
        {
            "labels": labels,
            "run_id": OpenLineageAdapter.build_dag_run_id(
                dag_id=case["dag_id"], logical_date=date, clear_number=dag_run.clear_number
            ),
            "task_labels": task_instance_labels(ti["task_id"], ti["try_number"], ti["map_index"]),
            "task_run_id": OpenLineageAdapter.build_task_instance_run_id(
                dag_id=case["dag_id"],
                task_id=ti["task_id"],
                try_number=ti["try_number"],
                logical_date=date,
                map_index=ti["map_index"],
            ),
        }
    )
json.dump(out, sys.stdout)
