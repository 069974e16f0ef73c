"""Airflow listener: an Airflow task that fails or is set to an end state cancels its tracectl task.

When a user marks a deferred ``TracectlTaskOperator`` task failed (or success, or skipped)
over ``/api/v2`` or the UI, the triggerer's ``TracectlTaskTrigger.on_kill`` cancels the
controller task, but only if a triggerer had already taken the trigger. One marked in the
seconds before that gets no ``on_kill``: the trigger row is dropped unseen. Airflow 3.3's API
server fires these listener hooks right after it committed the new state, with
``previous_state=None`` and the ORM ``TaskInstance``; that closes the gap.

Loaded by :class:`controller.airflow.plugin.TracectlPlugin` (``airflow.plugins`` entry point)
in every Airflow process; it acts in the API server's user-action case and, in a worker, when
a tracectl operator failed (then the controller task may still be queued or running: the
operator gave up on it). A task that succeeds costs nothing here. It never raises into Airflow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from airflow.listeners import hookimpl

from controller.airflow.hooks import DEFAULT_CONN_ID, TracectlApiError, TracectlHook
from controller.airflow.links import XCOM_TASK_ID

log = logging.getLogger(__name__)

TRIGGER_CLASSPATH = "controller.airflow.triggers.TracectlTaskTrigger"


@hookimpl  # type: ignore[untyped-decorator]
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    on_state_set_by_user(previous_state, task_instance)
    on_failed_in_worker(previous_state, task_instance)


@hookimpl  # type: ignore[untyped-decorator]
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    on_state_set_by_user(previous_state, task_instance)


@hookimpl  # type: ignore[untyped-decorator]
def on_task_instance_skipped(previous_state: Any, task_instance: Any) -> None:
    on_state_set_by_user(previous_state, task_instance)


def on_state_set_by_user(previous_state: Any, task_instance: Any) -> None:
    """Cancel the controller task of TASK_INSTANCE if a user ended it while it was deferred."""
    # Workers and the scheduler pass the state the task left (RUNNING); only the API server's
    # "a user set this state" passes None.
    if previous_state is not None:
        return
    _cancel_quietly(deferred_tracectl_task, task_instance)


def on_failed_in_worker(previous_state: Any, task_instance: Any) -> None:
    """Cancel the controller task of an operator that failed in its worker (an error of its
    own, e.g. the controller unreachable for longer than ``retry_for_s``, or a lost
    trigger): a task the Airflow task gave up on must not run on (a task that ended is a 409,
    ignored)."""
    if previous_state is None:
        return
    _cancel_quietly(worker_tracectl_task, task_instance, retry_for_s=30.0)


def worker_tracectl_task(ti: Any) -> tuple[str, str] | None:
    """``(tracectl task id, connection id)`` of the operator a worker ran, else None."""
    task = getattr(ti, "task", None)
    task_id = getattr(task, "_tracectl_task_id", None)
    if not task_id:
        return None
    return str(task_id), str(getattr(task, "tracectl_conn_id", None) or DEFAULT_CONN_ID)


def _cancel_quietly(
    find: Callable[[Any], tuple[str, str] | None], task_instance: Any, retry_for_s: float = 0.0
) -> None:
    try:
        target: tuple[str, str] | None = find(task_instance)
        if target is not None:
            cancel(target[0], target[1], retry_for_s=retry_for_s)
    except Exception:  # a listener must not break the user's PATCH
        log.exception("tracectl: could not cancel the task of %s", _describe(task_instance))


def deferred_tracectl_task(ti: Any) -> tuple[str, str] | None:
    """``(tracectl task id, connection id)`` of a TI that was deferred on our trigger, else None.

    ``next_method`` is set while a TI is deferred (and until it resumes) and cleared when a
    worker ends it, so a TI without it was held by a worker, whose ``on_kill`` cancels, or
    had already finished. The trigger row holds the task id and the connection; if the
    triggerer already dropped it, the XCom ``tracectl_task_id`` that the operator pushed
    before deferring names the task (with the default connection).
    """
    if not getattr(ti, "next_method", None):
        return None
    kwargs = _trigger_kwargs(ti)
    if kwargs is not None:
        return str(kwargs["tracectl_task_id"]), str(kwargs.get("conn_id") or DEFAULT_CONN_ID)
    task_id = _pushed_task_id(ti)
    return (task_id, DEFAULT_CONN_ID) if task_id else None


def _trigger_kwargs(ti: Any) -> dict[str, Any] | None:
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session

    if ti.trigger_id is None:
        return None
    with create_session() as session:
        trigger = session.get(Trigger, ti.trigger_id)
        if trigger is None or trigger.classpath != TRIGGER_CLASSPATH:
            return None
        return dict(trigger.kwargs)


def _pushed_task_id(ti: Any) -> str | None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(
                run_id=ti.run_id,
                key=XCOM_TASK_ID,
                dag_ids=ti.dag_id,
                task_ids=ti.task_id,
                map_indexes=ti.map_index,
            )
        ).first()
        value = XComModel.deserialize_value(row) if row is not None else None
    return str(value) if value else None


def cancel(task_id: str, conn_id: str, retry_for_s: float = 0.0) -> None:
    """Cancel tracectl task TASK_ID; one that already ended (409) is left as it is."""
    hook = TracectlHook(conn_id, retries=2, timeout_s=10.0, retry_for_s=retry_for_s)
    try:
        task = hook.cancel_task(task_id)
    except TracectlApiError as exc:
        if exc.status != 409:
            raise
        log.info("tracectl task %s had already ended", task_id)
        return
    log.info("cancelled tracectl task %s (%s): its Airflow task ended", task_id, task.get("status"))


def _describe(ti: Any) -> str:
    return ".".join(str(getattr(ti, key, "?")) for key in ("dag_id", "task_id", "run_id"))
