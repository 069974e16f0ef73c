"""`tracectl logs` on a big log: every line, `--tail 100`, and `--grep`, as a user runs them.

    python bench/logs_cli.py                    # 1,000,000 lines, JSON on stdout
    python bench/logs_cli.py --lines 200000 --repeat 5 --baseline

A real controller (`tracectl server`, embedded default: file log record) runs one short task;
its attempt's log is then replaced with LINES lines in the file sink's own format (its
`encode` and seek index, what `FileLogSink.emit` writes for a runner), so that a million-line
log takes seconds to make instead of the minutes a task printing it would. Each command is
`.venv/bin/tracectl logs TASK ...` in a subprocess with stdout to a
file (the line count is checked); wall seconds include the CLI's own start, which is also
timed alone (`tracectl --help`). `--baseline` also times reading the same log through the
paged JSON API the CLI used before (1,000 lines a page), for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import load, machine  # noqa: E402
from controller.config import Settings  # noqa: E402
from controller.logs.file_sink import INDEX_EVERY, encode, log_path  # noqa: E402
from controller.ports import LogLine  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402

TRACECTL = str(REPO / ".venv" / "bin" / "tracectl")


def make_task(srv: ServerProcess, home: Path) -> tuple[str, str]:
    """A finished task (its run id, its id) whose attempt 1 log is ours to replace."""
    run = httpx.post(f"{srv.url}/v1/runs", json={"pipeline": "bench"}, timeout=30).json()
    body = {"name": "big", "spec": {"command": [sys.executable, "-c", "print('x')"]}}
    task = httpx.post(f"{srv.url}/v1/runs/{run['id']}/tasks", json=body, timeout=30).json()
    while task["status"] not in ("succeeded", "failed"):
        task = httpx.get(
            f"{srv.url}/v1/tasks/{task['id']}/wait", params={"timeout_s": 10}, timeout=30
        ).json()
    return run["id"], task["id"]


def write_log(home: Path, run_id: str, task_id: str, lines: int) -> float:
    """Replace the attempt's log with LINES lines; the seconds it took."""
    settings = Settings(home=home)
    path = log_path(settings, run_id, task_id, 1)
    path.unlink()
    path.with_suffix(".idx").unlink(missing_ok=True)
    started = time.perf_counter()
    now = datetime.now(UTC)
    with path.open("wb") as log, path.with_suffix(".idx").open("w") as index:
        for seq in range(1, lines + 1):
            stream = "stderr" if seq % 50 == 0 else "stdout"
            message = f"epoch {seq // 1000} step {seq} loss=0.{seq % 9973:04d} lr=3e-4"
            if seq % INDEX_EVERY == 0:  # the seek index FileLogSink.emit keeps
                index.write(f"{seq} {log.tell()}\n")
            log.write(encode(LogLine(run_id, task_id, 1, seq, stream, message, now)))
    return time.perf_counter() - started


def cpu(proc: psutil.Process | None = None) -> float:
    """CPU seconds used so far by PROC, or by this process's finished children."""
    if proc is not None:
        times = proc.cpu_times()
        return float(times.user + times.system)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(
    args: list[str], env: dict[str, str], out: Path, server: psutil.Process
) -> dict[str, float]:
    """Wall and CPU seconds (the CLI's, the server's) of one command line; lines printed."""
    before = (cpu(), cpu(server))
    with out.open("wb") as handle:
        started = time.perf_counter()
        subprocess.run(args, env=env, stdout=handle, check=True)
        seconds = time.perf_counter() - started
    with out.open("rb") as handle:
        lines = sum(1 for _ in handle)
    return {
        "wall": seconds,
        "cli_cpu": cpu() - before[0],
        "server_cpu": cpu(server) - before[1],
        "lines": lines,
    }


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "min_s": round(min(samples), 3),
        "median_s": round(statistics.median(samples), 3),
        "max_s": round(max(samples), 3),
    }


def baseline(url: str, task_id: str) -> tuple[float, int]:
    """The paged JSON API read to the end, 1,000 lines a page (what the CLI did before)."""
    count, after = 0, 0
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=60) as client:
        while True:
            page = client.get(
                f"/v1/tasks/{task_id}/logs", params={"after_seq": after, "limit": 1000}
            ).json()
            if not page["items"]:
                return time.perf_counter() - started, count
            count += len(page["items"])
            after = page["next_after_seq"]


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    srv = ServerProcess(workdir / "home")
    srv.start()
    try:
        run_id, task_id = make_task(srv, workdir / "home")
        made_s = write_log(workdir / "home", run_id, task_id, args.lines)
        env = {**os.environ, "TRACECTL_URL": srv.url}
        out = workdir / "out.txt"
        cases = {
            "all": [],
            "tail_100": ["--tail", "100"],
            "grep_1_in_50": ["--stream", "err", "--grep", "loss=0\\.00"],
            "cli_start": None,
        }
        results: dict[str, Any] = {}
        server = psutil.Process(srv.proc.pid) if srv.proc else psutil.Process()
        for name, extra in cases.items():
            line = [TRACECTL, "--help"] if extra is None else [TRACECTL, "logs", task_id, *extra]
            runs = [timed(line, env, out, server) for _ in range(args.repeat)]
            results[name] = {
                "command": " ".join(["tracectl", *line[1:]]).replace(task_id, "TASK"),
                "lines": int(runs[0]["lines"]),
                **summary([r["wall"] for r in runs]),
                "cli_cpu_s": round(statistics.median(r["cli_cpu"] for r in runs), 3),
                "server_cpu_s": round(statistics.median(r["server_cpu"] for r in runs), 3),
            }
        request = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            httpx.get(f"{srv.url}/v1/tasks/{task_id}/logs/text", params={"tail": 100}, timeout=60)
            request.append(time.perf_counter() - started)
        results["tail_100_request_only"] = summary(request)
        if args.baseline:
            seconds, count = baseline(srv.url, task_id)
            results["baseline_paged_json"] = {"lines": count, "seconds": round(seconds, 3)}
        results["all"]["lines_per_s"] = round(args.lines / results["all"]["median_s"])
        return {
            "log_lines": args.lines,
            "log_bytes": log_path(Settings(home=workdir / "home"), run_id, task_id, 1)
            .stat()
            .st_size,
            "log_made_s": round(made_s, 1),
            **results,
        }
    finally:
        srv.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--baseline", action="store_true", help="also read the log through the paged JSON API"
    )
    args = parser.parse_args()
    # As scripts/test does: with it set, every `tracectl` start compiles what it imports.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    load_at_start = load()
    with tempfile.TemporaryDirectory(prefix="logs-cli-") as tmp:
        result = measure(args, Path(tmp))
    result.update(
        {
            "command": "python bench/logs_cli.py " + " ".join(sys.argv[1:]),
            "targets": {"all_1M_lines_s": 5.0, "tail_100_s": 0.3},
            "machine": machine(load_at_start),
        }
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
