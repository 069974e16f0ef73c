"""Automatic OpenLineage emission: to a real HTTP receiver, and to the real Kafka topic, each
unreachable for 30 s with a controller restart in between; every event valid, in order per run,
none lost, none twice.

Kafka is made unreachable for this controller only (the broker is shared): the controller is
given a port where nothing listens, which later forwards to the broker
(tests/logs/tcp_forwarder.py).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from sqlalchemy import func, select

from controller.api.app import create_app
from controller.config import Settings
from controller.lineage.emission import cursor_file
from controller.server import free_port
from controller.store.schema import LineageEventRow
from tests.core.conftest import Api, python
from tests.lineage.openlineage_model import round_trip
from tests.lineage.openlineage_schema import RUN_EVENT
from tests.logs.tcp_forwarder import TcpForwarder
from tests.waiting import wait_for

OUTAGE_S = 30.0
API_KEY = "ol-test-key"


class Receiver:
    """An OpenLineage HTTP endpoint on 127.0.0.1 that can go down and come back on its port."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/api/v1/lineage"
        self.events: list[dict[str, Any]] = []
        self.auth: set[str] = set()
        self.server: HTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.auth.add(self.headers.get("Authorization", ""))
                receiver.events.append(json.loads(body))
                self.send_response(201)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        HTTPServer.allow_reuse_address = True
        self.server = HTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    out = Receiver()  # down: nothing listens on its port until start()
    yield out
    out.stop()


def valid(event: dict[str, Any]) -> None:
    """The restated OpenLineage 2-0-2 schema and openlineage-python's model both take it."""
    jsonschema.validate(
        event, RUN_EVENT, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    assert round_trip(event) == event


def two_task_run(api: Api) -> str:
    run_id = api.run("emission")
    first = api.submit(run_id, "first", command=python("print('one')"))
    second = api.submit(run_id, "second", command=python("print('two')"))
    for task in (first, second):
        assert api.wait(task["id"])["status"] == "succeeded"
    return run_id


def shown(client: TestClient, run_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"/v1/runs/{run_id}/openlineage").json()["items"])


def handed_over(client: TestClient, settings: Settings) -> bool:
    """Every lineage log row went past the emission's cursor (into the sink's spool)."""
    with client.app.state.service.db.read() as session:  # type: ignore[attr-defined]
        last = session.scalar(select(func.max(LineageEventRow.id)))
    path = cursor_file(settings.home)
    return path.exists() and int(path.read_text()) >= (last or 0)


def key(event: dict[str, Any]) -> tuple[str, str, str]:
    return event["run"]["runId"], event["eventType"], event["eventTime"]


def by_run(
    events: list[dict[str, Any]], expected: dict[str, list[dict[str, Any]]]
) -> dict[str, list[dict[str, Any]]]:
    """EVENTS per run (the run whose shown events hold the runId), as they came."""
    owner = {e["run"]["runId"]: run for run, items in expected.items() for e in items}
    out: dict[str, list[dict[str, Any]]] = {run: [] for run in expected}
    for event in events:
        out[owner[event["run"]["runId"]]].append(event)
    return out


def ends(events: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {key(e): e for e in events if e["eventType"] != "START"}


def emitting(tmp_path: Path, mlflow_uri: str, **target: str) -> Settings:
    """The settings of a controller that emits to TARGET (openlineage_url=..., ...)."""
    return Settings(
        home=tmp_path / "home", supervisor_interval_s=0.05, tracking_uri=mlflow_uri, **target
    )


def two_runs_handed_over(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Two runs made by a controller that then stops once their events are in the sink's
    spool; the events the API shows, per run."""
    with TestClient(create_app(settings)) as client:
        runs = [two_task_run(Api(client, settings)) for _ in range(2)]
        expected = {run: shown(client, run) for run in runs}
        wait_for("every event in the spool", lambda: handed_over(client, settings))
    return expected


def check_delivered(
    found: dict[str, list[dict[str, Any]]], expected: dict[str, list[dict[str, Any]]]
) -> None:
    """FOUND (per run, as delivered) holds each run's events once, in its own order, valid. A
    START is sent when the task starts, before its lineage record exists; an end event is the
    one the API shows, whole."""
    assert {run: [key(e) for e in items] for run, items in found.items()} == {
        run: [key(e) for e in items] for run, items in expected.items()
    }
    delivered = [e for items in found.values() for e in items]
    assert ends(delivered) == ends([e for items in expected.values() for e in items])
    for event in delivered:
        valid(event)


def test_events_made_while_the_receiver_is_down_arrive_once_in_order_after_a_restart(
    tmp_path: Path, mlflow_uri: str, receiver: Receiver
) -> None:
    settings = emitting(
        tmp_path, mlflow_uri, openlineage_url=receiver.url, openlineage_api_key=API_KEY
    )
    down_since = time.monotonic()
    expected = two_runs_handed_over(settings)
    # The controller stopped with the events spooled; the receiver stays down 30 s in all.
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_since)))
    assert receiver.events == []
    receiver.start()
    with TestClient(create_app(settings)) as client:  # a new controller resumes the spool
        total = sum(len(v) for v in expected.values())
        wait_for("the spooled events", lambda: len(receiver.events) >= total, timeout=120)
        third = two_task_run(Api(client, settings))  # made after the restart, sent live
        expected[third] = shown(client, third)
        total += len(expected[third])
        wait_for("the new run's events", lambda: len(receiver.events) >= total, timeout=120)
    assert len(receiver.events) == total == 12  # 3 runs x 2 tasks x (START, COMPLETE)
    check_delivered(by_run(receiver.events, expected), expected)
    assert receiver.auth == {f"Bearer {API_KEY}"}


def read_topic(bootstrap: str, topic: str, keys: set[str]) -> dict[str, list[dict[str, Any]]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        out: dict[str, list[dict[str, Any]]] = {key: [] for key in keys}
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    key = (record.key or b"").decode()
                    if key in out:
                        out[key].append(json.loads(record.value))
        return out
    finally:
        consumer.close()


def test_events_go_to_the_kafka_topic_keyed_and_ordered_by_run(
    tmp_path: Path, mlflow_uri: str, kafka: dict[str, str]
) -> None:
    bootstrap = kafka["TRACECTL_KAFKA_BOOTSTRAP"]
    topic = f"openlineage-test-{tmp_path.name}"
    target = f"kafka://{bootstrap}/{topic}"
    expected = two_runs_handed_over(emitting(tmp_path, mlflow_uri, openlineage_kafka_topic=target))
    # leaving the app closes the producer, which flushes its spool to Kafka (bounded)
    found = wait_for("the events", lambda: on_topic(bootstrap, topic, expected), 60, 1.0)
    check_delivered(found, expected)


def on_topic(
    bootstrap: str, topic: str, expected: dict[str, list[dict[str, Any]]]
) -> dict[str, list[dict[str, Any]]] | None:
    """The events keyed by each run of EXPECTED on TOPIC, once at least that many are there."""
    found = read_topic(bootstrap, topic, set(expected))
    enough = sum(map(len, found.values())) >= sum(map(len, expected.values()))
    return found if enough else None


def topics(bootstrap: str) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def test_events_made_while_kafka_is_unreachable_arrive_once_in_order_after_a_restart(
    tmp_path: Path, mlflow_uri: str, kafka: dict[str, str]
) -> None:
    bootstrap = kafka["TRACECTL_KAFKA_BOOTSTRAP"]
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    gate = TcpForwarder(free_port(), (host, int(port)))  # nothing listens until start()
    topic = f"openlineage-outage-{uuid.uuid4().hex[:12]}"  # a topic no earlier run made
    target = f"kafka://127.0.0.1:{gate.port}/{topic}"
    settings = emitting(tmp_path, mlflow_uri, openlineage_kafka_topic=target)
    down_since = time.monotonic()
    try:
        expected = two_runs_handed_over(settings)
        # The controller stopped with the events spooled; Kafka stays unreachable 30 s in all.
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_since)))
        assert topic not in topics(bootstrap)  # nothing got through: the topic was never made
        gate.start()
        with TestClient(create_app(settings)) as client:  # a new controller resumes the spool
            wait_for("the spooled events", lambda: on_topic(bootstrap, topic, expected), 120, 1.0)
            third = two_task_run(Api(client, settings))  # made after the restart, sent live
            expected[third] = shown(client, third)
            wait_for("every event in the spool", lambda: handed_over(client, settings))
            found = wait_for("every event", lambda: on_topic(bootstrap, topic, expected), 120, 1.0)
    finally:
        gate.stop()
    assert sum(map(len, found.values())) == 12  # 3 runs x 2 tasks x (START, COMPLETE)
    check_delivered(found, expected)
