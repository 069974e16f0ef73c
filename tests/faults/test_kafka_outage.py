"""The Kafka broker stopped for a minute in the middle of a run loses and doubles no log line.

A `tracectl server` with the Kafka log sink runs four tasks that print a numbered line every
50 ms. Once their first lines are in the index, the shared broker is stopped
(deploy/local/kafka stop) for OUTAGE_S seconds and started again. Two tasks end while the broker
is down (their runners give up waiting for it and leave their spools to the controller), two
go on printing until some time after it is back. Then: every task succeeded, once; every
spool drained; Kafka holds each task's lines in order; the index holds each line exactly once.

This test stops the broker every other test shares: it is marked ``disruptive`` so that CI runs
it in a step of its own. TRACECTL_FAULT_OUTAGE_S shortens the outage for local iteration only
(CI: 60 s).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx
import pytest

from controller.ports import SearchIndex
from tests.faults.conftest import FaultStack
from tests.faults.kafka_topic import sequences_since
from tests.faults.log_index import (
    by_attempt,
    documents,
    engine_index,
    exactly_once_problems,
    file_record,
    wait_for_lines,
)
from tests.logs.conftest import ensure_up, service
from tests.server_process import ServerProcess
from tests.waiting import poll_until, wait_for

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.opensearch,
    pytest.mark.shipper,
    pytest.mark.disruptive,
    pytest.mark.slow,
    pytest.mark.timeout(900),
]

OUTAGE_S = float(os.environ.get("TRACECTL_FAULT_OUTAGE_S", "60"))
AFTER_S = 15.0  # the long tasks go on printing this long after the broker is back
TOPIC = "tracectl.logs"
TICKER = (
    "import pathlib, sys, time\n"
    "stop = pathlib.Path(sys.argv[1])\n"
    "i = 0\n"
    "while not stop.exists() and i < 20000:\n"
    "    i += 1\n"
    "    print(f'tick {i}', flush=True)\n"
    "    time.sleep(0.05)\n"
    "for j in range(20):\n"  # a few lines after the stop signal, then the end
    "    print(f'last {j}', flush=True)\n"
    "    time.sleep(0.05)\n"
)


def submit(url: str, stop_files: list[Path]) -> tuple[str, list[str]]:
    run = httpx.post(f"{url}/v1/runs", json={"pipeline": "faults-kafka-outage"}).json()["id"]
    ids = []
    for i, stop in enumerate(stop_files):
        spec = {"command": [sys.executable, "-c", TICKER, str(stop)]}
        response = httpx.post(
            f"{url}/v1/runs/{run}/tasks", json={"name": f"ticker{i}", "spec": spec}
        )
        assert response.status_code in (200, 201), response.text
        ids.append(response.json()["id"])
    return run, ids


def wait_until_indexed(client: SearchIndex, run_id: str, ids: list[str], lines: int) -> None:
    """Until each task has LINES lines in the index: the whole path works before the outage."""

    def indexed() -> bool:
        try:
            groups = by_attempt(documents(client, run_id))
        except Exception:  # the run's first documents may not be searchable yet
            groups = {}
        return all(len(groups.get((t, "1"), [])) >= lines for t in ids)

    wait_for(f"{lines} lines of each task indexed before the outage", indexed, 180, 1.0)


def wait_finished(server: ServerProcess, ids: list[str]) -> list[dict[str, object]]:
    return poll_until(
        lambda: [server.get(f"/v1/tasks/{t}") for t in ids],
        lambda tasks: all(t["status"] in ("succeeded", "failed", "cancelled") for t in tasks),
        300,
        1.0,
    )


def spools_left(home: Path, timeout_s: float = 180) -> list[Path]:
    """Log spools still holding records, once they drained or at the deadline."""
    return poll_until(
        lambda: [p.parent for p in (home / "spool" / "logs").glob("*/*/*/*.seg")],
        lambda left: not left,
        timeout_s,
        1.0,
    )


def test_broker_down_a_minute_loses_no_line(
    tmp_path: Path, fault_stack: FaultStack, opensearch: dict[str, str]
) -> None:
    search = engine_index(opensearch, "opensearch")
    down, stop = tmp_path / "broker-down", tmp_path / "stop"
    since_ms = int(time.time() * 1000) - 1000
    server = fault_stack.server()
    try:
        # Tasks 0 and 1 end once the broker is down; 2 and 3 after it is back.
        run_id, ids = submit(server.url, [down, down, stop, stop])
        wait_until_indexed(search, run_id, ids, lines=20)
        try:
            service("kafka", "stop")
            down.touch()
            time.sleep(OUTAGE_S)
        finally:
            service("kafka", "start")  # never leave the shared broker down
            ensure_up("shipper")  # rsyslog reconnects by itself; a shipper that died restarts
        time.sleep(AFTER_S)
        stop.touch()
        tasks = wait_finished(server, ids)
        assert [(t["status"], t["attempt"]) for t in tasks] == [("succeeded", 1)] * 4, tasks
        assert spools_left(fault_stack.home) == [], "log spools not drained"
    finally:
        stop.touch()
        server.stop()

    record = file_record(fault_stack.home, run_id)
    assert set(record) == {(t, "1") for t in ids}
    for task_id in ids[2:]:  # the long tasks printed all through the outage
        ticks = sum(m.startswith("tick ") for m in record[(task_id, "1")])
        assert ticks > 10 * (OUTAGE_S + AFTER_S), (task_id, ticks)
    in_kafka = sequences_since(fault_stack.bootstrap, TOPIC, since_ms, set(ids))
    for task_id in ids:
        # A chunk cut by the outage may be sent twice (the index keeps one copy by event.id),
        # but never out of order: first occurrences are 1..N in order.
        first_seen = list(dict.fromkeys(in_kafka[task_id]))
        assert first_seen == list(range(1, len(record[(task_id, "1")]) + 1)), task_id
    docs = wait_for_lines(search, run_id, sum(len(lines) for lines in record.values()))
    assert exactly_once_problems(by_attempt(docs), record) == []
