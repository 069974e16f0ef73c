"""The index engine down for a minute, or the shipper killed with -9, while four tasks log:
once things are back, the index holds every line exactly once (OpenSearch and Elasticsearch).

A `tracectl server` with the Kafka log sink runs four tasks that print a numbered line every
50 ms. Once their first lines are in the engine's index, either the engine is stopped
(deploy/local/<engine> stop) for OUTAGE_S seconds and started again, or every rsyslogd of
deploy/local/shipper is killed with SIGKILL and the shipper started again. rsyslog's disk queue
and endless retries carry the lines across; create + event.id absorb what it re-reads.

Marked ``disruptive``: it stops a service other tests use (CI runs it in a step of its own).
TRACECTL_FAULT_OUTAGE_S shortens the outage for local iteration only (CI: 60 s).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.ports import SearchIndex
from tests.faults.conftest import FaultStack
from tests.faults.log_index import (
    by_attempt,
    engine_index,
    exactly_once_problems,
    file_record,
    wait_for_lines,
)
from tests.faults.test_kafka_outage import spools_left, submit, wait_finished, wait_until_indexed
from tests.logs.conftest import ensure_up, service

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.opensearch,
    pytest.mark.elasticsearch,
    pytest.mark.shipper,
    pytest.mark.disruptive,
    pytest.mark.slow,
    pytest.mark.timeout(900),
]

ENGINES = ["opensearch", "elasticsearch"]
OUTAGE_S = float(os.environ.get("TRACECTL_FAULT_OUTAGE_S", "60"))
AFTER_S = 10.0  # the tasks go on printing this long after the fault is over


def run_through(
    stack: FaultStack, search: SearchIndex, fault: Callable[[], None]
) -> tuple[str, dict[tuple[str, str], list[str]]]:
    """Four ticking tasks; FAULT once their first lines are indexed; their file record."""
    stop = stack.home.parent / "stop"
    server = stack.server()
    try:
        run_id, ids = submit(server.url, [stop] * 4)
        wait_until_indexed(search, run_id, ids, lines=20)
        fault()
        time.sleep(AFTER_S)
        stop.touch()
        tasks = wait_finished(server, ids)
        assert [(t["status"], t["attempt"]) for t in tasks] == [("succeeded", 1)] * 4, tasks
        assert spools_left(stack.home) == [], "log spools not drained"
    finally:
        stop.touch()
        server.stop()
    record = file_record(stack.home, run_id)
    assert set(record) == {(t, "1") for t in ids}
    return run_id, record


def exactly_once(
    search: SearchIndex, run_id: str, record: dict[tuple[str, str], list[str]]
) -> list[str]:
    docs = wait_for_lines(search, run_id, sum(len(lines) for lines in record.values()))
    return exactly_once_problems(by_attempt(docs), record)


@pytest.mark.parametrize("engine", ENGINES)
def test_index_engine_down_a_minute_loses_and_doubles_no_line(
    fault_stack: FaultStack,
    opensearch: dict[str, str],
    elasticsearch: dict[str, str],
    engine: str,
) -> None:
    ensure_up("elasticsearch")
    search = engine_index({**opensearch, **elasticsearch}, engine)

    def engine_down() -> None:
        service(engine, "stop")
        try:
            time.sleep(OUTAGE_S)
        finally:
            service(engine, "start", timeout=600)  # never leave it down

    run_id, record = run_through(fault_stack, search, engine_down)
    assert exactly_once(search, run_id, record) == []


def test_shipper_killed_mid_stream_loses_and_doubles_no_line(
    fault_stack: FaultStack,
    opensearch: dict[str, str],
    elasticsearch: dict[str, str],
    shipper: dict[str, str],
) -> None:
    ensure_up("elasticsearch")
    engines = {e: engine_index({**opensearch, **elasticsearch}, e) for e in ENGINES}

    def killed() -> None:
        try:
            for name in ENGINES:
                pidfile = Path(shipper[f"TRACECTL_SHIPPER_PIDFILE_{name.upper()}"])
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            time.sleep(2)
        finally:
            service("shipper", "start")

    run_id, record = run_through(fault_stack, engines["opensearch"], killed)
    for engine, search in engines.items():
        assert exactly_once(search, run_id, record) == [], engine
