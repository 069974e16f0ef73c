"""The Kafka -> search index shipper that deploy/local/shipper runs: rsyslog with the project's
logstash/rsyslog/tracectl.conf, one instance per engine (OpenSearch and Elasticsearch).

Real broker, real engines, real rsyslogd: events go in through Kafka and are read back from
each index. Re-delivered events (same event.id) add no document; events sent while the shipper
is stopped, or in flight when it is killed with -9, all arrive, once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from controller import backends
from controller.ports import SearchIndex
from tests.waiting import poll_until, wait_for

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.opensearch,
    pytest.mark.elasticsearch,
    pytest.mark.shipper,
]

ENGINES = ["opensearch", "elasticsearch"]
N_EVENTS = 500
N_DUPLICATES = 10
WAIT_S = 240  # after a kill -9, rsyslog replays its disk queue and Kafka first
SHIPPER = Path(__file__).resolve().parents[2] / "deploy" / "local" / "shipper"


@pytest.fixture
def engines(
    kafka: dict[str, str],
    opensearch: dict[str, str],
    elasticsearch: dict[str, str],
    shipper: dict[str, str],
) -> dict[str, SearchIndex]:
    """Each engine's index through the controller's adapter for it."""
    env = {**opensearch, **elasticsearch}
    return {
        name: backends.search_index(
            f"{name}://{env[f'TRACECTL_{name.upper()}_URL'].split('://', 1)[1]}"
        )
        for name in ENGINES
    }


def _event(task_id: str, seq: int) -> dict[str, Any]:
    return {
        "@timestamp": datetime.now(UTC).isoformat(),
        "message": f"step {seq} of {task_id}",
        "log": {"level": "info" if seq % 10 else "warn"},
        "labels": {"task_id": task_id, "run_id": "smoke-run"},
        "event": {"id": f"{task_id}:{seq}", "sequence": seq},
    }


def _produce(bootstrap: str, topic: str, task_id: str, events: list[dict[str, Any]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for event in events:
        producer.send(topic, key=task_id.encode(), value=json.dumps(event).encode())
    producer.flush(timeout=30)
    producer.close()


def _hits(client: SearchIndex, index: str, task_id: str) -> list[dict[str, Any]]:
    client.refresh(index)
    body = {"query": {"term": {"labels.task_id": task_id}}, "size": 10000}
    return list(client.search(index, body)["hits"]["hits"])


def _wait_for_count(client: SearchIndex, index: str, task_id: str, expected: int) -> int:
    def count() -> int:
        return len(_hits(client, index, task_id))

    return poll_until(count, lambda n: n >= expected, WAIT_S, 0.5)


def _wait_until_committed(bootstrap: str, topic: str, group: str) -> None:
    """Block until GROUP has committed every offset written to TOPIC so far: rsyslog has
    read everything produced (the duplicates included) into its queue."""
    probe = KafkaConsumer(bootstrap_servers=bootstrap)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        partitions = sorted(probe.partitions_for_topic(topic) or ())
        ends = probe.end_offsets([TopicPartition(topic, p) for p in partitions])

        def caught_up() -> bool:
            committed = admin.list_group_offsets(group)[group]
            return all(tp in committed and committed[tp].offset >= end for tp, end in ends.items())

        wait_for(f"shipper group {group} to commit up to {ends}", caught_up, WAIT_S, 0.5)
    finally:
        probe.close()
        admin.close()


def test_events_are_indexed_once_each_in_both_engines(
    kafka: dict[str, str], shipper: dict[str, str], engines: dict[str, SearchIndex]
) -> None:
    bootstrap = kafka["TRACECTL_KAFKA_BOOTSTRAP"]
    topic, index = shipper["TRACECTL_SHIPPER_TOPIC"], shipper["TRACECTL_SHIPPER_INDEX"]
    task_id = f"smoke-{uuid.uuid4().hex[:12]}"

    _produce(bootstrap, topic, task_id, [_event(task_id, seq) for seq in range(N_EVENTS)])
    for name, client in engines.items():
        assert _wait_for_count(client, index, task_id, N_EVENTS) == N_EVENTS, name
        hits = _hits(client, index, task_id)
        assert sorted(h["_source"]["event"]["sequence"] for h in hits) == list(range(N_EVENTS))
        assert all(h["_id"] == h["_source"]["event"]["id"] for h in hits)
        assert {h["_source"]["log"]["level"] for h in hits} == {"info", "warn"}

    # Re-deliveries: same event ids, new content. Create refuses them (409), nothing changes.
    duplicates = [
        {**_event(task_id, seq), "message": "re-delivered"}
        for seq in range(0, N_EVENTS, N_EVENTS // N_DUPLICATES)
    ]
    _produce(bootstrap, topic, task_id, duplicates)
    for name, client in engines.items():
        _wait_until_committed(bootstrap, topic, shipper[f"TRACECTL_SHIPPER_GROUP_{name.upper()}"])
        time.sleep(3)  # rsyslog's bulk of the duplicates has been answered by now
        hits = _hits(client, index, task_id)
        assert len(hits) == N_EVENTS, name
        first = [h["_source"]["message"] for h in hits if h["_id"] == f"{task_id}:0"]
        assert first == [f"step 0 of {task_id}"], name  # the first write wins


def test_events_sent_while_shipper_is_down_arrive_after_restart(
    kafka: dict[str, str], shipper: dict[str, str], engines: dict[str, SearchIndex]
) -> None:
    """Offsets live in the consumer groups: a restarted rsyslog resumes where it stopped."""
    bootstrap = kafka["TRACECTL_KAFKA_BOOTSTRAP"]
    index = shipper["TRACECTL_SHIPPER_INDEX"]
    task_id = f"restart-{uuid.uuid4().hex[:12]}"

    subprocess.run([str(SHIPPER), "stop"], check=True, capture_output=True, timeout=60)
    try:
        _produce(
            bootstrap,
            shipper["TRACECTL_SHIPPER_TOPIC"],
            task_id,
            [_event(task_id, seq) for seq in range(50)],
        )
        time.sleep(2)
        assert all(not _hits(client, index, task_id) for client in engines.values())
    finally:
        subprocess.run([str(SHIPPER), "start"], check=True, capture_output=True, timeout=120)
    for name, client in engines.items():
        assert _wait_for_count(client, index, task_id, 50) == 50, name


def test_shipper_killed_mid_stream_loses_and_duplicates_nothing(
    kafka: dict[str, str], shipper: dict[str, str], engines: dict[str, SearchIndex]
) -> None:
    """kill -9 while records are between Kafka and the index: the disk queue and the
    uncommitted offsets bring every one back, and create + event.id absorb the re-reads."""
    n_events = 9000  # under the 10,000 hits one search returns
    bootstrap = kafka["TRACECTL_KAFKA_BOOTSTRAP"]
    index = shipper["TRACECTL_SHIPPER_INDEX"]
    task_id = f"crash-{uuid.uuid4().hex[:12]}"
    pids = [
        int(Path(shipper[f"TRACECTL_SHIPPER_PIDFILE_{name.upper()}"]).read_text())
        for name in engines
    ]

    _produce(
        bootstrap,
        shipper["TRACECTL_SHIPPER_TOPIC"],
        task_id,
        [_event(task_id, seq) for seq in range(n_events)],
    )
    try:
        for client in engines.values():
            assert _wait_for_count(client, index, task_id, 1) > 0
        shipped = {name: len(_hits(client, index, task_id)) for name, client in engines.items()}
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    finally:
        subprocess.run([str(SHIPPER), "start"], check=True, capture_output=True, timeout=120)
    for name, client in engines.items():
        assert _wait_for_count(client, index, task_id, n_events) == n_events, (name, shipped)
        time.sleep(2)  # anything still in flight would now push the count over
        hits = _hits(client, index, task_id)
        assert sorted(h["_source"]["event"]["sequence"] for h in hits) == list(range(n_events))
