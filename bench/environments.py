"""Task environments: cold build and warm hit of the wine environment, per-task overhead.

    python bench/environments.py [--tasks 50] [--hits 50] [--cold-uv-cache] [--airflow]

- cold build: examples/wine's uv.lock into an empty environment cache (uv's wheel cache as
  it is; with --cold-uv-cache an empty one too, so every wheel is downloaded from PyPI);
- warm hit: the same key again (lock, JSON read), --hits times;
- per-task overhead of the local executor on the embedded default (default settings: the
  loops wake on a submit and on an exit, not on their 0.2 s round): TASKS tasks, each
  `python -c` printing time.time() first and last; from submit to the command's first line,
  and from the command's last line to the task recorded `succeeded` (its finished_at);
- with --airflow, the same command as TASKS BashOperator tasks in a row under `dag.test()`
  (what `airflow dags test` runs) in deploy/local/airflow's venv (a fresh SQLite home).

Both sides are measured alike (`overhead` in the JSON), each from its own records and the
command's two stamps: the task's recorded duration minus the command's own time,
(end - start) - (last - first), where start/end are the task instance's start_date/end_date
for Airflow and the task's started_at (admitted) / finished_at for tracectl; and the same from
the moment the task could run: tracectl's submit (the API call), Airflow's upstream task's
end_date (dag.test() schedules the next task then). The first task of each side (it warms
imports and builds the bare environment) is left out.
CPU per task (`cpu_per_task_ms`) is given beside each side's wall figures, as wall time on
a shared machine says more about the other processes than about this one.
The JSON result on stdout carries the command and the machine (load average at start and end).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.machine import load, machine
from bench.stats import summary
from controller.cli.client import Client
from controller.config import Settings
from controller.domain.spec import EnvironmentSpec
from controller.runtime import env_build, env_resolve
from controller.server import EmbeddedServer

REPO = Path(__file__).resolve().parents[1]
WINE = REPO / "examples" / "wine"
STAMP = "import time; print('first', time.time(), flush=True); print('last', time.time())"


def stats(values: list[float]) -> dict[str, float | None]:
    return summary(values, scale=1000)


def wine_environment(root: Path, hits: int) -> dict[str, Any]:
    spec = EnvironmentSpec(uv_lock="uv.lock")
    resolved = env_resolve.resolve(spec, lambda p: (WINE / p).read_bytes())
    started = time.perf_counter()
    built, lock = env_build.acquire(resolved, WINE, root, lambda _m: None)
    cold = time.perf_counter() - started
    lock.release()
    times = []
    for _ in range(hits):
        started = time.perf_counter()
        hit, lock = env_build.acquire(resolved, WINE, root, lambda _m: None)
        times.append(time.perf_counter() - started)
        lock.release()
        assert not hit.built
    return {
        "cold_build_s": round(cold, 2),
        "packages": len(built.packages),
        "python": built.python_version,
        "warm_hit": stats(times),
    }


def stamps(api: Client, task_id: str) -> tuple[float, float]:
    lines = api.get(f"/v1/tasks/{task_id}/logs", limit=1000)["items"]
    found = {
        line["message"].split()[0]: float(line["message"].split()[1])
        for line in lines
        if line["message"].startswith(("first ", "last "))
    }
    return found["first"], found["last"]


def cpu_of_children() -> float:
    """CPU seconds of this process's reaped children (and theirs, reaped by them)."""
    times = os.times()
    return times.children_user + times.children_system


def command_cpu(runs: int = 20) -> float:
    """The bench command's own CPU per run (its interpreter's start), outside any runner."""
    before = cpu_of_children()
    for _ in range(runs):
        subprocess.run([sys.executable, "-c", STAMP], check=True, capture_output=True)
    return (cpu_of_children() - before) / runs


def task_overhead(tasks: int, warm: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tracectl-bench-envs-") as home:
        # The default loop interval: a submit and an exit wake the loops, not a round.
        settings = Settings(home=Path(home), local_warm_runner=warm)
        children_before = cpu_of_children()
        with EmbeddedServer(settings) as srv:
            api = Client(srv.url)
            run = api.post("/v1/runs", {"pipeline": "bench-environments"})["id"]
            before, after, duration, from_ready = [], [], [], []
            first_task_s = 0.0
            for index in range(tasks):
                if index == 1:  # CPU of the tasks measured, after the first
                    cpu_at = time.process_time()
                submitted = time.time()
                task = api.post(
                    f"/v1/runs/{run}/tasks",
                    {"name": f"t{index}", "spec": {"command": ["python", "-c", STAMP]}},
                )["id"]
                done = api.get(f"/v1/tasks/{task}/wait", timeout_s=60)
                while done["status"] not in ("succeeded", "failed", "cancelled"):
                    done = api.get(f"/v1/tasks/{task}/wait", timeout_s=60)
                if done["status"] != "succeeded":
                    raise AssertionError(f"task ended {done['status']}: {done['reason']}")
                first, last = stamps(api, task)
                finished = datetime.fromisoformat(done["finished_at"]).timestamp()
                started = datetime.fromisoformat(done["started_at"]).timestamp()
                before.append(first - submitted)
                after.append(finished - last)
                duration.append((finished - started) - (last - first))
                from_ready.append((finished - submitted) - (last - first))
                if index == 0:
                    first_task_s = finished - submitted
            controller_cpu = time.process_time() - cpu_at
        # the warm runner is reaped at the server's stop, with every runner and command in it
        runners_cpu = cpu_of_children() - children_before
    own = command_cpu()
    measured = max(tasks - 1, 1)
    return {
        "tasks": tasks,
        "warm_runner": settings.local_warm_runner,
        "supervisor_interval_s": settings.supervisor_interval_s,
        "first_task_submit_to_end_s": round(first_task_s, 2),
        "cpu_per_task_ms": {
            "controller_and_client": round(controller_cpu / measured * 1000, 1),
            "runner_and_command": round(runners_cpu / tasks * 1000, 1),
            "command_alone": round(own * 1000, 1),
            "note": "controller_and_client: this process (the embedded controller and the "
            "bench's HTTP client), tasks 2..N; runner_and_command: the warm runner, every "
            "runner and command (all N tasks, the warm runner's start included)",
        },
        "submit_to_first_line": stats(before[1:]),
        "exit_to_succeeded": stats(after[1:]),
        "overhead": {
            "duration_minus_command": stats(duration[1:]),
            "ready_to_end_minus_command": stats(from_ready[1:]),
        },
        "note": "the first task (it builds the bare environment) is left out",
    }


def airflow_overhead(tasks: int) -> dict[str, Any]:
    out = subprocess.run(
        [str(REPO / "deploy" / "local" / "airflow"), "env"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    venv = Path(
        dict(line.split("=", 1) for line in out.splitlines() if "=" in line)["AIRFLOW_VENV"]
    )
    with tempfile.TemporaryDirectory(prefix="tracectl-bench-airflow-") as home:
        env = {
            **os.environ,
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__DAGS_FOLDER": home,
            "TRACECTL_BENCH_TASKS": str(tasks),
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        env.pop("VIRTUAL_ENV", None)
        subprocess.run(
            [str(venv / "bin" / "airflow"), "db", "migrate"],
            env=env,
            check=True,
            capture_output=True,
        )
        # dag.test() serializes the DAG from its file, which must be in the DAGs folder.
        runner = shutil.copy(REPO / "bench" / "airflow_overhead_runner.py", home)
        cpu_before = cpu_of_children()
        done = subprocess.run(
            [str(venv / "bin" / "python"), str(runner)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        airflow_cpu = cpu_of_children() - cpu_before
    rows = json.loads([ln for ln in done.stdout.splitlines() if ln.startswith("{")][-1])["tasks"]
    rows = sorted(rows, key=lambda r: int(r["task"][1:]))
    ready = [prev["end"] for prev in rows[:-1]]
    rows = rows[1:]  # the first warms imports
    own = [r["last"] - r["first"] for r in rows]
    return {
        "tasks": tasks,
        "start_to_first_line": stats([r["first"] - r["start"] for r in rows]),
        "exit_to_end": stats([r["end"] - r["last"] for r in rows]),
        "overhead": {
            "duration_minus_command": stats(
                [r["end"] - r["start"] - c for r, c in zip(rows, own, strict=True)]
            ),
            "ready_to_end_minus_command": stats(
                [r["end"] - t - c for r, t, c in zip(rows, ready, own, strict=True)]
            ),
        },
        "cpu_per_task_ms": round(airflow_cpu / tasks * 1000, 1),
        "cpu_note": "the dag.test() process and its commands, Airflow's start included",
        "runner": "dag.test() (in-process task runs, SQLite metadata DB)",
    }


def ratio(airflow: dict[str, Any] | str, local: dict[str, Any]) -> dict[str, float] | None:
    """Airflow's p50 overhead over tracectl's, per measure (the target: at least 5)."""
    if isinstance(airflow, str):
        return None
    return {
        name: round(value["p50_ms"] / max(local["overhead"][name]["p50_ms"], 0.01), 2)
        for name, value in airflow["overhead"].items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--hits", type=int, default=50)
    parser.add_argument("--cold-uv-cache", action="store_true")
    parser.add_argument("--airflow", action="store_true")
    parser.add_argument("--cold-runner", action="store_true", help="no warm runner (as before)")
    args = parser.parse_args()
    # As scripts/test does: with it set, every runner and CLI start compiles its imports.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    load_at_start = load()
    with tempfile.TemporaryDirectory(prefix="tracectl-bench-envcache-") as root:
        if args.cold_uv_cache:
            os.environ["UV_CACHE_DIR"] = str(Path(root) / "uv-cache")
        wine = wine_environment(Path(root) / "envs", args.hits)
    os.environ.pop("UV_CACHE_DIR", None)
    local = task_overhead(args.tasks, warm=not args.cold_runner)
    airflow: dict[str, Any] | str = (
        airflow_overhead(args.tasks)
        if args.airflow
        else "not measured (--airflow: needs deploy/local/airflow's venv)"
    )
    print(
        json.dumps(
            {
                "bench": "environments",
                "command": " ".join(["python", *sys.argv]),
                "wine_environment": {**wine, "uv_cache": "cold" if args.cold_uv_cache else "warm"},
                "local_executor": local,
                "airflow": airflow,
                "overhead_ratio_airflow_over_tracectl": ratio(airflow, local),
                "machine": machine(load_at_start),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
