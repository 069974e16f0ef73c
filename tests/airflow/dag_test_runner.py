"""Runs one DAG with ``dag.test()`` inside Airflow's venv and prints the outcome as JSON.

usage: python dag_test_runner.py DAG_FILE DAG_ID RUN_CONF_JSON

Printed (last line): {"state", "run_id", "tasks": {task_id: state},
"xcoms": {task_id: {key: value}}}
or {"error": <type>, "message": <text>} when the DAG run could not start (e.g. invalid params).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys


def main() -> int:
    dag_file, dag_id, conf = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    spec = importlib.util.spec_from_file_location("dag_under_test", dag_file)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = next(
        v
        for v in vars(module).values()
        if getattr(v, "dag_id", None) == dag_id and hasattr(v, "test")
    )
    try:
        dag_run = dag.test(run_conf=conf)
    except Exception as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        return 0
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    tasks = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    xcoms: dict[str, dict[str, object]] = {}
    with create_session() as session:
        rows = (
            session.query(XComModel)
            .filter(XComModel.dag_id == dag_id, XComModel.run_id == dag_run.run_id)
            .all()
        )
        for row in rows:
            value = row.value
            if isinstance(value, (str, bytes)):
                with contextlib.suppress(ValueError):
                    value = json.loads(value)
            xcoms.setdefault(row.task_id, {})[row.key] = value
    print(
        json.dumps(
            {"state": str(dag_run.state), "run_id": dag_run.run_id, "tasks": tasks, "xcoms": xcoms},
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
