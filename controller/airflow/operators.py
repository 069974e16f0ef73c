"""Operators a DAG author writes: one call per tracectl task.

``TracectlTaskOperator`` maps the DAG run to one tracectl Run (created once, idempotently, with
``airflow_dag_id``/``airflow_run_id``), submits a TaskSpec to it, defers on
:class:`~controller.airflow.triggers.TracectlTaskTrigger` until the task ends, then succeeds or
raises with the task's status and reason. XComs: ``tracectl_task_id``, ``tracectl_run_id``,
``mlflow_run_id``, ``artifacts`` (list of ``{path, sha256, uri}``) and ``return_value`` (the task
id).

Airflow retries do not double-submit: a later try reattaches to the task of an earlier try
unless that one failed or was cancelled, in which case it submits ``<name>.try<N>``; inputs
``task:<name>/<path>`` follow the latest successful attempt of ``<name>``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from controller.airflow.deploy import read_commit
from controller.airflow.hooks import (
    DEFAULT_CONN_ID,
    TERMINAL,
    TracectlHook,
    task_key,
)
from controller.airflow.links import (
    XCOM_MLFLOW_RUN_ID,
    XCOM_RUN_ID,
    XCOM_TASK_ID,
    TracectlLineageLink,
    TracectlLogsLink,
    TracectlMlflowLink,
)
from controller.airflow.triggers import TracectlTaskTrigger

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


def latest_attempt(tasks: Sequence[Mapping[str, Any]], base: str,
                   status: str | None = None) -> Mapping[str, Any] | None:
    found = [(attempt_of(t["name"], base), t) for t in tasks]
    ranked = [
        (n, t) for n, t in found if n is not None and (status is None or t["status"] == status)
    ]
    return max(ranked, key=lambda item: item[0])[1] if ranked else None


WAIT_BEFORE_DEFER_S = 20.0


class TracectlTaskOperator(BaseOperator):  # type: ignore[misc]
    """Run one task on the tracectl controller and wait for it (deferrable by default).

    :param command: argv list run in the task's workspace (templated)
    :param image: container image (recorded; the local executor runs the controller's Python)
    :param env: environment variables (templated); ``secret_env`` names the secret ones
    :param code: ``{"repo": <git URL or path>, "ref": <ref>}`` (templated)
    :param data: ``{"paths": [...], "rev": <rev>}`` DVC-tracked inputs (templated)
    :param inputs: ``[{"artifact": "task:<name>/<path>" | "sha256:<hex>", "path": ...}]``
    :param outputs: paths the task writes, hashed and stored
    :param task_params: JSON given to the task as TRACECTL_PARAMS (templated; ``params`` is
        Airflow's own DAG-level Params)
    :param task_resources: ``{"cpu", "memory", "gpu", "gpu_flavor", "volumes"}`` (templated)
    :param task_timeout_s / task_retries / task_priority: the controller's timeout, retries
        and queue priority for this task (Airflow's ``retries`` stay Airflow's)
    :param pipeline: tracectl pipeline name (default: the dag_id)
    :param tracectl_conn_id: the tracectl connection
    :param deferrable: wait in the triggerer (True) or in the worker (False)
    :param poll_timeout_s: length of one long poll of /wait
    """

    template_fields: Sequence[str] = (
        "command", "image", "env", "code", "data", "inputs", "outputs", "task_params",
        "task_resources", "pipeline",
    )
    template_fields_renderers = {
        "command": "json", "env": "json", "code": "json", "data": "json", "inputs": "json",
        "task_params": "json", "task_resources": "json",
    }
    ui_color = "#d8ecf3"
    operator_extra_links = (TracectlLogsLink(), TracectlMlflowLink(), TracectlLineageLink())
    task_mode = "job"

    def __init__(
        self,
        *,
        command: Sequence[str],
        image: str | None = None,
        env: Mapping[str, str] | None = None,
        secret_env: Sequence[str] | None = None,
        code: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        inputs: Sequence[Mapping[str, str]] | None = None,
        outputs: Sequence[str] | None = None,
        task_params: Mapping[str, Any] | None = None,
        task_resources: Mapping[str, Any] | None = None,
        task_timeout_s: float | None = None,
        task_retries: int = 0,
        task_priority: int = 0,
        pipeline: str | None = None,
        tracectl_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = True,
        poll_timeout_s: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.command = list(command)
        self.image = image
        self.env = dict(env or {})
        self.secret_env = list(secret_env or [])
        self.code = dict(code) if code else None
        self.data = dict(data) if data else None
        self.inputs = [dict(i) for i in inputs or []]
        self.outputs = list(outputs or [])
        self.task_params = dict(task_params or {})
        self.task_resources = dict(task_resources or {})
        self.task_timeout_s = task_timeout_s
        self.task_retries = task_retries
        self.task_priority = task_priority
        self.pipeline = pipeline
        self.tracectl_conn_id = tracectl_conn_id
        self.deferrable = deferrable
        self.poll_timeout_s = poll_timeout_s
        self._tracectl_task_id: str | None = None

    # -- spec -----------------------------------------------------------------------------
    @property
    def hook(self) -> TracectlHook:
        return TracectlHook(self.tracectl_conn_id)

    def build_spec(self, siblings: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """The TaskSpec sent to the controller, from the rendered fields."""
        spec: dict[str, Any] = {
            "command": [str(a) for a in self.command],
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
        if self.image:
            spec["image"] = str(self.image)
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
        name, rest = artifact[len("task:"):].split("/", 1)
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
        run = hook.ensure_run(pipeline=pipeline, dag_id=dag_id, run_id=run_id,
                              labels=self._run_labels(context))
        base = ti.task_id if map_index < 0 else f"{ti.task_id}.{map_index}"
        siblings = hook.list_tasks(run["id"])
        previous = latest_attempt(siblings, base)
        if previous is not None and previous["status"] not in ("failed", "cancelled"):
            task = dict(previous)
            self.log.info("reattaching to tracectl task %s (%s, %s)", task["id"], task["name"],
                          task["status"])
        else:
            number = 1 if previous is None else (attempt_of(previous["name"], base) or 1) + 1
            name = base if number == 1 else f"{base}.try{number}"
            key = task_key(dag_id, run_id, name, try_number)
            task = hook.submit_task(run["id"], name=name, spec=self.build_spec(siblings),
                                    idempotency_key=key)
            self.log.info("submitted tracectl task %s (%s) to run %s", task["id"], name, run["id"])
        self._tracectl_task_id = task["id"]
        ti.xcom_push(key=XCOM_RUN_ID, value=run["id"])
        ti.xcom_push(key=XCOM_TASK_ID, value=task["id"])
        ti.xcom_push(key=XCOM_MLFLOW_RUN_ID, value=task.get("mlflow_run_id"))
        return self._wait(context, hook, task)

    def _wait(self, context: Any, hook: TracectlHook, task: dict[str, Any]) -> Any:
        if task["status"] in TERMINAL:
            return self._finish(context, task)
        if self.deferrable:
            # A short task is awaited here rather than deferred: Airflow 3 can fail a task
            # whose trigger fires before the worker that deferred it has been reaped.
            task = hook.wait_task(task["id"], WAIT_BEFORE_DEFER_S)
            if task["status"] in TERMINAL:
                return self._finish(context, task)
            self.defer(
                trigger=TracectlTaskTrigger(task["id"], self.tracectl_conn_id, self.poll_timeout_s),
                method_name="execute_complete",
            )
        while task["status"] not in TERMINAL:
            task = hook.wait_task(task["id"], self.poll_timeout_s)
        return self._finish(context, task)

    def execute_complete(self, context: Any, event: Mapping[str, Any]) -> Any:
        if event.get("status") != "terminal":
            raise AirflowException(
                f"lost track of tracectl task {event.get('task_id')}: {event.get('message')}"
            )
        return self._finish(context, dict(event["task"]))

    def _finish(self, context: Any, task: Mapping[str, Any]) -> Any:
        ti = context["ti"]
        hook = self.hook
        artifacts = [
            {"path": a["path"], "sha256": a["sha256"], "uri": a["uri"]}
            for a in hook.task_artifacts(task["id"])
        ]
        ti.xcom_push(key=XCOM_TASK_ID, value=task["id"])
        ti.xcom_push(key=XCOM_RUN_ID, value=task["run_id"])
        ti.xcom_push(key=XCOM_MLFLOW_RUN_ID, value=task.get("mlflow_run_id"))
        ti.xcom_push(key="artifacts", value=artifacts)
        if task["status"] != "succeeded":
            raise AirflowException(
                f"tracectl task {task['name']} ({task['id']}) {task['status']}: "
                f"{task.get('reason') or 'no reason given'} (exit code {task.get('exit_code')}, "
                f"attempt {task.get('attempt')}/{task.get('max_attempts')}); "
                f"logs: {hook.base_url}/v1/tasks/{task['id']}/logs"
            )
        self.log.info("tracectl task %s succeeded with %d artifact(s)", task["id"], len(artifacts))
        return task["id"]

    def on_kill(self) -> None:
        if self._tracectl_task_id:
            self.log.info("cancelling tracectl task %s", self._tracectl_task_id)
            try:
                self.hook.cancel_task(self._tracectl_task_id)
            except Exception as exc:
                self.log.warning(
                    "could not cancel tracectl task %s: %s", self._tracectl_task_id, exc
                )


class TracectlServiceOperator(TracectlTaskOperator):
    """Start a long-running task (``mode: service``) and push its URL as XCom ``service_url``.

    Succeeds once the service runs and the controller reports its URL in the task's
    ``executor_ref`` (``url``); stop it later with the controller's cancel route. Fails with a
    clear message when the controller or its executor does not run services.
    """

    task_mode = "service"
    ui_color = "#e8f3d8"

    def __init__(self, *, ready_timeout_s: float = 300.0, **kwargs: Any) -> None:
        kwargs.setdefault("deferrable", False)
        super().__init__(**kwargs)
        self.ready_timeout_s = ready_timeout_s

    def _wait(self, context: Any, hook: TracectlHook, task: dict[str, Any]) -> Any:
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            ref = task.get("executor_ref") or {}
            if task["status"] == "running" and ref.get("url"):
                context["ti"].xcom_push(key="service_url", value=ref["url"])
                return task["id"]
            if task["status"] in TERMINAL:
                self._finish(context, task)  # raises unless succeeded
                raise AirflowException(
                    f"tracectl service task {task['id']} ended ({task['status']}) without "
                    f"reporting a URL (executor {task.get('executor')!r} may run mode=service "
                    "as a job)"
                )
            if task["status"] == "running" and time.monotonic() > deadline:
                raise AirflowException(
                    f"tracectl service task {task['id']} runs but reported no URL within "
                    f"{self.ready_timeout_s:g}s (executor {task.get('executor')!r} may not "
                    "support mode=service)"
                )
            if time.monotonic() > deadline:
                raise AirflowException(
                    f"tracectl service task {task['id']} still {task['status']} after "
                    f"{self.ready_timeout_s:g}s"
                )
            time.sleep(1.0)
            task = hook.get_task(task["id"])
