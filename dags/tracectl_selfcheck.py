"""One command three ways in this Airflow: BashOperator, tracectl awaited, tracectl deferred.

Triggered with ``{"command": [...]}`` it runs the command as a ``BashOperator`` (``bash``), as a
tracectl task awaited in the worker (``awaited``) and as one deferred at once (``deferred``), in
parallel. Checks an installation (the connection, the triggerer, the resume) and is the peer
comparison of ``bench/airflow_overhead.py``; tests/airflow uses it for the resume timing and
for cancelling the controller's task when the Airflow task fails or is cleared.
"""

from __future__ import annotations

import shlex
from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

from controller.airflow.operators import TracectlTaskOperator

COMMAND = "{{ params.command }}"
TIMEOUT = timedelta(seconds=3600)

with DAG(
    dag_id="tracectl_selfcheck",
    description="one command as BashOperator, tracectl awaited and tracectl deferred",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=4,
    render_template_as_native_obj=True,
    user_defined_filters={"shjoin": shlex.join},
    tags=["tracectl", "check"],
    params={
        "command": Param(
            ["python3", "-c", "print('hello from tracectl')"],
            type="array",
            minItems=1,
            items={"type": "string"},
            description="argv of the command each task runs",
        ),
    },
) as dag:
    BashOperator(task_id="bash", bash_command="{{ params.command | shjoin }}")
    for name, deferrable in (("awaited", False), ("deferred", True)):
        TracectlTaskOperator(
            task_id=name,
            command=COMMAND,
            deferrable=deferrable,
            wait_before_defer_s=0.0,
            execution_timeout=TIMEOUT,
        )
