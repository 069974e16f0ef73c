"""Inside Airflow's venv: N BashOperator tasks in a row with dag.test(), each the bench's command.

usage: TRACECTL_BENCH_TASKS=N python bench/airflow_overhead_runner.py

Prints one JSON line: per task, the task instance's start/end (epoch seconds) and the
command's own first/last timestamps (its last stdout line, which BashOperator pushes as XCom).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

COMMAND = "python3 -c 'import time; a = time.time(); print(a, time.time())'"

# At module level: dag.test() parses this file again to serialize the DAG.
with DAG("tracectl_bench_overhead", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
    previous = None
    for index in range(int(os.environ.get("TRACECTL_BENCH_TASKS", "1"))):
        task = BashOperator(task_id=f"t{index}", bash_command=COMMAND)
        if previous is not None:
            previous >> task
        previous = task


def main() -> int:
    run = dag.test()
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        stamps = {
            row.task_id: row.value
            for row in session.query(XComModel).filter(
                XComModel.dag_id == dag.dag_id, XComModel.run_id == run.run_id
            )
        }
    tasks = []
    for ti in run.get_task_instances():
        value = stamps.get(ti.task_id)
        text = json.loads(value) if isinstance(value, str) and value.startswith('"') else value
        first, last = (float(x) for x in str(text).split())
        tasks.append(
            {
                "task": ti.task_id,
                "state": str(ti.state),
                "start": ti.start_date.timestamp(),
                "end": ti.end_date.timestamp(),
                "first": first,
                "last": last,
            }
        )
    print(json.dumps({"tasks": tasks}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
