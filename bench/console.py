"""The web console under load: the runs list over 100,000 runs, and a 1,000,000-line log.

    python bench/console.py                      # 100,000 runs, 1,000,000 log lines
    python bench/console.py --runs 20000 --lines 200000 --samples 50

runs list: GET /ui/runs (the HTML page: filter, keyset page of 50, counts per status) with
           no filter, each filter alone, and pages 21 and 1,000 deep (their cursors), against a
           SQLite store holding RUNS runs of 8 pipelines, 6 teams, 12 DAGs over 90 days.
           Server time is the time the app takes to answer one request in this process
           (Starlette's TestClient: no socket), p50/p95/p99 over SAMPLES requests each,
           wall and CPU (the CPU does not grow with the machine's load; wall does).
log viewer: GET /ui/tasks/{id}/lines of a LINES-line log in the file record: a page of 500
           at random places (jump to line), the page before a random line (previous
           page), and a filtered page (level >= error, rare),
           with the peak Python memory of one request (tracemalloc) beside the log's size:
           a page reads from the seek index onward, never the whole log.

The JSON on stdout carries the figures and the command line.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import load, machine
from bench.stats import summary
from controller.api.app import create_app
from controller.config import Settings
from controller.logs.file_sink import INDEX_EVERY, encode, log_path
from controller.ports import LogLine
from controller.store.database import Database
from controller.store.schema import RunRow, TaskRow

STATUSES = ["succeeded"] * 6 + ["failed", "failed", "running", "cancelled", "pending"]
T0 = datetime(2026, 9, 1, tzinfo=UTC)


def fill_runs(db: Database, runs: int, seed: int) -> None:
    rng = random.Random(seed)
    batch: list[dict[str, Any]] = []
    for i in range(runs):
        at = T0 + timedelta(seconds=i * 90 * 86400 / runs + rng.random())
        batch.append(
            {
                "id": f"run_{i:012d}",
                "pipeline": f"pipeline-{rng.randrange(8)}",
                "status": rng.choice(STATUSES),
                "team": f"team-{rng.randrange(6)}",
                "airflow_dag_id": f"dag-{rng.randrange(12)}",
                "labels": {},
                "created_at": at,
                "updated_at": at,
            }
        )
        if len(batch) == 10_000:
            _flush(db, RunRow, batch)
    _flush(db, RunRow, batch)


def _flush(db: Database, model: Any, rows: list[dict[str, Any]]) -> None:
    if rows:
        with db.write() as session:
            session.execute(insert(model), rows)
        rows.clear()


def fill_log(settings: Settings, db: Database, lines: int) -> str:
    """One succeeded task whose attempt 1 wrote LINES lines (1 in 1,000 an ERROR)."""
    run_id, task_id = "run_log", "task_log"
    at = datetime.now(UTC)
    _flush(
        db,
        RunRow,
        [
            {
                "id": run_id,
                "pipeline": "log",
                "status": "succeeded",
                "team": "default",
                "labels": {},
                "created_at": at,
                "updated_at": at,
            }
        ],
    )
    _flush(
        db,
        TaskRow,
        [
            {
                "id": task_id,
                "run_id": run_id,
                "name": "chatty",
                "team": "default",
                "spec": {"command": ["true"]},
                "resolved": {},
                "status": "succeeded",
                "attempt": 1,
                "max_attempts": 1,
                "created_at": at,
                "updated_at": at,
                "finished_at": at,
            }
        ],
    )
    path = log_path(settings, run_id, task_id, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out, path.with_suffix(".idx").open("w") as index:
        for seq in range(1, lines + 1):
            if seq % INDEX_EVERY == 0:
                index.write(f"{seq} {out.tell()}\n")
            level = "ERROR" if seq % 1000 == 0 else "INFO"
            out.write(
                encode(
                    LogLine(
                        run_id,
                        task_id,
                        1,
                        seq,
                        "stdout",
                        f"{level} step {seq} loss {1 / seq:.6f}",
                        at,
                    )
                )
            )
    return task_id


def timed(call: Callable[[], Any], samples: int) -> dict[str, Any]:
    """Wall ms per request, and CPU ms of this process per request (the app's thread and
    the test client's together: an upper bound of the server's CPU that, unlike wall time,
    does not grow with the machine's load)."""
    call()  # warm: templates compiled, statements cached
    times, cpu = [], []
    for _ in range(samples):
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    on_cpu = summary(cpu, unit="ms")
    return {
        **summary(times, (0.5, 0.95, 0.99)),
        "cpu_p50_ms": on_cpu["p50_ms"],
        "cpu_p95_ms": on_cpu["p95_ms"],
        "samples": samples,
    }


def ok(client: TestClient, url: str) -> Callable[[], Any]:
    def call() -> Any:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code, response.text[:300])
        return response

    return call


def bench_runs(client: TestClient, samples: int, args_pages: int = 20) -> dict[str, Any]:
    first = client.get("/ui/runs?limit=50").text
    assert "run_" in first
    deep = client.get("/ui/runs")
    cursor_url = "/ui/runs"
    for _ in range(args_pages):  # pages in: the 1,001st run onward with 20
        marker = 'id="next-page" href="'
        at = deep.text.index(marker) + len(marker)
        cursor_url = deep.text[at : deep.text.index('"', at)].replace("&amp;", "&")
        deep = client.get(cursor_url)
    cases = {
        "no filter": "/ui/runs",
        "status=failed": "/ui/runs?status=failed",
        "pipeline": "/ui/runs?pipeline=pipeline-3",
        "team": "/ui/runs?team=team-2",
        "dag_id": "/ui/runs?dag_id=dag-7",
        "date range (7 days)": "/ui/runs?since=2026-10-01&until=2026-10-07",
        "every filter": "/ui/runs?pipeline=pipeline-1&status=succeeded&team=team-1"
        "&dag_id=dag-1&since=2026-09-10&until=2026-11-20",
        "page 21 (cursor)": cursor_url,
        "page 1,000 (cursor)": deep_cursor(client, cursor_url, 1000 - 21),
    }
    return {name: timed(ok(client, url), samples) for name, url in cases.items()}


def deep_cursor(client: TestClient, url: str, pages: int) -> str:
    """The URL of the page PAGES after URL's, by the cursors (100 runs a page to get there)."""
    marker = 'id="next-page" href="'
    for _ in range(pages // 2):
        text = client.get(url.replace("/ui/runs?", "/ui/runs?limit=100&", 1)).text
        at = text.index(marker) + len(marker)
        url = text[at : text.index('"', at)].replace("&amp;", "&").replace("limit=100&", "")
    return url


def bench_log(
    client: TestClient, task_id: str, lines: int, samples: int, log_bytes: int
) -> dict[str, Any]:
    rng = random.Random(7)
    base = f"/ui/tasks/{task_id}/lines?limit=500"

    def jump() -> Any:
        return ok(client, f"{base}&after_seq={rng.randrange(lines - 500)}")()

    page = jump().json()
    assert len(page["items"]) == 500
    tail = ok(client, f"{base}&after_seq={lines - 500}")().json()
    assert tail["items"][-1]["seq"] == lines
    errors = ok(client, f"{base}&level=error&limit=20")().json()
    assert all(x["level"] == "error" for x in errors["items"]) and len(errors["items"]) == 20
    tracemalloc.start()
    ok(client, f"{base}&after_seq={lines // 2}")()
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "jump to a random line, page of 500": timed(jump, samples),
        "last page": timed(ok(client, f"{base}&after_seq={lines - 500}"), samples),
        "previous page before a random line": timed(
            lambda: ok(client, f"{base}&before_seq={rng.randrange(501, lines)}")(), samples
        ),
        "level>=error, 20 lines (scans 20,000)": timed(
            ok(client, f"{base}&level=error&limit=20&after_seq={lines // 3}"), samples
        ),
        "peak_python_memory_of_one_page_mb": round(peak / 2**20, 2),
        "log_file_mb": round(log_bytes / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    load_at_start = load()
    with tempfile.TemporaryDirectory(prefix="tracectl-console-bench-") as tmp:
        settings = Settings(
            home=Path(tmp) / "home", tracking_uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        )
        app = create_app(settings, run_supervisor=False)
        db = app.state.service.db
        db.migrate()
        start = time.perf_counter()
        fill_runs(db, args.runs, args.seed)
        task_id = fill_log(settings, db, args.lines)
        filled = time.perf_counter() - start
        log_bytes = log_path(settings, "run_log", task_id, 1).stat().st_size
        with TestClient(app) as client:
            runs = bench_runs(client, args.samples)
            log = bench_log(client, task_id, args.lines, args.samples, log_bytes)
    worst = max(case["p95_ms"] for case in runs.values())
    worst_cpu = max(case["cpu_p95_ms"] for case in runs.values())
    print(
        json.dumps(
            {
                "command": " ".join([Path(sys.executable).name, *sys.argv]),
                "machine": machine(load_at_start),
                "runs_in_store": args.runs,
                "log_lines": args.lines,
                "fill_s": round(filled, 1),
                "runs_list": runs,
                "runs_list_worst_p95_ms": worst,
                "runs_list_target_p95_ms": 300,
                "runs_list_met": worst < 300,
                "runs_list_worst_cpu_p95_ms": worst_cpu,
                "log_viewer": log,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
