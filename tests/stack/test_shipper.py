"""Smoke test of the Kafka -> OpenSearch log shipper that deploy/local/shipper runs.

Real broker, real OpenSearch, real shipper process: events go in through Kafka and are read
back from the index. Re-delivered events (same event.id) must not add documents.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from opensearchpy import OpenSearch

pytestmark = [pytest.mark.kafka, pytest.mark.opensearch, pytest.mark.shipper]

N_EVENTS = 500
N_DUPLICATES = 10
WAIT_S = 60
SHIPPER = Path(__file__).resolve().parents[2] / "deploy" / "local" / "shipper"


def _event(task_id: str, seq: int) -> dict[str, Any]:
    return {
        "@timestamp": datetime.now(UTC).isoformat(),
        "message": f"step {seq} of {task_id}",
        "log.level": "info" if seq % 10 else "warning",
        "labels": {"task_id": task_id, "run_id": "smoke-run"},
        "event": {"id": f"{task_id}:{seq}", "sequence": seq},
    }


def _produce(bootstrap: str, topic: str, task_id: str, events: list[dict[str, Any]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for event in events:
        producer.send(topic, key=task_id.encode(), value=json.dumps(event).encode())
    producer.flush(timeout=30)
    producer.close()


def _count(client: OpenSearch, index: str, task_id: str) -> int:
    client.indices.refresh(index=index)
    query = {"query": {"term": {"labels.task_id": task_id}}}
    return int(client.count(index=index, body=query)["count"])


def _wait_for_count(client: OpenSearch, index: str, task_id: str, expected: int) -> int:
    deadline = time.monotonic() + WAIT_S
    count = -1
    while time.monotonic() < deadline:
        if client.indices.exists(index=index):
            count = _count(client, index, task_id)
            if count >= expected:
                return count
        time.sleep(0.5)
    return count


def _wait_until_committed(bootstrap: str, topic: str, group: str) -> None:
    """Block until the shipper's group has committed every offset written to the topic.

    The shipper commits only after OpenSearch took the batch, so this means it has shipped
    everything produced so far (the duplicates included).
    """
    probe = KafkaConsumer(bootstrap_servers=bootstrap)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        partitions = sorted(probe.partitions_for_topic(topic) or ())
        ends = probe.end_offsets([TopicPartition(topic, p) for p in partitions])
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            committed = admin.list_group_offsets(group)[group]
            if all(tp in committed and committed[tp].offset >= end for tp, end in ends.items()):
                return
            time.sleep(0.5)
        pytest.fail(f"shipper group {group} did not commit up to {ends} within {WAIT_S}s")
    finally:
        probe.close()
        admin.close()


def _shipper_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return dict(json.load(response))


def test_events_are_indexed_once_each(
    kafka: dict[str, str], opensearch: dict[str, str], shipper: dict[str, str]
) -> None:
    bootstrap = kafka["TRACECTL_KAFKA_BOOTSTRAP"]
    topic = shipper["TRACECTL_SHIPPER_TOPIC"]
    index = shipper["TRACECTL_SHIPPER_INDEX"]
    client = OpenSearch(hosts=[opensearch["TRACECTL_OPENSEARCH_URL"]], timeout=30)
    task_id = f"smoke-{uuid.uuid4().hex[:12]}"

    _produce(bootstrap, topic, task_id, [_event(task_id, seq) for seq in range(N_EVENTS)])
    assert _wait_for_count(client, index, task_id, N_EVENTS) == N_EVENTS

    hits = client.search(
        index=index,
        body={"query": {"term": {"labels.task_id": task_id}}, "size": N_EVENTS + 50},
    )["hits"]["hits"]
    seqs = sorted(hit["_source"]["event"]["sequence"] for hit in hits)
    assert seqs == list(range(N_EVENTS))  # every sequence number, none twice
    assert all(hit["_id"] == hit["_source"]["event"]["id"] for hit in hits)
    assert {hit["_source"]["log.level"] for hit in hits} == {"info", "warning"}

    # Re-deliveries: same event ids (written flat, as ECS loggers do), new content.
    before = _shipper_stats(shipper["TRACECTL_SHIPPER_HEALTH_URL"])["duplicates"]
    duplicates = [
        {
            "@timestamp": datetime.now(UTC).isoformat(),
            "message": "re-delivered",
            "labels.task_id": task_id,
            "event.id": f"{task_id}:{seq}",
            "event.sequence": seq,
        }
        for seq in range(0, N_EVENTS, N_EVENTS // N_DUPLICATES)
    ]
    assert len(duplicates) == N_DUPLICATES
    _produce(bootstrap, topic, task_id, duplicates)
    _wait_until_committed(bootstrap, topic, shipper["TRACECTL_SHIPPER_GROUP"])

    assert _count(client, index, task_id) == N_EVENTS
    after = _shipper_stats(shipper["TRACECTL_SHIPPER_HEALTH_URL"])["duplicates"]
    assert after - before >= N_DUPLICATES
    # A data stream cannot be read by GET <id>: search by id instead.
    first = client.search(index=index, body={"query": {"ids": {"values": [f"{task_id}:0"]}}})
    sources = [hit["_source"] for hit in first["hits"]["hits"]]
    assert [src["message"] for src in sources] == [f"step 0 of {task_id}"]  # first write wins


def test_events_sent_while_shipper_is_down_arrive_after_restart(
    kafka: dict[str, str], opensearch: dict[str, str], shipper: dict[str, str]
) -> None:
    """Offsets live in the consumer group: a restarted shipper resumes where it stopped."""
    bootstrap = kafka["TRACECTL_KAFKA_BOOTSTRAP"]
    index = shipper["TRACECTL_SHIPPER_INDEX"]
    client = OpenSearch(hosts=[opensearch["TRACECTL_OPENSEARCH_URL"]], timeout=30)
    task_id = f"restart-{uuid.uuid4().hex[:12]}"
    script = str(SHIPPER)

    subprocess.run([script, "stop"], check=True, capture_output=True, timeout=60)
    try:
        _produce(
            bootstrap,
            shipper["TRACECTL_SHIPPER_TOPIC"],
            task_id,
            [_event(task_id, seq) for seq in range(50)],
        )
        time.sleep(2)
        assert not client.indices.exists(index=index) or _count(client, index, task_id) == 0
    finally:
        subprocess.run([script, "start"], check=True, capture_output=True, timeout=120)
    assert _wait_for_count(client, index, task_id, 50) == 50


def test_shipper_killed_mid_stream_loses_and_duplicates_nothing(
    kafka: dict[str, str], opensearch: dict[str, str], shipper: dict[str, str]
) -> None:
    """kill -9 between a bulk and its offset commit: the batch is re-read, the index absorbs it."""
    n_events = 5000
    bootstrap = kafka["TRACECTL_KAFKA_BOOTSTRAP"]
    index = shipper["TRACECTL_SHIPPER_INDEX"]
    client = OpenSearch(hosts=[opensearch["TRACECTL_OPENSEARCH_URL"]], timeout=30)
    task_id = f"crash-{uuid.uuid4().hex[:12]}"
    pid = int(_shipper_stats(shipper["TRACECTL_SHIPPER_HEALTH_URL"])["pid"])

    _produce(
        bootstrap,
        shipper["TRACECTL_SHIPPER_TOPIC"],
        task_id,
        [_event(task_id, seq) for seq in range(n_events)],
    )
    try:
        assert _wait_for_count(client, index, task_id, 1) > 0
        os.killpg(pid, signal.SIGKILL)
    finally:
        subprocess.run([str(SHIPPER), "start"], check=True, capture_output=True, timeout=120)
    assert _wait_for_count(client, index, task_id, n_events) == n_events
    time.sleep(2)  # anything still in flight would now push the count over
    assert _count(client, index, task_id) == n_events
