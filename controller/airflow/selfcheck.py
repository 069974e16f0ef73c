"""What the self-check DAGs (dags/tracectl_selfcheck*.py) share: the DAG and its tracectl tasks."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param

from controller.airflow.operators import TracectlTaskOperator

TIMEOUT = timedelta(seconds=3600)


def selfcheck_dag(dag_id: str, example: list[str], **fields: Any) -> Any:
    """A DAG triggered by hand with ``{"command": [...]}`` (EXAMPLE by default), up to four
    runs at once, its templates rendered as Python objects; FIELDS add to or replace these
    (``params`` beside ``command``, ``tags`` beside ``tracectl`` and ``check``)."""
    command = Param(
        example,
        type="array",
        minItems=1,
        items={"type": "string"},
        description="argv of the command each task runs",
    )
    params = {"command": command, **fields.pop("params", {})}
    tags = ["tracectl", "check", *fields.pop("tags", [])]
    defaults = {"schedule": None, "start_date": datetime(2026, 1, 1), "catchup": False}
    return DAG(
        dag_id=dag_id,
        max_active_runs=4,
        render_template_as_native_obj=True,
        params=params,
        tags=tags,
        **{**defaults, **fields},
    )


def tracectl_tasks(**fields: Any) -> None:
    """The command as a tracectl task awaited in the worker (``awaited``) and one deferred at
    once (``deferred``); FIELDS are the operator's (``command``, ``image``, ...)."""
    for name, deferrable in (("awaited", False), ("deferred", True)):
        TracectlTaskOperator(
            task_id=name,
            deferrable=deferrable,
            wait_before_defer_s=0.0,
            execution_timeout=TIMEOUT,
            **fields,
        )
