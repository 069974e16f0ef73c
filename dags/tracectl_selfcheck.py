"""One command three ways in this Airflow: BashOperator, tracectl awaited, tracectl deferred.

Triggered with ``{"command": [...]}`` it runs the command as a ``BashOperator`` (``bash``), as a
tracectl task awaited in the worker (``awaited``) and as one deferred at once (``deferred``), in
parallel. Checks an installation (the connection, the triggerer, the resume) and is the peer
comparison of ``bench/airflow_overhead.py``; tests/airflow uses it for the resume timing and
for cancelling the controller's task when the Airflow task fails or is cleared.
"""

from __future__ import annotations

import shlex

from airflow.providers.standard.operators.bash import BashOperator

from controller.airflow.selfcheck import selfcheck_dag, tracectl_tasks

with selfcheck_dag(
    "tracectl_selfcheck",
    ["python3", "-c", "print('hello from tracectl')"],
    description="one command as BashOperator, tracectl awaited and tracectl deferred",
    user_defined_filters={"shjoin": shlex.join},
) as dag:
    BashOperator(task_id="bash", bash_command="{{ params.command | shjoin }}")
    tracectl_tasks(command="{{ params.command }}")
