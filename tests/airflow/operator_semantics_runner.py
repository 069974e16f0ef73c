"""Exercises TracectlHook / TracectlTaskOperator outside a scheduler (run in Airflow's venv).

usage: python operator_semantics_runner.py CONTROLLER_URL
Prints one JSON object with what each scenario observed.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeTI:
    """The parts of Airflow's RuntimeTaskInstance the operator uses."""

    def __init__(self, task_id: str, try_number: int, run_id: str = "manual__semantics") -> None:
        self.dag_id, self.run_id, self.task_id = "semantics", run_id, task_id
        self.map_index, self.try_number = -1, try_number
        self.xcoms: dict[str, Any] = {}
        self.task: Any = None

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value

    def xcom_pull(self, task_ids: str, key: str) -> Any:
        return PUSHED.get(task_ids, {}).get(key)


PUSHED: dict[str, dict[str, Any]] = {}  # task id -> the XComs its last try pushed
SERVER = (
    "import http.server, os; http.server.ThreadingHTTPServer(('127.0.0.1', "
    "int(os.environ['PORT'])), http.server.SimpleHTTPRequestHandler).serve_forever()"
)


def run_try(op: Any, try_number: int, run_id: str = "manual__semantics") -> dict[str, Any]:
    ti = FakeTI(op.task_id, try_number, run_id)
    try:
        op.execute({"ti": ti, "dag": None})
        error = None
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    PUSHED[op.task_id] = ti.xcoms
    return {"error": error, "xcoms": ti.xcoms}


def trigger_on_kill(url: str) -> dict[str, Any]:
    """TracectlTaskTrigger.on_kill (what the triggerer calls when a user marks a deferred task
    failed) on a running task, then again once it has ended."""
    import asyncio

    from controller.airflow.hooks import TracectlHook
    from controller.airflow.triggers import TracectlTaskTrigger

    hook = TracectlHook()
    run = hook.ensure_run(pipeline="semantics", dag_id="semantics", run_id="manual__kill")
    task = hook.submit_task(
        run["id"],
        name="sleeper",
        idempotency_key="semantics:sleeper",
        spec={"command": ["python", "-c", "import time; time.sleep(600)"]},
    )
    while task["status"] not in ("running", "failed", "cancelled", "succeeded"):
        task = hook.wait_task(task["id"], 1.0)
    trigger = TracectlTaskTrigger(task["id"], poll_timeout_s=5)
    asyncio.run(trigger.on_kill())
    ended = hook.wait_task(task["id"], 60.0)
    asyncio.run(trigger.on_kill())  # already cancelled: a 409, which on_kill swallows
    return {"before": task["status"], "after": ended["status"], "reason": ended.get("reason")}


def failed_in_worker() -> dict[str, Any]:
    """The listener's on_task_instance_failed as a worker calls it (previous state running)
    for an operator whose tracectl task still runs: an error of the operator's own."""
    from controller.airflow import listener
    from controller.airflow.hooks import TracectlHook
    from controller.airflow.operators import TracectlTaskOperator

    op = TracectlTaskOperator(
        task_id="abandoned", command=["python", "-c", "import time; time.sleep(600)"]
    )
    ti = FakeTI("abandoned", 1, run_id="manual__abandoned")
    hook = TracectlHook()
    run = hook.ensure_run(pipeline="semantics", dag_id="semantics", run_id=ti.run_id)
    task = hook.submit_task(run["id"], name="abandoned", spec=op.build_spec(), idempotency_key="ab")
    op._tracectl_task_id, ti.task = task["id"], op
    listener.on_task_instance_failed(previous_state="running", task_instance=ti, error=None)
    ended = hook.wait_task(task["id"], 60.0)
    succeeded = FakeTI("ok_step", 1)  # a failed TI whose tracectl task had ended: a no-op
    succeeded.task = TracectlTaskOperator(task_id="ok_step", command=["true"])
    succeeded.task._tracectl_task_id = PUSHED["ok_step"]["tracectl_task_id"]
    listener.on_task_instance_failed(previous_state="running", task_instance=succeeded, error=None)
    done = hook.get_task(PUSHED["ok_step"]["tracectl_task_id"])
    return {"status": ended["status"], "reason": ended.get("reason"), "ended": done["status"]}


def flaky_server() -> tuple[ThreadingHTTPServer, list[int]]:
    """/healthz answers 503 twice, then 200."""
    calls: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            calls.append(1)
            status = 503 if len(calls) <= 2 else 200
            body = json.dumps({"status": "ok", "version": "flaky"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, calls


def main() -> int:
    import os

    from controller.airflow.hooks import TracectlApiError, TracectlHook
    from controller.airflow.operators import (
        TracectlServiceOperator,
        TracectlStopServiceOperator,
        TracectlTaskOperator,
    )

    url = sys.argv[1]
    os.environ["AIRFLOW_CONN_TRACECTL_DEFAULT"] = json.dumps({"conn_type": "tracectl", "host": url})
    out: dict[str, Any] = {}

    ok = TracectlTaskOperator(
        task_id="ok_step",
        command=["python", "-c", "print('hi')"],
        deferrable=False,
        poll_timeout_s=5,
    )
    out["ok"] = [run_try(ok, 1), run_try(ok, 2)]
    bad = TracectlTaskOperator(
        task_id="bad_step",
        command=["python", "-c", "import sys; sys.exit(3)"],
        deferrable=False,
        poll_timeout_s=5,
    )
    out["bad"] = [run_try(bad, 1), run_try(bad, 2), run_try(bad, 2)]

    quitter = TracectlServiceOperator(
        task_id="quitter", command=["python", "-c", "print(1)"], ready_timeout_s=120
    )
    out["quitter"] = run_try(quitter, 1)
    service = TracectlServiceOperator(
        task_id="serve", command=["python", "-c", SERVER], ready_timeout_s=120
    )
    out["service"] = run_try(service, 1)
    stop = TracectlStopServiceOperator(task_id="stop", service_task_id="serve")
    out["stop"] = run_try(stop, 1)
    out["on_kill"] = trigger_on_kill(url)
    out["failed_in_worker"] = failed_in_worker()
    python = "{}.{}".format(*sys.version_info[:2])
    pinned = TracectlTaskOperator(
        task_id="pinned",
        command=["python", "-c", "import sys; print(sys.version)"],
        environment={"python": python},
        deferrable=False,
    )
    out["environment"] = {"python": python, **run_try(pinned, 1, "manual__environment")}
    filed = TracectlTaskOperator(
        task_id="filed",
        command=["true"],
        environment={"requirements": "requirements.txt"},
        deferrable=False,
    )
    out["environment_without_code"] = run_try(filed, 1, "manual__environment")

    server, calls = flaky_server()
    port = server.server_address[1]
    os.environ["AIRFLOW_CONN_FLAKY"] = json.dumps(
        {
            "conn_type": "tracectl",
            "host": f"http://127.0.0.1:{port}",
            "extra": {"backoff_s": 0.05, "retries": 3},
        }
    )
    out["flaky"] = {"ok": TracectlHook("flaky").test_connection(), "calls": len(calls)}
    server.shutdown()
    server.server_close()
    os.environ["AIRFLOW_CONN_DOWN"] = json.dumps(
        {
            "conn_type": "tracectl",
            "host": f"http://127.0.0.1:{port}",
            "extra": {"backoff_s": 0.05, "retries": 2, "retry_for_s": 0},
        }
    )
    try:
        TracectlHook("down").request("GET", "/healthz")
        out["down"] = None
    except ConnectionError as exc:
        out["down"] = str(exc)
    try:
        real = TracectlHook().ensure_run(
            pipeline="semantics", dag_id="semantics", run_id="manual__invalid"
        )
        TracectlHook().submit_task(real["id"], name="x", spec={"command": []}, idempotency_key="k")
        out["invalid"] = None
    except TracectlApiError as exc:
        out["invalid"] = {"status": exc.status, "message": str(exc)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
