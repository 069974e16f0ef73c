"""What the self-check DAGs (dags/tracectl_selfcheck*.py) share: the DAG and its tracectl tasks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param

from controller.airflow.operators import TracectlTaskOperator

TIMEOUT = timedelta(seconds=3600)


def selfcheck_dag(
    dag_id: str,
    example: list[str],
    *,
    params: dict[str, Any] | None = None,
    tags: Sequence[str] = (),
    **fields: Any,
) -> Any:
    """A DAG triggered by hand with ``{"command": [...]}`` (EXAMPLE by default) and PARAMS, up
    to four runs at once, its templates rendered as Python objects; FIELDS are DAG arguments."""
    command = Param(
        example,
        type="array",
        minItems=1,
        items={"type": "string"},
        description="argv of the command each task runs",
    )
    return DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=4,
        render_template_as_native_obj=True,
        params={"command": command, **(params or {})},
        tags=["tracectl", "check", *tags],
        **fields,
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
