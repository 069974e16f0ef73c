"""Many long-polling waiters: 1,000 `GET /v1/tasks/{id}/wait` while other calls are timed.

    python bench/waiters.py [--waiters 1000] [--tasks 50] [--calls 200]

Starts a real controller process (`tracectl server`, uvicorn, SQLite, local executor) like
tests/server_process.py. One run holds a `gate` task (`sleep`) and TASKS tasks that take its
output, so they stay pending with no process of their own. WAITERS concurrent long polls
(`timeout_s=60`, re-issued when they return) spread over those tasks; meanwhile CALLS of each
of list runs, get task and submit (a task pending on the gate) are timed one after another.
Target: p99 of those calls under 100 ms. The JSON result on stdout carries the command and
the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import stats
from controller.server import free_port

WAIT_TIMEOUT_S = 60
SERIAL = itertools.count(10_000)  # the names of the tasks the timed submits add


def start_controller(home: Path, port: int) -> subprocess.Popen[bytes]:
    log = (home / "server.log").open("ab")
    argv = ["server", "--home", str(home), "--port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.cli.main", *argv],
        env={**os.environ, "TRACECTL_SUPERVISOR_INTERVAL_S": "0.2"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the controller did not start: see {home / 'server.log'}")


def pending_spec(n: int) -> dict[str, Any]:
    return {
        "name": f"w{n}",
        "spec": {"command": ["true"], "inputs": [{"artifact": "task:gate/out", "path": "in"}]},
    }


def set_up(api: httpx.Client, tasks: int) -> tuple[str, list[str]]:
    run = api.post("/v1/runs", json={"pipeline": "bench-waiters"}).raise_for_status().json()["id"]
    gate = {"name": "gate", "spec": {"command": ["sleep", "600"], "outputs": ["out"]}}
    api.post(f"/v1/runs/{run}/tasks", json=gate).raise_for_status()
    ids = [
        api.post(f"/v1/runs/{run}/tasks", json=pending_spec(n)).raise_for_status().json()["id"]
        for n in range(tasks)
    ]
    return run, ids


async def waiter(
    client: httpx.AsyncClient, task_id: str, stop: asyncio.Event, counts: dict[str, int]
) -> None:
    while not stop.is_set():
        response = await client.get(
            f"/v1/tasks/{task_id}/wait", params={"timeout_s": WAIT_TIMEOUT_S}
        )
        counts["returned" if response.status_code == 200 else f"http_{response.status_code}"] += 1


def timed(call: Any, api: httpx.Client) -> float:
    started = time.perf_counter()
    call(api).raise_for_status()
    return time.perf_counter() - started


def time_calls(url: str, run: str, task: str, calls: int) -> dict[str, list[float]]:
    kinds: dict[str, Any] = {
        "list_runs": lambda api: api.get("/v1/runs", params={"limit": 50}),
        "get_task": lambda api: api.get(f"/v1/tasks/{task}"),
        "submit": lambda api: api.post(f"/v1/runs/{run}/tasks", json=pending_spec(next(SERIAL))),
    }
    times: dict[str, list[float]] = {k: [] for k in kinds}
    with httpx.Client(base_url=url, timeout=30) as api:
        for _ in range(calls):
            for kind, call in kinds.items():
                times[kind].append(timed(call, api))
    return times


def summary(values: list[float]) -> dict[str, float | None]:
    return stats.summary(values, (0.5, 0.99), scale=1000, digits=1)


async def measure(url: str, run: str, ids: list[str], waiters: int, calls: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=waiters + 10, max_keepalive_connections=waiters + 10)
    counts: dict[str, int] = {"returned": 0}
    stop = asyncio.Event()
    async with httpx.AsyncClient(
        base_url=url, limits=limits, timeout=WAIT_TIMEOUT_S + 30
    ) as client:
        tasks = [
            asyncio.create_task(waiter(client, ids[i % len(ids)], stop, counts))
            for i in range(waiters)
        ]
        await asyncio.sleep(5)  # every waiter connected and parked
        started = time.perf_counter()
        times = await asyncio.to_thread(time_calls, url, run, ids[0], calls)
        elapsed = time.perf_counter() - started
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"times": times, "elapsed_s": round(elapsed, 1), "waits": counts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--waiters", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tracectl-bench-waiters-") as tmp:
        home, port = Path(tmp), free_port()
        proc = start_controller(home, port)
        url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=url, timeout=30) as api:
                run, ids = set_up(api, args.tasks)
                idle = time_calls(url, run, ids[0], min(args.calls, 50))
            loaded = asyncio.run(measure(url, run, ids, args.waiters, args.calls))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    result = {
        "bench": "waiters",
        "command": " ".join(["python", *sys.argv]),
        "waiters": args.waiters,
        "tasks_waited_on": args.tasks,
        "calls_each": args.calls,
        "without_waiters": {k: summary(v) for k, v in idle.items()},
        "with_waiters": {k: summary(v) for k, v in loaded["times"].items()},
        "timed_for_s": loaded["elapsed_s"],
        "waits": loaded["waits"],
        "target_p99_ms": 100,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
    }
    worst = max(s["p99_ms"] for s in result["with_waiters"].values())
    result["meets_target"] = worst < 100
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
