"""TracectlHook: talks to the tracectl controller's /v1 API over HTTP.

The connection (type ``tracectl``, default id ``tracectl_default``) gives the base URL in
``host`` (with scheme, or ``schema`` = http|https, and ``port``) and an optional bearer token in
``password``. Extras: ``timeout_s``, ``retry_for_s``, ``retries``, ``backoff_s``,
``max_backoff_s`` and the link bases ``kibana_url``, ``mlflow_url``, ``ui_url`` (see links.py).

Connect errors, timeouts and 5xx answers are retried with exponential backoff and jitter for
``retry_for_s`` seconds (300: a controller restart or a short outage does not fail the Airflow
task) and at least ``retries`` times; 4xx answers raise :class:`TracectlApiError` at once with
the server's problem+json detail. Every POST is safe to repeat (idempotency keys, or a cancel
or close that is a no-op the second time).

This module imports nothing from the rest of ``controller``: it runs inside Airflow's venv.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from airflow.sdk import BaseHook

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
DEFAULT_CONN_ID = "tracectl_default"
RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
DEFAULT_RETRY_FOR_S = 300.0


class TracectlApiError(RuntimeError):
    """The controller answered with a problem document (or a non-JSON error)."""

    def __init__(self, method: str, url: str, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        detail = problem.get("detail") or problem.get("title") or "no detail"
        errors = problem.get("errors") or []
        where = "; ".join(f"{e.get('path', '?')}: {e.get('msg', '')}" for e in errors[:5])
        text = f"{method} {url} -> {status}: {detail}"
        if where and where not in str(detail):
            text += f" ({where})"
        super().__init__(text)


def run_key(dag_id: str, run_id: str) -> str:
    """Idempotency key of the tracectl Run that stands for one Airflow DAG run."""
    return f"airflow:{dag_id}:{run_id}"


def task_key(dag_id: str, run_id: str, name: str, try_number: int) -> str:
    """Idempotency key of one submission of tracectl task NAME by one Airflow try.

    Two executions of the same try that see the same state compute the same key, so the
    controller returns the first one's task instead of running the work twice.
    """
    return f"airflow:{dag_id}:{run_id}:{name}:try{try_number}"


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"detail": response.text[:500] or response.reason_phrase}
    return body if isinstance(body, dict) else {"detail": str(body)[:500]}


class TracectlHook(BaseHook):  # type: ignore[misc]
    """Client of the tracectl controller used by the operators and the trigger."""

    conn_name_attr = "tracectl_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "tracectl"
    hook_name = "tracectl"

    def __init__(
        self,
        tracectl_conn_id: str = DEFAULT_CONN_ID,
        *,
        retries: int | None = None,
        backoff_s: float | None = None,
        timeout_s: float | None = None,
        retry_for_s: float | None = None,
    ) -> None:
        super().__init__()
        self.tracectl_conn_id = tracectl_conn_id
        self._overrides = {
            "retries": retries,
            "backoff_s": backoff_s,
            "timeout_s": timeout_s,
            "retry_for_s": retry_for_s,
        }
        self._settings: dict[str, Any] | None = None
        self._client: httpx.Client | None = None  # kept: one connection for a task's calls
        self._aclient: httpx.AsyncClient | None = None  # inside `aclient()` only

    # -- connection -----------------------------------------------------------------------
    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["login", "schema"],
            "relabeling": {"host": "Controller URL", "password": "API token"},
            "placeholders": {
                "host": "http://127.0.0.1:8765",
                "extra": '{"kibana_url": "http://kibana:5601", "mlflow_url": '
                '"http://mlflow:5000", "timeout_s": 30, "retries": 5}',
            },
        }

    @property
    def settings(self) -> dict[str, Any]:
        """Base URL, token, extras and retry policy, read once from the connection."""
        if self._settings is None:
            self._settings = self._read(self.get_connection(self.tracectl_conn_id))
        return self._settings

    async def aload(self) -> dict[str, Any]:
        """Read the connection without blocking the event loop (triggerer)."""
        if self._settings is None:
            self._settings = self._read(await self.aget_connection(self.tracectl_conn_id))
        return self._settings

    def _read(self, conn: Any) -> dict[str, Any]:
        extra = dict(conn.extra_dejson or {})
        host = (conn.host or "").rstrip("/")
        if not host:
            raise ValueError(f"connection {self.tracectl_conn_id!r} has no host (controller URL)")
        if "://" not in host:
            host = f"{conn.schema or 'http'}://{host}"
            if conn.port:
                host = f"{host}:{conn.port}"
        values: dict[str, Any] = {
            "base_url": host,
            "token": conn.password or extra.get("token"),
            "timeout_s": float(extra.get("timeout_s", 30.0)),
            "retries": int(extra.get("retries", 5)),
            "backoff_s": float(extra.get("backoff_s", 0.5)),
            "max_backoff_s": float(extra.get("max_backoff_s", 30.0)),
            "retry_for_s": float(extra.get("retry_for_s", DEFAULT_RETRY_FOR_S)),
            "extra": extra,
        }
        values.update({k: v for k, v in self._overrides.items() if v is not None})
        return values

    @property
    def base_url(self) -> str:
        return str(self.settings["base_url"])

    def _headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "tracectl-airflow"}
        if self.settings["token"]:
            headers["Authorization"] = f"Bearer {self.settings['token']}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    def _retry_in(self, attempt: int, started: float) -> float | None:
        """Seconds to wait before try ATTEMPT + 2, or None to give up: exponential backoff
        with equal jitter (retrying clients spread out when a controller comes back), never
        past ``retry_for_s``, and always at least ``retries`` retries."""
        left = started + float(self.settings["retry_for_s"]) - time.monotonic()
        if attempt >= int(self.settings["retries"]) and left <= 0:
            return None
        ceiling = min(self.settings["backoff_s"] * 2**attempt, self.settings["max_backoff_s"])
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        return float(delay if attempt < int(self.settings["retries"]) else min(delay, left))

    def _unreachable(
        self, method: str, url: str, tries: int, started: float, exc: Exception
    ) -> ConnectionError:
        spent = time.monotonic() - started
        return ConnectionError(
            f"{method} {url}: controller unreachable after {tries} tries in {spent:.0f}s "
            f"(connection extra retry_for_s={self.settings['retry_for_s']:g}): {exc}"
        )

    # -- sync transport -------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """One API call, retried on connect errors, timeouts and 5xx; returns the JSON body."""
        url = f"{self.base_url}{path}"
        timeout = timeout_s if timeout_s is not None else self.settings["timeout_s"]
        started, attempt = time.monotonic(), 0
        while True:
            try:
                response = self._http().request(
                    method,
                    url,
                    json=json,
                    params=params,
                    headers=self._headers(idempotency_key),
                    timeout=timeout,
                )
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                delay = self._retry_in(attempt, started)
                if delay is None:
                    raise self._unreachable(method, url, attempt + 1, started, exc) from exc
                self.log.warning("%s %s: %s; retrying in %.1fs", method, url, exc, delay)
                time.sleep(delay)
                attempt += 1
                continue
            delay = self._retry_in(attempt, started)
            if response.status_code in RETRYABLE_STATUS and delay is not None:
                self.log.warning(
                    "%s %s -> %s; retrying in %.1fs", method, url, response.status_code, delay
                )
                time.sleep(delay)
                attempt += 1
                continue
            if response.status_code >= 400:
                raise TracectlApiError(method, url, response.status_code, _problem(response))
            return response.json()

    def _http(self) -> httpx.Client:
        """The hook's HTTP client, made on first use and reused (keep-alive), so an operator's
        calls do not each open a connection and build a client."""
        if self._client is None:
            self._client = httpx.Client()
        return self._client

    # -- async transport (trigger) --------------------------------------------------------
    @contextlib.asynccontextmanager
    async def aclient(self) -> AsyncIterator[None]:
        """One async client (kept-alive connections) for the calls made inside: a trigger's
        long polls and the calls after the task's end do not each build a client."""
        self._aclient = httpx.AsyncClient()
        try:
            yield
        finally:
            client, self._aclient = self._aclient, None
            await client.aclose()

    async def _asend(
        self, method: str, url: str, params: Mapping[str, Any] | None, timeout: float
    ) -> httpx.Response:
        if self._aclient is not None:
            return await self._aclient.request(
                method, url, params=params, headers=self._headers(), timeout=timeout
            )
        async with httpx.AsyncClient(timeout=timeout) as client:
            return await client.request(method, url, params=params, headers=self._headers())

    async def arequest(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        await self.aload()
        url = f"{self.base_url}{path}"
        timeout = timeout_s if timeout_s is not None else self.settings["timeout_s"]
        started, attempt = time.monotonic(), 0
        while True:
            try:
                response = await self._asend(method, url, params, timeout)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                delay = self._retry_in(attempt, started)
                if delay is None:
                    raise self._unreachable(method, url, attempt + 1, started, exc) from exc
                await asyncio.sleep(delay)
                attempt += 1
                continue
            delay = self._retry_in(attempt, started)
            if response.status_code in RETRYABLE_STATUS and delay is not None:
                await asyncio.sleep(delay)
                attempt += 1
                continue
            if response.status_code >= 400:
                raise TracectlApiError(method, url, response.status_code, _problem(response))
            return response.json()

    # -- API ------------------------------------------------------------------------------
    def test_connection(self) -> tuple[bool, str]:
        try:
            body = self.request("GET", "/healthz")
        except Exception as exc:
            return False, str(exc)
        return True, f"tracectl {body.get('version', '?')} at {self.base_url}"

    def ensure_run(
        self, *, pipeline: str, dag_id: str, run_id: str, labels: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """The tracectl Run of one DAG run: created once, returned again on every later call."""
        key = run_key(dag_id, run_id)
        body = {
            "pipeline": pipeline,
            "airflow_dag_id": dag_id,
            "airflow_run_id": run_id,
            "labels": dict(labels or {}),
            "idempotency_key": key,
        }
        try:
            run: dict[str, Any] = self.request("POST", "/v1/runs", json=body, idempotency_key=key)
            return run
        except TracectlApiError as exc:
            if exc.status != 409:
                raise
        # The key was first used with other labels (e.g. the DAG was redeployed mid-run).
        found = self.find_run(pipeline=pipeline, dag_id=dag_id, run_id=run_id)
        if found is None:
            raise RuntimeError(f"tracectl run for {key!r} conflicts but cannot be found")
        return found

    def find_run(self, *, pipeline: str, dag_id: str, run_id: str) -> dict[str, Any] | None:
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"pipeline": pipeline, "limit": 200}
            if cursor:
                params["cursor"] = cursor
            page = self.request("GET", "/v1/runs", params=params)
            for run in page.get("items", []):
                if run.get("airflow_dag_id") == dag_id and run.get("airflow_run_id") == run_id:
                    return dict(run)
            cursor = page.get("next_cursor")
            if not cursor:
                return None

    def submit_task(
        self, run_id: str, *, name: str, spec: Mapping[str, Any], idempotency_key: str
    ) -> dict[str, Any]:
        body = {"name": name, "spec": dict(spec), "idempotency_key": idempotency_key}
        task: dict[str, Any] = self.request(
            "POST", f"/v1/runs/{run_id}/tasks", json=body, idempotency_key=idempotency_key
        )
        return task

    def close_run(self, run_id: str) -> dict[str, Any]:
        """Close the run (idempotent): it takes no new tasks, and the controller stops its
        services once its other tasks have ended (they end succeeded, "stopped: run ended")."""
        run: dict[str, Any] = self.request("POST", f"/v1/runs/{run_id}/close")
        return run

    def list_tasks(self, run_id: str) -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"run_id": run_id, "limit": 500}
            if cursor:
                params["cursor"] = cursor
            page = self.request("GET", "/v1/tasks", params=params)
            tasks.extend(page.get("items", []))
            cursor = page.get("next_cursor")
            if not cursor:
                return tasks

    def get_task(self, task_id: str) -> dict[str, Any]:
        task: dict[str, Any] = self.request("GET", f"/v1/tasks/{task_id}")
        return task

    def wait_task(self, task_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        task: dict[str, Any] = self.request(
            "GET",
            f"/v1/tasks/{task_id}/wait",
            params={"timeout_s": timeout_s},
            timeout_s=timeout_s + 30.0,
        )
        return task

    async def await_task(self, task_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """One long poll of /wait (async): the task when it ends, or as it is at the timeout."""
        task: dict[str, Any] = await self.arequest(
            "GET",
            f"/v1/tasks/{task_id}/wait",
            params={"timeout_s": timeout_s},
            timeout_s=timeout_s + 30.0,
        )
        return task

    def cancel_task(self, task_id: str) -> dict[str, Any]:
        task: dict[str, Any] = self.request("POST", f"/v1/tasks/{task_id}/cancel")
        return task

    async def acancel_task(self, task_id: str) -> dict[str, Any]:
        """Cancel a task from the triggerer's event loop (a deferred task killed by a user)."""
        task: dict[str, Any] = await self.arequest("POST", f"/v1/tasks/{task_id}/cancel")
        return task

    def task_artifacts(self, task_id: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/v1/tasks/{task_id}/artifacts"))

    async def atask_artifacts(self, task_id: str) -> list[dict[str, Any]]:
        return list(await self.arequest("GET", f"/v1/tasks/{task_id}/artifacts"))

    def downstream(self, task_id: str) -> dict[str, Any]:
        """The lineage nodes one step downstream of the task (models it registered, ...)."""
        found: dict[str, Any] = self.request("GET", "/v1/lineage/downstream", params=_down(task_id))
        return found

    async def adownstream(self, task_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.arequest(
            "GET", "/v1/lineage/downstream", params=_down(task_id)
        )
        return found

    def task_lineage(self, task_id: str) -> dict[str, Any]:
        lineage: dict[str, Any] = self.request("GET", f"/v1/tasks/{task_id}/lineage")
        return lineage

    def task_logs(
        self, task_id: str, after_seq: int = 0, limit: int = 500, attempt: int | None = None
    ) -> dict[str, Any]:
        """A page of the task's log lines after AFTER_SEQ (of ATTEMPT, default the latest)."""
        params: dict[str, Any] = {"after_seq": after_seq, "limit": limit}
        if attempt is not None:
            params["attempt"] = attempt
        page: dict[str, Any] = self.request("GET", f"/v1/tasks/{task_id}/logs", params=params)
        return page

    def task_log_tail(self, task_id: str, lines: int) -> dict[str, Any]:
        """The last LINES log lines of the task's latest attempt."""
        page: dict[str, Any] = self.request(
            "GET", f"/v1/tasks/{task_id}/logs", params={"tail": lines}
        )
        return page

    async def atask_log_tail(self, task_id: str, lines: int) -> dict[str, Any]:
        page: dict[str, Any] = await self.arequest(
            "GET", f"/v1/tasks/{task_id}/logs", params={"tail": lines}
        )
        return page


def _down(task_id: str) -> dict[str, Any]:
    return {"node": f"task:{task_id}", "depth": 1}
