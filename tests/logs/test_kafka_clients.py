"""Both Kafka clients (TRACECTL_KAFKA_CLIENT=kafka-python|confluent) against the real broker:
order per task, exact delivery ranges for the reconciler, one partitioner, and the spool when
Kafka is unreachable, drained in order when it comes back."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from controller.api.app import create_app
from controller.config import Settings
from controller.core.service import ControllerService
from controller.logs.kafka_producer import SpooledProducer
from controller.logs.kafka_sink import KafkaLogSink
from controller.logs.kafka_transport import (
    KAFKA_CLIENTS,
    TOPIC_PARTITIONS,
    Delivered,
    ensure_topic,
    open_transport,
)
from controller.loopback import free_port
from controller.ports import LogLine, SearchIndex
from tests.core.conftest import Api, python
from tests.logs.conftest import read_topic, wait_indexed
from tests.logs.tcp_forwarder import TcpForwarder
from tests.waiting import gather, poll_until

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]


@pytest.fixture
def bootstrap(kafka: dict[str, str]) -> str:
    return kafka["TRACECTL_KAFKA_BOOTSTRAP"]


@pytest.fixture
def topic(bootstrap: str) -> Iterator[str]:
    name = f"tracectl.test.clients.{uuid.uuid4().hex[:8]}"
    yield name
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([name])
    except Exception:  # a test that failed before creating it
        pass
    finally:
        admin.close()


class Ranges:
    """An on_delivered hook that keeps what it was told (it runs on the sender thread)."""

    def __init__(self) -> None:
        self.got: list[Delivered] = []
        self._lock = threading.Lock()

    def __call__(self, delivered: Sequence[Delivered]) -> None:
        with self._lock:
            self.got += delivered


def _line(task_id: str, seq: int, message: str | None = None) -> LogLine:
    return LogLine("r", task_id, 1, seq, "stdout", message or f"line {seq}", datetime.now(UTC))


def _records_at(bootstrap: str, delivered: Delivered) -> list[tuple[bytes, bytes]]:
    """The records of DELIVERED's partition between its first and last offset, inclusive."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    part = TopicPartition(delivered.topic, delivered.partition)
    try:
        consumer.assign([part])
        consumer.seek(part, delivered.first_offset)

        def records() -> list[tuple[bytes, bytes]]:
            batches = consumer.poll(timeout_ms=500).values()
            return [
                (r.key, r.value) for b in batches for r in b if r.offset <= delivered.last_offset
            ]

        return gather(records, lambda _: consumer.position(part) > delivered.last_offset, 60)
    finally:
        consumer.close()


@pytest.mark.parametrize("client", KAFKA_CLIENTS)
def test_lines_arrive_in_order_where_the_hook_says(
    client: str, bootstrap: str, topic: str, tmp_path: Path
) -> None:
    task_id = f"clients-{uuid.uuid4().hex[:8]}"
    settings = Settings(home=tmp_path, log_sink=f"kafka://{bootstrap}/{topic}", kafka_client=client)
    ranges = Ranges()
    sink = KafkaLogSink(
        settings, {"run_id": "r", "task_id": task_id, "attempt": "1"}, on_delivered=ranges
    )
    lines = 3000
    for seq in range(1, lines + 1):
        sink.emit(_line(task_id, seq, "caf\\xe9 \u00e9t\u00e9" if seq % 500 == 0 else None))
    sink.close()
    assert sink.stats() | {"last_error": ""} == {
        "client": client,
        "sent": lines,
        "spooled_bytes": 0,
        "dropped": 0,
        "outages": 0,
        "last_error": "",
    }

    values = read_topic(bootstrap, topic, task_id, until=lines)
    assert [v["event"]["sequence"] for v in values] == list(range(1, lines + 1))
    assert values[499]["message"] == "caf\\xe9 \u00e9t\u00e9"

    assert sum(d.records for d in ranges.got) == lines
    assert {(d.topic, d.key) for d in ranges.got} == {(topic, task_id.encode())}
    expected = (murmur2(task_id.encode()) & 0x7FFFFFFF) % TOPIC_PARTITIONS
    assert {d.partition for d in ranges.got} == {expected}
    # The ranges are exact: reading them back gives this task's lines, in order, all of them.
    found = [
        value
        for d in ranges.got
        for key, value in _records_at(bootstrap, d)
        if key == task_id.encode()
    ]
    assert len(found) == lines and found[0].startswith(b'{"@timestamp"')


def test_both_clients_put_a_key_in_the_same_partition(bootstrap: str, topic: str) -> None:
    """Switching client, or draining a spool with the other one, must not split a task."""
    ensure_topic(bootstrap, topic)
    records = [(f"task-{i}".encode(), b"{}") for i in range(24)]
    placed: dict[str, dict[bytes, int]] = {}
    for client in KAFKA_CLIENTS:
        transport = open_transport(client, bootstrap, topic, f"tracectl-test-{client}")
        try:
            placed[client] = {d.key: d.partition for d in transport.send(records)}
        finally:
            transport.close(5)
    assert placed["kafka-python"] == placed["confluent"]
    assert len(set(placed["confluent"].values())) == TOPIC_PARTITIONS  # keys really spread


def test_unknown_client_is_refused_by_name(bootstrap: str, topic: str) -> None:
    with pytest.raises(ValueError, match="'librdkafka'"):
        open_transport("librdkafka", bootstrap, topic, "tracectl-test")


@pytest.mark.parametrize("client", KAFKA_CLIENTS)
def test_unreachable_kafka_spools_then_drains_in_order(
    client: str, bootstrap: str, topic: str, tmp_path: Path
) -> None:
    host, port = bootstrap.split(":")
    gate = TcpForwarder(free_port(), (host, int(port)))
    producer = SpooledProducer(
        f"127.0.0.1:{gate.port}",
        topic,
        tmp_path / "spool",
        1 << 20,
        client_id=f"tracectl-test-{client}",
        client=client,
    )
    key = f"down-{uuid.uuid4().hex[:8]}"
    try:
        for seq in range(1, 501):
            assert producer.put(key.encode(), f'{{"event": {{"sequence": {seq}}}}}'.encode())
        assert poll_until(lambda: producer.outages, lambda n: n >= 2, 60, 0.1) >= 2, (
            producer.stats()
        )
        assert producer.sent == 0 and producer.stats()["spooled_bytes"] > 0
        assert any((tmp_path / "spool").glob("*.seg"))

        gate.start()  # Kafka "comes back" for this producer
        for seq in range(501, 1001):
            producer.put(key.encode(), f'{{"event": {{"sequence": {seq}}}}}'.encode())
        assert producer.flush(120), producer.stats()
        assert producer.sent == 1000
    finally:
        producer.close(5)
        gate.stop()
    values = read_topic(bootstrap, topic, key, until=1000)
    assert [v["event"]["sequence"] for v in values] == list(range(1, 1001))


@pytest.fixture
def confluent_api(pipeline_settings: Settings) -> Iterator[Api]:
    """The controller of the pipeline tests, its runners sending with confluent-kafka."""
    settings = pipeline_settings.model_copy(update={"kafka_client": "confluent"})
    with TestClient(create_app(settings, service=ControllerService(settings))) as client:
        yield Api(client, settings)


@pytest.mark.opensearch
@pytest.mark.s3
@pytest.mark.shipper
@pytest.mark.parametrize("engine", ["opensearch"])  # the Kafka client is what varies here
def test_a_task_logged_through_confluent_is_indexed_once_in_order(
    confluent_api: Api, search: SearchIndex
) -> None:
    """Runner -> confluent-kafka -> real shipper -> OpenSearch: the shipper reads what librdkafka
    wrote (same codec), each line once, in order."""
    run_id = confluent_api.run(pipeline="logs-confluent")
    code = "import sys\nfor i in range(300):\n    print(f'confluent line {i}', flush=True)\n"
    task = confluent_api.submit(run_id, "printer", command=python(code))
    assert confluent_api.wait(task["id"])["status"] == "succeeded"
    launch = json.loads(
        (confluent_api.settings.workspaces / task["id"] / "1" / "launch.json").read_text()
    )
    assert launch["runtime"]["kafka_client"] == "confluent"  # what the runner sent with
    lineage = confluent_api.client.get(f"/v1/tasks/{task['id']}/lineage").json()
    total = lineage["logs"]["lines"]  # the prints, and the runner's own lines
    assert total >= 300
    docs = wait_indexed(search, task["id"], total)
    assert [d["event"]["sequence"] for d in docs] == list(range(1, total + 1))
    assert len({d["_id"] for d in docs}) == total
    printed = [d["message"] for d in docs if d["labels"]["stream"] == "stdout"]
    assert printed == [f"confluent line {i}" for i in range(300)]
