"""The controller's dispatch path, POST /v1/runs/{id}/tasks -> Job created, with timestamps.

    python bench/dispatch_path.py serve --home DIR --port N --stamps FILE   # (dispatch.py runs it)

`serve` runs a real controller (`create_app`: API, store, supervisor, KubernetesExecutor) in
this process, with stamps (wall clock, `time.time()`, so the bench process can compare them)
taken along each task's path:

    api_in      the HTTP handler starts (ControllerService.submit_task)
    committed   the task row is committed (Submission._insert returned)
    api_out     the handler returns (the response is then serialized and sent)
    picked      the supervisor starts the attempt (Launcher.start_attempt)
    create      KubernetesExecutor.launch is called (namespace, informers, then the Job)
    tracking    the MLflow run of the attempt exists (TrackingRuns.ensure,
                called by launch() once the Job is created)
    created     launch returned (the Job and its launch Secret exist in the API server)
    running     RUNNING and the Job reference are committed (Launcher.mark_running)

On SIGINT/SIGTERM the server stops and writes {task_id: {stamp: seconds}} to FILE, and
`_cpu_s`, the CPU time the controller process used. The bench process adds `watched`, the
moment its own watch sees the Job ADDED.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STAMPS: dict[str, dict[str, float]] = defaultdict(dict)
_LOCK = threading.Lock()


def _stamp(task_id: str, what: str) -> None:
    now = time.time()
    with _LOCK:
        STAMPS[task_id].setdefault(what, now)


def _wrap(owner: Any, name: str, before: str | None, after: str | None, task_of: Any) -> None:
    """Stamp BEFORE / AFTER around OWNER.NAME; TASK_OF(args, result) names the task."""
    real = getattr(owner, name)

    @functools.wraps(real)
    def stamped(*args: Any, **kwargs: Any) -> Any:
        if before is not None and (task := task_of(args, None)):
            _stamp(task, before)
        result = real(*args, **kwargs)
        if after is not None and (task := task_of(args, result)):
            _stamp(task, after)
        return result

    setattr(owner, name, stamped)


def instrument() -> None:
    from controller.core.launcher import Launcher
    from controller.core.service import ControllerService
    from controller.core.submission import Submission
    from controller.core.tracking_runs import TrackingRuns
    from controller.executors.kubernetes import KubernetesExecutor

    pending: threading.local = threading.local()  # the handler's start, until the id is known

    real_submit = ControllerService.submit_task

    @functools.wraps(real_submit)
    def submit(self: Any, run_id: str, request: Any) -> Any:
        pending.at = time.time()
        task, created = real_submit(self, run_id, request)
        with _LOCK:
            STAMPS[task.id].setdefault("api_in", pending.at)
        _stamp(task.id, "api_out")
        return task, created

    ControllerService.submit_task = submit  # type: ignore[method-assign]
    _wrap(Submission, "_insert", None, "committed", lambda a, r: r[0].id if r else None)
    _wrap(Launcher, "start_attempt", "picked", None, lambda a, r: a[1])
    _wrap(TrackingRuns, "ensure", None, "tracking", lambda a, r: a[2])
    _wrap(KubernetesExecutor, "launch", "create", "created", lambda a, r: a[1].task_id)
    _wrap(Launcher, "mark_running", None, "running", lambda a, r: a[1])


def serve(home: Path, port: int, stamps: Path) -> None:
    sys.path.insert(0, str(REPO))
    import uvicorn

    from controller.api.app import create_app
    from controller.config import Settings
    from controller.server import settle_collector

    instrument()
    settings = Settings.from_env(home=home, executor="kubernetes", port=port)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
    )
    settle_collector()  # as `tracectl server` does
    try:
        server.run()
    finally:
        with _LOCK:  # with the CPU the whole controller used (all its threads), in seconds
            stamps.write_text(json.dumps({**STAMPS, "_cpu_s": time.process_time()}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stamps", type=Path, required=True)
    args = parser.parse_args()
    serve(args.home, args.port, args.stamps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
