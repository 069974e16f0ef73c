"""TracectlTaskOperator writing the tracectl task's log into the Airflow task log (run in
Airflow's venv, outside a scheduler, against a real controller).

usage: python task_log_runner.py CONTROLLER_URL MARKER_DIR
Prints one JSON object: per scenario, the lines the operator logged and its error.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo, for tests.*
from tests.airflow.operator_semantics_runner import FakeTI

WAITS = (
    "import os, sys, time\nprint('first', flush=True)\n"
    "while not os.path.exists(sys.argv[1]):\n    time.sleep(0.05)\n"
    "print('second', flush=True)\ntime.sleep(0.5)  # two pipes: order lines across them\n"
    "print('ERROR: third', file=sys.stderr, flush=True)\n"
)
FAILS = "import sys\nprint('boom', file=sys.stderr)\nsys.exit(3)\n"
FIVE = "for i in range(1, 6):\n    print('line', i)\n"
SERVES = (
    "import http.server, os\nprint('loading the model', flush=True)\n"
    "print('listening on', os.environ['PORT'], flush=True)\n"
    "http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), "
    "http.server.SimpleHTTPRequestHandler).serve_forever()\n"
)


class Capture:
    """Stands for the operator's logger (what Airflow writes into the task log); when a
    line says 'first', it lets the task go on, so 'second' only comes if lines stream."""

    def __init__(self, marker: Path) -> None:
        self.marker, self.lines = marker, list[str]()

    def _add(self, msg: str, *args: Any, **_: Any) -> None:
        self.lines.append(msg % args if args else msg)
        if self.lines[-1].endswith("] first"):
            self.marker.touch()

    info = warning = error = debug = exception = _add


def logged(op: Any, marker: Path, run: Any) -> dict[str, Any]:
    capture = Capture(marker)
    type(op).log = property(lambda _self: capture)  # what `self.log.info` writes to
    try:
        run()
        error = None
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    return {"lines": capture.lines, "error": error}


def main() -> int:
    from controller.airflow.hooks import TracectlHook
    from controller.airflow.operators import TracectlServiceOperator, TracectlTaskOperator

    url, markers = sys.argv[1], Path(sys.argv[2])
    os.environ["AIRFLOW_CONN_TRACECTL_DEFAULT"] = json.dumps({"conn_type": "tracectl", "host": url})
    ctx = {"ti": FakeTI("x", 1, run_id="manual__tasklog"), "dag": None}
    marker = markers / "go"
    streamed = TracectlTaskOperator(
        task_id="streamed",
        deferrable=False,
        command=["python", "-c", WAITS, str(marker)],
        task_timeout_s=120,
    )
    out = {
        "streamed": logged(
            streamed,
            marker,
            lambda: streamed.execute(
                {**ctx, "ti": FakeTI("streamed", 1, run_id="manual__tasklog")}
            ),
        )
    }
    failing = TracectlTaskOperator(
        task_id="failing", deferrable=False, command=["python", "-c", FAILS]
    )
    out["failing"] = logged(
        failing,
        marker,
        lambda: failing.execute({**ctx, "ti": FakeTI("failing", 1, run_id="manual__tasklog")}),
    )

    hook = TracectlHook()
    run = hook.ensure_run(pipeline="tasklog", dag_id="tasklog", run_id="manual__tasklog")
    task = hook.submit_task(
        run["id"],
        name="five",
        idempotency_key="tasklog:five",
        spec={"command": ["python", "-c", FIVE]},
    )
    while task["status"] not in ("succeeded", "failed", "cancelled"):
        task = hook.wait_task(task["id"], 10.0)
    resumed = TracectlTaskOperator(task_id="five", command=["true"], log_tail_lines=2)
    event = {"status": "terminal", "task": task}
    out["resumed"] = logged(
        resumed,
        marker,
        lambda: resumed.execute_complete(
            {**ctx, "ti": FakeTI("five", 1, run_id="manual__tasklog")}, event
        ),
    )
    out["resumed"]["task_id"] = task["id"]
    service = TracectlServiceOperator(
        task_id="serve", command=["python", "-c", SERVES], ready_timeout_s=120
    )
    serve_ti = FakeTI("serve", 1, run_id="manual__tasklog_service")
    out["service"] = logged(service, marker, lambda: service.execute({**ctx, "ti": serve_ti}))
    out["service"]["url"] = serve_ti.xcoms.get("service_url")
    served = serve_ti.xcoms.get("tracectl_task_id")
    if served:  # stop it: closing its run ends the service
        hook.close_run(hook.get_task(served)["run_id"])
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
