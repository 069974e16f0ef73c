"""Operators a DAG author writes: one call per tracectl task.

``TracectlTaskOperator`` maps the DAG run to one tracectl Run (created once, idempotently, with
``airflow_dag_id``/``airflow_run_id``), submits a TaskSpec to it and awaits it in the worker,
or defers on :class:`~controller.airflow.triggers.TracectlTaskTrigger`, which ends the Airflow
task when the tracectl task ends; it succeeds, or fails with the task's status and reason.
XComs: ``tracectl_task_id``, ``tracectl_run_id``, ``mlflow_run_id``, ``artifacts`` (list of
``{path, sha256, uri}``), ``model_versions`` (the ``models:/<name>/<version>`` it
registered), ``trigger_started_at`` / ``trigger_fired_at`` (a deferred task: when the trigger
began to watch and when it saw the task's end, epoch seconds) and ``return_value`` (the task
id).

Airflow retries do not double-submit: a later try reattaches to the task of an earlier try
unless that one failed or was cancelled, or a try before the task instance's last clear
submitted it (then it is cancelled if still going), in which case it submits
``<name>.try<N>``; inputs ``task:<name>/<path>`` follow the latest successful attempt of
``<name>``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from controller.airflow.deploy import read_commit
from controller.airflow.hooks import (
    DEFAULT_CONN_ID,
    TERMINAL,
    TracectlApiError,
    TracectlHook,
    task_key,
)
from controller.airflow.links import (
    XCOM_MLFLOW_RUN_ID,
    XCOM_RUN_ID,
    XCOM_SERVICE_URL,
    XCOM_TASK_ID,
    TracectlLineageLink,
    TracectlLogsLink,
    TracectlMlflowLink,
)
from controller.airflow.outcome import (
    XCOM_ARTIFACTS,
    XCOM_MODEL_VERSIONS,
    XCOM_TRIGGER_FIRED_AT,
    artifact_rows,
    failure_text,
    registered_versions,
)
from controller.airflow.tasklog import TaskLogWriter
from controller.airflow.triggers import TracectlTaskTrigger

_UNPUSHED = object()  # no XCom mlflow_run_id pushed by this process yet
_RETRY_NAME = re.compile(r"^(?P<base>.+)\.try(?P<n>[0-9]+)$")
_PIPELINE_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def attempt_of(name: str, base: str) -> int | None:
    """1 for ``base``, N for ``base.tryN``, None for any other name."""
    if name == base:
        return 1
    match = _RETRY_NAME.match(name)
    if match and match.group("base") == base:
        return int(match.group("n"))
    return None


def latest_attempt(
    tasks: Sequence[Mapping[str, Any]], base: str, status: str | None = None
) -> Mapping[str, Any] | None:
    found = [(attempt_of(t["name"], base), t) for t in tasks]
    ranked = [
        (n, t) for n, t in found if n is not None and (status is None or t["status"] == status)
    ]
    return max(ranked, key=lambda item: item[0])[1] if ranked else None


def first_try_since_clear(ti: Any, retries: int | None) -> int:
    """The try number the task instance's last clear started from (1 if never cleared).

    A clear sets ``max_tries = try_number + retries``, a retry leaves it, so the first try
    after the last clear is ``max_tries - retries + 1``: Airflow's own reckoning
    (``RuntimeTaskInstance.get_first_reschedule_date``). A TI without ``max_tries`` counts
    as never cleared.
    """
    max_tries = getattr(ti, "max_tries", None)
    if max_tries is None:
        return 1
    return max(1, int(max_tries) - int(retries or 0) + 1)


def reattachable(task: Mapping[str, Any], first_try: int) -> bool:
    """Whether a later try takes over TASK rather than submitting anew: it did not fail or get
    cancelled, and a try since the last clear submitted it (a retry after a lost worker
    reattaches; a user's clear asks for a new run). A task without the try label counts as
    submitted since (older operators did not set it)."""
    if task["status"] in ("failed", "cancelled"):
        return False
    submitted = ((task.get("spec") or {}).get("labels") or {}).get("airflow_try_number")
    return submitted is None or int(submitted) >= first_try


def task_instance_labels(task_id: str, try_number: int, map_index: int) -> dict[str, str]:
    """The task labels naming the task instance's try that submits a tracectl task: the
    controller derives its OpenLineage runs' parent from them as Airflow's provider does."""
    return {
        "airflow_task_id": str(task_id),
        "airflow_try_number": str(try_number),
        "airflow_map_index": str(map_index),
    }


def _flat(items: Any) -> list[str]:
    """Model version URIs from ``models``: a string, or lists of them (one list per XCom a
    template pulled, when the native rendering kept it a list)."""
    if isinstance(items, str):
        return [items] if items else []
    return [m for item in items or [] for m in _flat(item)]


def _argv(command: str | Sequence[str]) -> list[str]:
    """The rendered argv; a string that did not render to a list is one argument (the
    controller then runs that one program, as given)."""
    return [command] if isinstance(command, str) else [str(a) for a in command]


def dag_run_date(context: Mapping[str, Any]) -> str | None:
    """The DAG run's logical date (ISO 8601), or its ``run_after`` when it has none.

    Airflow 3 runs triggered with ``"logical_date": null`` have no logical date; Airflow's
    OpenLineage integration then names the DAG run by ``run_after``, so the same fallback
    lets the controller derive the same OpenLineage parent run id.
    """
    dag_run = context.get("dag_run")
    when: Any = (
        context.get("logical_date")
        or getattr(dag_run, "logical_date", None)
        or getattr(dag_run, "run_after", None)
    )
    return str(when.isoformat()) if isinstance(when, datetime) else None


WAIT_BEFORE_DEFER_S = 20.0  # default: a task that ends sooner costs no triggerer round trip
LOG_POLL_S = 2.0  # how often a worker that awaits a task copies its new log lines
SERVICE_POLL_S = 0.5  # how often the service operator looks for the service's URL


class TracectlTaskOperator(BaseOperator):  # type: ignore[misc]
    """Run one task on the tracectl controller and wait for it (deferrable by default).

    :param command: argv list run in the task's workspace (templated; a template string that
        renders to a list, with ``render_template_as_native_obj``, is the whole argv)
    :param image: container image (recorded; the local executor runs the controller's Python)
    :param environment: the TaskSpec's ``environment`` (templated): where the task's Python
        packages come from, e.g. ``{"uv_lock": "uv.lock", "python": "3.11"}``,
        ``{"requirements": "requirements.txt"}`` or ``{"image": ...}`` (docs/environments.md);
        without it the controller detects one in the task's repo
    :param env: environment variables (templated); ``secret_env`` names the secret ones
    :param code: ``{"repo": <git URL or path>, "ref": <ref>}`` (templated)
    :param data: ``{"paths": [...], "rev": <rev>}`` DVC-tracked inputs (templated)
    :param inputs: ``[{"artifact": "task:<name>/<path>" | "sha256:<hex>", "path": ...}]``
    :param outputs: paths the task writes, hashed and stored
    :param models: registered model versions the task reads, ``models:/<name>/<version>``
        (templated; e.g. the XCom ``model_versions`` of the task that registered them): the
        lineage records model version -> task; the task finds them in ``$TRACECTL_MODELS``
    :param task_params: JSON given to the task as TRACECTL_PARAMS (templated; ``params`` is
        Airflow's own DAG-level Params)
    :param task_resources: ``{"cpu", "memory", "gpu", "gpu_flavor", "volumes"}`` (templated)
    :param task_timeout_s / task_retries / task_priority: the controller's timeout, retries
        and queue priority for this task (Airflow's ``retries`` stay Airflow's)
    :param pipeline: tracectl pipeline name (default: the dag_id)
    :param tracectl_conn_id: the tracectl connection
    :param deferrable: wait in the triggerer (True) or in the worker (False)
    :param wait_before_defer_s: a deferrable operator first awaits the task in the worker for
        this long (streaming its lines), and defers only if it is still going (0: defer at once)
    :param poll_timeout_s: length of one long poll of /wait
    :param log_tail_lines: when a deferred task ends, the last lines of the task's log
        written into the Airflow task log by the trigger (awaited in the worker, every line
        is streamed)
    :param retry_for_s: how long a call keeps retrying while the controller is unreachable
        or answers 5xx (default: the connection extra ``retry_for_s``, else 300 s)
    """

    template_fields: Sequence[str] = (
        "command",
        "image",
        "environment",
        "env",
        "code",
        "data",
        "inputs",
        "outputs",
        "models",
        "task_params",
        "task_resources",
        "pipeline",
    )
    template_fields_renderers = {
        "command": "json",
        "environment": "json",
        "env": "json",
        "code": "json",
        "data": "json",
        "inputs": "json",
        "task_params": "json",
        "task_resources": "json",
    }
    ui_color = "#d8ecf3"
    operator_extra_links = (TracectlLogsLink(), TracectlMlflowLink(), TracectlLineageLink())
    task_mode = "job"

    def __init__(
        self,
        *,
        command: str | Sequence[str],
        image: str | None = None,
        environment: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        secret_env: Sequence[str] | None = None,
        code: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        inputs: Sequence[Mapping[str, str]] | None = None,
        outputs: Sequence[str] | None = None,
        models: str | Sequence[str] | None = None,
        task_params: Mapping[str, Any] | None = None,
        task_resources: Mapping[str, Any] | None = None,
        task_timeout_s: float | None = None,
        task_retries: int = 0,
        task_priority: int = 0,
        pipeline: str | None = None,
        tracectl_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = True,
        wait_before_defer_s: float = WAIT_BEFORE_DEFER_S,
        poll_timeout_s: float = 30.0,
        retry_for_s: float | None = None,
        log_tail_lines: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # a template string ("{{ params.command }}") renders to the list later
        self.command: str | list[str] = command if isinstance(command, str) else list(command)
        self.image = image
        self.environment = dict(environment) if environment else None
        self.env = dict(env or {})
        self.secret_env = list(secret_env or [])
        self.code = dict(code) if code else None
        self.data = dict(data) if data else None
        self.inputs = [dict(i) for i in inputs or []]
        self.outputs = list(outputs or [])
        # a template string ("{{ ti.xcom_pull(...) }}") renders to the list later
        self.models: str | list[str] = models if isinstance(models, str) else list(models or [])
        self.task_params = dict(task_params or {})
        self.task_resources = dict(task_resources or {})
        self.task_timeout_s = task_timeout_s
        self.task_retries = task_retries
        self.task_priority = task_priority
        self.pipeline = pipeline
        self.tracectl_conn_id = tracectl_conn_id
        self.deferrable = deferrable
        self.wait_before_defer_s = wait_before_defer_s
        self.poll_timeout_s = poll_timeout_s
        self.retry_for_s = retry_for_s
        self.log_tail_lines = log_tail_lines
        self._tracectl_task_id: str | None = None
        self._pushed_mlflow_run_id: Any = _UNPUSHED
        self._mlflow_run_id: str | None = None

    # -- spec -----------------------------------------------------------------------------
    @cached_property
    def hook(self) -> TracectlHook:
        """The operator's client: the connection read once, one kept-alive connection."""
        return TracectlHook(self.tracectl_conn_id, retry_for_s=self.retry_for_s)

    def build_spec(self, siblings: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """The TaskSpec sent to the controller, from the rendered fields."""
        spec: dict[str, Any] = {
            "command": _argv(self.command),
            "env": {str(k): str(v) for k, v in self.env.items()},
            "secret_env": list(self.secret_env),
            "inputs": [self._follow_retries(dict(i), siblings) for i in self.inputs],
            "outputs": [str(o) for o in self.outputs],
            "params": dict(self.task_params),
            "resources": {k: v for k, v in self.task_resources.items() if v not in (None, "")},
            "mode": self.task_mode,
            "retries": int(self.task_retries),
            "priority": int(self.task_priority),
        }
        models = _flat([self.models])
        if models:
            spec["models"] = models
        if self.image:
            spec["image"] = str(self.image)
        if self.environment:
            spec["environment"] = {
                str(k): str(v) for k, v in self.environment.items() if v not in (None, "")
            }
        if self.code:
            spec["code"] = {k: str(v) for k, v in self.code.items() if v not in (None, "")}
        if self.data:
            data = dict(self.data)
            spec["data"] = {"paths": [str(p) for p in data.get("paths") or []]}
            if data.get("rev"):
                spec["data"]["rev"] = str(data["rev"])
        if self.task_timeout_s is not None:
            spec["timeout_s"] = float(self.task_timeout_s)
        return spec

    @staticmethod
    def _follow_retries(
        item: dict[str, Any], siblings: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        artifact = str(item.get("artifact", ""))
        if not artifact.startswith("task:") or "/" not in artifact:
            return item
        name, rest = artifact[len("task:") :].split("/", 1)
        best = latest_attempt(siblings, name, status="succeeded")
        if best is not None and best["name"] != name:
            item["artifact"] = f"task:{best['name']}/{rest}"
        return item

    def _run_labels(self, context: Mapping[str, Any]) -> dict[str, str]:
        labels = {"source": "airflow"}
        dag = context.get("dag")
        commit = read_commit(getattr(dag, "fileloc", None))
        if commit:
            labels["dag_commit"] = commit
        logical_date = dag_run_date(context)
        if logical_date:
            labels["airflow_logical_date"] = logical_date
        # With the date, what Airflow's OpenLineage provider derives the DAG run's OpenLineage
        # runId from; the controller computes the same id for its events' parent facet.
        labels["airflow_clear_number"] = str(
            getattr(context.get("dag_run"), "clear_number", 0) or 0
        )
        try:
            from airflow.providers.openlineage.conf import namespace
        except ImportError:  # no provider: nothing in Airflow emits; its default name then
            labels["airflow_openlineage_namespace"] = "default"
        else:
            labels["airflow_openlineage_namespace"] = str(namespace())
        return labels

    # -- execution ------------------------------------------------------------------------
    def execute(self, context: Any) -> Any:
        ti = context["ti"]
        dag_id, run_id = ti.dag_id, ti.run_id
        map_index = getattr(ti, "map_index", -1)
        map_index = -1 if map_index is None else int(map_index)
        try_number = int(getattr(ti, "try_number", 1) or 1)
        hook = self.hook
        pipeline = _PIPELINE_SAFE.sub("_", self.pipeline or dag_id)
        run = hook.ensure_run(
            pipeline=pipeline, dag_id=dag_id, run_id=run_id, labels=self._run_labels(context)
        )
        base = ti.task_id if map_index < 0 else f"{ti.task_id}.{map_index}"
        siblings = hook.list_tasks(run["id"]) if self._needs_siblings(try_number) else []
        previous = latest_attempt(siblings, base)
        if previous is not None and reattachable(previous, first_try_since_clear(ti, self.retries)):
            task = dict(previous)
            self.log.info(
                "reattaching to tracectl task %s (%s, %s)", task["id"], task["name"], task["status"]
            )
        else:
            if previous is not None and previous["status"] not in TERMINAL:
                self._cancel_cleared(hook, previous)
            number = 1 if previous is None else (attempt_of(previous["name"], base) or 1) + 1
            name = base if number == 1 else f"{base}.try{number}"
            key = task_key(dag_id, run_id, name, try_number)
            spec = self.build_spec(siblings)
            spec["labels"] = task_instance_labels(ti.task_id, try_number, map_index)
            task = hook.submit_task(run["id"], name=name, spec=spec, idempotency_key=key)
            self.log.info("submitted tracectl task %s (%s) to run %s", task["id"], name, run["id"])
        self._tracectl_task_id = task["id"]
        # each push is a round trip to Airflow's API server: the links need the ids while the
        # task runs; the MLflow run id, usually made only when the task starts, comes at the end
        ti.xcom_push(key=XCOM_RUN_ID, value=run["id"])
        ti.xcom_push(key=XCOM_TASK_ID, value=task["id"])
        if task.get("mlflow_run_id"):
            self._pushed_mlflow_run_id = task["mlflow_run_id"]
            ti.xcom_push(key=XCOM_MLFLOW_RUN_ID, value=task["mlflow_run_id"])
        return self._wait(context, hook, task)

    def _needs_siblings(self, try_number: int) -> bool:
        """Whether to list the Run's tasks first: a later try may reattach to an earlier try's
        task, and ``task:<name>/…`` inputs follow retries; a first try with neither needs no
        list (a repeat of the same try gets its task back by the idempotency key)."""
        follows = any(str(i.get("artifact", "")).startswith("task:") for i in self.inputs)
        return try_number > 1 or follows

    def _cancel_cleared(self, hook: TracectlHook, task: Mapping[str, Any]) -> None:
        """Cancel the task a try before the last clear submitted: the user who cleared the
        Airflow task asked for a new run (the clear itself cancels it only once a worker or a
        triggerer holds the task; not in the second between a defer and a triggerer's pick-up)."""
        self.log.info(
            "tracectl task %s (%s) was submitted before this task instance was cleared: "
            "cancelling it and submitting anew",
            task["id"],
            task["name"],
        )
        try:
            hook.cancel_task(task["id"])
        except TracectlApiError as exc:
            if exc.status != 409:  # 409: it ended meanwhile
                raise

    def _wait(self, context: Any, hook: TracectlHook, task: dict[str, Any]) -> Any:
        lines = TaskLogWriter(hook, task["id"], self.log)
        if self.deferrable:
            # A short task is awaited here rather than deferred: a deferral costs a triggerer
            # pick-up and a new worker process for the resume, more than a short task takes.
            task = self._await(hook, task, lines, time.monotonic() + self.wait_before_defer_s)
            if task["status"] in TERMINAL:
                return self._finish(context, task, hook)
            self.defer(
                trigger=TracectlTaskTrigger(
                    task["id"],
                    self.tracectl_conn_id,
                    self.poll_timeout_s,
                    self.retry_for_s,
                    log_tail_lines=self.log_tail_lines,
                ),
                method_name="execute_complete",
            )
        return self._finish(context, self._await(hook, task, lines, None), hook)

    def _await(
        self, hook: TracectlHook, task: dict[str, Any], lines: TaskLogWriter, until: float | None
    ) -> dict[str, Any]:
        """Wait in the worker until the task ends (or UNTIL, a monotonic time), writing its
        new log lines into the Airflow task log every LOG_POLL_S."""
        lines.follow(task.get("attempt"))
        while task["status"] not in TERMINAL:
            left = LOG_POLL_S if until is None else min(LOG_POLL_S, until - time.monotonic())
            if left <= 0:
                break
            task = hook.wait_task(task["id"], left)
            lines.follow(task.get("attempt"))
        return task

    def execute_complete(self, context: Any, event: Mapping[str, Any] | str) -> Any:
        if not isinstance(event, Mapping):
            # dag.test() runs the trigger inline and resumes with the state of the event that
            # would have ended the task ("success"/"failed"), without its XComs: read the task
            ti = context["ti"]
            pushed = ti.xcom_pull(task_ids=ti.task_id, key=XCOM_TASK_ID)
            event = {"status": "terminal", "task": self.hook.get_task(str(pushed))}
        task_id = str(event.get("task_id") or event.get("task", {}).get("id"))
        self._tracectl_task_id = task_id  # the listener cancels it if this try fails
        hook = self.hook
        lines = TaskLogWriter(hook, task_id, self.log)
        if event.get("status") != "terminal":
            raise AirflowException(
                f"lost track of tracectl task {task_id}: {event.get('message')}; logs: {lines.url}"
            )
        lines.tail(self.log_tail_lines)  # ended while deferred: no worker streamed its lines
        if event.get("fired_at"):  # when the trigger saw the end: the resume's first step
            context["ti"].xcom_push(key=XCOM_TRIGGER_FIRED_AT, value=float(event["fired_at"]))
        return self._finish(context, dict(event["task"]), hook)

    def _finish(self, context: Any, task: Mapping[str, Any], hook: TracectlHook) -> Any:
        ti = context["ti"]
        artifacts = artifact_rows(hook.task_artifacts(task["id"]))
        # execute pushed the task and run ids (a resumed try keeps its XComs)
        self._mlflow_run_id = task.get("mlflow_run_id")  # for the MLflow link, at the end
        if task.get("mlflow_run_id") != self._pushed_mlflow_run_id:
            ti.xcom_push(key=XCOM_MLFLOW_RUN_ID, value=task.get("mlflow_run_id"))
        ti.xcom_push(key=XCOM_ARTIFACTS, value=artifacts)
        if task["status"] != "succeeded":
            raise AirflowException(failure_text(task, hook.base_url))
        versions = registered_versions(hook.downstream(task["id"]))
        ti.xcom_push(key=XCOM_MODEL_VERSIONS, value=versions)
        self.log.info("tracectl task %s succeeded with %d artifact(s)", task["id"], len(artifacts))
        return task["id"]

    def on_kill(self) -> None:
        if self._tracectl_task_id:
            self.log.info("cancelling tracectl task %s", self._tracectl_task_id)
            try:
                # not the cached hook: this runs in a signal handler, maybe mid-request on it
                TracectlHook(self.tracectl_conn_id, retry_for_s=self.retry_for_s).cancel_task(
                    self._tracectl_task_id
                )
            except Exception as exc:
                self.log.warning(
                    "could not cancel tracectl task %s: %s", self._tracectl_task_id, exc
                )


class TracectlServiceOperator(TracectlTaskOperator):
    """Start a long-running task (``mode: service``) and push its URL as XCom ``service_url``.

    Succeeds once the service runs and the controller reports its URL in the task's
    ``executor_ref`` (``url``; the local executor sets it once the port accepts connections).
    The service keeps running after this Airflow task ends: stop it with
    :class:`TracectlStopServiceOperator` as the DAG's teardown. A service that does not get
    ready within ``ready_timeout_s`` is cancelled, so a failed start leaves nothing running.
    The service's start-up lines (all it logged until it was ready, or until it ended) are
    written into the Airflow task log as they come, like the task operator's.
    """

    task_mode = "service"
    ui_color = "#e8f3d8"

    def __init__(self, *, ready_timeout_s: float = 300.0, **kwargs: Any) -> None:
        kwargs.setdefault("deferrable", False)
        super().__init__(**kwargs)
        self.ready_timeout_s = ready_timeout_s

    def _wait(self, context: Any, hook: TracectlHook, task: dict[str, Any]) -> Any:
        deadline = time.monotonic() + self.ready_timeout_s
        lines = TaskLogWriter(hook, task["id"], self.log)  # its start-up lines, as they come
        while True:
            lines.follow(task.get("attempt"))
            ref = task.get("executor_ref") or {}
            if task["status"] == "running" and ref.get("url"):
                context["ti"].xcom_push(key=XCOM_SERVICE_URL, value=ref["url"])
                self.log.info("tracectl service %s is up at %s", task["id"], ref["url"])
                return task["id"]
            if task["status"] in TERMINAL:
                self._finish(context, task, hook)  # raises unless succeeded
                raise AirflowException(
                    f"tracectl service task {task['id']} ended ({task['status']}) without "
                    "reporting a URL: it exited before listening on $PORT, or executor "
                    f"{task.get('executor')!r} runs mode=service as a job"
                )
            if time.monotonic() > deadline:
                self.on_kill()
                raise AirflowException(
                    f"tracectl service task {task['id']} still {task['status']} without a URL "
                    f"after {self.ready_timeout_s:g}s (cancelled; executor "
                    f"{task.get('executor')!r} may not support mode=service)"
                )
            time.sleep(SERVICE_POLL_S)
            task = hook.get_task(task["id"])


class TracectlStopServiceOperator(BaseOperator):  # type: ignore[misc]
    """Stop the service started by task ``service_task_id`` and close the DAG run's tracectl Run.

    Meant as the teardown of the service task (``stop.as_teardown(setups=serve)``), so it runs
    even when the tasks that use the service fail. Closing the Run makes the controller stop
    the Run's services once its other tasks have ended (recorded as succeeded, "stopped: run
    ended"); a service still running after ``stop_timeout_s`` is cancelled. Pushes XCom
    ``service_status`` (the service task's final status and reason).
    """

    ui_color = "#f3e3d8"
    operator_extra_links = (TracectlLogsLink(), TracectlLineageLink())

    def __init__(
        self,
        *,
        service_task_id: str,
        stop_timeout_s: float = 60.0,
        tracectl_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.service_task_id = service_task_id
        self.stop_timeout_s = stop_timeout_s
        self.tracectl_conn_id = tracectl_conn_id

    def execute(self, context: Any) -> Any:
        ti = context["ti"]
        run_id = ti.xcom_pull(task_ids=self.service_task_id, key=XCOM_RUN_ID)
        task_id = ti.xcom_pull(task_ids=self.service_task_id, key=XCOM_TASK_ID)
        if not run_id or not task_id:
            raise AirflowException(
                f"task {self.service_task_id!r} pushed no tracectl run/task id: nothing to stop"
            )
        hook = TracectlHook(self.tracectl_conn_id)
        hook.close_run(run_id)
        self.log.info("closed tracectl run %s; waiting for service %s to stop", run_id, task_id)
        ti.xcom_push(key=XCOM_TASK_ID, value=task_id)
        deadline = time.monotonic() + self.stop_timeout_s
        task = hook.get_task(task_id)
        while task["status"] not in TERMINAL and time.monotonic() < deadline:
            task = hook.wait_task(task_id, min(10.0, max(1.0, deadline - time.monotonic())))
        if task["status"] not in TERMINAL:
            self.log.warning(
                "service %s still %s after %gs: cancelling it",
                task_id,
                task["status"],
                self.stop_timeout_s,
            )
            hook.cancel_task(task_id)
            task = hook.wait_task(task_id, 30.0)
        ti.xcom_push(
            key="service_status", value={"status": task["status"], "reason": task.get("reason")}
        )
        if task["status"] not in TERMINAL:
            raise AirflowException(f"tracectl service {task_id} is still {task['status']}")
        self.log.info("service %s %s: %s", task_id, task["status"], task.get("reason"))
        return task["status"]
