"""Many long-polling waiters: 1,000 `GET /v1/tasks/{id}/wait` while other calls are timed.

    python bench/waiters.py [--waiters 1000] [--tasks 50] [--calls 100]

Three processes, so that neither the waiters nor the server take the timed client's CPU or
event loop: a real controller (`tracectl server`, uvicorn, SQLite, local executor, like
tests/server_process.py); a waiter process (this file with `--park`) holding WAITERS
keep-alive connections, each a long poll (`timeout_s=60`, re-issued when it returns) on one
of TASKS tasks that stay pending behind a `gate` task (`sleep`); and this process, which
times CALLS of each of list runs, get task and submit (a task pending on the gate), one after
another, first without waiters, then with them. Target: p99 of those calls under 100 ms.
Each phase reports the server's CPU per timed call (all its threads: the supervisor and the
waiters' poller included) and the load average before and after, since two shared cores
say more about their other users than about the server. The JSON result on stdout carries
the command and the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import stats
from bench.machine import load, machine
from controller.loopback import free_port

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


def gate_running(api: httpx.Client, run: str) -> None:
    """Wait for the gate to run: its launch (the first one imports MLflow) is not timed."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        tasks = api.get("/v1/tasks", params={"run_id": run, "limit": 1}).json()["items"]
        if tasks and tasks[0]["status"] == "running":
            return
        time.sleep(0.5)
    raise SystemExit("the gate task did not start")


# -- the waiter process (--park) -------------------------------------------------------------
async def long_poll(port: int, task_id: str, counts: dict[str, int]) -> None:
    """Long polls of TASK_ID one after another on one keep-alive connection (plain HTTP/1.1:
    an HTTP client library would cost this process more CPU than the server)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        f"GET /v1/tasks/{task_id}/wait?timeout_s={WAIT_TIMEOUT_S} HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n\r\n"
    ).encode()
    while True:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1].decode()
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        )
        await reader.readexactly(length)
        counts["returned" if status == "200" else f"http_{status}"] += 1


async def park(port: int, ids: list[str], waiters: int) -> None:
    """WAITERS long polls until stdin closes; then their counts on stdout."""
    counts: dict[str, int] = {"returned": 0}
    polls = [
        asyncio.create_task(long_poll(port, ids[i % len(ids)], counts)) for i in range(waiters)
    ]
    await asyncio.sleep(1)
    print("parked", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    failed = sum(1 for p in polls if p.done() and p.exception() is not None)
    print(json.dumps({**counts, "connections_failed": failed}), flush=True)


def start_waiters(port: int, ids: list[str], waiters: int) -> subprocess.Popen[str]:
    argv = [sys.executable, __file__, "--park", str(port), "--waiters", str(waiters), *ids]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "parked":
        raise SystemExit("the waiter process did not start")
    return proc


def stop_waiters(proc: subprocess.Popen[str]) -> dict[str, int]:
    out, _ = proc.communicate("", timeout=60)
    return dict(json.loads(out.strip().splitlines()[-1]))


# -- the timed client ------------------------------------------------------------------------
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
    with httpx.Client(base_url=url, timeout=60) as api:
        for _ in range(calls):
            for kind, call in kinds.items():
                times[kind].append(timed(call, api))
    return times


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process PID, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase(server: int, url: str, run: str, task: str, calls: int) -> dict[str, Any]:
    """The timed calls, with the server's CPU per call and the load around them."""
    load_before, cpu_before, started = os.getloadavg()[0], cpu_s(server), time.perf_counter()
    times = time_calls(url, run, task, calls)
    cpu = cpu_s(server) - cpu_before
    return {
        **{kind: summary(values) for kind, values in times.items()},
        "timed_for_s": round(time.perf_counter() - started, 1),
        "server_cpu_ms_per_call": round(cpu * 1000 / (calls * len(times)), 2),
        "load_average_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }


def summary(values: list[float]) -> dict[str, float | None]:
    return stats.summary(values, (0.5, 0.99), scale=1000, digits=1)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tracectl-bench-waiters-") as tmp:
        port = free_port()
        server, url = start_controller(Path(tmp), port), f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=url, timeout=60) as api:
                run, ids = set_up(api, args.tasks)
                gate_running(api, run)
            idle = phase(server.pid, url, run, ids[0], args.calls)
            waiters = start_waiters(port, ids, args.waiters)
            time.sleep(5)  # every long poll arrived and parked
            loaded = phase(server.pid, url, run, ids[0], args.calls)
            waits = stop_waiters(waiters)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    return {"without_waiters": idle, "with_waiters": loaded, "waits": waits}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--waiters", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--park", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("ids", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.park:
        asyncio.run(park(args.park, args.ids, args.waiters))
        return 0
    load_at_start = load()
    phases = measure(args)
    worst = max(
        phases["with_waiters"][kind]["p99_ms"] for kind in ("list_runs", "get_task", "submit")
    )
    result = {
        "bench": "waiters",
        "command": " ".join(["python", *sys.argv]),
        "waiters": args.waiters,
        "tasks_waited_on": args.tasks,
        "calls_each": args.calls,
        **phases,
        "target_p99_ms": 100,
        "meets_target": worst < 100,
        "machine": machine(load_at_start),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
