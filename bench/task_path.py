"""One local task's path on the clock, stage by stage: wall and thread CPU of each step.

    python bench/task_path.py [--tasks 40]

Runs bench/environments.py's per-task loop (embedded controller, warm runner, bare
`python -c` tasks one after another) with the supervisor's steps, the MLflow calls and the
executor's calls wrapped: each call's wall time and its thread's CPU time
(`time.thread_time`), and, per task, when each step started and ended counted from the
bench's `POST` of the task (p50 over the tasks after the first two). `cmd` is the
command's own first and last line. Steps nest (`finish` holds `archive_log` and
`record_attempt`; `close_tracking`, `models_of` and `complete` run on threads of their
own). The JSON result on stdout carries the command and the load average.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import bench.environments as envs
from bench.machine import load, machine
from bench.stats import summary
from controller.cli.client import Client
from controller.core import ending, inspection, launcher, tracking_runs
from controller.executors import local
from controller.tracking import mlflow_tracking

# (step, start, end, thread CPU seconds)
Call = tuple[str, float, float, float]
STEPS: list[tuple[Any, str, str]] = [
    (launcher.Launcher, "admit_and_launch", "admit_and_launch"),
    (launcher.Launcher, "start_attempt", "start_attempt"),
    (tracking_runs.TrackingRuns, "complete", "complete"),
    (launcher.Launcher, "mark_running", "mark_running"),
    (inspection.Inspector, "inspect_active", "inspect_active"),
    (ending.Finisher, "finish", "finish"),
    (tracking_runs.TrackingRuns, "close", "close_tracking"),
    (tracking_runs.TrackingRuns, "models", "models_of"),
    (ending.Finisher, "archive_log", "archive_log"),
    (ending, "record_attempt", "record_attempt"),
    (mlflow_tracking.MlflowTracking, "start_run", "mlflow.start_run"),
    (mlflow_tracking.MlflowTracking, "finish_run", "mlflow.finish_run"),
    (local.LocalExecutor, "launch", "executor.launch"),
    (Client, "post", "post"),
]


def wrap(owner: Any, name: str, step: str, calls: list[Call]) -> None:
    if not hasattr(owner, name):
        return
    fn: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start, cpu = time.time(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            calls.append((step, start, time.time(), time.thread_time() - cpu))

    setattr(owner, name, timed)


def per_task(calls: list[Call]) -> list[dict[str, tuple[float, float]]]:
    """Each task's steps, (start, end) from its POST, the first call of each step only."""
    posts = sorted((c for c in calls if c[0] == "post"), key=lambda c: c[1])[1:]  # 0: the run
    tasks = []
    for index, post in enumerate(posts):
        until = posts[index + 1][1] if index + 1 < len(posts) else float("inf")
        steps: dict[str, tuple[float, float]] = {}
        for step, start, end, _ in sorted(calls, key=lambda c: c[1]):
            if post[1] <= start < until and step not in steps:
                steps[step] = (start - post[1], end - post[1])
        tasks.append(steps)
    return tasks[2:]  # the first warms imports, the second the first round of everything


def report(calls: list[Call], tasks: int) -> dict[str, Any]:
    timeline: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for steps in per_task(calls):
        for step, (start, end) in steps.items():
            timeline[step]["start"].append(start)
            timeline[step]["end"].append(end)
    cost: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for step, start, end, cpu in calls:
        cost[step]["wall"].append(end - start)
        cost[step]["cpu"].append(cpu)
    return {
        "from_post_ms": {
            step: {k: summary(v, (0.5,), scale=1000, digits=1)["p50_ms"] for k, v in ends.items()}
            for step, ends in sorted(timeline.items(), key=lambda kv: sorted(kv[1]["start"])[0])
        },
        "per_call_ms": {
            step: {
                "calls_per_task": round(len(v["wall"]) / tasks, 2),
                "wall": summary(v["wall"], scale=1000, digits=1),
                "cpu": summary(v["cpu"], scale=1000, digits=1),
                "cpu_per_task": round(sum(v["cpu"]) / tasks * 1000, 1),
            }
            for step, v in sorted(cost.items())
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=40)
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    load_at_start = load()
    calls: list[Call] = []
    lock = threading.Lock()

    def record(call: Call) -> None:
        with lock:
            calls.append(call)

    class Calls(list[Call]):
        def append(self, call: Call) -> None:
            record(call)

    sink = Calls()
    for owner, name, step in STEPS:
        wrap(owner, name, step, sink)
    stamps = envs.stamps

    def stamped(api: Client, task_id: str) -> tuple[float, float]:
        first, last = stamps(api, task_id)
        record(("cmd", first, last, 0.0))
        return first, last

    envs.stamps = stamped
    overall = envs.task_overhead(args.tasks, warm=True)
    print(
        json.dumps(
            {
                "bench": "task_path",
                "command": " ".join(["python", *sys.argv]),
                **report(calls, args.tasks),
                "overhead": overall["overhead"],
                "cpu_per_task_ms": overall["cpu_per_task_ms"],
                "machine": machine(load_at_start),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
