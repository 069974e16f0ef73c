"""Local long-running services: submit -> URL answers, and close -> service stopped.

    python bench/services.py [--services 10]

On the embedded default (SQLite, local executor), each round creates a run, submits one
`mode: service` task (a small HTTP server on env PORT), and times: submit until the task's
`executor_ref.url` answers an HTTP GET (runner start, MLflow run, port probe, store write),
then `POST /v1/runs/{id}/close` until the task is succeeded with "stopped: run ended"
(SIGTERM, log archive, lineage record). The JSON result on stdout carries the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import stats
from bench.machine import load, machine
from controller.cli.client import Client
from controller.config import Settings
from controller.server import EmbeddedServer

SERVICE = (
    "import http.server, os\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.send_header('Content-Length', '2')\n"
    "        self.end_headers(); self.wfile.write(b'ok')\n"
    "    def log_message(self, *a): pass\n"
    "http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n"
)


def poll(check: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.01)
    raise TimeoutError("no answer in time")


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def one_round(api: Client) -> tuple[float, float]:
    started = time.perf_counter()
    run = api.post("/v1/runs", {"pipeline": "bench-services"})["id"]
    task = api.post(
        f"/v1/runs/{run}/tasks",
        {"name": "serve", "spec": {"command": [sys.executable, "-c", SERVICE], "mode": "service"}},
    )["id"]

    def url() -> str | None:
        ref = api.get(f"/v1/tasks/{task}").get("executor_ref") or {}
        return ref["url"] if ref.get("ready") and answers(ref["url"]) else None

    poll(url)
    ready_s = time.perf_counter() - started
    closing = time.perf_counter()
    api.post(f"/v1/runs/{run}/close")
    done = poll(
        lambda: (
            t
            if (t := api.get(f"/v1/tasks/{task}"))["status"] in ("succeeded", "failed", "cancelled")
            else None
        )
    )
    if (done["status"], done["reason"]) != ("succeeded", "stopped: run ended"):
        raise AssertionError(f"service ended {done['status']}: {done['reason']}")
    return ready_s, time.perf_counter() - closing


def summary(values: list[float]) -> dict[str, float | None]:
    return stats.summary(values, (0.5,), scale=1000, digits=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=10)
    args = parser.parse_args()
    load_at_start = load()
    with tempfile.TemporaryDirectory(prefix="tracectl-bench-services-") as home:
        settings = Settings(home=Path(home), supervisor_interval_s=0.2)
        with EmbeddedServer(settings) as srv:
            api = Client(srv.url)
            rounds = [one_round(api) for _ in range(args.services)]
    print(
        json.dumps(
            {
                "bench": "services",
                "command": " ".join(sys.argv),
                "services": args.services,
                "submit_to_url_answers": summary([r[0] for r in rounds]),
                "close_to_stopped": summary([r[1] for r in rounds]),
                "machine": machine(load_at_start),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
