"""Smoke test of the real Kafka broker that deploy/local/kafka runs (KRaft, one node)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.serializer import DefaultSerializer

from tests.waiting import gather

pytestmark = pytest.mark.kafka

N_MESSAGES = 100
N_KEYS = 7


def test_topic_produce_consume_in_key_order(kafka: dict[str, str]) -> None:
    bootstrap = kafka["TRACECTL_KAFKA_BOOTSTRAP"]
    topic = f"tracectl.smoke.{uuid.uuid4().hex[:8]}"
    group = f"smoke-{uuid.uuid4().hex[:8]}"

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="smoke-admin")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        described = admin.describe_topics([topic])
        assert len(described[0]["partitions"]) == 3

        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            key_serializer=DefaultSerializer(),
            value_serializer=DefaultSerializer(),
        )
        sent: dict[str, list[int]] = defaultdict(list)
        for seq in range(N_MESSAGES):
            key = f"task-{seq % N_KEYS}"
            producer.send(topic, key=key, value=str(seq)).get(timeout=30)
            sent[key].append(seq)
        producer.close()

        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            key_deserializer=DefaultSerializer(),
            value_deserializer=DefaultSerializer(),
        )
        received: dict[str, list[int]] = defaultdict(list)
        partitions_of_key: dict[str, set[int]] = defaultdict(set)

        def records() -> list[tuple[int, Any]]:
            return [
                (tp.partition, r) for tp, rs in consumer.poll(timeout_ms=1000).items() for r in rs
            ]

        for partition, record in gather(records, lambda seen: len(seen) >= N_MESSAGES, 60):
            received[record.key].append(int(record.value))
            partitions_of_key[record.key].add(partition)
        total = sum(len(seqs) for seqs in received.values())
        consumer.commit()
        assignment = consumer.assignment()
        positions = {tp.partition: consumer.position(tp) for tp in assignment}
        consumer.close()

        assert total == N_MESSAGES
        assert dict(received) == dict(sent)  # every message, and per key in send order
        assert all(len(parts) == 1 for parts in partitions_of_key.values())
        assert len(set().union(*partitions_of_key.values())) > 1  # keys really spread out

        committed = admin.list_group_offsets(group)[group]
        assert {tp.partition: meta.offset for tp, meta in committed.items()} == positions
        assert sum(meta.offset for meta in committed.values()) == N_MESSAGES
        assert set(committed) == {TopicPartition(topic, p) for p in range(3)}
    finally:
        admin.delete_topics([topic])
        admin.close()
